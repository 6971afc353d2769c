"""keras.layers: the building blocks of Keras models, as thin shells over clnet ops."""
from .base import Input, InputLayer, InputSpec, KerasTensor, Layer
from .core import Activation, Dense, Dropout, Flatten, Lambda, ReLU, Rescaling, Reshape, Softmax
from .conv import (Conv1D, Conv1DTranspose, Conv2D, Conv2DTranspose, Convolution1D, Convolution2DTranspose,
                   DepthwiseConv2D, SeparableConv2D, SeparableConvolution2D)
from .pooling import (AveragePooling1D, AveragePooling2D, AvgPool1D, AvgPool2D, GlobalAveragePooling1D,
                      GlobalAveragePooling2D, GlobalAvgPool1D, GlobalAvgPool2D, GlobalMaxPool1D, GlobalMaxPool2D,
                      GlobalMaxPooling1D, GlobalMaxPooling2D, MaxPool1D, MaxPool2D, MaxPooling1D, MaxPooling2D)
from .normalization import BatchNormalization, LayerNormalization, Normalization
from .reshaping import (Cropping1D, Cropping2D, Permute, RepeatVector, UpSampling1D, UpSampling2D, ZeroPadding1D,
                        ZeroPadding2D)
from .activations import ELU, LeakyReLU, PReLU
from .preprocessing import RandomFlip, RandomRotation, RandomZoom
from .merging import (Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply, Subtract, add, average,  # noqa: F401
                      concatenate, dot, maximum, minimum, multiply, subtract)
from .embedding import Embedding, Masking
from .rnn import GRU, LSTM, Bidirectional, SimpleRNN, TimeDistributed
from .attention import Attention, MultiHeadAttention
from ..saving.object_registration import register_builtins

Convolution2D = Conv2D

# Layers that keras.models.load_model may rebuild from a saved config (nothing outside this table is created).
LAYER_CLASSES = {cls.__name__: cls for cls in (
    InputLayer, Dense, Activation, Dropout, Flatten, ReLU, Reshape, Softmax, Conv2D, MaxPooling2D,
    AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D, BatchNormalization, Add, Average, Concatenate,
    Dot, Maximum, Minimum, Multiply, Subtract,
    Conv1D, Conv1DTranspose, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D, MaxPooling1D, AveragePooling1D,
    GlobalAveragePooling1D, GlobalMaxPooling1D, UpSampling1D, UpSampling2D, ZeroPadding1D, ZeroPadding2D,
    Cropping1D, Cropping2D, Permute, RepeatVector, LeakyReLU, PReLU, ELU, Lambda, Rescaling, Normalization,
    LayerNormalization, RandomFlip, RandomRotation, RandomZoom,
    Embedding, Masking, SimpleRNN, LSTM, GRU, Bidirectional,
    TimeDistributed, MultiHeadAttention, Attention)}
register_builtins("layers", LAYER_CLASSES.values())

__all__ = ["Input", "InputLayer", "InputSpec", "KerasTensor", "Layer"] + sorted(LAYER_CLASSES)

# keras.layers.serialize / deserialize: Keras's config dicts (clnet/keras/saving/serialization_lib.py)
from ..saving.serialization_lib import deserialize_layer as _deserialize_layer  # noqa: E402
from ..saving.serialization_lib import serialize_keras_object as serialize  # noqa: E402,F401


def deserialize(config, custom_objects=None):
    """A layer from serialize()'s dict (only built-in classes and registered or passed custom ones)."""
    return _deserialize_layer(config, custom_objects)


__all__ += ["deserialize", "serialize"]

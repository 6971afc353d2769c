"""keras.layers: the building blocks of Keras models, as thin shells over clnet ops."""
from .base import Input, InputLayer, InputSpec, KerasTensor, Layer
from .core import Activation, Dense, Dropout, Flatten, ReLU, Reshape, Softmax
from .conv import Conv2D
from .pooling import (AveragePooling2D, AvgPool2D, GlobalAveragePooling2D, GlobalAvgPool2D, GlobalMaxPool2D,
                      GlobalMaxPooling2D, MaxPool2D, MaxPooling2D)
from .normalization import BatchNormalization
from .merging import (Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply, Subtract, add, average,  # noqa: F401
                      concatenate, dot, maximum, minimum, multiply, subtract)
from ..saving.object_registration import register_builtins
from ..saving.serialization_lib import deserialize_layer as _deserialize_layer, serialize_keras_object as serialize

Convolution2D = Conv2D

# Layers that keras.models.load_model may rebuild from a saved config (nothing outside this table is created).
LAYER_CLASSES = {cls.__name__: cls for cls in (
    InputLayer, Dense, Activation, Dropout, Flatten, ReLU, Reshape, Softmax, Conv2D, MaxPooling2D,
    AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D, BatchNormalization, Add, Average, Concatenate,
    Dot, Maximum, Minimum, Multiply, Subtract)}
register_builtins("layers", LAYER_CLASSES.values())


def deserialize(config, custom_objects=None):
    """keras.layers.deserialize: a layer from serialize()'s dict (only built-in or registered/custom classes)."""
    return _deserialize_layer(config, custom_objects)


__all__ = ["Input", "InputLayer", "InputSpec", "KerasTensor", "Layer", "deserialize", "serialize"] + \
    sorted(LAYER_CLASSES)

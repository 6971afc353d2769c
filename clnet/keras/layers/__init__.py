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

Convolution2D = Conv2D

# Layers that keras.models.load_model may rebuild from a saved config (nothing outside this table is created).
LAYER_CLASSES = {cls.__name__: cls for cls in (
    InputLayer, Dense, Activation, Dropout, Flatten, ReLU, Reshape, Softmax, Conv2D, MaxPooling2D,
    AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D, BatchNormalization, Add, Average, Concatenate,
    Dot, Maximum, Minimum, Multiply, Subtract)}
register_builtins("layers", LAYER_CLASSES.values())

__all__ = ["Input", "InputLayer", "InputSpec", "KerasTensor", "Layer"] + sorted(LAYER_CLASSES)

# keras.layers.serialize / deserialize: Keras's config dicts (clnet/keras/saving/serialization_lib.py)
from ..saving.serialization_lib import deserialize_layer as _deserialize_layer  # noqa: E402
from ..saving.serialization_lib import serialize_keras_object as serialize  # noqa: E402,F401


def deserialize(config, custom_objects=None):
    """A layer from serialize()'s dict (only built-in classes and registered or passed custom ones)."""
    return _deserialize_layer(config, custom_objects)


__all__ += ["deserialize", "serialize"]

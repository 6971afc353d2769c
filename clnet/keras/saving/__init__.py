"""keras.saving: model files, weight files and the registry of custom objects, in Keras 3's formats."""
from .object_registration import (CustomObjectScope, custom_object_scope, get_custom_objects,  # noqa: F401
                                  get_registered_name, get_registered_object, register_keras_serializable)
from .saving_lib import load_model, load_weights, save_model, save_weights  # noqa: F401
from .serialization_lib import (FileFormatError, SafeModeScope, deserialize_keras_object,  # noqa: F401
                                serialize_keras_object)

__all__ = ["CustomObjectScope", "FileFormatError", "SafeModeScope", "custom_object_scope", "deserialize_keras_object",
           "get_custom_objects", "get_registered_name", "get_registered_object", "load_model", "load_weights",
           "register_keras_serializable", "save_model", "save_weights", "serialize_keras_object"]

"""keras.saving: model files, weight files and the registry of custom objects."""
from .object_registration import (CustomObjectScope, custom_object_scope, get_custom_objects,  # noqa: F401
                                  get_registered_name, get_registered_object, register_keras_serializable)
from .saving_lib import load_model, load_weights, save_model, save_weights  # noqa: F401
from .serialization_lib import FileFormatError  # noqa: F401

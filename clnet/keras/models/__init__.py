"""keras.models: Model (subclassed or functional), Sequential, and rebuilding models from files and configs."""
from __future__ import annotations

import json

from ..saving import saving_lib
from ..saving.object_registration import register_builtins
from ..saving.serialization_lib import FileFormatError, model_classes
from .functional import FunctionalGraph, map_graph  # noqa: F401
from .model import Functional, Model
from .sequential import Sequential

register_builtins("models", (Model, Functional, Sequential))


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):  # noqa: A002
    """Rebuild a model saved with model.save(): no user code runs and nothing is unpickled."""
    return saving_lib.load_model(filepath, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode)


def save_model(model, filepath, overwrite=True, **kwargs):
    """keras.models.save_model: model.save(filepath) (a `.keras` file, or a legacy `.h5`)."""
    saving_lib.save_model(model, filepath, overwrite=overwrite,
                          include_optimizer=kwargs.get("include_optimizer", True))


def model_from_json(json_string, custom_objects=None):
    """Rebuild an architecture from model.to_json() or a Keras config.json (built-in or registered classes only;
    nothing is executed). The weights are fresh."""
    try:
        spec = json.loads(json_string)
    except (json.JSONDecodeError, RecursionError) as err:
        raise FileFormatError(f"model_from_json: not valid JSON: {err}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("class_name"), str) or \
            not isinstance(spec.get("config"), dict):
        raise FileFormatError(f"model_from_json: expected a model description, got {str(spec)[:100]!r}")
    return saving_lib.rebuild_model({k: v for k, v in spec.items() if k != "compile_config"}, custom_objects, True,
                                    where="the JSON string")


def clone_model(model, input_tensors=None, clone_function=None, call_function=None, recursive=False, **kwargs):
    """A new model with the same architecture and fresh weights."""
    cls = model_classes().get(type(model).__name__)
    if cls is None:
        raise ValueError(f"clone_model supports Sequential and functional models, got {type(model).__name__}")
    return cls.from_config(model.get_config())


__all__ = ["Functional", "Model", "Sequential", "clone_model", "load_model", "model_from_json", "save_model"]

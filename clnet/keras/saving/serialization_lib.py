"""Layers <-> config entries. Classes are found by name among the built-ins their modules registered
(object_registration) or the user's registered/custom objects, so nothing here imports a layer or model."""
from __future__ import annotations

from clnet import errors

from .object_registration import builtin_name, builtin_objects, get_registered_object, is_registered, \
    get_registered_name


class FileFormatError(errors.FileFormatError):
    """A `.keras` file or config that is corrupted, truncated, tampered with or not a Keras file; a
    clnet.FileFormatError (and a ValueError), so `except clnet.FileFormatError` catches it too."""


def serialize_layer(layer):
    cls = type(layer)
    if builtin_name("layers", cls) is not None:
        cls_name = cls.__name__
    elif is_registered(cls):
        cls_name = get_registered_name(cls)
    else:
        raise ValueError(f"layer {layer.name!r} is a custom {cls.__name__}: register its class with "
                         "@keras.saving.register_keras_serializable() to save the model, or use save_weights()")
    return {"module": "keras.layers", "class_name": cls_name, "config": layer.get_config(),
            "build_config": layer.get_build_config()}


def deserialize_layer(entry, custom_objects=None):
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str) or \
            not isinstance(entry.get("config"), dict):
        raise FileFormatError(f"a layer entry of the config is malformed: {str(entry)[:200]}")
    name = entry["class_name"]
    known = builtin_objects("layers")
    cls = get_registered_object(name, custom_objects) or known.get(name)
    if cls is None:
        raise FileFormatError(f"unknown layer class {name!r} in the config; known: {', '.join(sorted(known))}"
                              " (pass custom_objects= for your own layers)")
    try:
        layer = cls.from_config(dict(entry["config"]))
    except (TypeError, ValueError) as err:
        raise FileFormatError(f"cannot rebuild layer {name} from its saved config: {err}") from None
    build = entry.get("build_config")
    if build is not None and not layer.built:
        if not isinstance(build, dict) or not isinstance(build.get("input_shape"), list):
            raise FileFormatError(f"malformed build_config for layer {name}: {build!r}")
        layer.build_from_config(build)
    return layer


def model_classes():
    return builtin_objects("models")

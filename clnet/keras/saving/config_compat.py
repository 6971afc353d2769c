"""Configs that cross between Keras 3 and clnet: the small differences in how each spells a config.

Keras's configs carry every argument its classes take, including ones clnet's classes do not have
(`kernel_constraint`, `quantization_config`, BatchNormalization's `renorm`...). A built-in clnet class
gets such a key dropped when its value is Keras's "off" value (None, False, or the default listed
below), so a file saved by Keras loads; a key that asks for something clnet cannot do is left for the
class to refuse (Keras's "Unrecognized keyword arguments passed to ..." ValueError names it). Going the other way, clnet's configs are given Keras's module names and its
Sequential layout (an InputLayer entry instead of `batch_input_shape` on the first layer).
"""
from __future__ import annotations

import inspect

# Keras's default values of arguments that clnet's classes do not take (dropping them changes nothing)
_KERAS_DEFAULTS = {"renorm_momentum": 0.99, "groups": 1, "data_format": "channels_last", "ragged": False,
                   "lora_rank": None, "lora_alpha": None, "input_axes": None, "output_axes": None,
                   "seed": None, "mode": "fan_avg", "decay": 0.0}
# settings that only steer how Keras compiles its step (nothing to do with the numbers)
_IGNORED = {"jit_compile", "is_legacy_optimizer"}
# what every clnet.keras optimizer takes through **kwargs (and checks itself)
_OPTIMIZER_KWARGS = {"use_ema", "ema_momentum", "ema_overwrite_frequency", "loss_scale_factor",
                     "gradient_accumulation_steps"}
# where Keras's nested objects live, by the suffix of the argument holding them
_NESTED_MODULES = (("_initializer", "keras.initializers"), ("_regularizer", "keras.regularizers"),
                   ("_constraint", "keras.constraints"))


def accepted_arguments(cls):
    """The keyword arguments `cls(...)` takes: the named parameters of every __init__ along its MRO (a
    layer's **kwargs go on to its bases), or None when some __init__ takes **kwargs it does not pass on."""
    names = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            return None
        names.update(p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL))
        names.update(getattr(klass, "_valid_kwargs", ()))
    names.discard("self")
    return names


def _is_off(key, value):
    if value is None or value is False:
        return True
    return key in _KERAS_DEFAULTS and _KERAS_DEFAULTS[key] == value


def fit_config(cls, class_name, config):
    """`config` (from a Keras file) without the keys `cls` does not take, when those keys are off."""
    allowed = accepted_arguments(cls)
    if allowed is None:
        return dict(config)
    return fit_config_with(allowed, class_name, config)


def fit_optimizer_config(cls, class_name, config):
    """An optimizer config from Keras 3 or tf.keras 2 as clnet's optimizer class takes it."""
    allowed = accepted_arguments(cls)
    if allowed is None:
        return dict(config)
    return fit_config_with(allowed | _OPTIMIZER_KWARGS, class_name, {k: v for k, v in config.items()
                                                                       if k not in _IGNORED})


def fit_config_with(allowed, class_name, config):
    """`config` without the keys outside `allowed` that are off; a key that is on stays, so the class itself
    refuses it in Keras's words ("Unrecognized keyword arguments passed to Dense: ...") or takes it through
    **kwargs it handles."""
    return {key: value for key, value in config.items() if key in allowed or not _is_off(key, value)}


def fit_nested(config, lookup):
    """Nested Keras objects (initializers, regularizers, constraints) of a built-in layer's config, with
    their configs fitted to clnet's classes too; `lookup(module, class_name)` gives clnet's class or None."""
    out = dict(config)
    for key, value in config.items():
        if isinstance(value, dict) and isinstance(value.get("class_name"), str) and \
                isinstance(value.get("config"), dict):
            cls = lookup(value.get("module"), value["class_name"])
            if cls is not None:
                out[key] = {**value, "config": fit_config(cls, value["class_name"], value["config"])}
    return out


def add_modules(config):
    """A layer config with Keras's `module`/`registered_name` on its nested initializer, regularizer and
    constraint configs (Keras reads them without, but writes them)."""
    out = dict(config)
    for key, value in config.items():
        if isinstance(value, dict) and "class_name" in value and "config" in value and "module" not in value:
            for suffix, module in _NESTED_MODULES:
                if key.endswith(suffix):
                    out[key] = {"module": module, "class_name": value["class_name"], "config": value["config"],
                                "registered_name": None}
    return out


def keras_sequential_layers(entries):
    """A Sequential's layer entries in Keras's layout: a first layer declaring `batch_input_shape` becomes
    an InputLayer entry followed by the layer (Keras 3 layers take no batch_input_shape)."""
    entries = [dict(e) for e in entries]
    declared = None
    for i, entry in enumerate(entries):
        if isinstance(entry.get("config"), dict) and "batch_input_shape" in entry["config"]:
            if i == 0:
                declared = entry["config"]["batch_input_shape"]
            entry["config"] = {k: v for k, v in entry["config"].items() if k != "batch_input_shape"}
    if declared is not None and entries[0].get("class_name") != "InputLayer":
        first = entries[0]["config"]
        dtype = first.get("dtype", "float32")
        if isinstance(dtype, dict):
            dtype = (dtype.get("config") or {}).get("name", "float32")
        entries.insert(0, {"module": "keras.layers", "class_name": "InputLayer",
                           "config": {"batch_shape": list(declared), "dtype": dtype, "sparse": False,
                                      "ragged": False, "name": f"{first.get('name', 'layer')}_input",
                                      "optional": False},
                           "registered_name": None})
    return entries


def schedule_config(value):
    """A learning-rate schedule's config from Keras (which adds `name`) as clnet's schedules take it."""
    if isinstance(value, dict) and isinstance(value.get("config"), dict):
        cfg = {k: v for k, v in value["config"].items() if k != "name"}
        return {**value, "config": cfg}
    return value

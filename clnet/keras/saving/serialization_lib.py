"""Objects <-> Keras 3's config dicts: {"module", "class_name", "config", "registered_name"} (+ "build_config"
and "compile_config" for layers and models), as Keras writes them, so configs cross both ways.

Classes are found by name only: the user's (an open custom_object_scope, `custom_objects=`, the
register_keras_serializable registry) first, then clnet's built-ins by the Keras module the config names
(layers and models as their modules registered them, initializers, regularizers, constraints,
optimizers, losses, metrics, activations). Nothing is imported by name from a file and nothing is
executed: a Python lambda in a config is refused in safe mode (the default) and cannot be loaded at all
by clnet, whose Lambda-free loader never runs saved bytecode.
"""
from __future__ import annotations

import inspect
import threading
import types

import numpy as np

from clnet import errors

from .. import activations, initializers, losses, optimizers, regularizers
from ..ops.symbolic import KerasTensor
from . import config_compat
from .object_registration import CustomObjectScope, builtin_name, builtin_objects, get_registered_name, \
    get_registered_object, is_registered


class FileFormatError(errors.FileFormatError):
    """A `.keras` file or config that is corrupted, truncated, tampered with or not a Keras file; a
    clnet.FileFormatError (and a ValueError), so `except clnet.FileFormatError` catches it too."""


class UnknownObjectError(FileFormatError, TypeError):
    """A config names a class or function that is neither built in nor registered. A TypeError, as Keras
    raises, and a FileFormatError, as clnet's loaders raise."""


class DeserializationError(FileFormatError, TypeError):
    """A class found for a config could not be rebuilt from it (its from_config() raised TypeError): a
    TypeError, as Keras raises, and a FileFormatError, as clnet's loaders raise."""


_LAMBDA_REFUSED = ("Requested the deserialization of a Python lambda (a Lambda layer or a lambda in a config). "
                   "Loading it would run code stored in the file, which is refused by default. If you trust the "
                   "file, pass `safe_mode=False` to the loading function.")

_LAMBDA_NOT_RUN = ("This config holds a Python lambda (a Lambda layer's function, stored as marshalled bytecode). "
                   "clnet never runs code stored in a file, even with safe_mode=False: rebuild that part of the "
                   "model in code, or replace the lambda by a function registered with "
                   "@keras.saving.register_keras_serializable().")

_state = threading.local()


class SafeModeScope:
    """`with SafeModeScope(False):` lets configs read inside the block hold Python lambdas (Keras's switch)."""

    def __init__(self, safe_mode=True):
        self.safe_mode = safe_mode

    def __enter__(self):
        self._previous = getattr(_state, "safe_mode", None)
        _state.safe_mode = self.safe_mode
        return self

    def __exit__(self, *exc):
        _state.safe_mode = self._previous


def in_safe_mode():
    """Whether lambdas are refused now: the innermost SafeModeScope decides, else yes."""
    value = getattr(_state, "safe_mode", None)
    return True if value is None else bool(value)


def _scope_safe_mode():
    return getattr(_state, "safe_mode", None)


# --- modules: where Keras keeps each kind of object ---------------------------------------------------
_MODEL_MODULES = {"Sequential": "keras", "Functional": "keras.src.models.functional", "Model": "keras"}
_OTHER_MODULES = (("keras.layers", "layers"), ("keras.src.layers", "layers"), ("keras.initializers", "initializers"),
                  ("keras.src.initializers", "initializers"), ("keras.regularizers", "regularizers"),
                  ("keras.src.regularizers", "regularizers"), ("keras.constraints", "constraints"),
                  ("keras.src.constraints", "constraints"), ("keras.optimizers.schedules", "schedules"),
                  ("keras.src.optimizers.schedules", "schedules"), ("keras.optimizers", "optimizers"),
                  ("keras.src.optimizers", "optimizers"), ("keras.src.backend", "optimizers"),
                  ("keras.losses", "losses"), ("keras.src.losses", "losses"), ("keras.metrics", "metrics"),
                  ("keras.src.metrics", "metrics"), ("keras.activations", "activations"),
                  ("keras.src.activations", "activations"), ("keras.models", "models"),
                  ("keras.src.models", "models"), ("keras.src.ops", "ops"), ("keras.ops", "ops"))


def _category(module):
    if module in ("keras", None, ""):
        return None
    for prefix, category in _OTHER_MODULES:
        if module == prefix or module.startswith(prefix + "."):
            return category
    return None


def _builtin_table(category):
    """{class name: class} of clnet's built-ins in a category."""
    if category == "initializers":
        return dict(initializers._CLASSES)
    if category == "regularizers":
        return dict(regularizers._CLASSES)
    if category == "constraints":
        return {name: cls for name, cls in builtin_objects("constraints").items() if isinstance(cls, type)}
    if category == "optimizers":
        return dict(optimizers.OPTIMIZER_CLASSES)
    if category == "schedules":
        return dict(optimizers._SCHEDULES)
    if category == "losses":
        return dict(losses.LOSS_CLASSES)
    return dict(builtin_objects(category))


def _find_builtin(module, class_name):
    category = _category(module)
    if category is not None:
        return _builtin_table(category).get(class_name)
    for category in ("models", "layers"):  # module "keras": keras.Sequential, keras.Model, keras.Input...
        found = builtin_objects(category).get(class_name)
        if found is not None:
            return found
    return None


def _registered_class_name(cls):
    """The registered "package>name" of a class or of the user class it was made from (a functional
    CustomModel(inputs, outputs) is an instance of a subclass clnet makes), else None."""
    for klass in cls.__mro__:
        if klass.__name__ == cls.__name__ and is_registered(klass):
            return get_registered_name(klass)
    return None


def _public_module_of(obj):
    """(module, class_name, registered_name) of a built-in clnet class as Keras names it, else None."""
    cls = type(obj)
    if builtin_name("layers", cls) is not None:
        return "keras.layers", cls.__name__, None
    models = builtin_objects("models")
    for name, module in _MODEL_MODULES.items():
        if models.get(name) is cls:
            return module, name, ("Functional" if name == "Functional" else None)
    tables = (("initializers", "keras.initializers"), ("regularizers", "keras.regularizers"),
              ("constraints", "keras.constraints"), ("optimizers", "keras.optimizers"),
              ("schedules", "keras.optimizers.schedules"), ("losses", "keras.losses"), ("metrics", "keras.metrics"))
    for category, module in tables:
        if _builtin_table(category).get(cls.__name__) is cls:
            return module, cls.__name__, None
    return None


# --- serializing ----------------------------------------------------------------------------------------
def serialize_keras_object(obj):
    """The config dict Keras would write for `obj` (a layer, model, initializer, regularizer, constraint,
    optimizer, loss, metric, registered function or custom class), or plain data as it is."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (list, tuple)):
        return [serialize_keras_object(x) for x in obj]
    if isinstance(obj, dict):
        return {key: serialize_keras_object(value) for key, value in obj.items()}
    if isinstance(obj, bytes):
        return {"class_name": "__bytes__", "config": {"value": obj.decode("utf-8")}}
    if isinstance(obj, np.ndarray):
        return {"class_name": "__numpy__", "config": {"value": obj.tolist(), "dtype": obj.dtype.name}}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, types.FunctionType) and obj.__name__ == "<lambda>":
        raise ValueError("a lambda cannot be saved by clnet: define a named function and register it with "
                         "@keras.saving.register_keras_serializable()")
    if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType)):
        return _serialize_function(obj)
    if hasattr(obj, "get_config"):
        return _serialize_instance(obj)
    raise TypeError(f"Cannot serialize object {obj!r} of type {type(obj).__name__}: to be serializable, a class "
                    "must implement get_config()")


def _serialize_function(fn):
    if is_registered(fn):
        name = get_registered_name(fn)
        return {"module": fn.__module__, "class_name": "function", "config": name, "registered_name": name}
    try:
        name = activations.serialize(fn)
        return {"module": "keras.activations", "class_name": "function", "config": name, "registered_name": name}
    except ValueError:
        pass
    for name, known in losses.LOSS_FUNCTIONS.items():
        if known is fn:
            return {"module": "keras.losses", "class_name": "function", "config": name, "registered_name": name}
    return {"module": fn.__module__, "class_name": "function", "config": fn.__name__, "registered_name": fn.__name__}


def _serialize_instance(obj):
    config = obj.get_config()
    if not isinstance(config, dict):
        raise TypeError(f"The get_config() method of {obj!r} should return a dict. It returned: {config!r}")
    known = _public_module_of(obj)
    if known is not None:
        module, class_name, registered = known
    else:
        cls = type(obj)
        module, class_name = cls.__module__, cls.__name__
        registered = _registered_class_name(cls) or class_name
        if module == "__main__":
            module = None
    config = serialize_keras_object(config) if known is None else config
    if known is not None and module == "keras.layers":
        config = _registered_functions_out(config_compat.add_modules(config))
    entry = {"module": module, "class_name": class_name, "config": config, "registered_name": registered}
    build = obj.get_build_config() if hasattr(obj, "get_build_config") and \
        class_name != "InputLayer" else None
    if build is not None:
        entry["build_config"] = build
    return entry


def serialize_layer(layer):
    """A layer's entry in a model config (Keras's format); custom classes keep their module and registered
    name, so loading finds them through the registry or `custom_objects=`."""
    return _serialize_instance(layer)


# --- deserializing --------------------------------------------------------------------------------------
def deserialize_keras_object(config, custom_objects=None, safe_mode=True, **kwargs):
    """The object a Keras config dict describes (the reverse of serialize_keras_object). Classes come from
    `custom_objects`, open custom_object_scopes, the registry, then clnet's built-ins; nothing else."""
    outer = _scope_safe_mode()
    with SafeModeScope(safe_mode if outer is None else outer):
        return _deserialize(config, custom_objects or {}, kwargs.get("module_objects"))


def _deserialize(config, custom_objects, module_objects=None):
    if config is None or isinstance(config, (bool, int, float)):
        return config
    if isinstance(config, str):
        found = get_registered_object(config, custom_objects, module_objects)
        return found if found is not None else config
    if isinstance(config, (list, tuple)):
        return [_deserialize(x, custom_objects, module_objects) for x in config]
    if not isinstance(config, dict):
        raise TypeError(f"Could not parse config: {str(config)[:200]}")
    if "class_name" not in config or "config" not in config:
        return {key: _deserialize(value, custom_objects, module_objects) for key, value in config.items()}
    class_name, inner = config["class_name"], config["config"]
    special = _special(class_name, inner, custom_objects)
    if special is not _NOT_SPECIAL:
        return special
    if class_name == "function":
        return _deserialize_function(config, custom_objects, module_objects)
    cls = find_class(config, custom_objects, module_objects)
    return instantiate(cls, config, custom_objects)


_NOT_SPECIAL = object()


def _special(class_name, inner, custom_objects):
    inner = inner if inner is not None else {}
    if class_name == "__lambda__":
        if in_safe_mode():
            raise ValueError(_LAMBDA_REFUSED)
        raise ValueError(_LAMBDA_NOT_RUN)
    if class_name == "__numpy__":
        return np.array(inner["value"], dtype=inner["dtype"])
    if class_name == "__tensor__":
        return np.array(inner["value"], dtype=inner["dtype"])
    if class_name == "__bytes__":
        return inner["value"].encode("utf-8")
    if class_name == "__ellipsis__":
        return Ellipsis
    if class_name == "__slice__":
        return slice(*(_deserialize(inner.get(k), custom_objects) for k in ("start", "stop", "step")))
    if class_name == "__tuple__":
        return tuple(_deserialize(v, custom_objects) for v in inner.get("value", []))
    if class_name == "__keras_tensor__":
        raise FileFormatError("a __keras_tensor__ entry can only appear in a functional model's layer calls")
    return _NOT_SPECIAL


def _deserialize_function(config, custom_objects, module_objects):
    name = config["config"]
    if not isinstance(name, str):
        raise FileFormatError(f"a function entry needs its name as config, got {str(config)[:200]}")
    registered = config.get("registered_name") or name
    for key in (registered, name):
        found = get_registered_object(key, custom_objects, module_objects)
        if found is not None:
            return found
    category = _category(config.get("module")) or "activations"
    if category == "losses" and name in losses.LOSS_FUNCTIONS:
        return losses.LOSS_FUNCTIONS[name]
    if category in ("activations", "losses"):
        try:
            return activations.get(name)
        except ValueError:
            pass
    raise _unknown("function", name, config)


def _unknown(kind, name, config):
    return UnknownObjectError(
        f"Could not locate {kind} '{name}'. Decorate custom classes and functions with "
        f"`@keras.saving.register_keras_serializable()` (and import their module before loading), or pass them in "
        f"`custom_objects={{'{name}': ...}}` / `keras.saving.custom_object_scope`. Full object config: "
        f"{str(config)[:300]}")


def find_class(config, custom_objects=None, module_objects=None):
    """The class a config entry names: a registered or custom class first (by registered_name, then
    class_name), then clnet's built-in of that name in the module the entry names."""
    class_name = config.get("class_name")
    if not isinstance(class_name, str):
        raise FileFormatError(f"a config entry has no class_name: {str(config)[:200]}")
    registered = config.get("registered_name")
    for key in (registered, class_name):
        if isinstance(key, str):
            found = get_registered_object(key, custom_objects, module_objects)
            if isinstance(found, type):
                return found
    module = config.get("module")
    found = _find_builtin(module, class_name)
    if found is None and module is None:
        for category in ("layers", "models"):
            found = found or builtin_objects(category).get(class_name)
    if found is None:
        if class_name == "Lambda":
            raise ValueError(_LAMBDA_REFUSED if in_safe_mode() else _LAMBDA_NOT_RUN)
        category = _category(module)
        if category is not None:
            known = ", ".join(sorted(n for n, c in _builtin_table(category).items() if isinstance(c, type)))
            raise UnknownObjectError(
                f"Could not locate class '{class_name}': Keras's {module}.{class_name} is not available in clnet "
                f"(its keras.{category} has: {known}). To load the file anyway, pass a class of your own as "
                f"`custom_objects={{'{class_name}': ...}}`.")
        raise _unknown("class", class_name, config)
    return found


def instantiate(cls, config, custom_objects=None):
    """cls.from_config(config["config"]) (fitted to clnet's class when it is a built-in layer), then its
    build_config and compile_config, as Keras does."""
    inner = config.get("config")
    if not isinstance(inner, dict):
        raise FileFormatError(f"Expected 'config' to be a dict for {config.get('class_name')}, got "
                              f"{type(inner).__name__}")
    class_name = config["class_name"]
    builtin = _public_module_of_class(cls)
    if builtin == "layers":
        inner = config_compat.fit_nested(config_compat.fit_config(cls, class_name, inner), _nested_lookup)
        inner = _registered_functions_in(inner, custom_objects or {})
    elif builtin == "optimizers":
        inner = config_compat.fit_optimizer_config(cls, class_name, inner)
        if "learning_rate" in inner:
            inner = {**inner, "learning_rate": _learning_rate(inner["learning_rate"], custom_objects)}
    elif builtin in ("initializers", "regularizers", "constraints", "schedules"):
        inner = config_compat.fit_config(cls, class_name, inner if builtin != "schedules" else
                                         {k: v for k, v in inner.items() if k != "name"})
    from_config = getattr(cls, "from_config", None)
    if from_config is None:
        raise TypeError(f"Unable to reconstruct an instance of '{class_name}' because the class is missing a "
                        "from_config() method")
    with CustomObjectScope(custom_objects or {}):
        try:
            if builtin == "models" or _takes_custom_objects(from_config):
                obj = from_config(inner, custom_objects=custom_objects)
            else:
                obj = from_config(inner)
        except FileFormatError:
            raise
        except TypeError as err:
            raise TypeError(f"{class_name} could not be deserialized properly: {err}. If it is a custom class, make "
                            "sure its get_config() returns every argument of its __init__ (and that objects in it, "
                            "such as layers, are rebuilt in from_config()).") from None
        build = config.get("build_config")
        if build and hasattr(obj, "build_from_config") and not getattr(obj, "built", True):
            build_from_config(obj, build)
        compile_config = config.get("compile_config")
        if compile_config and hasattr(obj, "compile_from_config"):
            obj.compile_from_config(compile_from_keras(compile_config, custom_objects))
    return obj


def build_from_config(obj, build):
    """Build a layer (or subclassed model) for the shapes its build_config records. A model whose build()
    is the default one is called on symbolic inputs of those shapes, which builds every layer it uses."""
    if not isinstance(build, dict):
        raise FileFormatError(f"malformed build_config {str(build)[:200]}")
    models = builtin_objects("models")
    model_cls, seq, fun = models.get("Model"), models.get("Sequential"), models.get("Functional")
    shape = build.get("input_shape")
    plain_model = model_cls is not None and isinstance(obj, model_cls) and not isinstance(obj, (seq, fun)) and \
        "build" not in _own_methods(type(obj), model_cls)
    if plain_model and shape is not None:
        try:
            obj(_symbolic(shape))
        except Exception as err:  # noqa: BLE001  (the user's call() on symbolic inputs: say what was tried)
            raise ValueError(f"cannot build the loaded model {type(obj).__name__} for its saved input shape {shape}: "
                             f"calling it on symbolic inputs failed ({type(err).__name__}: {err}). Give the model a "
                             "build(input_shape) that creates its layers' weights.") from err
        return
    obj.build_from_config(build)


def _symbolic(shape):
    if isinstance(shape, list) and shape and all(isinstance(s, list) for s in shape):
        return [KerasTensor(tuple(s)) for s in shape]
    if isinstance(shape, dict):
        return {k: KerasTensor(tuple(v)) for k, v in shape.items()}
    return KerasTensor(tuple(shape))


def _own_methods(cls, stop):
    names = set()
    for klass in cls.__mro__:
        if klass is stop:
            break
        names.update(klass.__dict__)
    return names


def _public_module_of_class(cls):
    if builtin_name("layers", cls) is not None:
        return "layers"
    if cls in builtin_objects("models").values():
        return "models"
    for category in ("initializers", "regularizers", "constraints", "optimizers", "schedules", "losses", "metrics"):
        if _builtin_table(category).get(cls.__name__) is cls:
            return category
    if any(k in builtin_objects("models").values() for k in cls.__mro__):
        return "models"
    return None


def _registered_functions_out(config):
    """A built-in layer's config with registered functions (an `activation="pkg>fn"`) as Keras's function
    entries, which is how Keras writes them."""
    out = dict(config)
    for key, value in config.items():
        if isinstance(value, str) and ">" in value:
            fn = get_registered_object(value)
            if isinstance(fn, types.FunctionType):
                out[key] = {"module": fn.__module__, "class_name": "function", "config": value,
                            "registered_name": value}
    return out


def _registered_functions_in(config, custom_objects):
    """Function entries (and registered or custom function names) in a built-in layer's config, as the
    functions themselves, so `Dense(activation=...)` gets a callable."""
    out = dict(config)
    for key, value in config.items():
        if isinstance(value, dict) and value.get("class_name") == "function":
            out[key] = _deserialize_function(value, custom_objects, None)
        elif isinstance(value, dict) and value.get("class_name") == "__lambda__":
            _special("__lambda__", value.get("config"), custom_objects)  # raises
        elif isinstance(value, str) and key == "activation":
            found = get_registered_object(value, custom_objects)
            if callable(found):
                out[key] = found
    return out


def _nested_lookup(module, class_name):
    category = _category(module)
    if category in ("initializers", "regularizers", "constraints"):
        return _builtin_table(category).get(class_name)
    return None


def _takes_custom_objects(fn):
    try:
        return "custom_objects" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _learning_rate(value, custom_objects):
    if isinstance(value, dict):
        if "class_name" in value and "module" in value:
            return _deserialize(config_compat.schedule_config(value), custom_objects or {})
        return config_compat.schedule_config(value)
    return value


def compile_from_keras(cc, custom_objects=None):
    """A compile_config as clnet's compile_from_config takes it: the optimizer entry rebuilt as clnet's
    {"class_name", "config"} with its schedule fitted; losses and metrics left as named."""
    if not isinstance(cc, dict):
        raise FileFormatError("compile_config is malformed")
    cc = dict(cc)
    opt = cc.get("optimizer")
    if isinstance(opt, dict) and isinstance(opt.get("config"), dict):
        inner = dict(opt["config"])
        lr = inner.get("learning_rate")
        if isinstance(lr, dict):
            inner["learning_rate"] = {"class_name": lr.get("class_name"),
                                      "config": config_compat.schedule_config(lr).get("config", {})}
        cls = optimizers.OPTIMIZER_CLASSES.get(opt.get("class_name"))
        if cls is not None:
            inner = config_compat.fit_optimizer_config(cls, opt["class_name"], inner)
        cc["optimizer"] = {"class_name": opt.get("class_name"), "config": inner}
    for key in ("loss", "metrics", "weighted_metrics"):
        cc[key] = _strip_modules(cc.get(key))
    return cc


def _strip_modules(spec):
    if isinstance(spec, list):
        return [_strip_modules(s) for s in spec]
    if isinstance(spec, dict) and "class_name" in spec:
        if spec.get("class_name") == "function" and isinstance(spec.get("config"), str):
            return spec["config"]
        return spec
    if isinstance(spec, dict):
        return {k: _strip_modules(v) for k, v in spec.items()}
    return spec


def deserialize_layer(entry, custom_objects=None):
    """A layer from its entry in a model config (Sequential's layers, a functional model's layers)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str) or \
            not isinstance(entry.get("config"), dict):
        raise FileFormatError(f"a layer entry of the config is malformed: {str(entry)[:200]}")
    cls = find_class(entry, custom_objects)
    try:
        return instantiate(cls, entry, custom_objects)
    except (FileFormatError, TypeError):
        raise
    except ValueError as err:
        raise FileFormatError(f"cannot rebuild layer {entry['class_name']} from its saved config: {err}") from None


def model_classes():
    return builtin_objects("models")

"""model.save / keras.models.load_model / save_weights / load_weights in Keras 3's formats.

A `.keras` file is Keras 3's zip: `metadata.json`, `config.json` (the model as Keras's config dicts,
with its build and compile configs) and `model.weights.h5` (every layer's variables and the optimizer's
state, laid out as Keras lays them: state_layout, h5_store, optimizer_state). `.weights.h5` files hold
the same HDF5 tree alone. So real Keras 3 loads what clnet saves, and clnet loads what Keras saves.
Legacy `.h5` model files go through legacy_h5; clnet's earlier zip format still loads (clnet_format).

Loading reads the zip through clnet's checked reader (known member names only, sizes checked before
reading), creates only classes that are built in or that the user registered or passed, reads the HDF5
tree without following links or accepting non-numeric data, and checks every variable's count and shape
before any is assigned: a bad file raises FileFormatError (or a TypeError for an unknown class) naming
the file and the problem, and leaves the model as it was. Saving writes a temporary file and renames it
into place, so an interrupted save never leaves a half-written file under the real name.
"""
from __future__ import annotations

import datetime
import io
import json
import os
import re
import warnings

import numpy as np

import clnet
from clnet.serialization import ZipReader, write_zip

from . import clnet_format, h5_store, legacy_h5, optimizer_state, state_layout
from .clnet_format import load_training_state, save_training_state  # noqa: F401  (BackupAndRestore's files)
from .serialization_lib import DeserializationError, FileFormatError, SafeModeScope, compile_from_keras, \
    find_class, instantiate, serialize_keras_object

KERAS_API_VERSION = "3.0.0"
_CONFIG, _METADATA, _WEIGHTS = "config.json", "metadata.json", "model.weights.h5"
_MEMBERS = re.compile(r"^(metadata\.json|config\.json|model\.weights\.h5|weights\.json|optimizer\.json|"
                      r"training\.json|weights/\d{6}\.npy|optimizer/\d{6}\.npy)$")
_MAX_WEIGHTS = 1 << 40
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


# --- saving -------------------------------------------------------------------------------------------
def save_model(model, filepath, overwrite=True, include_optimizer=True):
    path = os.fspath(filepath)
    if path.endswith((".h5", ".hdf5")):
        _check_overwrite(path, overwrite)
        buf = io.BytesIO()
        legacy_h5.save_model(model, buf, include_optimizer=include_optimizer)
        _write_atomically(path, buf.getvalue())
        return
    if not path.endswith(".keras"):
        raise ValueError(f"Invalid filepath extension for saving. Please add either a `.keras` extension for the "
                         f"native Keras format (recommended) or a `.h5` extension (legacy HDF5). Received: "
                         f"filepath={path}")
    _check_overwrite(path, overwrite)
    config = model_config(model)
    weights = h5_store.write(None, _weight_entries(model, include_optimizer and config.get("compile_config")))
    members = {_METADATA: _json(metadata()), _CONFIG: _json(config), _WEIGHTS: weights}
    write_zip(path, members, deflate=(".json",), make_folder=True)


def _check_overwrite(path, overwrite):
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")


def metadata():
    return {"keras_version": KERAS_API_VERSION, "saved_by": f"clnet {getattr(clnet, '__version__', '?')}",
            "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}


def _json(obj):
    return json.dumps(obj, indent=None).encode("utf-8")


def model_config(model, compile_config=True):
    """The model's entry as Keras writes config.json: module, class_name, config, registered_name,
    build_config and (when `compile_config`) compile_config."""
    entry = serialize_keras_object(model)
    compile_config = compile_config_for_keras(model) if compile_config else None
    if compile_config is not None:
        entry["compile_config"] = compile_config
    return entry


def compile_config_for_keras(model):
    """The model's compile settings in Keras's spelling (None when not compiled or not savable)."""
    if not getattr(model, "compiled", False):
        return None
    try:
        cc = model.get_compile_config()
    except ValueError as err:
        warnings.warn(f"the model's compile settings are not saved ({err}); compile() again after loading",
                      stacklevel=4)
        return None
    if cc is None:
        return None
    cc = dict(cc)
    opt = cc.get("optimizer")
    if isinstance(opt, dict):
        inner = dict(opt.get("config") or {})
        lr = inner.get("learning_rate")
        if isinstance(lr, dict) and "module" not in lr:
            inner["learning_rate"] = {"module": "keras.optimizers.schedules", "class_name": lr.get("class_name"),
                                      "config": lr.get("config", {}), "registered_name": None}
        cc["optimizer"] = {"module": "keras.optimizers", "class_name": opt.get("class_name"), "config": inner,
                           "registered_name": None}
    for key in ("loss", "metrics", "weighted_metrics"):
        cc[key] = _keras_spec(cc.get(key))
    return cc


def _keras_spec(spec):
    """clnet's serialized losses/metrics in Keras's form (a named loss function as Keras's function entry)."""
    if isinstance(spec, list):
        return [_keras_spec(s) for s in spec]
    if isinstance(spec, dict) and spec.get("class_name") == "function" and isinstance(spec.get("config"), dict):
        config = spec["config"]
        if set(config) == {"name"}:
            return {"module": "keras.losses", "class_name": "function", "config": config["name"],
                    "registered_name": config["name"]}
        return spec
    if isinstance(spec, dict) and "class_name" in spec:
        return {"module": spec.get("module", "keras.losses"), **spec, "registered_name": spec.get("registered_name")}
    if isinstance(spec, dict):
        return {k: _keras_spec(v) for k, v in spec.items()}
    return spec


def _weight_entries(model, with_optimizer):
    entries = []
    for path, obj in state_layout.saveables(model):
        if state_layout.is_layer(obj):
            store = {}
            obj.save_own_variables(store)
            entries.append((path, obj.name, {k: _numpy(v) for k, v in store.items()}))
        elif with_optimizer:
            if not optimizer_state.supported(obj):
                warnings.warn(f"the state of optimizer {type(obj).__name__} is not saved (only its config)",
                              stacklevel=4)
                continue
            values = optimizer_state.keras_variables(obj, model.trainable_variables)
            entries.append((path, obj.name, {str(i): v for i, v in enumerate(values)}))
    return entries


def _numpy(value):
    if isinstance(value, clnet.Tensor):
        return value.numpy()
    return np.asarray(value)


def save_weights(model, filepath, overwrite=True):
    path = os.fspath(filepath)
    if not path.endswith(".weights.h5"):
        raise ValueError(f"The filename must end in `.weights.h5`. Received: filepath={path}")
    _check_overwrite(path, overwrite)
    if not model.built:
        raise ValueError("save_weights: the model has no weights yet; build it first (call it on data or give it "
                         "an input shape)")
    data = h5_store.write(None, _weight_entries(model, getattr(model, "optimizer", None) is not None))
    _write_atomically(path, data)


def _write_atomically(path, data: bytes):
    """Write bytes to `path` atomically (a temporary file in the same folder, renamed into place)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".clnet-save-{os.getpid()}-{id(data)}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


# --- loading ------------------------------------------------------------------------------------------
class _Archive(ZipReader):
    def __init__(self, path):
        super().__init__(path, _MEMBERS, "a Keras model file", error_class=FileFormatError)


def _is_clnet_format(archive):
    """clnet's earlier format has weights.json; a Keras file holds exactly Keras's three members."""
    if "weights.json" in archive.names:
        return True
    extra = sorted(archive.names - {_CONFIG, _METADATA, _WEIGHTS})
    if extra:
        raise archive.error(f"unexpected member {extra[0]!r} (the file was tampered with, or is not a Keras file)")
    return False


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):  # noqa: A002
    """Rebuild a model saved by model.save() (clnet's or Keras 3's `.keras`, or a legacy `.h5`)."""
    path = os.fspath(filepath) if not hasattr(filepath, "read") else filepath
    if isinstance(path, str) and not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    if isinstance(path, str) and _sniff(path) == "hdf5":
        return legacy_h5.load_model(path, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode)
    with _Archive(path) as archive:
        if _is_clnet_format(archive):
            archive.close()
            return clnet_format.load_model(path, custom_objects=custom_objects, compile=compile,
                                           safe_mode=safe_mode)
        return _load_keras_archive(archive, custom_objects, compile, safe_mode)


def _sniff(path):
    with open(path, "rb") as f:
        head = f.read(8)
    if head == _HDF5_MAGIC:
        return "hdf5"
    return "zip"


def _load_keras_archive(archive, custom_objects, compile, safe_mode):  # noqa: A002
    for name in (_CONFIG, _WEIGHTS):
        if name not in archive.names:
            raise archive.error(f"the member {name!r} is missing")
    config = archive.json(_CONFIG)
    weights = h5_store.read(archive.read(_WEIGHTS, limit=_MAX_WEIGHTS), f"{archive.path} ({_WEIGHTS})")
    model = rebuild_model(config, custom_objects, safe_mode, where=archive.path)
    compile_config = config.get("compile_config")
    if compile and compile_config:
        try:
            model.compile_from_config(compile_from_keras(compile_config, custom_objects))
        except (TypeError, ValueError, KeyError) as err:
            raise archive.error(f"the compile config cannot be restored: {err}") from None
    assign_weights(model, weights, archive.path, optimizer=bool(compile and compile_config))
    return model


def rebuild_model(config, custom_objects, safe_mode, where):
    """The model a config.json entry describes (built, not compiled)."""
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str) or \
            not isinstance(config.get("config"), dict):
        raise FileFormatError(f"cannot load {where}: config.json does not describe a model")
    entry = {k: v for k, v in config.items() if k != "compile_config"}
    try:
        with SafeModeScope(safe_mode):
            cls = find_class(entry, custom_objects)
            model = instantiate(cls, entry, custom_objects)
    except FileFormatError as err:
        raise type(err)(_prefixed(err, where)) from None
    except (TypeError, ValueError, KeyError) as err:
        if "safe_mode" in str(err):
            raise  # a lambda: Keras's ValueError, as it is
        error = DeserializationError if isinstance(err, TypeError) else FileFormatError
        raise error(f"cannot load {where}: the model config cannot be rebuilt: {err}") from None
    if not hasattr(model, "compile_from_config"):
        raise FileFormatError(f"cannot load {where}: config.json describes a {type(model).__name__}, not a model")
    return model


def _prefixed(err, where):
    text = str(err)
    return text if text.startswith(f"cannot load {where}") else f"cannot load {where}: {text}"


def assign_weights(model, weights, where, optimizer=True, skip_mismatch=False):
    """Give the model (and its optimizer, when `optimizer`) the variables of a Keras weights tree
    {path: {"0": array, ...}}: everything is checked first, then assigned. With `skip_mismatch`, a layer
    whose variables do not fit is left as it is (with a warning), as Keras does."""
    plan, custom, opt_entry, used = [], [], None, set()
    for path, obj in state_layout.saveables(model):
        store = weights.get(path, {})
        if not state_layout.is_layer(obj):
            if path in weights:
                used.add(path)
                opt_entry = (obj, store)
            continue
        if path in weights:
            used.add(path)
        if not state_layout.uses_default_hooks(obj):
            custom.append((obj, store))
            continue
        own = state_layout.own_variables(obj)
        try:
            plan += _layer_plan(obj, path, own, store, where)
        except FileFormatError as err:
            if not skip_mismatch:
                raise
            warnings.warn(f"Skipping variable loading for layer '{obj.name}': {err}", stacklevel=3)
    extra = sorted(p for p in weights if p not in used and weights[p])
    if extra and not skip_mismatch:
        raise FileFormatError(f"cannot load {where}: the file holds variables for {extra}, which this model does not "
                              "have (it was saved from a different architecture)")
    for v, arr in plan:
        v.assign(clnet.tensor(np.array(arr, dtype=np.dtype(v.dtype), order="C"), device=v.device))
    for obj, store in custom:
        obj.load_own_variables(store)
    if optimizer and opt_entry is not None:
        _load_optimizer(model, *opt_entry)


def _layer_plan(obj, path, own, store, where):
    """[(variable, array)] for one layer, or FileFormatError naming what does not fit."""
    if len(store) != len(own):
        raise FileFormatError(
            f"cannot load {where}: Layer '{obj.name}' (at '{path or 'the top'}' in the file) expected {len(own)} "
            f"variables, but received {len(store)} variables during loading. Expected: "
            f"{[_short(v) for v in own]}")
    plan = []
    for i, v in enumerate(own):
        if str(i) not in store:
            raise FileFormatError(f"cannot load {where}: variable '{i}' of layer '{obj.name}' is missing")
        arr = store[str(i)]
        if tuple(arr.shape) != tuple(v.shape):
            raise FileFormatError(
                f"cannot load {where}: the variable {i} of layer '{obj.name}' ({_short(v)}) has shape "
                f"{tuple(arr.shape)} in the file, but the model's {getattr(v, 'path', '')} has shape "
                f"{tuple(v.shape)}")
        plan.append((v, arr))
    return plan


def _short(v):
    return (getattr(v, "path", "") or "").rpartition("/")[2] or getattr(v, "name", "?")


def _load_optimizer(model, opt, store):
    if not optimizer_state.supported(opt):
        warnings.warn(f"the saved state of optimizer {type(opt).__name__} is not restored", stacklevel=4)
        return
    values = [store[str(i)] for i in range(len(store)) if str(i) in store]
    variables = model.trainable_variables
    try:
        optimizer_state.load_keras_variables(opt, variables, values)
    except ValueError as err:
        warnings.warn(f"Skipping variable loading for optimizer '{opt.name}': {err}", stacklevel=4)


def load_weights(model, filepath, skip_mismatch=False):
    """Assign a model's weights from a `.weights.h5`, a `.keras` file, a legacy `.h5` or clnet's earlier zip;
    `skip_mismatch` leaves layers whose saved variables do not fit as they are (Keras format only)."""
    path = os.fspath(filepath)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    if not model.built:
        raise ValueError("load_weights: build the model first (call it on data or give it an input shape) so its "
                         "weights exist")
    if _sniff(path) == "hdf5":
        if path.endswith(".weights.h5") or not legacy_h5.is_legacy(path):
            assign_weights(model, h5_store.read(path, path), path, skip_mismatch=skip_mismatch)
        else:
            legacy_h5.load_weights(model, path)
        return
    with _Archive(path) as archive:
        if _is_clnet_format(archive):
            archive.close()
            clnet_format.load_weights(model, path)
            return
        if _WEIGHTS not in archive.names:
            raise archive.error(f"the member {_WEIGHTS!r} is missing")
        weights = h5_store.read(archive.read(_WEIGHTS, limit=_MAX_WEIGHTS), f"{archive.path} ({_WEIGHTS})")
    assign_weights(model, weights, path, skip_mismatch=skip_mismatch)

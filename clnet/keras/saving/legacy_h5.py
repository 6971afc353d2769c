"""Legacy HDF5 model files (`model.save("m.h5")`, tf.keras 2's format, which Keras 3 still reads and writes).

One HDF5 file: attributes `model_config` (the architecture as JSON) and `training_config` (compile
settings as JSON); group `model_weights` with attribute `layer_names` and, per layer, a group whose
attribute `weight_names` lists its datasets (trainable weights first, then the others); and, when
there is optimizer state, group `optimizer_weights` (attribute `weight_names`, in the order of Keras's
optimizer.variables). Weights are matched to layers by position among the layers that have weights,
as Keras does. Reading follows no links and accepts only numeric datasets and string attributes.
"""
from __future__ import annotations

import json
import warnings

import numpy as np

import clnet

from . import h5_store, optimizer_state
from .object_registration import builtin_objects
from .serialization_lib import FileFormatError, SafeModeScope, compile_from_keras, find_class, instantiate, \
    serialize_keras_object

_BACKEND = "clnet"


def is_legacy(path) -> bool:
    """Whether an HDF5 file is a legacy model/weights file (it has `model_weights` or `layer_names`)."""
    h5py = h5_store._h5py()
    try:
        with h5py.File(path, "r") as f:
            return "model_weights" in f or "layer_names" in f.attrs
    except (OSError, ValueError):
        return False  # not readable: the weights reader names the problem


def _legacy_weights(layer):
    return list(layer.trainable_weights) + list(layer.non_trainable_weights)


def _names(variables):
    names, seen = [], set()
    for i, v in enumerate(variables):
        name = getattr(v, "path", None) or f"weight_{i}"
        if name in seen:
            name = f"{name}_{i}"
        seen.add(name)
        names.append(name)
    return names


def save_model(model, target, include_optimizer=True):
    """Write the model as a legacy HDF5 file into `target` (a path or a writable binary file object)."""
    h5py = h5_store._h5py()
    models = builtin_objects("models")
    if not isinstance(model, (models["Sequential"], models["Functional"])):
        raise NotImplementedError("Saving the model to HDF5 format requires the model to be a Functional model or a "
                                  "Sequential model. It does not work for subclassed models. Save it in the `.keras` "
                                  "format instead: model.save('model.keras')")
    config = serialize_keras_object(model)
    config.pop("build_config", None)
    compile_config = None
    if getattr(model, "compiled", False):
        try:
            compile_config = model.get_compile_config()
        except ValueError as err:
            warnings.warn(f"the model's compile settings are not saved ({err})", stacklevel=4)
    with h5py.File(target, "w") as f:
        f.attrs["backend"] = _BACKEND
        f.attrs["keras_version"] = "3.0.0"
        f.attrs["model_config"] = json.dumps({"class_name": config["class_name"], "config": config["config"]})
        if compile_config is not None:
            training = {k: compile_config.get(k) for k in ("loss", "loss_weights", "metrics", "weighted_metrics")}
            training["optimizer_config"] = compile_config.get("optimizer")
            f.attrs["training_config"] = json.dumps(training)
        group = f.create_group("model_weights")
        group.attrs["layer_names"] = [layer.name.encode("utf8") for layer in model.layers]
        group.attrs["backend"] = _BACKEND
        group.attrs["keras_version"] = "3.0.0"
        for layer in sorted(model.layers, key=lambda x: x.name):
            _write_subset(group.create_group(layer.name), _legacy_weights(layer))
        _write_subset(group.create_group("top_level_model_weights"), [])
        opt = getattr(model, "optimizer", None)
        if include_optimizer and compile_config is not None and opt is not None and optimizer_state.supported(opt):
            values = optimizer_state.keras_variables(opt, model.trainable_variables)
            og = f.create_group("optimizer_weights")
            names = [f"{opt.name}/variable_{i}" for i in range(len(values))]
            og.attrs["weight_names"] = [n.encode("utf8") for n in names]
            for name, value in zip(names, values):
                og.create_dataset(name, data=value)


def _write_subset(group, variables):
    names = _names(variables)
    group.attrs["weight_names"] = [n.encode("utf8") for n in names]
    for name, v in zip(names, variables):
        group.create_dataset(name, data=v.numpy())


# --- reading --------------------------------------------------------------------------------------------
def _attr_strings(obj, name, where):
    value = obj.attrs.get(name)
    if value is None:
        chunks, k = [], 0
        while f"{name}{k}" in obj.attrs:
            chunks.extend(obj.attrs[f"{name}{k}"])
            k += 1
        value = chunks if k else []
    if isinstance(value, (bytes, str)):
        value = [value]
    out = []
    for item in np.asarray(value).reshape(-1).tolist() if len(value) else []:
        if isinstance(item, bytes):
            item = item.decode("utf-8")
        if not isinstance(item, str):
            raise FileFormatError(f"cannot load {where}: attribute {name!r} should hold names, got {item!r}")
        out.append(item)
    return out


def _text_attr(f, name):
    value = f.attrs.get(name)
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    return value


def _dataset(h5py, group, name, where):
    parts = [p for p in name.split("/") if p]
    node = group
    for part in parts:
        if part in ("", ".", ".."):
            raise FileFormatError(f"cannot load {where}: invalid weight name {name!r}")
        link = node.get(part, getlink=True)
        if link is None:
            raise FileFormatError(f"cannot load {where}: the weight {name!r} is missing")
        if not isinstance(link, h5py.HardLink):
            raise FileFormatError(f"cannot load {where}: {name!r} is a link (refused)")
        node = node[part]
    if not isinstance(node, h5py.Dataset) or node.dtype.kind not in "biuf":
        raise FileFormatError(f"cannot load {where}: {name!r} is not a numeric dataset")
    return np.array(node[()])


def _layer_values(h5py, group, where):
    """[(layer name, [arrays])] of the layers that have weights, in the file's layer order."""
    out = []
    for name in _attr_strings(group, "layer_names", where):
        if name not in group:
            raise FileFormatError(f"cannot load {where}: the group of layer {name!r} is missing")
        layer_group = group[name]
        weight_names = _attr_strings(layer_group, "weight_names", where)
        if weight_names:
            out.append((name, [_dataset(h5py, layer_group, w, where) for w in weight_names]))
    return out


def _assign_layers(model, saved, where):
    layers = [layer for layer in model.layers if _legacy_weights(layer)]
    if len(saved) != len(layers):
        raise FileFormatError(f"cannot load {where}: Layer count mismatch when loading weights from file. Model "
                              f"expected {len(layers)} layers, found {len(saved)} saved layers.")
    plan = []
    for k, ((name, values), layer) in enumerate(zip(saved, layers)):
        variables = _legacy_weights(layer)
        if len(values) != len(variables):
            raise FileFormatError(f"cannot load {where}: Weight count mismatch for layer #{k} (named {layer.name} in "
                                  f"the current model, {name} in the save file). Layer expects {len(variables)} "
                                  f"weight(s). Received {len(values)} saved weight(s)")
        for v, arr in zip(variables, values):
            if tuple(arr.shape) != tuple(v.shape):
                raise FileFormatError(f"cannot load {where}: shape mismatch in layer #{k} (named {layer.name}): the "
                                      f"file holds {tuple(arr.shape)} for {v.path}, which has shape {tuple(v.shape)}")
            plan.append((v, arr))
    for v, arr in plan:
        v.assign(clnet.tensor(np.array(arr, dtype=np.dtype(v.dtype), order="C"), device=v.device))


def _open(path):
    h5py = h5_store._h5py()
    try:
        return h5py, h5py.File(path, "r")
    except (OSError, ValueError) as err:
        raise FileFormatError(f"cannot load {path}: not a valid HDF5 file: {err}") from None


def load_weights(model, path):
    h5py, f = _open(path)
    with f:
        group = f["model_weights"] if "model_weights" in f else f
        _assign_layers(model, _layer_values(h5py, group, path), path)


def load_model(path, custom_objects=None, compile=True, safe_mode=True):  # noqa: A002
    h5py, f = _open(path)
    with f:
        text = _text_attr(f, "model_config")
        if text is None:
            raise FileFormatError(f"cannot load {path}: No model config found in the file (not a model file; for a "
                                  "weights file use model.load_weights)")
        try:
            config = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as err:
            raise FileFormatError(f"cannot load {path}: model_config is not valid JSON: {err}") from None
        if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
            raise FileFormatError(f"cannot load {path}: model_config does not describe a model")
        try:
            with SafeModeScope(safe_mode):
                model = instantiate(find_class(config, custom_objects), config, custom_objects)
        except FileFormatError as err:
            raise type(err)(f"cannot load {path}: {err}") from None
        if "model_weights" not in f:
            raise FileFormatError(f"cannot load {path}: the group 'model_weights' is missing")
        saved = _layer_values(h5py, f["model_weights"], path)
        training = _text_attr(f, "training_config")
        opt_values = None
        if compile and training is not None:
            try:
                tc = json.loads(training)
                cc = {"optimizer": tc.get("optimizer_config"), "loss": tc.get("loss"),
                      "loss_weights": tc.get("loss_weights"), "metrics": tc.get("metrics"),
                      "weighted_metrics": tc.get("weighted_metrics")}
                model.compile_from_config(compile_from_keras(cc, custom_objects))
            except (TypeError, ValueError, KeyError, json.JSONDecodeError) as err:
                warnings.warn(f"{path}: the model was not compiled ({err}); compile() it again", stacklevel=3)
            if "optimizer_weights" in f and getattr(model, "optimizer", None) is not None:
                og = f["optimizer_weights"]
                opt_values = [_dataset(h5py, og, n, path) for n in _attr_strings(og, "weight_names", path)]
        _assign_layers(model, saved, path)
        if opt_values is not None and optimizer_state.supported(model.optimizer):
            try:
                optimizer_state.load_keras_variables(model.optimizer, model.trainable_variables, opt_values)
            except ValueError as err:
                warnings.warn(f"{path}: the optimizer state was not restored ({err})", stacklevel=3)
    return model

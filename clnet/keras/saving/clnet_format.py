"""clnet's own zip of JSON and .npy members: what clnet wrote for `.keras` files before it wrote Keras 3's
format (those files still load), and still the format of BackupAndRestore's training-state files, which
hold what Keras's format has no place for (the epoch, the shuffling RNG, the device RNG).

A file holds:
    metadata.json        format name, clnet version, date
    config.json          the model's architecture (layer class names + their configs) and compile config
    weights.json         manifest: for each weight its path, shape, dtype and member name
    weights/NNNNNN.npy   the weights, in model.weights order (Keras layouts)
    optimizer.json       optimizer config + state manifest;  optimizer/NNNNNN.npy  its state arrays
    training.json        (training-state files of BackupAndRestore) epoch and shuffling RNG state

Loading checks every member name against that list (no paths, no extras, no duplicates), reads arrays with
np.load(allow_pickle=False), compares every shape and dtype with the manifest and the rebuilt model, and
only creates layers whose class names are in keras.layers (or registered by the user). Any problem raises
FileFormatError (a ValueError) naming the file and what was wrong; the model is left untouched.
Files are written to a temporary name in the same folder and renamed into place, so a crash mid-save
never leaves a half-written file under the real name. The zip container (atomic writing, the checked
reader) is clnet.serialization's, shared with clnet.save/clnet.load.
"""
from __future__ import annotations

import datetime
import json
import os
import re

import numpy as np

import clnet
from clnet.ops import random as _random
from clnet.serialization import ZipReader, npy_bytes, write_zip

from .serialization_lib import FileFormatError, model_classes

FORMAT = "clnet.keras/1"
_MEMBER = re.compile(r"^(metadata\.json|config\.json|weights\.json|optimizer\.json|training\.json|"
                     r"weights/\d{6}\.npy|optimizer/\d{6}\.npy)$")


# --- writing ----------------------------------------------------------------------------------------
def _json(obj):
    return json.dumps(obj, indent=1, sort_keys=True).encode("utf-8")


def _write(path, members, overwrite=True):
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    write_zip(path, members, deflate=(".json",), make_folder=True)


def _metadata(kind):
    return {"format": FORMAT, "kind": kind, "clnet_version": getattr(clnet, "__version__", "?"),
            "date_saved": datetime.datetime.now().isoformat(timespec="seconds")}


def _weight_members(variables, folder="weights"):
    manifest, members = [], {}
    for i, v in enumerate(variables):
        arr = v.numpy() if isinstance(v, clnet.Tensor) else np.asarray(v)
        member = f"{folder}/{i:06d}.npy"
        manifest.append({"path": getattr(v, "path", None) or f"weight_{i}", "shape": list(arr.shape),
                         "dtype": arr.dtype.name, "file": member})
        members[member] = npy_bytes(arr)
    return manifest, members


def _optimizer_members(model):
    opt = getattr(model, "optimizer", None)
    if opt is None:
        return {}
    meta, arrays = opt.state_arrays(model.trainable_variables)
    manifest, members = [], {}
    for i, (key, arr) in enumerate(sorted(arrays.items())):
        member = f"optimizer/{i:06d}.npy"
        manifest.append({"key": key, "shape": list(arr.shape), "dtype": arr.dtype.name, "file": member})
        members[member] = npy_bytes(arr)
    members["optimizer.json"] = _json({"config": {"class_name": type(opt).__name__, "config": opt.get_config()},
                                       "iterations": meta["iterations"],
                                       "steps": meta["steps"], "arrays": manifest})
    return members


# --- reading ----------------------------------------------------------------------------------------
class _Archive(ZipReader):
    """clnet.serialization's checked zip reader, for the members of a `.keras` file."""

    def __init__(self, path):
        super().__init__(path, _MEMBER, "a clnet Keras file", error_class=FileFormatError)

    def check_format(self, kinds):
        meta = self.json("metadata.json")
        if meta.get("format") != FORMAT:
            raise self.error(f"unknown format {meta.get('format')!r} (expected {FORMAT!r})")
        if meta.get("kind") not in kinds:
            raise self.error(f"this file holds {meta.get('kind')!r}, expected one of {kinds}")
        return meta


def _read_weights(archive, variables):
    """The arrays for `variables`, checked against the manifest and the variables' shapes (nothing assigned)."""
    manifest = archive.json("weights.json").get("weights")
    if not isinstance(manifest, list):
        raise archive.error("weights.json has no list of weights")
    if len(manifest) != len(variables):
        raise archive.error(f"the file holds {len(manifest)} weights, but the model has {len(variables)}")
    _check_listed(archive, "weights/", manifest)
    arrays = []
    for i, (entry, v) in enumerate(zip(manifest, variables)):
        arr = archive.array(entry, "weight")
        if tuple(arr.shape) != tuple(v.shape):
            raise archive.error(f"weight {i} ({entry.get('path')}) has shape {tuple(arr.shape)} in the file, but the "
                                f"model's {getattr(v, 'path', '')} has shape {tuple(v.shape)}")
        arrays.append(arr.astype(v.dtype, copy=False))
    return arrays


def _assign(variables, arrays):
    for v, arr in zip(variables, arrays):
        v.assign(clnet.tensor(np.array(arr, order="C"), device=v.device))


def _check_listed(archive, prefix, entries):
    """Every member under `prefix` must be named by its manifest: an extra array means tampering."""
    listed = {e.get("file") for e in entries if isinstance(e, dict)}
    for name in sorted(archive.names):
        if name.startswith(prefix) and name not in listed:
            raise archive.error(f"unexpected member {name!r}: no manifest lists it (the file was tampered with)")


def _read_optimizer_state(archive):
    if "optimizer.json" not in archive.names:
        _check_listed(archive, "optimizer/", [])
        return None
    info = archive.json("optimizer.json")
    entries = info.get("arrays")
    if not isinstance(entries, list) or not isinstance(info.get("steps", {}), dict):
        raise archive.error("optimizer.json is malformed")
    _check_listed(archive, "optimizer/", entries)
    arrays = {}
    for entry in entries:
        key = entry.get("key") if isinstance(entry, dict) else None
        if not isinstance(key, str) or not re.match(r"^\d+/[A-Za-z_]+$", key):
            raise archive.error(f"optimizer.json names an invalid state entry {str(key)[:100]!r}")
        arrays[key] = archive.array(entry, "optimizer state")
    steps = info.get("steps", {})
    for key, value in steps.items():
        if not re.match(r"^\d+/[A-Za-z_]+$", key) or not isinstance(value, (int, float)):
            raise archive.error(f"optimizer.json has an invalid step entry {key!r}")
    return info, arrays


def _load_optimizer(archive, model, state):
    if state is None or model.optimizer is None:
        return
    info, arrays = state
    variables = model.trainable_variables
    for key, arr in arrays.items():
        index = int(key.split("/")[0])
        if index >= len(variables) or tuple(arr.shape) != tuple(variables[index].shape):
            raise archive.error(f"optimizer state {key} does not fit the model's trainable variables")
    model.optimizer.load_state_arrays(variables, {"iterations": int(info.get("iterations", 0)),
                                                  "steps": info.get("steps", {})}, arrays)


def _with_archive(path, fn):
    with _Archive(path) as archive:
        return fn(archive)


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """Rebuild a model from a file in clnet's earlier format."""
    def load(archive):
        archive.check_format(("model",))
        config = archive.json("config.json")
        classes = model_classes()
        if config.get("class_name") not in classes or not isinstance(config.get("config"), dict):
            raise archive.error(f"unknown model class {config.get('class_name')!r} (expected one of "
                                f"{', '.join(classes)})")
        try:
            model = classes[config["class_name"]].from_config(config["config"], custom_objects=custom_objects)
        except FileFormatError as err:
            raise archive.error(str(err)) from None
        except (TypeError, ValueError, KeyError) as err:
            raise archive.error(f"the model config cannot be rebuilt: {err}") from None
        weights = _read_weights(archive, model.weights)
        opt_state = _read_optimizer_state(archive)
        compile_config = config.get("compile_config")
        if compile and compile_config:
            _compile_from_config(archive, model, compile_config)
        _assign(model.weights, weights)
        if compile and compile_config:
            _load_optimizer(archive, model, opt_state)
        return model
    return _with_archive(filepath, load)


def _compile_from_config(archive, model, cc):
    if not isinstance(cc, dict):
        raise archive.error("compile_config is malformed")
    try:
        model.compile_from_config(cc)
    except (TypeError, ValueError, KeyError) as err:
        raise archive.error(f"the compile config cannot be restored: {err}") from None


def load_weights(model, filepath, skip_mismatch=False):
    if skip_mismatch:
        raise NotImplementedError("load_weights(skip_mismatch=True) is not supported yet")
    if not model.built:
        raise ValueError("load_weights: build the model first (call it on data or give it an input shape) so its "
                         "weights exist")

    def load(archive):
        archive.check_format(("weights", "model", "training_state"))
        weights = _read_weights(archive, model.weights)
        _read_optimizer_state(archive)  # not used here, but a tampered optimizer part is still refused
        _assign(model.weights, weights)
    _with_archive(filepath, load)


# --- training state (BackupAndRestore) --------------------------------------------------------------
def save_training_state(path, model, epoch):
    manifest, members = _weight_members(model.weights)
    members.update({"metadata.json": _json(_metadata("training_state")), "weights.json": _json({"weights": manifest})})
    members.update(_optimizer_members(model))
    rng = model._fit_rng.bit_generator.state if model._fit_rng is not None else None
    members["training.json"] = _json({"epoch": int(epoch), "fit_rng": rng, "device_rng": _device_rng_state()})
    _write(path, members, overwrite=True)


def load_training_state(path, model):
    """Restore weights, optimizer state and RNGs; returns the number of finished epochs."""
    def load(archive):
        archive.check_format(("training_state",))
        info = archive.json("training.json")
        epoch = info.get("epoch")
        if not isinstance(epoch, int) or epoch < 0:
            raise archive.error(f"training.json has an invalid epoch {epoch!r}")
        weights = _read_weights(archive, model.weights)
        opt_state = _read_optimizer_state(archive)
        _assign(model.weights, weights)
        _load_optimizer(archive, model, opt_state)
        rng = info.get("fit_rng")
        if rng is not None:
            try:
                gen = np.random.default_rng()
                gen.bit_generator.state = rng
            except (TypeError, ValueError, KeyError) as err:
                raise archive.error(f"training.json has an invalid RNG state: {err}") from None
            model._fit_rng = gen
        try:
            _set_device_rng_state(info.get("device_rng"))
        except (TypeError, ValueError) as err:
            raise archive.error(f"training.json has an invalid device RNG state: {err}") from None
        return epoch
    return _with_archive(path, load)


def _device_rng_state():
    """clnet's device generator state when clnet.ops.random exposes one (dropout masks), else None."""
    getter = getattr(_random, "get_rng_state", None)
    if getter is None:
        return None
    state = getter()
    try:
        json.dumps(state)
    except TypeError:
        return None
    return state


def _set_device_rng_state(state):
    if state is None:
        return
    setter = getattr(_random, "set_rng_state", None)
    if setter is not None:
        setter(state)

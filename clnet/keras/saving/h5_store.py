"""Keras 3's weights file (`model.weights.h5` inside a `.keras` zip, or a `.weights.h5` file), through h5py.

Layout: every object that owns state (a layer, a model, the optimizer) has a group `<path>/vars` (`vars`
at the top for the model itself) with an attribute `name` and one dataset per variable, named "0", "1",
... in the object's order. Paths come from clnet.keras.saving.state_layout.

Reading never follows soft or external links, accepts only groups and numeric datasets (no object,
string or compound dtypes: nothing in the file is unpickled or evaluated), and refuses files nested
deeper than Keras writes; every problem raises FileFormatError naming the file.
"""
from __future__ import annotations

import io

import numpy as np

from .serialization_lib import FileFormatError

_MAX_DEPTH = 64
_KINDS = "biuf"


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError("Keras weight files (.keras, .weights.h5, .h5) are HDF5 files: install h5py "
                          "(`pip install h5py`, or clnet's `keras` extra) to save and load them") from None
    return h5py


def write(target, entries) -> bytes | None:
    """Write [(path, name, {key: array})] into an HDF5 file at `target` (a path), or return its bytes when
    `target` is None. Objects with no variables still get their (empty) group, as Keras writes them."""
    h5py = _h5py()
    buf = io.BytesIO() if target is None else None
    with h5py.File(buf if buf is not None else target, "w") as f:
        for path, name, arrays in entries:
            group = f.create_group(f"{path}/vars" if path else "vars")
            if name is not None:
                group.attrs["name"] = name
            for key, value in arrays.items():
                group.create_dataset(key, data=np.asarray(value))
    return buf.getvalue() if buf is not None else None


def read(source, label) -> dict:
    """{path: {key: ndarray}} of every `vars` group in the HDF5 file `source` (a path or bytes); `label`
    names the file in errors."""
    h5py = _h5py()
    try:
        f = h5py.File(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source, "r")
    except (OSError, ValueError) as err:
        raise FileFormatError(f"cannot load {label}: not a valid HDF5 weights file (corrupted or truncated?): "
                              f"{err}") from None
    out = {}
    try:
        with f:
            _collect(h5py, f, "", out, label, 0)
    except FileFormatError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise FileFormatError(f"cannot load {label}: the HDF5 weights file is damaged: {err}") from None
    return out


def _collect(h5py, group, path, out, label, depth):
    if depth > _MAX_DEPTH:
        raise FileFormatError(f"cannot load {label}: the weights file is nested more than {_MAX_DEPTH} levels deep")
    for key in group.keys():
        link = group.get(key, getlink=True)
        if not isinstance(link, h5py.HardLink):
            raise FileFormatError(f"cannot load {label}: {path}/{key} is a {type(link).__name__} (links are "
                                  "refused: a Keras weights file has none)")
        child = group[key]
        where = f"{path}/{key}" if path else key
        if key == "vars" and isinstance(child, h5py.Group):
            out[path] = _read_vars(h5py, child, where, label)
        elif isinstance(child, h5py.Group):
            _collect(h5py, child, where, out, label, depth + 1)
        else:
            raise FileFormatError(f"cannot load {label}: unexpected dataset {where!r} outside a `vars` group")


def _read_vars(h5py, group, where, label):
    arrays = {}
    for key in group.keys():
        link = group.get(key, getlink=True)
        child = group[key] if isinstance(link, h5py.HardLink) else None
        if not isinstance(child, h5py.Dataset):
            raise FileFormatError(f"cannot load {label}: {where}/{key} is not a dataset (or is a link)")
        if child.dtype.kind not in _KINDS:
            raise FileFormatError(f"cannot load {label}: {where}/{key} holds {child.dtype} data; only numbers are "
                                  "accepted in a weights file")
        arrays[key] = np.array(child[()])
    return arrays

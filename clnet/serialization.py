"""clnet.save / clnet.load: checkpoints as data, never code.

    clnet.save({"model": model.state_dict(), "optim": opt.state_dict(), "epoch": 3}, "ckpt.npz")
    ckpt = clnet.load("ckpt.npz")               # tensors on the default device (device= to choose)
    model.load_state_dict(ckpt["model"])

What can be saved: tensors, numpy arrays (numeric or bool), None, bool, int, float, str, and dicts
(str or int keys), lists and tuples of those, nested. Anything else (a Module, a function, an object)
raises TypeError naming where it sits: save `model.state_dict()`, not the model.

The file is a zip that numpy reads as an .npz (`np.load(path, allow_pickle=False)` works):
    manifest.json        format name, clnet version, the nested structure with every leaf, and for
                         each array its member, shape, dtype and whether it was a tensor
    arrays/NNNNNN.npy    the arrays, written with allow_pickle=False
Loading accepts exactly those member names (no paths, no extras, no duplicates, every array listed
once), reads arrays with allow_pickle=False and compares each shape and dtype with the manifest; it
never unpickles, imports or evaluates anything and extracts nothing to disk. Any problem raises
clnet.FileFormatError (a ValueError) naming the file and what is wrong. Saving writes a temporary file in
the same folder and renames it into place, so an interrupted save never leaves a half-written file.

The zip container itself (atomic writing, and ZipReader: member names, sizes, JSON and .npy members read
with those checks) is shared with clnet.keras's `.keras` files, so both formats are checked the same way.
"""
from __future__ import annotations

import io
import json
import math
import numbers
import os
import re
import tempfile
import zipfile
import zlib

import numpy as np

from .errors import FileFormatError
from .tensor import Tensor

FORMAT = "clnet.save/1"
_MANIFEST = "manifest.json"
_MEMBER = re.compile(r"^(manifest\.json|arrays/\d{6}\.npy)$")
_MAX_JSON = 64 * 2**20
_MAX_DEPTH = 64
_KINDS = "biuf"   # bool, signed/unsigned int, float: numpy dtypes that hold no Python objects


# --- the zip container (shared with clnet.keras.saving) -------------------------------------------------
def npy_bytes(arr: np.ndarray) -> bytes:
    """`arr` as the bytes of a .npy file, written without pickle."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(arr, order="C"), allow_pickle=False)  # (ascontiguousarray makes 0-d arrays 1-d)
    return buf.getvalue()


def write_zip(path, members: dict, deflate: tuple = (), make_folder: bool = False) -> None:
    """Write `members` (name -> bytes) as a zip at `path`, atomically: a temporary file in the same folder is
    written, fsynced and renamed into place, so an interrupted save leaves the previous file (or none).
    Members whose names end with one of `deflate` are compressed, the others stored; `make_folder` creates
    the missing folders of `path`."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if make_folder:
        os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".clnet-save-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w") as zf:
                for name, data in members.items():
                    kind = zipfile.ZIP_DEFLATED if deflate and name.endswith(deflate) else zipfile.ZIP_STORED
                    zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data, compress_type=kind)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


class ZipReader:
    """Validated, read-only access to a saved zip. Every member name must match `members` (a compiled regex:
    no paths, no extras) and appear once; a member's size is checked before it is read; JSON must parse to an
    object; arrays are read with allow_pickle=False and must have the dtype and shape their manifest entry
    declares. Nothing is extracted, imported or evaluated. Every problem raises `error_class` (a
    FileFormatError) naming the file; `file_kind` says what the file should have been.
    Use it as a context manager, or call close()."""

    def __init__(self, path, members, file_kind: str, error_class=FileFormatError):
        self.path = os.fspath(path)
        self.error_class = error_class
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"no such file: {self.path}")
        try:
            self.zf = zipfile.ZipFile(self.path)
            infos = self.zf.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as err:
            raise self.error(f"not a valid zip archive (corrupted or truncated?): {err}") from None
        try:
            names = [i.filename for i in infos]
            if len(set(names)) != len(names):
                raise self.error("duplicate member names (the file was tampered with)")
            for name in names:
                if not members.match(name):
                    raise self.error(f"unexpected member {name!r} (the file was tampered with, or is not "
                                     f"{file_kind})")
        except BaseException:
            self.zf.close()
            raise
        self.sizes = {i.filename: i.file_size for i in infos}
        self.names = set(names)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self.zf.close()

    def error(self, message: str) -> FileFormatError:
        return self.error_class(f"cannot load {self.path}: {message}")

    def read(self, name: str, limit: int | None = None) -> bytes:
        """The bytes of member `name`, refused when it is missing, larger than `limit` or damaged."""
        if name not in self.sizes:
            raise self.error(f"the member {name!r} is missing")
        if limit is not None and self.sizes[name] > limit:
            raise self.error(f"the member {name!r} is implausibly large ({self.sizes[name]} bytes)")
        try:
            return self.zf.read(name)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError) as err:
            raise self.error(f"the member {name!r} is damaged: {err}") from None

    def json(self, name: str, limit: int = _MAX_JSON) -> dict:
        """Member `name` parsed as JSON, which must be an object."""
        try:
            value = json.loads(self.read(name, limit).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
            raise self.error(f"the member {name!r} is not valid JSON: {err}") from None
        if not isinstance(value, dict):
            raise self.error(f"the member {name!r} should hold a JSON object")
        return value

    def array(self, entry, what: str, file: str | None = None) -> np.ndarray:
        """The array a manifest entry {"file", "shape", "dtype"} describes (`what` names its kind in messages;
        `file`, when given, is the member the entry must name)."""
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or \
                (file is not None and entry["file"] != file) or \
                not isinstance(entry.get("shape"), list) or not isinstance(entry.get("dtype"), str):
            raise self.error(f"malformed {what} manifest entry: {str(entry)[:200]}")
        label = f"{what} {entry['file']}"
        try:
            shape = tuple(int(s) for s in entry["shape"])
            dtype = np.dtype(entry["dtype"])
        except (TypeError, ValueError) as err:
            raise self.error(f"malformed {what} manifest entry {entry['file']}: {err}") from None
        if dtype.kind not in _KINDS or any(s < 0 for s in shape):
            raise self.error(f"{label} declares dtype {dtype} and shape {shape}")
        data = self.read(entry["file"], limit=math.prod(shape) * dtype.itemsize + 4096)
        try:
            arr = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, EOFError, OSError) as err:
            raise self.error(f"{label} is not a valid .npy array (pickled objects are refused): {err}") from None
        if not isinstance(arr, np.ndarray) or arr.dtype != dtype or arr.shape != shape:
            raise self.error(f"{label} holds {getattr(arr, 'dtype', '?')} {getattr(arr, 'shape', '?')}, "
                             f"but the manifest says {dtype} {shape}")
        return arr


# --- saving ---------------------------------------------------------------------------------------------
def _encode(obj, arrays: list, where: str, depth: int = 0):
    """The JSON node for `obj`; arrays are appended to `arrays` and referred to by index."""
    if depth > _MAX_DEPTH:
        raise ValueError(f"clnet.save: {where} is nested more than {_MAX_DEPTH} levels deep")
    if obj is None:
        return {"none": None}
    if isinstance(obj, (bool, np.bool_)):
        return {"bool": bool(obj)}
    if isinstance(obj, numbers.Integral):
        return {"int": str(int(obj))}
    if isinstance(obj, numbers.Real):
        return {"float": repr(float(obj))}
    if isinstance(obj, str):
        return {"str": obj}
    if isinstance(obj, Tensor):
        arr = obj.detach().numpy()
        arrays.append((arr, {"tensor": True, "requires_grad": bool(obj.requires_grad)}))
        return {"array": len(arrays) - 1}
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in _KINDS:
            raise TypeError(f"clnet.save: {where} is a numpy array of dtype {obj.dtype}; only numeric and bool "
                            "arrays are saved (nothing that needs pickle)")
        arrays.append((obj, {"tensor": False}))
        return {"array": len(arrays) - 1}
    if isinstance(obj, dict):
        items = []
        for key, value in obj.items():
            if isinstance(key, bool) or not isinstance(key, (str, numbers.Integral)):
                raise TypeError(f"clnet.save: {where} has a key {key!r} of type {type(key).__name__}; "
                                "keys must be str or int")
            key_node = {"str": key} if isinstance(key, str) else {"int": str(int(key))}
            items.append([key_node, _encode(value, arrays, f"{where}[{key!r}]", depth + 1)])
        return {"dict": items}
    if isinstance(obj, (list, tuple)):
        kind = "list" if isinstance(obj, list) else "tuple"
        return {kind: [_encode(v, arrays, f"{where}[{i}]", depth + 1) for i, v in enumerate(obj)]}
    hint = " (save module.state_dict(), not the module)" if hasattr(obj, "state_dict") else ""
    raise TypeError(f"clnet.save: {where} is a {type(obj).__name__}{hint}; clnet.save stores tensors, numeric "
                    "arrays, None, bool, int, float, str and dicts/lists/tuples of them")


def save(obj, path) -> None:
    """Write `obj` (tensors, arrays, numbers, strings, None, and dicts/lists/tuples of them) to `path`."""
    path = os.fspath(path)
    arrays: list = []
    tree = _encode(obj, arrays, "the object")
    manifest, members = [], {}
    for i, (arr, info) in enumerate(arrays):
        member = f"arrays/{i:06d}.npy"
        manifest.append({"file": member, "shape": list(arr.shape), "dtype": arr.dtype.str, **info})
        members[member] = npy_bytes(arr)
    from . import __version__
    head = {"format": FORMAT, "clnet_version": __version__, "tree": tree, "arrays": manifest}
    members = {_MANIFEST: json.dumps(head, separators=(",", ":")).encode("utf-8"), **members}
    write_zip(path, members)


# --- loading --------------------------------------------------------------------------------------------
def _open(path: str) -> ZipReader:
    return ZipReader(path, _MEMBER, "a file written by clnet.save")


def _manifest(reader: ZipReader) -> dict:
    head = reader.json(_MANIFEST)
    if head.get("format") != FORMAT:
        raise reader.error(f"unknown format {head.get('format')!r} (expected {FORMAT!r})")
    if not isinstance(head.get("arrays"), list) or "tree" not in head:
        raise reader.error(f"{_MANIFEST} lacks its list of arrays or its tree")
    return head


def _decode(node, leaves: list, reader: ZipReader, depth: int = 0):
    if depth > _MAX_DEPTH:
        raise reader.error(f"the structure is nested more than {_MAX_DEPTH} levels deep")
    if not isinstance(node, dict) or len(node) != 1:
        raise reader.error(f"malformed node in the manifest: {str(node)[:200]}")
    (kind, value), = node.items()
    try:
        if kind == "none" and value is None:
            return None
        if kind == "bool" and isinstance(value, bool):
            return value
        if kind == "int" and isinstance(value, str) and re.fullmatch(r"-?\d{1,4300}", value):
            return int(value)
        if kind == "float" and isinstance(value, str):
            return float(value)
        if kind == "str" and isinstance(value, str):
            return value
        if kind == "array" and isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(leaves):
            return leaves[value]
        if kind in ("list", "tuple") and isinstance(value, list):
            items = [_decode(v, leaves, reader, depth + 1) for v in value]
            return items if kind == "list" else tuple(items)
        if kind == "dict" and isinstance(value, list):
            out = {}
            for pair in value:
                if not isinstance(pair, list) or len(pair) != 2:
                    raise reader.error(f"malformed dict entry in the manifest: {str(pair)[:200]}")
                key = _decode(pair[0], leaves, reader, depth + 1)
                if isinstance(key, bool) or not isinstance(key, (str, int)):
                    raise reader.error(f"a dict key in the manifest is {type(key).__name__}, not str or int")
                out[key] = _decode(pair[1], leaves, reader, depth + 1)
            return out
    except (ValueError, OverflowError) as err:
        if isinstance(err, FileFormatError):
            raise
        raise reader.error(f"malformed {kind} value in the manifest: {str(value)[:100]!r}") from None
    raise reader.error(f"malformed node in the manifest: {str(node)[:200]}")


def load(path, device=None, map_location=None):
    """Read what clnet.save wrote: tensors come back on `device` (or `map_location`, PyTorch's name; default:
    the default device), numpy arrays saved as arrays stay numpy arrays."""
    from .backend.devices import get_device
    from .ops.creation import tensor
    path = os.fspath(path)
    with _open(path) as reader:
        head = _manifest(reader)
        entries = head["arrays"]
        listed = {f"arrays/{i:06d}.npy" for i in range(len(entries))}
        present = reader.names - {_MANIFEST}
        if present != listed:
            extra, missing = sorted(present - listed), sorted(listed - present)
            raise reader.error(f"the arrays present do not match the manifest (extra: {extra[:5]}, "
                               f"missing: {missing[:5]})")
        arrays = [reader.array(entry, "array", file=f"arrays/{i:06d}.npy") for i, entry in enumerate(entries)]
        dev = get_device(device if device is not None else map_location)
        leaves = []
        for entry, arr in zip(entries, arrays):
            if entry.get("tensor", False) is True:
                grad = entry.get("requires_grad") is True and arr.dtype.kind == "f"
                leaves.append(tensor(arr, device=dev, requires_grad=grad))
            else:
                leaves.append(arr)
        return _decode(head["tree"], leaves, reader)

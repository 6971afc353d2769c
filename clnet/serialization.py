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

clnet.load also reads what PyTorch programs hand it (torch.load's signature): PyTorch's own .pt / .pth files
(clnet.torch_files: their pickles are interpreted, never executed, and only tensors and plain data are
accepted, as torch.load(weights_only=True)) and safetensors files (clnet.safetensors). `path` may be a file
object for saving and loading. torch.save(model) is refused: save model.state_dict().
"""
from __future__ import annotations

import collections
import io
import json
import math
import numbers
import os
import re
import tempfile
import warnings
import zipfile
import zlib

import numpy as np

from . import safetensors as _safetensors
from . import torch_files
from .backend.devices import Device, get_device
from .errors import DeviceNotFoundError, DtypeNotSupportedError, FileFormatError
from .ops.creation import tensor as _tensor
from .tensor import Tensor
from .torch_files import add_safe_globals, clear_safe_globals, get_safe_globals, safe_globals  # noqa: F401

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
    the missing folders of `path`. `path` may also be a writable binary file object (written in place)."""
    if hasattr(path, "write"):
        with zipfile.ZipFile(path, "w") as zf:
            _write_members(zf, members, deflate)
        return
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if make_folder:
        os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".clnet-save-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w") as zf:
                _write_members(zf, members, deflate)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _write_members(zf, members: dict, deflate: tuple) -> None:
    for name, data in members.items():
        kind = zipfile.ZIP_DEFLATED if deflate and name.endswith(deflate) else zipfile.ZIP_STORED
        zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data, compress_type=kind)


class ZipReader:
    """Validated, read-only access to a saved zip. Every member name must match `members` (a compiled regex:
    no paths, no extras) and appear once; a member's size is checked before it is read; JSON must parse to an
    object; arrays are read with allow_pickle=False and must have the dtype and shape their manifest entry
    declares. Nothing is extracted, imported or evaluated. Every problem raises `error_class` (a
    FileFormatError) naming the file; `file_kind` says what the file should have been.
    Use it as a context manager, or call close()."""

    def __init__(self, path, members, file_kind: str, error_class=FileFormatError):
        """`path`: a path, or a readable, seekable binary file object."""
        is_file = hasattr(path, "read")
        self.path = getattr(path, "name", "<file object>") if is_file else os.fspath(path)
        self.error_class = error_class
        if not is_file and not os.path.exists(self.path):
            raise FileNotFoundError(f"no such file: {self.path}")
        try:
            self.zf = zipfile.ZipFile(path if is_file else self.path)
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
    if hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict"):
        raise TypeError(
            f"clnet.save: {where} is a {type(obj).__name__}. clnet saves data, not objects: a pickled module is "
            "code that runs when the file is loaded, and breaks when the class changes. Save its weights "
            "instead (save module.state_dict(), not the module): torch.save(model.state_dict(), f), and load them "
            "into a model you build: "
            "model.load_state_dict(torch.load(f)). Optimizers and schedulers have state_dict() too.")
    raise TypeError(f"clnet.save: {where} is a {type(obj).__name__}; clnet.save stores tensors, numeric "
                    "arrays, None, bool, int, float, str and dicts/lists/tuples of them")


def save(obj, f, pickle_module=None, pickle_protocol=None, _use_new_zipfile_serialization=True) -> None:
    """Write `obj` (tensors, arrays, numbers, strings, None, and dicts/lists/tuples of them) to `f`, a path or a
    writable binary file object. torch.save's pickle arguments are accepted and ignored (nothing is pickled)."""
    if not hasattr(f, "write"):
        f = os.fspath(f)
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
    write_zip(f, members)


# --- loading --------------------------------------------------------------------------------------------
def _open(path) -> ZipReader:
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


def _read_clnet(reader: ZipReader, device_for):
    head = _manifest(reader)
    entries = head["arrays"]
    listed = {f"arrays/{i:06d}.npy" for i in range(len(entries))}
    present = reader.names - {_MANIFEST}
    if present != listed:
        extra, missing = sorted(present - listed), sorted(listed - present)
        raise reader.error(f"the arrays present do not match the manifest (extra: {extra[:5]}, "
                           f"missing: {missing[:5]})")
    arrays = [reader.array(entry, "array", file=f"arrays/{i:06d}.npy") for i, entry in enumerate(entries)]
    dev = device_for(None)
    leaves = []
    for entry, arr in zip(entries, arrays):
        if entry.get("tensor", False) is True:
            grad = entry.get("requires_grad") is True and arr.dtype.kind == "f"
            leaves.append(_tensor(arr, device=dev, requires_grad=grad))
        else:
            leaves.append(arr)
    return _decode(head["tree"], leaves, reader)


def _placer(map_location):
    """location saved in a PyTorch file ("cpu", "cuda:0") -> the clnet device its tensors go to.

    map_location None keeps "cpu" on the CPU device when there is one and puts everything else (saved on a
    GPU) on the default device; a device or name sends everything there; a dict maps saved locations; a
    function (PyTorch's storage-mapping callables) is not called: its tensors go to the default device."""
    cache = {}

    def device_for(location):
        if location in cache:
            return cache[location]
        target = map_location
        if isinstance(target, dict):
            target = target.get(location, location)
        if callable(target) and not isinstance(target, (str, Device)):
            target = None
        if target is None and location is not None:
            target = location if str(location).startswith("cpu") else None
        try:
            dev = get_device(target)
        except DeviceNotFoundError:
            if map_location is not None and not isinstance(map_location, dict):
                raise
            dev = get_device(None)  # a file saved on a GPU, read on a machine without one
        cache[location] = dev
        return dev
    return device_for


def _tensors_from_records(obj, device_for, depth=0):
    if depth > _MAX_DEPTH * 4:
        raise FileFormatError("the structure is nested too deeply")
    if isinstance(obj, torch_files.TensorRecord):
        arr = obj.array
        if arr.dtype.kind not in _KINDS:
            raise FileFormatError(f"a tensor of dtype {arr.dtype} cannot be loaded")
        grad = obj.requires_grad and arr.dtype.kind == "f"
        dev = device_for(obj.location)
        try:
            return _tensor(arr, device=dev, requires_grad=grad)
        except DtypeNotSupportedError:  # float16 / float64 values on a device that computes neither
            warnings.warn(f"{dev.name} has no {arr.dtype} arithmetic: a tensor of the file is loaded as float32",
                          UserWarning, stacklevel=3)
            return _tensor(arr.astype(np.float32), device=dev, requires_grad=grad)
    if isinstance(obj, dict):
        out = type(obj)() if type(obj) in (dict, collections.OrderedDict) else {}
        for k, v in obj.items():
            out[k] = _tensors_from_records(v, device_for, depth + 1)
        if hasattr(obj, "_metadata"):
            out._metadata = obj._metadata
        return out
    if isinstance(obj, list):
        return [_tensors_from_records(v, device_for, depth + 1) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_tensors_from_records(v, device_for, depth + 1) for v in obj)
    return obj


def load(f, map_location=None, pickle_module=None, *, weights_only=None, mmap=None, device=None,
         **pickle_load_args):
    """Read a file written by clnet.save, by PyTorch's torch.save (weights and data only, as
    torch.load(weights_only=True)), or a safetensors file. `f` is a path or a readable binary file object.

    Tensors come back as clnet tensors on `device` / `map_location` (a device or name, or for PyTorch files a
    dict from saved locations such as "cuda:0" to devices; default: the default device, "cpu" tensors of
    PyTorch files on the CPU device). numpy arrays saved by clnet.save stay numpy arrays.
    """
    if pickle_module is not None:
        raise ValueError("clnet.load never unpickles objects: pickle_module is not supported")
    if mmap:
        raise NotImplementedError("clnet.load: mmap=True is not supported")
    device_for = _placer(device if device is not None else map_location)
    is_file = hasattr(f, "read")
    where = getattr(f, "name", "<file object>") if is_file else os.fspath(f)
    if is_file:
        start = f.tell()
        head = f.read(16)
        f.seek(start)
    else:
        if not os.path.exists(where):
            raise FileNotFoundError(f"no such file: {where}")
        with open(where, "rb") as fh:
            head = fh.read(16)
    if head[:2] == b"PK":
        try:
            zf = zipfile.ZipFile(f if is_file else where)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError):
            zf = None  # damaged: the clnet reader below says so
        if zf is not None:
            with zf:
                names = zf.namelist()
                if _MANIFEST not in names and any(n.endswith("/data.pkl") and n.count("/") == 1 for n in names):
                    return _tensors_from_records(torch_files.read_zip(zf, where), device_for)
        if is_file:
            f.seek(start)
        with _open(f if is_file else where) as reader:
            return _read_clnet(reader, device_for)
    if torch_files.is_legacy(head):
        data = f.read() if is_file else open(where, "rb").read()
        return _tensors_from_records(torch_files.read_legacy(data, where), device_for)
    if _safetensors.is_safetensors(head):
        if is_file:
            return _safetensors.load(f.read(), device=device_for(None))
        return _safetensors.load_file(where, device=device_for(None))
    try:  # nothing recognised: the zip reader says what is wrong with it as a clnet file
        with _open(f if is_file else where) as reader:
            return _read_clnet(reader, device_for)
    except FileFormatError as err:
        raise FileFormatError(f"{err} (nor is it a PyTorch or safetensors file)") from None

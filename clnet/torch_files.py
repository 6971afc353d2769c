"""Reading PyTorch's weight files (torch.save's .pt / .pth) without running their pickles.

PyTorch writes a zip (`<name>/data.pkl` holding the object's structure as a pickle, `<name>/data/<key>` the
raw bytes of every storage, `<name>/byteorder`, `<name>/version`), or, before PyTorch 1.6, one stream of
pickles followed by the storages ("legacy" files). A pickle is a small program: its GLOBAL opcodes name
Python callables that REDUCE calls, so unpickling an untrusted file can run anything. clnet never calls
pickle.load on such a file. This module interprets the pickle opcode by opcode (pickletools.genops only
decodes them) and gives every GLOBAL a meaning of its own from a fixed table: the containers
(OrderedDict, set, ...), PyTorch's tensor and parameter rebuilders, its storage types and dtypes, numpy
scalars and arrays of plain dtypes. Any other global, and the opcodes that only exist to build arbitrary
objects (INST, OBJ, EXT*), raise clnet.FileFormatError naming what the file asked for. That is what
torch.load(..., weights_only=True) accepts (it is PyTorch's default since 2.6), so state_dicts, optimizer
state_dicts and checkpoints of such data load; pickled modules and other objects are refused.

Tensors are read from the storage bytes with numpy (views bounds-checked against their storage) and become
clnet tensors on the requested device; bfloat16 becomes float32 (clnet has no bfloat16).
`safe_globals` / `add_safe_globals` let a caller allow more classes by name, as PyTorch's do: those are
then constructed, which is the caller's explicit decision to trust them.
"""
from __future__ import annotations

import collections
import io
import os
import pickletools
import struct
import threading
import zipfile

import numpy as np

from . import dtypes as _dt
from .errors import FileFormatError

# storage class name -> numpy dtype of its elements (bfloat16: raw uint16, widened to float32 on load)
_STORAGES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16", "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
# torch dtype attribute name -> numpy dtype
_DTYPES = {
    "float32": np.float32, "float": np.float32, "float64": np.float64, "double": np.float64,
    "float16": np.float16, "half": np.float16, "bfloat16": "bfloat16", "int64": np.int64, "long": np.int64,
    "int32": np.int32, "int": np.int32, "int16": np.int16, "short": np.int16, "int8": np.int8,
    "uint8": np.uint8, "bool": np.bool_,
}
_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
_MAX_PICKLE = 256 * 2**20


class _Storage:
    """A storage named by a file: its element type, key and size; `array` holds its elements once read
    (raw uint16 for bfloat16). A legacy file's storage may be a view of another (root, offset in elements)."""

    __slots__ = ("dtype", "key", "location", "numel", "array", "root", "root_offset")

    def __init__(self, dtype, key, location, numel, root=None, root_offset=0):
        self.dtype, self.key, self.location, self.numel, self.array = dtype, key, location, numel, None
        self.root, self.root_offset = root, root_offset

    def data(self):
        if self.root is not None:
            base = self.root.data()
            if self.root_offset + self.numel > base.size:
                raise FileFormatError(f"storage view {self.key!r} reaches past its root storage")
            return base[self.root_offset:self.root_offset + self.numel]
        if self.array is None:
            raise FileFormatError(f"the storage {self.key!r} has no data in the file")
        return self.array


class _Pending:
    """A tensor named by the pickle, built once its storage's bytes are read (legacy files store them after
    the pickle): storage, element offset, size, stride, requires_grad, element type override."""

    __slots__ = ("storage", "offset", "size", "stride", "requires_grad", "dtype")

    def __init__(self, storage, offset, size, stride, requires_grad=False, dtype=None):
        if not isinstance(storage, _Storage):
            raise FileFormatError(f"a tensor's storage is a {type(storage).__name__}, not a storage record")
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride
        self.requires_grad, self.dtype = bool(requires_grad), dtype

    def record(self):
        dt = self.dtype if self.dtype is not None else self.storage.dtype
        arr = _as_array(self.storage, self.offset, self.size, self.stride, self.dtype)
        if dt == "bfloat16":
            arr = _bfloat16_to_float32(arr)
        return TensorRecord(arr, self.requires_grad, self.storage.location)


class TensorRecord:
    """A tensor read from the file, still on the host: values (numpy), requires_grad, and its storage's
    location in the file ("cpu", "cuda:0", ...). torch_files.load turns them into clnet tensors."""

    __slots__ = ("array", "requires_grad", "location")

    def __init__(self, array, requires_grad, location):
        self.array, self.requires_grad, self.location = array, bool(requires_grad), location


class _StorageType:
    def __init__(self, dtype):
        self.dtype = dtype


class _DType:
    def __init__(self, dtype):
        self.dtype = dtype


class _NumpyArrayStub:
    """numpy's pickled ndarray before its BUILD state arrives."""

    __slots__ = ("value",)


# --- the globals a file may name ---------------------------------------------------------------------------
def _as_array(storage, offset, size, stride, dtype=None):
    base = storage.data()
    if dtype is not None and dtype != storage.dtype:
        base = base.view(np.uint16 if dtype == "bfloat16" else dtype)
    size, stride, offset = tuple(int(s) for s in size), tuple(int(s) for s in stride), int(offset)
    if len(size) != len(stride) or any(s < 0 for s in size) or any(s < 0 for s in stride) or offset < 0:
        raise FileFormatError(f"malformed tensor view: size {size}, stride {stride}, offset {offset}")
    if 0 in size:
        return np.zeros(size, base.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= base.size:
        raise FileFormatError(f"a tensor of size {size} (stride {stride}, offset {offset}) reaches element {last} "
                              f"of a storage of {base.size}: the file is damaged or was tampered with")
    view = np.lib.stride_tricks.as_strided(base[offset:], size, tuple(s * base.itemsize for s in stride),
                                           writeable=False)
    return np.array(view)


def _bfloat16_to_float32(a):
    return (a.astype(np.uint32) << 16).view(np.float32)


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, *rest):
    """torch._utils._rebuild_tensor_v2 (and _v1, which has no requires_grad)."""
    return _Pending(storage, storage_offset, size, stride, requires_grad)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None):
    if not isinstance(dtype, _DType):
        raise FileFormatError(f"a tensor's dtype is a {type(dtype).__name__}")
    return _Pending(storage, storage_offset, size, stride, requires_grad, dtype.dtype)


def _rebuild_parameter(data, requires_grad, backward_hooks=None, *state):
    if not isinstance(data, _Pending):
        raise FileFormatError("a Parameter's data is not a tensor")
    data.requires_grad = bool(requires_grad)
    return data


def _ordered_dict(*args):
    return collections.OrderedDict(*args)


def _numpy_scalar(dtype, data):
    dt = dtype.value if isinstance(dtype, _NumpyDType) else dtype
    if not isinstance(dt, np.dtype) or dt.kind not in "biuf" or not isinstance(data, (bytes, bytearray)) \
            or len(data) != dt.itemsize:
        raise FileFormatError("malformed numpy scalar in the file")
    return np.frombuffer(bytes(data), dt)[0]


class _NumpyDType:
    """numpy.dtype(name, align, copy) from a pickle; only plain numeric and bool types."""

    def __init__(self, name, align=False, copy=True):
        dt = np.dtype(str(name))
        if dt.kind not in "biuf":
            raise FileFormatError(f"numpy dtype {dt} is not a plain numeric type")
        self.value = dt


def _numpy_reconstruct(cls, shape, dtype_code):
    stub = _NumpyArrayStub()
    stub.value = None
    return stub


def _codecs_encode(text, encoding="latin1"):
    return str(text).encode(encoding)


def _torch_size(*args):
    return tuple(*args)


def _torch_device(*args):
    return str(args[0]) if args else "cpu"


GLOBALS = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("builtins", "set"): set, ("builtins", "frozenset"): frozenset, ("__builtin__", "set"): set,
    ("builtins", "slice"): slice, ("builtins", "complex"): complex,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): lambda storage, offset, size, stride: _rebuild_tensor(storage, offset,
                                                                                             size, stride),
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch", "Size"): _torch_size,
    ("torch", "device"): _torch_device,
    ("_codecs", "encode"): _codecs_encode,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar, ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "dtype"): _NumpyDType,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy", "ndarray"): "ndarray",
}
for _name, _np in _STORAGES.items():
    GLOBALS[("torch", _name)] = _StorageType(_np)
GLOBALS[("torch.storage", "UntypedStorage")] = _StorageType(np.uint8)
GLOBALS[("torch", "UntypedStorage")] = _StorageType(np.uint8)
for _name, _np in _DTYPES.items():
    GLOBALS[("torch", _name)] = _DType(_np)

# classes the caller allowed (safe_globals / add_safe_globals): constructed when a file names them
_user_globals: dict = {}
_local = threading.local()


def add_safe_globals(safe_globals) -> None:
    """Allow these classes or functions (or (object, "module.name") pairs) in every later load."""
    for g in safe_globals:
        obj, name = g if isinstance(g, tuple) else (g, f"{g.__module__}.{g.__qualname__}")
        _user_globals[tuple(name.rsplit(".", 1))] = obj


def clear_safe_globals() -> None:
    _user_globals.clear()


def get_safe_globals() -> list:
    return list(_user_globals.values())


class safe_globals:
    """`with safe_globals([cls, ...]):` allows these during the block only (this thread)."""

    def __init__(self, safe_globals):
        self.globals = {}
        for g in safe_globals:
            obj, name = g if isinstance(g, tuple) else (g, f"{g.__module__}.{g.__qualname__}")
            self.globals[tuple(name.rsplit(".", 1))] = obj

    def __enter__(self):
        self.saved = getattr(_local, "globals", {})
        _local.globals = {**self.saved, **self.globals}
        return self

    def __exit__(self, *exc):
        _local.globals = self.saved


def _resolve(module: str, name: str, where: str):
    key = (module, name)
    if key in GLOBALS:
        return GLOBALS[key]
    extra = {**_user_globals, **getattr(_local, "globals", {})}
    if key in extra:
        return extra[key]
    raise FileFormatError(
        f"{where} asks for the Python global {module}.{name}, which a weights file does not need: clnet reads "
        "tensors, storages and plain containers from PyTorch files and never runs code from them (as "
        "torch.load(weights_only=True)). If the file is a pickled module, load it in PyTorch and save its "
        "state_dict(); if you trust this class, allow it with clnet.serialization.safe_globals([...]).")


# --- the pickle interpreter ---------------------------------------------------------------------------------
class _Mark:
    pass


_MARK = _Mark()
_REFUSED = {"INST", "OBJ", "EXT1", "EXT2", "EXT4", "PERSID", "NEXT_BUFFER", "READONLY_BUFFER"}


def unpickle(data: bytes, persistent_load, where: str):
    """The object a pickle describes, built only from data and the table of GLOBALS (see the module doc)."""
    stack, memo = [], {}

    def pop_mark():
        items = []
        while stack:
            item = stack.pop()
            if item is _MARK:
                items.reverse()
                return items
            items.append(item)
        raise FileFormatError(f"{where}: malformed pickle (a MARK is missing)")

    try:
        ops = pickletools.genops(data)
        for opcode, arg, pos in ops:
            name = opcode.name
            if name in ("PROTO", "FRAME"):
                continue
            if name == "STOP":
                if len(stack) != 1:
                    raise FileFormatError(f"{where}: malformed pickle (stack of {len(stack)} at STOP)")
                return stack[0]
            if name == "MARK":
                stack.append(_MARK)
            elif name == "POP":
                stack.pop()
            elif name == "POP_MARK":
                pop_mark()
            elif name == "DUP":
                stack.append(stack[-1])
            elif name in ("NONE",):
                stack.append(None)
            elif name in ("NEWTRUE", "NEWFALSE"):
                stack.append(name == "NEWTRUE")
            elif name in ("INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT",
                          "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "BINBYTES",
                          "SHORT_BINBYTES", "BINBYTES8"):
                stack.append(arg)
            elif name in ("STRING", "BINSTRING", "SHORT_BINSTRING"):
                stack.append(arg.decode("latin1") if isinstance(arg, bytes) else arg)
            elif name == "BYTEARRAY8":
                stack.append(bytearray(arg))
            elif name == "EMPTY_TUPLE":
                stack.append(())
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                n = int(name[-1])
                items = tuple(stack[-n:])
                del stack[-n:]
                stack.append(items)
            elif name == "TUPLE":
                stack.append(tuple(pop_mark()))
            elif name == "EMPTY_LIST":
                stack.append([])
            elif name == "LIST":
                stack.append(pop_mark())
            elif name == "APPEND":
                value = stack.pop()
                stack[-1].append(value)
            elif name == "APPENDS":
                items = pop_mark()
                stack[-1].extend(items)
            elif name == "EMPTY_DICT":
                stack.append({})
            elif name == "DICT":
                items = pop_mark()
                stack.append(dict(zip(items[::2], items[1::2])))
            elif name == "SETITEM":
                value, key = stack.pop(), stack.pop()
                stack[-1][key] = value
            elif name == "SETITEMS":
                items = pop_mark()
                target = stack[-1]
                for k, v in zip(items[::2], items[1::2]):
                    target[k] = v
            elif name == "EMPTY_SET":
                stack.append(set())
            elif name == "ADDITEMS":
                items = pop_mark()
                stack[-1].update(items)
            elif name == "FROZENSET":
                stack.append(frozenset(pop_mark()))
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[arg] = stack[-1]
            elif name == "MEMOIZE":
                memo[len(memo)] = stack[-1]
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                if arg not in memo:
                    raise FileFormatError(f"{where}: malformed pickle (memo key {arg} was never set)")
                stack.append(memo[arg])
            elif name == "GLOBAL":
                module, _, attr = arg.partition(" ")
                stack.append(_resolve(module, attr, where))
            elif name == "STACK_GLOBAL":
                attr, module = stack.pop(), stack.pop()
                stack.append(_resolve(str(module), str(attr), where))
            elif name == "REDUCE":
                args, fn = stack.pop(), stack.pop()
                stack.append(_call(fn, args, where))
            elif name in ("NEWOBJ", "NEWOBJ_EX"):
                kwargs = stack.pop() if name == "NEWOBJ_EX" else {}
                args, cls = stack.pop(), stack.pop()
                stack.append(_new(cls, args, kwargs, where))
            elif name == "BUILD":
                state = stack.pop()
                _build(stack[-1], state, where)
            elif name == "BINPERSID":
                stack.append(persistent_load(stack.pop()))
            elif name in _REFUSED:
                raise FileFormatError(f"{where}: the pickle uses opcode {name}, which a weights file does not need; "
                                      "clnet reads only data from PyTorch files")
            else:
                raise FileFormatError(f"{where}: unsupported pickle opcode {name} at byte {pos}")
    except FileFormatError:
        raise
    except (ValueError, IndexError, KeyError, TypeError, AttributeError, struct.error) as err:
        raise FileFormatError(f"{where}: malformed pickle ({type(err).__name__}: {err})") from None
    raise FileFormatError(f"{where}: the pickle ends without STOP")


def _call(fn, args, where):
    if not isinstance(args, tuple):
        raise FileFormatError(f"{where}: malformed pickle (REDUCE arguments are a {type(args).__name__})")
    if isinstance(fn, (_StorageType, _DType)) or fn == "ndarray" or not callable(fn):
        raise FileFormatError(f"{where}: the pickle calls a {type(fn).__name__}, which is not a function")
    return fn(*args)


def _new(cls, args, kwargs, where):
    if not isinstance(cls, type) or cls not in set(_user_globals.values()) | set(getattr(_local, "globals", {})
                                                                                 .values()):
        raise FileFormatError(f"{where}: the pickle constructs a {getattr(cls, '__name__', cls)} object; only "
                              "classes allowed with clnet.serialization.safe_globals are constructed")
    return cls.__new__(cls, *args, **kwargs)


def _build(obj, state, where):
    """BUILD: an OrderedDict's attributes (a state_dict's _metadata), a numpy array stub's contents, or the
    state of an object whose class the caller allowed."""
    if isinstance(obj, collections.OrderedDict) and isinstance(state, dict):
        for k, v in state.items():
            if not isinstance(k, str) or k.startswith("__"):
                raise FileFormatError(f"{where}: malformed pickle (attribute {k!r})")
            setattr(obj, k, v)
    elif isinstance(obj, _NumpyDType):
        pass  # the dtype's byte order and flags: numpy's defaults for plain types
    elif isinstance(obj, _NumpyArrayStub):
        if not isinstance(state, tuple) or len(state) != 5:
            raise FileFormatError(f"{where}: malformed numpy array state")
        _, shape, dtype, fortran, raw = state
        dt = dtype.value if isinstance(dtype, _NumpyDType) else None
        if dt is None or not isinstance(raw, (bytes, bytearray)):
            raise FileFormatError(f"{where}: numpy arrays of objects are not read (plain numeric types only)")
        shape = tuple(int(s) for s in shape)
        if len(raw) != int(np.prod(shape)) * dt.itemsize:
            raise FileFormatError(f"{where}: a numpy array of shape {shape} holds {len(raw)} bytes")
        arr = np.frombuffer(bytes(raw), dt).reshape(shape, order="F" if fortran else "C")
        obj.value = np.array(arr)
    elif type(obj) in set(_user_globals.values()) | set(getattr(_local, "globals", {}).values()):
        setstate = getattr(obj, "__setstate__", None)
        if setstate is not None:
            setstate(state)
        elif isinstance(state, dict):
            obj.__dict__.update(state)
    else:
        raise FileFormatError(f"{where}: the pickle sets the state of a {type(obj).__name__}, which a weights "
                              "file does not need")


def _finish(obj, depth=0):
    """Replace pending tensors by TensorRecords and numpy stubs by arrays, everywhere in the structure."""
    if depth > 200:
        raise FileFormatError("the structure is nested too deeply")
    if isinstance(obj, _NumpyArrayStub):
        return obj.value
    if isinstance(obj, _Pending):
        return obj.record()
    if isinstance(obj, _NumpyDType):
        return obj.value
    if isinstance(obj, collections.OrderedDict):
        out = collections.OrderedDict((k, _finish(v, depth + 1)) for k, v in obj.items())
        if hasattr(obj, "_metadata"):
            out._metadata = obj._metadata
        return out
    if isinstance(obj, dict):
        return {k: _finish(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finish(v, depth + 1) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_finish(v, depth + 1) for v in obj)
    return obj


# --- the file layouts ---------------------------------------------------------------------------------------
def _storage_record(pid, where):
    if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
        raise FileFormatError(f"{where}: unknown persistent record {str(pid)[:100]}")
    _, kind, key, location, numel = pid[:5]
    if not isinstance(kind, _StorageType):
        raise FileFormatError(f"{where}: a storage of unknown type {kind!r}")
    return _Storage(kind.dtype, str(key), str(location), int(numel))


def _itemsize(dtype):
    return 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize


def _raw_dtype(dtype):
    return np.dtype(np.uint16) if dtype == "bfloat16" else np.dtype(dtype)


def read_zip(zf: zipfile.ZipFile, where: str):
    """The object of a PyTorch zip file (TensorRecords where it holds tensors)."""
    names = zf.namelist()
    pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
    if len(pkl) != 1:
        raise FileFormatError(f"{where}: not a PyTorch file (no <name>/data.pkl member)")
    prefix = pkl[0][:-len("data.pkl")]
    sizes = {i.filename: i.file_size for i in zf.infolist()}
    if sizes[pkl[0]] > _MAX_PICKLE:
        raise FileFormatError(f"{where}: data.pkl is implausibly large ({sizes[pkl[0]]} bytes)")
    order = "little"
    if prefix + "byteorder" in sizes:
        order = zf.read(prefix + "byteorder").decode("ascii", "replace").strip()
        if order not in ("little", "big"):
            raise FileFormatError(f"{where}: unknown byte order {order!r}")
    storages = {}

    def persistent_load(pid):
        rec = _storage_record(pid, where)
        if rec.key in storages:
            return storages[rec.key]
        member = f"{prefix}data/{rec.key}"
        if member not in sizes:
            raise FileFormatError(f"{where}: the storage {rec.key!r} is missing from the file")
        nbytes = rec.numel * _itemsize(rec.dtype)
        if sizes[member] < nbytes:
            raise FileFormatError(f"{where}: the storage {rec.key!r} should hold {nbytes} bytes, it has "
                                  f"{sizes[member]}")
        raw = np.frombuffer(zf.read(member), dtype=_raw_dtype(rec.dtype), count=rec.numel)
        if order == "big":
            raw = raw.byteswap()
        rec.array = raw
        storages[rec.key] = rec
        return rec

    return _finish(unpickle(zf.read(pkl[0]), persistent_load, where))


def read_legacy(data: bytes, where: str):
    """The object of a pre-1.6 PyTorch file: pickles of (magic, protocol, sys info, object, storage keys),
    then each storage as an 8-byte element count and its bytes, in the order of the keys."""
    stream = io.BytesIO(data)

    def next_pickle():
        start = stream.tell()
        for opcode, _, _ in pickletools.genops(stream):
            if opcode.name == "STOP":
                break
        return data[start:stream.tell()]

    def no_storage(pid):
        raise FileFormatError(f"{where}: a storage where none belongs")

    records = {}

    def persistent_load(pid):
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise FileFormatError(f"{where}: unknown persistent record {str(pid)[:100]}")
        _, kind, key, location, numel = pid[:5]
        view = pid[5] if len(pid) > 5 else None
        if not isinstance(kind, _StorageType):
            raise FileFormatError(f"{where}: a storage of unknown type {kind!r}")
        key = str(key)
        if key not in records:
            records[key] = _Storage(kind.dtype, key, str(location), int(numel))
        if view is None:
            return records[key]
        view_key, offset, view_size = view
        return _Storage(kind.dtype, str(view_key), str(location), int(view_size), records[key], int(offset))

    try:
        if unpickle(next_pickle(), no_storage, where) != _LEGACY_MAGIC:
            raise FileFormatError(f"{where}: not a PyTorch file (bad magic number)")
        protocol = unpickle(next_pickle(), no_storage, where)
        if protocol != 1001:
            raise FileFormatError(f"{where}: unsupported legacy protocol {protocol!r}")
        unpickle(next_pickle(), no_storage, where)  # sys info (byte order, type sizes)
        obj = unpickle(next_pickle(), persistent_load, where)
        keys = unpickle(next_pickle(), no_storage, where)
        for key in keys:
            rec = records.get(str(key))
            if rec is None:
                raise FileFormatError(f"{where}: storage {key!r} is listed but never used")
            (count,) = struct.unpack("<q", stream.read(8))
            nbytes = count * _itemsize(rec.dtype)
            blob = stream.read(nbytes)
            if count < 0 or len(blob) != nbytes:
                raise FileFormatError(f"{where}: the file ends inside storage {key!r}")
            rec.array = np.frombuffer(blob, _raw_dtype(rec.dtype), count=count)
    except (struct.error, ValueError) as err:
        raise FileFormatError(f"{where}: malformed legacy PyTorch file ({err})") from None
    return _finish(obj)


def is_legacy(head: bytes) -> bool:
    """Whether these first bytes open a legacy PyTorch file (a protocol-2 pickle of the magic number)."""
    return head[:2] == b"\x80\x02" and head[2:3] == b"\x8a"


__all__ = ["TensorRecord", "read_zip", "read_legacy", "is_legacy", "unpickle", "safe_globals", "add_safe_globals",
           "clear_safe_globals", "get_safe_globals", "GLOBALS"]

"""safetensors files: clnet's side of the `safetensors` package (an optional extra: pip install safetensors).

    from clnet.safetensors import load_file, save_file      # instead of safetensors.torch
    save_file({"weight": model.weight}, "model.safetensors", metadata={"format": "pt"})
    state = load_file("model.safetensors")                  # name -> clnet tensor on the default device

The file is an 8-byte header length, a JSON header (name -> dtype, shape, byte range) and the raw bytes:
data only, which is why Hugging Face made it. Reading and writing go through the package's numpy API;
BF16 tensors (which numpy cannot hold) are read from the header directly and widened to float32.
"""
from __future__ import annotations

import json
import os
import struct

import numpy as np

from .backend.devices import get_device
from .errors import FileFormatError
from .ops.creation import tensor as _tensor
from .tensor import Tensor

try:
    import safetensors.numpy as _st
except ImportError:  # the optional extra is not installed
    _st = None

_HEADER_LIMIT = 100 * 2**20


def _package():
    if _st is None:
        raise ImportError("reading and writing safetensors files needs the `safetensors` package: "
                          "pip install safetensors (or clnet[safetensors])")
    return _st


def _to_numpy(tensors: dict) -> dict:
    if not isinstance(tensors, dict):
        raise TypeError(f"expected a dict of name -> tensor, got {type(tensors).__name__}")
    out = {}
    for name, t in tensors.items():
        if not isinstance(name, str):
            raise TypeError(f"safetensors names must be str, got {name!r}")
        if isinstance(t, Tensor):
            out[name] = np.ascontiguousarray(t.detach().numpy())
        elif isinstance(t, np.ndarray):
            out[name] = np.ascontiguousarray(t)
        else:
            raise TypeError(f"safetensors stores tensors; {name!r} is a {type(t).__name__}")
    return out


def _to_tensors(arrays: dict, device) -> dict:
    dev = get_device(device)
    return {name: _tensor(arr, device=dev) for name, arr in arrays.items()}


def save_file(tensors: dict, filename, metadata=None) -> None:
    """Write name -> tensor (clnet tensors or numpy arrays) as a safetensors file."""
    _package().save_file(_to_numpy(tensors), os.fspath(filename), metadata=metadata)


def save(tensors: dict, metadata=None) -> bytes:
    """The safetensors bytes of name -> tensor."""
    return _package().save(_to_numpy(tensors), metadata=metadata)


def _has_bf16(header: dict) -> bool:
    return any(isinstance(v, dict) and v.get("dtype") == "BF16" for k, v in header.items() if k != "__metadata__")


def _read_header(data: bytes, where: str) -> tuple:
    if len(data) < 8:
        raise FileFormatError(f"{where}: not a safetensors file (too short)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > _HEADER_LIMIT or 8 + n > len(data):
        raise FileFormatError(f"{where}: not a safetensors file (header of {n} bytes)")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FileFormatError(f"{where}: the safetensors header is not valid JSON: {err}") from None
    if not isinstance(header, dict):
        raise FileFormatError(f"{where}: the safetensors header is not an object")
    return header, 8 + n


def _load_bf16_aware(data: bytes, where: str) -> dict:
    """Every tensor of a file holding BF16 values (as float32) and the others, read from the header."""
    header, start = _read_header(data, where)
    types = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16, "I64": np.int64,
             "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = types.get(info.get("dtype"))
        if dt is None:
            raise FileFormatError(f"{where}: tensor {name!r} has unsupported dtype {info.get('dtype')!r}")
        lo, hi = (int(v) for v in info["data_offsets"])
        shape = tuple(int(s) for s in info["shape"])
        if not 0 <= lo <= hi <= len(data) - start or hi - lo != int(np.prod(shape)) * np.dtype(dt).itemsize:
            raise FileFormatError(f"{where}: tensor {name!r} has a byte range that does not fit its shape")
        arr = np.frombuffer(data, dt, count=int(np.prod(shape)), offset=start + lo).reshape(shape)
        if info["dtype"] == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        out[name] = np.array(arr)
    return out


def load(data: bytes, device=None) -> dict:
    """name -> clnet tensor from safetensors bytes."""
    header, _ = _read_header(data, "safetensors data")
    arrays = _load_bf16_aware(data, "safetensors data") if _has_bf16(header) else _package().load(data)
    return _to_tensors(arrays, device)


def load_file(filename, device=None) -> dict:
    """name -> clnet tensor from a safetensors file (device: where the tensors go; default device if None;
    safetensors.torch's device="cpu" means clnet's CPU device)."""
    path = os.fspath(filename)
    with open(path, "rb") as f:
        head = f.read(8)
        (n,) = struct.unpack("<Q", head) if len(head) == 8 else (0,)
        header, _ = _read_header(head + f.read(min(n, _HEADER_LIMIT)), path)
    if _has_bf16(header):
        with open(path, "rb") as f:
            arrays = _load_bf16_aware(f.read(), path)
    else:
        arrays = _package().load_file(path)
    return _to_tensors(arrays, device)


def is_safetensors(head: bytes) -> bool:
    """Whether these first bytes (at least 9) look like a safetensors file: a plausible header length, then '{'."""
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= _HEADER_LIMIT and head[8:9] == b"{"


__all__ = ["save_file", "load_file", "save", "load", "is_safetensors"]

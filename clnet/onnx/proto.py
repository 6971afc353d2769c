"""The optional `onnx` package and the ONNX <-> numpy type tables shared by import and export.

`onnx` is an optional extra (`pip install 'clnet[onnx]'`): `import clnet` never needs it, and
`require()` imports it on first use with a message that says how to install it when it is missing.
"""
from __future__ import annotations

import importlib

import numpy as np

_INSTALL = "pip install 'clnet[onnx]'   (or: pip install onnx)"

# ONNX TensorProto.DataType codes (onnx.proto: FLOAT=1 ... BFLOAT16=16) and the numpy dtypes clnet keeps them in.
ELEM_TO_NUMPY = {
    1: np.dtype(np.float32), 2: np.dtype(np.uint8), 3: np.dtype(np.int8), 4: np.dtype(np.uint16),
    5: np.dtype(np.int16), 6: np.dtype(np.int32), 7: np.dtype(np.int64), 9: np.dtype(np.bool_),
    10: np.dtype(np.float16), 11: np.dtype(np.float64), 12: np.dtype(np.uint32), 13: np.dtype(np.uint64),
}
NUMPY_TO_ELEM = {dt: code for code, dt in ELEM_TO_NUMPY.items()}
ELEM_NAMES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 8: "string",
              9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 14: "complex64",
              15: "complex128", 16: "bfloat16"}


def require():
    """The `onnx` module, imported on first use (an optional dependency)."""
    try:
        return importlib.import_module("onnx")
    except ImportError as err:
        raise ImportError(f"clnet.onnx needs the `onnx` package, which is not installed: {_INSTALL}") from err


def numpy_dtype(elem_type: int, what: str) -> np.dtype:
    """The numpy dtype of ONNX element type `elem_type`; TypeError naming `what` for types clnet cannot hold."""
    if elem_type not in ELEM_TO_NUMPY:
        name = ELEM_NAMES.get(elem_type, f"code {elem_type}")
        raise TypeError(f"{what} has ONNX element type {name}, which clnet does not support "
                        f"(supported: {', '.join(sorted({ELEM_NAMES[c] for c in ELEM_TO_NUMPY}))})")
    return ELEM_TO_NUMPY[elem_type]


def elem_type(dtype, what: str) -> int:
    """The ONNX element type code of numpy/clnet dtype `dtype`."""
    dt = np.dtype(dtype)
    if dt not in NUMPY_TO_ELEM:
        raise TypeError(f"{what} has dtype {dt}, which ONNX export does not support")
    return NUMPY_TO_ELEM[dt]

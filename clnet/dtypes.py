"""dtypes and the type-promotion rules.

clnet's dtypes are numpy dtypes, so `clnet.float32 == np.float32` and arrays convert without tables.

Promotion (as in PyTorch, written down with examples in docs/dtypes.md): categories rank
bool < integer < floating. Tensors with dimensions promote to the wider type of the higher category
(int32 + int64 -> int64, int64 + float32 -> float32, float16 + float32 -> float32). A 0-d tensor or a
Python scalar never widens them within their category; it only lifts the category (int tensor * 0.5 ->
float32, bool tensor + 1 -> int64, float16 tensor * 2.0 -> float16, float32 tensor * 0-d float64
tensor -> float32). In-place ops may write a result into a tensor of the same or a higher category.
"""
from __future__ import annotations

import builtins

import numpy as np

# PyTorch's names and aliases: torch.float is float32 (Python's float is double, but not here, as in PyTorch)
float16 = half = np.dtype(np.float16)
float32 = float = np.dtype(np.float32)
float64 = double = np.dtype(np.float64)
int8 = np.dtype(np.int8)
int16 = short = np.dtype(np.int16)
int32 = int = np.dtype(np.int32)
int64 = long = np.dtype(np.int64)
bool = bool_ = np.dtype(np.bool_)
uint8 = np.dtype(np.uint8)
dtype = np.dtype  # the type of every clnet dtype (isinstance(x.dtype, clnet.dtype))
finfo, iinfo = np.finfo, np.iinfo  # .eps .max .min .tiny .bits, as torch.finfo / torch.iinfo

SUPPORTED = (float16, float32, float64, int8, int16, int32, int64, bool_, uint8)
DEFAULT_FLOAT = float32
DEFAULT_INT = int64


def get_default_dtype() -> np.dtype:
    """The dtype of tensors made from Python floats and of zeros/ones/randn without dtype= (float32)."""
    return DEFAULT_FLOAT


def set_default_dtype(d) -> None:
    """torch.set_default_dtype: float32 (the default) or float64 (where the device has it) or float16."""
    global DEFAULT_FLOAT
    dt = as_dtype(d)
    if not is_floating(dt):
        raise TypeError(f"set_default_dtype: only floating-point dtypes can be the default, got {dt.name}")
    DEFAULT_FLOAT = dt


def as_dtype(d) -> np.dtype:
    """Accept clnet/numpy dtypes, Python types and names; reject what kernels cannot store."""
    if d is builtins.float:
        return DEFAULT_FLOAT
    if d is builtins.int:
        return DEFAULT_INT
    if d is builtins.bool:
        return bool_
    try:
        dt = np.dtype(d)
    except TypeError:
        raise TypeError(f"not a dtype: {d!r}") from None
    if dt not in SUPPORTED:
        names = ", ".join(x.name for x in SUPPORTED)
        raise TypeError(f"dtype {dt.name} is not supported by clnet (supported: {names})")
    return dt


def is_floating(dt) -> builtins.bool:
    return np.dtype(dt).kind == "f"


def _category(dt: np.dtype) -> builtins.int:
    return {"b": 0, "u": 1, "i": 1, "f": 2}[dt.kind]


def promote_types(a: np.dtype, b: np.dtype) -> np.dtype:
    """Two tensor dtypes -> the dtype of their result."""
    ca, cb = _category(a), _category(b)
    if ca != cb:
        return a if ca > cb else b
    if ca == 0:
        return bool_
    return np.promote_types(a, b)


def can_cast(src: np.dtype, dst: np.dtype) -> builtins.bool:
    """May an in-place op store a `src` result into a `dst` tensor? (not to a lower category)"""
    return _category(src) <= _category(dst)


def scalar_category(x) -> builtins.int:
    if isinstance(x, (builtins.bool, np.bool_)):
        return 0
    if isinstance(x, (builtins.int, np.integer)):
        return 1
    return 2


def result_type(tensor_dtypes, scalars=(), zero_dim_dtypes=()) -> np.dtype:
    """Dtype of an op over tensors with dimensions, Python scalars and 0-d tensors.

    Three tiers, as in PyTorch: tensors with dimensions decide the type; a 0-d tensor of a higher
    category lifts it to that 0-d tensor's type; a scalar of a higher category lifts it to the
    category's default type (float32, int64).
    """
    dt = None
    for d in tensor_dtypes:
        dt = d if dt is None else promote_types(dt, d)
    zt = None
    for d in zero_dim_dtypes:
        zt = d if zt is None else promote_types(zt, d)
    if zt is not None and (dt is None or _category(zt) > _category(dt)):
        dt = zt
    if dt is None:  # only scalars
        cat = max((scalar_category(s) for s in scalars), default=2)
        return (bool_, DEFAULT_INT, DEFAULT_FLOAT)[cat]
    for s in scalars:
        if scalar_category(s) > _category(dt):
            dt = (bool_, DEFAULT_INT, DEFAULT_FLOAT)[scalar_category(s)]
    return dt


def infer_dtype(data) -> np.dtype:
    """The dtype clnet.tensor(data) picks: numpy's own dtype for arrays, float32/int64/bool for lists."""
    if isinstance(data, (np.ndarray, np.generic)):
        return _from_numpy(data.dtype)
    arr = np.asarray(data)
    if arr.dtype.kind == "f":
        return DEFAULT_FLOAT
    if arr.dtype.kind in "iu":
        return DEFAULT_INT
    if arr.dtype.kind == "b":
        return bool_
    raise TypeError(f"cannot make a tensor from data of type {type(data).__name__} (numpy dtype {arr.dtype})")


def _from_numpy(dt: np.dtype) -> np.dtype:
    """numpy's dtype when clnet stores it; other integer widths widen to int32/int64."""
    if dt in SUPPORTED:
        return dt
    if dt.kind in "iu":
        return int32 if dt.itemsize < 4 or (dt.kind == "i" and dt.itemsize == 4) else int64
    return as_dtype(dt)  # raises, naming the supported dtypes

"""PyTorch's legacy tensor types: `torch.FloatTensor([1, 2])`, `torch.LongTensor(3)`, `isinstance(x,
torch.LongTensor)`, `x.type(torch.DoubleTensor)`, `x.type()` -> 'torch.FloatTensor'.

Each type makes clnet Tensors of its dtype (data is copied; sizes give an uninitialised tensor) and is an
isinstance check on the dtype, so code that tests for them keeps working. clnet has one Tensor class.
"""
from __future__ import annotations

from . import dtypes as _dt
from .core.storage import TensorBase
from .ops import creation as _cr


def new_legacy(dtype, args, device=None):
    """torch.Tensor(data) / torch.Tensor(2, 3) / torch.Tensor(): data copied into a `dtype` tensor, or an
    uninitialised one of the given sizes (or an empty one)."""
    if len(args) == 1 and isinstance(args[0], TensorBase):
        src = args[0]
        if src.dtype != dtype:
            raise TypeError(f"expected a {dtype.name} tensor, got {src.dtype.name}; use .to({dtype.name})")
        return src.detach()
    if len(args) == 1 and not isinstance(args[0], int):
        return _cr.tensor(args[0], dtype=dtype, device=device)
    if not all(isinstance(a, int) and not isinstance(a, bool) for a in args):
        raise TypeError(f"Tensor(): expected data (a list, number or array) or sizes as ints, got "
                        f"{tuple(type(a).__name__ for a in args)}")
    return _cr.empty(*(args or (0,)), dtype=dtype, device=device)


class _LegacyTensorType(type):
    def __instancecheck__(cls, obj) -> bool:
        return isinstance(obj, TensorBase) and obj.dtype == cls.dtype

    def __repr__(cls):
        return f"<class 'torch.{cls.__name__}'>"


def _legacy(name, dtype):
    def __new__(cls, *args, device=None):
        return new_legacy(dtype, args, device)
    return _LegacyTensorType(name, (), {"dtype": dtype, "__new__": __new__,
                                        "__doc__": f"Makes {dtype.name} tensors; isinstance checks the dtype."})


FloatTensor = _legacy("FloatTensor", _dt.float32)
DoubleTensor = _legacy("DoubleTensor", _dt.float64)
HalfTensor = _legacy("HalfTensor", _dt.float16)
LongTensor = _legacy("LongTensor", _dt.int64)
IntTensor = _legacy("IntTensor", _dt.int32)
ShortTensor = _legacy("ShortTensor", _dt.int16)
CharTensor = _legacy("CharTensor", _dt.int8)
ByteTensor = _legacy("ByteTensor", _dt.uint8)
BoolTensor = _legacy("BoolTensor", _dt.bool_)

BY_DTYPE = {t.dtype: t for t in (FloatTensor, DoubleTensor, HalfTensor, LongTensor, IntTensor, ShortTensor,
                                 CharTensor, ByteTensor, BoolTensor)}
BY_NAME = {f"torch.{t.__name__}": t for t in BY_DTYPE.values()}
BY_NAME.update({f"torch.cuda.{t.__name__}": t for t in BY_DTYPE.values()})


def type_name(dtype) -> str:
    """'torch.FloatTensor' for float32, ... (what Tensor.type() returns)."""
    return f"torch.{BY_DTYPE[dtype].__name__}"


def dtype_of(spec):
    """The dtype a Tensor.type() argument names: a legacy type, its name ('torch.LongTensor') or a dtype."""
    if isinstance(spec, _LegacyTensorType):
        return spec.dtype
    if isinstance(spec, str) and spec in BY_NAME:
        return BY_NAME[spec].dtype
    return _dt.as_dtype(spec)

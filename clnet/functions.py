"""The functions of the clnet namespace that take PyTorch's keyword arguments: `clnet.add(input, other, *,
alpha=1, out=None)`, `clnet.matmul(input=a, other=b)`, `clnet.div(a, b, rounding_mode="floor")`, ...

Each is one call into an op (clnet.ops), plus what PyTorch's signature adds: the parameter names
(input, other, ...), `out=` (the result is written into a given tensor, which is returned; as in
PyTorch, not with inputs that require grad), and options such as alpha or rounding_mode. A wrong
keyword argument is reported under the public name (`add() got an unexpected keyword argument`).
"""
from __future__ import annotations

import math

import numpy as np

from . import dtypes as _dt
from .backend.devices import get_device
from .generator import Generator
from .core.storage import TensorBase
from .core.tape import is_grad_enabled, no_grad
from .ops import arith as _ar
from .ops import creation as _cr
from .ops import elementwise as _ew
from .ops import indexing as _ix
from .ops import linalg as _la
from .ops import matmul as _mm
from .ops import movement as _mv
from .ops import nn as _nn
from .ops import random as _rnd
from .ops import reduce as _red
from .ops import sampling as _smp
from .ops import scan as _scan
from .ops import sort as _sort


def _out(result, out, name: str):
    """Write `result` into `out` (PyTorch's out=): out takes result's shape if it differs (its storage is
    replaced, as PyTorch resizes it) and keeps its dtype."""
    if out is None:
        return result
    if isinstance(result, tuple):
        if not isinstance(out, (tuple, list)) or len(out) != len(result):
            raise TypeError(f"{name}(): out= must be a tuple of {len(result)} tensors")
        for r, o in zip(result, out):
            _out(r, o, name)
        return type(result)(*out) if hasattr(result, "_fields") else tuple(out)
    if not isinstance(out, TensorBase):
        raise TypeError(f"{name}(): out= must be a Tensor, got {type(out).__name__}")
    if is_grad_enabled() and (result.requires_grad or out.requires_grad):
        raise RuntimeError(f"{name}(): functions with out=... arguments don't support automatic differentiation, "
                           "but one of the arguments requires grad; call it without out= (or under no_grad)")
    if not _dt.can_cast(result.dtype, out.dtype):
        raise TypeError(f"{name}(): result type {result.dtype.name} can't be cast to the desired output type "
                        f"{out.dtype.name}")
    with no_grad():
        if tuple(out.shape) != tuple(result.shape):
            out.data = result if result.dtype == out.dtype else _ew.cast(result, out.dtype)
        else:
            _ew.copy_(out, result)
    return out


def _named(fn, name: str):
    """fn, reporting itself (and wrong arguments) as `name`."""
    fn.__name__ = fn.__qualname__ = name
    fn.__code__ = fn.__code__.replace(co_name=name, co_qualname=name)
    return fn


def _unary(name: str, op):
    def fn(input, *, out=None):
        return _out(op(input), out, name)
    fn.__doc__ = op.__doc__
    return _named(fn, name)


def _binary(name: str, op):
    def fn(input, other, *, out=None):
        return _out(op(input, other), out, name)
    fn.__doc__ = op.__doc__
    return _named(fn, name)


# --- elementwise -----------------------------------------------------------------------------------
_UNARY_NAMES = ("abs", "neg", "sign", "exp", "log", "sqrt", "rsqrt", "sin", "cos", "tan", "tanh", "sigmoid", "relu",
                "reciprocal", "square", "log1p", "expm1", "floor", "ceil", "trunc", "frac", "logical_not", "isnan",
                "isinf", "isfinite", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh", "log2",
                "log10", "exp2", "erf", "erfc")
abs, neg, sign, exp, log, sqrt, rsqrt, sin, cos, tan, tanh, sigmoid, relu, reciprocal, square, log1p, expm1, \
    floor, ceil, trunc, frac, logical_not, isnan, isinf, isfinite, asin, acos, atan, sinh, cosh, asinh, acosh, \
    atanh, log2, log10, exp2, erf, erfc = (_unary(n, getattr(_ew, n)) for n in _UNARY_NAMES)
absolute, negative, sgn, fix = abs, neg, sign, trunc
arcsin, arccos, arctan, arcsinh, arccosh, arctanh = asin, acos, atan, asinh, acosh, atanh

_BINARY_NAMES = ("mul", "pow", "maximum", "minimum", "floor_divide", "remainder", "fmod", "atan2", "hypot", "eq",
                 "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_xor")
mul, pow, maximum, minimum, floor_divide, remainder, fmod, atan2, hypot, eq, ne, lt, le, gt, ge, logical_and, \
    logical_or, logical_xor = (_binary(n, getattr(_ew, n)) for n in _BINARY_NAMES)
multiply, arctan2 = mul, atan2
greater, greater_equal, less, less_equal, not_equal = gt, ge, lt, le, ne


def add(input, other, *, alpha=1, out=None):
    """input + alpha * other (broadcast)."""
    return _out(_ew.add(input, other if alpha == 1 else _ew.mul(other, alpha)), out, "add")


def sub(input, other, *, alpha=1, out=None):
    """input - alpha * other (broadcast)."""
    return _out(_ew.sub(input, other if alpha == 1 else _ew.mul(other, alpha)), out, "sub")


subtract = _named(lambda input, other, *, alpha=1, out=None: sub(input, other, alpha=alpha, out=out), "subtract")


def div(input, other, *, rounding_mode=None, out=None):
    """input / other (true division; rounding_mode='trunc' or 'floor' rounds the quotient)."""
    return _out(_ar.divide(input, other, rounding_mode), out, "div")


def divide(input, other, *, rounding_mode=None, out=None):
    return _out(_ar.divide(input, other, rounding_mode), out, "divide")


def true_divide(input, other, *, out=None):
    return _out(_ew.div(input, other), out, "true_divide")


def float_power(input, exponent, *, out=None):
    """input ** exponent in float64."""
    a = _ew.cast(input, _dt.float64) if isinstance(input, TensorBase) and input.dtype != _dt.float64 else input
    b = _ew.cast(exponent, _dt.float64) if isinstance(exponent, TensorBase) and exponent.dtype != _dt.float64 \
        else exponent
    return _out(_ew.pow(a, b), out, "float_power")


def fmax(input, other, *, out=None):
    """maximum that ignores NaN."""
    return _out(_ar.fmax(input, other), out, "fmax")


def fmin(input, other, *, out=None):
    """minimum that ignores NaN."""
    return _out(_ar.fmin(input, other), out, "fmin")


def round(input, *, decimals=0, out=None):
    """Round half to even (to `decimals` decimal places)."""
    if decimals == 0:
        return _out(_ew.round(input), out, "round")
    scale = 10.0 ** decimals
    return _out(_ew.div(_ew.round(_ew.mul(input, scale)), scale), out, "round")


def clamp(input, min=None, max=None, *, out=None):
    """Elementwise min(max(input, min), max); min/max may be numbers or tensors."""
    return _out(_ew.clamp(input, min, max), out, "clamp")


def clip(input, min=None, max=None, *, out=None):
    return _out(_ew.clamp(input, min, max), out, "clip")


def clamp_min(input, min):
    return _ew.clamp(input, min, None)


def clamp_max(input, max):
    return _ew.clamp(input, None, max)


def where(condition, input=None, other=None, *, out=None):
    """input where condition holds, else other; where(condition) alone is nonzero(condition, as_tuple=True)."""
    if input is None and other is None:
        return _ix.nonzero(condition, as_tuple=True)
    if input is None or other is None:
        raise TypeError("where() takes condition, input and other (or condition alone)")
    return _out(_ew.where(condition, input, other), out, "where")


def lerp(input, end, weight, *, out=None):
    """input + weight * (end - input)."""
    return _out(_ar.lerp(input, end, weight), out, "lerp")


def addcmul(input, tensor1, tensor2, *, value=1, out=None):
    """input + value * tensor1 * tensor2 (one kernel)."""
    return _out(_ar.addcmul(input, tensor1, tensor2, value), out, "addcmul")


def addcdiv(input, tensor1, tensor2, *, value=1, out=None):
    """input + value * tensor1 / tensor2 (one kernel)."""
    return _out(_ar.addcdiv(input, tensor1, tensor2, value), out, "addcdiv")


def nan_to_num(input, nan=0.0, posinf=None, neginf=None, *, out=None):
    """NaN, +inf and -inf replaced (by default by 0 and the dtype's largest and smallest finite values)."""
    return _out(_ar.nan_to_num(input, nan, posinf, neginf), out, "nan_to_num")


def isclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    """|input - other| <= atol + rtol * |other| elementwise, as a bool tensor."""
    return _ar.isclose(input, other, rtol, atol, equal_nan)


def allclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False) -> bool:
    """True when every element of input is close to other's (isclose); waits for the device."""
    return bool(_red.all(isclose(input, other, rtol, atol, equal_nan)).item())


def equal(input, other) -> bool:
    """True when both have the same shape and the same elements."""
    if tuple(input.shape) != tuple(other.shape):
        return False
    return bool(_red.all(_ew.eq(input, other)).item())


# --- products --------------------------------------------------------------------------------------
def matmul(input, other, *, out=None):
    """The matrix product with numpy's rules (1-D operands promoted, batch dims broadcast)."""
    return _out(_mm.matmul(input, other), out, "matmul")


def mm(input, mat2, *, out=None):
    return _out(_mm.mm(input, mat2), out, "mm")


def bmm(input, mat2, *, out=None):
    return _out(_mm.bmm(input, mat2), out, "bmm")


def dot(input, other, *, out=None):
    return _out(_la.dot(input, other), out, "dot")


vdot = _named(lambda input, other, *, out=None: dot(input, other, out=out), "vdot")


def outer(input, vec2, *, out=None):
    return _out(_la.outer(input, vec2), out, "outer")


ger = _named(lambda input, vec2, *, out=None: outer(input, vec2, out=out), "ger")


def mv(input, vec, *, out=None):
    return _out(_la.mv(input, vec), out, "mv")


def addmm(input, mat1, mat2, *, beta=1, alpha=1, out=None):
    return _out(_la.addmm(input, mat1, mat2, beta=beta, alpha=alpha), out, "addmm")


def addmv(input, mat, vec, *, beta=1, alpha=1, out=None):
    return _out(_la.addmv(input, mat, vec, beta=beta, alpha=alpha), out, "addmv")


def addr(input, vec1, vec2, *, beta=1, alpha=1, out=None):
    return _out(_la.addr(input, vec1, vec2, beta=beta, alpha=alpha), out, "addr")


def baddbmm(input, batch1, batch2, *, beta=1, alpha=1, out=None):
    return _out(_la.baddbmm(input, batch1, batch2, beta=beta, alpha=alpha), out, "baddbmm")


def addbmm(input, batch1, batch2, *, beta=1, alpha=1, out=None):
    return _out(_la.addbmm(input, batch1, batch2, beta=beta, alpha=alpha), out, "addbmm")


# --- scans and sorting -----------------------------------------------------------------------------
def cumsum(input, dim, *, dtype=None, out=None):
    """Running sums along dim."""
    return _out(_scan.cumsum(input, dim, dtype=dtype), out, "cumsum")


def cumprod(input, dim, *, dtype=None, out=None):
    """Running products along dim."""
    return _out(_scan.cumprod(input, dim, dtype=dtype), out, "cumprod")


def sort(input, dim=-1, descending=False, stable=False, *, out=None):
    """(values, indices) sorted along dim (stable)."""
    return _out(_sort.sort(input, dim, descending, stable), out, "sort")


def argsort(input, dim=-1, descending=False, stable=False):
    return _sort.argsort(input, dim, descending, stable)


def topk(input, k, dim=-1, largest=True, sorted=True, *, out=None):
    """(values, indices) of the k largest (smallest with largest=False) elements along dim."""
    return _out(_sort.topk(input, k, dim, largest, sorted), out, "topk")


def kthvalue(input, k, dim=-1, keepdim=False, *, out=None):
    return _out(_sort.kthvalue(input, k, dim, keepdim), out, "kthvalue")


# --- joining, statistics, misc ----------------------------------------------------------------------------
def cat(tensors, dim=0, *, out=None):
    """Tensors joined along an existing dim."""
    return _out(_mv.concat(tensors, dim), out, "cat")


def concat(tensors, dim=0, *, out=None):
    return _out(_mv.concat(tensors, dim), out, "concat")


def concatenate(tensors, axis=0, *, out=None):
    return _out(_mv.concat(tensors, axis), out, "concatenate")


def stack(tensors, dim=0, *, out=None):
    """Tensors of one shape joined along a new dim."""
    return _out(_mv.stack(tensors, dim), out, "stack")


def hstack(tensors, *, out=None):
    """Joined along dim 1 (dim 0 for 1-D tensors)."""
    tensors = [t if t.ndim else _mv.reshape(t, (1,)) for t in tensors]
    return _out(_mv.concat(tensors, 0 if tensors[0].ndim == 1 else 1), out, "hstack")


def vstack(tensors, *, out=None):
    """Joined along dim 0, 1-D tensors as rows."""
    tensors = [t if t.ndim >= 2 else _mv.reshape(t, (1, -1)) for t in tensors]
    return _out(_mv.concat(tensors, 0), out, "vstack")


def std_mean(input, dim=None, unbiased=True, keepdim=False, *, correction=None):
    """(std, mean) over dim."""
    return (_red.std(input, dim, keepdim, unbiased, correction=correction), _red.mean(input, dim, keepdim))


def var_mean(input, dim=None, unbiased=True, keepdim=False, *, correction=None):
    """(var, mean) over dim."""
    return (_red.var(input, dim, keepdim, unbiased, correction=correction), _red.mean(input, dim, keepdim))


def softmax(input, dim, dtype=None):
    """exp(input) normalised along dim (torch.softmax)."""
    x = input if dtype is None else _ew.cast(input, _dt.as_dtype(dtype))
    return _nn.softmax(x, dim)


def log_softmax(input, dim, dtype=None):
    x = input if dtype is None else _ew.cast(input, _dt.as_dtype(dtype))
    return _nn.log_softmax(x, dim)


def numel(input) -> int:
    return math.prod(input.shape)


def is_floating_point(input) -> bool:
    return _dt.is_floating(input.dtype)


def is_nonzero(input) -> bool:
    """The truth value of a one-element tensor."""
    if input.numel() != 1:
        raise RuntimeError(f"Boolean value of Tensor with {input.numel()} values is ambiguous")
    return bool(input.item())


def as_tensor(data, dtype=None, device=None):
    """data as a tensor: itself when it already is one of that dtype and device, else a copy."""
    if isinstance(data, TensorBase):
        if (dtype is None or _dt.as_dtype(dtype) == data.dtype) and (device is None or data.device is device):
            return data
        out = data
        if device is not None and get_device(device) is not data.device:
            out = _mv.to_device(out, get_device(device))
        if dtype is not None and _dt.as_dtype(dtype) != out.dtype:
            out = _ew.cast(out, _dt.as_dtype(dtype))
        return out
    return _cr.tensor(data, dtype=dtype, device=device)


def scalar_tensor(s, *, dtype=None, device=None):
    return _cr.tensor(s, dtype=dtype if dtype is not None else _dt.DEFAULT_FLOAT, device=device)



# --- random draws that take generator= -------------------------------------------------------------
class _drawing_from:
    """Inside the block the device's random stream is keyed by `generator` (a clnet.Generator: the next
    seed it hands out), so a program passing generator=g gets draws reproducible from g; the global
    stream is restored afterwards. Without a generator nothing changes."""

    def __init__(self, generator):
        if generator is not None and not isinstance(generator, Generator):
            raise TypeError(f"generator must be a clnet.Generator, got {type(generator).__name__}")
        self.generator = generator

    def __enter__(self):
        if self.generator is not None:
            self._saved = _rnd.get_rng_state()
            _rnd.set_rng_state((self.generator.random64(), 0))

    def __exit__(self, *exc):
        if self.generator is not None:
            _rnd.set_rng_state(self._saved)


def rand(*size, generator=None, dtype=None, device=None, requires_grad=False, out=None):
    """Uniform values in [0, 1)."""
    with _drawing_from(generator):
        return _out(_rnd.rand(*size, dtype=dtype, device=device, requires_grad=requires_grad), out, "rand")


def randn(*size, generator=None, dtype=None, device=None, requires_grad=False, out=None):
    """Standard normal values."""
    with _drawing_from(generator):
        return _out(_rnd.randn(*size, dtype=dtype, device=device, requires_grad=requires_grad), out, "randn")


def randint(low, high=None, size=None, *, generator=None, dtype=None, device=None, requires_grad=False):
    """Integers uniform in [low, high): randint(high, size) or randint(low, high, size)."""
    with _drawing_from(generator):
        return _rnd.randint(low, high, size, dtype=dtype, device=device, requires_grad=requires_grad)


def randperm(n, *, generator=None, dtype=None, device=None):
    """A random permutation of 0..n-1 (drawn from `generator` on the host when one is given)."""
    if generator is None:
        return _rnd.randperm(n, dtype=dtype, device=device)
    if not isinstance(generator, Generator):
        raise TypeError(f"generator must be a clnet.Generator, got {type(generator).__name__}")
    perm = generator.permutation(n).astype(_dt.as_dtype(dtype) if dtype is not None else _dt.int64)
    return _cr.tensor(perm, device=device)


def normal(mean, std=1.0, size=None, *, generator=None, dtype=None, device=None, requires_grad=False, out=None):
    """N(mean, std**2) samples; mean/std tensors (broadcast) or numbers with size."""
    with _drawing_from(generator):
        return _out(_smp.normal(mean, std, size, dtype=dtype, device=device, requires_grad=requires_grad),
                    out, "normal")


def bernoulli(input, p=None, *, generator=None, out=None):
    """0/1 with probability input (elementwise) or p."""
    with _drawing_from(generator):
        return _out(_smp.bernoulli(input, p), out, "bernoulli")


def multinomial(input, num_samples, replacement=False, *, generator=None, out=None):
    """Category indices drawn from the rows of non-negative weights."""
    with _drawing_from(generator):
        return _out(_smp.multinomial(input, num_samples, replacement), out, "multinomial")

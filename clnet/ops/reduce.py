"""Reductions (sum, mean, max, min, argmax, argmin) over any set of axes, with their gradients.

The reduced axes are moved last and the view made contiguous, so one kernel reduces rows of a
[kept, reduced] matrix; the kept axes then give the output's shape.
"""
from __future__ import annotations

import math

import numpy as np

from .. import dtypes as _dt
from ..autograd import needs_grad, record
from ..backend.programs import ctype, get_kernel
from ..tensor import Tensor
from .movement import _axis, contiguous, permute, reshape, expand


def _axes(x: Tensor, dim) -> tuple:
    if dim is None:
        return tuple(range(x.ndim))
    dims = dim if isinstance(dim, (tuple, list)) else (dim,)
    axes = tuple(sorted({_axis(d, x.ndim) for d in dims}))
    if len(axes) != len(dims):
        raise ValueError(f"dim {dim} names an axis twice")
    return axes


def _kept_shape(x, axes, keepdim):
    if keepdim:
        return tuple(1 if i in axes else s for i, s in enumerate(x.shape))
    return tuple(s for i, s in enumerate(x.shape) if i not in axes)


def _rows(x: Tensor, axes):
    """x as a contiguous [rows, n] tensor with the reduced axes last."""
    kept = [i for i in range(x.ndim) if i not in axes]
    xp = permute(x.detach(), kept + list(axes)) if x.ndim else x.detach()
    rows = math.prod(x.shape[i] for i in kept)
    n = math.prod(x.shape[i] for i in axes)
    return contiguous(xp), rows, n


def _reduce(op: str, x: Tensor, axes, out_dtype, acc_dtype) -> Tensor:
    xc, rows, n = _rows(x, axes)
    out = Tensor._empty((rows,), out_dtype, x.device)
    if rows == 0:
        return out
    if n == 0:
        if op in ("sum",):
            from .elementwise import launch
            return launch("v0", [0], out_dtype, out_dtype, out=out)
        raise ValueError(f"{op} of an empty dimension has no identity; reduce over non-empty axes")
    idx = "int" if xc._storage_size < 2**31 else "long"
    idt = np.dtype(np.int32 if idx == "int" else np.int64)
    kern = get_kernel(x.device, "reduce.cl.mako", "reduce_rows", arg_dtypes=[idt, idt, None, idt, None, idt],
                      op=op, t=ctype(x.dtype), acc=ctype(acc_dtype), out_t=ctype(out_dtype), idx=idx)
    wg = x.device.profile.reduce_wg
    kern(x.device.queue, (-(-rows // wg) * wg,), (wg,), rows, n, xc._buf, xc.offset, out._buf, out.offset)
    return out


def _acc_dtype(x: Tensor):
    if x.dtype == _dt.float16:
        return _dt.float32
    if x.dtype in (_dt.bool_, _dt.uint8, _dt.int32):
        return _dt.int64
    return x.dtype


def sum(x: Tensor, dim=None, keepdim=False, dtype=None) -> Tensor:
    axes = _axes(x, dim)
    out_dt = _dt.as_dtype(dtype) if dtype is not None else (
        _dt.int64 if x.dtype in (_dt.bool_, _dt.uint8, _dt.int32) else x.dtype)
    acc = _dt.promote_types(_acc_dtype(x), out_dt) if _dt.is_floating(out_dt) else _dt.int64
    y = _reduce("sum", x, axes, out_dt, acc).reshape(_kept_shape(x, axes, keepdim))
    if needs_grad(x):
        kept = _kept_shape(x, axes, True)
        record("sum", y, (x,), lambda g: expand(reshape(g, kept), x.shape))
    return y


def mean(x: Tensor, dim=None, keepdim=False) -> Tensor:
    if not _dt.is_floating(x.dtype):
        raise TypeError(f"mean needs a floating-point tensor, got {x.dtype.name}; use .float() first")
    axes = _axes(x, dim)
    n = math.prod(x.shape[i] for i in axes)
    return sum(x, dim, keepdim) * (1.0 / n if n else float("nan"))


def _minmax(op: str, x: Tensor, dim, keepdim):
    axes = _axes(x, dim)
    y = _reduce(op, x, axes, x.dtype, _acc_dtype(x) if _dt.is_floating(x.dtype) else x.dtype)
    y = y.reshape(_kept_shape(x, axes, keepdim))
    if needs_grad(x):
        kept = _kept_shape(x, axes, True)

        def backward(g):
            yk = reshape(y.detach(), kept)
            hit = x.detach() == yk
            count = sum(hit, tuple(axes), keepdim=True)
            return reshape(g, kept) * hit / count
        record(op, y, (x,), backward, saved=(x,))
    return y


def amax(x, dim=None, keepdim=False):
    return _minmax("max", x, dim, keepdim)


def amin(x, dim=None, keepdim=False):
    return _minmax("min", x, dim, keepdim)


def _arg(op, x: Tensor, dim, keepdim):
    if dim is None:
        y = _reduce(op, x, tuple(range(x.ndim)), _dt.int64, x.dtype if _dt.is_floating(x.dtype) else _dt.int64)
        return y.reshape(())
    axes = (_axis(dim, x.ndim),)
    y = _reduce(op, x, axes, _dt.int64, _acc_dtype(x) if _dt.is_floating(x.dtype) else _dt.int64)
    return y.reshape(_kept_shape(x, axes, keepdim))


def argmax(x, dim=None, keepdim=False):
    return _arg("argmax", x, dim, keepdim)


def argmin(x, dim=None, keepdim=False):
    return _arg("argmin", x, dim, keepdim)


def max(x, dim=None, keepdim=False):
    """max over all elements, or (values, indices) along `dim` as in PyTorch."""
    if dim is None:
        return amax(x)
    return amax(x, dim, keepdim), argmax(x, dim, keepdim)


def min(x, dim=None, keepdim=False):
    if dim is None:
        return amin(x)
    return amin(x, dim, keepdim), argmin(x, dim, keepdim)


def sum_to(g: Tensor, shape) -> Tensor:
    """Sum a broadcast gradient back down to `shape` (the inverse of broadcasting)."""
    shape = tuple(shape)
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = list(range(lead)) + [lead + i for i, s in enumerate(shape) if s == 1 and g.shape[lead + i] != 1]
    out = sum(g, tuple(axes), keepdim=True) if axes else g
    return reshape(out, shape)

"""Running sums and products along a dimension: cumsum, cumprod (kernels/scan.cl.mako).

One work-item walks each line in order (deterministic, no atomics). The gradient of cumsum is the
reversed cumsum of the incoming gradient (the same kernel, run from the end); cumprod's gradient has
its own kernel, exact where the input has zeros.
"""
from __future__ import annotations

import math

import numpy as np

from .. import dtypes as _dt
from ..backend.programs import ctype, get_kernel
from ..core import dispatch
from ..core.dispatch import op
from ..core.storage import TensorBase
from ..core.tape import needs_grad, record
from .elementwise import cast
from .movement import contiguous
from .shapes import axis

_INT_MAX = 2**31 - 1


def _layout(x: TensorBase, d: int):
    """(outer, L, inner) of contiguous x split at dim d."""
    shape = x.shape or (1,)
    return math.prod(shape[:d]), shape[d], math.prod(shape[d + 1:])


def _run_scan(x: TensorBase, d: int, op_name: str, out_dtype, reverse=False) -> TensorBase:
    x = contiguous(x)
    out = TensorBase._empty(x.shape, out_dtype, x.device)
    outer, L, inner = _layout(x, d)
    lines = outer * inner
    if lines * L == 0:
        return out
    acc = _acc_type(out_dtype)
    idx = "int" if max(x._storage_size, out.numel()) <= _INT_MAX else "long"
    it = np.dtype(np.int32 if idx == "int" else np.int64)
    kern = get_kernel(x.device, "scan.cl.mako", "scan", arg_dtypes=[it, it, it, None, it, None],
                      kind="scan", op=op_name, t=ctype(x.dtype), out_t=ctype(out_dtype), acc=acc,
                      reverse=reverse, idx=idx)
    wg = x.device.profile.elementwise_wg
    dispatch.launch(x.device, kern, (-(-lines // wg) * wg,), (wg,), [lines, L, inner, x._buf, x.offset, out._buf])
    return out


def _acc_type(dtype) -> str:
    if dtype == _dt.float64:
        return "double"
    if _dt.is_floating(dtype):
        return "float"
    return "long"


def _scan_dtype(x: TensorBase, dtype):
    """PyTorch's rule: the given dtype, else the input's, with integers and bools widened to int64."""
    if dtype is not None:
        return _dt.as_dtype(dtype)
    return x.dtype if _dt.is_floating(x.dtype) else _dt.int64


def _check(x, dim, name):
    if not isinstance(x, TensorBase):
        raise TypeError(f"{name}: expected a Tensor, got {type(x).__name__}")
    if dim is None:
        raise TypeError(f"{name}() missing required argument 'dim'")
    return axis(dim, max(x.ndim, 1))


@op("cumsum")
def cumsum(input: TensorBase, dim, *, dtype=None) -> TensorBase:
    """out[..., k, ...] = sum of input[..., :k+1, ...] along dim (integers sum in int64)."""
    d = _check(input, dim, "cumsum")
    out_dt = _scan_dtype(input, dtype)
    src = input if input.dtype == out_dt else cast(input, out_dt)
    y = _run_scan(src, d, "sum", out_dt)
    if needs_grad(input) and _dt.is_floating(out_dt):
        in_dt = input.dtype
        record("cumsum", y, (input,), lambda g: _back(_run_scan(g, d, "sum", g.dtype, reverse=True), in_dt))
    return y


@op("cumprod")
def cumprod(input: TensorBase, dim, *, dtype=None) -> TensorBase:
    """out[..., k, ...] = product of input[..., :k+1, ...] along dim (integers multiply in int64)."""
    d = _check(input, dim, "cumprod")
    out_dt = _scan_dtype(input, dtype)
    src = input if input.dtype == out_dt else cast(input, out_dt)
    y = _run_scan(src, d, "prod", out_dt)
    if needs_grad(input) and _dt.is_floating(out_dt):
        saved = src.detach()
        record("cumprod", y, (input,), lambda g: _back(_cumprod_grad(saved, g, d), input.dtype), saved=(saved,))
    return y


def _back(g, dtype):
    return g if g.dtype == dtype else cast(g, dtype)


def _cumprod_grad(x: TensorBase, g: TensorBase, d: int) -> TensorBase:
    x, g = contiguous(x), contiguous(cast(g, x.dtype) if g.dtype != x.dtype else g)
    out = TensorBase._empty(x.shape, x.dtype, x.device)
    outer, L, inner = _layout(x, d)
    lines = outer * inner
    if lines * L == 0:
        return out
    idx = "int" if x.numel() <= _INT_MAX else "long"
    it = np.dtype(np.int32 if idx == "int" else np.int64)
    kern = get_kernel(x.device, "scan.cl.mako", "cumprod_grad", arg_dtypes=[it, it, it, None, it, None, it, None],
                      kind="cumprod_grad", op="prod", t=ctype(x.dtype), out_t=ctype(x.dtype),
                      acc=_acc_type(x.dtype), reverse=False, idx=idx)
    wg = x.device.profile.elementwise_wg
    dispatch.launch(x.device, kern, (-(-lines // wg) * wg,), (wg,), [lines, L, inner, x._buf, x.offset, g._buf, g.offset,
                                                                      out._buf])
    return out

"""Layer, group and instance normalisation: one fused kernel family (kernels/norm.cl.mako).

`row_norm` normalises rows of n contiguous values with an optional elementwise scale and shift over the
row: that is layer_norm (rows = everything before normalized_shape), and, without the row-wise affine,
group_norm (rows = (N, group)), whose per-channel affine is one fused elementwise kernel after it.
instance_norm is group_norm with one channel per group. The forward saves each row's mean and 1 / std;
the backward is one kernel for dx and one for the weight and bias sums (split over the rows so the
device has enough work-items, the splits added by clnet.ops.reduce).
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import dtypes as _dt
from ..backend.programs import ctype, get_kernel
from ..core import dispatch
from ..core.dispatch import op
from ..core.storage import TensorBase
from ..core.tape import needs_grad, record
from .elementwise import cast, pointwise
from .movement import contiguous, reshape
from .nn import _acc_dtype, _idx, _launch_rows, row_group_size
from .reduce import sum as _sum


def _check(x, name: str, what: str = "input") -> None:
    if not isinstance(x, TensorBase):
        raise TypeError(f"{name}: {what} must be a clnet Tensor, got {type(x).__name__}")
    if not _dt.is_floating(x.dtype):
        raise TypeError(f"{name}: {what} must be a floating-point tensor, got {x.dtype.name}")


def _check_param(p, like: TensorBase, shape: tuple, name: str, what: str) -> None:
    if p is None:
        return
    _check(p, name, what)
    if tuple(p.shape) != tuple(shape):
        raise ValueError(f"{name}: {what} must have shape {tuple(shape)}, got {tuple(p.shape)}")
    if p.device is not like.device:
        raise ValueError(f"{name}: {what} is on {p.device}, the input on {like.device}; move it with .to(device)")
    if p.dtype != like.dtype:
        raise TypeError(f"{name}: {what} is {p.dtype.name}, the input {like.dtype.name}")


def _params(kernel, dtype, idx, wg=1, has_weight=False, has_bias=False, vw=1):
    return dict(kernel=kernel, t=ctype(dtype), acc=ctype(_acc_dtype(dtype)), idx=idx, wg=wg, vw=vw,
                has_weight=has_weight, has_bias=has_bias)


def _row_vector_width(device, wg: int, n: int) -> int:
    """Values per vector when one work-item streams a row (wg == 1): the profile's width, for rows of at
    least two vectors (shorter rows gain nothing over scalar loads)."""
    vw = device.profile.vector_width if wg == 1 else 1
    return vw if vw > 1 and n >= 2 * vw else 1


def row_norm(x: TensorBase, n: int, weight=None, bias=None, eps: float = 1e-5, name: str = "layer_norm") -> TensorBase:
    """Normalise each run of n contiguous values of x (x.numel() % n == 0) to mean 0 and variance 1, then
    scale by weight and shift by bias (each n values, or None). Differentiable in x, weight and bias."""
    dev = x.device
    rows = x.numel() // n if n else 0
    y = TensorBase._empty(x.shape, x.dtype, dev)
    acc = _acc_dtype(x.dtype)
    mean = TensorBase._empty((rows,), acc, dev)
    rstd = TensorBase._empty((rows,), acc, dev)
    if rows == 0 or n == 0:
        return y
    xc = contiguous(x.detach())
    wc = contiguous(weight.detach()) if weight is not None else None
    bc = contiguous(bias.detach()) if bias is not None else None
    idx, idt = _idx(xc, y)
    wg = row_group_size(dev, rows, n)
    extra_args, extra_types = [], []
    for t in (wc, bc):
        if t is not None:
            extra_args += [t._buf, t.offset]
            extra_types += [None, idt]
    kern = get_kernel(dev, "norm.cl.mako", "norm_forward",
                      arg_dtypes=[idt, idt, None, idt] + extra_types + [np.dtype(acc), None, idt, None, None],
                      **_params("forward", x.dtype, idx, wg, wc is not None, bc is not None,
                                _row_vector_width(dev, wg, n)))
    _launch_rows(dev, kern, rows, wg, rows, n, xc._buf, xc.offset, *extra_args, float(eps), y._buf, y.offset,
                 mean._buf, rstd._buf)
    inputs = tuple(t for t in (x, weight, bias) if t is not None)
    if needs_grad(*inputs):
        bshape = tuple(bias.shape) if bias is not None else None

        def backward(g):
            return _row_norm_backward(g, xc, wc, bshape, mean, rstd, n, rows, x.requires_grad,
                                      weight is not None and weight.requires_grad,
                                      bias is not None and bias.requires_grad, weight is not None, bias is not None)
        record(name, y, inputs, backward, saved=tuple(t for t in (xc, wc, bc) if t is not None))
    return y


def _row_norm_backward(g, xc, wc, bshape, mean, rstd, n, rows, want_x, want_w, want_b, has_w, has_b):
    dev = xc.device
    gc = contiguous(g if g.dtype == xc.dtype else cast(g, xc.dtype))
    idx, idt = _idx(xc, gc)
    dx = dw = db = None
    if want_x:
        dx = TensorBase._empty(xc.shape, xc.dtype, dev)
        wg = row_group_size(dev, rows, n)
        w_args, w_types = ([wc._buf, wc.offset], [None, idt]) if wc is not None else ([], [])
        kern = get_kernel(dev, "norm.cl.mako", "norm_backward",
                          arg_dtypes=[idt, idt, None, idt, None, idt] + w_types + [None, None, None, idt],
                          **_params("backward", xc.dtype, idx, wg, wc is not None, vw=_row_vector_width(dev, wg, n)))
        _launch_rows(dev, kern, rows, wg, rows, n, gc._buf, gc.offset, xc._buf, xc.offset, *w_args,
                     mean._buf, rstd._buf, dx._buf, dx.offset)
    if want_w or want_b:
        dw, db = _param_grads(gc, xc, mean, rstd, n, rows, want_w, want_b)
        dw = reshape(dw, wc.shape) if dw is not None else None
        db = reshape(db, bshape) if db is not None else None
    grads = [dx]
    if has_w:
        grads.append(dw)
    if has_b:
        grads.append(db)
    return tuple(grads)


def _param_grads(gc, xc, mean, rstd, n, rows, want_w, want_b):
    """(sum over rows of g * xhat, sum over rows of g), each of n values, or None where not wanted."""
    dev = xc.device
    acc = _acc_dtype(xc.dtype)
    vw = dev.profile.vector_width if dev.type == "cpu" else 1
    while vw > 1 and n % vw:
        vw //= 2
    cols = n // vw
    # splits of the rows: enough work-items for the device (GPUs), and on CPUs about four per core, each
    # streaming a contiguous block of rows
    target = dev.compute_units * (4 if dev.type == "cpu" else dev.profile.elementwise_wg * 4)
    nsplit = max(1, min(rows, -(-target // cols)))
    per = -(-rows // nsplit)
    nsplit = -(-rows // per)
    idx, idt = _idx(xc, gc)
    if nsplit * n >= 2**31:
        idx, idt = "long", np.dtype(np.int64)
    parts = [TensorBase._empty((nsplit, n), acc, dev) if want else None for want in (want_w, want_b)]
    kern = get_kernel(dev, "norm.cl.mako", "norm_grad_params",
                      arg_dtypes=[idt] * 4 + [None, idt, None, idt, None, None] + [None] * (want_w + want_b),
                      **_params("grad_params", xc.dtype, idx, 1, want_w, want_b, vw=vw))
    wg = dev.profile.elementwise_wg
    items = nsplit * cols
    dispatch.launch(dev, kern, (-(-items // wg) * wg,), (wg,),
                    [rows, n, per, nsplit, gc._buf, gc.offset, xc._buf, xc.offset, mean._buf, rstd._buf]
                    + [p._buf for p in parts if p is not None])
    out = []
    for p in parts:
        if p is None:
            out.append(None)
            continue
        s = _sum(p, 0) if nsplit > 1 else reshape(p, (n,))
        out.append(s if s.dtype == xc.dtype else cast(s, xc.dtype))
    return tuple(out)


# --- the PyTorch-facing functions -----------------------------------------------------------------------
def _shape_arg(normalized_shape) -> tuple:
    if isinstance(normalized_shape, numbers.Integral):
        return (int(normalized_shape),)
    return tuple(int(s) for s in normalized_shape)


@op("layer_norm")
def layer_norm(input: TensorBase, normalized_shape, weight=None, bias=None, eps: float = 1e-5) -> TensorBase:
    """Normalise over the trailing dimensions `normalized_shape` (mean 0, biased variance 1), then
    weight * x + bias elementwise over those dimensions (PyTorch's F.layer_norm)."""
    _check(input, "layer_norm")
    shape = _shape_arg(normalized_shape)
    if not shape or tuple(input.shape[input.ndim - len(shape):]) != shape or len(shape) > input.ndim:
        raise ValueError(f"layer_norm: normalized_shape {shape} must be the trailing dimensions of the input, "
                         f"got input of shape {tuple(input.shape)}")
    _check_param(weight, input, shape, "layer_norm", "weight")
    _check_param(bias, input, shape, "layer_norm", "bias")
    return row_norm(input, math.prod(shape), weight, bias, eps, "layer_norm")


@op("group_norm")
def group_norm(input: TensorBase, num_groups: int, weight=None, bias=None, eps: float = 1e-5) -> TensorBase:
    """Normalise (N, C, *) input over each group of C // num_groups channels (and all positions), then
    scale and shift each channel by weight[c], bias[c] (PyTorch's F.group_norm)."""
    _check(input, "group_norm")
    if input.ndim < 2:
        raise ValueError(f"group_norm: expected input of shape (N, C, *), got {tuple(input.shape)}")
    N, C = input.shape[:2]
    if not isinstance(num_groups, numbers.Integral) or num_groups <= 0 or C % num_groups:
        raise ValueError(f"group_norm: the number of channels ({C}) must be divisible by num_groups "
                         f"({num_groups})")
    _check_param(weight, input, (C,), "group_norm", "weight")
    _check_param(bias, input, (C,), "group_norm", "bias")
    n = input.numel() // max(N * num_groups, 1)
    y = row_norm(input, n, None, None, eps, "group_norm")
    return channel_affine(y, weight, bias)


def channel_affine(y: TensorBase, weight=None, bias=None) -> TensorBase:
    """y * weight[c] + bias[c] over dim 1 of (N, C, *) in one kernel (identity when both are None)."""
    if weight is None and bias is None:
        return y
    cshape = (1, y.shape[1]) + (1,) * (y.ndim - 2)
    w = reshape(weight, cshape) if weight is not None else 1.0
    b = reshape(bias, cshape) if bias is not None else 0.0
    # v0 = y, v1 = weight, v2 = bias, v3 = incoming gradient
    return pointwise("channel_affine", "v0 * v1 + v2", [y, w, b], {0: "v3 * v1", 1: "v3 * v0", 2: "v3"}, y.dtype)


__all__ = ["row_norm", "layer_norm", "group_norm", "channel_affine"]

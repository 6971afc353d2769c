"""Batch normalisation in two passes each way (kernels/batchnorm.cl.mako), optionally with the ReLU after it.

    forward (training)   bn_stats (shifted sums per channel and batch split) -> bn_finalize (mean, invstd,
                         scale, shift; running statistics updated in place) -> bn_apply (y = x*scale + shift)
    forward (eval)       bn_eval (params from the running statistics) -> bn_apply
    backward             bn_stats (sum g, sum g*(x - mean)) -> bn_grad_params (grad weight, grad bias, and
                         the coefficients of gx = k1*g + k2*x + k3) -> bn_grad_input

Compared with writing batch norm as a composition of elementwise ops and reductions (about 20 kernels and as
many passes over the activations for forward + backward), this reads the activations twice each way. The
gradient is first order (its kernels are not themselves recorded).
"""
from __future__ import annotations

import numbers

import numpy as np

from .. import dtypes as _dt
from ..backend.programs import ctype, get_kernel
from ..core import dispatch
from ..core.dispatch import op
from ..core.storage import TensorBase
from ..core.tape import needs_grad, record
from . import matmul as _mm
from .creation import zeros
from .movement import contiguous

_i32 = np.int32
PARAMS = 8   # per-channel floats in the params array (see the template)


def _types(dtype):
    c = ctype(dtype)
    return dict(t=c, acc="float" if c == "half" else c)


def _acc_dtype(dtype):
    return _dt.float32 if dtype == _dt.float16 else dtype


def _view3(x: TensorBase):
    """x (N, C, *spatial) as (N, C, L) strides (sn, sc, sl) when the spatial dims merge into one axis."""
    N, C = x.shape[:2]
    L = 1
    for s in x.shape[2:]:
        L *= s
    sn, sc = x.strides[:2]
    if x.ndim == 2:
        return (N, C, 1), (sn, sc, 1)
    # the spatial dims merge when they are contiguous among themselves
    expect = 1
    for size, stride in zip(reversed(x.shape[2:]), reversed(x.strides[2:])):
        if size != 1 and stride != expect:
            return None
        expect *= size
    return (N, C, L), (sn, sc, 1)


def _nsplit(dev, N, C):
    """Batch splits of the statistics: enough work-items to fill the device, deterministic per shape."""
    target = dev.compute_units * (4 if dev.type == "cpu" else dev.profile.elementwise_wg)
    return max(1, min(N, -(-target // max(C, 1))))


def _vw(dev, dtype):
    """Lanes of the statistics' vector accumulators: the device's float vector, halved for float64."""
    width = max(1, min(8, dev.profile.vector_width))
    return max(1, width // 2) if dtype.itemsize == 8 else width


def _stats(dev, dtype, x, shape3, xs, g3=None, gs=None, y3=None, ys=None, params=None, relu=False):
    """(part, nsplit): per (split, channel) the two sums of bn_stats (forward when g3 is None)."""
    N, C, L = shape3
    nsplit = _nsplit(dev, N, C)
    nper = -(-N // nsplit)
    nsplit = -(-N // nper)
    acc = _acc_dtype(dtype)
    part = TensorBase._empty((nsplit, C, 2), acc, dev)
    backward = g3 is not None
    g, gs_ = (g3, gs) if backward else (x, xs)
    y, ys_ = (y3, ys) if (backward and relu) else (x, xs)
    kern = get_kernel(dev, "batchnorm.cl.mako", "bn_stats", arg_dtypes=[_i32] * 4 + ([None] + [_i32] * 4) * 3
                      + [None, None], kernel="bn_stats", VW=_vw(dev, dtype), relu=relu and backward,
                      unit_l=xs[2] == 1 and gs_[2] == 1 and ys_[2] == 1, **_types(dtype))
    dispatch.launch(dev, kern, (nsplit, C), None, [N, L, nper, int(backward),
         x._buf, x.offset, *xs, g._buf, g.offset, *gs_, y._buf, y.offset, *ys_,
         params._buf if params is not None else _mm._dummy(dev), part._buf])
    return part, nsplit


def _check(x, running_mean, running_var, weight, bias):
    if not isinstance(x, TensorBase):
        raise TypeError(f"batch_norm: input must be a clnet TensorBase, got {type(x).__name__}")
    if not _dt.is_floating(x.dtype):
        raise TypeError(f"batch_norm: input must be floating point, got {x.dtype.name}")
    if x.ndim < 2:
        raise ValueError(f"batch_norm: input must be (N, C, ...), got shape {tuple(x.shape)}")
    C = x.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                    ("bias", bias)):
        if t is None:
            continue
        if not isinstance(t, TensorBase):
            raise TypeError(f"batch_norm: {name} must be a clnet TensorBase or None, got {type(t).__name__}")
        if tuple(t.shape) != (C,):
            raise ValueError(f"batch_norm: {name} must have shape ({C},) for input {tuple(x.shape)}, "
                             f"got {tuple(t.shape)}")
        if t.device is not x.device:
            raise ValueError(f"batch_norm: {name} is on {t.device}, the input on {x.device}")
        if t.dtype != x.dtype:
            raise TypeError(f"batch_norm: {name} has dtype {t.dtype.name}, the input {x.dtype.name}")


@op("batch_norm")
def batch_norm(x: TensorBase, running_mean=None, running_var=None, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5, relu=False) -> TensorBase:
    """PyTorch's F.batch_norm over (N, C, ...) input, optionally followed by a ReLU in the same kernels.

    training: normalise by the batch's mean and biased variance and update running_mean / running_var in place
    (when given) with `momentum` (running_var takes the unbiased variance); else normalise by the running
    statistics. Differentiable in x, weight and bias."""
    _check(x, running_mean, running_var, weight, bias)
    if not isinstance(eps, numbers.Real) or not isinstance(momentum, numbers.Real):
        raise TypeError("batch_norm: eps and momentum must be real numbers")
    dev, dtype = x.device, x.dtype
    N, C = x.shape[:2]
    count = x.numel() // max(C, 1)
    if training and count <= 1:
        raise ValueError(f"batch_norm: expected more than 1 value per channel when training, got input size "
                         f"{tuple(x.shape)}")
    if not training and (running_mean is None or running_var is None):
        raise ValueError("batch_norm: running_mean and running_var are needed when training=False")
    xv = x.detach()
    v3 = _view3(xv)
    if v3 is None:
        xv = contiguous(xv)
        v3 = _view3(xv)
    shape3, xs = v3
    L = shape3[2]
    acc = _acc_dtype(dtype)
    params = TensorBase._empty((C, PARAMS), acc, dev)
    flags = dict(has_weight=weight is not None, has_bias=bias is not None, **_types(dtype))
    wb = [(weight._buf, weight.offset) if weight is not None else (_mm._dummy(dev), 0),
          (bias._buf, bias.offset) if bias is not None else (_mm._dummy(dev), 0)]
    acc_np = np.dtype(acc)
    if count == 0 or C == 0:
        y = TensorBase._empty(x.shape, dtype, dev)
    else:
        if training:
            part, nsplit = _stats(dev, dtype, xv, shape3, xs)
            has_running = running_mean is not None and running_var is not None
            rm = (running_mean._buf, running_mean.offset) if has_running else (_mm._dummy(dev), 0)
            rv = (running_var._buf, running_var.offset) if has_running else (_mm._dummy(dev), 0)
            kern = get_kernel(dev, "batchnorm.cl.mako", "bn_finalize", arg_dtypes=[_i32, _i32, acc_np, acc_np, None,
                              _i32, _i32, None] + [None, _i32] * 4 + [None], kernel="bn_finalize",
                              has_running=has_running, **flags)
            dispatch.launch(dev, kern, (C,), None, [nsplit, count, float(eps), float(momentum), xv._buf, xv.offset, xs[1],
                 part._buf, *wb[0], *wb[1], *rm, *rv, params._buf])
            if has_running:
                running_mean._bump_version()
                running_var._bump_version()
        else:
            kern = get_kernel(dev, "batchnorm.cl.mako", "bn_eval", arg_dtypes=[acc_np] + [None, _i32] * 4 + [None],
                              kernel="bn_eval", **flags)
            dispatch.launch(dev, kern, (C,), None, [float(eps), *wb[0], *wb[1], running_mean._buf, running_mean.offset,
                 running_var._buf, running_var.offset, params._buf])
        y = TensorBase._empty(x.shape, dtype, dev)
        ys = _view3(y)[1]
        kern = get_kernel(dev, "batchnorm.cl.mako", "bn_apply", arg_dtypes=[None] + [_i32] * 4 + [None, None]
                          + [_i32] * 4, kernel="bn_apply", relu=relu, **_types(dtype))
        dispatch.launch(dev, kern, (L, C, N), None, [xv._buf, xv.offset, *xs, params._buf, y._buf, y.offset, *ys])

    inputs = (x,) + tuple(t for t in (weight, bias) if t is not None)
    if needs_grad(*inputs):
        y_saved = y.detach()

        def backward(gy):
            return _backward(gy, xv, shape3, xs, y_saved, params, weight, bias, training, count, relu, wb)
        record("batch_norm", y, inputs, backward, saved=(xv,))
    return y


def _backward(gy, xv, shape3, xs, y, params, weight, bias, training, count, relu, wb):
    dev, dtype = xv.device, xv.dtype
    N, C, L = shape3
    gyv = gy.detach()
    g3 = _view3(gyv)
    if g3 is None:
        gyv = contiguous(gyv)
        g3 = _view3(gyv)
    gs = g3[1]
    ys = _view3(y)[1]
    gw = TensorBase._empty((C,), dtype, dev)
    gb = TensorBase._empty((C,), dtype, dev)
    gx = TensorBase._empty(xv.shape, dtype, dev)
    if count and C:
        part, nsplit = _stats(dev, dtype, xv, shape3, xs, gyv, gs, y, ys, params, relu)
        kern = get_kernel(dev, "batchnorm.cl.mako", "bn_grad_params", arg_dtypes=[_i32] * 3 + [None] + [None, _i32] * 3
                          + [None], kernel="bn_grad_params", **_types(dtype))
        dispatch.launch(dev, kern, (C,), None, [nsplit, count, int(training), part._buf, *wb[0], gw._buf, gw.offset,
             gb._buf, gb.offset, params._buf])
        gxs = _view3(gx)[1]
        kern = get_kernel(dev, "batchnorm.cl.mako", "bn_grad_input", arg_dtypes=([None] + [_i32] * 4) * 3
                          + [None] + [None] + [_i32] * 4, kernel="bn_grad_input", relu=relu, **_types(dtype))
        dispatch.launch(dev, kern, (L, C, N), None, [xv._buf, xv.offset, *xs, gyv._buf, gyv.offset, *gs, y._buf, y.offset, *ys,
             params._buf, gx._buf, gx.offset, *gxs])
    else:
        gw = zeros((C,), dtype=dtype, device=dev)
        gb = zeros((C,), dtype=dtype, device=dev)
    grads = [gx]
    if weight is not None:
        grads.append(gw if weight.requires_grad else None)
    if bias is not None:
        grads.append(gb if bias.requires_grad else None)
    return tuple(grads)

"""Neural-network ops with their own kernels or fused expressions: softmax, log_softmax, the fused
cross-entropy / nll losses (kernels/softmax.cl.mako), and the pointwise losses (BCE, MSE, L1) as one
elementwise kernel each with a hand-written gradient kernel.

The softmax family works on a contiguous [outer, n, inner] view (n = the size of the softmax dim),
so any `dim` is handled without a transposed copy. CPUs, and short rows on GPUs, get one work-item
per row (contiguous rows streamed in vectors of the profile's width, strided rows taken a vector of
neighbouring rows at a time); long rows on GPUs get one work-group per row reducing in local memory.
"""
from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from .. import dtypes as _dt
from ..backend.programs import ctype, get_kernel
from ..core import dispatch
from ..core.dispatch import op
from ..core.storage import TensorBase
from ..core.tape import needs_grad, record
from .creation import tensor
from .elementwise import launch, pointwise
from .movement import contiguous, reshape
from .reduce import mean as _mean, sum as _sum
from .shapes import axis as _axis, broadcast_shapes

REDUCTIONS = ("mean", "sum", "none")


# --- shared checks and layout ----------------------------------------------------------------------
def check_reduction(reduction: str, name: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _check_float(x, name: str, what: str = "input") -> None:
    if not isinstance(x, TensorBase):
        raise TypeError(f"{name}: {what} must be a clnet Tensor, got {type(x).__name__}")
    if not _dt.is_floating(x.dtype):
        raise TypeError(f"{name}: {what} must be a floating-point tensor, got {x.dtype.name}")


def _check_same_device(name: str, *tensors) -> None:
    devs = {t.device for t in tensors if isinstance(t, TensorBase)}
    if len(devs) > 1:
        raise ValueError(f"{name}: tensors are on different devices ({', '.join(str(d) for d in devs)}); "
                         "move them with .to(device)")


def _acc_dtype(dtype):
    return _dt.float32 if dtype == _dt.float16 else dtype


def _idx(*tensors):
    biggest = max(max(t._storage_size, t.numel()) for t in tensors)
    return ("int", np.dtype(np.int32)) if biggest < 2**31 else ("long", np.dtype(np.int64))


def row_layout(shape, dim):
    """(outer, n, inner) of a contiguous tensor of `shape` reduced along `dim`."""
    if not shape:
        return 1, 1, 1
    return math.prod(shape[:dim]), shape[dim], math.prod(shape[dim + 1:])


def row_group_size(device, rows: int, n: int, inner: int = 1) -> int:
    """Work-items per row: 1 (one work-item per row) or the profile's reduction group size.

    CPUs: always one work-item per row. PoCL runs a whole work-group on one core, so a work-group per
    row buys no parallelism over one work-item per row, only barriers: measured on PoCL 3.1
    (benchmarks/bench_softmax.py --variants), a 200000-value row took 3 ms as a 64-item group and
    0.2-0.5 ms as one work-item streaming it in vectors. GPUs (not measured yet): one work-item per row
    reads a contiguous row at a stride of n between neighbouring work-items (uncoalesced), so rows of
    128+ contiguous values, and long rows too few to fill the device, get a work-group each.
    """
    wg = device.profile.reduce_wg
    if wg < 2 or device.type == "cpu":
        return 1
    if inner == 1 and n >= 128:
        return wg
    return wg if (rows < 64 * device.compute_units and n >= 2 * wg) else 1


def _launch_rows(device, kern, rows, wg, *args):
    if wg == 1:  # one work-item per row; smaller groups when there are few rows, so every core gets some
        local = device.profile.elementwise_wg
        while local > 1 and -(-rows // local) < 2 * device.compute_units:
            local //= 2
        dispatch.launch(device, kern, (-(-rows // local) * local,), (local,), list(args))
    else:
        dispatch.launch(device, kern, (rows * wg,), (wg,), list(args))


def _launch_row_blocks(device, kern, rows, wg, vw, cols, gather, *args):
    """_launch_rows for kernels that may take vw rows per work-item (`cols`, see row_vector_width): one
    work-item per block of rows; the kernel's first argument counts rows when it gathers, else blocks."""
    items = -(-rows // vw) if cols else rows
    _launch_rows(device, kern, items, wg, rows if gather else items, *args)


def row_vector_width(device, wg: int, inner: int, n: int = 0) -> tuple:
    """(vw, cols, gather) for a one-work-item-per-row kernel. Contiguous rows (inner == 1) are streamed
    in vectors of the profile's width; strided rows (inner > 1) are taken vw neighbouring rows per
    work-item, one vector lane each (cols), with vw the largest power of two <= the profile's width
    that divides inner (so no block is partial); short contiguous rows whose scalar tail (n % vw)
    is over a quarter of the row are taken vw consecutive rows per work-item (cols and gather), so exp
    runs on vectors. Work-groups per row: (1, False, False).

    The quarter: on PoCL 3.1 (AVX-512, loaded machine) a scalar exp cost about 10x a value of a vector
    streamed along the row and a gathered value about 3x, so gathering wins once the tail passes ~n/4
    (softmax 4096 x 10: 0.6-1.2 ms -> 0.24 ms; 4096 x 17, one scalar per row, stays on rows).
    """
    vw = device.profile.vector_width if wg == 1 else 1
    if vw == 1:
        return 1, False, False
    if inner == 1:
        gather = 4 * (n % vw) > n
        return vw, gather, gather
    while inner % vw:
        vw //= 2
    return vw, vw > 1, False


def _params(kernel, dtype, idx, wg, vw=1, log=False, tt="long", weighted=False, nll=False, mean=False,
            scaled=False, per_row=False, cols=False, gather=False):
    return dict(kernel=kernel, t=ctype(dtype), acc=ctype(_acc_dtype(dtype)), idx=idx, wg=wg, vw=vw, cols=cols,
                gather=gather, log=log, tt=tt, weighted=weighted, nll=nll, mean=mean, scaled=scaled,
                per_row=per_row)


# --- softmax / log_softmax -----------------------------------------------------------------------------
def _legacy_softmax_dim(ndim: int, name: str) -> int:
    warnings.warn(f"implicit dimension choice for {name} has been deprecated (as in PyTorch); "
                  "pass dim=...", UserWarning, stacklevel=3)
    return 0 if ndim in (0, 1, 3) else 1


def _softmax(x: TensorBase, dim, log: bool, dtype=None) -> TensorBase:
    name = "log_softmax" if log else "softmax"
    _check_float(x, name)
    if dtype is not None:
        x = x.to(dtype=dtype)
    if dim is None:
        dim = _legacy_softmax_dim(x.ndim, name)
    d = _axis(dim, x.ndim)
    y = TensorBase._empty(x.shape, x.dtype, x.device)
    if y.numel() == 0:
        return y
    xc = contiguous(x.detach())
    outer, n, inner = row_layout(x.shape, d)
    rows = outer * inner
    idx, idt = _idx(xc, y)
    wg = row_group_size(x.device, rows, n, inner)
    vw, cols, gather = row_vector_width(x.device, wg, inner, n)
    kern = get_kernel(x.device, "softmax.cl.mako", "softmax", arg_dtypes=[idt] * 3 + [None, idt] * 2,
                      **_params("softmax", x.dtype, idx, wg, vw, log=log, cols=cols, gather=gather))
    _launch_row_blocks(x.device, kern, rows, wg, vw, cols, gather, n, inner, xc._buf, xc.offset, y._buf, y.offset)
    if needs_grad(x):
        saved = y.detach()
        record(name, y, (x,), lambda g: _softmax_backward(g, saved, d, log), saved=(saved,))
    return y


def _softmax_backward(g: TensorBase, y: TensorBase, dim: int, log: bool) -> TensorBase:
    """One kernel: dx = y * (g - sum(g * y)) for softmax, g - exp(y) * sum(g) for log_softmax."""
    gc = contiguous(g.to(dtype=y.dtype))
    dx = TensorBase._empty(y.shape, y.dtype, y.device)
    outer, n, inner = row_layout(y.shape, dim)
    rows = outer * inner
    idx, idt = _idx(gc, y, dx)
    wg = row_group_size(y.device, rows, n, inner)
    vw, cols, gather = row_vector_width(y.device, wg, inner, n)
    kern = get_kernel(y.device, "softmax.cl.mako", "softmax_backward", arg_dtypes=[idt] * 3 + [None, idt] * 3,
                      **_params("softmax_backward", y.dtype, idx, wg, vw, log=log, cols=cols, gather=gather))
    _launch_row_blocks(y.device, kern, rows, wg, vw, cols, gather, n, inner, gc._buf, gc.offset, y._buf, y.offset,
                       dx._buf, dx.offset)
    return dx


@op("softmax")
def softmax(x: TensorBase, dim=None, dtype=None) -> TensorBase:
    """exp(x) / sum(exp(x)) along `dim`, computed stably (the row maximum is subtracted)."""
    return _softmax(x, dim, log=False, dtype=dtype)


@op("log_softmax")
def log_softmax(x: TensorBase, dim=None, dtype=None) -> TensorBase:
    """x - logsumexp(x) along `dim`, computed stably in one pass for the log-sum-exp."""
    return _softmax(x, dim, log=True, dtype=dtype)


# --- cross-entropy and nll with integer targets: one fused kernel each way ---------------------------
def _check_class_target(x: TensorBase, target, weight, name: str) -> None:
    """Shapes as in PyTorch: input (C,) with target (), or (N, C, d1, ...) with target (N, d1, ...)."""
    if not isinstance(target, TensorBase):
        raise TypeError(f"{name}: target must be a clnet Tensor, got {type(target).__name__}")
    if target.dtype.kind not in "iu":
        raise TypeError(f"{name}: class-index targets must be an integer tensor, got {target.dtype.name} "
                        f"(probability targets must have the input's shape {tuple(x.shape)})")
    if x.ndim == 0:
        raise ValueError(f"{name}: input must have a class dimension; got a 0-d tensor")
    expected = () if x.ndim == 1 else (x.shape[0],) + tuple(x.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(f"{name}: input of shape {tuple(x.shape)} needs a target of shape {expected}, "
                         f"got {tuple(target.shape)}")
    n_classes = x.shape[0] if x.ndim == 1 else x.shape[1]
    if weight is not None:
        _check_float(weight, name, "weight")
        if tuple(weight.shape) != (n_classes,):
            raise ValueError(f"{name}: weight must have shape ({n_classes},) (one per class), "
                             f"got {tuple(weight.shape)}")
    _check_same_device(name, x, target, weight)


def class_losses(x: TensorBase, target: TensorBase, weight=None, ignore_index=-100, label_smoothing=0.0,
                 nll=False, reduction="none") -> TensorBase:
    """Cross-entropy (nll=False, x holds logits) or nll (x holds log-probabilities) of integer targets.

    One kernel computes every target's loss and weight in one pass over its row; for "mean" / "sum" a
    second one-work-group kernel reduces them (a "mean" divides by the summed target weights, as
    PyTorch) and keeps the factor the backward needs. The backward is one kernel. Differentiable in x.
    """
    name = "nll_loss" if nll else "cross_entropy"
    dev = x.device
    n = x.shape[0] if x.ndim == 1 else x.shape[1]
    outer, inner = (1, 1) if x.ndim == 1 else (x.shape[0], math.prod(x.shape[2:]))
    rows = outer * inner
    loss = TensorBase._empty(target.shape, x.dtype, dev)
    row_w = TensorBase._empty(target.shape, x.dtype, dev)
    lse = TensorBase._empty((rows,), _acc_dtype(x.dtype), dev)
    acc = np.dtype(_acc_dtype(x.dtype))
    xc = contiguous(x.detach())
    tc = contiguous(target)
    wc = contiguous(weight.detach().to(dtype=x.dtype)) if weight is not None else None
    idx, idt = _idx(xc, tc, loss)
    eps = float(label_smoothing)
    if rows:
        wg = 1 if nll else row_group_size(dev, rows, n, inner)
        vw, _, gather = (1, False, False) if nll or inner > 1 else row_vector_width(dev, wg, 1, n)
        params = _params("cross_entropy", x.dtype, idx, wg, vw, tt=ctype(target.dtype), weighted=wc is not None,
                         nll=nll, cols=gather, gather=gather)
        w_args, w_types = ([wc._buf, wc.offset], [None, idt]) if wc is not None else ([], [])
        kern = get_kernel(dev, "softmax.cl.mako", "cross_entropy",
                          arg_dtypes=[idt] * 3 + [None, idt] * 2 + w_types + [np.int64, acc, None, None, None],
                          **params)
        _launch_row_blocks(dev, kern, rows, wg, vw, gather, gather, n, inner, xc._buf, xc.offset, tc._buf, tc.offset,
                           *w_args, int(ignore_index), eps, loss._buf, row_w._buf, lse._buf)
    out, scale = loss, None
    if reduction != "none":
        out = TensorBase._empty((), x.dtype, dev)
        scale = TensorBase._empty((1,), acc, dev)
        wg = dev.profile.reduce_wg
        kern = get_kernel(dev, "softmax.cl.mako", "class_loss_reduce", arg_dtypes=[idt, None, None, None, idt, None],
                          **_params("class_loss_reduce", x.dtype, idx, wg, mean=reduction == "mean"))
        dispatch.launch(dev, kern, (wg,), (wg,), [rows, loss._buf, row_w._buf, out._buf, out.offset, scale._buf])
    if needs_grad(x) and rows:
        w_all = _sum(wc) if (wc is not None and eps and not nll) else None

        def backward(g):
            return _class_losses_backward(g, xc, tc, wc, w_all, lse, scale, n, inner, ignore_index, eps, nll)
        record(name, out, (x,), backward, saved=(xc, tc))
    return out


def _class_losses_backward(g, xc, tc, wc, w_all, lse, scale, n, inner, ignore_index, eps, nll):
    """softmax(x) - smoothed one-hot (cross-entropy) or -one-hot (nll), scaled by g, in one kernel."""
    dev = xc.device
    g = g.to(dtype=xc.dtype)
    if g.ndim == 0 or all(s == 0 for s in g.strides):  # one value for every row
        g_stride = 0
    else:
        g = contiguous(g)
        g_stride = 1
    dx = TensorBase._empty(xc.shape, xc.dtype, dev)
    total = dx.numel()
    idx, idt = _idx(xc, tc, dx)
    weighted = wc is not None
    if total == 0:
        return dx
    rows = total // n
    # CPUs: one work-item per row streaming it in vectors (one per element pays two integer divisions
    # per value, scalar on CPUs); GPUs: one per element (coalesced)
    per_row = dev.type == "cpu" and row_group_size(dev, rows, n, inner) == 1
    vw, _, gather = row_vector_width(dev, 1, 1, n) if per_row and inner == 1 else (1, False, False)
    gather = gather and not nll  # nll's backward has no exp to vectorize
    params = _params("cross_entropy_backward", xc.dtype, idx, 1, vw, tt=ctype(tc.dtype), weighted=weighted,
                     nll=nll, scaled=scale is not None, per_row=per_row, cols=gather, gather=gather)
    acc = np.dtype(_acc_dtype(xc.dtype))
    if weighted:
        ws = w_all if w_all is not None else wc  # any buffer will do when eps == 0 (the term is unused)
        w_args, w_types = [wc._buf, wc.offset, ws._buf, ws.offset], [None, idt, None, idt]
    else:
        w_args, w_types = [], []
    s_args, s_types = ([scale._buf], [None]) if scale is not None else ([], [])
    kern = get_kernel(dev, "softmax.cl.mako", "cross_entropy_backward",
                      arg_dtypes=[idt] * 3 + [None, idt] * 2 + w_types + [None, None, idt, idt] + s_types
                      + [np.int64, acc, None, idt], **params)
    args = (n, inner, xc._buf, xc.offset, tc._buf, tc.offset, *w_args, lse._buf, g._buf, g.offset, g_stride,
            *s_args, int(ignore_index), eps, dx._buf, dx.offset)
    if per_row:
        _launch_row_blocks(dev, kern, rows, 1, vw, gather, gather, *args)
    else:
        ew = dev.profile.elementwise_wg
        dispatch.launch(dev, kern, (-(-total // ew) * ew,), (ew,), [total, *args])
    return dx


@op("cross_entropy")
def cross_entropy(input: TensorBase, target: TensorBase, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0) -> TensorBase:
    """log_softmax + nll in one fused kernel (integer targets), or soft-label cross-entropy when target
    holds class probabilities (same shape as input)."""
    _check_float(input, "cross_entropy")
    check_reduction(reduction, "cross_entropy")
    if not 0.0 <= float(label_smoothing) <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    if isinstance(target, TensorBase) and _dt.is_floating(target.dtype):
        return _soft_cross_entropy(input, target, weight, reduction, float(label_smoothing))
    _check_class_target(input, target, weight, "cross_entropy")
    return class_losses(input, target, weight, ignore_index, label_smoothing, nll=False, reduction=reduction)


def _soft_cross_entropy(x, target, weight, reduction, eps):
    """-(sum over classes of w * smoothed target * log_softmax(x)); "mean" divides by the sample count."""
    if tuple(target.shape) != tuple(x.shape):
        raise ValueError(f"cross_entropy: probability targets must have the input's shape {tuple(x.shape)}, "
                         f"got {tuple(target.shape)}")
    _check_same_device("cross_entropy", x, target, weight)
    class_dim = 0 if x.ndim == 1 else 1
    n = x.shape[class_dim]
    logp = log_softmax(x, class_dim)
    y = target * (1 - eps) + eps / n if eps else target
    if weight is not None:
        _check_float(weight, "cross_entropy", "weight")
        if tuple(weight.shape) != (n,):
            raise ValueError(f"cross_entropy: weight must have shape ({n},), got {tuple(weight.shape)}")
        y = y * reshape(weight, (n,) + (1,) * (x.ndim - class_dim - 1))
    return reduce_loss(-_sum(logp * y, class_dim), reduction)


@op("nll_loss")
def nll_loss(input: TensorBase, target: TensorBase, weight=None, ignore_index=-100, reduction="mean") -> TensorBase:
    """Negative log-likelihood of log-probabilities `input` at integer `target` (one kernel)."""
    _check_float(input, "nll_loss")
    check_reduction(reduction, "nll_loss")
    _check_class_target(input, target, weight, "nll_loss")
    return class_losses(input, target, weight, ignore_index, 0.0, nll=True, reduction=reduction)


# --- pointwise losses: one kernel forward, one kernel per gradient -------------------------------------
_pointwise = pointwise  # the elementwise module's: C expression + gradient expressions


def reduce_loss(loss: TensorBase, reduction: str) -> TensorBase:
    if reduction == "none":
        return loss
    return _sum(loss) if reduction == "sum" else _mean(loss)


def _loss_operand(x, like: TensorBase, name: str, what: str):
    """Targets and weights may be numbers, arrays or tensors; tensors must sit on the input's device."""
    if isinstance(x, TensorBase):
        _check_same_device(name, like, x)
        return x if _dt.is_floating(x.dtype) else x.to(dtype=like.dtype)
    if isinstance(x, numbers.Number):
        return float(x)
    return tensor(np.asarray(x), dtype=like.dtype, device=like.device)


def _check_target_shape(x: TensorBase, target, name: str) -> None:
    if isinstance(target, TensorBase) and tuple(target.shape) != tuple(x.shape):
        broadcast_shapes(x.shape, target.shape)  # raises, naming both shapes, when they cannot broadcast
        warnings.warn(f"{name}: using a target size {tuple(target.shape)} that is different from the input "
                      f"size {tuple(x.shape)}; they will be broadcast, which is likely a mistake",
                      UserWarning, stacklevel=3)


@op("mse_loss")
def mse_loss(input: TensorBase, target, reduction="mean") -> TensorBase:
    _check_float(input, "mse_loss")
    check_reduction(reduction, "mse_loss")
    target = _loss_operand(target, input, "mse_loss", "target")
    _check_target_shape(input, target, "mse_loss")
    loss = _pointwise("mse_loss", "(v0 - v1) * (v0 - v1)", [input, target],
                      {0: "2 * (v0 - v1) * v2", 1: "-2 * (v0 - v1) * v2"}, input.dtype)
    return reduce_loss(loss, reduction)


@op("l1_loss")
def l1_loss(input: TensorBase, target, reduction="mean") -> TensorBase:
    _check_float(input, "l1_loss")
    check_reduction(reduction, "l1_loss")
    target = _loss_operand(target, input, "l1_loss", "target")
    _check_target_shape(input, target, "l1_loss")
    sign = "((v0 > v1) - (v0 < v1))"
    loss = _pointwise("l1_loss", "fabs(v0 - v1)", [input, target],
                      {0: f"{sign} * v2", 1: f"-{sign} * v2"}, input.dtype)
    return reduce_loss(loss, reduction)


@op("binary_cross_entropy")
def binary_cross_entropy(input: TensorBase, target, weight=None, reduction="mean") -> TensorBase:
    """-w (y log p + (1 - y) log(1 - p)), each log clamped at -100 as PyTorch does."""
    _check_float(input, "binary_cross_entropy")
    check_reduction(reduction, "binary_cross_entropy")
    target = _loss_operand(target, input, "binary_cross_entropy", "target")
    if isinstance(target, TensorBase) and tuple(target.shape) != tuple(input.shape):
        raise ValueError(f"binary_cross_entropy: target size {tuple(target.shape)} must equal the input size "
                         f"{tuple(input.shape)}")
    w = 1.0 if weight is None else _loss_operand(weight, input, "binary_cross_entropy", "weight")
    # v0 = p, v1 = y, v2 = w, v3 = -100 (the log floor), v4 = 1e-12 (PyTorch's floor of p (1 - p) in the
    # gradient), v5 = incoming gradient; constants are operands so they arrive in the compute type
    logs = "fmax(log(v0), v3)", "fmax(log(1 - v0), v3)"
    loss = _pointwise("binary_cross_entropy", f"-v2 * (v1 * {logs[0]} + (1 - v1) * {logs[1]})",
                      [input, target, w, -100.0, 1e-12],
                      {0: "v5 * v2 * (v0 - v1) / fmax((1 - v0) * v0, v4)",
                       1: f"v5 * v2 * ({logs[1]} - {logs[0]})"}, input.dtype)
    return reduce_loss(loss, reduction)


@op("binary_cross_entropy_with_logits")
def binary_cross_entropy_with_logits(input: TensorBase, target, weight=None, reduction="mean",
                                     pos_weight=None) -> TensorBase:
    """Sigmoid + BCE in one stable expression: (1 - y) x + lw (log1p(exp(-|x|)) + max(-x, 0)),
    lw = 1 + (pos_weight - 1) y; its gradient (1 - y) - lw sigmoid(-x) is sigmoid(x) - y without pos_weight."""
    name = "binary_cross_entropy_with_logits"
    _check_float(input, name)
    check_reduction(reduction, name)
    target = _loss_operand(target, input, name, "target")
    if isinstance(target, TensorBase) and tuple(target.shape) != tuple(input.shape):
        raise ValueError(f"{name}: target size {tuple(target.shape)} must equal the input size "
                         f"{tuple(input.shape)}")
    w = 1.0 if weight is None else _loss_operand(weight, input, name, "weight")
    pw = 1.0 if pos_weight is None else _loss_operand(pos_weight, input, name, "pos_weight")
    # v0 = x, v1 = y, v2 = w, v3 = pos_weight, v4 = incoming gradient
    softplus_neg = "(log1p(exp(-fabs(v0))) + (v0 < 0 ? -v0 : 0))"  # log(1 + exp(-x)), stable
    lw = "(1 + (v3 - 1) * v1)"
    loss = _pointwise(name, f"v2 * ((1 - v1) * v0 + {lw} * {softplus_neg})", [input, target, w, pw],
                      {0: f"v4 * v2 * ((1 - v1) - {lw} / (1 + exp(v0)))",
                       1: f"v4 * v2 * (-v0 + (v3 - 1) * {softplus_neg})"}, input.dtype)
    return reduce_loss(loss, reduction)

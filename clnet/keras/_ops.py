"""The math Keras layers and losses call, taken from clnet.nn.functional and clnet.ops (one implementation).

This module only adapts Keras conventions to them: channels-last images (NHWC) are viewed as NCHW for
clnet.ops.conv, Keras kernels (kh, kw, in, out) as (out, in, kh, kw), Keras's "same" padding (which
may be one larger at the bottom/right) is split into the symmetric part the conv op pads and one extra
row/column added here. Where clnet.nn.functional lacks a function, a composition of core ops stands in.
"""
from __future__ import annotations

import math

import clnet
from clnet import dtypes as _dt
from clnet.nn import functional as F
from clnet.ops import conv as _conv
from clnet.ops import matmul as _mm


# --- dense ------------------------------------------------------------------------------------------
def dense(x, kernel, bias):
    """x @ kernel + bias with a Keras (in, out) kernel (any leading dims): one GEMM with the bias in its epilogue.

    The kernel is multiplied as stored (not through a transposed view, as F.linear would take it), so the
    backward's kernel gradient x^T @ g comes out in the kernel's own (in, out) layout and autograd does not
    copy it into a contiguous .grad at every step."""
    if x.ndim == 2:
        return _mm.matmul_ex(x, kernel, bias=bias)
    y = _mm.matmul_ex(x.reshape(-1, x.shape[-1]), kernel, bias=bias)
    return y.reshape(*x.shape[:-1], kernel.shape[1])


# --- activations ------------------------------------------------------------------------------------
def softmax(x, axis=-1):
    return F.softmax(x, dim=axis)


def log_softmax(x, axis=-1):
    return F.log_softmax(x, dim=axis)


def relu_general(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """Keras's relu: x >= threshold -> x (capped at max_value), else negative_slope * (x - threshold)."""
    y = clnet.where(x >= threshold, x, (x - threshold) * negative_slope if negative_slope else 0.0)
    if max_value is not None:
        y = clnet.clamp(y, max=float(max_value))
    return y


def dropout(x, rate, training):
    return F.dropout(x, p=rate, training=bool(training))


def batch_norm(x, axis, mean, var, gamma, beta, training, momentum, epsilon):
    """F.batch_norm (channels on dim 1) applied along `axis` through a permuted view.

    Keras's momentum m keeps m of the old moving value; PyTorch's keeps 1 - m, hence 1 - momentum.
    """
    nd = x.ndim
    perm = None if axis == 1 else [0, axis] + [i for i in range(1, nd) if i != axis]
    xv = x.permute(*perm) if perm else x
    y = F.batch_norm(xv, mean, var, gamma, beta, training=training, momentum=1.0 - momentum, eps=epsilon)
    if perm:
        inverse = [perm.index(i) for i in range(nd)]
        y = y.permute(*inverse)
    return y


# --- losses -----------------------------------------------------------------------------------------
def one_hot(labels, num_classes, dtype=_dt.float32):
    """int labels (...,) -> (..., num_classes) on the device."""
    return F.one_hot(labels, num_classes).to(dtype=dtype)


def _rows(logits, target):
    """Flatten leading dims so the class axis is dim 1, as clnet.nn's cross_entropy expects."""
    classes = logits.shape[-1]
    if logits.ndim == 2:
        return logits, target
    t = target.reshape(-1, classes) if target.ndim == logits.ndim else target.reshape(-1)
    return logits.reshape(-1, classes), t


def cross_entropy_logits(logits, target, reduction="none", label_smoothing=0.0):
    """-sum(target * log_softmax(logits)) per sample, target being class indices (int) or probabilities.

    One fused kernel for integer targets; "mean" divides by the number of samples.
    """
    lead = logits.shape[:-1]
    flat, t = _rows(logits, target)
    out = F.cross_entropy(flat, t, reduction=reduction, label_smoothing=label_smoothing)
    return out.reshape(lead) if reduction == "none" else out


def binary_cross_entropy_logits(logits, target, reduction="none"):
    """max(x, 0) - x * z + log(1 + exp(-|x|)) elementwise (stable), one fused kernel."""
    return F.binary_cross_entropy_with_logits(logits, target, reduction=reduction)


def squared_error(a, b, reduction="none"):
    return F.mse_loss(a, b, reduction=reduction)


def absolute_error(a, b, reduction="none"):
    return F.l1_loss(a, b, reduction=reduction)


# --- convolution and pooling in NHWC ----------------------------------------------------------------
def same_padding(size, k, s, d=1):
    """Keras/TF "same": output ceil(size / s); returns (before, after) with after >= before."""
    out = -(-size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def out_size(size, k, s, padding, d=1):
    if padding == "same":
        return -(-size // s)
    return (size - (k - 1) * d - 1) // s + 1


def _pad_extra(x, extra_h, extra_w, value):
    """Add `extra_h` rows at the bottom and `extra_w` columns at the right of an NCHW tensor."""
    return F.pad(x, (0, extra_w, 0, extra_h), value=value)


def _split_padding(shape_hw, kernel, strides, padding, dilation=(1, 1)):
    if padding == "valid":
        return (0, 0), (0, 0)
    (bh, ah), (bw, aw) = (same_padding(shape_hw[i], kernel[i], strides[i], dilation[i]) for i in range(2))
    return (bh, bw), (ah - bh, aw - bw)


def to_nchw(x):
    return x.permute(0, 3, 1, 2)


def to_nhwc(x):
    return x.permute(0, 2, 3, 1)


def conv2d_nchw(x, kernel, bias, strides, padding, dilation=(1, 1)):
    """NCHW input, Keras kernel (kh, kw, in, out) -> NCHW output."""
    sym, extra = _split_padding(x.shape[2:], kernel.shape[:2], strides, padding, dilation)
    if any(extra):
        x = _pad_extra(x, extra[0], extra[1], 0.0)
    w = kernel.permute(3, 2, 0, 1)
    return _conv.conv2d(x, w, bias, stride=tuple(strides), padding=sym, dilation=tuple(dilation))


def max_pool2d_nchw(x, pool_size, strides, padding):
    sym, extra = _split_padding(x.shape[2:], pool_size, strides, padding)
    if any(extra):
        x = _pad_extra(x, extra[0], extra[1], -math.inf)
    return _conv.max_pool2d(x, tuple(pool_size), tuple(strides), sym)


def avg_pool2d_nchw(x, pool_size, strides, padding):
    """Keras averages over the window's real (unpadded) elements, so "same" divides by their count."""
    sym, extra = _split_padding(x.shape[2:], pool_size, strides, padding)
    if padding == "valid" or (not any(sym) and not any(extra)):
        return _conv.avg_pool2d(x, tuple(pool_size), tuple(strides), 0)
    xp = _pad_extra(x, extra[0], extra[1], 0.0)
    ones = clnet.ones((1, 1) + tuple(x.shape[2:]), dtype=x.dtype, device=x.device)
    with clnet.no_grad():
        frac = _conv.avg_pool2d(_pad_extra(ones, extra[0], extra[1], 0.0), tuple(pool_size), tuple(strides), sym)
    return _conv.avg_pool2d(xp, tuple(pool_size), tuple(strides), sym) / frac

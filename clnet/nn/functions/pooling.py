"""Pooling beyond clnet.ops.conv's 2-D max/avg kernels: 1-D pooling (2-D pooling of height 1) and
adaptive pooling (PyTorch's windows: output i covers [floor(i * n / out), ceil((i + 1) * n / out))).

Adaptive pooling whose output size divides the input is the plain pooling kernel. Otherwise average
pooling is two small matmuls with the (out, n) averaging matrix of each axis (P_h x P_w^T: exact, and
differentiable through matmul), and max pooling is separable (the max over a rectangle is the max over
its rows of the max over its columns): one amax per output row and column.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ... import dtypes as _dt
from ...core.dispatch import op
from ...ops import conv as _conv
from ...ops import movement as _mv
from ...ops import reduce as _red
from ...ops.creation import tensor
from ...ops.matmul import matmul
from ...tensor import Tensor


def _check(x, fn, ranks):
    if not isinstance(x, Tensor):
        raise TypeError(f"{fn}: input must be a clnet Tensor, got {type(x).__name__}")
    if x.ndim not in ranks:
        raise ValueError(f"{fn}: expected a {' or '.join(f'{r}-D' for r in ranks)} input, got shape {tuple(x.shape)}")


def _one(v, fn, what):
    if isinstance(v, (tuple, list)):
        if len(v) != 1:
            raise ValueError(f"{fn}: {what} must be an int or a 1-tuple, got {v!r}")
        v = v[0]
    if not isinstance(v, numbers.Integral):
        raise ValueError(f"{fn}: {what} must be an int, got {v!r}")
    return int(v)


def _unsupported(fn, dilation=1, ceil_mode=False, **defaults):
    if dilation not in (1, (1,), (1, 1)):
        raise NotImplementedError(f"{fn}: dilation={dilation} is not supported (only 1)")
    if ceil_mode:
        raise NotImplementedError(f"{fn}: ceil_mode=True is not supported")
    for name, (value, default) in defaults.items():
        if value != default:
            raise NotImplementedError(f"{fn}: {name}={value!r} is not supported (only {default!r})")


@op("max_pool1d")
def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max over windows of (N, C, L) or (C, L) input; stride defaults to kernel_size."""
    _check(input, "max_pool1d", (2, 3))
    _unsupported("max_pool1d", dilation, ceil_mode)
    k = _one(kernel_size, "max_pool1d", "kernel_size")
    s = k if stride is None or stride == () else _one(stride, "max_pool1d", "stride")
    p = _one(padding, "max_pool1d", "padding")
    out = _conv.max_pool2d(_mv.unsqueeze(input, -2), (1, k), (1, s), (0, p), return_indices=return_indices)
    if return_indices:
        return _mv.squeeze(out[0], -2), _mv.squeeze(out[1], -2)
    return _mv.squeeze(out, -2)


@op("avg_pool1d")
def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Mean over windows of (N, C, L) or (C, L) input (padding counts as zeros)."""
    _check(input, "avg_pool1d", (2, 3))
    _unsupported("avg_pool1d", 1, ceil_mode, count_include_pad=(count_include_pad, True))
    k = _one(kernel_size, "avg_pool1d", "kernel_size")
    s = k if stride is None or stride == () else _one(stride, "avg_pool1d", "stride")
    p = _one(padding, "avg_pool1d", "padding")
    return _mv.squeeze(_conv.avg_pool2d(_mv.unsqueeze(input, -2), (1, k), (1, s), (0, p)), -2)


def _out_sizes(output_size, spatial, fn):
    n = len(spatial)
    if isinstance(output_size, numbers.Integral) or output_size is None:
        output_size = (output_size,) * n
    output_size = tuple(output_size)
    if len(output_size) != n:
        raise ValueError(f"{fn}: output_size must have {n} entries, got {output_size!r}")
    out = tuple(int(s) if o is None else int(o) for o, s in zip(output_size, spatial))
    if any(o <= 0 for o in out):
        raise ValueError(f"{fn}: output_size must be positive, got {output_size!r}")
    return out


def _windows(n, out):
    return [(i * n // out, -(-(i + 1) * n // out)) for i in range(out)]


def _avg_matrix(n, out, like):
    m = np.zeros((out, n), np.float64)
    for i, (a, b) in enumerate(_windows(n, out)):
        m[i, a:b] = 1.0 / (b - a)
    return tensor(m.astype(np.dtype(like.dtype)), device=like.device)


@op("adaptive_avg_pool2d")
def adaptive_avg_pool2d(input, output_size):
    """Mean over PyTorch's adaptive windows of (N, C, H, W) or (C, H, W) input; output_size int, pair,
    or None entries (keep that size)."""
    _check(input, "adaptive_avg_pool2d", (3, 4))
    if not _dt.is_floating(input.dtype):
        raise TypeError(f"adaptive_avg_pool2d: input must be floating point, got {input.dtype.name}")
    H, W = input.shape[-2:]
    OH, OW = _out_sizes(output_size, (H, W), "adaptive_avg_pool2d")
    if H % OH == 0 and W % OW == 0:
        if (OH, OW) == (H, W):
            return input
        if (OH, OW) == (1, 1):
            return _red.mean(input, (-2, -1), keepdim=True)
        return _conv.avg_pool2d(input, (H // OH, W // OW), (H // OH, W // OW), 0)
    y = input
    if OW != W:
        y = matmul(y, _mv.transpose(_avg_matrix(W, OW, input), 0, 1))
    if OH != H:
        y = matmul(_avg_matrix(H, OH, input), y)
    return y


@op("adaptive_avg_pool1d")
def adaptive_avg_pool1d(input, output_size):
    _check(input, "adaptive_avg_pool1d", (2, 3))
    o = _one(output_size, "adaptive_avg_pool1d", "output_size")
    return _mv.squeeze(adaptive_avg_pool2d(_mv.unsqueeze(input, -2), (1, o)), -2)


def _adaptive_max_axis(x, axis, out):
    n = x.shape[axis]
    parts = [_red.amax(_mv.narrow(x, axis, a, b - a), axis, keepdim=True) for a, b in _windows(n, out)]
    return _mv.concat(parts, axis)


@op("adaptive_max_pool2d")
def adaptive_max_pool2d(input, output_size, return_indices=False):
    """Max over PyTorch's adaptive windows of (N, C, H, W) or (C, H, W) input."""
    _check(input, "adaptive_max_pool2d", (3, 4))
    H, W = input.shape[-2:]
    OH, OW = _out_sizes(output_size, (H, W), "adaptive_max_pool2d")
    if H % OH == 0 and W % OW == 0:
        if (OH, OW) == (1, 1) and not return_indices:
            return _red.amax(input, (-2, -1), keepdim=True)
        return _conv.max_pool2d(input, (H // OH, W // OW), (H // OH, W // OW), 0, return_indices=return_indices)
    if return_indices:
        raise NotImplementedError("adaptive_max_pool2d: return_indices=True needs an output size that divides "
                                  f"the input; got {(H, W)} -> {(OH, OW)}")
    y = input
    for axis, n, out in ((-1, W, OW), (-2, H, OH)):
        if n % out:
            y = _adaptive_max_axis(y, axis, out)
        elif n != out:
            k = (1, n // out) if axis == -1 else (n // out, 1)
            y = _conv.max_pool2d(y, k, k, 0)
    return y


@op("adaptive_max_pool1d")
def adaptive_max_pool1d(input, output_size, return_indices=False):
    _check(input, "adaptive_max_pool1d", (2, 3))
    o = _one(output_size, "adaptive_max_pool1d", "output_size")
    out = adaptive_max_pool2d(_mv.unsqueeze(input, -2), (1, o), return_indices)
    if return_indices:
        return _mv.squeeze(out[0], -2), _mv.squeeze(out[1], -2)
    return _mv.squeeze(out, -2)


@op("lp_pool2d")
def lp_pool2d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    """(sum over the window of x^p)^(1/p), as PyTorch (sign(s) relu(|s|) ^ (1/p) of the window sum s)."""
    _check(input, "lp_pool2d", (3, 4))
    _unsupported("lp_pool2d", 1, ceil_mode)
    k = (kernel_size, kernel_size) if isinstance(kernel_size, numbers.Integral) else tuple(kernel_size)
    s = _conv.avg_pool2d(input ** norm_type, k, stride, 0) * float(math.prod(k))
    return (s.sign() * s.abs().relu()) ** (1.0 / norm_type)


__all__ = ["max_pool1d", "avg_pool1d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool1d",
           "adaptive_max_pool2d", "lp_pool2d"]

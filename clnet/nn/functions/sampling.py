"""Resampling and padding: F.interpolate (nearest, nearest-exact, linear, bilinear, bicubic, area),
F.pad's modes, pixel_shuffle / pixel_unshuffle.

Interpolation is separable, one spatial axis at a time: the source positions of every output index are
computed on the host (PyTorch's formulas, below) and each axis is a gather (index_select, whose gradient
is a scatter-add) of the 1, 2 or 4 taps, combined with their weights in one fused elementwise kernel. The
cost is proportional to the output, and gradients need no kernels of their own.

Source coordinate of output index i along an axis of n inputs and `out` outputs (PyTorch):
    align_corners=True     i * (n - 1) / (out - 1)
    otherwise              (i + 0.5) * scale - 0.5 (linear modes clamp it at 0; cubic does not)
    nearest                floor(i * scale); nearest-exact: floor((i + 0.5) * scale), both capped at n - 1
with scale = 1 / scale_factor when a scale factor is given (and recompute_scale_factor is not True),
else n / out.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ... import dtypes as _dt
from ...core.dispatch import op
from ...ops import indexing as _ix
from ...ops import movement as _mv
from ...ops.creation import tensor
from ...ops.elementwise import pointwise as _pointwise
from ...tensor import Tensor
from .pooling import adaptive_avg_pool1d, adaptive_avg_pool2d

_MODES = {"nearest": (1, 2, 3), "nearest-exact": (1, 2, 3), "linear": (1,), "bilinear": (2,), "bicubic": (2,),
          "trilinear": (3,), "area": (1, 2)}


def _sizes(x, size, scale_factor, recompute, fn):
    """(output sizes, scales used for the source positions (None: n / out)) per spatial axis."""
    spatial = tuple(x.shape[2:])
    n = len(spatial)
    if (size is None) == (scale_factor is None):
        raise ValueError(f"{fn}: exactly one of size or scale_factor must be given")
    if size is not None:
        out = (size,) * n if isinstance(size, numbers.Integral) else tuple(size)
        if len(out) != n:
            raise ValueError(f"{fn}: size {size!r} must have {n} entries for input of shape {tuple(x.shape)}")
        return tuple(int(o) for o in out), (None,) * n
    sf = (scale_factor,) * n if isinstance(scale_factor, numbers.Real) else tuple(scale_factor)
    if len(sf) != n:
        raise ValueError(f"{fn}: scale_factor {scale_factor!r} must have {n} entries for input of shape "
                         f"{tuple(x.shape)}")
    out = tuple(int(math.floor(s * f)) for s, f in zip(spatial, sf))
    if recompute:
        return out, (None,) * n
    return out, tuple(1.0 / float(f) for f in sf)


def _scale(n, out, given, align_corners):
    if align_corners:
        return (n - 1) / (out - 1) if out > 1 else 0.0
    return given if given is not None else n / out


def _source(n, out, given, align_corners, cubic=False):
    i = np.arange(out, dtype=np.float64)
    scale = _scale(n, out, given, align_corners)
    if align_corners:
        return i * scale
    src = (i + 0.5) * scale - 0.5
    return src if cubic else np.maximum(src, 0.0)


def _nearest_index(n, out, given, exact):
    scale = given if given is not None else n / out
    i = np.arange(out, dtype=np.float64)
    src = np.floor((i + 0.5) * scale) if exact else np.floor(i * scale)
    return np.minimum(src.astype(np.int64), n - 1)


def _gather(x, axis, idx):
    return _ix.index_select(x, axis, tensor(np.ascontiguousarray(idx, np.int64), dtype=_dt.int64, device=x.device))


def _weights(w, x, axis):
    """(out,) host weights as a tensor broadcasting along `axis` of x."""
    shape = [1] * x.ndim
    shape[axis] = len(w)
    return tensor(np.asarray(w, np.dtype(x.dtype)).reshape(shape), device=x.device)


def _linear_axis(x, axis, out, given, align_corners):
    n = x.shape[axis]
    src = _source(n, out, given, align_corners)
    i0 = np.minimum(np.floor(src).astype(np.int64), n - 1)
    i1 = np.minimum(i0 + 1, n - 1)
    lam = src - i0
    a, b = _gather(x, axis, i0), _gather(x, axis, i1)
    # v0 = x[i0], v1 = x[i1], v2 = lambda, v3 = incoming gradient
    return _pointwise("lerp", "v0 + (v1 - v0) * v2", [a, b, _weights(lam, x, axis)],
                      {0: "v3 * (1 - v2)", 1: "v3 * v2"}, x.dtype)


def _cubic_weights(t, A=-0.75):
    """Keys' cubic convolution weights of the taps at -1, 0, 1, 2 for fraction t (PyTorch's A = -0.75)."""
    def near(d):  # |d| <= 1
        return ((A + 2) * d - (A + 3)) * d * d + 1

    def far(d):   # 1 < |d| < 2
        return ((A * d - 5 * A) * d + 8 * A) * d - 4 * A
    return far(t + 1), near(t), near(1 - t), far(2 - t)


def _cubic_axis(x, axis, out, given, align_corners):
    n = x.shape[axis]
    src = _source(n, out, given, align_corners, cubic=True)
    base = np.floor(src).astype(np.int64)
    t = src - base
    ws = _cubic_weights(t)
    taps = [_gather(x, axis, np.clip(base + k, 0, n - 1)) for k in (-1, 0, 1, 2)]
    wt = [_weights(w, x, axis) for w in ws]
    # v0..v3 = the four taps, v4..v7 = their weights, v8 = incoming gradient
    return _pointwise("cubic", "v0 * v4 + v1 * v5 + v2 * v6 + v3 * v7", taps + wt,
                      {k: f"v8 * v{4 + k}" for k in range(4)}, x.dtype)


@op("interpolate")
def interpolate(input, size=None, scale_factor=None, mode: str = "nearest", align_corners=None,
                recompute_scale_factor=None, antialias: bool = False) -> Tensor:
    """Resample the spatial dimensions of (N, C, ...) input to `size` or by `scale_factor`."""
    if not isinstance(input, Tensor):
        raise TypeError(f"interpolate: input must be a clnet Tensor, got {type(input).__name__}")
    if mode not in _MODES:
        raise NotImplementedError(f"interpolate: mode {mode!r} is not supported (supported: {sorted(_MODES)})")
    dims = input.ndim - 2
    if dims not in _MODES[mode]:
        raise ValueError(f"interpolate: mode {mode!r} expects {' or '.join(str(d + 2) for d in _MODES[mode])}-D "
                         f"input, got shape {tuple(input.shape)}")
    if align_corners is not None and mode in ("nearest", "nearest-exact", "area"):
        raise ValueError(f"interpolate: align_corners option can only be set with the interpolating modes: "
                         f"linear | bilinear | bicubic | trilinear (got mode {mode!r})")
    if antialias:
        raise NotImplementedError("interpolate: antialias=True is not supported")
    if mode != "nearest" and not _dt.is_floating(input.dtype):
        raise TypeError(f"interpolate: mode {mode!r} needs floating-point input, got {input.dtype.name}")
    out, given = _sizes(input, size, scale_factor, recompute_scale_factor, "interpolate")
    if mode == "area":
        return adaptive_avg_pool1d(input, out) if dims == 1 else adaptive_avg_pool2d(input, out)
    y = input
    for k in range(dims):
        axis = 2 + k
        n, o = input.shape[axis], out[k]
        if mode in ("nearest", "nearest-exact"):
            if n != o or given[k] not in (None, 1.0):
                y = _gather(y, axis, _nearest_index(n, o, given[k], mode == "nearest-exact"))
        elif mode == "bicubic":
            y = _cubic_axis(y, axis, o, given[k], bool(align_corners))
        else:
            y = _linear_axis(y, axis, o, given[k], bool(align_corners))
    return y


def upsample(input, size=None, scale_factor=None, mode="nearest", align_corners=None):
    return interpolate(input, size, scale_factor, mode, align_corners)


def upsample_nearest(input, size=None, scale_factor=None):
    return interpolate(input, size, scale_factor, mode="nearest")


def upsample_bilinear(input, size=None, scale_factor=None):
    return interpolate(input, size, scale_factor, mode="bilinear", align_corners=True)


# --- padding ---------------------------------------------------------------------------------------------
def _pad_index(n, lo, hi, mode):
    """Source index of every position of an axis of n values padded by lo and hi."""
    i = np.arange(-lo, n + hi)
    if mode == "replicate":
        return np.clip(i, 0, n - 1)
    if mode == "circular":
        return np.mod(i, n)
    # reflect (the edge value is not repeated): period 2n - 2
    if n == 1:
        return np.zeros_like(i)
    period = 2 * n - 2
    j = np.mod(i, period)
    return np.where(j < n, j, period - j)


def pad(input, pad, mode: str = "constant", value=None) -> Tensor:
    """Pad the last len(pad) // 2 dimensions: pad = (left, right, top, bottom, ...) as in PyTorch, with
    mode 'constant' (value, default 0; negative amounts crop), 'reflect', 'replicate' or 'circular'."""
    if not isinstance(input, Tensor):
        raise TypeError(f"pad: input must be a clnet Tensor, got {type(input).__name__}")
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2 or len(pad) // 2 > input.ndim:
        raise ValueError(f"pad: padding length must be even and at most twice the number of dimensions "
                         f"({input.ndim}), got {pad}")
    if mode == "constant":
        return _mv.pad(input, pad, value=0 if value is None else value)
    if mode not in ("reflect", "replicate", "circular"):
        raise NotImplementedError(f"pad: mode {mode!r} is not supported (constant, reflect, replicate, circular)")
    if value not in (None, 0):
        raise ValueError(f"pad: padding mode {mode!r} doesn't take in value argument")
    k = len(pad) // 2
    if input.ndim < k + 1:
        raise ValueError(f"pad: mode {mode!r} pads at most the last {input.ndim - 1} dimensions of a "
                         f"{input.ndim}-D input (the first is a batch or channel dimension), got {pad}")
    y = input
    for i in range(k):
        axis = input.ndim - 1 - i
        lo, hi = pad[2 * i], pad[2 * i + 1]
        n = input.shape[axis]
        if lo < 0 or hi < 0:
            raise NotImplementedError(f"pad: negative padding is only supported in constant mode, got {pad}")
        if mode == "reflect" and (lo >= n or hi >= n):
            raise ValueError(f"pad: padding ({lo}, {hi}) should be less than the input dimension {n} "
                             f"(dimension {axis} of shape {tuple(input.shape)}) in reflect mode")
        if mode == "circular" and (lo > n or hi > n):
            raise ValueError(f"pad: padding ({lo}, {hi}) should be at most the input dimension {n} in circular mode")
        if lo or hi:
            y = _gather(y, axis, _pad_index(n, lo, hi, mode))
    return y


@op("pixel_shuffle")
def pixel_shuffle(input, upscale_factor: int) -> Tensor:
    """(*, C r^2, H, W) -> (*, C, H r, W r)."""
    r = int(upscale_factor)
    *lead, C, H, W = input.shape
    if C % (r * r):
        raise ValueError(f"pixel_shuffle: channels ({C}) must be divisible by upscale_factor^2 ({r * r})")
    x = _mv.reshape(input, (*lead, C // (r * r), r, r, H, W))
    n = len(lead)
    x = _mv.permute(x, tuple(range(n)) + (n, n + 3, n + 1, n + 4, n + 2))
    return _mv.reshape(x, (*lead, C // (r * r), H * r, W * r))


@op("pixel_unshuffle")
def pixel_unshuffle(input, downscale_factor: int) -> Tensor:
    """(*, C, H r, W r) -> (*, C r^2, H, W)."""
    r = int(downscale_factor)
    *lead, C, H, W = input.shape
    if H % r or W % r:
        raise ValueError(f"pixel_unshuffle: height and width ({H}, {W}) must be divisible by {r}")
    x = _mv.reshape(input, (*lead, C, H // r, r, W // r, r))
    n = len(lead)
    x = _mv.permute(x, tuple(range(n)) + (n, n + 2, n + 4, n + 1, n + 3))
    return _mv.reshape(x, (*lead, C * r * r, H // r, W // r))


__all__ = ["interpolate", "upsample", "upsample_nearest", "upsample_bilinear", "pad", "pixel_shuffle",
           "pixel_unshuffle"]

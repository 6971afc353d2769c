"""Convolutions beyond clnet.ops.conv.conv2d: groups, 1-D convolutions and transposed convolutions,
all expressed through conv2d (and recorded ops), so their gradients come from conv2d's kernels.

- conv1d: conv2d over (N, C, 1, L).
- groups > 1: depthwise convolutions (groups == in_channels) as a sum over the kernel taps of shifted
  views times per-channel weights (KH * KW fused elementwise launches instead of one conv per channel);
  other group counts as one conv2d per group, concatenated.
- conv_transpose2d: a stride-1 conv2d of the input with zeros inserted between its pixels (stride - 1 of
  them) and padded by dilation * (k - 1) - padding (+ output_padding at the end), with the kernel flipped
  in space and its in/out channels swapped: the adjoint of conv2d, as PyTorch defines it.
"""
from __future__ import annotations

import numbers

from ... import dtypes as _dt
from ...autograd import needs_grad, record
from ...core.dispatch import op
from ...ops import broadcast as _bc
from ...ops import conv as _conv
from ...ops import movement as _mv
from ...ops.creation import zeros
from ...ops.elementwise import copy_into
from ...tensor import Tensor


def _tuple(v, n, fn, what):
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
        return (int(v),) * n
    t = tuple(v)
    if len(t) == 1 and n > 1:
        t = t * n
    if len(t) != n or not all(isinstance(x, numbers.Integral) for x in t):
        raise ValueError(f"{fn}: {what} must be an int or a tuple of {n} ints, got {v!r}")
    return tuple(int(x) for x in t)


def _check(x, fn, what="input"):
    if not isinstance(x, Tensor):
        raise TypeError(f"{fn}: {what} must be a clnet Tensor, got {type(x).__name__}")
    if not _dt.is_floating(x.dtype):
        raise TypeError(f"{fn}: {what} must be floating point, got {x.dtype.name}")


def same_padding(kernel, dilation):
    """PyTorch's padding='same' (stride 1): dilation * (k - 1) in all per axis, the odd one at the end."""
    total = [d * (k - 1) for k, d in zip(kernel, dilation)]
    return [(t // 2, t - t // 2) for t in total]


def _pad_same(x, kernel, dilation):
    """x padded for padding='same' (asymmetric when a dilated kernel is even), and the padding left to do."""
    pads = same_padding(kernel, dilation)
    if all(lo == hi for lo, hi in pads):
        return x, tuple(lo for lo, _ in pads)
    flat = []
    for lo, hi in reversed(pads):
        flat += [lo, hi]
    return _mv.pad(x, tuple(flat)), (0,) * len(pads)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1) -> Tensor:
    """2-D convolution of (N, C_in, H, W) (or (C_in, H, W)) with weight (C_out, C_in / groups, kh, kw)."""
    _check(input, "conv2d")
    _check(weight, "conv2d", "weight")
    if weight.ndim != 4:
        raise ValueError(f"conv2d: weight must be (C_out, C_in / groups, kh, kw), got {tuple(weight.shape)}")
    stride = _tuple(stride, 2, "conv2d", "stride")
    dilation = _tuple(dilation, 2, "conv2d", "dilation")
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(f"conv2d: padding must be 'valid', 'same', an int or a pair, got {padding!r}")
        if padding == "same":
            if stride != (1, 1):
                raise ValueError("conv2d: padding='same' is not supported for strided convolutions")
            input, padding = _pad_same(input, weight.shape[2:], dilation)
        else:
            padding = (0, 0)
    padding = _tuple(padding, 2, "conv2d", "padding")
    if not isinstance(groups, numbers.Integral) or groups < 1:
        raise ValueError(f"conv2d: groups must be a positive int, got {groups!r}")
    if groups == 1:
        return _conv.conv2d(input, weight, bias, stride=stride, padding=padding, dilation=dilation)
    unbatched = input.ndim == 3
    x = _mv.unsqueeze(input, 0) if unbatched else input
    if x.ndim != 4:
        raise ValueError(f"conv2d: expected (N, C, H, W) or (C, H, W) input, got {tuple(input.shape)}")
    C, OC = x.shape[1], weight.shape[0]
    if C % groups or OC % groups or weight.shape[1] * groups != C:
        raise ValueError(f"conv2d: input channels ({C}) and output channels ({OC}) must be divisible by groups "
                         f"({groups}), and the weight {tuple(weight.shape)} must have C_in / groups = "
                         f"{C // groups if C % groups == 0 else '?'} input channels")
    if groups == C:
        y = _depthwise(x, weight, bias, stride, padding, dilation)
    else:
        cg, og = C // groups, OC // groups
        outs = []
        for g in range(groups):
            b = _mv.narrow(bias, 0, g * og, og) if bias is not None else None
            outs.append(_conv.conv2d(_mv.narrow(x, 1, g * cg, cg), _mv.narrow(weight, 0, g * og, og), b,
                                     stride=stride, padding=padding, dilation=dilation))
        y = _mv.concat(outs, 1)
    return _mv.squeeze(y, 0) if unbatched else y


def _depthwise(x, weight, bias, stride, padding, dilation):
    """groups == C: out channel c * m + j sees only input channel c. Sum over taps of strided views."""
    N, C, H, W = x.shape
    OC, _, KH, KW = weight.shape
    m = OC // C
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    OH = (H + 2 * ph - dh * (KH - 1) - 1) // sh + 1
    OW = (W + 2 * pw - dw * (KW - 1) - 1) // sw + 1
    if OH <= 0 or OW <= 0:
        raise ValueError(f"conv2d: the kernel {KH}x{KW} (dilation {dilation}) is larger than the padded input "
                         f"{H + 2 * ph}x{W + 2 * pw}")
    xp = _mv.pad(x, (pw, pw, ph, ph)) if ph or pw else x
    if m > 1:  # every input channel feeds m output channels: c * m + j
        xp = _mv.reshape(_bc.expand(_mv.unsqueeze(xp, 2), (N, C, m) + tuple(xp.shape[2:])),
                         (N, OC) + tuple(xp.shape[2:]))
    w = _mv.reshape(weight, (1, OC, KH, KW))
    y = None
    for ky in range(KH):
        for kx in range(KW):
            y0, x0 = ky * dh, kx * dw
            tap = xp[:, :, y0:y0 + (OH - 1) * sh + 1:sh, x0:x0 + (OW - 1) * sw + 1:sw]
            term = tap * w[:, :, ky:ky + 1, kx:kx + 1]
            y = term if y is None else y + term
    if bias is not None:
        y = y + _mv.reshape(bias, (1, OC, 1, 1))
    return y


@op("conv1d")
def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1) -> Tensor:
    """1-D convolution of (N, C_in, L) (or (C_in, L)) with weight (C_out, C_in / groups, k)."""
    _check(input, "conv1d")
    _check(weight, "conv1d", "weight")
    if weight.ndim != 3:
        raise ValueError(f"conv1d: weight must be (C_out, C_in / groups, k), got {tuple(weight.shape)}")
    if input.ndim not in (2, 3):
        raise ValueError(f"conv1d: expected (N, C, L) or (C, L) input, got {tuple(input.shape)}")
    stride = _tuple(stride, 1, "conv1d", "stride")
    dilation = _tuple(dilation, 1, "conv1d", "dilation")
    if isinstance(padding, str):
        pad2 = padding
    else:
        pad2 = (0,) + _tuple(padding, 1, "conv1d", "padding")
    x = _mv.unsqueeze(input, -2)  # (..., C, 1, L)
    y = conv2d(x, _mv.unsqueeze(weight, 2), bias, (1,) + stride, pad2, (1,) + dilation, groups)
    return _mv.squeeze(y, -2)


def _dilate(x, s):
    """x (N, C, H, W) with s - 1 zeros between neighbouring pixels (s = (sh, sw)); differentiable."""
    sh, sw = s
    if (sh, sw) == (1, 1):
        return x
    N, C, H, W = x.shape
    out = zeros((N, C, (H - 1) * sh + 1, (W - 1) * sw + 1), dtype=x.dtype, device=x.device)
    key = (slice(None), slice(None), slice(None, None, sh), slice(None, None, sw))
    copy_into(_mv.getitem(out, key), x.detach())
    if needs_grad(x):
        record("dilate", out, (x,), lambda g: _mv.getitem(g, key))
    return out


@op("conv_transpose2d")
def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups: int = 1,
                     dilation=1) -> Tensor:
    """Transposed 2-D convolution ("deconvolution") of (N, C_in, H, W) with weight
    (C_in, C_out / groups, kh, kw): output size (H - 1) * stride - 2 * padding + dilation * (kh - 1)
    + output_padding + 1 per axis."""
    _check(input, "conv_transpose2d")
    _check(weight, "conv_transpose2d", "weight")
    if weight.ndim != 4:
        raise ValueError(f"conv_transpose2d: weight must be (C_in, C_out / groups, kh, kw), got "
                         f"{tuple(weight.shape)}")
    unbatched = input.ndim == 3
    x = _mv.unsqueeze(input, 0) if unbatched else input
    if x.ndim != 4:
        raise ValueError(f"conv_transpose2d: expected (N, C, H, W) or (C, H, W) input, got {tuple(input.shape)}")
    stride = _tuple(stride, 2, "conv_transpose2d", "stride")
    padding = _tuple(padding, 2, "conv_transpose2d", "padding")
    output_padding = _tuple(output_padding, 2, "conv_transpose2d", "output_padding")
    dilation = _tuple(dilation, 2, "conv_transpose2d", "dilation")
    if any(op >= max(s, d) for op, s, d in zip(output_padding, stride, dilation)):
        raise ValueError(f"conv_transpose2d: output_padding {output_padding} must be smaller than either stride "
                         f"{stride} or dilation {dilation}")
    C = x.shape[1]
    if weight.shape[0] != C or C % groups:
        raise ValueError(f"conv_transpose2d: the input has {C} channels but the weight {tuple(weight.shape)} "
                         f"expects {weight.shape[0]} (divisible by groups={groups})")
    KH, KW = weight.shape[2:]
    xd = _dilate(x, stride)
    pads = []
    for k, p, d, op in ((KW, padding[1], dilation[1], output_padding[1]), (KH, padding[0], dilation[0],
                                                                           output_padding[0])):
        lo = d * (k - 1) - p
        pads += [lo, lo + op]
    if any(pads):
        xd = _mv.pad(xd, tuple(pads))
    # weight (C_in, C_out/g, kh, kw) -> per group (C_out/g, C_in/g, kh, kw), flipped in space
    cg = C // groups
    wg = [_mv.transpose(_mv.flip(_mv.narrow(weight, 0, g * cg, cg), (2, 3)), 0, 1) for g in range(groups)]
    w = wg[0] if groups == 1 else _mv.concat(wg, 0)
    y = conv2d(xd, _mv.contiguous(w), bias, 1, 0, dilation, groups)
    return _mv.squeeze(y, 0) if unbatched else y


@op("conv_transpose1d")
def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups: int = 1,
                     dilation=1) -> Tensor:
    """Transposed 1-D convolution of (N, C_in, L) with weight (C_in, C_out / groups, k)."""
    _check(input, "conv_transpose1d")
    _check(weight, "conv_transpose1d", "weight")
    if weight.ndim != 3:
        raise ValueError(f"conv_transpose1d: weight must be (C_in, C_out / groups, k), got {tuple(weight.shape)}")
    if input.ndim not in (2, 3):
        raise ValueError(f"conv_transpose1d: expected (N, C, L) or (C, L) input, got {tuple(input.shape)}")
    def as2(v, what, first):  # the 1-D setting as the width of a 2-D one of height 1
        return (first,) + _tuple(v, 1, "conv_transpose1d", what)
    y = conv_transpose2d(_mv.unsqueeze(input, -2), _mv.unsqueeze(weight, 2), bias, as2(stride, "stride", 1),
                         as2(padding, "padding", 0), as2(output_padding, "output_padding", 0), groups,
                         as2(dilation, "dilation", 1))
    return _mv.squeeze(y, -2)


__all__ = ["conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d", "same_padding"]

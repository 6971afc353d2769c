"""Implicit-GEMM convolution for CPU-style devices (kernels/conv_gemm.cl.mako).

A stride-1 convolution over an input copied into zero-padded *pitched planes* (Hp x Wp per (n, c)) is a
GEMM whose B operand is a shifted view of those planes (see the template's header), so it runs at the speed
of the register-blocked CPU GEMM without writing a column matrix. The three passes of a training step:

    forward        conv_gemm over the padded input, bias and ReLU in the store
    grad input     conv_gemm over the output gradient padded by (K-1-P), weights flipped, channels swapped
    grad weight    conv_wgrad: dot products of output-gradient planes (pitched like the input) with
                   shifted input planes, the batch cut into splits added by a second launch

Only stride 1 (any padding and dilation) goes through here; clnet.ops.conv chooses when.
"""
from __future__ import annotations

import math
import os

import numpy as np

from ..backend.programs import ctype, get_kernel
from ..tensor import Tensor
from . import matmul as _mm

_i32 = np.int32
_EPI_BIAS, _EPI_RELU, _EPI_ACCUM = 2, 4, 8
_INT_MAX = 2**31 - 1


def _types(dtype):
    return dict(t=ctype(dtype), acc="float" if ctype(dtype) == "half" else ctype(dtype))


def cpu_block(prof, dtype, M, N):
    """(MR, NR, VW) of a CPU GEMM micro-kernel for an M x N product: the matmul profile's register block,
    except that with 8-lane vectors (AVX2 and older: 16 vector registers) the block keeps at most 12
    accumulators, because the profile's 8 x 16 spills there (measured on an AMD EPYC (Zen 1) with PoCL
    3.1, one thread, SGEMM n=1024: 8x16 11-17 GFLOP/s per core, 6x16 25-30, 4x16 28, 4x24 28)."""
    mr, nr, vw = _mm._cpu_block(prof, dtype, M, N)
    if os.environ.get("CG_BLOCK"):
        mr, nr = (int(v) for v in os.environ["CG_BLOCK"].split("x"))
        return mr, nr, vw
    if vw <= 8 and mr * (nr // vw) > 12:
        mr = max(1, 12 // (nr // vw))
    return mr, nr, vw


def block(dev, dtype, M=64):
    """(MR, NR, VW) of conv_gemm for M output channels: cpu_block, with MR cut to a power of two >= M
    for few channels."""
    mr, nr, vw = cpu_block(dev.profile, dtype, 64, 64)
    if M < mr:
        mr = 1 << (M - 1).bit_length()
    return mr, nr, vw


def _dummy(dev):
    buf = getattr(dev, "_conv_gemm_dummy", None)
    if buf is None:
        buf = dev._conv_gemm_dummy = dev.pool.allocate(64)
    return buf


def pad_pitched(x: Tensor, top: int, left: int, Hp: int, Wp: int, slack: int) -> Tensor:
    """x (N, C, H, W), any strides -> a flat tensor of N*C planes of Hp x Wp (x at row top, column left,
    zeros elsewhere) followed by at least `slack` zeros (whole rows)."""
    N, C, H, W = x.shape
    rows = N * C * Hp + -(-slack // Wp)
    if rows * Wp > _INT_MAX:
        raise ValueError("conv2d: the padded input exceeds 2**31 - 1 elements; split the batch")
    dev = x.device
    xp = Tensor._empty((rows * Wp,), x.dtype, dev)
    kern = get_kernel(dev, "conv_gemm.cl.mako", "pad_pitched", arg_dtypes=[_i32] * 8 + [None] + [_i32] * 5
                      + [None, _i32], kernel="pad_pitched", **_types(x.dtype))
    import os
    lx = int(os.environ.get("PADLX", "0"))
    kern(dev.queue, (Wp, rows), (lx, 1) if lx else None, N * C, C, H, W, top, left, Hp, Wp,
         x._buf, x.offset, *x.strides, xp._buf, xp.offset)
    return xp


def _pack(dev, dtype, w, ws, oc, c, kh, kw, ocp):
    """Weights w[o, c, ky, kx] (buffer, offset; strides ws) as MR-row panels [ocp/MR][c*kh*kw][MR]."""
    mr = block(dev, dtype, oc)[0]
    wt = Tensor._empty((c * kh * kw * ocp,), dtype, dev)
    kern = get_kernel(dev, "conv_gemm.cl.mako", "pack_panels", arg_dtypes=[_i32] * 5 + [None] + [_i32] * 5
                      + [None, _i32], kernel="pack_panels", MR=mr, **_types(dtype))
    wg = dev.profile.elementwise_wg
    n = wt.numel()
    kern(dev.queue, (-(-n // wg) * wg,), (wg,), oc, c, kh, kw, ocp // mr, w[0], w[1], *ws, wt._buf, wt.offset)
    return wt


def _gemm(dev, dtype, xp, xs_n, C, plane, Wp, wt, OC, ocp, KH, KW, DH, DW, y, OH, OW, bias, epi, N):
    """Launch conv_gemm: y[n, o, oh, ow] over pitched planes xp (plane stride `plane`, image stride xs_n)."""
    mr, nr, vw = block(dev, dtype, OC)
    if OW >= nr and (OW % nr == 0 or OW >= 4 * nr):
        tpr = -(-OW // nr)
        ntiles = OH * tpr
    else:
        tpr = 0
        ntiles = -(-((OH - 1) * Wp + OW) // nr)
    kwu = KW if KW <= 3 else 0
    args = [_i32] * 12 + [None, _i32, _i32] + [None, _i32, _i32] + [None, _i32, _i32, _i32, _i32] + [None, _i32, _i32]
    kern = get_kernel(dev, "conv_gemm.cl.mako", "conv_gemm", arg_dtypes=args, kernel="conv_gemm",
                      MR=mr, NR=nr, VW=vw, KWU=kwu, **_types(dtype))
    lx = 16
    bias_buf, bias_off = (bias._buf, bias.offset) if bias is not None else (_dummy(dev), 0)
    kern(dev.queue, (-(-ntiles // lx) * lx, ocp // mr, N), (lx, 1, 1),
         OC, C, KH, KW, plane, Wp, DH * Wp, DW, OH, OW, tpr, ntiles,
         xp._buf, xp.offset, xs_n, wt._buf, wt.offset, ocp,
         y._buf, y.offset, y.strides[0], y.strides[1], y.strides[2], bias_buf, bias_off, epi)
    return y


def _slack(KH, KW, DH, DW, Wp, nr):
    return (KH - 1) * DH * Wp + (KW - 1) * DW + 2 * nr + 16


def forward(x: Tensor, w: Tensor, bias, g, relu=False) -> Tensor:
    """conv2d forward (stride 1) of contiguous x (N, C, H, W) and w (OC, C, KH, KW): (N, OC, OH, OW)."""
    dev, dtype = x.device, x.dtype
    mr, nr, vw = block(dev, dtype, g.OC)
    Hp, Wp = g.H + 2 * g.PH, g.W + 2 * g.PW
    xp = pad_pitched(x, g.PH, g.PW, Hp, Wp, _slack(g.KH, g.KW, g.DH, g.DW, Wp, nr))
    ocp = -(-g.OC // mr) * mr
    wt = _pack(dev, dtype, (w._buf, w.offset), w.strides, g.OC, g.C, g.KH, g.KW, ocp)
    y = Tensor._empty((g.N, g.OC, g.OH, g.OW), dtype, dev)
    epi = (_EPI_BIAS if bias is not None else 0) | (_EPI_RELU if relu else 0)
    return _gemm(dev, dtype, xp, g.C * Hp * Wp, g.C, Hp * Wp, Wp, wt, g.OC, ocp, g.KH, g.KW, g.DH, g.DW,
                 y, g.OH, g.OW, bias, epi, g.N)


def grad_input(gy: Tensor, w: Tensor, g) -> Tensor:
    """Input gradient of a stride-1 convolution: gy padded by (K-1)*D - P, convolved with w flipped in space
    and with its channel axes swapped (the flip and swap are strides of the packing, not copies)."""
    dev, dtype = gy.device, gy.dtype
    mr, nr, vw = block(dev, dtype, g.C)
    th, tw = g.DH * (g.KH - 1) - g.PH, g.DW * (g.KW - 1) - g.PW
    if th < 0 or tw < 0:
        raise ValueError("grad_input: padding larger than the kernel extent is not supported here")
    Hp, Wp = g.OH + 2 * th, g.OW + 2 * tw
    gp = pad_pitched(gy, th, tw, Hp, Wp, _slack(g.KH, g.KW, g.DH, g.DW, Wp, nr))
    ocp = -(-g.C // mr) * mr
    # wf[c, o, ky, kx] = w[o, c, KH-1-ky, KW-1-kx]
    w_flip = (w._buf, w.offset + (g.KH - 1) * g.KW + g.KW - 1)
    ws = (g.KH * g.KW, g.C * g.KH * g.KW, -g.KW, -1)
    wt = _pack(dev, dtype, w_flip, ws, g.C, g.OC, g.KH, g.KW, ocp)
    gx = Tensor._empty((g.N, g.C, g.H, g.W), dtype, dev)
    return _gemm(dev, dtype, gp, g.OC * Hp * Wp, g.OC, Hp * Wp, Wp, wt, g.C, ocp, g.KH, g.KW, g.DH, g.DW,
                 gx, g.H, g.W, None, 0, g.N)


def _nsplit(dev, items, n):
    target = dev.compute_units * 64
    return max(1, min(n, -(-target // max(items, 1))))


def grad_weight(x: Tensor, gy: Tensor, g) -> Tensor:
    """Weight gradient of a stride-1 convolution (KW <= 4): (OC, C, KH, KW)."""
    from .conv import _sum_splits
    dev, dtype = x.device, x.dtype
    vw = block(dev, dtype)[2]
    Hp, Wp = g.H + 2 * g.PH, g.W + 2 * g.PW
    L = -(-((g.OH - 1) * Wp + g.OW) // vw) * vw
    xp = pad_pitched(x, g.PH, g.PW, Hp, Wp, (g.KH - 1) * g.DH * Wp + (g.KW - 1) * g.DW + L + vw)
    Hg = -(-L // Wp)   # rows of the gradient's planes: every q < L reads its own plane (zeros past OH)
    gplane = Hg * Wp
    gp = pad_pitched(gy, 0, 0, Hg, Wp, vw)
    wmr = 4
    OB = -(-g.OC // wmr)
    items = OB * g.C * g.KH
    import os
    nper = int(os.environ.get("CG_NPER", "1"))
    nsplit = -(-g.N // nper)
    part = Tensor._empty((nsplit, g.OC, g.C, g.KH, g.KW), dtype, dev)
    kern = get_kernel(dev, "conv_gemm.cl.mako", "conv_wgrad", arg_dtypes=[_i32] * 11 + [None, _i32] * 3,
                      kernel="conv_wgrad", MR=wmr, VW=vw, KWU=g.KW, **_types(dtype))
    kern(dev.queue, (OB, g.C * g.KH, nsplit), None,
         g.N, g.OC, g.C, g.KH, L, Hp * Wp, gplane, g.DH * Wp, g.DW, nper, nsplit,
         xp._buf, xp.offset, gp._buf, gp.offset, part._buf, part.offset)
    return _sum_splits(part, nsplit, (g.OC, g.C, g.KH, g.KW))

"""Implicit-GEMM convolution for CPU-style devices (kernels/conv_gemm.cl.mako).

A stride-1 convolution over an input copied into zero-padded *pitched planes* (Hp x Wp per (n, c)) is a
GEMM whose B operand is a shifted view of those planes (see the template's header), so it runs at the speed
of the register-blocked CPU GEMM without writing a column matrix. The three passes of a training step:

    forward        conv_gemm over the padded input, bias and ReLU in the store
    grad input     conv_gemm over the output gradient padded by (K-1-P), weights flipped, channels swapped
    grad weight    conv_wgrad_q (stride 1, images above 128 pixels): a GEMM with the batch's flat positions
                   as the long reduction, vectors along the positions, both operands read in place from
                   pitched planes; the output gradient's planes are the copy the input-gradient pass made
                   (clnet.ops.conv hands it over) when the pitches agree ("same" padding), so a training
                   step pads the output gradient once. Otherwise conv_wgrad: the output gradient transposed
                   into channel panels, dot products with shifted input planes. Either way the batch is cut
                   into splits added afterwards when the taps and channels give too few work-items.

Strided convolutions run as sums of their stride-1 phase convolutions. The output gradient is read through
its strides (y.sum().backward()'s stride-0 gradient is never copied into a contiguous tensor). Register
blocks: the defaults below, or the ones `clnet tune` stored for the shape class (`blk`, conv_select.plan).
"""
from __future__ import annotations

import numpy as np

from ..backend.programs import ctype, get_kernel
from ..core import dispatch
from ..core.storage import TensorBase
from . import matmul as _mm
from .creation import zeros
from .elementwise import copy_into
from .reduce import sum as _sum

_i32 = np.int32
_EPI_BIAS, _EPI_RELU, _EPI_ACCUM = 2, 4, 8
_INT_MAX = 2**31 - 1


def _types(dtype):
    return dict(t=ctype(dtype), acc="float" if ctype(dtype) == "half" else ctype(dtype))


def cpu_block(prof, dtype, M, N):
    """(MR, NR, VW) of a CPU GEMM micro-kernel for an M x N product: the matmul's register block."""
    return _mm._cpu_block(prof, dtype, M, N)


def block(dev, dtype, M=64, OW=0, blk=None):
    """(MR, NR, VW) of conv_gemm for M output channels and rows of OW outputs.

    blk: a tuned {"MR", "NV"} (NR = NV vectors), used as given. Otherwise cpu_block, with MR cut to M for
    fewer channels (3-channel input gradient, 64x3x32x32 -> 32: MR 3 10.6 ms, 4 12.1 ms), and NR narrowed
    to a multiple of VW that divides OW when the default would make tiles cross rows (OW=32 with NR=24:
    three of four tiles took the element-wise edge store; NR=16 instead, MR raised to keep the accumulators
    where that wastes no rows)."""
    mr, nr, vw = cpu_block(dev.profile, dtype, 64, 64)
    if blk:
        return int(blk["MR"]), int(blk["NV"]) * vw, vw
    if OW and not (OW >= nr and (OW % nr == 0 or OW >= 4 * nr)):
        for nv in range(nr // vw - 1, 0, -1):
            if OW % (nv * vw) == 0:
                # as many accumulators as before (MR raised) unless that computes rows for nothing and the
                # old MR does not (64x3x32x32 -> 32 forward: MR 4 x 2 vectors 4.6 ms, 6 x 2 5.4, 4 x 3 7.3)
                raised = mr * (nr // vw) // nv
                if -(-M // raised) * raised - M <= -(-M // mr) * mr - M:
                    mr = raised
                nr = nv * vw
                break
    if M < mr:   # few channels (a 3-channel input gradient): exactly M rows, none computed for nothing
        mr = M
    return mr, nr, vw


def wgrad_block(dev, dtype, blk=None):
    """(MO, MK, VW) of conv_wgrad_q: output channels x taps per work-item. MO*MK accumulators + MO gradient
    vectors + one input vector fit the vector registers (16 with AVX2, 32 with AVX-512)."""
    vw = cpu_block(dev.profile, dtype, 64, 64)[2]
    if blk:
        return int(blk["MO"]), int(blk["MK"]), vw
    return (4, 4, vw) if dev.profile.vector_width >= 16 else (3, 4, vw)


def _rows_per_group(dev, width: int, target: int, divides: int = 0) -> int:
    """Rows of `width` work-items per work-group: about `target` items, within the device's limits, and a
    divisor of `divides` when given (the range is then exact)."""
    sizes = dev.max_work_item_sizes
    if width > dev.profile.max_wg or width > sizes[0]:
        return 1
    r = max(1, min(target // max(1, width), dev.profile.max_wg // width, sizes[1]))
    if divides:
        while divides % r:
            r -= 1
    return r


def pad_pitched(x: TensorBase, top: int, left: int, Hp: int, Wp: int, slack: int) -> TensorBase:
    """x (N, C, H, W), any strides -> a flat tensor of N*C planes of Hp x Wp (x at row top, column left,
    zeros elsewhere) followed by at least `slack` zeros (whole rows)."""
    N, C, H, W = x.shape
    dev = x.device
    # R plane rows per work-group (a group per row was 70k groups for a 64x32x32x32 gradient: PoCL's
    # per-group cost made this copy 10 ms); the slack is rounded up to whole groups (more zero rows)
    R = _rows_per_group(dev, Wp, 256)
    rows = N * C * Hp + -(-slack // Wp)
    rows = -(-rows // R) * R
    if rows * Wp > _INT_MAX:
        raise ValueError("conv2d: the padded input exceeds 2**31 - 1 elements; split the batch")
    xp = TensorBase._empty((rows * Wp,), x.dtype, dev)
    kern = get_kernel(dev, "conv_gemm.cl.mako", "pad_pitched", arg_dtypes=[_i32] * 8 + [None] + [_i32] * 5
                      + [None, _i32], kernel="pad_pitched", **_types(x.dtype))
    # work-groups of whole rows of the planes (PoCL vectorises the group's straight-line items)
    local = (Wp, R) if Wp <= dev.profile.max_wg else None
    dispatch.launch(dev, kern, (Wp, rows), local, [N * C, C, H, W, top, left, Hp, Wp, x._buf, x.offset,
                                                   *x.strides, xp._buf, xp.offset])
    return xp


def _pack(dev, dtype, w, ws, oc, c, kh, kw, ocp, mr):
    """Weights w[o, c, ky, kx] (buffer, offset; strides ws) as MR-row panels [ocp/MR][c*kh*kw][MR]."""
    wt = TensorBase._empty((c * kh * kw * ocp,), dtype, dev)
    kern = get_kernel(dev, "conv_gemm.cl.mako", "pack_panels", arg_dtypes=[_i32] * 4 + [None] + [_i32] * 5
                      + [None, _i32], kernel="pack_panels", MR=mr, **_types(dtype))
    dispatch.launch(dev, kern, (mr, kh * kw, (ocp // mr) * c), None,
                    [oc, c, kh, kw, w[0], w[1], *ws, wt._buf, wt.offset])
    return wt


def pitch(x: TensorBase, top, left, Hp, Wp, KH, KW, DH, DW, nr):
    """(xp, Hp, Wp): x padded into pitched planes for conv_s1, with the slack its last tiles read past."""
    return pad_pitched(x, top, left, Hp, Wp, (KH - 1) * DH * Wp + (KW - 1) * DW + 2 * nr + 16), Hp, Wp


_CONV_ARGS = [_i32] * 12 + [None, _i32, _i32] + [None, _i32, _i32] + [None] + [_i32] * 5 + [None, _i32, _i32]


def conv_s1(x: TensorBase, w, ws, OC, KH, KW, DH, DW, top, left, OH, OW, y=None, bias=None, relu=False,
            accum=False, pitched=None, blk=None) -> TensorBase:
    """y[n, o, oh, ow] (+)= bias[o] + sum_{c, ky, kx} w[o, c, ky, kx] * x[n, c, oh - top + ky*DH, ow - left + kx*DW]
    (zero outside x): a stride-1 correlation with any padding (negative = cropping), as one conv_gemm launch.

    x: TensorBase (N, C, H, W), any strides (a view); w: (buffer, offset) with element strides ws of [o, c, ky, kx]
    (flips and channel swaps are strides); y: an (N, OC, OH, OW) view to write (any strides), new when None;
    accum adds to y instead of overwriting it; relu clamps the final value. pitched: (xp, Hp, Wp), x already
    padded by (top, left) into planes at least this problem's size (shared by calls), made here otherwise.
    blk: tuned register block (see block)."""
    dev, dtype = x.device, x.dtype
    N, C = x.shape[:2]
    mr, nr, vw = block(dev, dtype, OC, OW, blk)
    if pitched is None:
        pitched = pitch(x, top, left, OH + (KH - 1) * DH, OW + (KW - 1) * DW, KH, KW, DH, DW, nr)
    xp, Hp, Wp = pitched
    ocp = -(-OC // mr) * mr
    wt = _pack(dev, dtype, w, ws, OC, C, KH, KW, ocp, mr)
    if y is None:
        y = TensorBase._empty((N, OC, OH, OW), dtype, dev)
    if OW >= nr and (OW % nr == 0 or OW >= 4 * nr):
        tpr = -(-OW // nr)
        ntiles = OH * tpr
    else:
        tpr = 0
        ntiles = -(-((OH - 1) * Wp + OW) // nr)
    kern = get_kernel(dev, "conv_gemm.cl.mako", "conv_gemm", arg_dtypes=_CONV_ARGS, kernel="conv_gemm",
                      MR=mr, NR=nr, VW=vw, KWU=KW if KW <= 3 else 0, **_types(dtype))
    lx = 16
    epi = (_EPI_BIAS if bias is not None else 0) | (_EPI_RELU if relu else 0) | (_EPI_ACCUM if accum else 0)
    bias_buf, bias_off = (bias._buf, bias.offset) if bias is not None else (_mm._dummy(dev), 0)
    plane = Hp * Wp
    dispatch.launch(dev, kern, (-(-ntiles // lx) * lx, ocp // mr, N), (lx, 1, 1), [OC, C, KH, KW, plane, Wp, DH * Wp, DW, OH, OW, tpr, ntiles,
         xp._buf, xp.offset, C * plane, wt._buf, wt.offset, ocp,
         y._buf, y.offset, *y.strides, bias_buf, bias_off, epi])
    return y


def grad_panels(gy: TensorBase, Wp: int, nr: int) -> TensorBase:
    """gy (N, OC, OH, OW), any strides -> [n][OC/nr][OH*Wp][nr] panels over the flat positions of pitch Wp
    (zeros at columns >= OW and channels >= OC): conv_wgrad's B operand."""
    dev, dtype = gy.device, gy.dtype
    N, OC, OH, OW = gy.shape
    OB = -(-OC // nr)
    size = N * OB * OH * Wp * nr
    if size > _INT_MAX:
        raise ValueError("conv2d: the output gradient's panels exceed 2**31 - 1 elements; split the batch")
    gyt = TensorBase._empty((size,), dtype, dev)
    kern = get_kernel(dev, "conv_gemm.cl.mako", "grad_panels", arg_dtypes=[_i32] * 5 + [None] + [_i32] * 5 + [None],
                      kernel="grad_panels", NR=nr, **_types(dtype))
    # groups of whole panel rows, about 512 items (PoCL's own choice for this range was a few items per
    # group: 10 ms for a 64x32x32x32 gradient)
    rows = N * OB * OH
    sizes = dev.max_work_item_sizes
    local = None
    if nr * Wp <= dev.profile.max_wg and nr <= sizes[0] and Wp <= sizes[1]:
        r = max(1, min(512 // (nr * Wp), dev.profile.max_wg // (nr * Wp), sizes[2], OH))
        while OH % r:
            r -= 1
        local = (nr, Wp, r)
    dispatch.launch(dev, kern, (nr, Wp, rows), local, [OC, OH, OW, Wp, OB, gy._buf, gy.offset, *gy.strides,
                                                       gyt._buf])
    return gyt


def wgrad_s1(x: TensorBase, gy: TensorBase, KH, KW, DH, DW, top, left, gyt=None, Wp=None, out=None) -> TensorBase:
    """dw[o, c, ky, kx] = sum_{n, oh, ow} gy[n, o, oh, ow] * x[n, c, oh - top + ky*DH, ow - left + kx*DW]: the weight
    gradient of conv_s1, written into `out` (an (OC, C, KH, KW) view, any strides) or a new tensor. x, gy: any
    strides. gyt: gy's panels of pitch Wp when the caller shares them between calls (a strided
    convolution's phases), made here otherwise."""
    dev, dtype = x.device, x.dtype
    N, C = x.shape[:2]
    OC, OH, OW = gy.shape[1:]
    mr, nr, vw = cpu_block(dev.profile, dtype, 64, OC)
    Wp = Wp or OW + (KW - 1) * DW
    Hp = OH + (KH - 1) * DH
    xp = pad_pitched(x, top, left, Hp, Wp, 0)
    if gyt is None:
        gyt = grad_panels(gy, Wp, nr)
    OB = -(-OC // nr)
    K = C * KH * KW
    KB = -(-K // mr)
    # the batch is cut into splits summed afterwards when the taps and channels alone give the device too
    # few work-items; a partial gradient per split, at most ~4M values in all
    items = KB * OB
    want = max(1, -(-dev.compute_units * 32 // items))
    nsplit = max(1, min(N, want, (4 << 20) // max(1, OC * K)))
    nper = -(-N // nsplit)
    nsplit = -(-N // nper)
    if out is None:
        out = TensorBase._empty((OC, C, KH, KW), dtype, dev)
    target = out if nsplit == 1 else TensorBase._empty((nsplit, OC, C, KH, KW), dtype, dev)
    strides = ((0,) + tuple(out.strides)) if nsplit == 1 else target.strides
    kern = get_kernel(dev, "conv_gemm.cl.mako", "conv_wgrad", arg_dtypes=[_i32] * 12 + [None, _i32, None, None]
                      + [_i32] * 6, kernel="conv_wgrad", MR=mr, NR=nr, VW=vw, **_types(dtype))
    lx = 8
    dispatch.launch(dev, kern, (-(-KB // lx) * lx, OB, nsplit), (lx, 1, 1),
                    [N, C, KH, KW, OC, OB, (OH - 1) * Wp + OW, OH * Wp, Hp * Wp, DH * Wp, DW, nper,
                     xp._buf, xp.offset, gyt._buf, target._buf, target.offset, *strides])
    if nsplit > 1:
        copy_into(out, _sum(target, 0))
    return out


def wgrad_q(x: TensorBase, gy: TensorBase, KH, KW, DH, DW, top, left, blk=None, shared=None) -> TensorBase:
    """The weight gradient of conv_s1 (as wgrad_s1) by conv_wgrad_q: no transposed copy of gy. shared:
    (gyp, tg, lg, Hpg, Wp), gy already in pitched planes (by the input-gradient pass) with its first value at
    row tg, column lg; used when its pitch is the one this pass needs, else gy is pitched here."""
    dev, dtype = x.device, x.dtype
    N, C = x.shape[:2]
    OC, OH, OW = gy.shape[1:]
    mo, mk, vw = wgrad_block(dev, dtype, blk)
    Wp = OW + (KW - 1) * DW
    Q = (OH - 1) * Wp + OW
    NV = -(-Q // vw)
    # gy's values, then zeros for the NV*vw - Q positions read past the last one (the rest of the plane and
    # the next plane's leading zeros, or the slack): Hpg*Wp >= NV*vw
    if shared is not None and shared[4] == Wp and shared[3] * Wp >= NV * vw:
        gyp, tg, lg, Hpg, _ = shared
    else:
        tg = lg = 0
        Hpg = OH + (1 if OH * Wp < NV * vw else 0)
        gyp = pad_pitched(gy, 0, 0, Hpg, Wp, vw)
    Hpx = OH + (KH - 1) * DH
    xp = pad_pitched(x, top, left, Hpx, Wp, vw)
    K = C * KH * KW
    KB, OB = -(-K // mk), -(-OC // mo)
    items = KB * OB
    want = max(1, -(-dev.compute_units * 32 // items))
    nsplit = max(1, min(N, want, (4 << 20) // max(1, OC * K)))
    nper = -(-N // nsplit)
    nsplit = -(-N // nper)
    out = TensorBase._empty((OC, C, KH, KW), dtype, dev)
    target = out if nsplit == 1 else TensorBase._empty((nsplit, OC, C, KH, KW), dtype, dev)
    strides = ((0,) + tuple(out.strides)) if nsplit == 1 else target.strides
    kern = get_kernel(dev, "conv_gemm.cl.mako", "conv_wgrad_q", arg_dtypes=[_i32] * 12 + [None, _i32, _i32] * 2
                      + [None] + [_i32] * 6, kernel="conv_wgrad_q", MO=mo, MK=mk, VW=vw, **_types(dtype))
    lx = 8
    dispatch.launch(dev, kern, (-(-KB // lx) * lx, OB, nsplit), (lx, 1, 1),
                    [N, C, KH, KW, OC, NV, Hpg * Wp, tg * Wp + lg, Hpx * Wp, DH * Wp, DW, nper,
                     gyp._buf, gyp.offset, OC * Hpg * Wp, xp._buf, xp.offset, C * Hpx * Wp,
                     target._buf, target.offset, *strides])
    return _sum(target, 0) if nsplit > 1 else out


# --- the three passes of a conv2d (geometry g: clnet.ops.conv._Geom) -----------------------------------
def _phases(K, P, s):
    """Polyphase split of one axis of a stride-s convolution (dilation 1): for each input phase a (rows a,
    a+s, ...) the kernel taps that read it, as (first tap, tap count, top padding of the stride-1 sub-problem)."""
    out = []
    for a in range(s):
        k0 = (a + P) % s
        count = len(range(k0, K, s))
        out.append((a, k0, count, -((k0 - P - a) // s)))
    return out


def _phase_view(x, a, b, s):
    """Rows a, a+s, ... and columns b, b+s, ... of x (N, C, H, W) as a view."""
    N, C, H, W = x.shape
    sn, sc, sh, sw = x.strides
    return x._view((N, C, -(-(H - a) // s), -(-(W - b) // s)), (sn, sc, s * sh, s * sw), x.offset + a * sh + b * sw)


def applies(g, pass_) -> bool:
    """conv2d geometries these kernels run: stride 1 (any dilation), or equal strides with dilation 1 and
    every phase non-empty; the input gradient needs P <= (K-1)*D at stride 1."""
    if (g.SH, g.SW) == (1, 1):
        if pass_ == "grad_input":
            return g.PH <= g.DH * (g.KH - 1) and g.PW <= g.DW * (g.KW - 1)
        return True
    return (g.DH, g.DW) == (1, 1) and g.SH == g.SW and g.H >= g.SH and g.W >= g.SW


def forward(x: TensorBase, w: TensorBase, bias, g, relu=False, blk=None) -> TensorBase:
    """conv2d forward: (N, OC, OH, OW). Strided convolutions are the sum of the s*s phase convolutions
    (each phase of x with the taps that read it), accumulated into y."""
    ws = w.strides
    if (g.SH, g.SW) == (1, 1):
        return conv_s1(x, (w._buf, w.offset), ws, g.OC, g.KH, g.KW, g.DH, g.DW, g.PH, g.PW, g.OH, g.OW,
                       bias=bias, relu=relu, blk=blk)
    s = g.SH
    parts = [(ph, pw) for ph in _phases(g.KH, g.PH, s) for pw in _phases(g.KW, g.PW, s) if ph[2] and pw[2]]
    y = None
    for i, ((a, ky0, kh, top), (b, kx0, kw, left)) in enumerate(parts):
        wsub = (w._buf, w.offset + ky0 * ws[2] + kx0 * ws[3])
        y = conv_s1(_phase_view(x, a, b, s), wsub, (ws[0], ws[1], s * ws[2], s * ws[3]), g.OC, kh, kw, 1, 1,
                    top, left, g.OH, g.OW, y=y, bias=bias if i == 0 else None,
                    relu=relu and i == len(parts) - 1, accum=i > 0, blk=blk)
    return y


def grad_input(gy: TensorBase, w: TensorBase, g, blk=None, share=None) -> TensorBase:
    """Input gradient: per phase of x, gy convolved with that phase's taps flipped in space and with the
    channel axes swapped (strides, not copies), written into the phase's rows and columns of gx.
    share: a dict that receives gy's pitched copy (stride 1) for the weight-gradient pass to reuse."""
    ws = w.strides
    wf = (ws[1], ws[0], -ws[2], -ws[3])
    if (g.SH, g.SW) == (1, 1):
        w_flip = (w._buf, w.offset + (g.KH - 1) * ws[2] + (g.KW - 1) * ws[3])
        top, left = g.DH * (g.KH - 1) - g.PH, g.DW * (g.KW - 1) - g.PW
        nr = block(gy.device, gy.dtype, g.C, g.W, blk)[1]
        pitched = pitch(gy, top, left, g.H + (g.KH - 1) * g.DH, g.W + (g.KW - 1) * g.DW, g.KH, g.KW, g.DH, g.DW, nr)
        if share is not None:
            share["gy"] = (pitched[0], top, left, pitched[1], pitched[2])
        return conv_s1(gy, w_flip, wf, g.C, g.KH, g.KW, g.DH, g.DW, top, left, g.H, g.W, pitched=pitched, blk=blk)
    s = g.SH
    phases_h, phases_w = _phases(g.KH, g.PH, s), _phases(g.KW, g.PW, s)
    empty = any(p[2] == 0 for p in phases_h + phases_w)
    if empty:   # phases no tap reads get a zero gradient
        gx = zeros((g.N, g.C, g.H, g.W), dtype=gy.dtype, device=gy.device)
    else:
        gx = TensorBase._empty((g.N, g.C, g.H, g.W), gy.dtype, gy.device)
    # the phases read gy padded by (k-1-top, k-1-left): one padded copy per distinct padding, shared
    todo = [(ph, pw) for ph in phases_h for pw in phases_w if ph[2] and pw[2]]
    nr = block(gy.device, gy.dtype, g.C, blk=blk)[1]
    shared = {}
    for (a, ky0, kh, top), (b, kx0, kw, left) in todo:
        key = (kh - 1 - top, kw - 1 - left)
        Hp, Wp = shared.get(key, (0, 0))
        shared[key] = (max(Hp, -(-(g.H - a) // s) + kh - 1), max(Wp, -(-(g.W - b) // s) + kw - 1))
    pitched = {key: pitch(gy, key[0], key[1], Hp, Wp, max(p[2] for p in phases_h), max(p[2] for p in phases_w),
                          1, 1, nr) for key, (Hp, Wp) in shared.items()}
    for (a, ky0, kh, top), (b, kx0, kw, left) in todo:
        # the phase's taps ky0, ky0+s, ..., flipped: start at the last one, step -s
        w_flip = (w._buf, w.offset + (ky0 + s * (kh - 1)) * ws[2] + (kx0 + s * (kw - 1)) * ws[3])
        out = _phase_view(gx, a, b, s)
        conv_s1(gy, w_flip, (ws[1], ws[0], -s * ws[2], -s * ws[3]), g.C, kh, kw, 1, 1, kh - 1 - top,
                kw - 1 - left, out.shape[2], out.shape[3], y=out, pitched=pitched[(kh - 1 - top, kw - 1 - left)],
                blk=blk)
    return gx


def grad_weight(x: TensorBase, gy: TensorBase, g, blk=None, share=None) -> TensorBase:
    """Weight gradient (OC, C, KH, KW). Stride 1: conv_wgrad_q (blk {"MO", "MK"}), reusing the input-gradient
    pass's pitched gy from `share` when it has the right pitch, or conv_wgrad over gy's panels for images of
    at most 128 pixels or when a tuned blk says {"panels": 1}. Strided: per phase, the stride-1 weight
    gradient of that phase's taps; the phases share one copy of the output gradient's panels (at the pitch
    of the widest phase)."""
    if (g.SH, g.SW) == (1, 1):
        # small images: the flat positions of a plane are few vectors (8x8: 10 of 8 lanes, 64 useful) and
        # the panels won (32x256x8x8 -> 256: 93 vs 121 ms); from 16x16 up conv_wgrad_q did (21 vs 24 ms,
        # 64x3x32x32 -> 32: 6.3 vs 9.2 ms)
        panels = blk.get("panels") if blk else g.OH * g.OW <= 128
        if panels:
            return wgrad_s1(x, gy, g.KH, g.KW, g.DH, g.DW, g.PH, g.PW)
        return wgrad_q(x, gy, g.KH, g.KW, g.DH, g.DW, g.PH, g.PW, blk=blk, shared=(share or {}).get("gy"))
    s = g.SH
    phases_h, phases_w = _phases(g.KH, g.PH, s), _phases(g.KW, g.PW, s)
    Wp = g.OW + max(p[2] for p in phases_w) - 1
    gyt = grad_panels(gy, Wp, cpu_block(x.device.profile, x.dtype, 64, g.OC)[1])
    dw = TensorBase._empty((g.OC, g.C, g.KH, g.KW), x.dtype, x.device)
    for a, ky0, kh, top in phases_h:
        for b, kx0, kw, left in phases_w:
            if not kh or not kw:
                continue
            dst = dw._view((g.OC, g.C, kh, kw), (dw.strides[0], dw.strides[1], s * dw.strides[2], s * dw.strides[3]),
                           dw.offset + ky0 * dw.strides[2] + kx0 * dw.strides[3])
            wgrad_s1(_phase_view(x, a, b, s), gy, kh, kw, 1, 1, top, left, gyt=gyt, Wp=Wp, out=dst)
    return dw

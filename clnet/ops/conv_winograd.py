"""Winograd F(m x m, 3 x 3) convolution (m = 2 or 4): the transforms in kernels/conv_winograd.cl.mako, the
a^2 = (m+2)^2 independent GEMMs in the tuned GEMM of kernels/matmul.cl.mako.

    forward      V = B^T d B (input tiles), U = G g G^T (weights), M[xi] = U[xi] @ V[xi], y = A^T M A
    grad input   the same with gy as the input (padding 2 - P) and the weights flipped with their channel
                 axes swapped (strides, not copies)
    grad weight  Z = A dY A^T (output-gradient tiles), dU^T[xi] = V[xi] @ Z[xi]^T, dw = G^T dU G

On CPU devices V and Z are written straight into the CPU GEMM's packed-panel layout (no packing pass) and
the transforms work on vectors of tiles or channels; on GPUs everything is plain rows, one tile per
work-item, and the GEMM is the tiled one. Stride 1, 3x3 kernels, dilation 1, padding 0..2.
"""
from __future__ import annotations

import numpy as np

from ..backend import caches
from ..backend.programs import ctype, get_kernel
from ..core import dispatch
from ..core.storage import TensorBase
from . import matmul as _mm
from .conv_gemm import cpu_block, pad_pitched

_i32 = np.int32
_EPI_BIAS, _EPI_RELU = 2, 4
_INT_MAX = 2**31 - 1


def _types(dtype):
    c = ctype(dtype)
    return dict(t=c, acc="float" if c == "half" else c)


def _acc_np(dtype):
    return np.dtype(np.float32) if dtype.itemsize == 2 else np.dtype(dtype)


def plane_stride(n: int) -> int:
    """Elements between the a^2 planes of U, V, M, Z, dU: n rounded up to 16 (aligned vectors), plus 16
    when that is a multiple of 1024. A transform touches all a^2 planes at once: at power-of-two distances
    they fall into the same cache sets, and the 36 streams of F(4x4) evict each other (the weight transform
    of a 512x512 layer took 78 ms instead of ~6 on PoCL before this)."""
    n = -(-n // 16) * 16
    return n + 16 if n % 1024 == 0 else n


class _Plan:
    """Tiling of one pass: sizes, GEMM panel width, vector lanes, and the tile tables on the device."""

    def __init__(self, dev, dtype, m, N, OH, OW, OC):
        self.m, self.a2 = m, (m + 2) ** 2
        self.cpu = dev.profile.matmul_variant == "cpu"
        self.TH, self.TW = -(-OH // m), -(-OW // m)
        self.T = N * self.TH * self.TW
        if self.cpu:
            _, self.nr, vw = cpu_block(dev.profile, dtype, OC, max(self.T, 64))
            self.vw = max(1, min(8, vw, self.nr))
        else:
            self.nr, self.vw = 1, 1
        step = max(self.nr, self.vw)
        self.TP = -(-self.T // step) * step


_TABLES = caches.new_cache("winograd tile tables", limit=64)


def _tables(dev, m, N, TH, TW, TP, OH, OW, base):
    """(offsets, lim) int32 tensors over the TP tiles: offsets[t] = n*sn + ty*m*sh + tx*m*sw for the strides
    `base` = (sn, sh, sw) of the tensor the tiles are cut from; lim[t] = 16 * valid rows + valid columns of
    the tile's m x m output block (0 for tiles past the batch, whose offset is 0). Cached per geometry."""
    key = (id(dev), m, N, TH, TW, TP, OH, OW, base)
    hit = _TABLES.get(key)
    if hit is not None:
        return hit
    t = np.arange(TP)
    n, rest = np.divmod(t, TH * TW)
    ty, tx = np.divmod(rest, TW)
    live = t < N * TH * TW
    sn, sh, sw = base
    off = np.where(live, n * sn + ty * m * sh + tx * m * sw, 0)
    lim = np.where(live, np.minimum(m, OH - ty * m) * 16 + np.minimum(m, OW - tx * m), 0)
    if off.max(initial=0) > _INT_MAX:
        raise ValueError("conv2d (winograd): offsets exceed 32-bit indexing; split the batch")
    hit = (dispatch.upload_array(off.astype(np.int32), np.dtype(np.int32), dev),
           dispatch.upload_array(lim.astype(np.int32), np.dtype(np.int32), dev))
    _TABLES[key] = hit
    return hit


def _input_transform(dev, dtype, plan, x, C, H, W, PH, PW, rows_layout):
    """V for the tiles of x (N, C, H, W) padded by (PH, PW): plain rows [xi][C][TP] (rows_layout or a GPU)
    or the CPU GEMM's B panels [xi][TP/nr][C][nr]."""
    m, TH, TW, TP = plan.m, plan.TH, plan.TW, plan.TP
    N = x.shape[0]
    Hp, Wp = TH * m + 2, TW * m + 2
    xp = pad_pitched(x, PH, PW, Hp, Wp, 0)
    plane = Hp * Wp
    toff, _ = _tables(dev, m, N, TH, TW, TP, TH * m, TW * m, (C * plane, Wp, 1))
    s_x = plane_stride(C * TP)
    size = plan.a2 * s_x
    if size > _INT_MAX:
        raise ValueError("conv2d (winograd): the transformed tiles exceed 2**31 - 1 elements; split the batch")
    v = TensorBase._empty((size,), dtype, dev)
    panels = plan.cpu and not rows_layout
    nt = plan.nr if panels else 1
    s_c, s_tb = (nt, C * nt) if panels else (TP, 1)
    vw = plan.vw
    kern = get_kernel(dev, "conv_winograd.cl.mako", "wino_input", arg_dtypes=[_i32, _i32, None, _i32, None, None]
                      + [_i32] * 4, kernel="wino_input", m=m, NT=nt, VW=vw, **_types(dtype))
    dispatch.launch(dev, kern, (TP // vw, C), None, [plane, Wp, xp._buf, xp.offset, toff._buf, v._buf, v.offset,
         s_x, s_c, s_tb])
    return v, s_x


def _filter_transform(dev, dtype, m, w, ws, OC, C):
    """(U plain [xi][OC][C], its plane stride) from w[o, c, 3, 3] (buffer, offset; strides ws)."""
    a2 = (m + 2) ** 2
    s_x = plane_stride(OC * C)
    u = TensorBase._empty((a2 * s_x,), dtype, dev)
    kern = get_kernel(dev, "conv_winograd.cl.mako", "wino_filter", arg_dtypes=[_i32, _i32, None] + [_i32] * 5
                      + [None, _i32, _i32], kernel="wino_filter", m=m, **_types(dtype))
    dispatch.launch(dev, kern, (C, OC), None, [OC, C, w[0], w[1], *ws, u._buf, u.offset, s_x])
    return u, s_x


def _batched_gemm(dev, dtype, a2, M, N, K, a, a_sb, a_sm, b, b_sb, b_panels, out, c_sb):
    """out[xi] (M x N, rows N apart, planes c_sb apart) = A[xi] (M x K: rows a_sm apart, unit k stride, planes
    a_sb apart) @ B[xi] (K x N, planes b_sb apart).

    b_panels: b holds the CPU GEMM's panels [xi][N/nr][K][nr]; else b is plain [xi][K][N]."""
    if b_panels:
        prof = dev.profile
        mr, nr, vw = cpu_block(prof, dtype, M, N)
        acc = _acc_np(dtype)
        kern = _mm._kernel(dev, "gemm_cpu", _mm._GEMM_ARGS + [acc, acc, _i32], t=ctype(dtype),
                           acc=_types(dtype)["acc"], MR=mr, NR=nr, VW=vw, a_mode="rows", b_mode="panels",
                           b_nc=False)
        lm = max(1, min(prof.matmul_tile_m // max(1, prof.matmul_wpt_m), dev.max_work_item_sizes[0]))
        gm = -(-(-(-M // mr)) // lm) * lm
        dispatch.launch(dev, kern, (gm, -(-N // nr), a2), (lm, 1, 1), [M, N, K,
             a._buf, a.offset, a_sb, a_sm, 1,
             b._buf, 0, b_sb, nr, 1,
             out._buf, out.offset, c_sb, N,
             _mm._dummy(dev), 0, 1.0, 0.0, 0])
        return out
    _mm._gemm(a._view((a2, M, K), (a_sb, a_sm, 1)), b._view((a2, K, N), (b_sb, N, 1)),
              out=out._view((a2, M, N), (c_sb, N, 1)))
    return out


def _conv(dev, dtype, m, x, C, H, W, PH, PW, w, ws, OC, OH, OW, bias, relu):
    """y (N, OC, OH, OW) = conv3x3(x, w) with padding (PH, PW): the forward and the grad-input pass."""
    N = x.shape[0]
    plan = _Plan(dev, dtype, m, N, OH, OW, OC)
    a2, TP = plan.a2, plan.TP
    v, v_sx = _input_transform(dev, dtype, plan, x, C, H, W, PH, PW, rows_layout=False)
    u, u_sx = _filter_transform(dev, dtype, m, w, ws, OC, C)
    m_sx = plane_stride(OC * TP)
    mm = TensorBase._empty((a2 * m_sx,), dtype, dev)
    _batched_gemm(dev, dtype, a2, OC, TP, C, u, u_sx, C, v, v_sx, plan.cpu, mm, m_sx)
    y = TensorBase._empty((N, OC, OH, OW), dtype, dev)
    ytab, lim = _tables(dev, m, N, plan.TH, plan.TW, TP, OH, OW, (y.strides[0], y.strides[2], y.strides[3]))
    kern = get_kernel(dev, "conv_winograd.cl.mako", "wino_output", arg_dtypes=[_i32, _i32, None, _i32, None, None,
                      None] + [_i32] * 4 + [None, _i32, _i32], kernel="wino_output", m=m, VW=plan.vw,
                      **_types(dtype))
    bias_buf, bias_off = (bias._buf, bias.offset) if bias is not None else (_mm._dummy(dev), 0)
    epi = (_EPI_BIAS if bias is not None else 0) | (_EPI_RELU if relu else 0)
    dispatch.launch(dev, kern, (TP // plan.vw, OC), None, [TP, m_sx, mm._buf, mm.offset, ytab._buf, lim._buf,
         y._buf, y.offset, y.strides[1], y.strides[2], y.strides[3], bias_buf, bias_off, epi])
    return y


def forward(x: TensorBase, w: TensorBase, bias, g, m=2, relu=False) -> TensorBase:
    """conv2d forward for 3x3, stride 1, dilation 1: x (N, C, H, W), w (OC, C, 3, 3) -> (N, OC, OH, OW)."""
    return _conv(x.device, x.dtype, m, x, g.C, g.H, g.W, g.PH, g.PW, (w._buf, w.offset), w.strides,
                 g.OC, g.OH, g.OW, bias, relu)


def grad_input(gy: TensorBase, w: TensorBase, g, m=2) -> TensorBase:
    """Input gradient: gy padded by 2 - P, convolved with w flipped in space and with its channel axes
    swapped (wf[c, o, ky, kx] = w[o, c, 2 - ky, 2 - kx])."""
    ws = w.strides
    w_flip = (w._buf, w.offset + 2 * ws[2] + 2 * ws[3])
    wfs = (ws[1], ws[0], -ws[2], -ws[3])
    return _conv(gy.device, gy.dtype, m, gy, g.OC, g.OH, g.OW, 2 - g.PH, 2 - g.PW, w_flip, wfs,
                 g.C, g.H, g.W, None, False)


def grad_weight(x: TensorBase, gy: TensorBase, g, m=2) -> TensorBase:
    """Weight gradient (OC, C, 3, 3): dU^T[xi] (C x OC) = V[xi] (C x T) @ Z[xi]^T (T x OC), dw = G^T dU G."""
    dev, dtype = x.device, x.dtype
    plan = _Plan(dev, dtype, m, g.N, g.OH, g.OW, g.OC)
    a2, TP, vw = plan.a2, plan.TP, plan.vw
    v, v_sx = _input_transform(dev, dtype, plan, x, g.C, g.H, g.W, g.PH, g.PW, rows_layout=True)
    gtab, lim = _tables(dev, m, g.N, plan.TH, plan.TW, TP, g.OH, g.OW,
                        (gy.strides[0], gy.strides[2], gy.strides[3]))
    if plan.cpu:   # channel panels [xi][OCP/nr][TP][nr]: the GEMM's B operand (N = OC)
        nc = cpu_block(dev.profile, dtype, g.C, g.OC)[1]
        vw = min(vw, nc)
        ocp = -(-g.OC // nc) * nc
        s_cb, s_t = TP * nc, nc
    else:          # plain rows [xi][OC][TP]
        nc, ocp, s_cb, s_t = 1, g.OC, TP, 1
    z_sx = plane_stride(ocp * TP)
    z = TensorBase._empty((a2 * z_sx,), dtype, dev)
    kern = get_kernel(dev, "conv_winograd.cl.mako", "wino_grad_out", arg_dtypes=[_i32] * 4 + [None, _i32, None, None,
                      None] + [_i32] * 4, kernel="wino_grad_out", m=m, NC=nc, VW=vw, **_types(dtype))
    dispatch.launch(dev, kern, (TP, ocp // vw), None, [g.OC, gy.strides[1], gy.strides[2], gy.strides[3],
         gy._buf, gy.offset, gtab._buf, lim._buf, z._buf, z.offset, z_sx, s_cb, s_t])
    du_sx = plane_stride(g.C * g.OC)
    du = TensorBase._empty((a2 * du_sx,), dtype, dev)   # dU^T plain [xi][C][OC]
    if plan.cpu:
        _batched_gemm(dev, dtype, a2, g.C, g.OC, TP, v, v_sx, TP, z, z_sx, True, du, du_sx)
    else:
        _mm._gemm(v._view((a2, g.C, TP), (v_sx, TP, 1)), z._view((a2, TP, g.OC), (z_sx, 1, TP)),
                  out=du._view((a2, g.C, g.OC), (du_sx, g.OC, 1)))
    dw = TensorBase._empty((g.OC, g.C, 3, 3), dtype, dev)
    kern = get_kernel(dev, "conv_winograd.cl.mako", "wino_wgrad", arg_dtypes=[_i32, _i32, _i32, None, _i32, None]
                      + [_i32] * 3, kernel="wino_wgrad", m=m, **_types(dtype))
    dispatch.launch(dev, kern, (g.OC, g.C), None, [g.C, g.OC, du_sx, du._buf, du.offset, dw._buf, dw.offset, 9, g.C * 9])
    return dw

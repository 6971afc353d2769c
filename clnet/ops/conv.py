"""2-D convolution and pooling over NCHW tensors, with PyTorch's semantics and gradients.

Each pass of a convolution (forward, input gradient, weight gradient) runs the algorithm that
clnet.ops.conv_select picks for its shape and device (or the one `algo=` / CLNET_CONV_ALGO forces, or the one
`clnet tune` stored for its shape class). The input gradient is skipped when the input needs none (a first
layer's images), as in PyTorch; the GEMM passes read the output gradient through its strides and share its
padded copy between them:
    direct     the direct kernel below (kernels/conv.cl.mako): best on tiny problems (the digits model)
    im2col     column matrix + the tuned GEMM (kernels/conv.cl.mako im2col/col2im)
    gemm       implicit GEMM over zero-padded pitched planes (clnet.ops.conv_gemm); strided convolutions
               as sums of their stride-1 phase convolutions
    winograd2  Winograd F(2x2, 3x3), winograd4 F(4x4, 3x3) (clnet.ops.conv_winograd): 3x3, stride 1
Measurements behind the choice are in BENCHMARKS.md ("Convolution").

The direct kernel (measured against im2col on the digits model, PoCL, forward / forward + backward ms):
    digits layer 1 (64x1x8x8 -> 16, 3x3, pad 1)    0.32 / 2.7    vs  1.13 / 4.3
    digits layer 2 (64x16x4x4 -> 32, 3x3, pad 1)   0.68 / 4.7    vs  2.30 / 5.8
serves all three passes through strided operands: forward; grad weight (a convolution of the input, n and
c swapped, with the output gradient as the kernel); grad input of stride-1 convolutions (the output
gradient convolved with the flipped, transposed weights). It keeps one vector of 8-16 output channels per
pixel of a small pixel block per work-item, reads a zero-padded copy of the input so the inner loop has no
masks, and cuts long channel sums into splits added by a second launch when the grid is small. Strided
convolutions get their input gradient from a gather kernel (each input pixel sums its taps).

Every output element is written by exactly one work-item: deterministic, no float atomics.
Sizes, strides, paddings and dilations are kernel arguments, so a new batch size never rebuilds.
Gradients are first order (the backward kernels are not themselves recorded).
"""
from __future__ import annotations

import math

import numpy as np

from .. import dtypes as _dt
from ..backend.programs import ctype, get_kernel
from ..core import dispatch
from ..core.dispatch import op
from ..core.storage import TensorBase
from ..core.tape import needs_grad, record
from . import conv_gemm, conv_select, conv_winograd
from .creation import zeros
from .matmul import bmm
from .reduce import sum as _sum

_INT_MAX = 2**31 - 1
_i32 = np.int32


# --- argument checks -------------------------------------------------------------------------------
def _pair(v, name, op, allow_zero=False):
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        v = (int(v), int(v))
    if (not isinstance(v, (tuple, list)) or len(v) != 2
            or not all(isinstance(e, (int, np.integer)) and not isinstance(e, bool) for e in v)):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {v!r}")
    v = (int(v[0]), int(v[1]))
    low = 0 if allow_zero else 1
    if v[0] < low or v[1] < low:
        raise ValueError(f"{op}: {name} must be {'>= 0' if allow_zero else 'positive'}, got {v}")
    return v


def _check_tensor(x, name, op):
    if not isinstance(x, TensorBase):
        raise TypeError(f"{op}: {name} must be a clnet Tensor, got {type(x).__name__}")
    if not _dt.is_floating(x.dtype):
        raise TypeError(f"{op}: {name} must be floating point, got {x.dtype.name}; convert with .float()")


def _out_size(size, k, s, p, d, op, axis):
    out = (size + 2 * p - d * (k - 1) - 1) // s + 1
    if out <= 0:
        raise ValueError(f"{op}: the {axis} axis is too small: input size {size} with padding {p} is smaller "
                         f"than the (dilated) kernel size {d * (k - 1) + 1}")
    return out


def _check_int_range(op, *tensors_numel):
    if max(tensors_numel) > _INT_MAX:
        raise ValueError(f"{op}: a tensor has more than 2**31 - 1 elements; split the batch")


def _batched(x, op):
    """(N, C, H, W) as is; (C, H, W) gets a batch axis (PyTorch accepts unbatched input)."""
    if x.ndim == 4:
        return x, False
    if x.ndim == 3:
        return x.reshape((1,) + x.shape), True
    raise ValueError(f"{op} expects an input of shape (N, C, H, W) or (C, H, W), got {tuple(x.shape)}")


def _types(x):
    acc = _dt.float32 if x.dtype == _dt.float16 else x.dtype
    return dict(t=ctype(x.dtype), acc=ctype(acc))


def _launch(device, kern, n, *args):
    wg = device.profile.elementwise_wg
    dispatch.launch(device, kern, (max(1, -(-n // wg)) * wg,), (wg,), list(args))


def _contig(x: TensorBase) -> TensorBase:
    x = x.detach()
    return x if x.is_contiguous() else x.contiguous()


# --- convolution -----------------------------------------------------------------------------------
class _Geom:
    """Sizes of one convolution; `args` is their order in every conv kernel's signature."""

    __slots__ = ("N", "C", "H", "W", "OC", "OH", "OW", "KH", "KW", "SH", "SW", "PH", "PW", "DH", "DW")

    def __init__(self, x_shape, w_shape, stride, padding, dilation, op="conv2d"):
        self.N, self.C, self.H, self.W = x_shape
        self.OC, _, self.KH, self.KW = w_shape
        (self.SH, self.SW), (self.PH, self.PW), (self.DH, self.DW) = stride, padding, dilation
        self.OH = _out_size(self.H, self.KH, self.SH, self.PH, self.DH, op, "height")
        self.OW = _out_size(self.W, self.KW, self.SW, self.PW, self.DW, op, "width")

    @property
    def args(self):
        return [getattr(self, s) for s in self.__slots__]

    @property
    def K(self):
        return self.C * self.KH * self.KW


_GEOM_DT = [_i32] * 15
PIXELS = 2   # neighbouring output pixels per work-item in conv2d_forward (each reuses the weight vector)


def _vector_width(dev) -> int:
    """Output channels per work-item (one vector accumulator per pixel): 16 where the CPU has 16-float
    vectors (AVX-512 PoCL measured 0-25% faster than 8 on the digits and a 28x28x32->64 layer), else 8."""
    return min(dev.profile.max_vector_width, 16 if dev.type == "cpu" and dev.preferred_vector_width_float >= 16 else 8)


def _padding(padding, weight_shape, stride, dilation):
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0)
        if padding == "same":
            if stride != (1, 1):
                raise ValueError("conv2d: padding='same' is not supported for strided convolutions")
            total = [dilation[i] * (weight_shape[2 + i] - 1) for i in range(2)]
            if any(t % 2 for t in total):
                raise NotImplementedError("conv2d: padding='same' with an even (dilated) kernel needs "
                                          "asymmetric padding, which is not supported; pad explicitly")
            return (total[0] // 2, total[1] // 2)
        raise ValueError(f"conv2d: padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
    return _pair(padding, "padding", "conv2d", allow_zero=True)


# the algorithms of each pass (clnet.ops.conv_select chooses by shape and device); every function takes
# contiguous operands and the geometry
_FORWARD = {"direct": lambda x, w, b, g: _forward_direct(x, w, b, g),
            "im2col": lambda x, w, b, g: _forward_im2col(x, w, b, g),
            "gemm": conv_gemm.forward,
            "winograd2": lambda x, w, b, g: conv_winograd.forward(x, w, b, g, m=2),
            "winograd4": lambda x, w, b, g: conv_winograd.forward(x, w, b, g, m=4)}
_GRAD_INPUT = {"direct": lambda gy, w, g: _grad_input_direct(gy, w, g),
               "im2col": lambda gy, w, g: _grad_input_im2col(gy, w, g),
               "gemm": conv_gemm.grad_input,
               "winograd2": lambda gy, w, g: conv_winograd.grad_input(gy, w, g, m=2),
               "winograd4": lambda gy, w, g: conv_winograd.grad_input(gy, w, g, m=4)}
_GRAD_WEIGHT = {"direct": lambda x, gy, g: _grad_weight_direct(x, gy, g),
                "im2col": lambda x, gy, g: _grad_weight_im2col(x, gy, g),
                "gemm": conv_gemm.grad_weight,
                "winograd2": lambda x, gy, g: conv_winograd.grad_weight(x, gy, g, m=2),
                "winograd4": lambda x, gy, g: conv_winograd.grad_weight(x, gy, g, m=4)}


@op("conv2d")
def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, algo=None):
    """y = x (*) weight + bias for x (N, C_in, H, W) and weight (C_out, C_in, kh, kw) -> (N, C_out, OH, OW).

    stride, padding and dilation are ints or pairs (padding may also be 'valid' or 'same'). `algo` forces
    one algorithm (clnet.ops.conv_select.ALGOS) where it applies; by default each pass gets its own.
    """
    _check_tensor(x, "input", "conv2d")
    _check_tensor(weight, "weight", "conv2d")
    x4, unbatched = _batched(x, "conv2d")
    if weight.ndim != 4:
        raise ValueError(f"conv2d: weight must have shape (C_out, C_in, kh, kw), got {tuple(weight.shape)}")
    if weight.shape[1] != x4.shape[1]:
        raise ValueError(f"conv2d: input has {x4.shape[1]} channels (shape {tuple(x.shape)}) but the weight "
                         f"{tuple(weight.shape)} expects {weight.shape[1]}")
    if x.device is not weight.device:
        raise ValueError(f"conv2d: input is on {x.device} but weight is on {weight.device}")
    if x.dtype != weight.dtype:
        raise TypeError(f"conv2d: input dtype {x.dtype.name} != weight dtype {weight.dtype.name}")
    if bias is not None:
        _check_tensor(bias, "bias", "conv2d")
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"conv2d: bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
        if bias.device is not x.device or bias.dtype != x.dtype:
            raise ValueError(f"conv2d: bias ({bias.dtype.name} on {bias.device}) must match the input "
                             f"({x.dtype.name} on {x.device})")
    stride = _pair(stride, "stride", "conv2d")
    dilation = _pair(dilation, "dilation", "conv2d")
    padding = _padding(padding, weight.shape, stride, dilation)
    g = _Geom(x4.shape, weight.shape, stride, padding, dilation)
    _check_int_range("conv2d", x4.numel(), g.N * g.OC * g.OH * g.OW, g.N * g.K * g.OH * g.OW)
    dev = x.device
    algo_fwd, blk = conv_select.plan(dev, g, "forward", algo, x.dtype)

    xc, wc = _contig(x4), _contig(weight)
    bc = _contig(bias) if bias is not None else None
    y = conv_gemm.forward(xc, wc, bc, g, blk=blk) if algo_fwd == "gemm" else _FORWARD[algo_fwd](xc, wc, bc, g)

    inputs = (x4, weight) + ((bias,) if bias is not None else ())
    if needs_grad(*inputs):
        def backward(gy):
            gy = gy.detach()
            contig = []   # gy made contiguous once, for the algorithms that need it (the GEMM ones read strides)

            def gyc():
                if not contig:
                    contig.append(_contig(gy))
                return contig[0]
            share = {}    # the input-gradient pass's pitched gy, reused by the weight-gradient pass
            gx = gw = None
            if x4.requires_grad:   # skipped for an input that needs no gradient (a first layer's images)
                a, blk = conv_select.plan(dev, g, "grad_input", algo, x.dtype)
                gx = conv_gemm.grad_input(gy, wc, g, blk=blk, share=share) if a == "gemm" \
                    else _GRAD_INPUT[a](gyc(), wc, g)
            if weight.requires_grad:
                a, blk = conv_select.plan(dev, g, "grad_weight", algo, x.dtype)
                gw = conv_gemm.grad_weight(xc, gy, g, blk=blk, share=share) if a == "gemm" \
                    else _GRAD_WEIGHT[a](xc, gyc(), g)
            if bias is None:
                return gx, gw
            return gx, gw, (_grad_bias(gyc(), g) if bias.requires_grad else None)
        record("conv2d", y, inputs, backward, saved=inputs)
    return y.reshape(y.shape[1:]) if unbatched else y


def _contiguous_strides4(shape):
    a, b, c, d = shape
    return (b * c * d, c * d, d, 1)


def _pack_weights(dev, dtype, w, ws, oc, c, kh, kw, ocp):
    """w[o, c, ky, kx] (buffer, offset; strides ws) -> new [c*kh*kw, ocp] tensor, zero-padded past oc."""
    wt = TensorBase._empty((c * kh * kw, ocp), dtype, dev)
    kern = get_kernel(dev, "conv.cl.mako", "pack_weights", arg_dtypes=[_i32] * 5 + [None] + [_i32] * 5
                      + [None, _i32], kernel="pack_weights", **_types(wt))
    _launch(dev, kern, wt.numel(), oc, c, kh, kw, ocp, w[0], w[1], *ws, wt._buf, wt.offset)
    return wt


def _pad_input(dev, dtype, x, xs, n, c, h, w, ph, pw):
    """x[n, c, h, w] (buffer, offset; strides xs) -> new contiguous (n, c, h + 2ph, w + 2pw) with a zero border."""
    xp = TensorBase._empty((n, c, h + 2 * ph, w + 2 * pw), dtype, dev)
    kern = get_kernel(dev, "conv.cl.mako", "pad_input", arg_dtypes=[_i32] * 6 + [None] + [_i32] * 5 + [None, _i32],
                      kernel="pad_input", **_types(xp))
    _launch(dev, kern, xp.numel(), n, c, h, w, ph, pw, x[0], x[1], *xs, xp._buf, xp.offset)
    return xp


def _strided_conv(dev, dtype, dims, x, xs, w, ws, out_shape, ys, bias=None, block=None):
    """Run conv2d_forward on strided operands; returns a new tensor of `out_shape`.

    dims: (N, C, H, W, OC, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW) of the (possibly transformed) problem;
    x, w: (buffer, element offset); xs, ws, ys: element strides of x[n, c, h, w], w[o, c, ky, kx] and of
    y[n, o, oh, ow] inside the output. When the grid would be too small for the device, the channel sum is
    cut into splits that a second, deterministic launch adds up. `block`: output pixels per work-item.
    """
    N, C, H, W, OC, OH, OW, KH, KW = dims[:9]
    block = block or (1, PIXELS)
    vector = _vector_width(dev)
    vw = vector if OC > vector // 2 else (8 if OC > 4 else 4)
    pbh, pbw = block
    ocp = -(-OC // vw) * vw
    wt = _pack_weights(dev, dtype, w, ws, OC, C, KH, KW, ocp)
    items = N * (ocp // vw) * -(-OH // pbh) * -(-OW // pbw)
    nsplit = _nsplit(dev, items, C)
    cs = -(-C // nsplit)
    nsplit = -(-C // cs)
    m = math.prod(out_shape)
    target = TensorBase._empty(((nsplit,) if nsplit > 1 else ()) + tuple(out_shape), dtype, dev)
    has_bias = bias is not None
    PH, PW = dims[11], dims[12]
    masked = PH < 0 or PW < 0
    if not masked and (PH or PW):  # copy x into a zero-bordered buffer: the kernel then needs no masks
        xp = _pad_input(dev, dtype, x, xs, N, C, H, W, PH, PW)
        H, W = H + 2 * PH, W + 2 * PW
        x, xs = (xp._buf, xp.offset), _contiguous_strides4(xp.shape)
        dims = tuple(dims[:2]) + (H, W) + tuple(dims[4:11]) + (0, 0) + tuple(dims[13:])
    arg_dt = _GEOM_DT + [_i32, _i32] + [None] + [_i32] * 5 + [None, _i32] \
        + ([None, _i32] if has_bias else []) + [None] + [_i32] * 6
    kern = get_kernel(dev, "conv.cl.mako", "conv2d_forward", arg_dtypes=arg_dt, kernel="conv2d_forward",
                      has_bias=has_bias, vw=vw, pbh=pbh, pbw=pbw, masked=masked, **_types(target))
    args = list(dims) + [cs, ocp, x[0], x[1], *xs, wt._buf, wt.offset] \
        + ([bias._buf, bias.offset] if has_bias else []) + [target._buf, target.offset, *ys, m]
    _launch(dev, kern, nsplit * items, *args)
    return _sum_splits(target, nsplit, tuple(out_shape)) if nsplit > 1 else target


def _forward_direct(x, w, b, g):
    shape = (g.N, g.OC, g.OH, g.OW)
    if math.prod(shape) == 0:
        return TensorBase._empty(shape, x.dtype, x.device)
    return _strided_conv(x.device, x.dtype, g.args, (x._buf, x.offset), _contiguous_strides4(x.shape),
                         (w._buf, w.offset), _contiguous_strides4(w.shape), shape, _contiguous_strides4(shape), b)


def _grad_input_direct(gy, w, g):
    dev = gy.device
    shape = (g.N, g.C, g.H, g.W)
    if math.prod(shape) == 0:
        return TensorBase._empty(shape, gy.dtype, dev)
    if (g.SH, g.SW) == (1, 1):
        # a stride-1 convolution of gy with the weights flipped in space and with in/out channels swapped
        dims = (g.N, g.OC, g.OH, g.OW, g.C, g.H, g.W, g.KH, g.KW, 1, 1,
                g.DH * (g.KH - 1) - g.PH, g.DW * (g.KW - 1) - g.PW, g.DH, g.DW)
        w_flip = (w._buf, w.offset + (g.KH - 1) * g.KW + g.KW - 1)
        ws = (g.KH * g.KW, g.C * g.KH * g.KW, -g.KW, -1)
        return _strided_conv(dev, gy.dtype, dims, (gy._buf, gy.offset), _contiguous_strides4(gy.shape),
                             w_flip, ws, shape, _contiguous_strides4(shape))
    gx = TensorBase._empty(shape, gy.dtype, dev)
    kern = get_kernel(dev, "conv.cl.mako", "conv2d_grad_input", arg_dtypes=_GEOM_DT + [None, _i32] * 3,
                      kernel="conv2d_grad_input", **_types(gy))
    _launch(dev, kern, gx.numel(), *g.args, gy._buf, gy.offset, w._buf, w.offset, gx._buf, gx.offset)
    return gx


def _nsplit(dev, items, n):
    """How many batch shares a reduction over the batch is cut into so the device has enough work-items."""
    target = dev.compute_units * dev.profile.elementwise_wg * 4
    return max(1, min(n, -(-target // max(items, 1))))


def _sum_splits(part, nsplit, shape):
    """Sum the leading split axis of `part` (nsplit * prod(shape) elements) into a new tensor of `shape`."""
    if nsplit == 1:
        return part.reshape(shape)
    dev = part.device
    out = TensorBase._empty(shape, part.dtype, dev)
    m = out.numel()
    kern = get_kernel(dev, "conv.cl.mako", "sum_splits", arg_dtypes=[_i32, _i32, None, _i32, None, _i32],
                      kernel="sum_splits", **_types(part))
    _launch(dev, kern, m, m, nsplit, part._buf, part.offset, out._buf, out.offset)
    return out


def _grad_weight_direct(x, gy, g):
    """dW[oc, c, ky, kx] = sum_{n, oh, ow} gy[n, oc, oh, ow] x[n, c, oh*SH - PH + ky*DH, ow*SW - PW + kx*DW]:
    a convolution of x (n and c swapped) with gy as the kernel, stride DH/DW and dilation SH/SW."""
    dev = x.device
    shape = (g.OC, g.C, g.KH, g.KW)
    if g.N == 0 or math.prod(shape) == 0:
        return zeros(shape, dtype=x.dtype, device=dev)
    dims = (g.C, g.N, g.H, g.W, g.OC, g.KH, g.KW, g.OH, g.OW, g.DH, g.DW, g.PH, g.PW, g.SH, g.SW)
    xs = (g.H * g.W, g.C * g.H * g.W, g.W, 1)
    ws = (g.OH * g.OW, g.OC * g.OH * g.OW, g.OW, 1)
    ys = (g.KH * g.KW, g.C * g.KH * g.KW, g.KW, 1)
    # a work-item takes all (up to 4x4) taps of one (c, block of oc): each grad-output vector is used KH*KW times
    block = (g.KH if g.KH <= 4 else 2, g.KW if g.KW <= 4 else 2)
    return _strided_conv(dev, x.dtype, dims, (x._buf, x.offset), xs, (gy._buf, gy.offset), ws, shape, ys,
                         block=block)


def _grad_bias(gy, g):
    dev = gy.device
    if g.N == 0:
        return zeros((g.OC,), dtype=gy.dtype, device=dev)
    nsplit = _nsplit(dev, g.OC, g.N)
    nper = -(-g.N // nsplit)
    nsplit = -(-g.N // nper)
    part = TensorBase._empty((nsplit, g.OC), gy.dtype, dev)
    kern = get_kernel(dev, "conv.cl.mako", "conv2d_grad_bias", arg_dtypes=[_i32] * 5 + [None, _i32] * 2,
                      kernel="conv2d_grad_bias", **_types(gy))
    _launch(dev, kern, nsplit * g.OC, g.N, g.OC, g.OH * g.OW, nper, nsplit, gy._buf, gy.offset,
            part._buf, part.offset)
    return _sum_splits(part, nsplit, (g.OC,))


# --- the im2col + matmul path ----------------------------------------------------------------------
def _im2col(x, g):
    dev = x.device
    cols = TensorBase._empty((g.N, g.K, g.OH * g.OW), x.dtype, dev)
    if cols.numel():
        kern = get_kernel(dev, "conv.cl.mako", "im2col", arg_dtypes=_GEOM_DT + [None, _i32] * 2,
                          kernel="im2col", **_types(x))
        _launch(dev, kern, cols.numel(), *g.args, x._buf, x.offset, cols._buf, cols.offset)
    return cols


def _forward_im2col(x, w, b, g):
    cols = _im2col(x, g)
    w3 = w.reshape(1, g.OC, g.K).expand(g.N, g.OC, g.K)
    y = bmm(w3, cols)  # [N, OC, OH*OW]: already NCHW
    if b is not None:
        y += b.reshape(1, g.OC, 1)
    return y.reshape(g.N, g.OC, g.OH, g.OW)


def _grad_input_im2col(gy, w, g):
    wt = w.reshape(g.OC, g.K).transpose(0, 1).reshape(1, g.K, g.OC).expand(g.N, g.K, g.OC)
    gcols = bmm(wt, gy.reshape(g.N, g.OC, g.OH * g.OW))  # [N, K, OH*OW]
    dev = gy.device
    gx = TensorBase._empty((g.N, g.C, g.H, g.W), gy.dtype, dev)
    if gx.numel():
        kern = get_kernel(dev, "conv.cl.mako", "col2im", arg_dtypes=_GEOM_DT + [None, _i32] * 2,
                          kernel="col2im", **_types(gy))
        _launch(dev, kern, gx.numel(), *g.args, gcols._buf, gcols.offset, gx._buf, gx.offset)
    return gx


def _grad_weight_im2col(x, gy, g):
    cols = _im2col(x, g)
    per_sample = bmm(gy.reshape(g.N, g.OC, g.OH * g.OW), cols.transpose(1, 2))  # [N, OC, K]
    return _sum(per_sample, 0).reshape(g.OC, g.C, g.KH, g.KW)


# --- pooling ---------------------------------------------------------------------------------------
# The pool kernels read and write through element strides: a channels-last input (a permuted view of NHWC
# memory, as clnet.keras passes) is pooled without a copy, and its output and input gradient keep that layout
# (PyTorch's channels_last propagation); any other input gives NCHW-contiguous results. Windows that do not
# overlap (stride >= kernel: the usual 2x2/2) get a scatter backward, one work-item per row of blocks.
def _pool_setup(x, kernel_size, stride, padding, op):
    _check_tensor(x, "input", op)
    x4, unbatched = _batched(x, op)
    k = _pair(kernel_size, "kernel_size", op)
    s = k if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0) \
        else _pair(stride, "stride", op)
    p = _pair(padding, "padding", op, allow_zero=True)
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"{op}: padding {p} must be at most half the kernel size {k}")
    N, C, H, W = x4.shape
    OH = _out_size(H, k[0], s[0], p[0], 1, op, "height")
    OW = _out_size(W, k[1], s[1], p[1], 1, op, "width")
    _check_int_range(op, x4.numel(), N * C * OH * OW)
    geom = [N, C, H, W, OH, OW, k[0], k[1], s[0], s[1], p[0], p[1]]
    return x4, unbatched, geom


def _window(geom, scatter=False):
    """Small windows are unrolled at build time (branch-free code PoCL vectorizes): (kh, kw, sh, sw, padded).
    The scatter backward unrolls the sh x sw block instead."""
    kh, kw, sh, sw, ph, pw = geom[6:12]
    if scatter:
        return (kh, kw, sh, sw, bool(ph or pw)) if sh * sw <= 16 else None
    if kh * kw <= 16 and -(-kh // sh) * -(-kw // sw) <= 16:
        return (kh, kw, sh, sw, bool(ph or pw))
    return None


def _channels_last(t) -> bool:
    """True when t (N, C, H, W) is a permuted view of dense NHWC memory with more than one channel."""
    N, C, H, W = t.shape
    return C > 1 and H * W > 1 and tuple(t.strides) == (H * W * C, 1, W * C, C)


def _pool_empty(shape, dtype, dev, channels_last):
    """A new (N, C, H, W) tensor, NCHW-contiguous or channels-last (dense NHWC memory viewed as NCHW)."""
    if not channels_last:
        return TensorBase._empty(shape, dtype, dev)
    N, C, H, W = shape
    flat = TensorBase._empty((N * H * W * C,), dtype, dev)
    return TensorBase._wrap(flat._buf, shape, dtype, dev, 0, (H * W * C, 1, W * C, C), storage_size=flat.numel())


_POOL_DT = [_i32] * 12


def _pool_forward(kind, x4, geom):
    """y (and idx for max) of the pool `kind` ("max_pool2d" / "avg_pool2d") in x4's layout."""
    N, C, H, W, OH, OW = geom[:6]
    dev, cl_ = x4.device, _channels_last(x4)
    y = _pool_empty((N, C, OH, OW), x4.dtype, dev, cl_)
    is_max = kind == "max_pool2d"
    idx = TensorBase._wrap(dev.pool.allocate(y.numel() * 4), y.shape, _dt.int32, dev, 0, y.strides,
                           storage_size=y.numel()) if is_max else None
    if y.numel():
        name = kind + "_forward"
        kern = get_kernel(dev, "conv.cl.mako", name, arg_dtypes=_POOL_DT + [None] + [_i32] * 5 + [None]
                          + [_i32] * 5 + ([None, _i32] if is_max else []), kernel=name, window=_window(geom),
                          order="nhwc" if cl_ else ("nchw" if x4.strides[3] == 1 else "any"), **_types(x4))
        extra = [idx._buf, idx.offset] if is_max else []
        _launch(dev, kern, N * C * OH, *geom, x4._buf, x4.offset, *x4.strides, y._buf, y.offset, *y.strides,
                     *extra)
    return y, idx


def _pool_backward(kind, x4, geom, gy, idx):
    """The input gradient of the pool `kind` for the output gradient gy (any strides), in x4's layout."""
    N, C, H, W, OH, OW, KH, KW, SH, SW, PH, PW = geom
    dev, cl_ = x4.device, _channels_last(x4)
    gy = gy.detach()
    gx = _pool_empty(x4.shape, x4.dtype, dev, cl_)
    if gx.numel():
        scatter = KH <= SH and KW <= SW
        is_max = kind == "max_pool2d"
        name = kind + "_backward"
        kern = get_kernel(dev, "conv.cl.mako", name, arg_dtypes=_POOL_DT + [None] + [_i32] * 5
                          + ([None] + [_i32] * 5 if is_max else []) + [None] + [_i32] * 5, kernel=name,
                          window=_window(geom, True) if scatter else None, order="nhwc" if cl_ else "nchw",
                          scatter=scatter,
                          **_types(x4))
        rows = N * C * (((H - 1 + PH) // SH + 1) if scatter else H)
        extra = [idx._buf, idx.offset, *idx.strides] if is_max else []
        _launch(dev, kern, rows, *geom, gy._buf, gy.offset, *gy.strides, *extra, gx._buf, gx.offset,
                     *gx.strides)
    return gx


@op("max_pool2d")
def max_pool2d(x, kernel_size, stride=None, padding=0, return_indices=False):
    """Max over kh x kw windows (stride defaults to the kernel size); padding never wins.

    With return_indices=True also returns the int32 index h*W + w of each maximum within its plane.
    """
    x4, unbatched, geom = _pool_setup(x, kernel_size, stride, padding, "max_pool2d")
    y, idx = _pool_forward("max_pool2d", x4, geom)
    if needs_grad(x4):
        record("max_pool2d", y, (x4,), lambda gy: _pool_backward("max_pool2d", x4, geom, gy, idx), saved=(idx,))
    if unbatched:
        y, idx = y.reshape(y.shape[1:]), idx.reshape(idx.shape[1:])
    return (y, idx) if return_indices else y


@op("avg_pool2d")
def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """Mean over kh x kw windows; padded positions count as zeros (PyTorch's count_include_pad=True)."""
    x4, unbatched, geom = _pool_setup(x, kernel_size, stride, padding, "avg_pool2d")
    y, _ = _pool_forward("avg_pool2d", x4, geom)
    if needs_grad(x4):
        record("avg_pool2d", y, (x4,), lambda gy: _pool_backward("avg_pool2d", x4, geom, gy, None))
    return y.reshape(y.shape[1:]) if unbatched else y

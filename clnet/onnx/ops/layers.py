"""ONNX operators of neural-network layers: Gemm/MatMul, Conv, pooling, normalisation, softmax, dropout.

Each maps onto clnet.nn.functional (the same kernels and gradient rules clnet's own layers use); what
clnet's functions do not take directly (asymmetric or SAME padding, ceil_mode, grouped convolutions,
1-D inputs) is rewritten into what they do take, so results equal ONNX's definition.
"""
from __future__ import annotations

import math

import numpy as np

from ... import matmul as _matmul, rsqrt as _rsqrt
from ...nn import functional as F
from .common import all_host, axis, host


# --- linear algebra ---------------------------------------------------------------------------------------
def _matmul_run(ctx, node, a, b):
    if all_host(a, b):
        return np.matmul(a, b)
    return _matmul(ctx.tensor(a), ctx.tensor(b))


def _gemm(ctx, node, a, b, c=None):
    """Y = alpha * A' @ B' + beta * C; nn.Linear's export (transB=1) runs as one fused linear."""
    at = node.attrs
    alpha, beta = at.get("alpha", 1.0), at.get("beta", 1.0)
    trans_a, trans_b = at.get("transA", 0), at.get("transB", 0)
    if all_host(a, b, c):
        y = alpha * np.matmul(a.T if trans_a else a, b.T if trans_b else b)
        return (y + beta * c if c is not None else y).astype(a.dtype)
    a, b = ctx.tensor(a), ctx.tensor(b)
    if trans_a:
        a = a.transpose(0, 1)
    n_out = b.shape[0] if trans_b else b.shape[1]
    if trans_b and alpha == 1.0 and beta == 1.0 and (c is None or tuple(c.shape) == (n_out,)):
        return F.linear(a, b, None if c is None else ctx.tensor(c))
    y = _matmul(a, b.transpose(0, 1) if trans_b else b)
    if alpha != 1.0:
        y = y * alpha
    if c is not None and beta != 0.0:
        c = ctx.tensor(c)
        y = y + (c * beta if beta != 1.0 else c)
    return y


# --- convolution and pooling geometry ---------------------------------------------------------------------
def _spatial_attrs(node, x_shape, kernel):
    """Per spatial axis (kernel, stride, dilation, pad_begin, pad_end), ONNX's auto_pad resolved."""
    n = len(kernel)
    at = node.attrs
    strides = list(at.get("strides") or [1] * n)
    dilations = list(at.get("dilations") or [1] * n)
    pads = list(at.get("pads") or [0] * (2 * n))
    auto = at.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = [0] * (2 * n)
        for i in range(n):
            size = x_shape[2 + i]
            out = -(-size // strides[i])
            total = max((out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - size, 0)
            small = total // 2
            pads[i], pads[n + i] = (small, total - small) if auto == "SAME_UPPER" else (total - small, small)
    elif auto == "VALID":
        pads = [0] * (2 * n)
    elif auto != "NOTSET":
        raise node.unsupported(f"auto_pad={auto!r}")
    return [(kernel[i], strides[i], dilations[i], pads[i], pads[n + i]) for i in range(n)]


def _as_2d(x, node, what):
    """(N, C, L) inputs run as (N, C, 1, L); 2-D spatial inputs as they are."""
    r = len(x.shape)
    if r == 3:
        return x.unsqueeze(2), True
    if r == 4:
        return x, False
    raise node.unsupported(f"{what} over {r - 2} spatial dimensions (clnet has 1-D and 2-D)")


def _pad2d(x, geo, extra=(0, 0), value=0.0):
    """x padded explicitly by the (begin, end) of each axis in geo, plus `extra` at each axis's end."""
    (_, _, _, hb, he), (_, _, _, wb, we) = geo
    amounts = (wb, we + extra[1], hb, he + extra[0])
    return F.pad(x, amounts, value=value) if any(amounts) else x


def _conv(ctx, node, x, w, b=None):
    x, w = ctx.tensor(x), ctx.tensor(w)
    x4, one_d = _as_2d(x, node, "Conv")
    w4 = w.unsqueeze(2) if one_d else w
    groups = node.attrs.get("group", 1)
    if x4.shape[1] != w4.shape[1] * groups:
        raise ValueError(f"{node.where()}: input has {x4.shape[1]} channels, the weight {tuple(w.shape)} with "
                         f"group={groups} expects {w4.shape[1] * groups}")
    kernel = list(node.attrs.get("kernel_shape") or w.shape[2:])
    geo = _spatial_attrs(node, x.shape, kernel)
    if one_d:
        geo = [(1, 1, 1, 0, 0)] + geo
    symmetric = all(g[3] == g[4] for g in geo)
    padding = tuple(g[3] for g in geo) if symmetric else 0
    if not symmetric:
        x4 = _pad2d(x4, geo)
    y = F.conv2d(x4, w4, None if b is None else ctx.tensor(b), stride=tuple(g[1] for g in geo), padding=padding,
                 dilation=tuple(g[2] for g in geo), groups=groups)
    return y.squeeze(2) if one_d else y


def _conv_transpose(ctx, node, x, w, b=None):
    """ConvTranspose: PyTorch's conv_transpose2d when the padding is symmetric, else the unpadded result
    cropped (or extended by output_padding) to ONNX's pads or output_shape."""
    x, w = ctx.tensor(x), ctx.tensor(w)
    x4, one_d = _as_2d(x, node, "ConvTranspose")
    w4 = w.unsqueeze(2) if one_d else w
    at = node.attrs
    n = len(x.shape) - 2
    kernel = list(at.get("kernel_shape") or w.shape[2:])
    strides = list(at.get("strides") or [1] * n)
    dilations = list(at.get("dilations") or [1] * n)
    out_pad = list(at.get("output_padding") or [0] * n)
    pads = list(at.get("pads") or [0] * (2 * n))
    groups = at.get("group", 1)
    full = [(x.shape[2 + i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 for i in range(n)]
    if at.get("output_shape") or at.get("auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER"):
        target = list(at["output_shape"])[-n:] if at.get("output_shape") else \
            [x.shape[2 + i] * strides[i] for i in range(n)]
        for i in range(n):
            total = full[i] + out_pad[i] - target[i]
            small, large = total // 2, total - total // 2
            pads[i], pads[n + i] = (small, large) if at.get("auto_pad") == "SAME_UPPER" else (large, small)
    elif at.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise node.unsupported(f"auto_pad={at.get('auto_pad')!r}")
    if one_d:
        strides, dilations, out_pad, full = [1] + strides, [1] + dilations, [0] + out_pad, [1] + full
        pads = [0, pads[0], 0, pads[1]]
    bias = None if b is None else ctx.tensor(b)
    m = len(strides)
    if all(pads[i] == pads[m + i] and out_pad[i] < max(strides[i], dilations[i]) for i in range(m)):
        y = F.conv_transpose2d(x4, w4, bias, stride=tuple(strides), padding=tuple(pads[:m]),
                               output_padding=tuple(out_pad), groups=groups, dilation=tuple(dilations))
        return y.squeeze(2) if one_d else y
    y = F.conv_transpose2d(x4, w4, None, stride=tuple(strides), padding=0, groups=groups, dilation=tuple(dilations))
    key = [slice(None), slice(None)]
    grow = []
    for i in range(m):
        length = full[i] - pads[i] - pads[m + i] + out_pad[i]
        grow += [0, max(0, pads[i] + length - full[i])]
        key.append(slice(pads[i], pads[i] + length))
    if any(grow):
        y = F.pad(y, tuple(grow[2:] + grow[:2]) if m == 2 else tuple(grow))
    y = y[tuple(key)]
    if bias is not None:
        y = y + bias.reshape(1, -1, 1, 1)
    return y.squeeze(2) if one_d else y


def _ceil_extra(size, k, s, d, pb, pe):
    """How far ceil_mode reaches past the end padding (PyTorch's and ONNX's rule: the last window starts inside
    the input or its begin padding)."""
    span = (k - 1) * d + 1
    out = -(-(size + pb + pe - span) // s) + 1
    if (out - 1) * s >= size + pb:
        out -= 1
    return max((out - 1) * s + span - (size + pb + pe), 0)


def _pool_geometry(ctx, node, x):
    x4, one_d = _as_2d(x, node, node.op_type)
    kernel = list(node.attrs["kernel_shape"])
    geo = _spatial_attrs(node, x.shape, kernel)
    if one_d:
        geo = [(1, 1, 1, 0, 0)] + geo
    if any(g[2] != 1 for g in geo):
        raise node.unsupported("pooling with dilations other than 1")
    ceil = node.attrs.get("ceil_mode", 0)
    extra = tuple(_ceil_extra(x4.shape[2 + i], *geo[i][:2], 1, geo[i][3], geo[i][4]) if ceil else 0
                  for i in range(2))
    return x4, one_d, geo, extra


def _simple(geo, extra):
    """Whether clnet's pool can take the padding as it is (symmetric, at most half the kernel, no ceil extra)."""
    return not any(extra) and all(g[3] == g[4] and g[3] <= g[0] // 2 for g in geo)


def _max_pool(ctx, node, x):
    if node.wants(1):
        raise node.unsupported("MaxPool's Indices output")
    x4, one_d, geo, extra = _pool_geometry(ctx, node, ctx.tensor(x))
    kernel, stride = tuple(g[0] for g in geo), tuple(g[1] for g in geo)
    if _simple(geo, extra):
        y = F.max_pool2d(x4, kernel, stride, tuple(g[3] for g in geo))
    else:
        y = F.max_pool2d(_pad2d(x4, geo, extra, value=-math.inf), kernel, stride, 0)
    return y.squeeze(2) if one_d else y


def _window_counts(shape, geo, extra, include_pad):
    """The number of counted positions in each pooling window (host, shape (1, 1, OH, OW))."""
    mask = np.ones(shape, np.float32)
    widths = [(g[3], g[4]) for g in geo]
    mask = np.pad(mask, widths, constant_values=1.0 if include_pad else 0.0)
    mask = np.pad(mask, [(0, e) for e in extra])
    windows = np.lib.stride_tricks.sliding_window_view(mask, (geo[0][0], geo[1][0]))
    return windows[::geo[0][1], ::geo[1][1]].sum(axis=(-1, -2))[None, None]


def _average_pool(ctx, node, x):
    x = ctx.tensor(x)
    x4, one_d, geo, extra = _pool_geometry(ctx, node, x)
    kernel, stride = tuple(g[0] for g in geo), tuple(g[1] for g in geo)
    include_pad = node.attrs.get("count_include_pad", 0)
    no_pads = not any(extra) and not any(g[3] or g[4] for g in geo)
    if no_pads or (include_pad and _simple(geo, extra)):
        y = F.avg_pool2d(x4, kernel, stride, tuple(g[3] for g in geo))
    else:  # the windows' sums over the padded input, divided by how many positions each window counts
        sums = F.avg_pool2d(_pad2d(x4, geo, extra), kernel, stride, 0)
        counts = _window_counts(tuple(x4.shape[2:]), geo, extra, include_pad)
        y = sums * ctx.tensor((kernel[0] * kernel[1] / counts).astype(np.dtype(x.dtype)))
    return y.squeeze(2) if one_d else y


def _global_average_pool(ctx, node, x):
    return x.mean(tuple(range(2, len(x.shape))), keepdim=True)


def _global_max_pool(ctx, node, x):
    return x.amax(tuple(range(2, len(x.shape))), keepdim=True)


# --- normalisation ---------------------------------------------------------------------------------------
def _batch_norm(ctx, node, x, scale, bias, mean, var):
    """Running statistics in eval mode; batch statistics (updating the running ones in place) in train mode,
    as PyTorch's BatchNorm. ONNX's momentum weighs the old running value: PyTorch's momentum is 1 - it."""
    eps = node.attrs.get("epsilon", 1e-5)
    momentum = 1.0 - node.attrs.get("momentum", 0.9)
    mean, var = ctx.tensor(mean), ctx.tensor(var)
    y = F.batch_norm(ctx.tensor(x), mean, var, ctx.tensor(scale), ctx.tensor(bias), training=ctx.training,
                     momentum=momentum, eps=eps)
    return (y, mean, var)[:max(1, len(node.outputs))]


def _normalize(x, dims, eps):
    mean = x.mean(dims, keepdim=True)
    centred = x - mean
    inv = _rsqrt((centred * centred).mean(dims, keepdim=True) + eps)
    return centred * inv, mean, inv


def _layer_norm(ctx, node, x, scale, bias=None):
    """clnet's fused layer norm over the axes from `axis` on (the composition when Mean/InvStdDev are asked)."""
    x = ctx.tensor(x)
    r = len(x.shape)
    a = axis(node.attrs.get("axis", -1), r, node)
    eps = node.attrs.get("epsilon", 1e-5)
    normalized = tuple(x.shape[a:])
    scale = ctx.tensor(scale)
    if not node.wants(1) and not node.wants(2) and tuple(scale.shape) == normalized and \
            (bias is None or tuple(bias.shape) == normalized):
        return F.layer_norm(x, normalized, scale, None if bias is None else ctx.tensor(bias), eps)
    y, mean, inv = _normalize(x, tuple(range(a, r)), eps)
    y = y * scale
    if bias is not None:
        y = y + ctx.tensor(bias)
    return (y, mean, inv)[:max(1, len(node.outputs))]


def _instance_norm(ctx, node, x, scale, bias):
    return F.instance_norm(ctx.tensor(x), weight=ctx.tensor(scale), bias=ctx.tensor(bias),
                           eps=node.attrs.get("epsilon", 1e-5))


def _group_norm(ctx, node, x, scale, bias):
    """GroupNormalization: opset 21's per-channel scale and bias, or opset 18's per group (repeated over
    each group's channels)."""
    x = ctx.tensor(x)
    groups, channels = node.attrs["num_groups"], x.shape[1]
    scale, bias = ctx.tensor(scale), ctx.tensor(bias)
    if scale.shape[0] == groups and groups != channels:
        per = channels // groups
        scale = scale.reshape(groups, 1).expand(groups, per).reshape(channels)
        bias = bias.reshape(groups, 1).expand(groups, per).reshape(channels)
    return F.group_norm(x, groups, scale, bias, node.attrs.get("epsilon", 1e-5))


# --- softmax and dropout --------------------------------------------------------------------------------------
def _softmax_family(fn):
    def run(ctx, node, x):
        x = ctx.tensor(x)
        r = len(x.shape)
        if ctx.opset >= 13:
            return fn(x, axis(node.attrs.get("axis", -1), r, node))
        a = axis(node.attrs.get("axis", 1), r, node)  # before opset 13: over all dims from axis on, flattened
        if a == r - 1:
            return fn(x, a)
        flat = x.reshape(math.prod(x.shape[:a]), math.prod(x.shape[a:]))
        return fn(flat, 1).reshape(tuple(x.shape))
    return run


def _dropout(ctx, node, x, ratio=None, training_mode=None):
    """Identity in eval mode, dropout in train mode (the module's mode decides, as for clnet.nn.Dropout)."""
    p = node.attrs.get("ratio", 0.5) if ctx.opset < 12 else (0.5 if ratio is None else float(host(ratio).item()))
    if not ctx.training or p == 0.0:
        y = x
        mask = np.ones(tuple(x.shape), dtype=np.bool_)
    else:
        if node.wants(1):
            raise node.unsupported("Dropout's mask output in train mode")
        y, mask = F.dropout(ctx.tensor(x), p, training=True), None
    return (y, mask) if node.wants(1) else y


OPS = {
    "MatMul": _matmul_run,
    "Gemm": _gemm,
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "MaxPool": _max_pool,
    "AveragePool": _average_pool,
    "GlobalAveragePool": _global_average_pool,
    "GlobalMaxPool": _global_max_pool,
    "BatchNormalization": _batch_norm,
    "LayerNormalization": _layer_norm,
    "InstanceNormalization": _instance_norm,
    "GroupNormalization": _group_norm,
    "Softmax": _softmax_family(F.softmax),
    "LogSoftmax": _softmax_family(F.log_softmax),
    "Dropout": _dropout,
}

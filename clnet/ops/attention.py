"""Scaled dot-product attention: the fused kernel family of kernels/attention.cl.mako, and the explicit
path (scores, softmax, dropout, weights @ v) for what the fused kernels do not cover.

    out = scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False)

The fused path (`fused_attention`) never builds the (L, S) score matrix: one kernel runs the forward with
an online softmax and keeps each query row's log-sum-exp; the backward is two kernels (dq per query row,
then dk and dv per key row, no atomics). scaled_dot_product_attention takes it when there is no dropout,
the mask (if any) needs no gradient, the head sizes fit the kernels' private arrays (MAX_HEAD), and the
device is not a CPU with scores small enough for the explicit path (see CPU_EXPLICIT_BYTES). The explicit
path (`attention_with_weights`) also returns the attention weights, which
nn.MultiheadAttention(need_weights=True) hands back.
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
from . import elementwise as _ew
from .broadcast import expand
from .creation import arange
from .matmul import matmul
from .movement import contiguous, reshape, transpose
from .nn import _acc_dtype, softmax
from .random import dropout_mask
from .reduce import any as any_
from .shapes import broadcast_shapes

MAX_HEAD = 256      # the largest head size the fused kernels hold in private arrays
_INT_MAX = 2**31 - 1
_i32 = np.int32


def _check(x, what):
    if not isinstance(x, TensorBase):
        raise TypeError(f"scaled_dot_product_attention: {what} must be a clnet Tensor, got {type(x).__name__}")
    if not _dt.is_floating(x.dtype):
        raise TypeError(f"scaled_dot_product_attention: {what} must be floating point, got {x.dtype.name}")
    if x.ndim < 2:
        raise ValueError(f"scaled_dot_product_attention: {what} must be (..., length, features), got shape "
                         f"{tuple(x.shape)}")


def _batch_shape(q, k, v):
    try:
        return broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except ValueError:
        raise ValueError(f"scaled_dot_product_attention: the batch dimensions of query {tuple(q.shape)}, key "
                         f"{tuple(k.shape)} and value {tuple(v.shape)} do not broadcast") from None


def _additive_mask(mask, like: TensorBase, L: int, S: int):
    """A float mask (added to the scores) from a bool mask (True = take part) or a float one."""
    if not isinstance(mask, TensorBase):
        raise TypeError(f"scaled_dot_product_attention: attn_mask must be a clnet Tensor, got {type(mask).__name__}")
    if mask.device is not like.device:
        raise ValueError(f"scaled_dot_product_attention: attn_mask is on {mask.device}, the query on {like.device}")
    try:
        broadcast_shapes(mask.shape, (L, S))
    except ValueError:
        raise ValueError(f"scaled_dot_product_attention: attn_mask of shape {tuple(mask.shape)} does not broadcast "
                         f"to the scores' (L, S) = ({L}, {S})") from None
    if mask.dtype == _dt.bool_:
        return _ew.launch("(v0 ? 0 : -INFINITY)", [mask], like.dtype, like.dtype)
    if not _dt.is_floating(mask.dtype):
        raise TypeError(f"scaled_dot_product_attention: attn_mask must be bool or floating point, got "
                        f"{mask.dtype.name}")
    return mask if mask.dtype == like.dtype else _ew.cast(mask, like.dtype)


def _causal_mask(L, S, like):
    """0 on and below the diagonal (key j <= query i), -inf above: PyTorch's is_causal."""
    i = reshape(arange(L, dtype=_dt.int32, device=like.device), (L, 1))
    j = arange(S, dtype=_dt.int32, device=like.device)
    return _ew.launch("(v1 <= v0 ? 0 : -INFINITY)", [i, j], like.dtype, like.dtype)


def _mask_strides(mask: TensorBase, batch: tuple, L: int, S: int):
    """(mask, NB2, mb1, mb2, mi, mj): the mask broadcast to batch + (L, S) addressed by (b1, b2, i, j) with
    bh = b1 * NB2 + b2 (b2 the last batch dimension). A mask whose leading batch dims cannot be seen as one
    stride is copied out to that shape first."""
    try:
        full = expand(mask, batch + (L, S))
    except (ValueError, RuntimeError):
        raise ValueError(f"scaled_dot_product_attention: attn_mask of shape {tuple(mask.shape)} does not broadcast "
                         f"to the scores' shape {batch + (L, S)}") from None
    st = list(full.strides)
    nb2 = batch[-1] if batch else 1
    mb2 = st[len(batch) - 1] if batch else 0
    lead = [(s, stv) for s, stv in zip(batch[:-1], st[:len(batch) - 1]) if s > 1]
    ok = all(outer[1] == inner[1] * inner[0] for outer, inner in zip(lead, lead[1:]))
    if not ok:
        full = contiguous(full)
        st = list(full.strides)
        mb2 = st[len(batch) - 1]
        lead = [(s, stv) for s, stv in zip(batch[:-1], st[:len(batch) - 1]) if s > 1]
    mb1 = lead[-1][1] if lead else 0
    return full, nb2, mb1, mb2, st[-2], st[-1]


def _as3(x: TensorBase, batch: tuple) -> TensorBase:
    """x broadcast to batch + its last two dims, seen as (prod(batch), n, d), contiguous (recorded)."""
    if tuple(x.shape[:-2]) != tuple(batch):
        x = expand(x, batch + tuple(x.shape[-2:]))
    x = reshape(x, (math.prod(batch),) + tuple(x.shape[-2:]))
    return x if x.is_contiguous() else contiguous(x)


def _fused(q3, k3, v3, mask_info, causal, scale):
    dev, dtype = q3.device, q3.dtype
    BH, L, E = q3.shape
    S, EV = k3.shape[1], v3.shape[2]
    acc = np.dtype(_acc_dtype(dtype))
    out = TensorBase._empty((BH, L, EV), dtype, dev)
    lse = TensorBase._empty((BH, L), acc, dev)
    if out.numel() == 0:
        return out
    masked = mask_info is not None
    m_args, m_types = [], []
    if masked:
        m, nb2, mb1, mb2, mi, mj = mask_info
        m_args = [m._buf, m.offset, nb2, mb1, mb2, mi, mj]
        m_types = [None] + [_i32] * 6
    params = dict(t=ctype(dtype), acc=ctype(acc), E=E, EV=EV, causal=causal, masked=masked)
    head = [_i32, _i32, _i32, acc] + [None, _i32] * 3
    kern = get_kernel(dev, "attention.cl.mako", "attention_forward", arg_dtypes=head + m_types + [None, None],
                      kernel="forward", **params)
    qkv = [q3._buf, q3.offset, k3._buf, k3.offset, v3._buf, v3.offset]
    _launch(dev, kern, BH * L, BH, L, S, scale, *qkv, *m_args, out._buf, lse._buf)
    if needs_grad(q3, k3, v3):
        od = out.detach()

        def backward(g):
            gc = contiguous(g if g.dtype == dtype else _ew.cast(g, dtype))
            dq = TensorBase._empty(q3.shape, dtype, dev)
            dk = TensorBase._empty(k3.shape, dtype, dev)
            dv = TensorBase._empty(v3.shape, dtype, dev)
            D = TensorBase._empty((BH, L), acc, dev)
            kq = get_kernel(dev, "attention.cl.mako", "attention_backward_dq",
                            arg_dtypes=head + m_types + [None, _i32, None, _i32, None, None, None],
                            kernel="backward_dq", **params)
            _launch(dev, kq, BH * L, BH, L, S, scale, *qkv, *m_args, od._buf, od.offset, gc._buf, gc.offset,
                    lse._buf, D._buf, dq._buf)
            kkv = get_kernel(dev, "attention.cl.mako", "attention_backward_dkv",
                             arg_dtypes=head + m_types + [None, _i32, None, None, None, None],
                             kernel="backward_dkv", **params)
            _launch(dev, kkv, BH * S, BH, L, S, scale, *qkv, *m_args, gc._buf, gc.offset, lse._buf, D._buf,
                    dk._buf, dv._buf)
            return (dq if q3.requires_grad else None, dk if k3.requires_grad else None,
                    dv if v3.requires_grad else None)
        record("scaled_dot_product_attention", out, (q3, k3, v3), backward, saved=(q3, k3, v3, od))
    return out


def _launch(dev, kern, n, *args):
    wg = dev.profile.elementwise_wg
    dispatch.launch(dev, kern, (max(1, -(-n // wg)) * wg,), (wg,), list(args))


@op("attention_with_weights")
def attention_with_weights(query, key, value, mask=None, dropout_p=0.0, is_causal=False, scale=None):
    """The explicit path: (out, weights) with weights = dropout(softmax(scale * q k^T + mask)) of shape
    (..., L, S). Rows every key is masked out of get zero weights, as in the fused path."""
    L, S = query.shape[-2], key.shape[-2]
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else float(scale)
    raw = matmul(query, transpose(key, -2, -1))
    if is_causal and mask is None and S > 0:
        # every query row sees key 0, so no row is masked out (no `keep` factor below), and one pass scales
        # the scores and adds the causal mask (the dtype's lowest finite value above the diagonal)
        low = float(np.finfo(np.dtype(query.dtype)).min)
        i = reshape(arange(L, dtype=_dt.int32, device=query.device), (L, 1))
        j = arange(S, dtype=_dt.int32, device=query.device)
        bias = _ew.launch("(v1 <= v0 ? 0 : v2)", [i, j, low], query.dtype, query.dtype)
        scaled = _ew.pointwise("attention_scores", "v0 * v2 + v1", [raw, bias, scale], {0: "v3 * v2"}, query.dtype)
        weights = softmax(scaled, -1)
        if dropout_p > 0:
            weights = _ew.mul(weights, dropout_mask(weights.shape, float(dropout_p), device=weights.device,
                                                    dtype=weights.dtype))
        return matmul(weights, value), weights
    scores = _ew.mul(raw, scale)
    additive = None
    if is_causal:
        additive = _causal_mask(L, S, query)
    if mask is not None:
        m = _additive_mask(mask, query, L, S)
        additive = m if additive is None else _ew.add(additive, m)
    if additive is None:
        weights = softmax(scores, -1)
    else:
        # -inf becomes the dtype's lowest finite value, so a row every key is masked out of has no NaN (in
        # the weights or their gradient); such rows are then zeroed by `keep` (0 or 1 per query row)
        low = float(np.finfo(np.dtype(query.dtype)).min)
        masked_out = _ew.launch("v0 == -INFINITY", [additive.detach()], _dt.bool_, additive.dtype)
        finite = _ew.where(masked_out, low, additive)
        keep = any_(_ew.logical_not(masked_out), -1, keepdim=True)
        weights = _ew.mul(softmax(_ew.add(scores, finite), -1), _ew.cast(keep, query.dtype))
    if dropout_p > 0:
        keep = dropout_mask(weights.shape, float(dropout_p), device=weights.device, dtype=weights.dtype)
        weights = _ew.mul(weights, keep)
    return matmul(weights, value), weights


def _check_qkv(query, key, value) -> None:
    for what, x in (("query", query), ("key", key), ("value", value)):
        _check(x, what)
    if not (query.device is key.device is value.device):
        raise ValueError("scaled_dot_product_attention: query, key and value must be on one device, got "
                         f"{query.device}, {key.device}, {value.device}")
    if not (query.dtype == key.dtype == value.dtype):
        raise TypeError("scaled_dot_product_attention: query, key and value must have one dtype, got "
                        f"{query.dtype.name}, {key.dtype.name}, {value.dtype.name}")
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(f"scaled_dot_product_attention: query {tuple(query.shape)} and key {tuple(key.shape)} "
                         "must have the same last dimension")
    if key.shape[-2] != value.shape[-2]:
        raise ValueError(f"scaled_dot_product_attention: key {tuple(key.shape)} and value {tuple(value.shape)} "
                         "must have the same length (dimension -2)")


@op("scaled_dot_product_attention")
def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale=None, enable_gqa: bool = False) -> TensorBase:
    """softmax(query key^T * scale + attn_mask) value over the last two dimensions (PyTorch's
    F.scaled_dot_product_attention): query (..., L, E), key (..., S, E), value (..., S, Ev) -> (..., L, Ev).

    attn_mask: bool (True = take part) or float (added to the scores), broadcastable to (..., L, S);
    is_causal: query i sees keys j <= i (then attn_mask must be None); scale defaults to 1 / sqrt(E);
    enable_gqa: key/value with fewer heads (dim -3) than the query are shared by groups of query heads.
    """
    _check_qkv(query, key, value)
    if is_causal and attn_mask is not None:
        raise ValueError("scaled_dot_product_attention: explicit attn_mask should not be set when is_causal=True")
    if not 0.0 <= float(dropout_p) <= 1.0:
        raise ValueError(f"scaled_dot_product_attention: dropout_p must be in [0, 1], got {dropout_p}")
    if enable_gqa and query.ndim >= 3 and key.shape[-3] != query.shape[-3]:
        hq, hk = query.shape[-3], key.shape[-3]
        if hq % hk or value.shape[-3] != hk:
            raise ValueError(f"scaled_dot_product_attention: with enable_gqa the query heads ({hq}) must be a "
                             f"multiple of the key/value heads ({hk})")
        key, value = _repeat_heads(key, hq // hk), _repeat_heads(value, hq // hk)
    L, E = query.shape[-2:]
    S, EV = value.shape[-2:]
    scale = 1.0 / math.sqrt(E) if scale is None else float(scale)
    batch = _batch_shape(query, key, value)
    if not _fused_pays(query.device, query.dtype, attn_mask, dropout_p, math.prod(batch), L, S, E, EV):
        return attention_with_weights(query, key, value, attn_mask, dropout_p, is_causal, scale)[0]
    return fused_attention(query, key, value, attn_mask, is_causal, scale)


# The explicit path on CPUs while its score matrix stays under this many bytes: there its matmuls run at
# GEMM speed and the fused kernels' one-query-row-per-work-item loops are not vectorized by PoCL.
# Measured on PoCL 3.1 (benchmarks/bench_nn_layers.py, AMD EPYC, loaded machine): 8x8x256x64 causal
# forward 1.66 s fused vs 0.91 s explicit, forward + backward 5.8 s vs 1.8 s; 4x12x128x64: 0.61 vs 0.09 s.
CPU_EXPLICIT_BYTES = 256 * 2**20


def _fused_pays(device, dtype, attn_mask, dropout_p, BH, L, S, E, EV) -> bool:
    """Whether the fused kernels take this call (else the explicit path): they cannot do dropout, a mask
    that needs a gradient, heads over MAX_HEAD, or 32-bit index overflow; CPUs prefer the explicit path
    while its scores fit CPU_EXPLICIT_BYTES."""
    if dropout_p > 0 or (isinstance(attn_mask, TensorBase) and needs_grad(attn_mask)):
        return False
    if max(E, EV) > MAX_HEAD or E == 0 or BH * max(L, S) * max(E, EV) > _INT_MAX:
        return False
    if device.type == "cpu" and BH * L * S * np.dtype(dtype).itemsize <= CPU_EXPLICIT_BYTES:
        return False
    return True


@op("fused_attention")
def fused_attention(query, key, value, attn_mask=None, is_causal: bool = False, scale=None) -> TensorBase:
    """scaled_dot_product_attention on the fused kernels whatever the device (no dropout; a mask that needs
    no gradient; heads up to MAX_HEAD values); scaled_dot_product_attention picks it where it pays."""
    _check_qkv(query, key, value)
    if is_causal and attn_mask is not None:
        raise ValueError("fused_attention: explicit attn_mask should not be set when is_causal=True")
    L, E = query.shape[-2:]
    S, EV = value.shape[-2:]
    scale = 1.0 / math.sqrt(E) if scale is None else float(scale)
    if max(E, EV) > MAX_HEAD:
        raise ValueError(f"fused_attention: heads of {max(E, EV)} values exceed the kernels' {MAX_HEAD}")
    batch = _batch_shape(query, key, value)
    mask_info = None
    if attn_mask is not None:
        mask_info = _mask_strides(_additive_mask(attn_mask, query, L, S).detach(), batch, L, S)
    q3, k3, v3 = (_as3(x, batch) for x in (query, key, value))
    out = _fused(q3, k3, v3, mask_info, bool(is_causal), scale)
    return reshape(out, batch + (L, EV))


def _repeat_heads(x, n):
    """(..., Hk, S, E) -> (..., Hk * n, S, E), each head repeated n times in a row (repeat_interleave)."""
    shape = tuple(x.shape)
    y = expand(reshape(x, shape[:-3] + (shape[-3], 1) + shape[-2:]), shape[:-3] + (shape[-3], n) + shape[-2:])
    return reshape(y, shape[:-3] + (shape[-3] * n,) + shape[-2:])


__all__ = ["scaled_dot_product_attention", "fused_attention", "attention_with_weights", "MAX_HEAD"]

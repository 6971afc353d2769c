"""Attention: F.scaled_dot_product_attention (the fused kernels of clnet.ops.attention) and
F.multi_head_attention_forward, the math of nn.MultiheadAttention (PyTorch's signature and masks)."""
from __future__ import annotations

from ... import dtypes as _dt
from ...core.dispatch import op
from ...ops import broadcast as _bc
from ...ops import elementwise as _ew
from ...ops import movement as _mv
from ...ops import reduce as _red
from ...ops.attention import attention_with_weights, scaled_dot_product_attention
from ...ops.creation import zeros
from ...ops.matmul import linear as _linear
from ...tensor import Tensor


def _float_mask(mask, like, what):
    """A mask where True (or a float's -inf) means "may not attend", as MultiheadAttention reads its masks,
    made additive (0 or -inf; a float mask is added as it is)."""
    if mask is None:
        return None
    if not isinstance(mask, Tensor):
        raise TypeError(f"multi_head_attention_forward: {what} must be a clnet Tensor, got {type(mask).__name__}")
    if mask.dtype == _dt.bool_:
        return _ew.launch("(v0 ? -INFINITY : 0)", [mask], like.dtype, like.dtype)
    if _dt.is_floating(mask.dtype):
        return mask if mask.dtype == like.dtype else mask.to(dtype=like.dtype)
    raise TypeError(f"multi_head_attention_forward: only bool and floating types of {what} are supported, "
                    f"got {mask.dtype.name}")


def _project(query, key, value, E, in_proj_weight, in_proj_bias, separate, q_w, k_w, v_w):
    def part(i):
        return (_mv.narrow(in_proj_bias, 0, i * E, E) if in_proj_bias is not None else None)
    if separate:
        return (_linear(query, q_w, part(0)), _linear(key, k_w, part(1)), _linear(value, v_w, part(2)))
    if query is key and key is value:  # self-attention: one matmul for q, k and v
        return _mv.chunk(_linear(query, in_proj_weight, in_proj_bias), 3, -1)
    w = [_mv.narrow(in_proj_weight, 0, i * E, E) for i in range(3)]
    if key is value:
        kv_b = _mv.narrow(in_proj_bias, 0, E, 2 * E) if in_proj_bias is not None else None
        k, v = _mv.chunk(_linear(key, _mv.narrow(in_proj_weight, 0, E, 2 * E), kv_b), 2, -1)
        return _linear(query, w[0], part(0)), k, v
    return _linear(query, w[0], part(0)), _linear(key, w[1], part(1)), _linear(value, w[2], part(2))


@op("multi_head_attention_forward")
def multi_head_attention_forward(query, key, value, embed_dim_to_check, num_heads, in_proj_weight, in_proj_bias,
                                 bias_k, bias_v, add_zero_attn, dropout_p, out_proj_weight, out_proj_bias,
                                 training=True, key_padding_mask=None, need_weights=True, attn_mask=None,
                                 use_separate_proj_weight=False, q_proj_weight=None, k_proj_weight=None,
                                 v_proj_weight=None, static_k=None, static_v=None, average_attn_weights=True,
                                 is_causal=False):
    """Multi-head attention over time-major inputs: query (L, N, E) or (L, E), key/value (S, N, E_k/E_v).

    Returns (output (L, N, E), weights) with weights (N, L, S) averaged over heads (or (N, heads, L, S))
    when need_weights, else None. key_padding_mask (N, S) and attn_mask (L, S) or (N * heads, L, S): True
    (bool) marks what may NOT be attended to; float masks are added to the scores.
    """
    if static_k is not None or static_v is not None:
        raise NotImplementedError("multi_head_attention_forward: static_k / static_v are not supported")
    unbatched = query.ndim == 2
    if unbatched:
        query, key, value = (_mv.unsqueeze(t, 1) for t in (query, key, value))
        if key_padding_mask is not None:
            key_padding_mask = _mv.unsqueeze(key_padding_mask, 0)
    if query.ndim != 3:
        raise ValueError(f"multi_head_attention_forward: query must be (L, N, E) or (L, E), got {tuple(query.shape)}")
    L, N, E = query.shape
    S = key.shape[0]
    if E != embed_dim_to_check:
        raise ValueError(f"multi_head_attention_forward: was expecting embedding dimension of {embed_dim_to_check}, "
                         f"but got {E}")
    if E % num_heads:
        raise ValueError(f"multi_head_attention_forward: embed_dim {E} not divisible by num_heads {num_heads}")
    if key.shape[:2] != value.shape[:2] or key.shape[1] != N:
        raise ValueError(f"multi_head_attention_forward: key {tuple(key.shape)} and value {tuple(value.shape)} "
                         f"must be (S, N={N}, ...) with the same S")
    H, hd = num_heads, E // num_heads
    q, k, v = _project(query, key, value, E, in_proj_weight, in_proj_bias, use_separate_proj_weight,
                       q_proj_weight, k_proj_weight, v_proj_weight)

    mask = _float_mask(attn_mask, q, "attn_mask")
    if mask is not None:
        if mask.ndim == 2:
            if tuple(mask.shape) != (L, S):
                raise ValueError(f"multi_head_attention_forward: the shape of the 2D attn_mask is "
                                 f"{tuple(mask.shape)}, but should be {(L, S)}")
            mask = _mv.reshape(mask, (1, 1, L, S))
        elif mask.ndim == 3:
            if tuple(mask.shape) != (N * H, L, S):
                raise ValueError(f"multi_head_attention_forward: the shape of the 3D attn_mask is "
                                 f"{tuple(mask.shape)}, but should be {(N * H, L, S)}")
            mask = _mv.reshape(mask, (N, H, L, S))
        else:
            raise ValueError(f"multi_head_attention_forward: attn_mask's dimension {mask.ndim} is not supported")
    kpm = _float_mask(key_padding_mask, q, "key_padding_mask")
    if kpm is not None:
        if tuple(kpm.shape) != (N, S):
            raise ValueError(f"multi_head_attention_forward: expecting key_padding_mask shape of {(N, S)}, but got "
                             f"{tuple(kpm.shape)}")
        kpm = _mv.reshape(kpm, (N, 1, 1, S))

    if bias_k is not None and bias_v is not None:
        k = _mv.concat([k, _bc.expand(_mv.reshape(bias_k, (1, 1, E)), (1, N, E))], 0)
        v = _mv.concat([v, _bc.expand(_mv.reshape(bias_v, (1, 1, E)), (1, N, E))], 0)
        mask = _mv.pad(mask, (0, 1)) if mask is not None else None
        kpm = _mv.pad(kpm, (0, 1)) if kpm is not None else None
    elif (bias_k is None) != (bias_v is None):
        raise ValueError("multi_head_attention_forward: bias_k and bias_v must both be given or both be None")

    # (T, N, H * hd) -> (N, H, T, hd)
    q = _mv.permute(_mv.reshape(q, (L, N, H, hd)), (1, 2, 0, 3))
    k = _mv.permute(_mv.reshape(k, (k.shape[0], N, H, hd)), (1, 2, 0, 3))
    v = _mv.permute(_mv.reshape(v, (v.shape[0], N, H, hd)), (1, 2, 0, 3))
    if add_zero_attn:
        k = _mv.concat([k, zeros((N, H, 1, hd), dtype=k.dtype, device=k.device)], 2)
        v = _mv.concat([v, zeros((N, H, 1, hd), dtype=v.dtype, device=v.device)], 2)
        mask = _mv.pad(mask, (0, 1)) if mask is not None else None
        kpm = _mv.pad(kpm, (0, 1)) if kpm is not None else None
    merged = mask if kpm is None else (kpm if mask is None else mask + kpm)
    p = float(dropout_p) if training else 0.0
    causal = bool(is_causal) and merged is None
    if need_weights:
        out, weights = attention_with_weights(q, k, v, merged, p, causal)
        if average_attn_weights:
            weights = _red.mean(weights, 1)
    else:
        out, weights = scaled_dot_product_attention(q, k, v, merged, p, causal), None
    out = _mv.reshape(_mv.permute(out, (2, 0, 1, 3)), (L, N, E))
    out = _linear(out, out_proj_weight, out_proj_bias)
    if unbatched:
        out = _mv.squeeze(out, 1)
        if weights is not None:
            weights = _mv.squeeze(weights, 0)
    return out, weights


__all__ = ["scaled_dot_product_attention", "multi_head_attention_forward"]

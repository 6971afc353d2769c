"""Attention layers: MultiHeadAttention (Keras's per-head projection weights, masks and outputs) over
clnet.nn.functional.scaled_dot_product_attention, and Attention (Luong dot-product attention).

Masks are Keras's: boolean, True where a position takes part; the query's, value's and key's Keras masks
(from Embedding(mask_zero=True), Masking, ...) join `attention_mask` and the causal mask. In
MultiHeadAttention masked positions get zero weight, and a query that sees no key at all gets zero
weights (Keras's masked Softmax; clnet's scaled_dot_product_attention does the same with a boolean mask).
Attention instead subtracts 1e9 from masked scores, as Keras's does (such a query averages every value).
"""
from __future__ import annotations

import math

import numpy as np

import clnet
from clnet.nn import functional as F

from .. import constraints, initializers, regularizers
from ..ops.symbolic import KerasTensor
from .base import Layer, _shape_tuple

_LARGE_NEGATIVE = -1e9


def _bool(mask, like):
    if mask is None:
        return None
    if not isinstance(mask, clnet.Tensor):
        mask = clnet.tensor(np.asarray(mask), device=like.device)
    return mask if mask.dtype == clnet.bool else mask != 0


def _and(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return clnet.logical_and(a, b)


def _causal(q_len, v_len, device):
    """(1, Tq, Tv): query i sees keys j <= i."""
    return clnet.tensor(np.tril(np.ones((q_len, v_len), dtype=bool))[None], device=device)


class _Projection(Layer):
    """x (batch, steps, dim) -> (batch, steps, *out): Keras's EinsumDense of MultiHeadAttention, kernel
    (dim, *out) for the q/k/v projections, or (heads, head_dim, *out) for the output one."""

    def __init__(self, in_dims, out_dims, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                 bias_regularizer, kernel_constraint, bias_constraint, **kwargs):
        super().__init__(**kwargs)
        self.in_dims, self.out_dims, self.use_bias = tuple(in_dims), tuple(out_dims), use_bias
        self._init = (kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer, kernel_constraint,
                      bias_constraint)

    def build(self, input_shape=None):
        ki, bi, kr, br, kc, bc = self._init
        self.kernel = self.add_weight(self.in_dims + self.out_dims, ki, regularizer=kr, constraint=kc,
                                      name="kernel")
        self.bias = self.add_weight(self.out_dims, bi, regularizer=br, constraint=bc, name="bias") \
            if self.use_bias else None
        self.built = True

    def call(self, x):
        n_in = len(self.in_dims)
        lead = tuple(x.shape[:x.ndim - n_in])
        flat_in, flat_out = math.prod(self.in_dims), math.prod(self.out_dims)
        bias = self.bias.reshape(flat_out) if self.bias is not None else None
        y = F.linear(x.reshape(lead + (flat_in,)), self.kernel.reshape(flat_in, flat_out).T, bias)
        return y.reshape(lead + self.out_dims)


class MultiHeadAttention(Layer):
    """Multi-head attention (Vaswani et al. 2017) with Keras's weights: query/key/value kernels
    (dim, num_heads, key_dim or value_dim) and biases (num_heads, key_dim or value_dim), output kernel
    (num_heads, value_dim, out_dim) and bias (out_dim,). Inputs (batch, steps, dim)."""

    def __init__(self, num_heads, key_dim, value_dim=None, dropout=0.0, use_bias=True, output_shape=None,
                 attention_axes=None, sliding_window=None, flash_attention=None, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, use_gate=False, seed=None, **kwargs):
        if isinstance(num_heads, bool) or not isinstance(num_heads, (int, np.integer)) or num_heads <= 0:
            raise ValueError(f"Received an invalid value for argument `num_heads`, expected a positive integer. "
                             f"Received: num_heads={num_heads}")
        if isinstance(key_dim, bool) or not isinstance(key_dim, (int, np.integer)) or key_dim <= 0:
            raise ValueError(f"Received an invalid value for argument `key_dim`, expected a positive integer. "
                             f"Received: key_dim={key_dim}")
        if value_dim is not None and (isinstance(value_dim, bool) or not isinstance(value_dim, (int, np.integer))
                                      or value_dim <= 0):
            raise ValueError(f"Received an invalid value for argument `value_dim`, expected a positive integer or "
                             f"`None`. Received: value_dim={value_dim}")
        if use_gate:
            raise NotImplementedError("MultiHeadAttention: use_gate=True is not supported by clnet.keras yet")
        if isinstance(attention_axes, int):
            attention_axes = (attention_axes,)
        if attention_axes is not None and tuple(attention_axes) not in ((1,), (-2,)):
            raise NotImplementedError(f"MultiHeadAttention: attention_axes={attention_axes} is not supported; "
                                      "clnet.keras attends over axis 1 of (batch, steps, dim) inputs")
        if sliding_window is not None and (isinstance(sliding_window, bool) or
                                           not isinstance(sliding_window, (int, np.integer)) or sliding_window <= 0):
            raise ValueError(f"`sliding_window` must be `None` or a positive integer. Received: "
                             f"sliding_window={sliding_window}")
        if flash_attention and dropout > 0.0:
            raise ValueError("Dropout is not supported when flash attention is enabled. Please set dropout to 0.0 "
                             "to use flash attention.")
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.supports_masking = True
        self._num_heads, self._key_dim = int(num_heads), int(key_dim)
        self._value_dim = int(value_dim) if value_dim else self._key_dim
        self._dropout, self._use_bias = float(dropout), bool(use_bias)
        if output_shape:
            output_shape = (output_shape,) if isinstance(output_shape, (int, np.integer)) else tuple(output_shape)
        self._output_shape = output_shape or None
        self._attention_axes = None if attention_axes is None else tuple(attention_axes)
        self._sliding_window = sliding_window
        self._flash_attention = flash_attention
        self._kernel_initializer = initializers.get(kernel_initializer)
        self._bias_initializer = initializers.get(bias_initializer)
        self._kernel_regularizer = regularizers.get(kernel_regularizer)
        self._bias_regularizer = regularizers.get(bias_regularizer)
        self._kernel_constraint = constraints.get(kernel_constraint)
        self._bias_constraint = constraints.get(bias_constraint)
        self.seed = seed

    num_heads = property(lambda self: self._num_heads)
    key_dim = property(lambda self: self._key_dim)
    value_dim = property(lambda self: self._value_dim)
    dropout = property(lambda self: self._dropout)
    use_bias = property(lambda self: self._use_bias)
    attention_axes = property(lambda self: self._attention_axes)

    def _projection(self, in_dims, out_dims, name):
        return _Projection(in_dims, out_dims, self._use_bias, self._kernel_initializer, self._bias_initializer,
                           self._kernel_regularizer, self._bias_regularizer, self._kernel_constraint,
                           self._bias_constraint, name=name, dtype=self._dtype_name)

    @staticmethod
    def _check_shapes(query_shape, value_shape, key_shape):
        for what, shape in (("query", query_shape), ("value", value_shape), ("key", key_shape)):
            if len(shape) != 3:
                raise NotImplementedError(f"MultiHeadAttention: clnet.keras takes (batch, steps, dim) inputs; the "
                                          f"{what} has shape {tuple(shape)}")
        if tuple(value_shape[1:-1]) != tuple(key_shape[1:-1]):
            raise ValueError(f"All dimensions of `value` and `key`, except the last one, must be equal. Received: "
                             f"value_shape={tuple(value_shape)} and key_shape={tuple(key_shape)}")

    def get_build_config(self):
        """Keras's form for this layer ({"query_shape", "value_shape", "key_shape"}), so Keras 3 rebuilds it."""
        shapes = self.__dict__.get("_built_shapes")
        if shapes is None:
            return super().get_build_config()
        return {"shapes_dict": {name: list(shape) for name, shape in
                                zip(("query_shape", "value_shape", "key_shape"), shapes)}}

    def build_from_config(self, config):
        shapes = (config or {}).get("shapes_dict") or config  # Keras writes {"shapes_dict": {...}}
        if shapes and shapes.get("query_shape") is not None:
            value = shapes.get("value_shape") or shapes["query_shape"]
            self._maybe_build(_shape_tuple(shapes["query_shape"]), _shape_tuple(value),
                              _shape_tuple(shapes.get("key_shape") or value))
        else:
            super().build_from_config(config)

    def build(self, query_shape, value_shape=None, key_shape=None):
        query_shape = _shape_tuple(query_shape)
        value_shape = query_shape if value_shape is None else _shape_tuple(value_shape)
        key_shape = value_shape if key_shape is None else _shape_tuple(key_shape)
        self._built_shapes = (query_shape, value_shape, key_shape)
        self._check_shapes(query_shape, value_shape, key_shape)
        for what, shape in (("query", query_shape), ("value", value_shape), ("key", key_shape)):
            if shape[-1] is None:
                raise ValueError(f"MultiHeadAttention: the last dimension of the {what} must be known, got "
                                 f"{shape}")
        heads = self._num_heads
        self._query_dense = self._projection((query_shape[-1],), (heads, self._key_dim), "query")
        self._key_dense = self._projection((key_shape[-1],), (heads, self._key_dim), "key")
        self._value_dense = self._projection((value_shape[-1],), (heads, self._value_dim), "value")
        out = self._output_shape or (query_shape[-1],)
        self._output_dense = self._projection((heads, self._value_dim), out, "attention_output")
        for sub in (self._query_dense, self._key_dense, self._value_dense, self._output_dense):
            sub._maybe_build(None)
            for w in sub._own_weights:
                w.path = f"{self.name}/{sub.name}/{w.name}"
        self.built = True

    query_dense = property(lambda self: self._query_dense)
    key_dense = property(lambda self: self._key_dense)
    value_dense = property(lambda self: self._value_dense)
    output_dense = property(lambda self: self._output_dense)

    def _attention_mask(self, query, value, query_mask, value_mask, key_mask, attention_mask, use_causal_mask):
        """Keras's rule: query mask (B, T, 1), value and key masks (B, 1, S), causal and sliding-window masks
        (1, T, S) and the given attention_mask, joined with a logical and."""
        auto = None
        if query_mask is not None:
            auto = _bool(query_mask, query).unsqueeze(-1)
        if value_mask is not None:
            auto = _and(auto, _bool(value_mask, query).unsqueeze(-2))
        if key_mask is not None:
            auto = _and(auto, _bool(key_mask, query).unsqueeze(-2))
        t, s = query.shape[1], value.shape[1]
        if use_causal_mask:
            auto = _and(auto, _causal(t, s, query.device))
        if self._sliding_window is not None:
            rows, cols = np.arange(t)[:, None], np.arange(s)[None, :]
            band = np.abs(rows - cols) < self._sliding_window
            auto = _and(auto, clnet.tensor(band[None], device=query.device))
        return _and(_bool(attention_mask, query), auto)

    def call(self, query, value, key=None, query_mask=None, value_mask=None, key_mask=None, attention_mask=None,
             return_attention_scores=False, training=None, use_causal_mask=False):
        if key is None:
            key = value
            key_mask = None
        elif key is value:
            key_mask = None
        mask = self._attention_mask(query, value, query_mask, value_mask, key_mask, attention_mask,
                                    use_causal_mask)
        # the projections' own math (call), as Keras drops the inputs' masks here: they are in `mask` now
        q = self._query_dense.call(query).transpose(1, 2)  # (B, N, T, key_dim)
        k = self._key_dense.call(key).transpose(1, 2)  # (B, N, S, key_dim)
        v = self._value_dense.call(value).transpose(1, 2)  # (B, N, S, value_dim)
        scale = 1.0 / math.sqrt(float(self._key_dim))
        rate = self._dropout if training else 0.0
        if mask is not None and mask.ndim == 3:
            mask = mask.unsqueeze(1)  # broadcast over the heads
        scores = None
        if return_attention_scores:
            logits = clnet.matmul(q * scale, k.transpose(-2, -1))
            if mask is not None:
                logits = clnet.where(mask, logits, _LARGE_NEGATIVE)
            scores = F.softmax(logits, dim=-1)
            if mask is not None:  # Keras's masked softmax: zero weight where masked, even in a fully masked row
                scores = clnet.where(mask, scores, 0.0)
            weights = F.dropout(scores, p=rate, training=True) if rate > 0 else scores
            out = clnet.matmul(weights, v)
        else:
            causal_only = use_causal_mask and mask is not None and attention_mask is None and \
                query_mask is None and value_mask is None and key_mask is None and self._sliding_window is None
            if causal_only:
                out = F.scaled_dot_product_attention(q, k, v, dropout_p=rate, is_causal=True, scale=scale)
            else:
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=rate, scale=scale)
        out = self._output_dense.call(out.transpose(1, 2))  # (B, T, N, value_dim) -> (B, T, *output_shape)
        if return_attention_scores:
            return out, scores
        return out

    def compute_output_shape(self, query_shape, value_shape=None, key_shape=None):
        query_shape = tuple(query_shape)
        value_shape = query_shape if value_shape is None else tuple(value_shape)
        key_shape = value_shape if key_shape is None else tuple(key_shape)
        if tuple(value_shape[1:-1]) != tuple(key_shape[1:-1]):
            raise ValueError(f"All dimensions of `value` and `key`, except the last one, must be equal. Received: "
                             f"value_shape={value_shape} and key_shape={key_shape}")
        if self._output_shape:
            return query_shape[:-1] + tuple(self._output_shape)
        return query_shape

    def compute_output_spec(self, query, value, key=None, return_attention_scores=False, **kwargs):
        shape = self.compute_output_shape(query.shape, value.shape, None if key is None else key.shape)
        out = KerasTensor(shape, self._dtype_name)
        if return_attention_scores:
            return out, KerasTensor((query.shape[0], self._num_heads, query.shape[1], value.shape[1]),
                                    self._dtype_name)
        return out

    def get_config(self):
        return {**super().get_config(), "num_heads": self._num_heads, "key_dim": self._key_dim,
                "value_dim": self._value_dim, "dropout": self._dropout, "use_bias": self._use_bias,
                "use_gate": False,
                "output_shape": list(self._output_shape) if self._output_shape else None,
                "attention_axes": list(self._attention_axes) if self._attention_axes else None,
                "sliding_window": self._sliding_window,
                "kernel_initializer": initializers.serialize(self._kernel_initializer),
                "bias_initializer": initializers.serialize(self._bias_initializer),
                "kernel_regularizer": regularizers.serialize(self._kernel_regularizer),
                "bias_regularizer": regularizers.serialize(self._bias_regularizer),
                "activity_regularizer": regularizers.serialize(self.activity_regularizer),
                "kernel_constraint": constraints.serialize(self._kernel_constraint),
                "bias_constraint": constraints.serialize(self._bias_constraint), "seed": self.seed}


class Attention(Layer):
    """Dot-product attention over [query, value] or [query, value, key]: softmax(query key^T) value,
    scores optionally times a learned scalar `scale` (use_scale), or score_mode="concat"'s
    sum(tanh(query + key))."""

    def __init__(self, use_scale=False, score_mode="dot", dropout=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if score_mode not in ("dot", "concat"):
            raise ValueError(f"Invalid value for argument score_mode. Expected one of {{'dot', 'concat'}}. "
                             f"Received: score_mode={score_mode}")
        self.use_scale, self.score_mode = bool(use_scale), score_mode
        self.dropout, self.seed = float(dropout), seed
        self.supports_masking = True

    def _validate(self, inputs, mask=None):
        name = type(self).__name__
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(f"{name} layer must be called on a list of inputs, namely [query, value] or "
                             f"[query, value, key]. Received: inputs={inputs}.")
        if not 2 <= len(inputs) <= 3:
            raise ValueError(f"{name} layer accepts inputs list of length 2 or 3, namely [query, value] or "
                             f"[query, value, key]. Received length: {len(inputs)}.")
        if mask is not None:
            if not isinstance(mask, (list, tuple)):
                raise ValueError(f"{name} layer mask must be a list, namely [query_mask, value_mask]. Received: "
                                 f"mask={mask}.")
            if not 2 <= len(mask) <= 3:
                raise ValueError(f"{name} layer accepts mask list of length 2 or 3. Received: mask={mask}.")

    def build(self, input_shape):
        self._validate(input_shape)
        self.scale = self.add_weight((), "ones", name="scale") if self.use_scale else None
        self.concat_score_weight = self.add_weight((), "ones", name="concat_score_weight") \
            if self.score_mode == "concat" else None
        self.built = True

    def _scores(self, q, k):
        if self.score_mode == "dot":
            scores = clnet.matmul(q, k.transpose(-2, -1))
            return scores * self.scale if self.scale is not None else scores
        s = q.unsqueeze(-2) + k.unsqueeze(-3)  # (B, Tq, Tv, dim)
        if self.scale is not None:
            s = s * self.scale
        return self.concat_score_weight * clnet.sum(clnet.tanh(s), -1)

    def call(self, inputs, mask=None, training=False, return_attention_scores=False, use_causal_mask=False):
        self._validate(inputs, mask)
        q, v = inputs[0], inputs[1]
        k = inputs[2] if len(inputs) > 2 else v
        q_mask = _bool(mask[0], q) if mask else None
        v_mask = _bool(mask[1], q) if mask else None
        scores = self._scores(q, k)
        keep = v_mask.unsqueeze(-2) if v_mask is not None else None
        if use_causal_mask:
            keep = _and(keep, _causal(scores.shape[-2], scores.shape[-1], q.device))
        if keep is not None:
            scores = clnet.where(keep, scores, scores - 1e9)
        weights = F.softmax(scores, dim=-1)
        applied = F.dropout(weights, p=self.dropout, training=True) if training and self.dropout > 0 else weights
        out = clnet.matmul(applied, v)
        if q_mask is not None:
            out = clnet.where(q_mask.unsqueeze(-1), out, 0.0)
        if return_attention_scores:
            return out, applied  # Keras returns the weights after dropout here (MultiHeadAttention: before)
        return out

    def compute_mask(self, inputs, mask=None):
        if mask is None or not isinstance(mask, (list, tuple)) or mask[0] is None:
            return None
        return mask[0]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0][:-1]) + (input_shape[1][-1],)

    def compute_output_spec(self, inputs, mask=None, return_attention_scores=False, **kwargs):
        self._validate(inputs, mask)
        q, v = inputs[0], inputs[1]
        k = inputs[2] if len(inputs) > 2 else v
        out = KerasTensor(self.compute_output_shape([q.shape, v.shape, k.shape]), self._dtype_name)
        if return_attention_scores:
            return out, KerasTensor(tuple(q.shape[:-1]) + (k.shape[-2],), self._dtype_name)
        return out

    def get_config(self):
        return {**super().get_config(), "use_scale": self.use_scale, "score_mode": self.score_mode,
                "dropout": self.dropout, "seed": self.seed}

"""Embedding (integer ids -> rows of a table, F.embedding) and Masking: the two layers that start masks.

With Embedding(mask_zero=True) or Masking, the outputs carry a (batch, steps) boolean mask that the
recurrent and attention layers after them honour (masks travel on tensors, see layers.base).
"""
from __future__ import annotations

import warnings

import numpy as np

import clnet
from clnet.nn import functional as F

from .. import constraints, initializers, regularizers
from .base import Layer


def _positive_int(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"`{what}` must be a positive integer. Received: {what}={value} "
                         f"(of type {type(value).__name__}).")
    return int(value)


class Embedding(Layer):
    """Turns non-negative integer ids (batch, ...) into dense vectors (batch, ..., output_dim)."""

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform", embeddings_regularizer=None,
                 embeddings_constraint=None, mask_zero=False, weights=None, lora_rank=None, lora_alpha=None,
                 **kwargs):
        input_dim = _positive_int(input_dim, "input_dim")
        output_dim = _positive_int(output_dim, "output_dim")
        if kwargs.pop("input_length", None) is not None:
            warnings.warn("Argument `input_length` is deprecated. Just remove it.", stacklevel=2)
        if lora_rank is not None:
            raise NotImplementedError("Embedding: LoRA (lora_rank) is not supported by clnet.keras yet")
        kwargs.pop("quantization_config", None)
        super().__init__(**kwargs)
        self.input_dim, self.output_dim = input_dim, output_dim
        self.embeddings_initializer = initializers.get(embeddings_initializer)
        self.embeddings_regularizer = regularizers.get(embeddings_regularizer)
        self.embeddings_constraint = constraints.get(embeddings_constraint)
        self.mask_zero = bool(mask_zero)
        self.supports_masking = self.mask_zero
        self.autocast = False
        if weights is not None:
            self._maybe_build(None)
            if not (isinstance(weights, list) and len(weights) == 1):
                weights = [weights]
            self.set_weights(weights)

    def build(self, input_shape=None):
        if self.built:
            return
        self.embeddings = self.add_weight((self.input_dim, self.output_dim), self.embeddings_initializer,
                                          regularizer=self.embeddings_regularizer,
                                          constraint=self.embeddings_constraint, name="embeddings")
        self.built = True

    def call(self, inputs):
        if inputs.dtype.kind not in "iu":
            inputs = inputs.to(dtype=clnet.int64)
        return F.embedding(inputs, self.embeddings)

    def compute_mask(self, inputs, mask=None):
        if not self.mask_zero:
            return None
        return inputs != 0

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def get_config(self):
        return {**super().get_config(), "input_dim": self.input_dim, "output_dim": self.output_dim,
                "embeddings_initializer": initializers.serialize(self.embeddings_initializer),
                "embeddings_regularizer": regularizers.serialize(self.embeddings_regularizer),
                "activity_regularizer": regularizers.serialize(self.activity_regularizer),
                "embeddings_constraint": constraints.serialize(self.embeddings_constraint),
                "mask_zero": self.mask_zero, "quantization_config": None}


class Masking(Layer):
    """Masks the timesteps whose features all equal `mask_value` (they are also zeroed in the output)."""

    _keeps_input_dtype = True

    def __init__(self, mask_value=0.0, **kwargs):
        super().__init__(**kwargs)
        self.mask_value = mask_value
        self.supports_masking = True

    def _keep(self, inputs):
        if not isinstance(inputs, clnet.Tensor):  # compute_mask(numpy_array), as Keras accepts
            inputs = clnet.tensor(np.asarray(inputs))
        return clnet.any(inputs != self.mask_value, -1)

    def call(self, inputs):
        keep = self._keep(inputs)
        out = inputs * keep.unsqueeze(-1).to(dtype=inputs.dtype)
        out._keras_mask = keep
        return out

    def compute_mask(self, inputs, mask=None):
        return self._keep(inputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "mask_value": self.mask_value}

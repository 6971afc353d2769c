"""keras.Variable: a clnet.Variable (so autograd and clnet.optim update it) with Keras 3's attributes.

`v.value` is the variable itself (Keras: the backend tensor, so `v.value.grad` reads the gradient after
`loss.backward()` as in Keras's PyTorch backend); `path` is "layer_name/weight_name"; `trainable`
switches gradients on and off; `constraint` and `regularizer` are what add_weight was given.
"""
from __future__ import annotations

import numpy as np

import clnet
from clnet import dtypes as _dt

from .ops.symbolic import standardize_dtype


class Variable(clnet.Variable):
    """keras.Variable(initializer, shape=None, dtype=None, trainable=True, name=None)."""

    def __new__(cls, initializer, shape=None, dtype=None, trainable=True, autocast=True, aggregation="none",
                synchronization="auto", name=None, device=None, **kwargs):
        if callable(initializer) and not isinstance(initializer, (np.ndarray, clnet.Tensor)):
            if shape is None:
                raise ValueError("When creating a Variable from an initializer, the `shape` argument should be "
                                 f"specified. Received: initializer={initializer} and shape={shape}")
            value = initializer(tuple(int(s) for s in shape), dtype=standardize_dtype(dtype))
        else:
            value = initializer
        if isinstance(value, clnet.Tensor):
            value = value.detach().numpy()
        value = np.asarray(value, dtype=standardize_dtype(dtype) if dtype is not None else None)
        if dtype is None and value.dtype == np.float64:
            value = value.astype(np.float32)
        if shape is not None and tuple(value.shape) != tuple(int(s) for s in shape):
            raise ValueError(f"Initial value has shape {value.shape}, but the variable's shape is {tuple(shape)}")
        floating = _dt.is_floating(value.dtype)
        var = clnet.Variable.__new__(cls, value, trainable=bool(trainable) and floating, name=name, device=device)
        var._keras_trainable = bool(trainable)
        var.trainable = bool(trainable) and floating
        var.path = name or "variable"
        var.aggregation, var.synchronization, var.autocast = aggregation, synchronization, autocast
        var.constraint = None
        var.regularizer = None
        return var

    @property
    def value(self):
        return self

    def _as_value(self, value):
        if isinstance(value, clnet.Tensor):
            return value if tuple(value.shape) == tuple(self.shape) else value.expand(*self.shape)
        arr = np.broadcast_to(np.asarray(value, dtype=self.dtype), tuple(self.shape))
        return clnet.tensor(np.array(arr, order="C"), device=self.device)  # (ascontiguousarray makes 0-d 1-d)

    def assign(self, value):
        """Overwrite the value (a tensor, numpy array or number, broadcast to the variable's shape)."""
        return super().assign(self._as_value(value))

    def assign_add(self, delta):
        return super().assign_add(delta if isinstance(delta, (clnet.Tensor, int, float)) else self._as_value(delta))

    def assign_sub(self, delta):
        return super().assign_sub(delta if isinstance(delta, (clnet.Tensor, int, float)) else self._as_value(delta))

    def __repr__(self):
        return f"<Variable path={self.path}, shape={tuple(self.shape)}, dtype={self.dtype.name}, " \
               f"value={self.numpy()}>"

"""Normalization layers: BatchNormalization, LayerNormalization and the Normalization preprocessing layer.

BatchNormalization has Keras's parameters (axis=-1, momentum=0.99, epsilon=1e-3), over F.batch_norm. The
moving statistics are non-trainable Variables that clnet.nn.functional.batch_norm updates in place on the
device during training calls. One difference from Keras 3: the moving variance is fed the unbiased
batch variance (as PyTorch and TensorFlow's fused batch norm do); Keras 3 uses the biased one.
"""
from __future__ import annotations

import itertools

import numpy as np

import clnet
from clnet.nn import functional as F

from .. import _ops, initializers, regularizers
from ..py_dataset import PyDataset
from .base import InputSpec, Layer
from .conv import _check_constraints


class BatchNormalization(Layer):
    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones", moving_mean_initializer="zeros",
                 moving_variance_initializer="ones", **kwargs):
        super().__init__(**kwargs)
        if not isinstance(axis, int):
            raise TypeError(f"BatchNormalization: axis must be an int, got {axis!r}")
        self.axis, self.momentum, self.epsilon = axis, float(momentum), float(epsilon)
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)

    def build(self, input_shape):
        ndim = len(input_shape)
        if not -ndim <= self.axis < ndim:
            raise ValueError(f"BatchNormalization {self.name!r}: axis {self.axis} is out of range for input shape "
                             f"{tuple(input_shape)}")
        axis = self.axis % ndim
        dim = input_shape[axis]
        if dim is None:
            raise ValueError(f"BatchNormalization {self.name!r}: axis {self.axis} of the input must have a known size")
        self._axis = axis
        self._reduce = tuple(i for i in range(ndim) if i != axis)
        self._param_shape = tuple(dim if i == axis else 1 for i in range(ndim))
        self.gamma = self.add_weight((dim,), self.gamma_initializer, name="gamma") if self.scale else None
        self.beta = self.add_weight((dim,), self.beta_initializer, name="beta") if self.center else None
        self.moving_mean = self.add_weight((dim,), self.moving_mean_initializer, trainable=False, name="moving_mean")
        self.moving_variance = self.add_weight((dim,), self.moving_variance_initializer, trainable=False,
                                               name="moving_variance")
        self.input_spec = InputSpec(ndim=ndim, axes={self.axis: dim})
        self.built = True

    def call(self, inputs, training=False):
        # As in Keras, a frozen (trainable=False) BatchNormalization normalizes with its moving statistics.
        return _ops.batch_norm(inputs, self._axis, self.moving_mean, self.moving_variance, self.gamma, self.beta,
                               bool(training) and self.trainable, self.momentum, self.epsilon)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale,
                "beta_initializer": initializers.serialize(self.beta_initializer),
                "gamma_initializer": initializers.serialize(self.gamma_initializer),
                "moving_mean_initializer": initializers.serialize(self.moving_mean_initializer),
                "moving_variance_initializer": initializers.serialize(self.moving_variance_initializer)}


class LayerNormalization(Layer):
    """Normalizes each sample over `axis` (mean 0, variance 1, epsilon=1e-3 as in Keras), then gamma * x + beta
    with gamma, beta of the shape of those axes: F.layer_norm (one fused kernel) on a view with the normalized
    axes last, in Keras's sorted(axis) order."""

    _cast_integer_inputs = True

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, beta_initializer="zeros",
                 gamma_initializer="ones", beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
                 gamma_constraint=None, **kwargs):
        if kwargs.pop("rms_scaling", False):
            raise NotImplementedError("LayerNormalization: rms_scaling=True is deprecated in Keras and not supported "
                                      "by clnet")
        super().__init__(**kwargs)
        if isinstance(axis, (list, tuple)) and all(isinstance(a, int) and not isinstance(a, bool) for a in axis) \
                and axis:
            self.axis = list(axis)
        elif isinstance(axis, int) and not isinstance(axis, bool):
            self.axis = axis
        else:
            raise TypeError(f"Expected an int or a list/tuple of ints for the argument 'axis', but received: {axis!r}")
        _check_constraints("LayerNormalization", beta_constraint=beta_constraint, gamma_constraint=gamma_constraint)
        self.epsilon, self.center, self.scale = float(epsilon), bool(center), bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.supports_masking = True

    def build(self, input_shape):
        ndim = len(input_shape)
        axes = sorted(self.axis) if isinstance(self.axis, list) else [self.axis]
        if any(not -ndim <= a < ndim for a in axes):
            raise ValueError(f"LayerNormalization {self.name!r}: axis {self.axis} is out of bounds for input shape "
                             f"{tuple(input_shape)}")
        self._norm_axes = [a % ndim for a in axes]
        if len(set(self._norm_axes)) != len(axes):
            raise ValueError(f"LayerNormalization {self.name!r}: axis {self.axis} names an axis twice")
        shape = tuple(input_shape[a] for a in self._norm_axes)
        if any(s is None for s in shape):
            raise ValueError(f"LayerNormalization {self.name!r}: the normalized axes {self.axis} of the input must "
                             f"have known sizes, got input shape {tuple(input_shape)}")
        self._param_shape = shape
        self.gamma = self.add_weight(shape, self.gamma_initializer, regularizer=self.gamma_regularizer, name="gamma",
                                     autocast=False) if self.scale else None
        self.beta = self.add_weight(shape, self.beta_initializer, regularizer=self.beta_regularizer, name="beta",
                                    autocast=False) if self.center else None
        rest = [i for i in range(ndim) if i not in self._norm_axes]
        perm = rest + self._norm_axes
        self._perm = None if perm == list(range(ndim)) else perm
        self._inverse = None if self._perm is None else [perm.index(i) for i in range(ndim)]
        self.input_spec = InputSpec(ndim=ndim, axes={a: input_shape[a] for a in self._norm_axes})
        self.built = True

    def call(self, inputs):
        x = inputs.permute(*self._perm) if self._perm else inputs
        y = F.layer_norm(x, self._param_shape, self.gamma, self.beta, self.epsilon)
        return y.permute(*self._inverse) if self._perm else y

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon, "center": self.center,
                "scale": self.scale, "rms_scaling": False,
                "beta_initializer": initializers.serialize(self.beta_initializer),
                "gamma_initializer": initializers.serialize(self.gamma_initializer),
                "beta_regularizer": regularizers.serialize(self.beta_regularizer),
                "gamma_regularizer": regularizers.serialize(self.gamma_regularizer),
                "beta_constraint": None, "gamma_constraint": None}


class Normalization(Layer):
    """(x - mean) / max(sqrt(variance), 1e-7) per position of the kept `axis` (the last by default; None for one
    mean and variance over everything), with invert=True mapping back. The statistics are given (`mean=`,
    `variance=`) or learnt by adapt(data): float64 sums on the host, batch by batch for an iterable, merged as
    Keras merges them. Adapted statistics are the non-trainable weights mean, variance and count."""

    _cast_integer_inputs = True

    def __init__(self, axis=-1, mean=None, variance=None, invert=False, **kwargs):
        super().__init__(**kwargs)
        if axis is None:
            axis = ()
        elif isinstance(axis, int) and not isinstance(axis, bool):
            axis = (axis,)
        else:
            axis = tuple(axis)
        self.axis, self.invert = axis, bool(invert)
        if (mean is None) != (variance is None):
            raise ValueError("When setting values directly, both `mean` and `variance` must be set. Received: "
                             f"mean={mean} and variance={variance}")
        self.input_mean = None if mean is None else np.asarray(mean, dtype=np.float64)
        self.input_variance = None if variance is None else np.asarray(variance, dtype=np.float64)
        if mean is not None:
            if self.input_mean.shape != self.input_variance.shape:
                raise ValueError("When setting values directly, `mean` and `variance` must have the same shape. "
                                 f"Received: mean shape {self.input_mean.shape} and variance shape "
                                 f"{self.input_variance.shape}")
            if self.input_mean.ndim > len(self.axis):
                raise ValueError(f"The rank of `mean` must be less than or equal to the number of axes "
                                 f"({len(self.axis)}). Received: mean shape {self.input_mean.shape} for axis "
                                 f"{self.axis}")
        self._fixed = None
        self.supports_masking = True

    def build(self, input_shape):
        ndim = len(input_shape)
        if any(not -ndim <= a < ndim for a in self.axis):
            raise ValueError(f"All `axis` values must be in the range [-ndim, ndim). Received inputs with ndim={ndim}, "
                             f"while axis={self.axis}")
        self._keep = tuple(sorted(a % ndim for a in self.axis))
        for d in self._keep:
            if input_shape[d] is None:
                raise ValueError(f"All `axis` values to be kept must have a known shape. Received axis={self.axis}, "
                                 f"inputs.shape={tuple(input_shape)}, with unknown axis at index {d}")
        self._reduce = tuple(d for d in range(ndim) if d not in self._keep)
        self._broadcast = tuple(input_shape[d] if d in self._keep else 1 for d in range(ndim))
        self._stat_shape = tuple(input_shape[d] for d in self._keep)
        self._adapt_shape = tuple(input_shape)
        if self.input_mean is None:
            self.mean = self.add_weight(self._stat_shape, "zeros", trainable=False, name="mean")
            self.variance = self.add_weight(self._stat_shape, "ones", trainable=False, name="variance")
            self.count = self.add_weight((), "zeros", dtype="int64", trainable=False, name="count")
        else:  # the given statistics: constants broadcast over the kept axes, as Keras lines them up
            def place(v):
                if v.ndim == 0:
                    return np.broadcast_to(v, self._broadcast)
                shape = [1] * ndim
                for i in range(1, v.ndim + 1):
                    shape[self._keep[-i]] = v.shape[-i]
                return np.broadcast_to(v.reshape(shape), self._broadcast)
            mean, var = place(self.input_mean), place(self.input_variance)
            self._fixed = (np.ascontiguousarray(mean, dtype=self.dtype), np.ascontiguousarray(var, dtype=self.dtype))
        self.built = True

    def adapt(self, data):
        """Learn the mean and variance of `data`: an array, a tensor, or an iterable of batches (arrays, or (x, y)
        tuples whose x is used)."""
        if isinstance(data, PyDataset):
            if data.num_batches is None:
                raise ValueError("adapt() received an endless PyDataset (no __len__); pass a finite one, or a list of "
                                 "batches")
            data = [data[i] for i in range(data.num_batches)]
        if isinstance(data, (np.ndarray, clnet.Tensor)):
            batches, shape = [data], tuple(data.shape)
        elif hasattr(data, "__iter__"):
            it = iter(data)
            first = next(it, None)
            if first is None:
                raise ValueError("adapt() received an empty iterable (no batches). Expected at least one batch. Pass "
                                 "a non-empty iterable of arrays or tensors, e.g. layer.adapt([x]).")
            first = _batch_x(first)
            if not hasattr(first, "shape"):
                raise TypeError("adapt() expects an iterable that yields arrays or tensors with a `.shape` attribute. "
                                f"Got an element of type {type(first).__name__}.")
            batches, shape = itertools.chain([first], (_batch_x(b) for b in it)), tuple(first.shape)
        else:
            raise TypeError(f"Unsupported data type: {type(data)}. `adapt` supports `np.ndarray`, clnet tensors, and "
                            "iterables of batches (e.g. a list, a generator or a keras.utils.PyDataset).")
        if self.input_mean is not None:
            raise ValueError(f"Normalization layer {self.name!r} was given mean= and variance=; adapt() would ignore "
                             "them. Create the layer without them to learn the statistics from data.")
        if not self.built:
            self._maybe_build((None,) + shape[1:] if len(shape) > 1 else shape)
        mean = var = None
        total = 0
        for batch in batches:
            arr = np.asarray(batch.numpy() if isinstance(batch, clnet.Tensor) else batch, dtype=np.float64)
            if arr.ndim != len(self._broadcast) or any(arr.shape[d] != self._broadcast[d] for d in self._keep):
                raise ValueError(f"The layer was built with input_shape={self._adapt_shape}, but adapt() is being "
                                 f"called with data with an incompatible shape, data.shape={arr.shape}")
            count = int(np.prod([arr.shape[d] for d in self._reduce])) if self._reduce else 1
            b_mean, b_var = arr.mean(axis=self._reduce), arr.var(axis=self._reduce)
            if mean is None:
                mean, var, total = b_mean, b_var, count
                continue
            total += count
            w = count / total
            new_mean = mean * (1 - w) + b_mean * w
            var = (var + (mean - new_mean) ** 2) * (1 - w) + (b_var + (b_mean - new_mean) ** 2) * w
            mean = new_mean
        self.mean.assign(clnet.tensor(np.asarray(mean, dtype=self.dtype).reshape(self._stat_shape),
                                      device=self.mean.device))
        self.variance.assign(clnet.tensor(np.asarray(var, dtype=self.dtype).reshape(self._stat_shape),
                                          device=self.variance.device))

    def _stats(self, device):
        if self._fixed is not None:
            if getattr(self, "_fixed_tensors", None) is None or self._fixed_tensors[0].device is not device:
                self._fixed_tensors = tuple(clnet.tensor(a, device=device) for a in self._fixed)
            mean, var = self._fixed_tensors
        else:
            mean, var = self.mean.reshape(self._broadcast), self.variance.reshape(self._broadcast)
        return mean, clnet.clamp(clnet.sqrt(var), min=_EPSILON)

    def call(self, inputs):
        mean, std = self._stats(inputs.device)
        if self.invert:
            return mean + inputs * std
        return (inputs - mean) / std

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "axis": list(self.axis), "invert": self.invert,
                "mean": None if self.input_mean is None else self.input_mean.tolist(),
                "variance": None if self.input_variance is None else self.input_variance.tolist()}


_EPSILON = 1e-7  # keras.config.epsilon()


def _batch_x(batch):
    return batch[0] if isinstance(batch, tuple) else batch

"""BatchNormalization with Keras's parameters (axis=-1, momentum=0.99, epsilon=1e-3), over F.batch_norm.

The moving statistics are non-trainable Variables that clnet.nn.functional.batch_norm updates in place on
the device during training calls. One difference from Keras 3: the moving variance is fed the unbiased
batch variance (as PyTorch and TensorFlow's fused batch norm do); Keras 3 uses the biased one.
"""
from __future__ import annotations

from .. import _ops, initializers
from .base import InputSpec, Layer


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

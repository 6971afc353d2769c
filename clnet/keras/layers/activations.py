"""Activation layers with parameters: LeakyReLU, PReLU (a learned slope), ELU; shells over clnet.nn.functional."""
from __future__ import annotations

import warnings

from clnet.nn import functional as F

from .. import initializers, regularizers
from .base import InputSpec, Layer
from .conv import _check_constraints


class LeakyReLU(Layer):
    """x for x >= 0, negative_slope * x below (Keras 3's name; the deprecated `alpha` is still accepted)."""

    _cast_integer_inputs = True

    def __init__(self, negative_slope=0.3, **kwargs):
        if "alpha" in kwargs:
            negative_slope = kwargs.pop("alpha")
            warnings.warn("Argument `alpha` is deprecated. Use `negative_slope` instead.", stacklevel=2)
        super().__init__(**kwargs)
        if negative_slope is None or isinstance(negative_slope, bool) or float(negative_slope) < 0:
            raise ValueError("The negative_slope value of a Leaky ReLU layer cannot be None or negative value. "
                             f"Expected a float. Received: negative_slope={negative_slope!r}")
        self.negative_slope = float(negative_slope)
        self.supports_masking = True

    def call(self, inputs):
        return F.leaky_relu(inputs, self.negative_slope)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "negative_slope": self.negative_slope}


class ELU(Layer):
    """x for x > 0, alpha * (exp(x) - 1) below."""

    _cast_integer_inputs = True

    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = float(alpha)
        self.supports_masking = True

    def call(self, inputs):
        return F.elu(inputs, self.alpha)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


class PReLU(Layer):
    """x for x >= 0, alpha * x below, with alpha a weight of shape input_shape[1:] (size 1 on shared_axes,
    e.g. shared_axes=[1, 2] for one slope per channel of an image)."""

    _cast_integer_inputs = True

    def __init__(self, alpha_initializer="Zeros", alpha_regularizer=None, alpha_constraint=None, shared_axes=None,
                 **kwargs):
        super().__init__(**kwargs)
        _check_constraints("PReLU", alpha_constraint=alpha_constraint)
        self.alpha_initializer = initializers.get(alpha_initializer)
        self.alpha_regularizer = regularizers.get(alpha_regularizer)
        if shared_axes is None:
            self.shared_axes = None
        elif isinstance(shared_axes, int) and not isinstance(shared_axes, bool):
            self.shared_axes = [shared_axes]
        else:
            self.shared_axes = list(shared_axes)
        self.supports_masking = True

    def build(self, input_shape):
        shape = list(input_shape[1:])
        for axis in self.shared_axes or ():
            if not 1 <= axis < len(input_shape):
                raise ValueError(f"PReLU layer {self.name!r}: shared_axes entries must be axes of the input other than "
                                 f"the batch axis (1 to {len(input_shape) - 1}), got {self.shared_axes} for input "
                                 f"shape {tuple(input_shape)}")
            shape[axis - 1] = 1
        if any(s is None for s in shape):
            raise ValueError(f"PReLU layer {self.name!r}: every non-shared axis of the input must have a known size, "
                             f"got input shape {tuple(input_shape)} (share the unknown axes with shared_axes=)")
        self.alpha = self.add_weight(tuple(shape), self.alpha_initializer, regularizer=self.alpha_regularizer,
                                     name="alpha")
        axes = {i: input_shape[i] for i in range(1, len(input_shape)) if i not in (self.shared_axes or ())}
        self.input_spec = InputSpec(ndim=len(input_shape), axes=axes)
        self.built = True

    def call(self, inputs):
        return F.relu(inputs) - self.alpha * F.relu(-inputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "alpha_initializer": initializers.serialize(self.alpha_initializer),
                "alpha_regularizer": regularizers.serialize(self.alpha_regularizer), "alpha_constraint": None,
                "shared_axes": self.shared_axes}

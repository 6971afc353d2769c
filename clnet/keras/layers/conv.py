"""Conv2D on channels-last images, a shell over clnet.ops.conv.conv2d (NCHW).

The kernel is stored as Keras stores it, (kh, kw, in, out); each call views the NHWC input as NCHW and
the kernel as (out, in, kh, kw) for the conv op, and views the result back as NHWC. Pointwise
activations run before the view back, so the next conv or pooling layer reads contiguous NCHW memory.
"""
from __future__ import annotations

from .. import _ops, activations, initializers, regularizers
from .base import InputSpec, Layer


def normalize_tuple(value, n, name, layer):
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,) * n
    value = tuple(value)
    if len(value) != n or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        raise ValueError(f"{layer}: {name} must be a positive int or a tuple of {n} positive ints, got {value!r}")
    return value


def normalize_padding(padding, layer):
    p = str(padding).lower()
    if p not in ("valid", "same"):
        raise ValueError(f"{layer}: padding must be 'valid' or 'same', got {padding!r}")
    return p


def check_data_format(data_format, layer):
    if data_format not in (None, "channels_last"):
        raise ValueError(f"{layer}: only data_format='channels_last' (NHWC, Keras's default) is supported, got "
                         f"{data_format!r}")


class Conv2D(Layer):
    _cast_integer_inputs = True

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(filters, bool) or not isinstance(filters, int) or filters <= 0:
            raise ValueError(f"Conv2D: filters must be a positive integer, got {filters!r}")
        if groups != 1:
            raise NotImplementedError("Conv2D: groups > 1 is not supported yet")
        check_data_format(data_format, "Conv2D")
        self.filters = filters
        self.kernel_size = normalize_tuple(kernel_size, 2, "kernel_size", "Conv2D")
        self.strides = normalize_tuple(strides, 2, "strides", "Conv2D")
        self.dilation_rate = normalize_tuple(dilation_rate, 2, "dilation_rate", "Conv2D")
        if self.strides != (1, 1) and self.dilation_rate != (1, 1):
            raise ValueError("Conv2D: strides > 1 together with dilation_rate > 1 is not supported (as in Keras)")
        self.padding = normalize_padding(padding, "Conv2D")
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"Conv2D layer {self.name!r} expects 4-D input (batch, height, width, channels), got "
                             f"shape {tuple(input_shape)}")
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"Conv2D layer {self.name!r}: the channel dimension of the input must be known")
        self.kernel = self.add_weight(self.kernel_size + (channels, self.filters), self.kernel_initializer,
                                      regularizer=self.kernel_regularizer, name="kernel")
        self.bias = self.add_weight((self.filters,), self.bias_initializer, regularizer=self.bias_regularizer,
                                    name="bias") if self.use_bias else None
        self.input_spec = InputSpec(ndim=4, axes={-1: channels})
        self.built = True

    def call(self, inputs):
        y = _ops.conv2d_nchw(_ops.to_nchw(inputs), self.kernel, self.bias, self.strides, self.padding,
                             self.dilation_rate)
        if activations.is_pointwise(self.activation):
            return _ops.to_nhwc(self.activation(y))
        return self.activation(_ops.to_nhwc(y))

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        oh, ow = (None if size is None else _ops.out_size(size, k, s, self.padding, d)
                  for size, k, s, d in zip((h, w), self.kernel_size, self.strides, self.dilation_rate))
        if (oh is not None and oh <= 0) or (ow is not None and ow <= 0):
            raise ValueError(f"Conv2D layer {self.name!r}: input {tuple(input_shape)} is too small for kernel "
                             f"{self.kernel_size} with padding={self.padding!r}")
        return (n, oh, ow, self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": list(self.kernel_size),
                "strides": list(self.strides), "padding": self.padding, "dilation_rate": list(self.dilation_rate),
                "activation": activations.serialize(self.activation), "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": regularizers.serialize(self.bias_regularizer)}

"""Convolutions on channels-last data, shells over clnet.ops.conv / clnet.nn.functional (NCHW / NCL).
Conv2D also takes data_format="channels_first" (NCHW input and output, as PyTorch users lay images out): the
op then runs on the input as given, with no view at either end.

Kernels are stored as Keras stores them ((kh, kw, in, out) for Conv2D, (k, in, out) for Conv1D, (kh, kw, out,
in) for Conv2DTranspose, (kh, kw, in, multiplier) for depthwise kernels); each call views the channels-last
input as channels-first and the kernel in PyTorch's layout for the op, and views the result back. Pointwise
activations run before the view back, so the next conv or pooling layer reads contiguous NCHW memory.
Keras's "same" padding (the odd extra row/column at the bottom/right) is padded here before the op.
"""
from __future__ import annotations

from clnet.nn import functional as F

from .. import _ops, activations, config, initializers, regularizers
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


def data_format_of(data_format, layer):
    """"channels_last" or "channels_first" for a layer that supports both (None: keras.config's
    image_data_format(), as in Keras)."""
    fmt = config.image_data_format() if data_format is None else str(data_format).lower()
    if fmt not in ("channels_last", "channels_first"):
        raise ValueError(f"{layer}: data_format must be 'channels_last' or 'channels_first', got {data_format!r}")
    return fmt


def check_data_format(data_format, layer):
    if data_format not in (None, "channels_last"):
        raise ValueError(f"{layer}: only data_format='channels_last' (NHWC, Keras's default) is supported, got "
                         f"{data_format!r}")


class Conv2D(Layer):
    _cast_integer_inputs = True

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(filters, bool) or not isinstance(filters, int) or filters <= 0:
            raise ValueError(f"Conv2D: filters must be a positive integer, got {filters!r}")
        _check_constraints("Conv2D", kernel_constraint=kernel_constraint, bias_constraint=bias_constraint)
        if groups != 1:
            raise NotImplementedError("Conv2D: groups > 1 is not supported yet")
        self.data_format = data_format_of(data_format, "Conv2D")
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
        first = self.data_format == "channels_first"
        if len(input_shape) != 4:
            raise ValueError(f"Conv2D layer {self.name!r} expects 4-D input (batch, "
                             f"{'channels, height, width' if first else 'height, width, channels'}), got "
                             f"shape {tuple(input_shape)}")
        channels = input_shape[1 if first else -1]
        if channels is None:
            raise ValueError(f"Conv2D layer {self.name!r}: the channel dimension of the input must be known")
        self.kernel = self.add_weight(self.kernel_size + (channels, self.filters), self.kernel_initializer,
                                      regularizer=self.kernel_regularizer, name="kernel")
        self.bias = self.add_weight((self.filters,), self.bias_initializer, regularizer=self.bias_regularizer,
                                    name="bias") if self.use_bias else None
        self.input_spec = InputSpec(ndim=4, axes={1 if first else -1: channels})
        self.built = True

    def call(self, inputs):
        first = self.data_format == "channels_first"
        y = _ops.conv2d_nchw(inputs if first else _ops.to_nchw(inputs), self.kernel, self.bias, self.strides,
                             self.padding, self.dilation_rate)
        if first:
            return self.activation(y)
        if activations.is_pointwise(self.activation):
            return _ops.to_nhwc(self.activation(y))
        return self.activation(_ops.to_nhwc(y))

    def compute_output_shape(self, input_shape):
        first = self.data_format == "channels_first"
        n, h, w = (input_shape[0], *input_shape[2:]) if first else input_shape[:3]
        oh, ow = (None if size is None else _ops.out_size(size, k, s, self.padding, d)
                  for size, k, s, d in zip((h, w), self.kernel_size, self.strides, self.dilation_rate))
        if (oh is not None and oh <= 0) or (ow is not None and ow <= 0):
            raise ValueError(f"Conv2D layer {self.name!r}: input {tuple(input_shape)} is too small for kernel "
                             f"{self.kernel_size} with padding={self.padding!r}")
        return (n, self.filters, oh, ow) if first else (n, oh, ow, self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": list(self.kernel_size),
                "strides": list(self.strides), "padding": self.padding, "data_format": self.data_format,
                "dilation_rate": list(self.dilation_rate),
                "activation": activations.serialize(self.activation), "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": regularizers.serialize(self.bias_regularizer)}


# --- Conv1D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D ---------------------------------------
def _check_filters(filters, layer):
    if isinstance(filters, bool) or not isinstance(filters, int) or filters <= 0:
        raise ValueError(f"{layer}: filters must be a positive integer, got {filters!r}")
    return filters


def _check_constraints(layer, **constraints):
    """Weight constraints are accepted as None only: clnet's optimizers do not apply them yet."""
    for name, value in constraints.items():
        if value is not None:
            raise NotImplementedError(f"{layer}: {name} is not supported yet (clnet's optimizers do not apply "
                                      "weight constraints); pass None")


def _check_strided_dilation(strides, dilation, layer):
    if any(s > 1 for s in strides) and any(d > 1 for d in dilation):
        raise ValueError(f"{layer}: strides > 1 together with dilation_rate > 1 is not supported (as in Keras); got "
                         f"strides={strides}, dilation_rate={dilation}")


def _check_rank(layer, input_shape, ndim, what):
    if len(input_shape) != ndim:
        raise ValueError(f"{type(layer).__name__} layer {layer.name!r} expects {ndim}-D input ({what}), got shape "
                         f"{tuple(input_shape)}")
    if input_shape[-1] is None:
        raise ValueError(f"{type(layer).__name__} layer {layer.name!r}: the channel dimension of the input must be "
                         "known")
    return input_shape[-1]


def _weights_config(layer, *names):
    """The initializer/regularizer entries of get_config for the weights `names` ("kernel", "bias", ...)."""
    out = {}
    for n in names:
        out[f"{n}_initializer"] = initializers.serialize(getattr(layer, f"{n}_initializer"))
        out[f"{n}_regularizer"] = regularizers.serialize(getattr(layer, f"{n}_regularizer"))
        out[f"{n}_constraint"] = None
    return out


def _apply_activation(layer, y_nchw):
    if activations.is_pointwise(layer.activation):
        return _ops.to_nhwc(layer.activation(y_nchw))
    return layer.activation(_ops.to_nhwc(y_nchw))


class Conv1D(Layer):
    """Convolution over the steps of (batch, steps, channels); kernel (kernel_size, in / groups, filters).

    padding="causal" pads dilation * (kernel_size - 1) zeros on the left only, so output t sees inputs <= t.
    The math is F.conv1d on the (batch, channels, steps) view.
    """

    _cast_integer_inputs = True

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1,
                 groups=1, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = _check_filters(filters, "Conv1D")
        check_data_format(data_format, "Conv1D")
        _check_constraints("Conv1D", kernel_constraint=kernel_constraint, bias_constraint=bias_constraint)
        self.kernel_size = normalize_tuple(kernel_size, 1, "kernel_size", "Conv1D")
        self.strides = normalize_tuple(strides, 1, "strides", "Conv1D")
        self.dilation_rate = normalize_tuple(dilation_rate, 1, "dilation_rate", "Conv1D")
        _check_strided_dilation(self.strides, self.dilation_rate, "Conv1D")
        p = str(padding).lower()
        if p not in ("valid", "same", "causal"):
            raise ValueError(f"Conv1D: padding must be 'valid', 'same' or 'causal', got {padding!r}")
        self.padding = p
        if isinstance(groups, bool) or not isinstance(groups, int) or groups <= 0 or filters % groups:
            raise ValueError(f"Conv1D: groups must be a positive integer dividing filters ({filters}), got {groups!r}")
        self.groups = groups
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)

    def build(self, input_shape):
        channels = _check_rank(self, input_shape, 3, "batch, steps, channels")
        if channels % self.groups:
            raise ValueError(f"Conv1D layer {self.name!r}: the input channels ({channels}) must be divisible by "
                             f"groups ({self.groups})")
        self.kernel = self.add_weight(self.kernel_size + (channels // self.groups, self.filters),
                                      self.kernel_initializer, regularizer=self.kernel_regularizer, name="kernel")
        self.bias = self.add_weight((self.filters,), self.bias_initializer, regularizer=self.bias_regularizer,
                                    name="bias") if self.use_bias else None
        self.input_spec = InputSpec(ndim=3, axes={-1: channels})
        self.built = True

    def _pads(self, steps):
        k, s, d = self.kernel_size[0], self.strides[0], self.dilation_rate[0]
        if self.padding == "causal":
            return d * (k - 1), 0
        if self.padding == "same":
            return _ops.same_padding(steps, k, s, d)
        return 0, 0

    def call(self, inputs):
        x = inputs.permute(0, 2, 1)
        before, after = self._pads(x.shape[2])
        if before or after:
            x = F.pad(x, (before, after))
        y = F.conv1d(x, self.kernel.permute(2, 1, 0), self.bias, self.strides, 0, self.dilation_rate, self.groups)
        if activations.is_pointwise(self.activation):
            return self.activation(y).permute(0, 2, 1)
        return self.activation(y.permute(0, 2, 1))

    def compute_output_shape(self, input_shape):
        n, steps, _ = input_shape
        out = None
        if steps is not None:
            k, s, d = self.kernel_size[0], self.strides[0], self.dilation_rate[0]
            out = -(-steps // s) if self.padding != "valid" else _ops.out_size(steps, k, s, "valid", d)
            if out <= 0:
                raise ValueError(f"Conv1D layer {self.name!r}: input {tuple(input_shape)} is too short for kernel "
                                 f"{self.kernel_size} (dilation {self.dilation_rate}) with padding='valid'")
        return (n, out, self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": list(self.kernel_size),
                "strides": list(self.strides), "padding": self.padding, "data_format": "channels_last",
                "dilation_rate": list(self.dilation_rate), "groups": self.groups,
                "activation": activations.serialize(self.activation), "use_bias": self.use_bias,
                **_weights_config(self, "kernel", "bias")}


def transpose_out_size(size, k, s, padding, output_padding, d=1):
    """Keras's output length of a transposed convolution (TensorFlow's deconv_output_length)."""
    k = (k - 1) * d + 1
    if output_padding is None:
        return size * s if padding == "same" else (size - 1) * s + max(k, s)
    pad = k // 2 if padding == "same" else 0
    return (size - 1) * s + k - 2 * pad + output_padding


class Conv2DTranspose(Layer):
    """The adjoint (gradient) of a Conv2D with the same kernel, strides and padding, as TensorFlow defines it:
    kernel (kh, kw, filters, in_channels), output (H - 1) * stride + kernel ("valid") or H * stride ("same").

    F.conv_transpose2d computes the full, unpadded result; "same" then keeps the window that TensorFlow's
    forward "same" conv would see (the extra row/column at the bottom/right), zeros where it runs past the end.
    """

    _cast_integer_inputs = True

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", output_padding=None, data_format=None,
                 dilation_rate=(1, 1), activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        name = "Conv2DTranspose"
        self.filters = _check_filters(filters, name)
        check_data_format(data_format, name)
        _check_constraints(name, kernel_constraint=kernel_constraint, bias_constraint=bias_constraint)
        self.kernel_size = normalize_tuple(kernel_size, 2, "kernel_size", name)
        self.strides = normalize_tuple(strides, 2, "strides", name)
        self.dilation_rate = normalize_tuple(dilation_rate, 2, "dilation_rate", name)
        _check_strided_dilation(self.strides, self.dilation_rate, name)
        self.padding = normalize_padding(padding, name)
        if output_padding is not None:
            if isinstance(output_padding, int) and not isinstance(output_padding, bool):
                output_padding = (output_padding,) * 2
            output_padding = tuple(output_padding)
            if len(output_padding) != 2 or not all(isinstance(v, int) and v >= 0 for v in output_padding):
                raise ValueError(f"{name}: output_padding must be None, an int or a tuple of 2 ints >= 0, got "
                                 f"{output_padding!r}")
            if any(p >= s for p, s in zip(output_padding, self.strides)):
                raise ValueError(f"{name}: strides {self.strides} must be greater than output_padding "
                                 f"{output_padding}")
        self.output_padding = output_padding
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)

    def build(self, input_shape):
        channels = _check_rank(self, input_shape, 4, "batch, height, width, channels")
        self.kernel = self.add_weight(self.kernel_size + (self.filters, channels), self.kernel_initializer,
                                      regularizer=self.kernel_regularizer, name="kernel")
        self.bias = self.add_weight((self.filters,), self.bias_initializer, regularizer=self.bias_regularizer,
                                    name="bias") if self.use_bias else None
        self.input_spec = InputSpec(ndim=4, axes={-1: channels})
        self.built = True

    def _out_sizes(self, hw):
        ops = self.output_padding or (None, None)
        return tuple(None if size is None else transpose_out_size(size, k, s, self.padding, op, d)
                     for size, k, s, op, d in zip(hw, self.kernel_size, self.strides, ops, self.dilation_rate))

    def call(self, inputs):
        return self._transpose_nhwc(inputs, self.kernel)

    def _transpose_nhwc(self, inputs, kernel):
        x = _ops.to_nchw(inputs)
        y = F.conv_transpose2d(x, kernel.permute(3, 2, 0, 1), None, self.strides, 0, 0, 1, self.dilation_rate)
        for axis, want in zip((2, 3), self._out_sizes(x.shape[2:])):
            full = y.shape[axis]
            start = max(full - want, 0) // 2 if self.padding == "same" else 0
            if start or want != full:  # crop `start` at the top/left, keep `want`, zeros past the end
                pads = [0, 0, 0, 0]
                lo = 2 if axis == 2 else 0
                pads[lo], pads[lo + 1] = -start, want - (full - start)
                y = F.pad(y, tuple(pads))
        if self.bias is not None:
            y = y + self.bias.reshape(1, self.filters, 1, 1)
        return _apply_activation(self, y)

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        return (n,) + self._out_sizes((h, w)) + (self.filters,)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": list(self.kernel_size),
                "strides": list(self.strides), "padding": self.padding,
                "output_padding": None if self.output_padding is None else list(self.output_padding),
                "data_format": "channels_last", "dilation_rate": list(self.dilation_rate),
                "activation": activations.serialize(self.activation), "use_bias": self.use_bias,
                **_weights_config(self, "kernel", "bias")}


class Conv1DTranspose(Conv2DTranspose):
    """Conv2DTranspose over (batch, steps, channels) with kernel (kernel_size, filters, in_channels), as Keras's:
    run as the 2-D layer on a height of 1 (kernel height 1, stride 1), so both share one implementation."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", output_padding=None, data_format=None,
                 dilation_rate=1, **kwargs):
        name = "Conv1DTranspose"
        k = normalize_tuple(kernel_size, 1, "kernel_size", name)
        st = normalize_tuple(strides, 1, "strides", name)
        d = normalize_tuple(dilation_rate, 1, "dilation_rate", name)
        if output_padding is not None:
            output_padding = normalize_tuple(output_padding, 1, "output_padding", name)
            if output_padding[0] >= st[0]:
                raise ValueError(f"{name}: strides {st} must be greater than output_padding {output_padding}")
            output_padding = (0,) + output_padding
        super().__init__(filters, (1,) + k, (1,) + st, padding, output_padding, data_format, (1,) + d, **kwargs)

    def build(self, input_shape):
        channels = _check_rank(self, input_shape, 3, "batch, steps, channels")
        self.kernel = self.add_weight(self.kernel_size[1:] + (self.filters, channels), self.kernel_initializer,
                                      regularizer=self.kernel_regularizer, name="kernel")
        self.bias = self.add_weight((self.filters,), self.bias_initializer, regularizer=self.bias_regularizer,
                                    name="bias") if self.use_bias else None
        self.input_spec = InputSpec(ndim=3, axes={-1: channels})
        self.built = True

    def call(self, inputs):
        return self._transpose_nhwc(inputs.unsqueeze(1), self.kernel.unsqueeze(0)).squeeze(1)

    def compute_output_shape(self, input_shape):
        n, steps, _ = input_shape
        return (n, self._out_sizes((1, steps))[1], self.filters)

    def get_config(self):
        config = super().get_config()
        for key in ("kernel_size", "strides", "dilation_rate"):
            config[key] = config[key][1:]
        if config["output_padding"] is not None:
            config["output_padding"] = config["output_padding"][1:]
        return config


def _depthwise_nchw(x, kernel, bias, strides, padding, dilation):
    """Keras depthwise kernel (kh, kw, C, m) on NCHW: F.conv2d with groups=C, output channel c * m + j."""
    kh, kw, c, m = kernel.shape
    sym, extra = _ops._split_padding(x.shape[2:], (kh, kw), strides, padding, dilation)
    if any(extra):
        x = F.pad(x, (0, extra[1], 0, extra[0]))
    w = kernel.permute(2, 3, 0, 1).reshape(c * m, 1, kh, kw)
    return F.conv2d(x, w, bias, tuple(strides), sym, tuple(dilation), c)


class _DepthwiseBase(Layer):
    _cast_integer_inputs = True

    def _init_depthwise(self, kernel_size, strides, padding, data_format, dilation_rate, depth_multiplier,
                        activation, use_bias):
        name = type(self).__name__
        check_data_format(data_format, name)
        self.kernel_size = normalize_tuple(kernel_size, 2, "kernel_size", name)
        self.strides = normalize_tuple(strides, 2, "strides", name)
        self.dilation_rate = normalize_tuple(dilation_rate, 2, "dilation_rate", name)
        _check_strided_dilation(self.strides, self.dilation_rate, name)
        self.padding = normalize_padding(padding, name)
        if isinstance(depth_multiplier, bool) or not isinstance(depth_multiplier, int) or depth_multiplier <= 0:
            raise ValueError(f"{name}: depth_multiplier must be a positive integer, got {depth_multiplier!r}")
        self.depth_multiplier = depth_multiplier
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)

    def _depthwise(self, inputs, kernel, bias):
        return _depthwise_nchw(_ops.to_nchw(inputs), kernel, bias, self.strides, self.padding, self.dilation_rate)

    def _spatial_out(self, input_shape):
        n, h, w, _ = input_shape
        out = tuple(None if size is None else _ops.out_size(size, k, s, self.padding, d)
                    for size, k, s, d in zip((h, w), self.kernel_size, self.strides, self.dilation_rate))
        if any(o is not None and o <= 0 for o in out):
            raise ValueError(f"{type(self).__name__} layer {self.name!r}: input {tuple(input_shape)} is too small "
                             f"for kernel {self.kernel_size} with padding={self.padding!r}")
        return (n,) + out

    def _base_config(self):
        return {**super().get_config(), "kernel_size": list(self.kernel_size), "strides": list(self.strides),
                "padding": self.padding, "data_format": "channels_last", "dilation_rate": list(self.dilation_rate),
                "depth_multiplier": self.depth_multiplier, "activation": activations.serialize(self.activation),
                "use_bias": self.use_bias}


class DepthwiseConv2D(_DepthwiseBase):
    """Each input channel convolved with its own depth_multiplier filters; kernel (kh, kw, in, multiplier),
    output channel c * multiplier + j as in Keras."""

    def __init__(self, kernel_size, strides=(1, 1), padding="valid", depth_multiplier=1, data_format=None,
                 dilation_rate=(1, 1), activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None, bias_regularizer=None,
                 depthwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        _check_constraints("DepthwiseConv2D", depthwise_constraint=depthwise_constraint,
                           bias_constraint=bias_constraint)
        self._init_depthwise(kernel_size, strides, padding, data_format, dilation_rate, depth_multiplier, activation,
                             use_bias)
        self.depthwise_initializer = initializers.get(depthwise_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.depthwise_regularizer = regularizers.get(depthwise_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)

    def build(self, input_shape):
        channels = _check_rank(self, input_shape, 4, "batch, height, width, channels")
        self.kernel = self.add_weight(self.kernel_size + (channels, self.depth_multiplier),
                                      self.depthwise_initializer, regularizer=self.depthwise_regularizer,
                                      name="kernel")
        self.bias = self.add_weight((channels * self.depth_multiplier,), self.bias_initializer,
                                    regularizer=self.bias_regularizer, name="bias") if self.use_bias else None
        self.input_spec = InputSpec(ndim=4, axes={-1: channels})
        self.built = True

    def call(self, inputs):
        return _apply_activation(self, self._depthwise(inputs, self.kernel, self.bias))

    def compute_output_shape(self, input_shape):
        c = input_shape[-1]
        return self._spatial_out(input_shape) + (None if c is None else c * self.depth_multiplier,)

    def get_config(self):
        return {**self._base_config(), **_weights_config(self, "depthwise", "bias")}


class SeparableConv2D(_DepthwiseBase):
    """A DepthwiseConv2D (strides, padding and dilation apply here) then a 1x1 Conv2D to `filters` channels:
    depthwise_kernel (kh, kw, in, multiplier), pointwise_kernel (1, 1, in * multiplier, filters), bias."""

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None, dilation_rate=(1, 1),
                 depth_multiplier=1, activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
                 pointwise_initializer="glorot_uniform", bias_initializer="zeros", depthwise_regularizer=None,
                 pointwise_regularizer=None, bias_regularizer=None, depthwise_constraint=None,
                 pointwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = _check_filters(filters, "SeparableConv2D")
        _check_constraints("SeparableConv2D", depthwise_constraint=depthwise_constraint,
                           pointwise_constraint=pointwise_constraint, bias_constraint=bias_constraint)
        self._init_depthwise(kernel_size, strides, padding, data_format, dilation_rate, depth_multiplier, activation,
                             use_bias)
        self.depthwise_initializer = initializers.get(depthwise_initializer)
        self.pointwise_initializer = initializers.get(pointwise_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.depthwise_regularizer = regularizers.get(depthwise_regularizer)
        self.pointwise_regularizer = regularizers.get(pointwise_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)

    def build(self, input_shape):
        channels = _check_rank(self, input_shape, 4, "batch, height, width, channels")
        self.depthwise_kernel = self.add_weight(self.kernel_size + (channels, self.depth_multiplier),
                                                self.depthwise_initializer, regularizer=self.depthwise_regularizer,
                                                name="depthwise_kernel")
        self.pointwise_kernel = self.add_weight((1, 1, channels * self.depth_multiplier, self.filters),
                                                self.pointwise_initializer, regularizer=self.pointwise_regularizer,
                                                name="pointwise_kernel")
        self.bias = self.add_weight((self.filters,), self.bias_initializer, regularizer=self.bias_regularizer,
                                    name="bias") if self.use_bias else None
        self.input_spec = InputSpec(ndim=4, axes={-1: channels})
        self.built = True

    def call(self, inputs):
        y = self._depthwise(inputs, self.depthwise_kernel, None)
        y = _ops.conv2d_nchw(y, self.pointwise_kernel, self.bias, (1, 1), "valid")
        return _apply_activation(self, y)

    def compute_output_shape(self, input_shape):
        return self._spatial_out(input_shape) + (self.filters,)

    def get_config(self):
        return {**self._base_config(), "filters": self.filters,
                **_weights_config(self, "depthwise", "pointwise", "bias")}


Convolution1D, Convolution2DTranspose, SeparableConvolution2D = Conv1D, Conv2DTranspose, SeparableConv2D

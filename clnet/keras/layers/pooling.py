"""Pooling on channels-last data: shells over clnet.ops.conv's max_pool2d / avg_pool2d and reductions.
The 2-D layers also take data_format="channels_first" (NCHW, pooled as given). The pool kernels read the
channels-last input through its strides, so neither layout is copied.

1-D pooling of (batch, steps, channels) is 2-D pooling of the (batch, channels, 1, steps) view, so both
share Keras's "same" rule (the extra step at the end; averages over the real elements of each window).
"""
from __future__ import annotations

import clnet

from .. import _ops
from .base import InputSpec, Layer
from .conv import check_data_format, data_format_of, normalize_padding, normalize_tuple


class _Pooling2D(Layer):
    _op = None

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        name = type(self).__name__
        self.data_format = data_format_of(data_format, name)
        self.pool_size = normalize_tuple(pool_size, 2, "pool_size", name)
        self.strides = self.pool_size if strides is None else normalize_tuple(strides, 2, "strides", name)
        self.padding = normalize_padding(padding, name)

    def build(self, input_shape):
        if len(input_shape) != 4:
            dims = "channels, height, width" if self.data_format == "channels_first" else "height, width, channels"
            raise ValueError(f"{type(self).__name__} layer {self.name!r} expects 4-D input (batch, {dims}), got "
                             f"shape {tuple(input_shape)}")
        self.input_spec = InputSpec(ndim=4)
        self.built = True

    def call(self, inputs):
        if self.data_format == "channels_first":
            return type(self)._op(inputs, self.pool_size, self.strides, self.padding)
        return _ops.to_nhwc(type(self)._op(_ops.to_nchw(inputs), self.pool_size, self.strides, self.padding))

    def compute_output_shape(self, input_shape):
        first = self.data_format == "channels_first"
        n, c, h, w = input_shape if first else (input_shape[0], input_shape[3], *input_shape[1:3])
        oh, ow = (None if size is None else _ops.out_size(size, k, s, self.padding)
                  for size, k, s in zip((h, w), self.pool_size, self.strides))
        if (oh is not None and oh <= 0) or (ow is not None and ow <= 0):
            raise ValueError(f"{type(self).__name__} layer {self.name!r}: input {tuple(input_shape)} is smaller than "
                             f"the pool size {self.pool_size}")
        return (n, c, oh, ow) if first else (n, oh, ow, c)

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size), "strides": list(self.strides),
                "padding": self.padding, "data_format": self.data_format}


class MaxPooling2D(_Pooling2D):
    _op = staticmethod(_ops.max_pool2d_nchw)


class AveragePooling2D(_Pooling2D):
    _op = staticmethod(_ops.avg_pool2d_nchw)


class _GlobalPooling2D(Layer):
    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.data_format = data_format_of(data_format, type(self).__name__)
        self.keepdims = bool(keepdims)

    @property
    def _axes(self):
        return (2, 3) if self.data_format == "channels_first" else (1, 2)

    def build(self, input_shape):
        self.input_spec = InputSpec(ndim=4)
        self.built = True

    def compute_output_shape(self, input_shape):
        if self.data_format == "channels_first":
            n, c = input_shape[:2]
            return (n, c, 1, 1) if self.keepdims else (n, c)
        n, _, _, c = input_shape
        return (n, 1, 1, c) if self.keepdims else (n, c)

    def get_config(self):
        return {**super().get_config(), "keepdims": self.keepdims, "data_format": self.data_format}


class GlobalAveragePooling2D(_GlobalPooling2D):
    def call(self, inputs):
        return clnet.mean(inputs, self._axes, keepdim=self.keepdims)


class GlobalMaxPooling2D(_GlobalPooling2D):
    def call(self, inputs):
        return clnet.amax(inputs, self._axes, keepdim=self.keepdims)


class _Pooling1D(Layer):
    _op = None

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        name = type(self).__name__
        check_data_format(data_format, name)
        self.pool_size = normalize_tuple(pool_size, 1, "pool_size", name)
        self.strides = self.pool_size if strides is None else normalize_tuple(strides, 1, "strides", name)
        self.padding = normalize_padding(padding, name)

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{type(self).__name__} layer {self.name!r} expects 3-D input (batch, steps, channels), "
                             f"got shape {tuple(input_shape)}")
        self.input_spec = InputSpec(ndim=3)
        self.built = True

    def call(self, inputs):
        x = inputs.permute(0, 2, 1).unsqueeze(2)  # (batch, channels, 1, steps)
        y = type(self)._op(x, (1,) + self.pool_size, (1,) + self.strides, self.padding)
        return y.squeeze(2).permute(0, 2, 1)

    def compute_output_shape(self, input_shape):
        n, steps, c = input_shape
        out = None if steps is None else _ops.out_size(steps, self.pool_size[0], self.strides[0], self.padding)
        if out is not None and out <= 0:
            raise ValueError(f"{type(self).__name__} layer {self.name!r}: input {tuple(input_shape)} is shorter than "
                             f"the pool size {self.pool_size}")
        return (n, out, c)

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size), "strides": list(self.strides),
                "padding": self.padding, "data_format": "channels_last"}


class MaxPooling1D(_Pooling1D):
    _op = staticmethod(_ops.max_pool2d_nchw)


class AveragePooling1D(_Pooling1D):
    _op = staticmethod(_ops.avg_pool2d_nchw)


class _GlobalPooling1D(Layer):
    """Over the steps axis: 1 for channels_last (batch, steps, features), 2 for channels_first (batch, features,
    steps; Keras's timeseries transformer pools that way)."""

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last", "channels_first"):
            raise ValueError(f"{type(self).__name__}: data_format must be 'channels_last' or 'channels_first', got "
                             f"{data_format!r}")
        self.data_format = data_format or "channels_last"
        self.keepdims = bool(keepdims)
        self._axis = 1 if self.data_format == "channels_last" else 2

    def build(self, input_shape):
        self.input_spec = InputSpec(ndim=3)
        self.built = True

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        if self.keepdims:
            shape[self._axis] = 1
        else:
            del shape[self._axis]
        return tuple(shape)

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format, "keepdims": self.keepdims}


class GlobalAveragePooling1D(_GlobalPooling1D):
    """Mean over the steps; with a mask (from Embedding(mask_zero=True) or Masking), over the unmasked steps."""

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(data_format, keepdims, **kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        a = self._axis
        if mask is None:
            return clnet.mean(inputs, a, keepdim=self.keepdims)
        w = mask.to(dtype=inputs.dtype).unsqueeze(-1 if a == 1 else 1)
        return clnet.sum(inputs * w, a, keepdim=self.keepdims) / clnet.sum(w, a, keepdim=self.keepdims)

    def compute_mask(self, inputs, previous_mask=None):
        return None  # the steps axis is gone


class GlobalMaxPooling1D(_GlobalPooling1D):
    def call(self, inputs):
        return clnet.amax(inputs, self._axis, keepdim=self.keepdims)


MaxPool2D, AvgPool2D, GlobalAvgPool2D, GlobalMaxPool2D = MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, \
    GlobalMaxPooling2D
MaxPool1D, AvgPool1D, GlobalAvgPool1D, GlobalMaxPool1D = MaxPooling1D, AveragePooling1D, GlobalAveragePooling1D, \
    GlobalMaxPooling1D

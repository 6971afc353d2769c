"""Pooling on channels-last images: shells over clnet.ops.conv's max_pool2d / avg_pool2d and reductions."""
from __future__ import annotations

import clnet

from .. import _ops
from .base import InputSpec, Layer
from .conv import check_data_format, normalize_padding, normalize_tuple


class _Pooling2D(Layer):
    _op = None

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        name = type(self).__name__
        check_data_format(data_format, name)
        self.pool_size = normalize_tuple(pool_size, 2, "pool_size", name)
        self.strides = self.pool_size if strides is None else normalize_tuple(strides, 2, "strides", name)
        self.padding = normalize_padding(padding, name)

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"{type(self).__name__} layer {self.name!r} expects 4-D input (batch, height, width, "
                             f"channels), got shape {tuple(input_shape)}")
        self.input_spec = InputSpec(ndim=4)
        self.built = True

    def call(self, inputs):
        return _ops.to_nhwc(type(self)._op(_ops.to_nchw(inputs), self.pool_size, self.strides, self.padding))

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        oh, ow = (None if size is None else _ops.out_size(size, k, s, self.padding)
                  for size, k, s in zip((h, w), self.pool_size, self.strides))
        if (oh is not None and oh <= 0) or (ow is not None and ow <= 0):
            raise ValueError(f"{type(self).__name__} layer {self.name!r}: input {tuple(input_shape)} is smaller than "
                             f"the pool size {self.pool_size}")
        return (n, oh, ow, c)

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size), "strides": list(self.strides),
                "padding": self.padding}


class MaxPooling2D(_Pooling2D):
    _op = staticmethod(_ops.max_pool2d_nchw)


class AveragePooling2D(_Pooling2D):
    _op = staticmethod(_ops.avg_pool2d_nchw)


class _GlobalPooling2D(Layer):
    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        check_data_format(data_format, type(self).__name__)
        self.keepdims = bool(keepdims)

    def build(self, input_shape):
        self.input_spec = InputSpec(ndim=4)
        self.built = True

    def compute_output_shape(self, input_shape):
        n, _, _, c = input_shape
        return (n, 1, 1, c) if self.keepdims else (n, c)

    def get_config(self):
        return {**super().get_config(), "keepdims": self.keepdims}


class GlobalAveragePooling2D(_GlobalPooling2D):
    def call(self, inputs):
        return clnet.mean(inputs, (1, 2), keepdim=self.keepdims)


class GlobalMaxPooling2D(_GlobalPooling2D):
    def call(self, inputs):
        return clnet.amax(inputs, (1, 2), keepdim=self.keepdims)


MaxPool2D, AvgPool2D, GlobalAvgPool2D, GlobalMaxPool2D = MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, \
    GlobalMaxPooling2D

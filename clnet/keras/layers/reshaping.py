"""Reshaping layers: UpSampling1D/2D, ZeroPadding1D/2D, Cropping1D/2D, Permute, RepeatVector.

Each is a view, a pad or a gather of clnet ops on channels-last data (Reshape and Flatten are in core.py).
Nearest upsampling repeats every step/pixel with an expand + reshape; bilinear upsampling is
F.interpolate (half-pixel centres, as Keras's image resize).
"""
from __future__ import annotations

from clnet.nn import functional as F

from .base import InputSpec, Layer
from .conv import check_data_format, normalize_tuple


def _pair_of_pairs(value, layer, what):
    """An int, a pair of ints (symmetric per axis) or ((top, bottom), (left, right)) -> ((t, b), (l, r))."""
    def nonneg(v):
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0
    if nonneg(value):
        return ((value, value), (value, value))
    try:
        items = tuple(value)
    except TypeError:
        items = ()
    if len(items) == 2 and all(nonneg(v) for v in items):
        return ((items[0], items[0]), (items[1], items[1]))
    if len(items) == 2 and all(isinstance(v, (tuple, list)) and len(v) == 2 and all(nonneg(u) for u in v)
                               for v in items):
        return (tuple(items[0]), tuple(items[1]))
    raise ValueError(f"{layer}: `{what}` should be an int >= 0, a tuple of 2 ints, or a tuple of 2 tuples of 2 ints "
                     f"((top, bottom), (left, right)). Received: {what}={value!r}")


def _pair(value, layer, what):
    """An int (both ends) or (before, after) -> (before, after)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return (value, value)
    try:
        items = tuple(value)
    except TypeError:
        items = ()
    if len(items) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in items):
        return items
    raise ValueError(f"{layer}: `{what}` should be an int >= 0 or a tuple of 2 ints >= 0. Received: {what}={value!r}")


def _check_ndim(layer, input_shape, ndim, what):
    if len(input_shape) != ndim:
        raise ValueError(f"{type(layer).__name__} layer {layer.name!r} expects {ndim}-D input ({what}), got shape "
                         f"{tuple(input_shape)}")


def _repeat_axis(x, axis, times):
    """Every entry along `axis` repeated `times` times in place (a a b b ...): expand, then merge the axes."""
    if times == 1:
        return x
    shape = tuple(x.shape)
    expanded = x.unsqueeze(axis + 1).expand(*shape[:axis + 1], times, *shape[axis + 1:])
    return expanded.reshape(*shape[:axis], shape[axis] * times, *shape[axis + 1:])


class UpSampling1D(Layer):
    """(batch, steps, features) -> (batch, steps * size, features), each step repeated `size` times."""

    _keeps_input_dtype = True

    def __init__(self, size=2, **kwargs):
        super().__init__(**kwargs)
        self.size = normalize_tuple(size, 1, "size", "UpSampling1D")[0]

    def build(self, input_shape):
        _check_ndim(self, input_shape, 3, "batch, steps, features")
        self.input_spec = InputSpec(ndim=3)
        self.built = True

    def call(self, inputs):
        return _repeat_axis(inputs, 1, self.size)

    def compute_output_shape(self, input_shape):
        n, steps, c = input_shape
        return (n, None if steps is None else steps * self.size, c)

    def get_config(self):
        return {**super().get_config(), "size": self.size}


class UpSampling2D(Layer):
    """(batch, h, w, c) -> (batch, h * size[0], w * size[1], c): pixels repeated ("nearest") or "bilinear"."""

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(**kwargs)
        check_data_format(data_format, "UpSampling2D")
        self.size = normalize_tuple(size, 2, "size", "UpSampling2D")
        if interpolation not in ("nearest", "bilinear"):
            raise ValueError(f"UpSampling2D: `interpolation` argument should be one of: 'nearest', 'bilinear' "
                             f"(the ones clnet supports). Received: interpolation={interpolation!r}")
        self.interpolation = interpolation

    @property
    def _keeps_input_dtype(self):
        return self.interpolation == "nearest"

    def build(self, input_shape):
        _check_ndim(self, input_shape, 4, "batch, height, width, channels")
        self.input_spec = InputSpec(ndim=4)
        self.built = True

    def call(self, inputs):
        if self.interpolation == "nearest":
            return _repeat_axis(_repeat_axis(inputs, 1, self.size[0]), 2, self.size[1])
        _, h, w, _ = inputs.shape
        y = F.interpolate(inputs.permute(0, 3, 1, 2), size=(h * self.size[0], w * self.size[1]), mode="bilinear",
                          align_corners=False)
        return y.permute(0, 2, 3, 1)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        return (n, None if h is None else h * self.size[0], None if w is None else w * self.size[1], c)

    def get_config(self):
        return {**super().get_config(), "size": list(self.size), "data_format": "channels_last",
                "interpolation": self.interpolation}


class ZeroPadding1D(Layer):
    """Zeros added before and after the steps axis of (batch, steps, features)."""

    _keeps_input_dtype = True

    def __init__(self, padding=1, data_format=None, **kwargs):
        super().__init__(**kwargs)
        check_data_format(data_format, "ZeroPadding1D")
        self.padding = _pair(padding, "ZeroPadding1D", "padding")

    def build(self, input_shape):
        _check_ndim(self, input_shape, 3, "batch, steps, features")
        self.input_spec = InputSpec(ndim=3)
        self.built = True

    def call(self, inputs):
        return F.pad(inputs, (0, 0) + self.padding)

    def compute_output_shape(self, input_shape):
        n, steps, c = input_shape
        return (n, None if steps is None else steps + sum(self.padding), c)

    def get_config(self):
        return {**super().get_config(), "padding": list(self.padding)}


class ZeroPadding2D(Layer):
    """Rows of zeros at the top/bottom and columns at the left/right of (batch, h, w, c) images."""

    _keeps_input_dtype = True

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(**kwargs)
        check_data_format(data_format, "ZeroPadding2D")
        self.padding = _pair_of_pairs(padding, "ZeroPadding2D", "padding")

    def build(self, input_shape):
        _check_ndim(self, input_shape, 4, "batch, height, width, channels")
        self.input_spec = InputSpec(ndim=4)
        self.built = True

    def call(self, inputs):
        (t, b), (l, r) = self.padding
        return F.pad(inputs, (0, 0, l, r, t, b))

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        (t, b), (l, r) = self.padding
        return (n, None if h is None else h + t + b, None if w is None else w + l + r, c)

    def get_config(self):
        return {**super().get_config(), "padding": [list(p) for p in self.padding], "data_format": "channels_last"}


def _cropped(size, before, after, layer, input_shape):
    if size is None:
        return None
    if before + after >= size:
        raise ValueError(f"{type(layer).__name__} layer {layer.name!r}: cropping ({before}, {after}) removes all of an "
                         f"axis of size {size} (input shape {tuple(input_shape)}); it must leave at least one entry")
    return size - before - after


class Cropping1D(Layer):
    """Steps removed from the start and end of (batch, steps, features)."""

    _keeps_input_dtype = True

    def __init__(self, cropping=(1, 1), **kwargs):
        super().__init__(**kwargs)
        self.cropping = _pair(cropping, "Cropping1D", "cropping")

    def build(self, input_shape):
        _check_ndim(self, input_shape, 3, "batch, steps, features")
        self.input_spec = InputSpec(ndim=3)
        self.built = True

    def call(self, inputs):
        steps = _cropped(inputs.shape[1], *self.cropping, self, inputs.shape)
        return inputs.narrow(1, self.cropping[0], steps)

    def compute_output_shape(self, input_shape):
        n, steps, c = input_shape
        return (n, _cropped(steps, *self.cropping, self, input_shape), c)

    def get_config(self):
        return {**super().get_config(), "cropping": list(self.cropping)}


class Cropping2D(Layer):
    """Rows removed at the top/bottom and columns at the left/right of (batch, h, w, c) images."""

    _keeps_input_dtype = True

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(**kwargs)
        check_data_format(data_format, "Cropping2D")
        self.cropping = _pair_of_pairs(cropping, "Cropping2D", "cropping")

    def build(self, input_shape):
        _check_ndim(self, input_shape, 4, "batch, height, width, channels")
        self.input_spec = InputSpec(ndim=4)
        self.built = True

    def call(self, inputs):
        (t, b), (l, r) = self.cropping
        h = _cropped(inputs.shape[1], t, b, self, inputs.shape)
        w = _cropped(inputs.shape[2], l, r, self, inputs.shape)
        return inputs.narrow(1, t, h).narrow(2, l, w)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        (t, b), (l, r) = self.cropping
        return (n, _cropped(h, t, b, self, input_shape), _cropped(w, l, r, self, input_shape), c)

    def get_config(self):
        return {**super().get_config(), "cropping": [list(p) for p in self.cropping], "data_format": "channels_last"}


class Permute(Layer):
    """Reorders the non-batch axes: dims is a permutation of 1..rank-1 (the batch axis 0 stays first)."""

    _keeps_input_dtype = True

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        self.dims = tuple(dims)
        if sorted(self.dims) != list(range(1, len(self.dims) + 1)):
            raise ValueError(f"Invalid permutation argument `dims` for Permute Layer. The set of indices in `dims` "
                             f"must be consecutive and start from 1 (the batch axis 0 is not permuted). "
                             f"Received dims={dims!r}")

    def build(self, input_shape):
        if len(input_shape) != len(self.dims) + 1:
            raise ValueError(f"Permute layer {self.name!r} with dims={self.dims} expects {len(self.dims) + 1}-D input, "
                             f"got shape {tuple(input_shape)}")
        self.input_spec = InputSpec(ndim=len(self.dims) + 1)
        self.built = True

    def call(self, inputs):
        return inputs.permute(0, *self.dims)

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + tuple(input_shape[d] for d in self.dims)

    def get_config(self):
        return {**super().get_config(), "dims": list(self.dims)}


class RepeatVector(Layer):
    """(batch, features) -> (batch, n, features): the input repeated n times along a new axis 1."""

    _keeps_input_dtype = True

    def __init__(self, n, **kwargs):
        super().__init__(**kwargs)
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise TypeError(f"RepeatVector: expected `n` to be a positive integer. Received: n={n!r} of type "
                            f"{type(n).__name__}")
        self.n = n

    def build(self, input_shape):
        _check_ndim(self, input_shape, 2, "batch, features")
        self.input_spec = InputSpec(ndim=2)
        self.built = True

    def call(self, inputs):
        n, f = inputs.shape
        return inputs.unsqueeze(1).expand(n, self.n, f).contiguous()

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.n, input_shape[1])

    def get_config(self):
        return {**super().get_config(), "n": self.n}

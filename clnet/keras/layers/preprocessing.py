"""Random image augmentation: RandomFlip, RandomRotation, RandomZoom (channels-last images).

As in Keras 3 their call defaults to training=True: calling one alone augments, inside a model they augment
in fit() and pass images through unchanged in predict()/evaluate() (training=False). Each layer draws its
per-image parameters on the host from its own numpy generator, seeded by `seed` (or, for seed=None, from the
stream keras.utils.set_random_seed seeds), so a seeded layer repeats its sequence of draws. Each augmenting
call counts itself in a Python attribute: clnet.compile sees that state change, so a compiled train step
holding one of these layers runs eagerly (a replay would repeat the traced draws) and every batch is new.

Rotation and zoom are Keras's affine transform: output pixel (x, y) reads the input at
(a0 x + a1 y + a2, b0 x + b1 y + b2), bilinear or nearest, with fill_mode reflect / wrap / nearest /
constant for points outside. The source indices and weights depend only on the shape and the draws, so they
are computed on the host; the device does one gather (advanced indexing with the host array, whose gradient
is a scatter-add) and a weighted sum.
"""
from __future__ import annotations

import math

import numpy as np

import clnet

from .. import utils
from .base import Layer
from .conv import check_data_format

_FILL_MODES = ("reflect", "wrap", "constant", "nearest")
_INTERPOLATIONS = ("nearest", "bilinear")


class _RandomImageLayer(Layer):
    _cast_integer_inputs = True

    def __init__(self, seed=None, data_format=None, **kwargs):
        super().__init__(**kwargs)
        check_data_format(data_format, type(self).__name__)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise ValueError(f"{type(self).__name__}: `seed` must be an integer or None, got {seed!r}")
        self.seed = None if seed is None else int(seed)
        self._rng = None
        self._draws = 0  # augmenting calls so far (Python state: keeps compiled steps eager, see above)
        self.supports_masking = False

    def _generator(self):
        if self._rng is None:
            seed = self.seed if self.seed is not None else int(utils.host_rng().integers(2**31))
            self._rng = np.random.default_rng(seed)
        return self._rng

    def build(self, input_shape):
        if len(input_shape) not in (3, 4):
            raise ValueError(f"{type(self).__name__} layer {self.name!r} expects images (batch, height, width, "
                             f"channels) or one image (height, width, channels), got shape {tuple(input_shape)}")
        self.built = True

    def call(self, inputs, training=True):
        if not training:
            return inputs
        self._draws += 1
        single = inputs.ndim == 3
        x = inputs.unsqueeze(0) if single else inputs
        y = self._augment(x)
        return y.squeeze(0) if single else y

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "seed": self.seed, "data_format": "channels_last"}


class RandomFlip(_RandomImageLayer):
    """Flips each image left-right ("horizontal"), top-bottom ("vertical") or both with probability 1/2 (Keras's
    "horizontal_and_vertical" draws one coin per image for both flips)."""

    _MODES = ("horizontal", "vertical", "horizontal_and_vertical")

    def __init__(self, mode="horizontal_and_vertical", seed=None, data_format=None, **kwargs):
        super().__init__(seed, data_format, **kwargs)
        if mode not in self._MODES:
            raise ValueError(f"RandomFlip layer {self.name} received an unknown mode argument {mode!r}; expected one "
                             f"of {', '.join(self._MODES)}")
        self.mode = mode

    def _augment(self, x):
        flips = self._generator().uniform(size=x.shape[0]) <= 0.5
        if not flips.any():
            return x
        axes = {"horizontal": [2], "vertical": [1], "horizontal_and_vertical": [1, 2]}[self.mode]
        flipped = x.flip(axes)
        if flips.all():
            return flipped
        cond = clnet.tensor(flips.reshape(-1, 1, 1, 1), device=x.device)
        return clnet.where(cond, flipped, x)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def _factor_pair(factor, name, layer, lower_open=False):
    """A number f -> (-|f|, |f|), or a pair (lower, upper) sorted; values in [-1, 1] ((-1, 1] for zoom)."""
    def ok(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and (-1 < v <= 1 if lower_open else
                                                                             -1 <= v <= 1)
    bounds = "(-1, 1]" if lower_open else "[-1, 1]"
    if isinstance(factor, (tuple, list)) and len(factor) == 2 and all(ok(v) for v in factor):
        return tuple(float(v) for v in sorted(factor))
    if ok(factor):
        return (-abs(float(factor)), abs(float(factor)))
    raise ValueError(f"{layer}: the `{name}` argument should be a number (or a list of two numbers) in the range "
                     f"{bounds}. Received: {name}={factor!r}")


def _fix_index(index, size, mode):
    """Integer source indices mapped into [0, size) by the fill mode (constant/nearest clip; validity is
    handled apart for constant)."""
    if mode in ("constant", "nearest"):
        return np.clip(index, 0, size - 1)
    if mode == "wrap":
        return np.mod(index, size)
    # reflect: (d c b a | a b c d | d c b a), the half-sample symmetric extension
    period = 2 * size
    m = np.mod(index, period)
    return np.where(m < size, m, period - 1 - m)


def _affine_taps(matrices, height, width, interpolation, fill_mode):
    """For (N, 6) transforms [a0 a1 a2 b0 b1 b2], the flat source indices (N*H*W, taps) into the (N*H*W) pixels and
    their weights, and the weight left for fill_value (N*H*W,) (non-zero only with fill_mode="constant")."""
    m = matrices.astype(np.float32)
    n = m.shape[0]
    ys, xs = np.meshgrid(np.arange(height, dtype=np.float32), np.arange(width, dtype=np.float32), indexing="ij")
    a0, a1, a2, b0, b1, b2 = (m[:, i, None, None] for i in range(6))
    src_x = a0 * xs + a1 * ys + a2
    src_y = b0 * xs + b1 * ys + b2
    if interpolation == "nearest":
        nodes_y = [(np.round(src_y).astype(np.int64), np.ones_like(src_y))]
        nodes_x = [(np.round(src_x).astype(np.int64), np.ones_like(src_x))]
    else:
        fy, fx = np.floor(src_y), np.floor(src_x)
        wy, wx = src_y - fy, src_x - fx
        nodes_y = [(fy.astype(np.int64), 1 - wy), (fy.astype(np.int64) + 1, wy)]
        nodes_x = [(fx.astype(np.int64), 1 - wx), (fx.astype(np.int64) + 1, wx)]
    base = (np.arange(n, dtype=np.int64) * height * width)[:, None, None]
    index, weight = [], []
    fill = np.zeros((n, height, width), dtype=np.float32)
    for iy, wy_ in nodes_y:
        for ix, wx_ in nodes_x:
            w = wy_ * wx_
            if fill_mode == "constant":
                valid = (iy >= 0) & (iy < height) & (ix >= 0) & (ix < width)
                fill += np.where(valid, 0.0, w)
                w = np.where(valid, w, 0.0)
            index.append(base + _fix_index(iy, height, fill_mode) * width + _fix_index(ix, width, fill_mode))
            weight.append(w)
    taps = len(index)
    return (np.stack(index, -1).reshape(-1, taps), np.stack(weight, -1).reshape(-1, taps).astype(np.float32),
            fill.reshape(-1))


class _RandomAffine(_RandomImageLayer):
    def __init__(self, fill_mode="reflect", interpolation="bilinear", seed=None, fill_value=0.0, data_format=None,
                 **kwargs):
        super().__init__(seed, data_format, **kwargs)
        if fill_mode not in _FILL_MODES:
            raise NotImplementedError(f"Unknown `fill_mode` {fill_mode}. Expected of one {_FILL_MODES}.")
        if interpolation not in _INTERPOLATIONS:
            raise NotImplementedError(f"Unknown `interpolation` {interpolation}. Expected of one {_INTERPOLATIONS}.")
        self.fill_mode, self.interpolation, self.fill_value = fill_mode, interpolation, float(fill_value)

    def _augment(self, x):
        n, h, w, c = x.shape
        index, weight, fill = _affine_taps(self._matrices(n, h, w), h, w, self.interpolation, self.fill_mode)
        taps = index.shape[1]
        dev = x.device
        pixels = x.reshape(n * h * w, c)
        gathered = pixels[index.reshape(-1)].reshape(n * h * w, taps, c)  # host indices: checked without a read
        wt = clnet.tensor(weight.reshape(n * h * w, taps, 1).astype(self.dtype), device=dev)
        y = clnet.sum(gathered * wt, 1)
        if self.fill_mode == "constant" and self.fill_value != 0.0 and fill.any():
            y = y + clnet.tensor((fill * self.fill_value).reshape(-1, 1).astype(self.dtype), device=dev)
        return y.reshape(n, h, w, c)

    def get_config(self):
        return {**super().get_config(), "fill_mode": self.fill_mode, "interpolation": self.interpolation,
                "fill_value": self.fill_value}


class RandomRotation(_RandomAffine):
    """Rotates each image about its centre by a random angle of factor * 2 pi (factor a number f for [-f, f], or a
    (lower, upper) pair), counter-clockwise for positive values."""

    def __init__(self, factor, fill_mode="reflect", interpolation="bilinear", seed=None, fill_value=0.0,
                 data_format=None, **kwargs):
        super().__init__(fill_mode, interpolation, seed, fill_value, data_format, **kwargs)
        self.factor = _factor_pair(factor, "factor", "RandomRotation")

    def _matrices(self, n, h, w):
        angle = self._generator().uniform(self.factor[0] * 360.0, self.factor[1] * 360.0, size=n) * (math.pi / 180.0)
        cx, cy = 0.5 * (w - 1), 0.5 * (h - 1)
        cos, sin = np.cos(angle), np.sin(angle)
        a0, a1, b0, b1 = cos, -sin, sin, cos
        return np.stack([a0, a1, cx - cx * a0 - cy * a1, b0, b1, cy - cx * b0 - cy * b1], 1)

    def get_config(self):
        return {**super().get_config(), "factor": list(self.factor)}


class RandomZoom(_RandomAffine):
    """Zooms each image about its centre: height by 1 + a draw from height_factor (positive zooms out, negative
    zooms in), width by 1 + a draw from width_factor (or by the height's zoom when width_factor is None)."""

    def __init__(self, height_factor, width_factor=None, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, data_format=None, **kwargs):
        super().__init__(fill_mode, interpolation, seed, fill_value, data_format, **kwargs)
        self.height_factor = height_factor if not isinstance(height_factor, tuple) else list(height_factor)
        self.width_factor = width_factor if not isinstance(width_factor, tuple) else list(width_factor)
        self._height = _factor_pair(height_factor, "height_factor", "RandomZoom", lower_open=True)
        self._width = None if width_factor is None else _factor_pair(width_factor, "width_factor", "RandomZoom",
                                                                      lower_open=True)

    def _matrices(self, n, h, w):
        rng = self._generator()
        zy = rng.uniform(1.0 + self._height[0], 1.0 + self._height[1], size=n)
        zx = zy if self._width is None else rng.uniform(1.0 + self._width[0], 1.0 + self._width[1], size=n)
        zero = np.zeros(n)
        return np.stack([zx, zero, (w - 1) / 2.0 * (1.0 - zx), zero, zy, (h - 1) / 2.0 * (1.0 - zy)], 1)

    def get_config(self):
        return {**super().get_config(), "height_factor": self.height_factor, "width_factor": self.width_factor}

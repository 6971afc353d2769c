"""Merge layers: Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate, Dot, and their functional
forms (layers.add([a, b]), layers.concatenate([a, b]), ...). Each takes a list of tensors."""
from __future__ import annotations

import functools

import clnet

from .. import ops
from ..ops.symbolic import broadcast_shapes
from .base import Layer


class _Merge(Layer):
    supports_masking = True

    def _check_inputs(self, shapes):
        if not isinstance(shapes, (list, tuple)) or len(shapes) < 1 or not isinstance(shapes[0], (list, tuple)):
            raise ValueError(f"A merge layer should be called on a list of inputs. Received: input_shape={shapes} "
                             "(not a list of shapes)")

    def build(self, input_shape):
        self._check_inputs(input_shape)
        self.built = True

    def _merge(self, inputs):
        raise NotImplementedError

    def call(self, inputs):
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(f"A merge layer should be called on a list of inputs. Received: inputs={inputs} "
                             "(not a list of tensors)")
        return self._merge(list(inputs))

    def compute_output_shape(self, input_shape):
        self._check_inputs(input_shape)
        return functools.reduce(broadcast_shapes, [tuple(s) for s in input_shape])

    def compute_mask(self, inputs, mask=None):
        if mask is None or not isinstance(mask, (list, tuple)) or all(m is None for m in mask):
            return None
        masks = [m for m in mask if m is not None]
        return functools.reduce(clnet.logical_and, masks)


class Add(_Merge):
    def _merge(self, inputs):
        return functools.reduce(lambda a, b: a + b, inputs)


class Subtract(_Merge):
    def build(self, input_shape):
        self._check_inputs(input_shape)
        if len(input_shape) != 2:
            raise ValueError(f"A `Subtract` layer should be called on exactly 2 inputs. Received: "
                             f"input_shape={input_shape}")
        self.built = True

    def _merge(self, inputs):
        if len(inputs) != 2:
            raise ValueError(f"A `Subtract` layer should be called on exactly 2 inputs. Received: {len(inputs)}")
        return inputs[0] - inputs[1]


class Multiply(_Merge):
    def _merge(self, inputs):
        return functools.reduce(lambda a, b: a * b, inputs)


class Average(_Merge):
    def _merge(self, inputs):
        return functools.reduce(lambda a, b: a + b, inputs) * (1.0 / len(inputs))


class Maximum(_Merge):
    def _merge(self, inputs):
        return functools.reduce(clnet.maximum, inputs)


class Minimum(_Merge):
    def _merge(self, inputs):
        return functools.reduce(clnet.minimum, inputs)


class Concatenate(_Merge):
    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = int(axis)

    def build(self, input_shape):
        self._check_inputs(input_shape)
        self._shape_check(input_shape)
        self.built = True

    def _shape_check(self, shapes):
        ranks = {len(s) for s in shapes}
        if len(ranks) != 1:
            raise ValueError(f"A `Concatenate` layer requires inputs with matching shapes except for the concatenation "
                             f"axis. Received: input_shape={shapes}")
        rank = ranks.pop()
        axis = self.axis % rank
        for i in range(rank):
            if i == axis:
                continue
            sizes = {s[i] for s in shapes if s[i] is not None}
            if len(sizes) > 1:
                raise ValueError(f"A `Concatenate` layer requires inputs with matching shapes except for the "
                                 f"concatenation axis. Received: input_shape={shapes}")

    def _merge(self, inputs):
        return ops.concatenate(inputs, axis=self.axis)

    def compute_output_shape(self, input_shape):
        self._check_inputs(input_shape)
        self._shape_check(input_shape)
        out = list(input_shape[0])
        axis = self.axis % len(out)
        sizes = [s[axis] for s in input_shape]
        out[axis] = None if any(s is None for s in sizes) else sum(sizes)
        for i in range(len(out)):
            if i != axis and out[i] is None:
                out[i] = next((s[i] for s in input_shape if s[i] is not None), None)
        return tuple(out)

    def compute_mask(self, inputs, mask=None):
        """Keras's rule: each input's mask (all true where it has none) widened to the input's shape, joined
        along the axis, then reduced over the last axis."""
        if mask is None or not isinstance(mask, (list, tuple)) or all(m is None for m in mask):
            return None
        full = []
        for m, x in zip(mask, inputs):
            if m is None:
                m = clnet.ones(tuple(x.shape), dtype=clnet.bool, device=x.device)
            elif m.ndim < x.ndim:
                m = m.unsqueeze(-1).expand(*x.shape)
            full.append(m)
        return clnet.all(clnet.concat(full, self.axis), -1)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


class Dot(_Merge):
    """Dot product of two batches of vectors/matrices along `axes` (cosine similarity with normalize=True)."""

    def __init__(self, axes, normalize=False, **kwargs):
        super().__init__(**kwargs)
        self.axes = axes if isinstance(axes, int) else tuple(axes)
        self.normalize = bool(normalize)

    def _axes(self, shapes):
        axes = (self.axes, self.axes) if isinstance(self.axes, int) else self.axes
        return [a % len(s) for a, s in zip(axes, shapes)]

    def _merge(self, inputs):
        x1, x2 = inputs
        a1, a2 = self._axes([x1.shape, x2.shape])
        if self.normalize:
            x1, x2 = ops.normalize(x1, axis=a1), ops.normalize(x2, axis=a2)
        x1 = clnet.movedim(x1, a1, -1)
        x2 = clnet.movedim(x2, a2, -1)
        if x1.ndim == 2:
            return clnet.sum(x1 * x2, -1, keepdim=True)
        # batched contraction: (b, ..., k) x (b, ..., k) -> (b, rest1..., rest2...)
        b = x1.shape[0]
        left = x1.reshape(b, -1, x1.shape[-1])
        right = x2.reshape(b, -1, x2.shape[-1])
        out = clnet.matmul(left, right.transpose(1, 2))
        return out.reshape((b,) + tuple(x1.shape[1:-1]) + tuple(x2.shape[1:-1]))

    def compute_output_shape(self, input_shape):
        s1, s2 = [tuple(s) for s in input_shape]
        a1, a2 = self._axes([s1, s2])
        r1 = [d for i, d in enumerate(s1) if i != a1][1:]
        r2 = [d for i, d in enumerate(s2) if i != a2][1:]
        out = (s1[0],) + tuple(r1) + tuple(r2)
        return out if len(out) > 1 else out + (1,)

    def get_config(self):
        return {**super().get_config(), "axes": self.axes, "normalize": self.normalize}


def _functional(cls):
    def merge(inputs, **kwargs):
        return cls(**kwargs)(inputs)
    merge.__name__ = cls.__name__.lower()
    merge.__doc__ = f"Functional form of the {cls.__name__} layer: {cls.__name__}(**kwargs)(inputs)."
    return merge


add, subtract, multiply, average, maximum, minimum = (_functional(c) for c in (Add, Subtract, Multiply, Average,
                                                                                Maximum, Minimum))


def concatenate(inputs, axis=-1, **kwargs):
    """Functional form of the Concatenate layer."""
    return Concatenate(axis=axis, **kwargs)(inputs)


def dot(inputs, axes=-1, normalize=False, **kwargs):
    """Functional form of the Dot layer."""
    return Dot(axes=axes, normalize=normalize, **kwargs)(inputs)


MERGE_LAYERS = (Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate, Dot)

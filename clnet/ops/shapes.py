"""Shape arithmetic shared by the ops (pure Python, no kernels): broadcasting, axes, reshape strides,
basic-index views. Everything here raises the clear error the op would otherwise raise itself."""
from __future__ import annotations

import math

import numpy as np

from ..core.storage import contiguous_strides, normalise_shape


def broadcast_shapes(*shapes) -> tuple:
    """numpy broadcasting; the error names every shape involved."""
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(-ndim, 0):
        size = 1
        for s in shapes:
            d = s[axis] if -axis <= len(s) else 1
            if d != 1:
                if size != 1 and d != size:
                    raise ValueError("shapes " + " and ".join(str(tuple(x)) for x in shapes)
                                     + f" cannot be broadcast together (dimension {axis}: {size} vs {d})")
                size = d
        out.append(size)
    return tuple(out)


def broadcast_strides(shape_t, strides_t, shape) -> list:
    """Strides that read a tensor of (shape_t, strides_t) as the broadcast `shape` (0 on new dims)."""
    pad = len(shape) - len(shape_t)
    strides = [0] * pad
    for size, tsize, st in zip(shape[pad:], shape_t, strides_t):
        strides.append(0 if tsize == 1 and size != 1 else st)
    return strides


def axis(dim, ndim, name="dim") -> int:
    """`dim` checked against `ndim` and made non-negative (a 0-d tensor accepts 0 and -1)."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(dim).__name__}")
    if not -max(ndim, 1) <= dim < max(ndim, 1):
        raise IndexError(f"{name} {dim} is out of range for a tensor with {ndim} dimensions "
                         f"(expected {-max(ndim, 1)} to {max(ndim, 1) - 1})")
    return int(dim) % max(ndim, 1)


def dims_arg(dims) -> tuple:
    """(2, 3), [2, 3] or 2, 3 given as varargs -> a tuple."""
    return tuple(dims[0]) if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else tuple(dims)


def view_strides(shape_x, strides_x, contiguous, shape):
    """Strides that present a (shape_x, strides_x) tensor in `shape` without copying, or None.

    As numpy's _attempt_nocopy_reshape: group old and new dims into runs of equal element count; a run
    of old dims must be contiguous among itself to be re-split into new dims.
    """
    if math.prod(shape) == 0 or contiguous:
        return contiguous_strides(shape)
    old = [(s, st) for s, st in zip(shape_x, strides_x) if s != 1]
    new = list(shape)
    result = [0] * len(new)
    oi = ni = 0
    while ni < len(new) and oi < len(old):
        np_, op = new[ni], old[oi][0]
        nj, oj = ni + 1, oi + 1
        while np_ != op:
            if np_ < op:
                np_ *= new[nj]
                nj += 1
            else:
                op *= old[oj][0]
                oj += 1
        for k in range(oi, oj - 1):
            if old[k][1] != old[k + 1][0] * old[k + 1][1]:
                return None
        result[nj - 1] = old[oj - 1][1]
        for k in range(nj - 1, ni, -1):
            result[k - 1] = result[k] * new[k]
        ni, oi = nj, oj
    last = result[ni - 1] if ni else 1
    for k in range(ni, len(new)):
        result[k] = last
    return tuple(result)


def infer_shape(shape_x, shape) -> tuple:
    """The reshape target with a -1 resolved; errors name both shapes and element counts."""
    shape = list(dims_arg(shape))
    n = math.prod(shape_x)
    for s in shape:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
            raise TypeError(f"shape entries must be ints, got {s!r} in {tuple(shape)}")
        if s < -1:
            raise ValueError(f"invalid shape dimension {s} in {tuple(shape)}")
    if shape.count(-1) > 1:
        raise ValueError(f"only one dimension can be -1, got {tuple(shape)}")
    if -1 in shape:
        known = math.prod(s for s in shape if s != -1)
        if known == 0 or n % known:
            raise ValueError(f"cannot reshape a tensor of shape {tuple(shape_x)} ({n} elements) into "
                             f"{tuple(shape)}")
        shape[shape.index(-1)] = n // known
    shape = normalise_shape(tuple(int(s) for s in shape))
    if math.prod(shape) != n:
        raise ValueError(f"cannot reshape a tensor of shape {tuple(shape_x)} ({n} elements) into "
                         f"{shape} ({math.prod(shape)} elements)")
    return shape


def basic_index(x, key):
    """ints, slices, None and Ellipsis -> (shape, strides, offset) of the view of x (strides may be negative)."""
    key = key if isinstance(key, tuple) else (key,)
    n_ell = sum(k is Ellipsis for k in key)
    if n_ell > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    n_real = sum(1 for k in key if k is not None and k is not Ellipsis)
    if n_real > x.ndim:
        raise IndexError(f"too many indices for a tensor of dimension {x.ndim} (shape {tuple(x.shape)})")
    if n_ell:
        i = key.index(Ellipsis)
        key = key[:i] + (slice(None),) * (x.ndim - n_real) + key[i + 1:]
    shape, strides, offset, dim = [], [], x.offset, 0
    for k in key:
        if k is None:
            shape.append(1)
            strides.append(0)
            continue
        size, st = x.shape[dim], x.strides[dim]
        if isinstance(k, slice):
            start, stop, step = k.indices(size)
            length = len(range(start, stop, step))
            shape.append(length)
            strides.append(st * step)
            offset += start * st if length else 0
        else:
            idx = int(k)
            if not -size <= idx < size:
                raise IndexError(f"index {idx} is out of bounds for dimension {dim} with size {size}")
            offset += (idx % size) * st
        dim += 1
    shape += list(x.shape[dim:])
    strides += list(x.strides[dim:])
    return tuple(shape), tuple(strides), offset


def is_basic(key) -> bool:
    """True for keys made only of ints, slices, None and Ellipsis (they index by a view)."""
    key = key if isinstance(key, tuple) else (key,)
    return all(k is None or k is Ellipsis or isinstance(k, slice)
               or (isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_))) for k in key)


def negative_step(key) -> bool:
    key = key if isinstance(key, tuple) else (key,)
    return any(isinstance(k, slice) and k.step is not None and k.step < 0 for k in key)


def kept_shape(shape, axes, keepdim) -> tuple:
    """The shape left after reducing `axes` (size 1 there with keepdim)."""
    if keepdim:
        return tuple(1 if i in axes else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in axes)


def broadcast_view(g, shape):
    """g (already reshaped to `shape`'s rank with 1s) read as `shape` through zero strides (no copy,
    no autograd: gradient rules use it to send a reduced gradient back over the reduced axes)."""
    return g._view(tuple(shape), tuple(broadcast_strides(g.shape, g.strides, shape)))

"""Broadcasting and its adjoint: expand / broadcast_to (zero-stride views), repeat / tile (copies of a
broadcast view), and sum_to, which sums a broadcast gradient back down to an operand's shape (every
op that broadcasts its operands hands its gradient through it)."""
from __future__ import annotations

import numpy as np

from ..core.dispatch import op
from ..core.storage import TensorBase
from ..core.tape import needs_grad, record
from .movement import clone, reshape
from .reduce import sum as _sum
from .shapes import dims_arg


@op("expand")
def expand(x: TensorBase, *shape) -> TensorBase:
    """Broadcast view (stride 0 on expanded dims); -1 keeps a size."""
    shape = dims_arg(shape)
    pad = len(shape) - x.ndim
    if pad < 0:
        raise ValueError(f"cannot expand shape {tuple(x.shape)} to {tuple(shape)}: the target has fewer dims")
    new_shape, new_strides = [], []
    for i, s in enumerate(shape):
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < -1:
            raise ValueError(f"cannot expand shape {tuple(x.shape)} to {tuple(shape)}: invalid size {s!r}")
        if i < pad:
            if s == -1:
                raise ValueError(f"cannot expand shape {tuple(x.shape)} to {tuple(shape)}: -1 is not allowed in "
                                 f"a new leading dimension ({i})")
            new_shape.append(int(s))
            new_strides.append(0)
            continue
        old, st = x.shape[i - pad], x.strides[i - pad]
        if s == -1 or s == old:
            new_shape.append(old)
            new_strides.append(st)
        elif old == 1:
            new_shape.append(int(s))
            new_strides.append(0)
        else:
            raise ValueError(f"cannot expand shape {tuple(x.shape)} to {tuple(shape)}: dimension {i} has size "
                             f"{old}, which is not 1")
    y = x._view(tuple(new_shape), tuple(new_strides))
    if needs_grad(x):
        record("expand", y, (x,), lambda g: sum_to(g, x.shape), differentiable=True)
    return y


def expand_as(x: TensorBase, other: TensorBase) -> TensorBase:
    return expand(x, other.shape)


def broadcast_to(x: TensorBase, shape) -> TensorBase:
    """numpy/torch broadcast_to: expand to `shape`."""
    return expand(x, tuple(shape))


@op("repeat")
def repeat(x: TensorBase, *sizes) -> TensorBase:
    """Tile x `sizes[i]` times along each dim (torch.repeat; numpy.tile with all reps given)."""
    sizes = dims_arg(sizes)
    if len(sizes) < x.ndim:
        raise ValueError(f"repeat: {len(sizes)} repeat counts {tuple(sizes)} for a tensor with {x.ndim} dims; "
                         "give at least one per dim")
    if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0 for s in sizes):
        raise ValueError(f"repeat: counts must be non-negative ints, got {tuple(sizes)}")
    shape = (1,) * (len(sizes) - x.ndim) + tuple(x.shape)
    pairs = [v for s in shape for v in (1, s)]
    wide = [v for r, s in zip(sizes, shape) for v in (int(r), s)]
    y = clone(expand(reshape(x, pairs), wide))
    return reshape(y, tuple(int(r) * s for r, s in zip(sizes, shape)))


def tile(x: TensorBase, reps) -> TensorBase:
    """numpy.tile / torch.tile: like repeat, with missing leading counts taken as 1."""
    reps = (reps,) if isinstance(reps, (int, np.integer)) else tuple(reps)
    return repeat(x, (1,) * (x.ndim - len(reps)) + reps)


def sum_to(g: TensorBase, shape) -> TensorBase:
    """Sum a broadcast gradient back down to `shape` (the inverse of broadcasting)."""
    shape = tuple(shape)
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = list(range(lead)) + [lead + i for i, s in enumerate(shape) if s == 1 and g.shape[lead + i] != 1]
    out = _sum(g, tuple(axes), keepdim=True) if axes else g
    return reshape(out, shape)

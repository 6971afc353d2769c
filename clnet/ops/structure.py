"""Ops that select or place elements by their position: triangles (tril, triu), diagonals (diagonal, diag,
diag_embed), roll, meshgrid, take_along_dim.

They are built from other ops (views, masks from arange, concat, gather), so they need no kernel of
their own and their gradients come from the ops they use, except the diagonal view, which records its
own (the gradient lands on the diagonal of a zero tensor).
"""
from __future__ import annotations

import numpy as np

from ..core.dispatch import op
from ..core.storage import TensorBase
from ..core.tape import needs_grad, record
from .broadcast import expand
from .creation import arange, tensor, zeros
from .elementwise import check_inplace_target, copy_, copy_into, le, ge, sub, where
from .indexing import gather
from .movement import concat, contiguous, narrow, reshape
from .shapes import axis, broadcast_shapes


def _check(x, name):
    if not isinstance(x, TensorBase):
        raise TypeError(f"{name}: expected a Tensor, got {type(x).__name__}")


def _triangle(x: TensorBase, k: int, lower: bool, name: str) -> TensorBase:
    _check(x, name)
    if x.ndim < 2:
        raise ValueError(f"{name}: input must have at least 2 dimensions, got shape {tuple(x.shape)}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"{name}: diagonal must be an int, got {type(k).__name__}")
    n, m = x.shape[-2], x.shape[-1]
    rows = reshape(arange(n, device=x.device), (n, 1))
    cols = arange(m, device=x.device)
    above = sub(cols, rows)  # column - row: 0 on the main diagonal, k on the k-th
    keep = le(above, int(k)) if lower else ge(above, int(k))
    return where(keep, x, 0)


@op("tril")
def tril(input: TensorBase, diagonal=0) -> TensorBase:
    """The lower triangle of the last two dimensions (elements on and below the `diagonal`-th), zeros above."""
    return _triangle(input, diagonal, True, "tril")


@op("triu")
def triu(input: TensorBase, diagonal=0) -> TensorBase:
    """The upper triangle of the last two dimensions (elements on and above the `diagonal`-th), zeros below."""
    return _triangle(input, diagonal, False, "triu")


@op("tril_")
def tril_(input: TensorBase, diagonal=0) -> TensorBase:
    check_inplace_target("tril", input)
    return copy_(input, tril(input, diagonal))


@op("triu_")
def triu_(input: TensorBase, diagonal=0) -> TensorBase:
    check_inplace_target("triu", input)
    return copy_(input, triu(input, diagonal))


def _diagonal_view(x: TensorBase, offset: int, d1: int, d2: int) -> TensorBase:
    """The view of x's `offset`-th diagonal across dims d1, d2, appended as the last dimension."""
    s1, s2 = x.strides[d1], x.strides[d2]
    n1, n2 = x.shape[d1], x.shape[d2]
    length = max(0, min(n1, n2 - offset) if offset >= 0 else min(n1 + offset, n2))
    start = x.offset + (offset * s2 if offset >= 0 else -offset * s1) if length else x.offset
    keep = [i for i in range(x.ndim) if i not in (d1, d2)]
    return x._view(tuple(x.shape[i] for i in keep) + (length,), tuple(x.strides[i] for i in keep) + (s1 + s2,),
                   start)


@op("diagonal")
def diagonal(input: TensorBase, offset=0, dim1=0, dim2=1) -> TensorBase:
    """The `offset`-th diagonal of dims dim1 and dim2 as a view, moved to the last dimension (torch.diagonal)."""
    _check(input, "diagonal")
    if input.ndim < 2:
        raise ValueError(f"diagonal: input must have at least 2 dimensions, got shape {tuple(input.shape)}")
    d1, d2 = axis(dim1, input.ndim, "dim1"), axis(dim2, input.ndim, "dim2")
    if d1 == d2:
        raise ValueError(f"diagonal: dim1 and dim2 must differ, both are {d1}")
    y = _diagonal_view(input, int(offset), d1, d2)
    if needs_grad(input):
        def backward(g):
            full = zeros(input.shape, dtype=g.dtype, device=g.device)
            copy_into(_diagonal_view(full, int(offset), d1, d2), g)
            return full
        record("diagonal", y, (input,), backward)
    return y


_diagonal_op = diagonal  # diag's parameter is named `diagonal`, as PyTorch's


@op("diag_embed")
def diag_embed(input: TensorBase, offset=0, dim1=-2, dim2=-1) -> TensorBase:
    """Matrices whose `offset`-th diagonal (in dims dim1, dim2 of the result) holds input's last dimension."""
    _check(input, "diag_embed")
    n = input.shape[-1] if input.ndim else 1
    size = n + abs(int(offset))
    ndim = input.ndim + 1
    d1, d2 = axis(dim1, ndim, "dim1"), axis(dim2, ndim, "dim2")
    if d1 == d2:
        raise ValueError(f"diag_embed: dim1 and dim2 must differ, both are {d1}")
    rest = list(input.shape[:-1])
    shape = []
    for i in range(ndim):
        shape.append(size if i in (d1, d2) else rest.pop(0))
    out = zeros(tuple(shape), dtype=input.dtype, device=input.device)
    copy_into(_diagonal_view(out, int(offset), d1, d2), input)
    if needs_grad(input):
        record("diag_embed", out, (input,), lambda g: contiguous(diagonal(g, offset, d1, d2)))
    return out


@op("diag")
def diag(input: TensorBase, diagonal=0) -> TensorBase:
    """1-D input: a square matrix with it on the `diagonal`-th diagonal; 2-D input: that diagonal (a copy)."""
    _check(input, "diag")
    if input.ndim == 1:
        return diag_embed(input, diagonal, 0, 1)
    if input.ndim == 2:
        return contiguous(_diagonal_op(input, diagonal, 0, 1))
    raise ValueError(f"diag: input must be 1-D or 2-D, got shape {tuple(input.shape)}")


@op("roll")
def roll(input: TensorBase, shifts, dims=None) -> TensorBase:
    """Elements shifted along dims, wrapping around; without dims the flattened tensor is rolled."""
    _check(input, "roll")
    if dims is None:
        if not isinstance(shifts, (int, np.integer)):
            if len(shifts) != 1:
                raise ValueError("roll: without dims, shifts must be a single int")
            shifts = shifts[0]
        return reshape(roll(reshape(input, -1), int(shifts), 0), input.shape)
    shifts = (shifts,) if isinstance(shifts, (int, np.integer)) else tuple(shifts)
    dims = (dims,) if isinstance(dims, (int, np.integer)) else tuple(dims)
    if len(shifts) != len(dims):
        raise ValueError(f"roll: shifts {shifts} and dims {dims} must have the same length")
    y = input
    for s, dim in zip(shifts, dims):
        d = axis(dim, input.ndim)
        n = input.shape[d]
        s = int(s) % n if n else 0
        if s:
            y = concat([narrow(y, d, n - s, s), narrow(y, d, 0, n - s)], d)
    return y


@op("meshgrid")
def meshgrid(*tensors, indexing="ij") -> tuple:
    """Coordinate grids from 1-D tensors (as broadcast views); indexing 'ij' (matrix) or 'xy' (Cartesian)."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if indexing not in ("ij", "xy"):
        raise ValueError(f"meshgrid: indexing must be 'ij' or 'xy', got {indexing!r}")
    for t in tensors:
        _check(t, "meshgrid")
        if t.ndim > 1:
            raise ValueError(f"meshgrid: expects 0-D or 1-D tensors, got shape {tuple(t.shape)}")
    order = list(tensors)
    swap = indexing == "xy" and len(order) >= 2
    if swap:
        order[0], order[1] = order[1], order[0]
    sizes = tuple(t.numel() for t in order)
    out = []
    for i, t in enumerate(order):
        view = [1] * len(order)
        view[i] = sizes[i]
        out.append(expand(reshape(t, tuple(view)), sizes))
    if swap:
        out[0], out[1] = out[1], out[0]
    return tuple(out)


@op("take_along_dim")
def take_along_dim(input: TensorBase, indices, dim=None) -> TensorBase:
    """input's values at `indices` along dim, the two broadcast in the other dims (torch.take_along_dim);
    without dim, both are flattened."""
    _check(input, "take_along_dim")
    if not isinstance(indices, TensorBase):
        indices = tensor(np.asarray(indices, dtype=np.int64), device=input.device)
    if dim is None:
        return gather(reshape(input, -1), 0, reshape(indices, -1))
    if indices.ndim != input.ndim:
        raise ValueError(f"take_along_dim: indices must have as many dims as input: {tuple(indices.shape)} vs "
                         f"{tuple(input.shape)}")
    d = axis(dim, input.ndim)
    rest = broadcast_shapes(tuple(s for i, s in enumerate(input.shape) if i != d),
                            tuple(s for i, s in enumerate(indices.shape) if i != d))
    rest = list(rest)
    x_shape = tuple(rest[:d]) + (input.shape[d],) + tuple(rest[d:])
    i_shape = tuple(rest[:d]) + (indices.shape[d],) + tuple(rest[d:])
    x = input if tuple(input.shape) == x_shape else expand(input, x_shape)
    ix = indices if tuple(indices.shape) == i_shape else expand(indices, i_shape)
    return gather(x, d, ix)

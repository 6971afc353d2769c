"""keras.ops' shape, joining, indexing and linear-algebra products (numpy's names and arguments), on clnet.

Shapes of symbolic results come from numpy's function of the same name run on zero arrays
(symbolic.numpy_spec), so they follow numpy's rules exactly without touching the device.
"""
from __future__ import annotations

import builtins

import numpy as np

import clnet
from clnet import dtypes as _dt

from .numpy import _float, clnet_op
from .symbolic import (KerasTensor, as_tensor, keras_op, numpy_spec, reshape, squeeze, standardize_dtype,  # noqa: F401
                       transpose)


def _np_spec(np_fn):
    return lambda *a, **k: numpy_spec(np_fn)(*a, **k)


def _axes(axis, ndim):
    return [int(a) % ndim for a in ((axis,) if isinstance(axis, (int, np.integer)) else axis)]


@keras_op(spec=_np_spec(np.expand_dims))
def expand_dims(x, axis):
    t = as_tensor(x)
    out_ndim = t.ndim + (1 if isinstance(axis, (int, np.integer)) else len(axis))
    for a in sorted(_axes(axis, out_ndim)):
        t = t.unsqueeze(a)
    return t


@keras_op(spec=_np_spec(lambda xs, axis=0: np.concatenate(xs, axis=axis)))
def concatenate(xs, axis=0):
    tensors = [as_tensor(x) for x in xs]
    if axis is None:
        tensors, axis = [t.reshape(-1) for t in tensors], 0
    return clnet.concat(_common(tensors), int(axis))


def _common(tensors):
    """Tensors in one dtype (float if any is float), as numpy's concatenate/stack promote."""
    floats = [t.dtype for t in tensors if _dt.is_floating(t.dtype)]
    target = builtins.max(floats, key=lambda d: np.dtype(d).itemsize) if floats else None
    if target is None:
        return tensors
    return [t if t.dtype == target else t.to(dtype=target) for t in tensors]


@keras_op(spec=_np_spec(lambda xs, axis=0: np.stack(xs, axis=axis)))
def stack(x, axis=0):
    return clnet.stack(_common([as_tensor(t) for t in x]), int(axis))


def hstack(xs):
    return concatenate(xs, axis=0 if as_tensor(xs[0]).ndim == 1 else 1)


def vstack(xs):
    return concatenate([expand_dims(x, 0) if as_tensor(x).ndim == 1 else x for x in xs], axis=0)


def dstack(xs):
    parts = []
    for x in xs:
        t = as_tensor(x)
        t = t.reshape(1, -1, 1) if t.ndim == 1 else (t.unsqueeze(-1) if t.ndim == 2 else t)
        parts.append(t)
    return concatenate(parts, axis=2)


def append(x1, x2, axis=None):
    return concatenate([x1, x2], axis=axis)


@keras_op(spec=lambda x, num=None, axis=0: [KerasTensor(tuple(s for i, s in enumerate(x.shape) if i != axis % x.ndim),
                                                          x.dtype) for _ in range(num or x.shape[axis])])
def unstack(x, num=None, axis=0):
    return list(clnet.unbind(as_tensor(x), int(axis)))


def _split_spec(x, indices_or_sections, axis=0):
    arrs = np.split(np.zeros(tuple(2 if s is None else s for s in x.shape)), indices_or_sections, axis=axis)
    return [KerasTensor(tuple(None if x.shape[i] is None and i != axis % x.ndim else a.shape[i]
                              for i in range(x.ndim)), x.dtype) for a in arrs]


@keras_op(spec=_split_spec)
def split(x, indices_or_sections, axis=0):
    """numpy's split: a number of equal sections, or the indices where to cut."""
    t = as_tensor(x)
    axis = int(axis) % t.ndim
    n = t.shape[axis]
    if isinstance(indices_or_sections, (int, np.integer)):
        if n % int(indices_or_sections):
            raise ValueError(f"split: axis {axis} of size {n} does not divide into {indices_or_sections} equal parts")
        return list(clnet.split(t, n // int(indices_or_sections), axis))
    cuts = [0] + [int(i) for i in indices_or_sections] + [n]
    return [t.narrow(axis, a, builtins.max(b - a, 0)) for a, b in zip(cuts[:-1], cuts[1:])]


def array_split(x, indices_or_sections, axis=0):
    t = as_tensor(x)
    n, k = t.shape[axis], int(indices_or_sections)
    sizes = [n // k + (1 if i < n % k else 0) for i in range(k)]
    return split(x, list(np.cumsum(sizes)[:-1]), axis)


def hsplit(x, indices_or_sections):
    return split(x, indices_or_sections, axis=0 if as_tensor(x).ndim == 1 else 1)


def vsplit(x, indices_or_sections):
    return split(x, indices_or_sections, axis=0)


def dsplit(x, indices_or_sections):
    return split(x, indices_or_sections, axis=2)


@keras_op(spec=_np_spec(np.tile))
def tile(x, repeats):
    t = as_tensor(x)
    reps = (int(repeats),) if isinstance(repeats, (int, np.integer)) else tuple(int(r) for r in repeats)
    if len(reps) < t.ndim:
        reps = (1,) * (t.ndim - len(reps)) + reps
    elif len(reps) > t.ndim:
        t = t.reshape((1,) * (len(reps) - t.ndim) + tuple(t.shape))
    return clnet.tile(t, reps)


@keras_op(spec=_np_spec(np.repeat))
def repeat(x, repeats, axis=None):
    """Each element repeated `repeats` times along `axis` (numpy's repeat, not tile)."""
    t = as_tensor(x)
    if axis is None:
        t, axis = t.reshape(-1), 0
    axis = int(axis) % t.ndim
    if not isinstance(repeats, (int, np.integer)):
        idx = np.repeat(np.arange(t.shape[axis]), np.asarray(repeats))
        return clnet.index_select(t, axis, clnet.tensor(idx.astype(np.int64), device=t.device))
    r = int(repeats)
    expanded = t.unsqueeze(axis + 1)
    shape = list(expanded.shape)
    shape[axis + 1] = r
    out_shape = list(t.shape)
    out_shape[axis] *= r
    return expanded.expand(*shape).reshape(out_shape)


@keras_op(spec=_np_spec(np.flip))
def flip(x, axis=None):
    t = as_tensor(x)
    return clnet.flip(t, list(range(t.ndim)) if axis is None else _axes(axis, t.ndim))


def fliplr(x):
    return flip(x, 1)


def flipud(x):
    return flip(x, 0)


@keras_op(spec=_np_spec(np.roll))
def roll(x, shift, axis=None):
    t = as_tensor(x)
    if axis is None:
        return roll(t.reshape(-1), shift, 0).reshape(tuple(t.shape))
    shifts = (shift,) if isinstance(shift, (int, np.integer)) else tuple(shift)
    axes = _axes(axis, t.ndim)
    if len(shifts) == 1 and len(axes) > 1:
        shifts = shifts * len(axes)
    for s, a in zip(shifts, axes):
        n = t.shape[a]
        s = int(s) % n if n else 0
        if s:
            t = clnet.concat([t.narrow(a, n - s, s), t.narrow(a, 0, n - s)], a)
    return t


@keras_op(spec=_np_spec(np.moveaxis))
def moveaxis(x, source, destination):
    return clnet.movedim(as_tensor(x), source, destination)


@keras_op(spec=_np_spec(np.swapaxes))
def swapaxes(x, axis1, axis2):
    return as_tensor(x).transpose(int(axis1), int(axis2))


@keras_op(spec=_np_spec(np.ravel))
def ravel(x):
    return as_tensor(x).reshape(-1)


@keras_op(spec=lambda x, shape: KerasTensor(tuple(shape), x.dtype))
def broadcast_to(x, shape):
    t = as_tensor(x)
    shape = tuple(int(s) for s in shape)
    if t.ndim < len(shape):
        t = t.reshape((1,) * (len(shape) - t.ndim) + tuple(t.shape))
    return t.expand(*shape)


def _take_spec(x, indices, axis=None):
    idx = indices if isinstance(indices, KerasTensor) else np.asarray(
        indices.numpy() if isinstance(indices, clnet.Tensor) else indices)
    idx_shape = idx.shape
    if axis is None:
        return KerasTensor(tuple(idx_shape), x.dtype)
    axis = axis % x.ndim
    return KerasTensor(x.shape[:axis] + tuple(idx_shape) + x.shape[axis + 1:], x.dtype)


@keras_op(spec=_take_spec)
def take(x, indices, axis=None):
    """Elements at `indices` along `axis` (of the flattened x without one); negative indices count from the end."""
    t = as_tensor(x)
    idx = as_tensor(indices)
    if _dt.is_floating(idx.dtype):
        raise TypeError("take: indices must be integers")
    if axis is None:
        t, axis = t.reshape(-1), 0
    axis = int(axis) % t.ndim
    n = t.shape[axis]
    idx = idx.to(dtype=_dt.int64)
    idx = clnet.where(idx < 0, idx + n, idx)
    flat = clnet.index_select(t, axis, idx.reshape(-1))
    return flat.reshape(tuple(t.shape[:axis]) + tuple(idx.shape) + tuple(t.shape[axis + 1:]))


@keras_op(spec=lambda x, indices, axis=None: KerasTensor(
    indices.shape if isinstance(indices, KerasTensor) else np.shape(indices), x.dtype))
def take_along_axis(x, indices, axis=None):
    t, idx = as_tensor(x), as_tensor(indices).to(dtype=_dt.int64)
    if axis is None:
        t, axis = t.reshape(-1), 0
    axis = int(axis) % t.ndim
    idx = clnet.where(idx < 0, idx + t.shape[axis], idx)
    shape = [builtins.max(a, b) if i != axis else b for i, (a, b) in enumerate(zip(t.shape, idx.shape))]
    t = t.expand(*[s if i == axis else shape[i] for i, s in enumerate(t.shape)])
    return clnet.gather(t, axis, idx.expand(*shape))


@keras_op(spec=_np_spec(np.diagonal))
def diagonal(x, offset=0, axis1=0, axis2=1):
    t = as_tensor(x)
    a1, a2 = int(axis1) % t.ndim, int(axis2) % t.ndim
    moved = clnet.movedim(t, (a1, a2), (-2, -1))
    rows, cols = moved.shape[-2], moved.shape[-1]
    r0, c0 = (0, offset) if offset >= 0 else (-offset, 0)
    n = builtins.max(0, builtins.min(rows - r0, cols - c0))
    flat = moved.reshape(tuple(moved.shape[:-2]) + (rows * cols,))
    idx = clnet.tensor(((np.arange(n) + r0) * cols + np.arange(n) + c0).astype(np.int64), device=t.device)
    return clnet.index_select(flat, flat.ndim - 1, idx)


@keras_op(spec=_np_spec(np.diag))
def diag(x, k=0):
    t = as_tensor(x)
    if t.ndim == 2:
        return diagonal(t, k)
    n = t.shape[0] + builtins.abs(k)
    eye = clnet.tensor(np.eye(n, k=k, dtype=np.dtype(t.dtype)), device=t.device)
    padded = clnet.concat([t, clnet.zeros((builtins.abs(k),), dtype=t.dtype, device=t.device)]) if k else t
    rolled = padded if k >= 0 else roll(padded, -k)
    return eye * (rolled.reshape(1, n) if k >= 0 else rolled.reshape(n, 1))


def diagflat(x, k=0):
    return diag(ravel(x), k)


@keras_op(spec=_np_spec(np.trace))
def trace(x, offset=0, axis1=0, axis2=1):
    return clnet.sum(diagonal(x, offset, axis1, axis2), -1)


def _tri_mask(t, k, lower):
    rows, cols = t.shape[-2], t.shape[-1]
    mask = np.tri(rows, cols, k, dtype=bool) if lower else ~np.tri(rows, cols, k - 1, dtype=bool)
    return clnet.tensor(mask, device=t.device)


@keras_op(spec=_np_spec(np.tril))
def tril(x, k=0):
    t = as_tensor(x)
    return clnet.where(_tri_mask(t, k, True), t, clnet.zeros((), dtype=t.dtype, device=t.device))


@keras_op(spec=_np_spec(np.triu))
def triu(x, k=0):
    t = as_tensor(x)
    return clnet.where(_tri_mask(t, k, False), t, clnet.zeros((), dtype=t.dtype, device=t.device))


def _pad_spec(x, pad_width, mode="constant", constant_values=None):
    return numpy_spec(lambda a: np.pad(a, pad_width))(x)


@keras_op(spec=_pad_spec)
def pad(x, pad_width, mode="constant", constant_values=None):
    """numpy's pad (mode "constant", "reflect" or "symmetric"; constant_values for "constant")."""
    t = as_tensor(x)
    widths = np.broadcast_to(np.asarray(pad_width, dtype=np.int64).reshape(-1, 2) if np.ndim(pad_width) else
                             np.full((1, 2), int(pad_width)), (t.ndim, 2))
    if mode not in ("constant", "reflect", "symmetric"):
        raise ValueError(f"pad: mode must be 'constant', 'reflect' or 'symmetric', got {mode!r}")
    if mode == "constant":
        flat = []
        for before, after in widths[::-1]:
            flat += [int(before), int(after)]
        return clnet.nn.functional.pad(t, tuple(flat), value=float(constant_values or 0))
    for axis, (before, after) in enumerate(widths):
        n, shift = t.shape[axis], 1 if mode == "reflect" else 0
        parts = []
        if before:
            parts.append(clnet.flip(t.narrow(axis, shift, int(before)), [axis]))
        parts.append(t)
        if after:
            parts.append(clnet.flip(t.narrow(axis, n - int(after) - shift, int(after)), [axis]))
        t = clnet.concat(parts, axis) if len(parts) > 1 else t
    return t


@keras_op(spec=_np_spec(np.diff))
def diff(a, n=1, axis=-1):
    t = as_tensor(a)
    for _ in range(int(n)):
        size = t.shape[axis]
        t = t.narrow(axis, 1, size - 1) - t.narrow(axis, 0, size - 1)
    return t


def meshgrid(*x, indexing="xy"):
    tensors = [as_tensor(v).reshape(-1) for v in x]
    shape = [t.shape[0] for t in tensors]
    if indexing == "xy" and len(tensors) >= 2:
        shape[0], shape[1] = shape[1], shape[0]
    out = []
    for i, t in enumerate(tensors):
        axis = {0: 1, 1: 0}.get(i, i) if indexing == "xy" and len(tensors) >= 2 else i
        view = [1] * len(shape)
        view[axis] = t.shape[0]
        out.append(t.reshape(view).expand(*shape))
    return out


# --- products ---------------------------------------------------------------------------------------
@keras_op(spec=_np_spec(np.dot))
def dot(x1, x2):
    a, b = as_tensor(x1), as_tensor(x2)
    if a.ndim == 0 or b.ndim == 0:
        return a * b
    if b.ndim <= 2:
        return clnet.matmul(a, b)
    moved = clnet.movedim(b, -2, 0)  # numpy: sum over a's last and b's second-to-last axis
    out = clnet.matmul(a.reshape(-1, a.shape[-1]), moved.reshape(moved.shape[0], -1))
    return out.reshape(tuple(a.shape[:-1]) + tuple(moved.shape[1:]))


@keras_op(spec=_np_spec(np.outer))
def outer(x1, x2):
    a, b = as_tensor(x1).reshape(-1, 1), as_tensor(x2).reshape(1, -1)
    return a * b


@keras_op(spec=_np_spec(np.inner))
def inner(x1, x2):
    a, b = as_tensor(x1), as_tensor(x2)
    if a.ndim == 0 or b.ndim == 0:
        return a * b
    return clnet.matmul(a, b.transpose(-1, -2) if b.ndim > 1 else b)


@keras_op(spec=lambda x1, x2: KerasTensor((), x1.dtype))
def vdot(x1, x2):
    return clnet.sum(as_tensor(x1).reshape(-1) * as_tensor(x2).reshape(-1))


@keras_op(spec=_np_spec(lambda a, b, axes=2: np.tensordot(a, b, axes)))
def tensordot(x1, x2, axes=2):
    a, b = as_tensor(x1), as_tensor(x2)
    if isinstance(axes, (int, np.integer)):
        axes_a, axes_b = list(range(a.ndim - int(axes), a.ndim)), list(range(int(axes)))
    else:
        axes_a, axes_b = [list(np.atleast_1d(v)) for v in axes]
    axes_a, axes_b = [x % a.ndim for x in axes_a], [x % b.ndim for x in axes_b]
    free_a = [i for i in range(a.ndim) if i not in axes_a]
    free_b = [i for i in range(b.ndim) if i not in axes_b]
    k = int(np.prod([a.shape[i] for i in axes_a]))
    am = a.permute(*(free_a + axes_a)).reshape(-1, k)
    bm = b.permute(*(axes_b + free_b)).reshape(k, -1)
    return clnet.matmul(am, bm).reshape(tuple(a.shape[i] for i in free_a) + tuple(b.shape[i] for i in free_b))


@keras_op(spec=_np_spec(np.kron))
def kron(x1, x2):
    a, b = as_tensor(x1), as_tensor(x2)
    if a.ndim != 2 or b.ndim != 2:
        raise NotImplementedError("kron: only 2-D inputs are supported")
    out = a.reshape(a.shape[0], 1, a.shape[1], 1) * b.reshape(1, b.shape[0], 1, b.shape[1])
    return out.reshape(a.shape[0] * b.shape[0], a.shape[1] * b.shape[1])


@keras_op(spec=lambda x1, x2, *a, **k: numpy_spec(np.cross)(x1, x2))
def cross(x1, x2, axisa=-1, axisb=-1, axisc=-1, axis=None):
    a, b = _float(x1), _float(x2)
    if a.shape[-1] != 3 or b.shape[-1] != 3:
        raise NotImplementedError("cross: only 3-vectors along the last axis are supported")
    a0, a1, a2 = clnet.unbind(a, -1)
    b0, b1, b2 = clnet.unbind(b, -1)
    return clnet.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], -1)


def einsum(subscripts, *operands, **kwargs):
    """einsum through clnet.einsum when clnet has it; else the contraction as permute/reshape/matmul."""
    fn = getattr(clnet, "einsum", None)
    if fn is not None:
        return fn(subscripts, *[as_tensor(o) for o in operands])
    return _einsum_by_matmul(subscripts, [as_tensor(o) for o in operands])


def _einsum_by_matmul(subscripts, operands):
    if "->" not in subscripts:
        ins = subscripts.replace(" ", "")
        letters = sorted({c for c in ins if c.isalpha() and ins.count(c) == 1})
        subscripts = ins + "->" + "".join(letters)
    lhs, out = subscripts.replace(" ", "").split("->")
    terms = lhs.split(",")
    if len(terms) == 1:
        (t,), term = operands, terms[0]
        summed = [i for i, c in enumerate(term) if c not in out]
        if summed:
            t = clnet.sum(t, tuple(summed))
            term = "".join(c for c in term if c in out)
        return t.permute(*[term.index(c) for c in out]) if term != out else t
    if len(terms) != 2 or "..." in subscripts:
        raise NotImplementedError("einsum without clnet.einsum supports one or two operands and no '...'")
    (a, b), (ta, tb) = operands, terms
    batch = [c for c in ta if c in tb and c in out]
    contract = [c for c in ta if c in tb and c not in out]
    free_a = [c for c in ta if c not in tb]
    free_b = [c for c in tb if c not in ta]
    for t, term, free in ((a, ta, free_a), (b, tb, free_b)):
        lost = [c for c in free if c not in out]
        if lost:
            raise NotImplementedError(f"einsum: index {lost[0]!r} summed within one operand is not supported")
    size = {c: n for term, t in ((ta, a), (tb, b)) for c, n in zip(term, t.shape)}
    ap = a.permute(*[ta.index(c) for c in batch + free_a + contract]).reshape(
        [size[c] for c in batch] + [int(np.prod([size[c] for c in free_a])), int(np.prod([size[c] for c in contract]))])
    bp = b.permute(*[tb.index(c) for c in batch + contract + free_b]).reshape(
        [size[c] for c in batch] + [int(np.prod([size[c] for c in contract])), int(np.prod([size[c] for c in free_b]))])
    res = clnet.matmul(ap, bp).reshape([size[c] for c in batch + free_a + free_b])
    order = batch + free_a + free_b
    return res.permute(*[order.index(c) for c in out]) if order != list(out) else res


# --- sorting and searching --------------------------------------------------------------------------
@keras_op(spec=_np_spec(np.sort))
def sort(x, axis=-1):
    values = clnet_op("sort")(as_tensor(x), int(axis))
    return values[0] if isinstance(values, tuple) else values


@keras_op(spec=lambda x, axis=-1: KerasTensor(x.shape, "int32"))
def argsort(x, axis=-1):
    return clnet_op("argsort")(as_tensor(x), int(axis)).to(dtype=_dt.int32)


def nonzero(x):
    return tuple(i.to(dtype=_dt.int32) for i in clnet.nonzero(as_tensor(x), as_tuple=True))


def bincount(x, weights=None, minlength=0, sparse=False):
    t = as_tensor(x).to(dtype=_dt.int64).reshape(-1)
    n = builtins.max(int(clnet.amax(t).item()) + 1 if t.numel() else 0, int(minlength))
    w = clnet.ones(tuple(t.shape), dtype=_dt.int32, device=t.device) if weights is None else as_tensor(weights)
    return clnet.scatter_add(clnet.zeros((n,), dtype=w.dtype, device=t.device), 0, t, w)


# --- shape facts ------------------------------------------------------------------------------------
def ndim(x):
    return len(x.shape) if isinstance(x, KerasTensor) else as_tensor(x).ndim


def size(x):
    shape = x.shape if isinstance(x, KerasTensor) else as_tensor(x).shape
    return None if builtins.any(s is None for s in shape) else int(np.prod(shape))


def select(condlist, choicelist, default=0):
    out = as_tensor(default, None) if not isinstance(default, (int, float)) else default
    for cond, choice in reversed(list(zip(condlist, choicelist))):
        c = as_tensor(choice)
        out = clnet.where(as_tensor(cond), c, out if isinstance(out, clnet.Tensor) else
                          clnet.full((), out, dtype=c.dtype, device=c.device))
    return out

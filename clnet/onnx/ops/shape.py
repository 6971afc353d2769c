"""ONNX operators that move, reshape, slice, gather, pad, make or convert values.

On host arrays (shape arithmetic, constants) these compute with numpy; on tensors with clnet's views and
copies, which autograd records.
"""
from __future__ import annotations

import math

import numpy as np

from ... import cumsum as _cumsum_op, einsum as _einsum, nonzero as _nonzero_op, topk as _topk_op, tril as _tril
from ... import triu as _triu
from ... import (concat as _concat, expand as _expand, flip as _flip, gather as _gather,
                 index_select as _index_select, permute as _permute, reshape as _reshape, split as _split,
                 squeeze as _squeeze, tile as _tile, unsqueeze as _unsqueeze, where as _where)
from ...nn import functional as F
from ..proto import numpy_dtype
from .common import all_host, axes_input, axis, host, ints


def _shape(ctx, node, x):
    dims = np.array(tuple(x.shape), dtype=np.int64)
    start, end = node.attrs.get("start", 0), node.attrs.get("end")
    return dims[start:end]


def _size(ctx, node, x):
    return np.array(math.prod(tuple(x.shape)), dtype=np.int64)


def _identity(ctx, node, x):
    return x


def _target_shape(node, x, shape, allowzero):
    """Reshape's target: 0 copies the input's dimension unless allowzero, -1 is inferred."""
    out = list(shape)
    if out.count(-1) > 1:
        raise ValueError(f"{node.where()}: the shape {shape} has more than one -1")
    if not allowzero:
        for i, s in enumerate(out):
            if s == 0:
                if i >= len(x.shape):
                    raise ValueError(f"{node.where()}: shape {shape} copies dimension {i} of an input of shape "
                                     f"{tuple(x.shape)}, which has none")
                out[i] = x.shape[i]
    return tuple(out)


def _reshape_run(ctx, node, x, shape):
    target = _target_shape(node, x, ints(shape), node.attrs.get("allowzero", 0))
    if all_host(x):
        return np.reshape(x, target)
    return _reshape(x, target)


def _flatten(ctx, node, x):
    r = len(x.shape)
    a = node.attrs.get("axis", 1)
    if not -r <= a <= r:
        raise ValueError(f"{node.where()}: axis {a} is out of range for a {r}-dimensional input")
    a = a % r if a < 0 else a
    target = (math.prod(x.shape[:a]), math.prod(x.shape[a:]))
    return np.reshape(x, target) if all_host(x) else _reshape(x, target)


def _transpose(ctx, node, x):
    perm = node.attrs.get("perm") or list(range(len(x.shape)))[::-1]
    return np.transpose(x, perm) if all_host(x) else _permute(x, *perm)


def _squeeze_run(ctx, node, x, axes=None):
    axes = axes_input(ctx, node, (x, axes), 1)
    r = len(x.shape)
    if axes is None:
        axes = [i for i, s in enumerate(x.shape) if s == 1]
    axes = sorted({axis(a, r, node) for a in axes})
    for a in axes:
        if x.shape[a] != 1:
            raise ValueError(f"{node.where()}: cannot squeeze axis {a} of size {x.shape[a]} "
                             f"(input shape {tuple(x.shape)})")
    if all_host(x):
        return np.squeeze(x, axis=tuple(axes))
    return _squeeze(x, tuple(axes)) if axes else x


def _unsqueeze_run(ctx, node, x, axes=None):
    axes = axes_input(ctx, node, (x, axes), 1)
    r = len(x.shape) + len(axes)
    axes = sorted(axis(a, r, node) for a in axes)
    if len(set(axes)) != len(axes):
        raise ValueError(f"{node.where()}: axes {axes} repeat an axis")
    if all_host(x):
        return np.expand_dims(x, tuple(axes))
    for a in axes:
        x = _unsqueeze(x, a)
    return x


def _concat_run(ctx, node, *values):
    values = [v for v in values if v is not None]
    r = len(values[0].shape)
    a = axis(node.attrs["axis"], r, node)
    if all_host(*values):
        return np.concatenate(values, axis=a)
    return _concat([ctx.tensor(v) for v in values], a)


def _split_run(ctx, node, x, split=None):
    r = len(x.shape)
    a = axis(node.attrs.get("axis", 0), r, node)
    n = len(node.outputs)
    sizes = ints(split) if split is not None else node.attrs.get("split")
    if sizes is None:
        step = -(-x.shape[a] // n)  # ONNX: equal parts, the last one smaller (opset 18's num_outputs)
        sizes = [min(step, x.shape[a] - i * step) for i in range(n)]
    sizes = [int(s) for s in sizes]
    if len(sizes) != n or sum(sizes) != x.shape[a]:
        raise ValueError(f"{node.where()}: split sizes {sizes} do not cut axis {a} of shape {tuple(x.shape)} into "
                         f"{n} outputs")
    if all_host(x):
        return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=a))
    return tuple(_split(x, sizes, a))


def _slice_key(node, shape, starts, ends, axes, steps):
    """The Python index (a tuple of slices) for ONNX Slice's starts/ends/axes/steps on `shape`."""
    r = len(shape)
    axes = list(range(len(starts))) if axes is None else [axis(a, r, node) for a in axes]
    steps = [1] * len(starts) if steps is None else steps
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ValueError(f"{node.where()}: starts {starts}, ends {ends}, axes {axes} and steps {steps} differ in "
                         "length")
    key = [slice(None)] * r
    for s, e, a, st in zip(starts, ends, axes, steps):
        if st == 0:
            raise ValueError(f"{node.where()}: a step of 0 on axis {a}")
        dim = shape[a]
        # clamp as ONNX says (ends may be +-2**63 for "to the end"), then write a slice Python reads the same way
        start, stop, step = slice(s, e, st).indices(dim)
        span = range(start, stop, step)
        if not span:
            key[a] = slice(0, 0)
        else:
            last = span[-1]
            stop = last + (1 if step > 0 else -1)
            key[a] = slice(span[0], None if stop < 0 else stop, step)
    return tuple(key)


def _slice_run(ctx, node, x, starts=None, ends=None, axes=None, steps=None):
    if ctx.opset < 10:
        starts, ends = node.attrs["starts"], node.attrs["ends"]
        axes = node.attrs.get("axes")
    else:
        starts, ends = ints(starts), ints(ends)
        axes = None if axes is None else ints(axes)
        steps = None if steps is None else ints(steps)
    key = _slice_key(node, tuple(x.shape), list(starts), list(ends), axes, steps)
    return x[key]


def _gather_run(ctx, node, data, indices):
    r = len(data.shape)
    a = axis(node.attrs.get("axis", 0), r, node)
    dim = data.shape[a]
    if all_host(indices):
        idx = np.where(indices < 0, indices + dim, indices)
        if idx.size and (idx.min() < 0 or idx.max() >= dim):
            raise IndexError(f"{node.where()}: an index is out of range for axis {a} of size {dim}")
        if all_host(data):
            return np.take(data, idx, axis=a)
        if idx.ndim == 0:
            return data[(slice(None),) * a + (int(idx),)]
        flat = ctx.tensor(idx.reshape(-1).astype(np.int64))
    else:
        flat = _reshape(indices, (-1,))
        flat = _where(flat < 0, flat + dim, flat)
    out = _index_select(ctx.tensor(data), a, flat)
    return _reshape(out, tuple(data.shape[:a]) + tuple(indices.shape) + tuple(data.shape[a + 1:]))


def _gather_elements(ctx, node, data, indices):
    a = axis(node.attrs.get("axis", 0), len(data.shape), node)
    if all_host(data, indices):
        return np.take_along_axis(data, indices, axis=a)
    idx = ctx.tensor(indices)
    idx = _where(idx < 0, idx + data.shape[a], idx)
    return _gather(ctx.tensor(data), a, idx)


def _expand_run(ctx, node, x, shape):
    target = np.broadcast_shapes(tuple(x.shape), tuple(ints(shape)))
    if all_host(x):
        return np.broadcast_to(x, target).copy()
    return x if tuple(x.shape) == target else _expand(x, target)


def _tile_run(ctx, node, x, repeats):
    reps = ints(repeats)
    return np.tile(x, reps) if all_host(x) else _tile(x, reps)


def _edge_or_reflect(x, axis_, before, after, mode, node):
    """x padded along one axis by repeating its edge or reflecting it (the edge itself not repeated)."""
    n = x.shape[axis_]
    if mode == "reflect" and (before >= n or after >= n):
        raise ValueError(f"{node.where()}: reflect padding of {max(before, after)} needs an axis longer than that, "
                         f"axis {axis_} has {n}")

    def take(start, stop):
        return x[(slice(None),) * axis_ + (slice(start, stop),)]
    parts = []
    if before:
        parts.append(_concat([take(0, 1)] * before, axis_) if mode == "edge" else _flip(take(1, before + 1), [axis_]))
    parts.append(x)
    if after:
        parts.append(_concat([take(n - 1, n)] * after, axis_) if mode == "edge" else
                     _flip(take(n - 1 - after, n - 1), [axis_]))
    return _concat(parts, axis_) if len(parts) > 1 else x


def _pad_run(ctx, node, x, pads=None, value=None, axes=None):
    mode = node.attrs.get("mode", "constant")
    if isinstance(mode, bytes):
        mode = mode.decode()
    if ctx.opset < 11:
        pads, value = node.attrs["pads"], node.attrs.get("value", 0.0)
    else:
        pads = ints(pads)
        value = 0 if value is None else host(value).item()
    r = len(x.shape)
    axes = list(range(r)) if axes is None else [axis(a, r, node) for a in ints(axes)]
    if len(pads) != 2 * len(axes):
        raise ValueError(f"{node.where()}: {len(pads)} pads for {len(axes)} axes")
    before, after = dict(zip(axes, pads[:len(axes)])), dict(zip(axes, pads[len(axes):]))
    if all_host(x):
        width = [(before.get(i, 0), after.get(i, 0)) for i in range(r)]
        if mode == "constant":
            return np.pad(x, width, mode="constant", constant_values=value)
        return np.pad(x, width, mode={"edge": "edge", "reflect": "reflect"}.get(mode, mode))
    if mode == "constant":
        flat = []
        for i in reversed(range(r)):  # torch's order: the last axis first
            flat += [before.get(i, 0), after.get(i, 0)]
        while len(flat) > 2 and flat[-2:] == [0, 0]:
            flat = flat[:-2]
        return F.pad(x, flat, value=value) if any(flat) else x
    if mode not in ("edge", "reflect"):
        raise node.unsupported(f"mode {mode!r}")
    if any(p < 0 for p in pads):
        raise node.unsupported(f"negative pads with mode {mode!r}")
    for i in axes:
        x = _edge_or_reflect(x, i, before[i], after[i], mode, node)
    return x


# --- making and converting values ---------------------------------------------------------------------------
def _constant(ctx, node):
    a = node.attrs
    if "value" in a:
        return a["value"]
    if "value_float" in a:
        return np.array(a["value_float"], dtype=np.float32)
    if "value_floats" in a:
        return np.array(a["value_floats"], dtype=np.float32)
    if "value_int" in a:
        return np.array(a["value_int"], dtype=np.int64)
    if "value_ints" in a:
        return np.array(a["value_ints"], dtype=np.int64)
    raise node.unsupported(f"a constant given as {sorted(a) or 'nothing'}")


def _constant_of_shape(ctx, node, shape):
    value = node.attrs.get("value")
    value = np.zeros((), np.float32) if value is None else np.asarray(value).reshape(())
    return np.full(tuple(ints(shape)), value, dtype=value.dtype)


def _range(ctx, node, start, limit, delta):
    start, limit, delta = host(start), host(limit), host(delta)
    return np.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype)


def _cast_to(ctx, x, dtype):
    if all_host(x):
        return x.astype(dtype)
    return x if x.dtype == dtype else x.to(dtype)


def _cast(ctx, node, x):
    return _cast_to(ctx, x, numpy_dtype(node.attrs["to"], f"{node.where()}'s target type"))


def _cast_like(ctx, node, x, like):
    return _cast_to(ctx, x, np.dtype(like.dtype))


# --- resizing and one-hot -------------------------------------------------------------------------------------
def _source_coordinates(node, mode, size_in, size_out, scale):
    """Where each output position of one axis samples the input (ONNX Resize's coordinate_transformation_mode),
    in float32 as onnxruntime computes it (ties of nearest rounding fall as they fall there)."""
    o, scale = np.arange(size_out, dtype=np.float32), np.float32(scale)
    if mode == "half_pixel":
        return (o + np.float32(0.5)) / scale - np.float32(0.5)
    if mode == "pytorch_half_pixel":
        return (o + np.float32(0.5)) / scale - np.float32(0.5) if size_out > 1 else np.zeros(size_out)
    if mode == "align_corners":
        return o * np.float32(size_in - 1) / np.float32(size_out - 1) if size_out > 1 else np.zeros(size_out)
    if mode == "asymmetric":
        return o / scale
    raise node.unsupported(f"coordinate_transformation_mode={mode!r}")


def _nearest(node, x):
    rule = node.attrs.get("nearest_mode", "round_prefer_floor")
    frac = x - np.floor(x)
    if rule == "round_prefer_floor":
        return np.where(frac == 0.5, np.floor(x), np.round(x))
    if rule == "round_prefer_ceil":
        return np.where(frac == 0.5, np.ceil(x), np.round(x))
    if rule in ("floor", "ceil"):
        return getattr(np, rule)(x)
    raise node.unsupported(f"nearest_mode={rule!r}")


def _resize(ctx, node, x, roi=None, scales=None, sizes=None):
    """Nearest and (bi)linear resizing as gathers along each resized axis (linear: a weighted sum of two)."""
    at = node.attrs
    mode = at.get("mode", "nearest")
    if mode not in ("nearest", "linear"):
        raise node.unsupported(f"mode={mode!r} (clnet resizes with 'nearest' and 'linear')")
    if at.get("antialias", 0) or at.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise node.unsupported("antialias / keep_aspect_ratio_policy")
    r = len(x.shape)
    axes = [axis(a, r, node) for a in at.get("axes", range(r))]
    if sizes is not None and host(sizes).size:
        out = dict(zip(axes, ints(sizes)))
        scale = {a: out[a] / x.shape[a] for a in axes}
    else:
        scale = dict(zip(axes, (float(s) for s in host(scales).reshape(-1))))
        out = {a: int(np.floor(x.shape[a] * scale[a])) for a in axes}
    coord_mode = at.get("coordinate_transformation_mode", "half_pixel")
    y = ctx.tensor(x)
    for a in axes:
        size_in, size_out = x.shape[a], out[a]
        if size_in == size_out and scale[a] == 1.0:
            continue
        src = _source_coordinates(node, coord_mode, size_in, size_out, scale[a])
        if mode == "nearest":
            idx = np.clip(_nearest(node, src), 0, size_in - 1).astype(np.int64)
            y = _index_select(y, a, ctx.tensor(idx))
            continue
        src = np.clip(src, 0, size_in - 1)
        lo = np.floor(src).astype(np.int64)
        hi = np.minimum(lo + 1, size_in - 1)
        w = (src - lo).astype(np.dtype(y.dtype)).reshape((-1,) + (1,) * (r - 1 - a))
        first = _index_select(y, a, ctx.tensor(lo))
        y = first + (_index_select(y, a, ctx.tensor(hi)) - first) * ctx.tensor(w)
    return y


def _one_hot(ctx, node, indices, depth, values):
    depth = int(host(depth).reshape(-1)[0])
    off, on = (v.item() for v in host(values).reshape(-1)[:2])
    r = len(indices.shape) + 1
    a = axis(node.attrs.get("axis", -1), r, node)
    classes = np.arange(depth, dtype=np.int64).reshape((-1,) + (1,) * (r - 1 - a))
    if all_host(indices):
        idx = np.expand_dims(np.where(indices < 0, indices + depth, indices), a)
        return np.where(idx == classes, on, off).astype(host(values).dtype)
    idx = _unsqueeze(ctx.tensor(indices), a)
    idx = _where(idx < 0, idx + depth, idx)
    hot = idx == ctx.tensor(classes).to(idx.dtype)
    return _where(hot, ctx.tensor(np.asarray(on, host(values).dtype)), ctx.tensor(np.asarray(off, host(values).dtype)))


# --- scans, sorting, triangles, einsum -------------------------------------------------------------------------
def _cumsum(ctx, node, x, axis_):
    a = axis(int(host(axis_).reshape(-1)[0]), len(x.shape), node)
    x = ctx.tensor(x)
    if node.attrs.get("reverse", 0):
        x = _flip(x, [a])
    y = _cumsum_op(x, a)
    if node.attrs.get("exclusive", 0):
        y = y - x
    return _flip(y, [a]) if node.attrs.get("reverse", 0) else y


def _topk(ctx, node, x, k):
    a = axis(node.attrs.get("axis", -1), len(x.shape), node)
    values, indices = _topk_op(ctx.tensor(x), int(host(k).reshape(-1)[0]), a,
                               largest=bool(node.attrs.get("largest", 1)), sorted=True)
    return values, indices if indices.dtype == np.int64 else indices.to(np.int64)


def _trilu(ctx, node, x, k=None):
    d = 0 if k is None else int(host(k).reshape(-1)[0])
    x = ctx.tensor(x)
    return _triu(x, d) if node.attrs.get("upper", 1) else _tril(x, d)


def _einsum_run(ctx, node, *xs):
    return _einsum(node.attrs["equation"], *[ctx.tensor(x) for x in xs])


def _nonzero(ctx, node, x):
    """(rank, count) int64 indices of the non-zero entries (the count depends on the data: read back)."""
    if all_host(x):
        return np.array(np.nonzero(x), dtype=np.int64)
    return _permute(_nonzero_op(ctx.tensor(x)), 1, 0)


OPS = {
    "Shape": _shape,
    "Size": _size,
    "Identity": _identity,
    "Reshape": _reshape_run,
    "Flatten": _flatten,
    "Transpose": _transpose,
    "Squeeze": _squeeze_run,
    "Unsqueeze": _unsqueeze_run,
    "Concat": _concat_run,
    "Split": _split_run,
    "Slice": _slice_run,
    "Gather": _gather_run,
    "GatherElements": _gather_elements,
    "Expand": _expand_run,
    "Tile": _tile_run,
    "Pad": _pad_run,
    "Constant": _constant,
    "ConstantOfShape": _constant_of_shape,
    "Range": _range,
    "Cast": _cast,
    "CastLike": _cast_like,
    "Resize": _resize,
    "OneHot": _one_hot,
    "CumSum": _cumsum,
    "TopK": _topk,
    "Trilu": _trilu,
    "Einsum": _einsum_run,
    "NonZero": _nonzero,
}

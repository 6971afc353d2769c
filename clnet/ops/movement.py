"""Shape and layout ops: views that share the buffer (reshape, transpose, slices), copies, indexing."""
from __future__ import annotations

import math

import numpy as np
import pyopencl as cl

from .. import dtypes as _dt
from ..autograd import needs_grad, record
from ..tensor import Tensor, _normalise_shape, contiguous_strides
from .elementwise import copy_into, launch


def _axis(dim, ndim, name="dim"):
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(dim).__name__}")
    if not -max(ndim, 1) <= dim < max(ndim, 1):
        raise IndexError(f"{name} {dim} is out of range for a tensor with {ndim} dimensions")
    return int(dim) % max(ndim, 1)


# --- copies ----------------------------------------------------------------------------------------
def contiguous(x: Tensor) -> Tensor:
    """x itself when already contiguous, else a contiguous copy (differentiable)."""
    return x if x.is_contiguous() else clone(x)


def clone(x: Tensor) -> Tensor:
    y = launch("v0", [x], x.dtype, x.dtype)
    if needs_grad(x):
        record("clone", y, (x,), lambda g: g)
    return y


def to_device(x: Tensor, device) -> Tensor:
    """Copy to another device through the host (OpenCL contexts cannot share buffers)."""
    from .creation import tensor
    y = tensor(x.numpy(), dtype=x.dtype, device=device)
    if needs_grad(x):
        record("to", y, (x,), lambda g: to_device(g, x.device))
    return y


# --- views -----------------------------------------------------------------------------------------
def _view_strides(x: Tensor, shape):
    """Strides that present x's elements in `shape` without copying, or None if impossible."""
    if x.is_contiguous():
        return contiguous_strides(shape)
    # general case: match groups of old dims to new dims (as numpy's _attempt_nocopy_reshape)
    old = [(s, st) for s, st in zip(x.shape, x.strides) if s != 1]
    new_strides = []
    oi = 0
    ni = 0
    new = list(shape)
    result = [0] * len(new)
    while ni < len(new) and oi < len(old):
        if new[ni] == 1:
            result[ni] = 1
            ni += 1
            continue
        np_, op = new[ni], old[oi][0]
        nj, oj = ni + 1, oi + 1
        while np_ != op:
            if np_ < op:
                if nj >= len(new):
                    return None
                np_ *= new[nj]
                nj += 1
            else:
                if oj >= len(old):
                    return None
                op *= old[oj][0]
                oj += 1
        for k in range(oi, oj - 1):
            if old[k][1] != old[k + 1][0] * old[k + 1][1]:
                return None
        result[nj - 1] = old[oj - 1][1]
        for k in range(nj - 1, ni, -1):
            result[k - 1] = result[k] * new[k]
        ni, oi = nj, oj
    while ni < len(new):
        result[ni] = 1
        ni += 1
    del new_strides
    return tuple(result)


def reshape(x: Tensor, *shape) -> Tensor:
    """A view when the layout allows it, else a copy; one dimension may be -1."""
    shape = list(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else list(shape)
    n = x.numel()
    if shape.count(-1) > 1:
        raise ValueError("only one dimension can be -1")
    if -1 in shape:
        known = math.prod(s for s in shape if s != -1)
        if known == 0 or n % known:
            raise ValueError(f"cannot reshape a tensor of shape {tuple(x.shape)} ({n} elements) into "
                             f"{tuple(shape)}")
        shape[shape.index(-1)] = n // known
    shape = _normalise_shape(tuple(shape))
    if math.prod(shape) != n:
        raise ValueError(f"cannot reshape a tensor of shape {tuple(x.shape)} ({n} elements) into "
                         f"{shape} ({math.prod(shape)} elements)")
    if shape == x.shape:
        return x
    strides = _view_strides(x, shape)
    src = x if strides is not None else clone(x).detach()
    y = src._view(shape, strides if strides is not None else contiguous_strides(shape))
    if needs_grad(x):
        record("reshape", y, (x,), lambda g: reshape(g, x.shape))
    return y


def view(x: Tensor, *shape) -> Tensor:
    shape_t = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    if -1 not in shape_t and _view_strides(x, _normalise_shape(shape_t)) is None:
        raise RuntimeError(f"view of shape {shape_t} is not compatible with the tensor's strides "
                           f"{x.strides}; use .reshape(...)")
    return reshape(x, *shape)


def permute(x: Tensor, *dims) -> Tensor:
    dims = tuple(dims[0]) if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
    dims = tuple(_axis(d, x.ndim) for d in dims)
    if sorted(dims) != list(range(x.ndim)):
        raise ValueError(f"permute needs a permutation of 0..{x.ndim - 1}, got {dims}")
    y = x._view(tuple(x.shape[d] for d in dims), tuple(x.strides[d] for d in dims))
    if needs_grad(x):
        inverse = tuple(np.argsort(dims))
        record("permute", y, (x,), lambda g: permute(g, inverse))
    return y


def transpose(x: Tensor, dim0=0, dim1=1) -> Tensor:
    if x.ndim < 2:
        return x
    d0, d1 = _axis(dim0, x.ndim), _axis(dim1, x.ndim)
    dims = list(range(x.ndim))
    dims[d0], dims[d1] = dims[d1], dims[d0]
    return permute(x, dims)


def t(x: Tensor) -> Tensor:
    if x.ndim > 2:
        raise ValueError(f"t() expects a tensor with <= 2 dimensions, got {x.ndim}; use transpose()")
    return transpose(x, 0, 1) if x.ndim == 2 else x


def squeeze(x: Tensor, dim=None) -> Tensor:
    if dim is None:
        keep = [i for i, s in enumerate(x.shape) if s != 1]
    else:
        dims = dim if isinstance(dim, (tuple, list)) else (dim,)
        drop = {_axis(d, x.ndim) for d in dims if x.shape[_axis(d, x.ndim)] == 1}
        keep = [i for i in range(x.ndim) if i not in drop]
    y = x._view(tuple(x.shape[i] for i in keep), tuple(x.strides[i] for i in keep))
    if needs_grad(x):
        record("squeeze", y, (x,), lambda g: reshape(g, x.shape))
    return y


def unsqueeze(x: Tensor, dim) -> Tensor:
    d = _axis(dim, x.ndim + 1)
    shape = x.shape[:d] + (1,) + x.shape[d:]
    inner = x.strides[d] * x.shape[d] if d < x.ndim else 1
    y = x._view(shape, x.strides[:d] + (inner,) + x.strides[d:])
    if needs_grad(x):
        record("unsqueeze", y, (x,), lambda g: reshape(g, x.shape))
    return y


def flatten(x: Tensor, start_dim=0, end_dim=-1) -> Tensor:
    if x.ndim == 0:
        return reshape(x, 1)
    s, e = _axis(start_dim, x.ndim), _axis(end_dim, x.ndim)
    shape = x.shape[:s] + (math.prod(x.shape[s:e + 1]),) + x.shape[e + 1:]
    return reshape(x, shape)


def expand(x: Tensor, *shape) -> Tensor:
    """Broadcast view (stride 0 on expanded dims); -1 keeps a size."""
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    pad = len(shape) - x.ndim
    if pad < 0:
        raise ValueError(f"cannot expand shape {tuple(x.shape)} to {tuple(shape)}")
    new_shape, new_strides = [], []
    for i, s in enumerate(shape):
        if i < pad:
            new_shape.append(s)
            new_strides.append(0)
            continue
        old, st = x.shape[i - pad], x.strides[i - pad]
        if s == -1 or s == old:
            new_shape.append(old)
            new_strides.append(st)
        elif old == 1:
            new_shape.append(s)
            new_strides.append(0)
        else:
            raise ValueError(f"cannot expand shape {tuple(x.shape)} to {tuple(shape)}")
    y = x._view(tuple(new_shape), tuple(new_strides))
    if needs_grad(x):
        from .reduce import sum_to
        record("expand", y, (x,), lambda g: sum_to(g, x.shape))
    return y


# --- indexing --------------------------------------------------------------------------------------
def _basic_index(x: Tensor, key):
    """ints, slices, None and Ellipsis -> (shape, strides, offset) of the view."""
    key = key if isinstance(key, tuple) else (key,)
    n_ell = sum(k is Ellipsis for k in key)
    if n_ell > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    n_real = sum(1 for k in key if k is not None and k is not Ellipsis)
    if n_real > x.ndim:
        raise IndexError(f"too many indices for a tensor of dimension {x.ndim}")
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
            if step <= 0:
                raise ValueError("slices with a negative or zero step are not supported; use flip()")
            length = max(0, (stop - start + step - 1) // step)
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


def _is_basic(key) -> bool:
    key = key if isinstance(key, tuple) else (key,)
    return all(k is None or k is Ellipsis or isinstance(k, slice)
               or (isinstance(k, (int, np.integer)) and not isinstance(k, bool)) for k in key)


def _mask_of(x: Tensor, key):
    """A bool tensor/array indexing x's leading dims, or None."""
    if isinstance(key, Tensor) and key.dtype == _dt.bool_:
        mask = key
    elif isinstance(key, np.ndarray) and key.dtype == np.bool_:
        from .creation import tensor
        mask = tensor(key, device=x.device)
    else:
        return None
    if mask.shape != x.shape[:mask.ndim]:
        raise IndexError(f"boolean mask of shape {tuple(mask.shape)} does not match the indexed tensor's "
                         f"leading dimensions {tuple(x.shape[:mask.ndim])}")
    return mask


def getitem(x: Tensor, key) -> Tensor:
    if _is_basic(key):
        shape, strides, offset = _basic_index(x, key)
        y = x._view(shape, strides, offset)
        if needs_grad(x):
            record("getitem", y, (x,), lambda g: _scatter_basic(g, x, key))
        return y
    from .indexing import advanced_getitem
    return advanced_getitem(x, key)


def _scatter_basic(g: Tensor, x: Tensor, key) -> Tensor:
    from .creation import zeros
    full = zeros(x.shape, dtype=g.dtype, device=g.device)
    shape, strides, offset = _basic_index(full, key)
    copy_into(full._view(shape, strides, offset), g)
    return full


def setitem(x: Tensor, key, value) -> None:
    """x[key] = value in place: basic keys write through a view, bool masks select elements."""
    if isinstance(value, (list, tuple, np.ndarray)):
        from .creation import tensor
        value = tensor(value, dtype=x.dtype, device=x.device)
    if isinstance(value, Tensor) and value.device is not x.device:
        raise ValueError(f"value is on {value.device}, the tensor on {x.device}")
    from ..autograd import is_grad_enabled
    if is_grad_enabled() and x.requires_grad and x._node is None:
        raise RuntimeError("a leaf tensor that requires grad is being used in an in-place operation; "
                           "wrap the assignment in `with clnet.no_grad():`")
    mask = _mask_of(x, key)
    if mask is not None and (not isinstance(value, Tensor) or value.numel() == 1):
        m = mask._view(x.shape, mask.strides + (0,) * (x.ndim - mask.ndim), mask.offset)
        val = value if isinstance(value, Tensor) else value
        if isinstance(val, Tensor):
            val = val.reshape(())
        launch("v1 ? v2 : v0", [x, m, val], x.dtype, x.dtype, out=x)
        x._bump_version()
        if needs_grad(x, value if isinstance(value, Tensor) else None):
            _record_setitem(x, lambda g: launch("v1 ? 0 : v0", [g, m], g.dtype, g.dtype))
        return
    if _is_basic(key):
        shape, strides, offset = _basic_index(x, key)
        copy_into(x._view(shape, strides, offset), value)
        x._bump_version()
        if needs_grad(x):
            def zero_slot(g):
                out = clone(g)
                copy_into(out._view(*_basic_index(out, key)), 0)
                return out
            _record_setitem(x, zero_slot)
        return
    from .indexing import advanced_setitem
    advanced_setitem(x, key, value)


def _record_setitem(x: Tensor, grad_x):
    """History for x[...] = value: the overwritten positions get no gradient from x's old value."""
    old = x.detach()
    old._node, old._out_index, old.requires_grad = x._node, x._out_index, x.requires_grad
    x._node = None
    record("setitem", x, (old,), grad_x)


def concat(tensors, dim=0) -> Tensor:
    """Join tensors along an existing dimension (torch.cat / tf.concat)."""
    from .creation import empty
    tensors = list(tensors)
    if not tensors:
        raise ValueError("concat needs at least one tensor")
    ref = tensors[0]
    d = _axis(dim, ref.ndim)
    for t_ in tensors[1:]:
        if t_.ndim != ref.ndim or any(a != b for i, (a, b) in enumerate(zip(t_.shape, ref.shape)) if i != d):
            raise ValueError(f"concat: shapes {[tuple(z.shape) for z in tensors]} differ outside dimension {d}")
        if t_.device is not ref.device:
            raise ValueError(f"concat: tensors are on different devices ({ref.device} and {t_.device})")
    dt = ref.dtype
    for t_ in tensors[1:]:
        dt = _dt.promote_types(dt, t_.dtype)
    shape = list(ref.shape)
    shape[d] = sum(t_.shape[d] for t_ in tensors)
    out = empty(tuple(shape), dtype=dt, device=ref.device)
    bounds, start = [], 0
    for t_ in tensors:
        key = (slice(None),) * d + (slice(start, start + t_.shape[d]),)
        copy_into(out._view(*_basic_index(out, key)), t_)
        bounds.append(key)
        start += t_.shape[d]
    if needs_grad(*tensors):
        record("concat", out, tuple(tensors), lambda g: tuple(getitem(g, k) for k in bounds))
    return out


def stack(tensors, dim=0) -> Tensor:
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack needs at least one tensor")
    shapes = {tuple(t_.shape) for t_ in tensors}
    if len(shapes) != 1:
        raise ValueError(f"stack expects tensors of equal shape, got {sorted(shapes)}")
    d = _axis(dim, tensors[0].ndim + 1)
    return concat([unsqueeze(t_, d) for t_ in tensors], dim=d)

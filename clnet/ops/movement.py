"""Shape and layout ops: views that share the buffer (reshape, transpose, slices), copies, basic indexing,
joining and splitting. Advanced indexing (index arrays, bool masks) lives in indexing.py.

Views never carry negative strides out of this module: flip and negative-step slices copy through a
negative-stride view that only the copy kernel sees (PyTorch rejects negative steps; numpy returns a
view; clnet returns a copy, so writing into `x[::-1]` does not change x, while `x[::-1] = v` does).
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import dtypes as _dt
from ..autograd import is_grad_enabled, needs_grad, record
from ..tensor import Tensor, _normalise_shape, contiguous_strides
from .elementwise import copy_into, launch


def _axis(dim, ndim, name="dim"):
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(dim).__name__}")
    if not -max(ndim, 1) <= dim < max(ndim, 1):
        raise IndexError(f"{name} {dim} is out of range for a tensor with {ndim} dimensions "
                         f"(expected {-max(ndim, 1)} to {max(ndim, 1) - 1})")
    return int(dim) % max(ndim, 1)


def _dims_arg(dims):
    """(2, 3), [2, 3] or 2, 3 given as varargs -> a tuple."""
    return tuple(dims[0]) if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else tuple(dims)


def _check_inplace(x: Tensor):
    if is_grad_enabled() and x.requires_grad and x._node is None:
        raise RuntimeError("a leaf Variable that requires grad is being used in an in-place operation; "
                           "wrap the assignment in `with clnet.no_grad():`")


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
    """Strides that present x's elements in `shape` without copying, or None if impossible.

    As numpy's _attempt_nocopy_reshape: group old and new dims into runs of equal element count; a run
    of old dims must be contiguous among itself to be re-split into new dims.
    """
    if math.prod(shape) == 0 or x.is_contiguous():
        return contiguous_strides(shape)
    old = [(s, st) for s, st in zip(x.shape, x.strides) if s != 1]
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


def _infer_shape(x: Tensor, shape) -> tuple:
    """The target shape with a -1 resolved; errors name both shapes and element counts."""
    shape = list(_dims_arg(shape))
    n = x.numel()
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
            raise ValueError(f"cannot reshape a tensor of shape {tuple(x.shape)} ({n} elements) into "
                             f"{tuple(shape)}")
        shape[shape.index(-1)] = n // known
    shape = _normalise_shape(tuple(int(s) for s in shape))
    if math.prod(shape) != n:
        raise ValueError(f"cannot reshape a tensor of shape {tuple(x.shape)} ({n} elements) into "
                         f"{shape} ({math.prod(shape)} elements)")
    return shape


def reshape(x: Tensor, *shape) -> Tensor:
    """A view when the layout allows it, else a copy; one dimension may be -1."""
    shape = _infer_shape(x, shape)
    strides = _view_strides(x, shape)
    if strides is None:
        y = clone(x.detach())._view(shape, contiguous_strides(shape))
    else:
        y = x._view(shape, strides)
    if needs_grad(x):
        record("reshape", y, (x,), lambda g: reshape(g, x.shape))
    return y


def view(x: Tensor, *shape) -> Tensor:
    """Like reshape, but never copies: raises when x's strides cannot present the new shape."""
    target = _infer_shape(x, shape)
    if _view_strides(x, target) is None:
        raise RuntimeError(f"view of shape {target} is not compatible with the tensor's shape {tuple(x.shape)} "
                           f"and strides {tuple(x.strides)} (a dimension spans non-contiguous memory); "
                           "use .reshape(...) instead")
    return reshape(x, target)


def permute(x: Tensor, *dims) -> Tensor:
    dims = _dims_arg(dims)
    if len(dims) != x.ndim:
        raise ValueError(f"permute needs {x.ndim} dims for a tensor of shape {tuple(x.shape)}, got {dims}")
    dims = tuple(_axis(d, x.ndim) for d in dims)
    if sorted(dims) != list(range(x.ndim)):
        raise ValueError(f"permute needs a permutation of 0..{x.ndim - 1}, got {dims}")
    y = x._view(tuple(x.shape[d] for d in dims), tuple(x.strides[d] for d in dims))
    if needs_grad(x):
        inverse = tuple(int(i) for i in np.argsort(dims))
        record("permute", y, (x,), lambda g: permute(g, inverse))
    return y


def transpose(x: Tensor, dim0=0, dim1=1) -> Tensor:
    d0, d1 = _axis(dim0, x.ndim), _axis(dim1, x.ndim)
    dims = list(range(x.ndim))
    if x.ndim >= 2:
        dims[d0], dims[d1] = dims[d1], dims[d0]
    return permute(x, dims)


swapaxes = swapdims = transpose


def t(x: Tensor) -> Tensor:
    if x.ndim > 2:
        raise ValueError(f"t() expects a tensor with <= 2 dimensions, got shape {tuple(x.shape)}; use transpose()")
    return transpose(x, 0, -1)


def movedim(x: Tensor, source, destination) -> Tensor:
    """Move dims `source` to positions `destination` (ints or sequences), keeping the others' order."""
    src = [source] if isinstance(source, (int, np.integer)) else list(source)
    dst = [destination] if isinstance(destination, (int, np.integer)) else list(destination)
    if len(src) != len(dst):
        raise ValueError(f"movedim: source {source} and destination {destination} differ in length")
    src = [_axis(d, x.ndim) for d in src]
    dst = [_axis(d, x.ndim) for d in dst]
    if len(set(src)) != len(src) or len(set(dst)) != len(dst):
        raise ValueError(f"movedim: repeated dim in source {source} or destination {destination}")
    order = [None] * x.ndim
    for s, d in zip(src, dst):
        order[d] = s
    rest = iter(i for i in range(x.ndim) if i not in src)
    return permute(x, [o if o is not None else next(rest) for o in order])


moveaxis = movedim


def squeeze(x: Tensor, dim=None) -> Tensor:
    if dim is None:
        keep = [i for i, s in enumerate(x.shape) if s != 1]
    else:
        dims = dim if isinstance(dim, (tuple, list)) else (dim,)
        drop = {_axis(d, x.ndim) for d in dims}
        drop = {d for d in drop if x.ndim and x.shape[d] == 1}
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
    if s > e:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for shape {tuple(x.shape)}")
    shape = x.shape[:s] + (math.prod(x.shape[s:e + 1]),) + x.shape[e + 1:]
    return reshape(x, shape)


def unflatten(x: Tensor, dim, sizes) -> Tensor:
    d = _axis(dim, x.ndim)
    sizes = list(sizes)
    if -1 in sizes:
        known = math.prod(s for s in sizes if s != -1)
        sizes[sizes.index(-1)] = x.shape[d] // known if known else 0
    if math.prod(sizes) != x.shape[d]:
        raise ValueError(f"unflatten: sizes {tuple(sizes)} don't multiply to dim {d}'s size {x.shape[d]}")
    return reshape(x, x.shape[:d] + tuple(sizes) + x.shape[d + 1:])


def expand(x: Tensor, *shape) -> Tensor:
    """Broadcast view (stride 0 on expanded dims); -1 keeps a size."""
    shape = _dims_arg(shape)
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
        from .reduce import sum_to
        record("expand", y, (x,), lambda g: sum_to(g, x.shape))
    return y


def expand_as(x: Tensor, other: Tensor) -> Tensor:
    return expand(x, other.shape)


# --- basic indexing ----------------------------------------------------------------------------------
def _basic_index(x: Tensor, key):
    """ints, slices, None and Ellipsis -> (shape, strides, offset) of the view (strides may be negative)."""
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


def _is_basic(key) -> bool:
    key = key if isinstance(key, tuple) else (key,)
    return all(k is None or k is Ellipsis or isinstance(k, slice)
               or (isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_))) for k in key)


def _negative_step(key) -> bool:
    key = key if isinstance(key, tuple) else (key,)
    return any(isinstance(k, slice) and k.step is not None and k.step < 0 for k in key)


def _mask_of(x: Tensor, key):
    """A bool tensor/array indexing x's leading dims, or None."""
    if isinstance(key, Tensor) and key.dtype == _dt.bool_ and key.ndim:
        mask = key
    elif isinstance(key, np.ndarray) and key.dtype == np.bool_ and key.ndim:
        from .creation import tensor
        mask = tensor(key, device=x.device)
    else:
        return None
    if mask.device is not x.device:
        raise IndexError(f"boolean mask is on {mask.device}, the indexed tensor on {x.device}")
    if tuple(mask.shape) != tuple(x.shape[:mask.ndim]):
        raise IndexError(f"the boolean mask of shape {tuple(mask.shape)} does not match the indexed tensor's "
                         f"leading dimensions {tuple(x.shape[:mask.ndim])} (tensor shape {tuple(x.shape)})")
    return mask


def getitem(x: Tensor, key) -> Tensor:
    """x[key]: a view for ints/slices/None/...; a copy for negative steps and index arrays/masks."""
    if not _is_basic(key):
        from .indexing import advanced_getitem
        return advanced_getitem(x, key)
    shape, strides, offset = _basic_index(x, key)
    y = x._view(shape, strides, offset)
    if _negative_step(key):
        y = launch("v0", [y], x.dtype, x.dtype)
    if needs_grad(x):
        record("getitem", y, (x,), lambda g: _scatter_basic(g, x, key))
    return y


def _scatter_basic(g: Tensor, x: Tensor, key) -> Tensor:
    from .creation import zeros
    full = zeros(x.shape, dtype=g.dtype, device=g.device)
    copy_into(full._view(*_basic_index(full, key)), g)
    return full


def narrow(x: Tensor, dim, start, length) -> Tensor:
    """The view x[..., start:start+length, ...] along dim (torch.narrow)."""
    d = _axis(dim, x.ndim)
    size = x.shape[d]
    if not -size <= start <= size:
        raise IndexError(f"narrow: start {start} is out of range for dimension {d} with size {size}")
    start = start % size if start < 0 else start
    if length < 0 or start + length > size:
        raise ValueError(f"narrow: start {start} + length {length} exceeds dimension {d} of size {size}")
    return getitem(x, (slice(None),) * d + (slice(start, start + length),))


# --- x[key] = value ---------------------------------------------------------------------------------
def _strip_leading_ones(v: Tensor, ndim: int) -> Tensor:
    """numpy lets a value with extra leading size-1 dims be assigned: (1, 3) into (3,)."""
    while v.ndim > ndim and v.shape[0] == 1:
        v = v._view(v.shape[1:], v.strides[1:])
    return v


def setitem(x: Tensor, key, value) -> None:
    """x[key] = value in place. Autograd: x's overwritten entries get no gradient; value gets g[key]."""
    from .creation import tensor
    from .reduce import sum as _sum, sum_to
    if isinstance(value, (list, tuple, np.ndarray)):
        value = tensor(np.asarray(value), dtype=x.dtype, device=x.device)
    elif isinstance(value, Tensor):
        if value.device is not x.device:
            raise ValueError(f"value is on {value.device}, the tensor on {x.device}; move it with .to()")
    elif not isinstance(value, (numbers.Number, np.number, np.bool_)):
        raise TypeError(f"can't assign a {type(value).__name__} to a tensor; use a number, array or tensor")
    _check_inplace(x)
    if isinstance(value, Tensor) and value._buf is x._buf:
        value = clone(value)  # x[1:] = x[:-1]: read everything before anything is written
    tv = value if isinstance(value, Tensor) else None
    mask = _mask_of(x, key)
    if mask is not None and (tv is None or tv.numel() == 1):
        m = mask._view(x.shape, mask.strides + (0,) * (x.ndim - mask.ndim), mask.offset)
        val = tv.detach().reshape(()) if tv is not None else value
        launch("v1 ? v2 : v0", [x, m, val], x.dtype, x.dtype, out=x)
        x._bump_version()
        if needs_grad(x, tv):
            _record_setitem(x, tv, lambda g: launch("v1 ? 0 : v0", [g, m], g.dtype, g.dtype),
                            lambda g: reshape(_sum(launch("v1 ? v0 : 0", [g, m], g.dtype, g.dtype)), tv.shape))
        return
    if not _is_basic(key):
        from .indexing import advanced_setitem
        advanced_setitem(x, key, value)
        return
    shape, strides, offset = _basic_index(x, key)
    target = x._view(shape, strides, offset)
    src = _strip_leading_ones(tv.detach(), len(shape)) if tv is not None else value
    if isinstance(src, Tensor) and len(src.shape) > len(shape):
        raise ValueError(f"cannot assign a value of shape {tuple(tv.shape)} to x[key] of shape {shape}")
    copy_into(target, src)
    x._bump_version()
    if needs_grad(x, tv):
        def zero_slot(g):
            out = clone(g)
            copy_into(out._view(*_basic_index(out, key)), 0)
            return out

        def value_grad(g):
            gv = g._view(*_basic_index(g, key))
            return reshape(sum_to(gv, src.shape), tv.shape)
        _record_setitem(x, tv, zero_slot, value_grad)


def _record_setitem(x: Tensor, value, grad_x, grad_value=None):
    """History for x[...] = value: x's old value (overwritten entries masked by grad_x) and the value."""
    old = x.detach()
    old._node, old._out_index, old.requires_grad = x._node, x._out_index, x.requires_grad
    x._node = None
    inputs = (old,) if value is None else (old, value)

    def backward(g):
        gx = grad_x(g) if old.requires_grad else None
        if value is None:
            return (gx,)
        return gx, (grad_value(g) if value.requires_grad else None)
    record("setitem", x, inputs, backward)


# --- joining and splitting -----------------------------------------------------------------------
def _tensors_for(name, tensors):
    from .creation import tensor
    tensors = list(tensors)
    if not tensors:
        raise ValueError(f"{name} needs at least one tensor")
    ref = next((t_ for t_ in tensors if isinstance(t_, Tensor)), None)
    dev = ref.device if ref is not None else None
    out = []
    for t_ in tensors:
        out.append(t_ if isinstance(t_, Tensor) else tensor(t_, device=dev))
    for t_ in out[1:]:
        if t_.device is not out[0].device:
            raise ValueError(f"{name}: tensors are on different devices ({out[0].device} and {t_.device}); "
                             "move them with .to(device)")
    return out


def concat(tensors, dim=0) -> Tensor:
    """Join tensors along an existing dimension (torch.cat / tf.concat); dtypes promote."""
    from .creation import empty
    tensors = _tensors_for("concat", tensors)
    ref = tensors[0]
    if ref.ndim == 0:
        raise ValueError("concat: zero-dimensional tensors cannot be concatenated; use stack")
    d = _axis(dim, ref.ndim)
    shapes = [tuple(t_.shape) for t_ in tensors]
    for t_ in tensors[1:]:
        if t_.ndim != ref.ndim or any(a != b for i, (a, b) in enumerate(zip(t_.shape, ref.shape)) if i != d):
            raise ValueError(f"concat: shapes {shapes} differ outside dimension {d}")
    dt = ref.dtype
    for t_ in tensors[1:]:
        dt = _dt.promote_types(dt, t_.dtype)
    shape = list(ref.shape)
    shape[d] = sum(t_.shape[d] for t_ in tensors)
    out = empty(tuple(shape), dtype=dt, device=ref.device)
    keys, start = [], 0
    for t_ in tensors:
        key = (slice(None),) * d + (slice(start, start + t_.shape[d]),)
        copy_into(out._view(*_basic_index(out, key)), t_)
        keys.append(key)
        start += t_.shape[d]
    if needs_grad(*tensors):
        def backward(g):
            return tuple(getitem(g, k).to(dtype=t_.dtype) if _dt.is_floating(t_.dtype) else None
                         for k, t_ in zip(keys, tensors))
        record("concat", out, tuple(tensors), backward)
    return out


def stack(tensors, dim=0) -> Tensor:
    """Join equal-shaped tensors along a new dimension."""
    tensors = _tensors_for("stack", tensors)
    shapes = [tuple(t_.shape) for t_ in tensors]
    if len(set(shapes)) != 1:
        raise ValueError(f"stack expects tensors of equal shape, got {shapes}")
    d = _axis(dim, tensors[0].ndim + 1)
    return concat([unsqueeze(t_, d) for t_ in tensors], dim=d)


def split(x: Tensor, split_size_or_sections, dim=0) -> tuple:
    """Views of x along dim: equal pieces of `split_size` (the last may be smaller) or given sizes."""
    d = _axis(dim, x.ndim)
    n = x.shape[d]
    if isinstance(split_size_or_sections, (int, np.integer)):
        size = int(split_size_or_sections)
        if size <= 0:
            raise ValueError(f"split: split_size must be positive, got {size}")
        sizes = [size] * (n // size) + ([n % size] if n % size else []) or [0]
    else:
        sizes = [int(s) for s in split_size_or_sections]
        if any(s < 0 for s in sizes) or sum(sizes) != n:
            raise ValueError(f"split: sections {sizes} don't add up to dimension {d}'s size {n} "
                             f"(shape {tuple(x.shape)})")
    out, start = [], 0
    for s in sizes:
        out.append(narrow(x, d, start, s))
        start += s
    return tuple(out)


def chunk(x: Tensor, chunks, dim=0) -> tuple:
    """Up to `chunks` views of equal size ceil(n / chunks) along dim (torch.chunk)."""
    if chunks <= 0:
        raise ValueError(f"chunk: chunks must be positive, got {chunks}")
    d = _axis(dim, x.ndim)
    n = x.shape[d]
    if n == 0:
        return tuple(narrow(x, d, 0, 0) for _ in range(chunks))
    return split(x, -(-n // chunks), d)


def unbind(x: Tensor, dim=0) -> tuple:
    d = _axis(dim, x.ndim)
    return tuple(getitem(x, (slice(None),) * d + (i,)) for i in range(x.shape[d]))


def flip(x: Tensor, dims) -> Tensor:
    """A copy with the order of entries reversed along `dims` (torch.flip)."""
    dims = [dims] if isinstance(dims, (int, np.integer)) else list(dims)
    axes = [_axis(d, x.ndim) for d in dims]
    if len(set(axes)) != len(axes):
        raise ValueError(f"flip: dims {tuple(dims)} name a dimension twice")
    strides, offset = list(x.strides), x.offset
    for a in axes:
        if x.ndim and x.shape[a] > 1:
            offset += (x.shape[a] - 1) * strides[a]
            strides[a] = -strides[a]
    y = launch("v0", [x._view(x.shape, tuple(strides), offset)], x.dtype, x.dtype)
    if needs_grad(x):
        record("flip", y, (x,), lambda g: flip(g, axes))
    return y


def repeat(x: Tensor, *sizes) -> Tensor:
    """Tile x `sizes[i]` times along each dim (torch.repeat; numpy.tile with all reps given)."""
    sizes = _dims_arg(sizes)
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


def tile(x: Tensor, reps) -> Tensor:
    """numpy.tile / torch.tile: like repeat, with missing leading counts taken as 1."""
    reps = (reps,) if isinstance(reps, (int, np.integer)) else tuple(reps)
    return repeat(x, (1,) * (x.ndim - len(reps)) + reps)


def pad(x: Tensor, pad, mode="constant", value=0) -> Tensor:
    """Constant padding as torch.nn.functional.pad: pad = (left, right) for the last dim, then the one
    before, ...; negative amounts crop."""
    from .creation import full
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ValueError(f"pad: needs an even number of amounts, at most 2 per dim; got {pad} for shape "
                         f"{tuple(x.shape)}")
    if mode != "constant":
        raise NotImplementedError(f"pad: mode {mode!r} is not supported yet (only 'constant')")
    shape, src_key, dst_key = list(x.shape), [slice(None)] * x.ndim, [slice(None)] * x.ndim
    for i in range(len(pad) // 2):
        d = x.ndim - 1 - i
        left, right = pad[2 * i], pad[2 * i + 1]
        size = x.shape[d] + left + right
        if size < 0:
            raise ValueError(f"pad: {pad} makes dimension {d} of shape {tuple(x.shape)} negative ({size})")
        lo, hi = max(0, -left), x.shape[d] - max(0, -right)
        kept = max(0, hi - lo)
        src_key[d] = slice(lo, lo + kept)
        dst_key[d] = slice(max(0, left), max(0, left) + kept)
        shape[d] = size
    src_key, dst_key = tuple(src_key), tuple(dst_key)
    xs = getitem(x, src_key)
    out = full(tuple(shape), value, dtype=x.dtype, device=x.device)
    copy_into(out._view(*_basic_index(out, dst_key)), xs.detach())
    if needs_grad(xs):
        record("pad", out, (xs,), lambda g: getitem(g, dst_key))
    return out

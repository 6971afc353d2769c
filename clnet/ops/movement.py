"""Shape and layout ops: views that share the buffer (reshape, transpose, slices), copies, basic indexing,
joining and splitting. Broadcasting (expand) and its adjoint (sum_to) live in broadcast.py; `x[key]`
and `x[key] = value` with every kind of key in indexing.py (this module's getitem takes basic keys).

Views never carry negative strides out of this module: flip and negative-step slices copy through a
negative-stride view that only the copy kernel sees (PyTorch rejects negative steps; numpy returns a
view; clnet returns a copy, so writing into `x[::-1]` does not change x, while `x[::-1] = v` does).
"""
from __future__ import annotations

import math

import numpy as np

from .. import dtypes as _dt
from ..core.dispatch import op
from ..core.storage import TensorBase, contiguous_strides
from ..core.tape import is_grad_enabled, needs_grad, record
from .creation import empty, full, tensor, to_numpy, zeros
from .elementwise import cast, copy_into, launch
from .shapes import axis, basic_index, dims_arg, infer_shape, is_basic, negative_step, view_strides


_axis = axis
_dims_arg = dims_arg


def _check_inplace(x: TensorBase):
    if is_grad_enabled() and x.requires_grad and x._node is None:
        raise RuntimeError("a leaf Variable that requires grad is being used in an in-place operation; "
                           "wrap the assignment in `with clnet.no_grad():`")


# --- copies ----------------------------------------------------------------------------------------
@op("contiguous")
def contiguous(x: TensorBase) -> TensorBase:
    """x itself when already contiguous, else a contiguous copy (differentiable)."""
    return x if x.is_contiguous() else clone(x)


@op("clone")
def clone(x: TensorBase) -> TensorBase:
    y = launch("v0", [x], x.dtype, x.dtype)
    if needs_grad(x):
        record("clone", y, (x,), lambda g: g, differentiable=True)
    return y


@op("to_device")
def to_device(x: TensorBase, device) -> TensorBase:
    """Copy to another device through the host (OpenCL contexts cannot share buffers)."""
    y = tensor(to_numpy(x), dtype=x.dtype, device=device)
    if needs_grad(x):
        record("to", y, (x,), lambda g: to_device(g, x.device), differentiable=True)
    return y


# --- views -----------------------------------------------------------------------------------------
def _view_strides(x: TensorBase, shape):
    """Strides that present x's elements in `shape` without copying, or None if impossible."""
    return view_strides(x.shape, x.strides, x.is_contiguous(), shape)


def _infer_shape(x: TensorBase, shape) -> tuple:
    return infer_shape(x.shape, shape)


@op("reshape")
def reshape(x: TensorBase, *shape) -> TensorBase:
    """A view when the layout allows it, else a copy; one dimension may be -1."""
    shape = _infer_shape(x, shape)
    strides = _view_strides(x, shape)
    if strides is None:
        y = clone(x.detach())._view(shape, contiguous_strides(shape))
    else:
        y = x._view(shape, strides)
    if needs_grad(x):
        record("reshape", y, (x,), lambda g: reshape(g, x.shape), differentiable=True)
    return y


@op("view")
def view(x: TensorBase, *shape) -> TensorBase:
    """Like reshape, but never copies: raises when x's strides cannot present the new shape."""
    target = _infer_shape(x, shape)
    if _view_strides(x, target) is None:
        raise RuntimeError(f"view of shape {target} is not compatible with the tensor's shape {tuple(x.shape)} "
                           f"and strides {tuple(x.strides)} (a dimension spans non-contiguous memory); "
                           "use .reshape(...) instead")
    return reshape(x, target)


@op("permute")
def permute(x: TensorBase, *dims) -> TensorBase:
    dims = _dims_arg(dims)
    if len(dims) != x.ndim:
        raise ValueError(f"permute needs {x.ndim} dims for a tensor of shape {tuple(x.shape)}, got {dims}")
    dims = tuple(_axis(d, x.ndim) for d in dims)
    if sorted(dims) != list(range(x.ndim)):
        raise ValueError(f"permute needs a permutation of 0..{x.ndim - 1}, got {dims}")
    y = x._view(tuple(x.shape[d] for d in dims), tuple(x.strides[d] for d in dims))
    if needs_grad(x):
        inverse = tuple(int(i) for i in np.argsort(dims))
        record("permute", y, (x,), lambda g: permute(g, inverse), differentiable=True)
    return y


@op("transpose")
def transpose(x: TensorBase, dim0=0, dim1=1) -> TensorBase:
    d0, d1 = _axis(dim0, x.ndim), _axis(dim1, x.ndim)
    dims = list(range(x.ndim))
    if x.ndim >= 2:
        dims[d0], dims[d1] = dims[d1], dims[d0]
    return permute(x, dims)


swapaxes = swapdims = transpose


@op("t")
def t(x: TensorBase) -> TensorBase:
    if x.ndim > 2:
        raise ValueError(f"t() expects a tensor with <= 2 dimensions, got shape {tuple(x.shape)}; use transpose()")
    return transpose(x, 0, -1)


@op("movedim")
def movedim(x: TensorBase, source, destination) -> TensorBase:
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


@op("squeeze")
def squeeze(x: TensorBase, dim=None) -> TensorBase:
    if dim is None:
        keep = [i for i, s in enumerate(x.shape) if s != 1]
    else:
        dims = dim if isinstance(dim, (tuple, list)) else (dim,)
        drop = {_axis(d, x.ndim) for d in dims}
        drop = {d for d in drop if x.ndim and x.shape[d] == 1}
        keep = [i for i in range(x.ndim) if i not in drop]
    y = x._view(tuple(x.shape[i] for i in keep), tuple(x.strides[i] for i in keep))
    if needs_grad(x):
        record("squeeze", y, (x,), lambda g: reshape(g, x.shape), differentiable=True)
    return y


@op("unsqueeze")
def unsqueeze(x: TensorBase, dim) -> TensorBase:
    d = _axis(dim, x.ndim + 1)
    shape = x.shape[:d] + (1,) + x.shape[d:]
    inner = x.strides[d] * x.shape[d] if d < x.ndim else 1
    y = x._view(shape, x.strides[:d] + (inner,) + x.strides[d:])
    if needs_grad(x):
        record("unsqueeze", y, (x,), lambda g: reshape(g, x.shape), differentiable=True)
    return y


@op("flatten")
def flatten(x: TensorBase, start_dim=0, end_dim=-1) -> TensorBase:
    if x.ndim == 0:
        return reshape(x, 1)
    s, e = _axis(start_dim, x.ndim), _axis(end_dim, x.ndim)
    if s > e:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for shape {tuple(x.shape)}")
    shape = x.shape[:s] + (math.prod(x.shape[s:e + 1]),) + x.shape[e + 1:]
    return reshape(x, shape)


@op("unflatten")
def unflatten(x: TensorBase, dim, sizes) -> TensorBase:
    d = _axis(dim, x.ndim)
    sizes = list(sizes)
    if -1 in sizes:
        known = math.prod(s for s in sizes if s != -1)
        sizes[sizes.index(-1)] = x.shape[d] // known if known else 0
    if math.prod(sizes) != x.shape[d]:
        raise ValueError(f"unflatten: sizes {tuple(sizes)} don't multiply to dim {d}'s size {x.shape[d]}")
    return reshape(x, x.shape[:d] + tuple(sizes) + x.shape[d + 1:])


# --- basic indexing ----------------------------------------------------------------------------------
_basic_index = basic_index


@op("basic_getitem")
def getitem(x: TensorBase, key) -> TensorBase:
    """x[key] for basic keys (ints, slices, None, ...): a view; a copy for negative steps. Keys with
    index arrays or masks are indexing.getitem's (Tensor.__getitem__ takes every kind)."""
    if not is_basic(key):
        raise IndexError(f"movement.getitem takes ints, slices, None and ...; got {key!r}: use "
                         "clnet.ops.indexing.getitem (x[key]) for index arrays and masks")
    shape, strides, offset = _basic_index(x, key)
    y = x._view(shape, strides, offset)
    if negative_step(key):
        y = launch("v0", [y], x.dtype, x.dtype)
    if needs_grad(x):
        record("getitem", y, (x,), lambda g: _scatter_basic(g, x, key))
    return y


def _scatter_basic(g: TensorBase, x: TensorBase, key) -> TensorBase:
    full = zeros(x.shape, dtype=g.dtype, device=g.device)
    copy_into(full._view(*_basic_index(full, key)), g)
    return full


@op("narrow")
def narrow(x: TensorBase, dim, start, length) -> TensorBase:
    """The view x[..., start:start+length, ...] along dim (torch.narrow)."""
    d = _axis(dim, x.ndim)
    size = x.shape[d]
    if not -size <= start <= size:
        raise IndexError(f"narrow: start {start} is out of range for dimension {d} with size {size}")
    start = start % size if start < 0 else start
    if length < 0 or start + length > size:
        raise ValueError(f"narrow: start {start} + length {length} exceeds dimension {d} of size {size}")
    return getitem(x, (slice(None),) * d + (slice(start, start + length),))


# --- joining and splitting -----------------------------------------------------------------------
def _tensors_for(name, tensors):
    tensors = list(tensors)
    if not tensors:
        raise ValueError(f"{name} needs at least one tensor")
    ref = next((t_ for t_ in tensors if isinstance(t_, TensorBase)), None)
    dev = ref.device if ref is not None else None
    out = []
    for t_ in tensors:
        out.append(t_ if isinstance(t_, TensorBase) else tensor(t_, device=dev))
    for t_ in out[1:]:
        if t_.device is not out[0].device:
            raise ValueError(f"{name}: tensors are on different devices ({out[0].device} and {t_.device}); "
                             "move them with .to(device)")
    return out


@op("concat")
def concat(tensors, dim=0) -> TensorBase:
    """Join tensors along an existing dimension (torch.cat / tf.concat); dtypes promote."""
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
            return tuple(cast(getitem(g, k), t_.dtype) if _dt.is_floating(t_.dtype) else None
                         for k, t_ in zip(keys, tensors))
        record("concat", out, tuple(tensors), backward, differentiable=True)
    return out


@op("stack")
def stack(tensors, dim=0) -> TensorBase:
    """Join equal-shaped tensors along a new dimension."""
    tensors = _tensors_for("stack", tensors)
    shapes = [tuple(t_.shape) for t_ in tensors]
    if len(set(shapes)) != 1:
        raise ValueError(f"stack expects tensors of equal shape, got {shapes}")
    d = _axis(dim, tensors[0].ndim + 1)
    return concat([unsqueeze(t_, d) for t_ in tensors], dim=d)


@op("split")
def split(x: TensorBase, split_size_or_sections, dim=0) -> tuple:
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


@op("chunk")
def chunk(x: TensorBase, chunks, dim=0) -> tuple:
    """Up to `chunks` views of equal size ceil(n / chunks) along dim (torch.chunk)."""
    if chunks <= 0:
        raise ValueError(f"chunk: chunks must be positive, got {chunks}")
    d = _axis(dim, x.ndim)
    n = x.shape[d]
    if n == 0:
        return tuple(narrow(x, d, 0, 0) for _ in range(chunks))
    return split(x, -(-n // chunks), d)


@op("unbind")
def unbind(x: TensorBase, dim=0) -> tuple:
    d = _axis(dim, x.ndim)
    return tuple(getitem(x, (slice(None),) * d + (i,)) for i in range(x.shape[d]))


@op("flip")
def flip(x: TensorBase, dims) -> TensorBase:
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
        record("flip", y, (x,), lambda g: flip(g, axes), differentiable=True)
    return y


@op("pad")
def pad(x: TensorBase, pad, mode="constant", value=0) -> TensorBase:
    """Constant padding as torch.nn.functional.pad: pad = (left, right) for the last dim, then the one
    before, ...; negative amounts crop."""
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
        record("pad", out, (xs,), lambda g: getitem(g, dst_key), differentiable=True)
    return out

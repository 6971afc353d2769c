"""Advanced indexing: integer index arrays and bool masks in [] (numpy/PyTorch), gather/scatter along a
dim, take, index_select, nonzero, masked_fill/masked_select, with their gradients.

`getitem` / `setitem` are Tensor.__getitem__ / __setitem__ for every kind of key. Basic keys (ints,
slices, None, ...) are views (movement.getitem). When the key holds arrays or masks (ints, slices, None
and ... still go through views first, as PyTorch does, so `x[0, :, idx]` has shape
(x.shape[1], len(idx)) as in torch):
1. `_plan` splits the key into a basic view V of x plus index arrays on some of V's dims, checks every
   shape and index bound BEFORE any kernel runs and names what was wrong. Index bounds need the
   index values on the host: lists/arrays are there already; an index tensor costs one host read, a
   guard (scatter_plan.read_checked) that clnet.compile repeats at the start of each replay instead of
   breaking the graph; nothing else uses the values read.
   A bool mask becomes index arrays through `nonzero` on the device, which reads back one number (the
   count of true elements, needed to size the result), as PyTorch does.
2. `adv_gather` (kernels/index.cl.mako) writes the result, one work-item per output element.
3. The gradient is a scatter-add into zeros that needs no atomics (OpenCL 1.2 has no float atomics):
   entries hitting the same element are grouped and each work-item owns one target and sums its
   entries in increasing order, so results are deterministic. Index tensors are grouped by a device
   sort (scatter_plan.DevicePlan: no host read, so a compiled step keeps one graph); lists and arrays,
   whose values are on the host anyway, by a host sort (`_Segments`). Both sum in the same order.
`x[key] = value` uses the same plan with the scatter kernel in "put" mode (the last duplicate wins).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import numpy as np

from .. import dtypes as _dt
from ..backend.programs import ctype, get_kernel
from ..core import dispatch
from ..core.dispatch import op
from ..core.storage import TensorBase, contiguous_strides
from ..core.tape import is_grad_enabled, needs_grad, record
from .broadcast import expand, sum_to
from .creation import full, tensor, to_numpy, zeros
from .elementwise import check_inplace_target, copy_into, launch
from .movement import clone, contiguous, getitem as basic_getitem, reshape
from .reduce import sum as _sum
from .scatter_plan import DevicePlan, fits as _plan_fits, read_checked
from .shapes import axis as _axis, basic_index as _basic_index, broadcast_shapes, is_basic

_INT_MAX = 2**31 - 1
_BITS = {1: "uchar", 2: "ushort", 4: "uint", 8: "ulong"}  # element width -> C type for pure data movement
_MASK_BLOCK = 256  # mask elements per work-item when counting / compacting a mask
_DEFAULTS = dict(t="uint", acc="float", idx="int", rank=0, ix_ts=(), mode="put", segmented=False,
                 ix_t="long", wg=1, k=0, j_fast=False, reduce="add")


# --- kernel plumbing -------------------------------------------------------------------------------
def _kernel(device, kind, arg_dtypes, **params):
    """index.cl.mako's `kind` kernel; every template parameter has a default so each kind renders alone."""
    return get_kernel(device, "index.cl.mako", kind, arg_dtypes=arg_dtypes,
                      **dict(_DEFAULTS, kind=kind, **params))


def _run(device, kern, n, args):
    wg = device.profile.elementwise_wg
    dispatch.launch(device, kern, (-(-n // wg) * wg,), (wg,), args)


def _run2(device, kern, R, J, j_fast, args):
    """A 2-D range over (R rest positions, J index entries), the output-adjacent one on range dim 0;
    a work-group spans up to the whole fast extent, then stacks the other."""
    fast, slow = (J, R) if j_fast else (R, J)
    wg = device.profile.elementwise_wg
    w0 = 1
    while w0 < min(fast, wg):
        w0 *= 2
    w1 = max(1, min(wg // w0, device.max_work_item_sizes[1]))
    dispatch.launch(device, kern, (-(-fast // w0) * w0, -(-slow // w1) * w1), (w0, w1), args)


def _idx(n, tensors):
    """Offsets fit in int unless some buffer or the launch passes 2**31 elements."""
    big = max([n] + [t._storage_size for t in tensors])
    return ("int", np.dtype(np.int32)) if big <= _INT_MAX else ("long", np.dtype(np.int64))


def _move_type(dtype) -> str:
    return _BITS[np.dtype(dtype).itemsize]


def _add_types(dtype):
    """(storage C type, accumulator C type) for kernels that add values of `dtype`."""
    if dtype == _dt.float16:
        return "half", "float"
    if dtype == _dt.bool_:
        raise TypeError("cannot accumulate bool values; convert to a number type first")
    return ctype(dtype), ctype(dtype)


def _upload(host: np.ndarray, device) -> TensorBase:
    return tensor(np.ascontiguousarray(host, dtype=np.int64), dtype=_dt.int64, device=device)


def _flat(t: TensorBase):
    """(offset, stride) that walk t's elements in row-major order with one stride, or None."""
    if t.ndim == 0:
        return t.offset, 0
    if t.ndim == 1:
        return t.offset, t.strides[0]
    if t.is_contiguous():
        return t.offset, 1
    return None


# --- nonzero: bool mask -> coordinates on the device -------------------------------------------------
@op("nonzero")
def nonzero(x: TensorBase, as_tuple=False):
    """Coordinates of the non-zero elements, shape (count, x.ndim) int64 in row-major order (torch).

    Reads one number back from the device: the count, which decides the result's shape.
    """
    if not isinstance(x, TensorBase):
        raise TypeError(f"nonzero expects a Tensor, got {type(x).__name__}")
    mask = x.detach() if x.dtype == _dt.bool_ else (x.detach() != 0)
    device, k, n = x.device, x.ndim, x.numel()
    if k == 0:
        out = zeros((int(bool(to_numpy(mask).reshape(()).item())), 0), dtype=_dt.int64, device=device)
    elif n == 0:
        out = TensorBase._empty((0, k), _dt.int64, device)
    else:
        out = _compact(contiguous(mask), n, k)
    if as_tuple:
        return tuple(out._view((out.shape[0],), (out.strides[0],), out.offset + c) for c in range(k))
    return out


def _compact(mask: TensorBase, n, k) -> TensorBase:
    device = mask.device
    nb = -(-n // _MASK_BLOCK)
    L = np.dtype(np.int64)
    counts = TensorBase._empty((nb,), _dt.int64, device)
    offsets = TensorBase._empty((nb + 1,), _dt.int64, device)
    kern = _kernel(device, "mask_count", [L, L, L, None, L, None])
    _run(device, kern, nb, [n, _MASK_BLOCK, nb, mask._buf, mask.offset, counts._buf])
    wg = device.profile.reduce_wg
    kern = _kernel(device, "mask_scan", [L, None, None], wg=wg)
    dispatch.launch(device, kern, (wg,), (wg,), [nb, counts._buf, offsets._buf])
    total = np.empty(1, np.int64)
    dispatch.download(device, total, offsets._buf, nb * 8)
    out = TensorBase._empty((int(total[0]), k), _dt.int64, device)
    if total[0]:
        kern = _kernel(device, "mask_write", [L, L, L, None, L, None, None] + [L] * k, k=k)
        _run(device, kern, nb, [n, _MASK_BLOCK, nb, mask._buf, mask.offset, offsets._buf, out._buf]
             + list(mask.shape))
    return out


# --- the plan of an advanced key ---------------------------------------------------------------------
@dataclass
class _Adv:
    """One index array: it picks positions along dim `vdim` of the basic view (x's dim `xdim`)."""
    vdim: int
    xdim: int
    size: int
    dev: TensorBase | None = None   # on the device, shape = the broadcast index shape when used directly
    host: np.ndarray | None = None  # the values (int64, wrapped to >= 0), when known on the host
    guarded: bool = False   # host holds a device tensor's values read only for the bounds check


@dataclass
class _Plan:
    basic_key: tuple
    vshape: tuple
    advs: list
    ishape: tuple = ()
    q: int = 0                  # where the index dims sit among the output's dims
    rest: list = field(default_factory=list)  # dims of V not indexed by arrays, in order
    unique: bool = False        # targets known to be distinct (a device mask), no host sort needed
    segments: object = None

    @property
    def out_shape(self):
        r = [self.vshape[d] for d in self.rest]
        return tuple(r[:self.q]) + tuple(self.ishape) + tuple(r[self.q:])

    @property
    def J(self):
        return math.prod(self.ishape)


def _classify(entry, device):
    """(kind, payload): none | ell | bool | int | slice | mask | index."""
    if entry is None:
        return "none", None
    if entry is Ellipsis:
        return "ell", None
    if isinstance(entry, (bool, np.bool_)):
        return "bool", bool(entry)
    if isinstance(entry, (int, np.integer)):
        return "int", int(entry)
    if isinstance(entry, slice):
        return "slice", entry
    if isinstance(entry, TensorBase):
        if entry.device is not device:
            raise IndexError(f"index tensor is on {entry.device}, the indexed tensor on {device}")
        if entry.dtype == _dt.bool_:
            return ("mask", entry) if entry.ndim else ("bool", bool(to_numpy(entry).reshape(()).item()))
        if entry.dtype in (_dt.int32, _dt.int64):
            return "index", entry
        raise IndexError(f"tensors used as indices must be int64, int32 or bool tensors, got {entry.dtype.name}")
    if isinstance(entry, range):  # x[range(n), target], as PyTorch takes it: an integer index
        return "index", np.arange(entry.start, entry.stop, entry.step, dtype=np.int64)
    if isinstance(entry, (list, tuple, np.ndarray)):
        arr = np.asarray(entry)
        if arr.dtype == np.bool_:
            return ("mask", arr) if arr.ndim else ("bool", bool(arr))
        if arr.size == 0 and arr.dtype.kind == "f":  # [] is an empty integer index, as in numpy
            arr = arr.astype(np.int64)
        if arr.dtype.kind in "iu":
            return "index", arr.astype(np.int64)
        raise IndexError(f"arrays used as indices must be of integer or bool type, got {arr.dtype}")
    raise IndexError(f"unsupported index {entry!r} ({type(entry).__name__}): use ints, slices, None, ..., "
                     "bool masks, or integer tensors/lists/arrays")


def _expand_ellipsis(entries, ndim):
    used = sum(1 if k in ("int", "slice", "index") else (p.ndim if k == "mask" else 0) for k, p in entries)
    if used > ndim:
        raise IndexError(f"too many indices for a tensor of dimension {ndim} (the key indexes {used} dims)")
    ell = [i for i, (k, _) in enumerate(entries) if k == "ell"]
    if len(ell) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    fill = [("slice", slice(None))] * (ndim - used)
    if ell:
        return entries[:ell[0]] + fill + entries[ell[0] + 1:]
    return entries + fill


def _check_bounds(host, size, xdim):
    """IndexError naming the first index outside [-size, size), before any kernel runs."""
    if host.size == 0:
        return
    bad = (host < -size) | (host >= size)
    if bad.any():
        raise IndexError(f"index {int(host[bad].flat[0])} is out of bounds for dimension {xdim} with size {size}")


def _plan(x: TensorBase, key) -> _Plan:
    entries = [_classify(k, x.device) for k in (key if isinstance(key, tuple) else (key,))]
    entries = _expand_ellipsis(entries, x.ndim)
    basic, advs, groups = [], [], []
    xdim = vdim = 0
    vshape = []
    for kind, p in entries:
        if kind == "none":
            basic.append(None)
            vshape.append(1)
            vdim += 1
        elif kind == "int":
            basic.append(p)
            xdim += 1
        elif kind == "slice":
            basic.append(p)
            vshape.append(len(range(*p.indices(x.shape[xdim]))))
            xdim += 1
            vdim += 1
        elif kind == "mask":
            k = p.ndim
            if tuple(p.shape) != tuple(x.shape[xdim:xdim + k]):
                raise IndexError(f"the boolean mask of shape {tuple(p.shape)} does not match the shape "
                                 f"{tuple(x.shape[xdim:xdim + k])} of the indexed tensor at dimension {xdim}")
            group = [_Adv(vdim + i, xdim + i, x.shape[xdim + i]) for i in range(k)]
            groups.append((p, group))
            advs += group
            basic += [slice(None)] * k
            vshape += list(x.shape[xdim:xdim + k])
            xdim += k
            vdim += k
        elif kind == "index":
            a = _Adv(vdim, xdim, x.shape[xdim])
            if isinstance(p, TensorBase):  # one host read for an index tensor, repeated by compiled replays
                host = read_checked(p, lambda h, size=a.size, d=xdim: _check_bounds(h, size, d))
                a.dev, a.guarded = p, True
            else:
                host = p
                _check_bounds(host, a.size, xdim)
            a.host = np.where(host < 0, host + a.size, host).astype(np.int64)
            groups.append((p, [a]))
            advs.append(a)
            basic.append(slice(None))
            vshape.append(x.shape[xdim])
            xdim += 1
            vdim += 1
        else:  # bool scalars are rewritten by advanced_getitem/advanced_setitem before planning
            raise IndexError("a bool scalar index can't be combined with index arrays or masks")
    plan = _Plan(tuple(basic), tuple(vshape), advs)
    # masks become coordinate arrays (device masks on the device; numpy masks on the host)
    for p, group in groups:
        if not (isinstance(p, TensorBase) and p.dtype == _dt.bool_) and not (
                isinstance(p, np.ndarray) and p.dtype == np.bool_):
            continue
        if isinstance(p, TensorBase):
            coords = nonzero(p)
            for i, a in enumerate(group):
                a.dev = coords._view((coords.shape[0],), (coords.strides[0],), coords.offset + i)
        else:
            for a, c in zip(group, np.nonzero(p)):
                a.host = c.astype(np.int64)
    shapes = [tuple(a.dev.shape) if a.host is None else a.host.shape for a in advs]
    try:
        plan.ishape = tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise IndexError("shape mismatch: indexing arrays could not be broadcast together with shapes "
                         + " ".join(str(s) for s in shapes)) from None
    plan.unique = any(a.host is None and tuple(a.dev.shape) == plan.ishape for a in advs)
    vdims = sorted(a.vdim for a in advs)
    plan.rest = [d for d in range(len(vshape)) if d not in vdims]
    plan.q = vdims[0] if vdims[-1] - vdims[0] + 1 == len(vdims) else 0
    for a in advs:  # every index array as a 1-D walk over the broadcast index shape
        if a.dev is not None and tuple(a.dev.shape) == plan.ishape and _flat(a.dev) is not None:
            continue
        if a.guarded:  # broadcast on the device: the values stay there
            a.dev = contiguous(expand(a.dev, plan.ishape))
            continue
        if a.host is None:
            a.host = to_numpy(a.dev)
        a.dev = _upload(np.broadcast_to(a.host, plan.ishape), x.device)
    return plan


def _index_args(plan: _Plan, arrays, target: TensorBase):
    """Kernel arguments (buffer, offset, stride, size, stride of target at the dim) per index array."""
    args, types = [], []
    for a, ix in zip(plan.advs, arrays):
        off, st = _flat(ix)
        args += [ix._buf, off, st, a.size, target.strides[a.vdim]]
        types.append(ctype(ix.dtype))
    return args, tuple(types)


def _rest_layout(plan: _Plan):
    """The rest dims of size > 1 as (dim of V, position in the output), the output's contiguous strides,
    the stride between consecutive index entries j, and whether j should be the fast range dim."""
    out_shape = plan.out_shape
    ostr = contiguous_strides(out_shape)
    ni = len(plan.ishape)
    dims = []
    for i, d in enumerate(plan.rest):
        pos = i if i < plan.q else i + ni
        if plan.vshape[d] != 1:
            dims.append((d, pos))
    jst = math.prod(plan.vshape[d] for d in plan.rest[plan.q:])
    j_fast = not dims or jst < ostr[dims[-1][1]]  # consecutive j adjacent in the output: x[:, idx]
    return dims, ostr, jst, j_fast


def _gather(plan: _Plan, v: TensorBase) -> TensorBase:
    out = TensorBase._empty(plan.out_shape, v.dtype, v.device)
    dims, ostr, jst, j_fast = _rest_layout(plan)
    R = math.prod(v.shape[d] for d, _ in dims)
    n = plan.J * R
    if n == 0:
        return out
    arrays = [a.dev for a in plan.advs]
    idx, idt = _idx(n, [v, out] + arrays)
    ix_args, ix_ts = _index_args(plan, arrays, v)
    args = [plan.J, R, out._buf, out.offset, jst, v._buf, v.offset]
    for d, pos in dims:
        args += [v.shape[d], v.strides[d], ostr[pos]]
    types = [idt, idt, None, idt, idt, None, idt] + [idt] * 3 * len(dims)
    for t in ix_ts:
        types += [None, idt, idt, np.dtype(np.int64), idt]
    kern = _kernel(v.device, "adv_gather", types, t=_move_type(v.dtype), idx=idx, rank=len(dims), ix_ts=ix_ts,
                   j_fast=j_fast)
    _run2(v.device, kern, R, plan.J, j_fast, args + ix_args)
    return out


def _host_values(a: _Adv) -> np.ndarray:
    """a's values for host planning. Values read for a guard decide nothing a compiled replay repeats, so
    while a recorder traces they are read again as a plain download: a graph break, honestly reported."""
    if a.host is None or (a.guarded and dispatch.recording_active()):
        return to_numpy(a.dev)
    return a.host


class _Segments:
    """Targets hit more than once: order[starts[u]:starts[u+1]] lists the j aimed at unique target u."""

    def __init__(self, plan: _Plan, device):
        hosts = [np.broadcast_to(_host_values(a), plan.ishape).reshape(-1) for a in plan.advs]
        lin = np.ravel_multi_index(hosts, [a.size for a in plan.advs]) if hosts[0].size else np.zeros(0, int)
        order = np.argsort(lin, kind="stable")
        uniq, first = np.unique(lin[order], return_index=True)
        self.duplicates = len(uniq) != lin.size
        if self.duplicates:
            self.U = len(uniq)
            self.order = _upload(order, device)
            self.starts = _upload(np.append(first, lin.size), device)
            self.targets = [_upload(c, device) for c in np.unravel_index(uniq, [a.size for a in plan.advs])]
            self.winner = np.zeros(lin.size, bool)  # the j whose value a "put" keeps (the last one)
            self.winner[order[np.append(first[1:], lin.size) - 1]] = True


def _segments(plan: _Plan, device):
    """None (targets distinct), a DevicePlan (some index is a device tensor), or host _Segments."""
    if plan.unique:
        return None
    if plan.segments is None:
        sizes = [a.size for a in plan.advs]
        if any(a.guarded for a in plan.advs) and _plan_fits(sizes, plan.J):
            plan.segments = DevicePlan([(a.dev,) + _flat(a.dev) for a in plan.advs], sizes, plan.J, device)
        else:
            plan.segments = _Segments(plan, device)
    if isinstance(plan.segments, DevicePlan):
        return plan.segments
    return plan.segments if plan.segments.duplicates else None


def _winners(plan: _Plan, seg, device) -> TensorBase:
    """Which index entries x[idx] = v keeps (the last of duplicates), shaped to broadcast with out_shape."""
    lead = (1,) * plan.q + plan.ishape + (1,) * (len(plan.rest) - plan.q)
    if isinstance(seg, DevicePlan):
        return reshape(seg.winners(device), lead)
    return tensor(seg.winner.reshape(lead), device=device)


def _scatter(plan: _Plan, dst: TensorBase, src: TensorBase, mode: str) -> TensorBase:
    """dst[targets] = src ("put", last duplicate wins) or += sum of src ("add"); src is contiguous, out_shape."""
    seg = _segments(plan, dst.device)
    if isinstance(seg, DevicePlan):
        return _scatter_planned(plan, seg, dst, src, mode)
    U = seg.U if seg is not None else plan.J
    arrays = seg.targets if seg is not None else [a.dev for a in plan.advs]
    dims, ostr, jst, j_fast = _rest_layout(plan)
    R = math.prod(dst.shape[d] for d, _ in dims)
    n = U * R
    if n == 0:
        return dst
    idx, idt = _idx(n, [dst, src] + arrays)
    ix_args, ix_ts = _index_args(plan, arrays, dst)
    args = [U, R, dst._buf, dst.offset, src._buf, src.offset, jst]
    types = [idt, idt, None, idt, None, idt, idt]
    if seg is not None:
        args += [seg.order._buf, seg.starts._buf]
        types += [None, None]
    for d, pos in dims:
        args += [dst.shape[d], dst.strides[d], ostr[pos]]
        types += [idt] * 3
    for t in ix_ts:
        types += [None, idt, idt, np.dtype(np.int64), idt]
    if mode == "put":
        t, acc = _move_type(dst.dtype), "float"
    else:
        t, acc = _add_types(dst.dtype)
    kern = _kernel(dst.device, "adv_scatter", types, t=t, acc=acc, idx=idx, rank=len(dims), ix_ts=ix_ts,
                   mode=mode, segmented=seg is not None, j_fast=j_fast)
    _run2(dst.device, kern, R, U, j_fast, args + ix_args)
    return dst


def _scatter_planned(plan: _Plan, seg: DevicePlan, dst: TensorBase, src: TensorBase, mode: str) -> TensorBase:
    dims, ostr, jst, j_fast = _rest_layout(plan)
    R = math.prod(dst.shape[d] for d, _ in dims)
    if R * plan.J == 0:
        return dst
    idx, _ = _idx(R * plan.J, [dst, src])
    if mode == "put":
        t, acc = _move_type(dst.dtype), "float"
    else:
        t, acc = _add_types(dst.dtype)
    rest = [(dst.shape[d], dst.strides[d], ostr[pos]) for d, pos in dims]
    return seg.scatter(dst, src, rest=rest, ast=[dst.strides[a.vdim] for a in plan.advs], jst=jst, j_fast=j_fast,
                       idx=idx, run2=_run2, t=t, acc=acc, mode=mode)


def _bool_scalars(x: TensorBase, key):
    """x[True] / x[False] (numpy): a new dim of size 1 or 0; returns (key without them, dims to empty)."""
    entries = list(key) if isinstance(key, tuple) else [key]
    kinds = [_classify(k, x.device) if not isinstance(k, (list, tuple)) else ("seq", None) for k in entries]
    if not any(k == "bool" for k, _ in kinds):
        return key, []
    if any(k in ("mask", "index", "seq") for k, _ in kinds):
        raise IndexError("a bool scalar index can't be combined with index arrays or masks")
    ell_at = next((i for i, (k, _) in enumerate(kinds) if k == "ell"), None)
    consumed = sum(1 for k, _ in kinds if k in ("int", "slice"))
    new_key, empty_dims, vdim = [], [], 0
    for i, (k, p) in enumerate(kinds):
        if k == "bool":
            if not p:
                empty_dims.append(vdim)
            new_key.append(None)
            vdim += 1
        else:
            new_key.append(entries[i])
            if i == ell_at:
                vdim += x.ndim - consumed
            elif k in ("none", "slice"):
                vdim += 1
    return tuple(new_key), empty_dims


def _all_basic(x, key) -> bool:
    return all(k is None or k is Ellipsis or isinstance(k, slice) or (
        isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_)))
        for k in (key if isinstance(key, tuple) else (key,)))


# --- x[key] and x[key] = value -------------------------------------------------------------------------
def advanced_getitem(x: TensorBase, key) -> TensorBase:
    key, empty_dims = _bool_scalars(x, key)
    if _all_basic(x, key):
        y = basic_getitem(x, key)
        if empty_dims:
            y = basic_getitem(y, tuple(slice(0, 0) if d in empty_dims else slice(None) for d in range(y.ndim)))
        return y
    plan = _plan(x, key)
    v = basic_getitem(x, plan.basic_key) if any(k != slice(None) for k in plan.basic_key) else x
    out = _gather(plan, v.detach())
    if needs_grad(v):
        record("index", out, (v,), lambda g: _grad_of_gather(plan, g))
    return out


def _grad_of_gather(plan: _Plan, g: TensorBase) -> TensorBase:
    gv = zeros(plan.vshape, dtype=g.dtype, device=g.device)
    return _scatter(plan, gv, contiguous(g), "add")


def _strip_shape(shape, ndim):
    """`shape` without the extra leading size-1 dims that numpy lets an assigned value have."""
    shape = tuple(shape)
    while len(shape) > ndim and shape[0] == 1:
        shape = shape[1:]
    return shape


def _values_for(plan: _Plan, value, dtype, device) -> TensorBase:
    """value broadcast to the indexing result's shape, contiguous, in the target's dtype."""
    vals = TensorBase._empty(plan.out_shape, dtype, device)
    if isinstance(value, TensorBase):
        value = reshape(value.detach(), _strip_shape(value.shape, vals.ndim))
        try:
            ok = broadcast_shapes(value.shape, vals.shape) == vals.shape
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"shape mismatch: value tensor of shape {tuple(value.shape)} cannot be broadcast "
                             f"to indexing result of shape {tuple(vals.shape)}")
    return copy_into(vals, value)


def advanced_setitem(x: TensorBase, key, value) -> None:
    """x[key] = value for keys with index arrays or masks (checks done by setitem)."""
    key, empty_dims = _bool_scalars(x, key)
    if empty_dims:
        return  # x[False] = v writes nothing
    if _all_basic(x, key):
        return setitem(x, key, value)
    plan = _plan(x, key)
    vals = _values_for(plan, value, x.dtype, x.device)
    v = x._view(*_basic_index(x, plan.basic_key))
    _scatter(plan, v, vals, "put")
    x._bump_version()
    tv = value if isinstance(value, TensorBase) else None
    if needs_grad(x, tv):
        def grad_old(g):
            out = clone(g)
            _scatter(plan, out._view(*_basic_index(out, plan.basic_key)), _values_for(plan, 0, g.dtype, g.device),
                     "put")
            return out

        def grad_value(g):
            gv = basic_getitem(g, plan.basic_key) if any(k != slice(None) for k in plan.basic_key) else g
            picked = _gather(plan, gv)
            seg = _segments(plan, g.device)
            if seg is not None:  # a value entry overwritten by a later duplicate gets no gradient
                picked = launch("v1 ? v0 : 0", [picked, _winners(plan, seg, g.device)], g.dtype, g.dtype)
            return reshape(sum_to(picked, _strip_shape(tv.shape, len(plan.out_shape))), tv.shape)
        _record_setitem(x, tv, grad_old, grad_value)


# --- x[key] with any key -----------------------------------------------------------------------
def _mask_of(x: TensorBase, key):
    """A bool tensor/array indexing x's leading dims, or None."""
    if isinstance(key, TensorBase) and key.dtype == _dt.bool_ and key.ndim:
        mask = key
    elif isinstance(key, np.ndarray) and key.dtype == np.bool_ and key.ndim:
        mask = tensor(key, device=x.device)
    else:
        return None
    if mask.device is not x.device:
        raise IndexError(f"boolean mask is on {mask.device}, the indexed tensor on {x.device}")
    if tuple(mask.shape) != tuple(x.shape[:mask.ndim]):
        raise IndexError(f"the boolean mask of shape {tuple(mask.shape)} does not match the indexed tensor's "
                         f"leading dimensions {tuple(x.shape[:mask.ndim])} (tensor shape {tuple(x.shape)})")
    return mask


def _check_inplace(x: TensorBase):
    if is_grad_enabled() and x.requires_grad and x._node is None:
        raise RuntimeError("a leaf Variable that requires grad is being used in an in-place operation; "
                           "wrap the assignment in `with clnet.no_grad():`")


@op("getitem")
def getitem(x: TensorBase, key) -> TensorBase:
    """x[key]: a view for ints/slices/None/...; a copy for negative steps and index arrays/masks."""
    if is_basic(key):
        y = basic_getitem(x, key)
        if y._node is not None and y._node.op == "getitem":  # for create_graph: the rule as a recorded setitem
            y._node.backward.graph_rule = lambda g: _graph_basic_getitem(g, x, key)
        return y
    return advanced_getitem(x, key)


def _graph_basic_getitem(g: TensorBase, x: TensorBase, key) -> TensorBase:
    """The gradient of x[key] written with recorded ops: g placed at key in zeros (a setitem)."""
    full = zeros(x.shape, dtype=g.dtype, device=g.device)
    setitem(full, key, g)
    return full


# --- x[key] = value ---------------------------------------------------------------------------------
def _strip_leading_ones(v: TensorBase, ndim: int) -> TensorBase:
    """numpy lets a value with extra leading size-1 dims be assigned: (1, 3) into (3,)."""
    while v.ndim > ndim and v.shape[0] == 1:
        v = v._view(v.shape[1:], v.strides[1:])
    return v


@op("setitem")
def setitem(x: TensorBase, key, value) -> None:
    """x[key] = value in place. Autograd: x's overwritten entries get no gradient; value gets g[key]."""
    if isinstance(value, (list, tuple, np.ndarray)):
        value = tensor(np.asarray(value), dtype=x.dtype, device=x.device)
    elif isinstance(value, TensorBase):
        if value.device is not x.device:
            raise ValueError(f"value is on {value.device}, the tensor on {x.device}; move it with .to()")
    elif not isinstance(value, (numbers.Number, np.number, np.bool_)):
        raise TypeError(f"can't assign a {type(value).__name__} to a tensor; use a number, array or tensor")
    _check_inplace(x)
    if isinstance(value, TensorBase) and value._buf is x._buf:
        value = clone(value)  # x[1:] = x[:-1]: read everything before anything is written
    tv = value if isinstance(value, TensorBase) else None
    mask = _mask_of(x, key)
    if mask is not None and (tv is None or tv.numel() == 1):
        m = mask._view(x.shape, mask.strides + (0,) * (x.ndim - mask.ndim), mask.offset)
        val = reshape(tv.detach(), ()) if tv is not None else value
        launch("v1 ? v2 : v0", [x, m, val], x.dtype, x.dtype, out=x)
        x._bump_version()
        if needs_grad(x, tv):
            _record_setitem(x, tv, lambda g: launch("v1 ? 0 : v0", [g, m], g.dtype, g.dtype),
                            lambda g: reshape(_sum(launch("v1 ? v0 : 0", [g, m], g.dtype, g.dtype)), tv.shape))
        return
    if not is_basic(key):
        advanced_setitem(x, key, value)
        return
    shape, strides, offset = _basic_index(x, key)
    target = x._view(shape, strides, offset)
    src = _strip_leading_ones(tv.detach(), len(shape)) if tv is not None else value
    if isinstance(src, TensorBase) and len(src.shape) > len(shape):
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


def _record_setitem(x: TensorBase, value, grad_x, grad_value=None):
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


# --- named ops ---------------------------------------------------------------------------------------
def _index_tensor(index, device, name) -> TensorBase:
    if not isinstance(index, TensorBase):
        arr = np.asarray(index)
        if arr.size == 0 and arr.dtype.kind == "f":
            arr = arr.astype(np.int64)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"{name}: index must hold integers, got {arr.dtype}")
        index = tensor(arr.astype(np.int64), dtype=_dt.int64, device=device)
    if index.dtype not in (_dt.int32, _dt.int64):
        raise TypeError(f"{name}: index must be an int64 or int32 tensor, got {index.dtype.name}")
    if index.device is not device:
        raise ValueError(f"{name}: index is on {index.device}, the tensor on {device}")
    return index


@op("index_select")
def index_select(x: TensorBase, dim, index) -> TensorBase:
    """Entries of x at positions `index` (1-D) along `dim` (torch.index_select); negatives wrap."""
    d = _axis(dim, x.ndim)
    index = _index_tensor(index, x.device, "index_select")
    if index.ndim > 1:
        raise IndexError(f"index_select: index must be 1-D, got shape {tuple(index.shape)}")
    if x.ndim == 0:
        return reshape(advanced_getitem(reshape(x, 1), (reshape(index, -1),)), ())
    return advanced_getitem(x, (slice(None),) * d + (reshape(index, -1),))


@op("take")
def take(x: TensorBase, index) -> TensorBase:
    """x flattened, read at `index` (any shape; the result has index's shape); negatives wrap."""
    index = _index_tensor(index, x.device, "take")
    return advanced_getitem(reshape(x, -1), (index,))


def _dim_views(t: TensorBase, d: int):
    """t with dim d moved last (a view), as the dim kernels expect; 0-d becomes shape (1,)."""
    if t.ndim == 0:
        return t._view((1,), (1,))
    order = [i for i in range(t.ndim) if i != d] + [d]
    return t._view(tuple(t.shape[i] for i in order), tuple(t.strides[i] for i in order))


def _check_dim_index(name, x, d, index, others_leq=True):
    if index.ndim != x.ndim:
        raise ValueError(f"{name}: index must have as many dims as the tensor: index {tuple(index.shape)}, "
                         f"tensor {tuple(x.shape)}")
    for i in range(x.ndim):
        if i != d and others_leq and index.shape[i] > x.shape[i]:
            raise ValueError(f"{name}: index shape {tuple(index.shape)} exceeds tensor shape {tuple(x.shape)} "
                             f"in dimension {i}")
    size = x.shape[d] if x.ndim else 1

    def check(host):  # one host read, before any kernel runs (a guard that compiled replays repeat)
        if host.size and (host.min() < 0 or host.max() >= size):
            bad = host[(host < 0) | (host >= size)].flat[0]
            raise IndexError(f"{name}: index {int(bad)} is out of bounds for dimension {d} with size {size}")
    read_checked(index, check)


@op("gather")
def gather(x: TensorBase, dim, index) -> TensorBase:
    """out[i][j][k] = x[i][index[i][j][k]][k] for dim=1 (torch.gather); out has index's shape."""
    d = _axis(dim, x.ndim)
    index = _index_tensor(index, x.device, "gather")
    _check_dim_index("gather", x, d, index)
    out = TensorBase._empty(index.shape, x.dtype, x.device)
    n = out.numel()
    if n:
        xs, ixs, os_ = _dim_views(x, d), _dim_views(index, d), _dim_views(out, d)
        idx, idt = _idx(n, [x, index, out])
        rank = xs.ndim
        args = [n, out._buf, out.offset, x._buf, x.offset, index._buf, index.offset, xs.shape[-1], xs.strides[-1]]
        for i in range(rank):
            args += [ixs.shape[i], os_.strides[i], ixs.strides[i], xs.strides[i] if i < rank - 1 else 0]
        types = [idt, None, idt, None, idt, None, idt, np.dtype(np.int64), idt] + [idt] * 4 * rank
        kern = _kernel(x.device, "dim_gather", types, t=_move_type(x.dtype), ix_t=ctype(index.dtype), idx=idx,
                       rank=rank)
        _run(x.device, kern, n, args)
    if needs_grad(x):
        record("gather", out, (x,), lambda g: _dim_scatter(zeros(x.shape, dtype=g.dtype, device=g.device),
                                                           d, index, g), saved=(index,))
    return out


def _dim_scatter(dst: TensorBase, d: int, index: TensorBase, src: TensorBase, reduce="add") -> TensorBase:
    """dst[..., index[c], ...] += src[c] along dim d (reduce "none": = src[c], the last one of duplicates),
    in place, deterministic (no atomics)."""
    n = dst.numel()
    if n == 0:
        return dst
    ds, ixs, ss = _dim_views(dst, d), _dim_views(index, d), _dim_views(src, d)
    idx, idt = _idx(n, [dst, index, src])
    rank = ds.ndim
    args = [n, dst._buf, dst.offset, src._buf, src.offset, index._buf, index.offset,
            ixs.shape[-1], ss.strides[-1], ixs.strides[-1]]
    types = [idt, None, idt, None, idt, None, idt, idt, idt, idt]
    for i in range(rank):
        args += [ds.shape[i], ds.strides[i]]
        types += [idt, idt]
        if i < rank - 1:
            args += [ixs.shape[i], ss.strides[i], ixs.strides[i]]
            types += [idt] * 3
    if reduce == "none":
        t = ctype(dst.dtype)
        acc = "float" if t == "half" else t
    else:
        t, acc = _add_types(dst.dtype)
    kern = _kernel(dst.device, "dim_scatter", types, t=t, acc=acc, ix_t=ctype(index.dtype), idx=idx, rank=rank,
                   reduce=reduce)
    _run(dst.device, kern, n, args)
    return dst


@op("scatter_add")
def scatter_add(x: TensorBase, dim, index, src: TensorBase) -> TensorBase:
    """x + (src's entries added at `index` along `dim`) (torch.scatter_add, out of place)."""
    d = _axis(dim, x.ndim)
    index = _index_tensor(index, x.device, "scatter_add")
    if not isinstance(src, TensorBase) or src.device is not x.device:
        raise ValueError("scatter_add: src must be a tensor on the same device as x")
    if src.dtype != x.dtype:
        raise TypeError(f"scatter_add: src dtype {src.dtype.name} differs from x's {x.dtype.name}")
    _check_dim_index("scatter_add", x, d, index)
    if any(i > s for i, s in zip(index.shape, src.shape)) or src.ndim != index.ndim:
        raise ValueError(f"scatter_add: index shape {tuple(index.shape)} exceeds src shape {tuple(src.shape)}")
    out = _dim_scatter(clone(x.detach()), d, index, src.detach())
    if needs_grad(x, src):
        def backward(g):
            gs = None
            if src.requires_grad:
                gs = gather(g, d, index)
                if gs.shape != src.shape:
                    full = zeros(src.shape, dtype=g.dtype, device=g.device)
                    copy_into(basic_getitem(full, tuple(slice(0, s) for s in index.shape)), gs)
                    gs = full
            return g, gs
        record("scatter_add", out, (x, src), backward, saved=(index,))
    return out


def _mask_for(x: TensorBase, mask, name) -> TensorBase:
    if not isinstance(mask, TensorBase):
        mask = tensor(np.asarray(mask), device=x.device)
    if mask.dtype != _dt.bool_:
        raise TypeError(f"{name}: mask must be a bool tensor, got {mask.dtype.name}")
    if mask.device is not x.device:
        raise ValueError(f"{name}: mask is on {mask.device}, the tensor on {x.device}")
    if broadcast_shapes(mask.shape, x.shape) != x.shape:
        raise ValueError(f"{name}: mask of shape {tuple(mask.shape)} cannot be broadcast to the tensor's shape "
                         f"{tuple(x.shape)}")
    return mask


def _fill_value(value, name):
    if isinstance(value, TensorBase) and value.ndim != 0:
        raise ValueError(f"{name} only supports a 0-dimensional value tensor, got shape {tuple(value.shape)}")
    return value


def _scatter_src(x, src, value, name):
    if (src is None) == (value is None):
        raise TypeError(f"{name}() takes either src (a tensor) or value (a number)")
    if src is not None and not isinstance(src, TensorBase):
        value, src = src, None  # scatter(dim, index, 2.0): PyTorch's positional value
    if src is None:
        return None, value
    if src.device is not x.device:
        raise ValueError(f"{name}: src is on {src.device}, the tensor on {x.device}")
    if src.dtype != x.dtype:
        raise TypeError(f"{name}: src dtype {src.dtype.name} differs from the tensor's {x.dtype.name}")
    return src, None


@op("scatter")
def scatter(x: TensorBase, dim, index, src=None, value=None, *, reduce=None) -> TensorBase:
    """A copy of x with src's entries (or `value`) written at `index` along `dim` (torch.scatter; for
    duplicate indices the last entry wins). reduce="add"/"multiply" as torch's legacy option."""
    d = _axis(dim, x.ndim)
    index = _index_tensor(index, x.device, "scatter")
    src, value = _scatter_src(x, src, value, "scatter")
    _check_dim_index("scatter", x, d, index)
    if src is not None and (src.ndim != index.ndim or any(i > s for i, s in zip(index.shape, src.shape))):
        raise ValueError(f"scatter: index shape {tuple(index.shape)} exceeds src shape {tuple(src.shape)}")
    if reduce not in (None, "add", "multiply"):
        raise ValueError(f"scatter: reduce must be None, 'add' or 'multiply', got {reduce!r}")
    vals = src.detach() if src is not None else full(index.shape, value, dtype=x.dtype, device=x.device)
    if reduce == "add":
        return scatter_add(x, d, index, vals if src is None else src)
    if reduce == "multiply":
        raise NotImplementedError("scatter(reduce='multiply') is not supported; use scatter_reduce-free "
                                  "formulations (e.g. exp of a scatter_add of logs)")
    out = _dim_scatter(clone(x.detach()), d, index, vals, reduce="none")
    inputs = (x,) if src is None else (x, src)
    if needs_grad(*inputs):
        def backward(g):
            gx = _dim_scatter(clone(g), d, index, zeros(index.shape, dtype=g.dtype, device=g.device), "none") \
                if x.requires_grad else None
            gs = gather(g, d, index) if src is not None and src.requires_grad else None
            if gs is not None and gs.shape != src.shape:
                padded = zeros(src.shape, dtype=g.dtype, device=g.device)
                copy_into(basic_getitem(padded, tuple(slice(0, s) for s in index.shape)), gs)
                gs = padded
            return (gx,) if src is None else (gx, gs)
        record("scatter", out, inputs, backward, saved=(index,))
    return out


@op("scatter_")
def scatter_(x: TensorBase, dim, index, src=None, value=None, *, reduce=None) -> TensorBase:
    """scatter in place (no gradient through the overwritten tensor: use it under no_grad or on data)."""
    check_inplace_target("scatter", x)
    out = scatter(x.detach(), dim, index, src, value, reduce=reduce)
    copy_into(x, out)
    x._bump_version()
    return x


@op("masked_fill")
def masked_fill(x: TensorBase, mask, value) -> TensorBase:
    """A copy of x with `value` where mask is true (mask broadcasts to x; x's dtype is kept)."""
    mask = _mask_for(x, mask, "masked_fill")
    value = _fill_value(value, "masked_fill")
    if isinstance(value, TensorBase) and value.device is not x.device:
        raise ValueError(f"masked_fill: value is on {value.device}, the tensor on {x.device}")
    y = launch("v1 ? v2 : v0", [x, mask, value.detach() if isinstance(value, TensorBase) else value], x.dtype, x.dtype)
    tv = value if isinstance(value, TensorBase) else None
    if needs_grad(x, tv):
        def backward(g):
            gx = launch("v1 ? 0 : v0", [g, mask], g.dtype, g.dtype)
            gv = _sum(launch("v1 ? v0 : 0", [g, mask], g.dtype, g.dtype)) if tv is not None else None
            return (gx, gv) if tv is not None else (gx,)
        record("masked_fill", y, (x, tv) if tv is not None else (x,), backward)
    return y


@op("masked_fill_")
def masked_fill_(x: TensorBase, mask, value) -> TensorBase:
    """In-place masked_fill; autograd sees x's old value replaced where mask is true."""
    mask = _mask_for(x, mask, "masked_fill_")
    value = _fill_value(value, "masked_fill_")
    _check_inplace(x)
    tv = value if isinstance(value, TensorBase) else None
    launch("v1 ? v2 : v0", [x, mask, value.detach() if tv is not None else value], x.dtype, x.dtype, out=x)
    x._bump_version()
    if needs_grad(x, tv):
        _record_setitem(x, tv, lambda g: launch("v1 ? 0 : v0", [g, mask], g.dtype, g.dtype),
                        lambda g: _sum(launch("v1 ? v0 : 0", [g, mask], g.dtype, g.dtype)))
    return x


@op("masked_select")
def masked_select(x: TensorBase, mask) -> TensorBase:
    """1-D tensor of x's elements where mask (broadcast with x) is true."""
    if not isinstance(mask, TensorBase):
        mask = tensor(np.asarray(mask), device=x.device)
    if mask.dtype != _dt.bool_:
        raise TypeError(f"masked_select: mask must be a bool tensor, got {mask.dtype.name}")
    shape = broadcast_shapes(x.shape, mask.shape)
    return advanced_getitem(expand(x, shape), expand(mask.detach(), shape))

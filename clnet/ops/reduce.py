"""Reductions (sum, mean, prod, max, min, argmax, argmin, var, std, logsumexp, any, all) with gradients.

Any set of axes is reduced by one kernel family (kernels/reduce.cl.mako) reading the input in place
through its strides: the reduced axes collapse to one run (length N, stride s_r) and the kept axes
to a few (size, stride) pairs passed as arguments, so a new shape never recompiles and views
(transposes, slices) are read without a copy. Reduced axes that cannot merge into one run are reduced
one run at a time (argmax/argmin of such a view copies it first). `_plan_pass` picks the layout:
"inner" (a work-group per row chunk, for reductions along the fast axis) or "outer" (neighbouring
work-items take neighbouring columns: coalesced column sums, which bias gradients need). Long rows are
split into chunks whose partials a further pass combines. Float sums are Kahan-compensated per
work-item and combined by a fixed tree: no atomics, so results are deterministic on a device. Each
shape's launches are prepared once (`_steps_for`) so a repeated call only fills in buffers.

Gradient conventions: `sum`/`mean` broadcast back; `amax`/`amin` and `max()`/`min()` without a dim
split the gradient evenly among tied maxima (as PyTorch's amax); `max(dim)`/`min(dim)` send it to the
returned index only (the first occurrence, as PyTorch's max(dim)).
"""
from __future__ import annotations

import builtins
import math
from collections import namedtuple
from dataclasses import dataclass

import numpy as np
import pyopencl as cl

from .. import dtypes as _dt
from ..backend import caches
from ..backend.programs import ctype, get_kernel
from ..core import dispatch
from ..core.dispatch import op
from ..core.storage import TensorBase, contiguous_strides
from ..core.tape import needs_grad, record
from .creation import arange, full
from .elementwise import add, cast, div, eq, exp, isinf, launch, log, maximum, minimum, mul, ne, sqrt, sub, where
from .movement import contiguous, permute, reshape
from .shapes import axis as _axis, broadcast_view, kept_shape

_MAX_KEPT_RANK = 4    # kept dims a kernel decomposes itself; more (after merging) are copied first
_INNER_MIN_N = 32     # shorter rows are reduced by one work-item each (outer layout)
# Inputs smaller than this (elements) are never split into chunks: a second pass costs a launch (20-40 us on
# PoCL) and, on PoCL, a work-group function compiled for its local size at first use (0.2 s: the bias
# gradient of a 256 x 10 layer took two passes and two such compilations in the MLP's first step).
_SPLIT_MIN = 4096
_INDEX_LIMIT = 2**31 - 1


# --- device tuning ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Tuning:
    vec: int          # vector width of loads along a unit-stride axis
    blocked: bool     # each work-item reads one contiguous block (CPU) vs interleaved (GPU, coalesced)
    groups: int       # work-groups wanted in flight; rows are split into chunks to reach it
    kmin_inner: int   # fewest vectors a work-item reduces in the inner layout
    kmin_outer: int   # fewest rows a work-item reduces in the outer layout
    cv: int           # outer layout: vectors of columns per work-item (contiguous per row)
    tj_inner: int     # most work-items sharing one row chunk in the inner layout


def _tuning(device) -> _Tuning:
    """CPUs (PoCL) run a group's work-items one after another on one core: wide vectors, one contiguous
    block per item, and rows split into chunks across groups rather than across items of a group
    (tj_inner=1: measured on PoCL, argmax of 4096x4096 went 0.9 -> 2.3 GB/s, sums unchanged).
    GPUs want coalesced, interleaved float4 loads, a tree over the group and many groups."""
    cu = builtins.max(1, device.compute_units)
    if device.type == "cpu":
        vec = builtins.min(device.profile.max_vector_width, builtins.max(4, device.preferred_vector_width_float))
        return _Tuning(vec=vec, blocked=True, groups=8 * cu, kmin_inner=8, kmin_outer=16, cv=8, tj_inner=1)
    return _Tuning(vec=4, blocked=False, groups=8 * cu, kmin_inner=2, kmin_outer=4, cv=1, tj_inner=1 << 30)


def _pow2_ceil(n: int) -> int:
    return 1 << builtins.max(0, math.ceil(math.log2(builtins.max(1, n))))


# --- planning (pure Python; tests inspect it) ------------------------------------------------------
def _merge(dims):
    """Drop size-1 dims and merge neighbours (in order) that form one strided run."""
    out = []
    for size, stride in dims:
        if size == 1:
            continue
        if out and out[-1][1] == stride * size:
            out[-1] = (out[-1][0] * size, stride)
        else:
            out.append((size, stride))
    return out


@dataclass
class _Source:
    """What one pass reads: element (row, j) is at off + row_offset(kept) + j * s_r."""
    buf: object
    off: int
    dtype: np.dtype
    kept: list
    n: int
    s_r: int
    ibuf: object = None     # int64 candidate indices beside the values (later passes of arg ops)


@dataclass(frozen=True)
class Pass:
    """One kernel launch of a reduction plan."""
    layout: str       # "inner" or "outer"
    kept: tuple       # kept (size, stride) pairs the kernel decomposes (outer: without the column dim)
    n: int
    s_r: int
    columns: tuple    # outer: (C, sc); inner: ()
    vec: int
    cv: int           # outer: column vectors per work-item
    blocked: bool
    k: int            # per-item count: inner blocked = vectors, outer = rows
    chunk: int        # L, reduced elements per chunk
    nchunks: int
    global_size: tuple  # one-dimensional: groups are numbered (row or (o, chunk, column block))
    local_size: tuple
    rows: int
    tc: int           # outer: columns (of vec * cv) per group; the group's tc * tj items are lc + tc * lj
    wide: int         # outer: column blocks per (o, chunk)


def _plan_pass(kept, n, s_r, is_arg, acc_itemsize, device, idx_in=False) -> Pass:
    tune = _tuning(device)
    prof = device.profile
    wg = prof.reduce_wg
    mwis = device.max_work_item_sizes
    rows = math.prod(s for s, _ in kept)
    kin = abs(kept[-1][1]) if kept else None
    if not kept:
        layout = "inner"
    elif n < _INNER_MIN_N:
        layout = "outer"
    elif s_r == 1:
        layout = "inner"
    elif kin == 1:
        layout = "outer"
    else:
        layout = "inner" if s_r != 0 and abs(s_r) < kin else "outer"
    item_bytes = acc_itemsize + (8 if is_arg else 0)
    if layout == "inner":
        vec = tune.vec if (s_r == 1 and not idx_in and n >= tune.vec) else 1
        tj = builtins.min(wg, mwis[0], tune.tj_inner, _pow2_ceil(-(-n // (vec * tune.kmin_inner))))
        while tj > 1 and tj * item_bytes > prof.local_mem:
            tj //= 2
        per_row = builtins.max(1, -(-tune.groups // rows)) if rows * n >= _SPLIT_MIN else 1
        k = builtins.max(tune.kmin_inner, -(-n // (tj * vec * per_row)))
        chunk = tj * vec * k
        nch = -(-n // chunk)
        return Pass("inner", tuple(kept), n, s_r, (), vec, 1, tune.blocked, k, chunk, nch,
                    (rows * nch * tj,), (tj,), rows, 1, 1)
    c_size, c_stride = kept[-1]
    outer = tuple(kept[:-1])
    o_size = math.prod(s for s, _ in outer)
    if c_stride == 1 and not is_arg and tune.cv > 1:
        # CPUs: one program for every width; narrower column sets take the kernel's partial-block path
        # (a 256 x 10 bias gradient then shares the 512-wide layers' program: one PoCL build less)
        vec, cv = tune.vec, tune.cv
    else:
        vec = tune.vec if (c_stride == 1 and not is_arg and c_size >= tune.vec) else 1
        cv = 1
    col_groups = -(-c_size // (vec * cv))
    tc = builtins.min(wg, mwis[0], _pow2_ceil(col_groups))
    # CPUs: always wg items (idle ones cost PoCL next to nothing), so every shape launches with the same
    # local size and PoCL compiles one work-group function per program rather than one per local size
    few = wg if tune.cv > 1 else _pow2_ceil(-(-n // tune.kmin_outer))
    tj = builtins.min(wg // tc, mwis[1 if len(mwis) > 1 else 0], few)
    while tj > 1 and tc * tj * vec * cv * item_bytes > prof.local_mem:
        tj //= 2
    while tc > 1 and tc * tj * vec * cv * item_bytes > prof.local_mem:
        tc //= 2
    wide = -(-col_groups // tc)
    per = builtins.max(1, -(-tune.groups // (wide * o_size))) if rows * n >= _SPLIT_MIN else 1
    k = builtins.max(tune.kmin_outer, -(-n // (tj * per)))
    chunk = tj * k
    nch = -(-n // chunk)
    return Pass("outer", outer, n, s_r, (c_size, c_stride), vec, cv, tune.blocked, k, chunk, nch,
                (o_size * nch * wide * tc * tj,), (tc * tj,), rows, tc, wide)


def plan(shape, strides, axes, device, is_arg=False, itemsize=4):
    """The passes that reduce `axes` of a (shape, strides) view on `device`, for tests and benchmarks
    (axes that do not merge into one run are modelled as copied first)."""
    kept, red = _split(shape, strides, axes)
    if len(red) > 1 or len(kept) > _MAX_KEPT_RANK:
        kept, red = _split(_permuted_shape(shape, axes), None, range(len(shape) - len(axes), len(shape)))
    n = math.prod(s for s, _ in red)
    s_r = red[0][1] if red else 1
    passes = []
    while True:
        p = _plan_pass(kept, n, s_r, is_arg, itemsize, device, idx_in=is_arg and bool(passes))
        passes.append(p)
        if p.nchunks == 1:
            return passes
        kept, n, s_r = _partials_layout(p)


def _permuted_shape(shape, axes):
    keep = [i for i in range(len(shape)) if i not in axes]
    return tuple(shape[i] for i in keep + list(axes))


def _split(shape, strides, axes):
    """(kept, reduced) merged (size, stride) lists; strides None means contiguous."""
    if strides is None:
        strides = contiguous_strides(shape)
    axes = set(axes)
    kept = _merge([(s, st) for i, (s, st) in enumerate(zip(shape, strides)) if i not in axes])
    red = _merge([(s, st) for i, (s, st) in enumerate(zip(shape, strides)) if i in axes])
    return kept, red


def _partials_layout(p: Pass):
    """Where a pass that wrote nchunks > 1 partials put them, as the next pass's (kept, n, s_r)."""
    if p.layout == "inner":
        return ([(p.rows, p.nchunks)] if p.rows > 1 else []), p.nchunks, 1
    return ([(p.rows, 1)] if p.rows > 1 else []), p.nchunks, p.rows


# --- launching -------------------------------------------------------------------------------------
_OFFSET_BOUND = 2**29  # inputs whose offset is at most this share cached plans (checked for int indices)


def _index_type(src: _Source, p: Pass) -> str:
    extent = src.off + 1 + builtins.sum((s - 1) * abs(st) for s, st in src.kept) + (src.n - 1) * abs(src.s_r)
    bound = builtins.max(extent, src.n + p.chunk + 16, p.rows * p.nchunks + 16)
    if p.layout == "outer":  # idle items past the last column still form (unused) addresses
        bound = builtins.max(bound, extent + p.tc * p.vec * p.cv * abs(p.columns[1]),
                             p.global_size[0])
    return "int" if bound < _INDEX_LIMIT else "long"


@dataclass
class _Step:
    """One prepared kernel launch: arguments fixed except the buffers and offsets filled per call."""
    kern: object
    global_size: tuple
    local_size: tuple
    args: list
    at_src: int          # position of the input buffer (its offset follows)
    at_ibuf: int         # position of the input index buffer, or -1
    at_val: int          # position of the value output, or -1
    at_idx: int          # position of the index output, or -1
    at_out_off: int
    partial_bytes: tuple  # (values, indices) bytes a non-final step allocates; () for the last step


def _prepare(op, src: _Source, p: Pass, acc_dtype, out_t, final, want_val, scale, device) -> _Step:
    """Kernel and argument template of one pass (built once per shape and cached)."""
    is_arg = op in ("argmax", "argmin")
    idx = _index_type(src, p)
    idt = np.dtype(np.int32 if idx == "int" else np.int64)
    acc_ct = ctype(acc_dtype)
    write_val = want_val if final else True
    write_idx = is_arg
    kahan = op == "sum" and _dt.is_floating(acc_dtype)
    params = dict(layout=p.layout, op=op, t=ctype(src.dtype), acc=acc_ct, out_t=out_t if final else acc_ct,
                  idx=idx, kr=len(p.kept), vec=p.vec, cv=p.cv, blocked=p.blocked, idx_in=src.ibuf is not None,
                  write_val=write_val, write_idx=write_idx, kahan=kahan)
    arg_dtypes = [idt, idt] + ([idt, idt] if p.layout == "outer" else []) + [idt, idt] * len(p.kept)
    args = [p.n, src.s_r] + (list(p.columns) if p.layout == "outer" else [])
    for size, stride in p.kept:
        args += [size, stride]
    at_src = len(args)
    arg_dtypes += [None, idt]
    args += [None, 0]
    slots = []
    for present in (src.ibuf is not None, write_val, write_idx):
        slots.append(len(args) if present else -1)
        if present:
            arg_dtypes.append(None)
            args.append(None)
    at_out_off = len(args)
    arg_dtypes += [idt, idt, idt, acc_dtype, idt]
    args += [0, p.chunk, p.k, acc_dtype.type(scale if final else 1), p.nchunks]
    if p.layout == "outer":
        arg_dtypes += [idt, idt, idt]
        args += [p.tc, p.wide, math.prod(s for s, _ in p.kept)]
    items = math.prod(p.local_size)
    if is_arg:
        arg_dtypes += [None, None]
        args += [cl.LocalMemory(items * acc_dtype.itemsize), cl.LocalMemory(items * 8)]
    else:
        arg_dtypes.append(None)
        lanes = p.vec * p.cv if p.layout == "outer" else 1
        args.append(cl.LocalMemory(items * lanes * acc_dtype.itemsize))
    kern = get_kernel(device, "reduce.cl.mako", f"reduce_{p.layout}", arg_dtypes=arg_dtypes, **params)
    count = p.rows * p.nchunks
    partial = () if final else (count * acc_dtype.itemsize, count * 8 if is_arg else 0)
    return _Step(kern, p.global_size, p.local_size, args, at_src, slots[0], slots[1], slots[2], at_out_off,
                 partial)


_STEPS = caches.new_cache("reduce steps")  # build-then-publish; bounded (backend/caches.py)


def _steps_for(op, x: TensorBase, kept, red, acc_dtype, out_t, want_val, scale):
    """The cached launches that reduce x's (kept, red) layout; rebuilt only for a new shape/strides."""
    big = x.offset > _OFFSET_BOUND
    key = (id(x.device), op, x.dtype, acc_dtype, out_t, want_val, scale, tuple(kept), tuple(red), big)
    steps = _STEPS.get(key)
    if steps is None:
        is_arg = op in ("argmax", "argmin")
        n = math.prod(s for s, _ in red)
        src = _Source(None, x.offset if big else _OFFSET_BOUND, x.dtype, kept, n, red[0][1] if red else 1)
        steps = []
        while True:
            p = _plan_pass(src.kept, src.n, src.s_r, is_arg, acc_dtype.itemsize, x.device,
                           idx_in=src.ibuf is not None)
            final = p.nchunks == 1
            steps.append(_prepare(op, src, p, acc_dtype, out_t, final, want_val, scale, x.device))
            if final:
                break
            kept2, n2, s_r2 = _partials_layout(p)
            src = _Source(None, 0, acc_dtype, kept2, n2, s_r2, True if is_arg else None)
        if not big:
            if len(_STEPS) >= 4096:  # many distinct shapes (e.g. varying lengths): start over
                _STEPS.clear()
            _STEPS[key] = steps
    return steps


def _run(steps, x: TensorBase, out_val, out_idx):
    """Launch prepared steps: x in, partials through the pool, out_val/out_idx written by the last."""
    device = x.device
    src, src_off, ibuf = x._buf, x.offset, None
    for step in steps:
        args = list(step.args)
        args[step.at_src] = src
        args[step.at_src + 1] = src_off
        if step.at_ibuf >= 0:
            args[step.at_ibuf] = ibuf
        if step.partial_bytes:
            val = device.pool.allocate(step.partial_bytes[0])
            idx = device.pool.allocate(step.partial_bytes[1]) if step.partial_bytes[1] else None
        else:
            val = out_val._buf if out_val is not None else None
            idx = out_idx._buf if out_idx is not None else None
            args[step.at_out_off] = (out_val if out_val is not None else out_idx).offset
        if step.at_val >= 0:
            args[step.at_val] = val
        if step.at_idx >= 0:
            args[step.at_idx] = idx
        dispatch.launch(device, step.kern, step.global_size, step.local_size, args)
        src, src_off, ibuf = val, 0, idx


def _reduce(op: str, x: TensorBase, axes, out_dtype, acc_dtype, scale=1.0, with_values=False):
    """Reduce `axes` of x with op; returns a contiguous tensor of the kept shape (keepdim=False).

    For argmax/argmin the result holds int64 indices into the flattened reduced axes (C order); with
    `with_values` it is (values of out_dtype, indices), both from the same pass.
    """
    kept_shape = tuple(s for i, s in enumerate(x.shape) if i not in axes)
    n = math.prod(x.shape[i] for i in axes)
    rows = math.prod(kept_shape)
    if n == 0 and rows > 0 and op not in ("sum", "prod"):
        raise ValueError(f"{op} of an empty tensor: the reduced dimensions {tuple(axes)} of shape "
                         f"{tuple(x.shape)} have no elements and {op} has no identity")
    is_arg = op in ("argmax", "argmin")
    out = TensorBase._empty(kept_shape, _dt.int64 if is_arg else out_dtype, x.device)
    vals_out = TensorBase._empty(kept_shape, out_dtype, x.device) if with_values else None
    result = (vals_out, out) if with_values else out
    if rows == 0:
        return result
    if n == 0:
        return launch("v0", [0 if op == "sum" else 1], out_dtype, out_dtype, out=out)
    kept, red = _split(x.shape, x.strides, axes)
    if len(red) > 1 and not is_arg:
        return _reduce_in_stages(op, x, axes, out_dtype, acc_dtype, scale)
    if len(red) > 1 or len(kept) > _MAX_KEPT_RANK:
        keep = [i for i in range(x.ndim) if i not in axes]
        x = contiguous(permute(x.detach(), keep + list(axes)))
        kept, red = _split(x.shape, x.strides, range(len(keep), x.ndim))
    out_val = vals_out if is_arg else out
    out_idx = out if is_arg else None
    acc_dtype = np.dtype(acc_dtype)
    steps = _steps_for(op, x, kept, red, acc_dtype, ctype(out_dtype), out_val is not None, scale)
    _run(steps, x, out_val, out_idx)
    return result


def _innermost_run(x: TensorBase, axes):
    """The reduced axes that merge into one strided run with the smallest stride."""
    runs = []
    for i in axes:
        size, stride = x.shape[i], x.strides[i]
        if size == 1:
            continue
        if runs and runs[-1][2] == stride * size:
            runs[-1] = (runs[-1][0] + [i], runs[-1][1] * size, stride)
        else:
            runs.append(([i], size, stride))
    return builtins.min(runs, key=lambda r: abs(r[2]))[0]


def _reduce_in_stages(op, x: TensorBase, axes, out_dtype, acc_dtype, scale) -> TensorBase:
    """Reduced axes that do not form one run (e.g. dims 0 and 2 of a 3-D tensor) are reduced one run at a
    time, innermost first, each stage reading its input in place; intermediates keep the accumulator
    type. Only value ops (not arg ops, whose flat index needs all axes at once) come here."""
    first = _innermost_run(x, axes)
    y = _reduce(op, x, tuple(first), acc_dtype, acc_dtype)
    rest = tuple(a - builtins.sum(1 for f in first if f < a) for a in axes if a not in first)
    return _reduce(op, y, rest, out_dtype, acc_dtype, scale)


# --- argument handling -----------------------------------------------------------------------------
def _dim_arg(dim, axis):
    if axis is not None:
        if dim is not None:
            raise TypeError("give either dim or axis, not both")
        return axis
    return dim


def _keep_arg(keepdim, keepdims):
    return bool(keepdims) if keepdims is not None else bool(keepdim)


def _axes(x: TensorBase, dim) -> tuple:
    if dim is None:
        return tuple(range(x.ndim))
    dims = tuple(dim) if isinstance(dim, (tuple, list)) else (dim,)
    if x.ndim == 0:
        for d in dims:
            _axis(d, 0)
        return ()
    axes = tuple(sorted({_axis(d, x.ndim) for d in dims}))
    if len(axes) != len(dims):
        raise ValueError(f"dim {dim} names an axis twice")
    return axes


def _kept_shape(x, axes, keepdim):
    return kept_shape(x.shape, axes, keepdim)


def _check(x, name):
    if not isinstance(x, TensorBase):
        raise TypeError(f"{name} expects a clnet Tensor, got {type(x).__name__}")


def _sum_dtypes(x: TensorBase, dtype):
    """(output dtype, accumulator dtype): integers and bools sum in int64, float16 in float32."""
    if dtype is not None:
        out_dt = _dt.as_dtype(dtype)
    else:
        out_dt = _dt.int64 if x.dtype.kind in "biu" else x.dtype
    if _dt.is_floating(out_dt):
        acc = _dt.float32 if out_dt == _dt.float16 else out_dt
        if x.dtype == _dt.float64:
            acc = _dt.float64
        return out_dt, acc
    return out_dt, _dt.int64


def _minmax_acc(dt):
    if dt == _dt.float16:
        return _dt.float32
    if dt in (_dt.bool_, _dt.uint8, _dt.int8, _dt.int16):  # the kernel's extreme values are int's and long's
        return _dt.int32
    return dt


def _grad_to_kept(g, x, axes):
    kept = _kept_shape(x, axes, True)
    return reshape(g, kept)


def _grad_back(g, x, axes):
    """A reduction's gradient read back over x's shape (a zero-stride view: no copy), in x's dtype."""
    gx = broadcast_view(_grad_to_kept(g, x, axes), x.shape)
    return gx if g.dtype == x.dtype else cast(gx, x.dtype)


def _graph_back(g, x, axes):
    """_grad_back written with recorded ops, for create_graph=True: the broadcast view records the sum
    back as its gradient, so the result can be differentiated again."""
    gk = _grad_to_kept(g, x, axes)
    gx = broadcast_view(gk, x.shape)
    record("expand", gx, (gk,), lambda h: reshape(sum(h, axes, keepdim=True), gk.shape), differentiable=True)
    return gx if g.dtype == x.dtype else cast(gx, x.dtype)


def _with_graph_rule(rule, graph_rule):
    rule.graph_rule = graph_rule
    return rule


# --- public reductions -----------------------------------------------------------------------------
@op("sum")
def sum(x: TensorBase, dim=None, keepdim=False, dtype=None, *, axis=None, keepdims=None) -> TensorBase:
    """Sum over `dim` (an int, a tuple, or None for all); float32 sums are Kahan-compensated."""
    _check(x, "sum")
    dim, keepdim = _dim_arg(dim, axis), _keep_arg(keepdim, keepdims)
    axes = _axes(x, dim)
    out_dt, acc = _sum_dtypes(x, dtype)
    y = reshape(_reduce("sum", x, axes, out_dt, acc), _kept_shape(x, axes, keepdim))
    if needs_grad(x) and _dt.is_floating(out_dt):
        record("sum", y, (x,), _with_graph_rule(lambda g: _grad_back(g, x, axes),
                                                lambda g: _graph_back(g, x, axes)))
    return y


@op("mean")
def mean(x: TensorBase, dim=None, keepdim=False, dtype=None, *, axis=None, keepdims=None) -> TensorBase:
    """Mean over `dim`; one kernel (the sum's last pass scales). The mean of nothing is NaN."""
    _check(x, "mean")
    dim, keepdim = _dim_arg(dim, axis), _keep_arg(keepdim, keepdims)
    out_dt = _dt.as_dtype(dtype) if dtype is not None else x.dtype
    if not _dt.is_floating(out_dt):
        raise TypeError(f"mean needs a floating-point tensor, got {x.dtype.name}; use .float() first "
                        f"or pass dtype=clnet.float32")
    axes = _axes(x, dim)
    n = math.prod(x.shape[i] for i in axes)
    _, acc = _sum_dtypes(x, out_dt)
    if n == 0:
        y = full(_kept_shape(x, axes, keepdim), float("nan"), dtype=out_dt, device=x.device)
    else:
        y = reshape(_reduce("sum", x, axes, out_dt, acc, scale=1.0 / n), _kept_shape(x, axes, keepdim))
    if needs_grad(x):
        scale = 1.0 / n if n else float("nan")
        record("mean", y, (x,), _with_graph_rule(lambda g: _grad_back(mul(g, scale), x, axes),
                                                 lambda g: _graph_back(mul(g, scale), x, axes)))
    return y


@op("prod")
def prod(x: TensorBase, dim=None, keepdim=False, dtype=None, *, axis=None, keepdims=None) -> TensorBase:
    """Product over `dim`. Its gradient is out / x, so inputs containing zeros get non-finite gradients."""
    _check(x, "prod")
    dim, keepdim = _dim_arg(dim, axis), _keep_arg(keepdim, keepdims)
    axes = _axes(x, dim)
    out_dt, acc = _sum_dtypes(x, dtype)
    y = reshape(_reduce("prod", x, axes, out_dt, acc), _kept_shape(x, axes, keepdim))
    if needs_grad(x) and _dt.is_floating(out_dt):
        yk = reshape(y.detach(), _kept_shape(x, axes, True))
        record("prod", y, (x,), lambda g: div(mul(_grad_to_kept(g, x, axes), yk), x), saved=(x,))
    return y


def _minmax(op: str, x: TensorBase, dim, keepdim):
    _check(x, "a" + op)
    axes = _axes(x, dim)
    y = reshape(_reduce(op, x, axes, x.dtype, _minmax_acc(x.dtype)), _kept_shape(x, axes, keepdim))
    if needs_grad(x):
        yk = reshape(y.detach(), _kept_shape(x, axes, True))

        def backward(g):  # split evenly among ties, as PyTorch's amax/amin
            hit = eq(x.detach(), yk)
            count = sum(hit, axes, keepdim=True)
            return div(mul(_grad_to_kept(g, x, axes), hit), count)
        record("a" + op, y, (x,), backward, saved=(x,))
    return y


@op("amax")
def amax(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """Largest value over `dim` (NaN if any is NaN, as numpy); gradient split evenly among ties."""
    return _minmax("max", x, _dim_arg(dim, axis), _keep_arg(keepdim, keepdims))


@op("amin")
def amin(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    return _minmax("min", x, _dim_arg(dim, axis), _keep_arg(keepdim, keepdims))


def _arg(op, x: TensorBase, dim, keepdim):
    _check(x, op)
    if dim is None:
        y = _reduce(op, x, tuple(range(x.ndim)), _dt.int64, _minmax_acc(x.dtype))
        return reshape(y, (1,) * x.ndim if keepdim else ())
    if isinstance(dim, (tuple, list)):
        raise TypeError(f"{op} takes one dim (an int) or None, got {dim!r}")
    axes = _axes(x, dim)
    y = _reduce(op, x, axes, _dt.int64, _minmax_acc(x.dtype))
    return reshape(y, _kept_shape(x, axes, keepdim))


@op("argmax")
def argmax(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """Index of the first largest value (of the first NaN, if any) along `dim`, or of the flattened x."""
    return _arg("argmax", x, _dim_arg(dim, axis), _keep_arg(keepdim, keepdims))


@op("argmin")
def argmin(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    return _arg("argmin", x, _dim_arg(dim, axis), _keep_arg(keepdim, keepdims))


def _values_at(op, x: TensorBase, dim, keepdim):
    """(values, indices) along one dim; the gradient goes to the returned index only."""
    d = _axes(x, dim)
    if len(d) != 1 and x.ndim:
        raise TypeError(f"max/min with a dim take one int, got {dim!r}")
    y, idx = _reduce("arg" + op, x, d, x.dtype, _minmax_acc(x.dtype), with_values=True)
    y = reshape(y, _kept_shape(x, d, keepdim))
    idx = reshape(idx, _kept_shape(x, d, keepdim))
    if needs_grad(x):
        idx_k = reshape(idx, _kept_shape(x, d, True))

        def backward(g):
            if not x.ndim:
                return g
            axis = d[0]
            shape = [1] * x.ndim
            shape[axis] = x.shape[axis]
            pos = reshape(arange(x.shape[axis], dtype=_dt.int64, device=x.device), shape)
            return where(eq(pos, idx_k), _grad_to_kept(g, x, d), 0.0)
        record(op, y, (x,), backward)
    return (MaxResult if op == "max" else MinResult)(y, idx)


# what max/min along a dim return: a tuple with PyTorch's field names (`x.max(1).values`, `v, i = x.max(1)`)
MaxResult = namedtuple("max", ["values", "indices"])
MinResult = namedtuple("min", ["values", "indices"])


@op("max")
def max(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """max over all elements, (values, indices) along `dim` as in PyTorch, or the elementwise maximum
    when the second argument is a tensor (torch.max(a, b))."""
    if isinstance(dim, TensorBase):
        return maximum(x, dim)
    dim, keepdim = _dim_arg(dim, axis), _keep_arg(keepdim, keepdims)
    if dim is None:
        return amax(x)
    if isinstance(dim, (tuple, list)):
        return amax(x, dim, keepdim)
    return _values_at("max", x, dim, keepdim)


@op("min")
def min(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """min over all elements, (values, indices) along `dim`, or the elementwise minimum of two tensors."""
    if isinstance(dim, TensorBase):
        return minimum(x, dim)
    dim, keepdim = _dim_arg(dim, axis), _keep_arg(keepdim, keepdims)
    if dim is None:
        return amin(x)
    if isinstance(dim, (tuple, list)):
        return amin(x, dim, keepdim)
    return _values_at("min", x, dim, keepdim)


@op("var")
def var(x, dim=None, keepdim=False, unbiased=True, *, correction=None, axis=None, keepdims=None):
    """Variance (the mean, then the mean squared deviation); correction=1 (unbiased) by default.
    keepdim comes before unbiased so Tensor.var(dim, keepdim) matches the other reductions; pass
    unbiased/correction by keyword, as PyTorch's current signature does."""
    _check(x, "var")
    dim, keepdim = _dim_arg(dim, axis), _keep_arg(keepdim, keepdims)
    if not _dt.is_floating(x.dtype):
        raise TypeError(f"var needs a floating-point tensor, got {x.dtype.name}")
    axes = _axes(x, dim)
    corr = (1 if unbiased else 0) if correction is None else correction
    n = math.prod(x.shape[i] for i in axes)
    d = sub(x, mean(x, axes, keepdim=True))
    return mul(sum(mul(d, d), axes, keepdim=keepdim), 1.0 / (n - corr) if n - corr > 0 else float("nan"))


@op("std")
def std(x, dim=None, keepdim=False, unbiased=True, *, correction=None, axis=None, keepdims=None):
    """Standard deviation: sqrt(var)."""
    return sqrt(var(x, dim, keepdim, unbiased, correction=correction, axis=axis, keepdims=keepdims))


@op("logsumexp")
def logsumexp(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """log(sum(exp(x))) shifted by the (detached) max, so large inputs do not overflow."""
    _check(x, "logsumexp")
    dim, keepdim = _dim_arg(dim, axis), _keep_arg(keepdim, keepdims)
    axes = _axes(x, dim)
    if math.prod(x.shape[i] for i in axes) == 0:  # log(0) = -inf over nothing (max has no identity)
        return full(_kept_shape(x, axes, keepdim), float("-inf"), dtype=x.dtype, device=x.device)
    m = amax(x.detach(), axes, keepdim=True)
    m = where(isinf(m), 0.0, m)
    y = add(log(sum(exp(sub(x, m)), axes, keepdim=True)), m)
    return y if keepdim else reshape(y, _kept_shape(x, axes, False))


def _logical(op, x, dim, keepdim, empty_value):
    _check(x, "any" if op == "max" else "all")
    axes = _axes(x, dim)
    b = x if x.dtype == _dt.bool_ else ne(x, 0)
    if math.prod(x.shape[i] for i in axes) == 0:
        return full(_kept_shape(x, axes, keepdim), empty_value, dtype=_dt.bool_, device=x.device)
    return reshape(_reduce(op, b, axes, _dt.bool_, _dt.int32), _kept_shape(x, axes, keepdim))


@op("any")
def any(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """True where any element along `dim` is non-zero (False over nothing)."""
    return _logical("max", x, _dim_arg(dim, axis), _keep_arg(keepdim, keepdims), False)


@op("all")
def all(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """True where every element along `dim` is non-zero (True over nothing)."""
    return _logical("min", x, _dim_arg(dim, axis), _keep_arg(keepdim, keepdims), True)

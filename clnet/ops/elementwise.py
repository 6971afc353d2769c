"""Elementwise ops: each one is a C expression over operands v0, v1, ... plus its gradient rule.

`launch` is the one place that turns an expression into a kernel call: it broadcasts shapes, merges
dimensions that are contiguous for every operand, and passes sizes and strides as kernel arguments,
so a new shape of the same rank reuses the built kernel. Scalars are kernel arguments too. The
work done per distinct layout (broadcast, collapse, kernel lookup) is kept in a small plan cache,
so a training step that repeats the same shapes pays only for building the argument list.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import dtypes as _dt
from ..autograd import is_grad_enabled, needs_grad, record
from ..backend import caches
from ..backend.programs import ctype, get_kernel
from ..tensor import Tensor, _check_device_dtype

_INT_MAX = 2**31 - 1


# --- shapes ------------------------------------------------------------------------------------------
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


def _broadcast_strides(shape_t, strides_t, shape) -> list:
    pad = len(shape) - len(shape_t)
    strides = [0] * pad
    for size, tsize, st in zip(shape[pad:], shape_t, strides_t):
        strides.append(0 if tsize == 1 and size != 1 else st)
    return strides


def _collapse(shape, stride_lists):
    """Drop size-1 dims and merge neighbours that are contiguous for every operand."""
    dims = [(s, [st[i] for st in stride_lists]) for i, s in enumerate(shape) if s != 1]
    merged = []
    for size, sts in dims:
        if merged:
            psize, psts = merged[-1]
            if all(p == q * size for p, q in zip(psts, sts)):
                merged[-1] = (psize * size, sts)
                continue
        merged.append((size, sts))
    return [m[0] for m in merged], [[m[1][k] for m in merged] for k in range(len(stride_lists))]


def _as_operand(x, device):
    if isinstance(x, Tensor):
        if device is not None and x.device is not device:
            raise ValueError(f"tensors are on different devices: {device} and {x.device}; "
                             "move one with .to(device)")
        return x
    if isinstance(x, (numbers.Number, np.number, np.bool_)):
        if isinstance(x, complex) or isinstance(x, np.complexfloating):
            raise TypeError("complex numbers are not supported by clnet")
        return x
    if isinstance(x, (np.ndarray, list, tuple)):
        from .creation import tensor
        return tensor(x, device=device)
    raise TypeError(f"unsupported operand type {type(x).__name__}; expected a Tensor, a number or an array")


def _device_of(xs):
    for x in xs:
        if isinstance(x, Tensor):
            return x.device
    from ..backend.devices import default_device
    return default_device()


# --- the launcher --------------------------------------------------------------------------------------
class _Plan:
    """Everything about one (expression, dtypes, layouts) launch that does not depend on buffers/scalars."""

    __slots__ = ("kern", "shape", "strides", "n", "gsize", "lsize", "out_dims", "op_strides", "scalar_type")


_PLANS = caches.new_cache("elementwise plans")  # build-then-publish; bounded (backend/caches.py)
_PLAN_LIMIT = 4096


def _make_plan(device, expr, operands, out_dtype, compute_dtype, out) -> _Plan:
    for dt in (out_dtype, compute_dtype):  # a clear error before the compiler's, e.g. double on llvmpipe
        _check_device_dtype(device, _dt.as_dtype(dt))
    tensors = [x for x in operands if isinstance(x, Tensor)]
    shape = broadcast_shapes(*(t.shape for t in tensors)) if tensors else ()
    if out is not None:
        if broadcast_shapes(out.shape, shape) != out.shape:
            raise ValueError(f"output of shape {tuple(out.shape)} cannot hold the broadcast result of shape "
                             f"{tuple(shape)}")
        shape = out.shape
    plan = _Plan()
    plan.shape = shape
    plan.strides = _contiguous(shape)
    plan.n = n = math.prod(shape)
    ct_dtype = _dt.float32 if compute_dtype == _dt.float16 else np.dtype(compute_dtype)
    plan.scalar_type = ct_dtype.type
    if n == 0:
        plan.kern = None
        return plan
    out_strides = list(out.strides) if out is not None else list(_contiguous(shape))
    strides = [out_strides] + [_broadcast_strides(t.shape, t.strides, shape) for t in tensors]
    sizes, strides = _collapse(shape, strides)
    rank = len(sizes)
    if rank <= 1 and all(st == [1] or not st for st in strides):
        rank = 0
    storage = [out._storage_size if out is not None else n] + [t._storage_size for t in tensors]
    idx = "int" if max(storage) <= _INT_MAX and n <= _INT_MAX else "long"
    idx_dt = np.dtype(np.int32 if idx == "int" else np.int64)
    in_ts = tuple(ctype(x.dtype) if isinstance(x, Tensor) else None for x in operands)
    arg_dtypes = [idx_dt, None, idx_dt] + [idx_dt, idx_dt] * rank
    plan.out_dims = [v for d in range(rank) for v in (sizes[d], strides[0][d])]
    plan.op_strides = []
    k = 1
    for t in in_ts:
        if t is None:
            arg_dtypes.append(ct_dtype)
            plan.op_strides.append(None)
        else:
            arg_dtypes += [None, idx_dt] + [idx_dt] * rank
            plan.op_strides.append(strides[k] if rank else [])
            k += 1
    wg = device.profile.elementwise_wg
    grid2 = _use_grid2(device, sizes, rank, wg)
    plan.kern = get_kernel(device, "elementwise.cl.mako", "ew", arg_dtypes=arg_dtypes,
                           name="ew", expr=expr, out_t=ctype(out_dtype), out_bool=out_dtype == _dt.bool_,
                           in_ts=in_ts, ct=ctype(ct_dtype), rank=rank, idx=idx, grid2=grid2)
    if grid2:
        plan.gsize = (-(-sizes[-1] // wg) * wg, n // sizes[-1])
        plan.lsize = (wg, 1)
    else:
        plan.gsize = (-(-n // wg) * wg,)
        plan.lsize = (wg,)
    return plan


_GRID_DIM1_LIMIT = 65535  # some GPUs cap a range's second dimension at 65535 groups


def _use_grid2(device, sizes, rank, wg) -> bool:
    """A 2-D range (inner dimension x the rest) for strided/broadcast layouts on CPUs, when the inner
    dimension fills a work-group: PoCL then vectorises the inner loop without a division per element
    (x (4096, 4096) + row (4096,): 0.75 -> 3.1 GB/s, measured side by side on our Xeon under load)."""
    return (device.type == "cpu" and rank >= 2 and sizes[-1] >= wg
            and math.prod(sizes[:-1]) <= _GRID_DIM1_LIMIT)


def _contiguous(shape):
    strides, acc = [], 1
    for s in reversed(shape):
        strides.append(acc)
        acc *= max(s, 1)
    return tuple(reversed(strides))


def launch(expr: str, operands, out_dtype, compute_dtype, out: Tensor | None = None) -> Tensor:
    """Run `out = expr(operands)` elementwise, broadcasting; returns the (new or given) output.

    `operands` are tensors (on one device) and Python/numpy scalars, named v0, v1, ... in `expr`;
    each is loaded and converted to `compute_dtype` before `expr` runs; the result is stored as
    `out_dtype` (bool stores `expr != 0`). Returns at once: the kernel is only enqueued.
    """
    device = None
    sig = []
    for x in operands:
        if isinstance(x, Tensor):
            if device is None:
                device = x.device
            elif x.device is not device:
                raise ValueError(f"tensors are on different devices: {device} and {x.device}; "
                                 "move one with .to(device)")
            sig.append((x.shape, x.strides, x.dtype, x._storage_size > _INT_MAX))
        else:
            sig.append(None)
    if out is not None:
        if device is None:
            device = out.device
        elif out.device is not device:
            raise ValueError(f"the output is on {out.device} but the inputs are on {device}")
        out_sig = (out.shape, out.strides, out._storage_size > _INT_MAX)
    else:
        out_sig = None
        if device is None:
            from ..backend.devices import default_device
            device = default_device()
    key = (device, expr, out_dtype, compute_dtype, out_sig, tuple(sig))
    plan = _PLANS.get(key)
    if plan is None:
        plan = _make_plan(device, expr, operands, out_dtype, compute_dtype, out)
        if len(_PLANS) >= _PLAN_LIMIT:
            _PLANS.clear()
        _PLANS[key] = plan
    if out is None:
        out = Tensor._empty(plan.shape, out_dtype, device, plan.strides)
    if plan.kern is None:
        return out
    args = [plan.n, out._buf, out.offset]
    args += plan.out_dims
    for x, st in zip(operands, plan.op_strides):
        if st is None:
            args.append(plan.scalar_type(x))
        else:
            args.append(x._buf)
            args.append(x.offset)
            args += st
    plan.kern(device.queue, plan.gsize, plan.lsize, *args)
    return out


def _fused(expr: str, *operands) -> Tensor:
    """A gradient formula as one kernel, in the (floating) type of its tensor operands."""
    dt = _dt.result_type([x.dtype for x in operands if isinstance(x, Tensor)])
    return launch(expr, operands, dt, dt)


def _zeros_like(g, x, o):
    return launch("0", [g], g.dtype, g.dtype)


# --- op table ------------------------------------------------------------------------------------
# Unary ops: name -> (C expression of v0, float-only?, gradient rule (g, x, out) -> grad_x, what the
# rule reads: "x" the input, "o" the output). Only what a rule reads is saved (and version-checked),
# so `y = x + 1; y += 1` stays differentiable as in PyTorch. Rules run under no_grad; where a formula
# would take several ops it is one fused kernel.
UNARY = {
    "neg": ("-v0", False, lambda g, x, o: neg(g), ""),
    "abs": ("(v0 < 0 ? -v0 : v0)", False, lambda g, x, o: _fused("v0 * ((v1 > 0) - (v1 < 0))", g, x), "x"),
    "sign": ("(v0 != v0 ? v0 : (v0 > 0) - (v0 < 0))", False, _zeros_like, ""),
    "exp": ("exp(v0)", True, lambda g, x, o: g * o, "o"),
    "log": ("log(v0)", True, lambda g, x, o: g / x, "x"),
    "sqrt": ("sqrt(v0)", True, lambda g, x, o: _fused("v0 / (2 * v1)", g, o), "o"),
    "rsqrt": ("rsqrt(v0)", True, lambda g, x, o: _fused("-0.5f * v0 * v1 / v2", g, o, x), "xo"),
    "sin": ("sin(v0)", True, lambda g, x, o: _fused("v0 * cos(v1)", g, x), "x"),
    "cos": ("cos(v0)", True, lambda g, x, o: _fused("-v0 * sin(v1)", g, x), "x"),
    "tanh": ("tanh(v0)", True, lambda g, x, o: _fused("v0 * (1 - v1 * v1)", g, o), "o"),
    "sigmoid": ("1 / (1 + exp(-v0))", True, lambda g, x, o: _fused("v0 * v1 * (1 - v1)", g, o), "o"),
    "relu": ("(v0 < 0 ? 0 : v0)", False, lambda g, x, o: _fused("(v1 > 0 ? v0 : 0)", g, o), "o"),
    "reciprocal": ("1 / v0", True, lambda g, x, o: _fused("-v0 * v1 * v1", g, o), "o"),
    "square": ("v0 * v0", False, lambda g, x, o: _fused("2 * v0 * v1", g, x), "x"),
    "log1p": ("log1p(v0)", True, lambda g, x, o: _fused("v0 / (1 + v1)", g, x), "x"),
    "expm1": ("expm1(v0)", True, lambda g, x, o: _fused("v0 * (v1 + 1)", g, o), "o"),
    "floor": ("floor(v0)", True, _zeros_like, ""),
    "ceil": ("ceil(v0)", True, _zeros_like, ""),
    "round": ("rint(v0)", True, _zeros_like, ""),
    "logical_not": ("!v0", False, None, ""),
    "isnan": ("v0 != v0", False, None, ""),
    "isinf": ("isinf(v0)", True, None, ""),
}
_BOOL_RESULT = {"logical_not", "isnan", "isinf"}
_INT_KEEPS_TYPE = {"floor", "ceil", "round"}  # floor(int tensor) is the int tensor, as in PyTorch


def _pow_grads(g, a, b, o, need_a, need_b):
    ga = gb = None
    if need_a:
        if isinstance(b, Tensor):
            ga = _fused("v0 * v2 * pow(v1, v2 - 1)", g, a, b)
        elif b == 0:
            ga = _zeros_like(g, a, o)
        else:
            ga = _fused("v0 * v2 * pow(v1, v3)", g, a, b, b - 1)
    if need_b:  # d/db a**b = a**b log a, taken as 0 where a == 0 and b >= 0 (as PyTorch)
        gb = _fused("((v2 == 0 && v3 >= 0) ? 0 : v0 * v1 * log(v2))", g, o, a, b)
    return ga, gb


def _div_grads(g, a, b, o, need_a, need_b):
    return (g / b if need_a else None), (_fused("-v0 * v1 / v2", g, o, b) if need_b else None)


# ties share the gradient equally, as in PyTorch
_MAX_A = "(v1 > v2 ? v0 : (v1 == v2 ? v0 / 2 : 0))"
_MAX_B = "(v2 > v1 ? v0 : (v1 == v2 ? v0 / 2 : 0))"

# Binary ops: name -> (C expression of v0, v1, result kind, gradient rule (g, a, b, out, need_a, need_b)
# -> (grad_a, grad_b), what the rule reads: "a", "b", "o").
# kind: "same" (promoted type), "float" (true division: ints give float32), "bool" (comparisons).
BINARY = {
    "add": ("v0 + v1", "same", lambda g, a, b, o, na, nb: (g, g), ""),
    "sub": ("v0 - v1", "same", lambda g, a, b, o, na, nb: (g, -g if nb else None), ""),
    "mul": ("v0 * v1", "same", lambda g, a, b, o, na, nb: (g * b if na else None, g * a if nb else None), "ab"),
    "div": ("v0 / v1", "float", _div_grads, "bo"),
    "pow": ("pow(v0, v1)", "same", _pow_grads, "abo"),
    "maximum": ("((v0 > v1 || v0 != v0) ? v0 : v1)", "same",
                lambda g, a, b, o, na, nb: (_fused(_MAX_A, g, a, b) if na else None,
                                            _fused(_MAX_B, g, a, b) if nb else None), "ab"),
    "minimum": ("((v0 < v1 || v0 != v0) ? v0 : v1)", "same",
                lambda g, a, b, o, na, nb: (_fused(_MAX_B, g, a, b) if na else None,
                                            _fused(_MAX_A, g, a, b) if nb else None), "ab"),
    "eq": ("v0 == v1", "bool", None, ""),
    "ne": ("v0 != v1", "bool", None, ""),
    "lt": ("v0 < v1", "bool", None, ""),
    "le": ("v0 <= v1", "bool", None, ""),
    "gt": ("v0 > v1", "bool", None, ""),
    "ge": ("v0 >= v1", "bool", None, ""),
    "logical_and": ("v0 && v1", "bool", None, ""),
    "logical_or": ("v0 || v1", "bool", None, ""),
    "logical_xor": ("(!v0) != (!v1)", "bool", None, ""),
    "floor_divide": ("floor(v0 / v1)", "same", None, ""),
    "remainder": ("((fmod(v0, v1) != 0 && ((fmod(v0, v1) < 0) != (v1 < 0))) ? fmod(v0, v1) + v1 : fmod(v0, v1))",
                  "same", None, ""),
}
# What a binary rule reads depends on which inputs need a gradient: d(a*b)/da reads b only.
_SAVES = {
    "mul": lambda na, nb: ("b" if na else "") + ("a" if nb else ""),
    "div": lambda na, nb: "b" + ("o" if nb else ""),
    "pow": lambda na, nb: "ab" + ("o" if nb else ""),
}


def _binary_uses(name, uses, need_a, need_b):
    f = _SAVES.get(name)
    return f(need_a, need_b) if f is not None else uses


# integer forms (floor semantics as Python; x // 0 and x % 0 give 0 instead of trapping the device)
_INT_EXPR = {
    "pow": "clnet_ipow(v0, v1)",
    "floor_divide": "(v1 == 0 ? 0 : v0 / v1 - ((v0 % v1 != 0) && ((v0 < 0) != (v1 < 0))))",
    "remainder": "(v1 == 0 ? 0 : ((v0 % v1 != 0 && ((v0 % v1 < 0) != (v1 < 0))) ? v0 % v1 + v1 : v0 % v1))",
}


_PY_NUMBERS = (int, float)


def _float_type(dt):
    return dt if _dt.is_floating(dt) else _dt.DEFAULT_FLOAT


def _operand_dtype(a, b):
    """Result dtype of a binary op over tensors/scalars with PyTorch's three-tier promotion."""
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        if a.dtype is b.dtype or a.dtype == b.dtype:
            return a.dtype
        if a.ndim and b.ndim:
            return _dt.promote_types(a.dtype, b.dtype)
    dims, zero, scalars = [], [], []
    for x in (a, b):
        if isinstance(x, Tensor):
            (dims if x.ndim else zero).append(x.dtype)
        else:
            scalars.append(x)
    return _dt.result_type(dims, scalars, zero)


def unary(name: str, x, out: Tensor | None = None) -> Tensor:
    expr, float_only, rule, uses = UNARY[name]
    if not isinstance(x, Tensor):
        x = _as_operand(x, None)
        if not isinstance(x, Tensor):
            from .creation import tensor
            x = tensor(x)
    if x.dtype == _dt.bool_ and name in ("neg", "sign"):
        raise TypeError(f"{name} is not defined for bool tensors; use logical_not (~) instead")
    if name in _INT_KEEPS_TYPE and not _dt.is_floating(x.dtype):
        dt = x.dtype
        expr = "v0"
    else:
        dt = _float_type(x.dtype) if float_only else x.dtype
    result_dt = _dt.bool_ if name in _BOOL_RESULT else dt
    if out is not None:
        return _inplace(name, expr, [x], out, result_dt, dt, rule, uses, unary=True)
    y = launch(expr, [x], result_dt, dt)
    if rule is not None and needs_grad(x):
        _record_unary(name, y, x, rule, uses)
    return y


def _record_unary(name, y, x, rule, uses):
    o = y.detach() if "o" in uses else None
    xx = x if "x" in uses else None
    saved = ((x,) if xx is not None else ()) + ((o,) if o is not None else ())
    record(name, y, (x,), lambda g: rule(g, xx, o), saved=saved)


def binary(name: str, a, b, out: Tensor | None = None) -> Tensor:
    expr, kind, rule, uses = BINARY[name]
    ta, tb = isinstance(a, Tensor), isinstance(b, Tensor)
    if ta and tb:
        if a.device is not b.device:
            raise ValueError(f"{name}: tensors are on different devices: {a.device} and {b.device}; "
                             "move one with .to(device)")
        dt = a.dtype if a.dtype is b.dtype else _operand_dtype(a, b)
    elif ta and type(b) in _PY_NUMBERS and a.dtype.kind == "f":  # the common `t * 0.5`: t's dtype
        dt = a.dtype
    elif tb and type(a) in _PY_NUMBERS and b.dtype.kind == "f":
        dt = b.dtype
    else:
        device = a.device if ta else (b.device if tb else None)
        if device is None:
            device = _device_of([a, b])
        a, b = _as_operand(a, device), _as_operand(b, device)
        dt = _operand_dtype(a, b)
    if kind == "float":
        dt = _float_type(dt)
    if dt == _dt.bool_ and name == "sub":
        raise TypeError("subtracting bool tensors is not supported; use logical_xor (^) or logical_not (~)")
    if kind == "bool":
        ct, result_dt = dt, _dt.bool_
    else:
        ct = result_dt = dt
    if not _dt.is_floating(dt) and name in _INT_EXPR:
        if name == "pow" and not isinstance(b, Tensor) and b < 0:
            raise ValueError("integers to negative integer powers are not allowed; use a float tensor")
        expr = _INT_EXPR[name]
    elif name == "pow" and not isinstance(b, Tensor):
        if b == 2:
            expr = "v0 * v0"
        elif b == 1:
            expr = "v0"
    if out is not None:
        return _inplace(name, expr, [a, b], out, result_dt, ct, rule, uses)
    y = launch(expr, [a, b], result_dt, ct)
    if rule is not None and needs_grad(a, b):
        _record_binary(name, y, a, b, rule, uses, y)
    return y


def _record_binary(name, y, a, b, rule, uses, out):
    """Hang the node of `y = name(a, b)` on y, saving only what the gradient rule will read."""
    ta = a if isinstance(a, Tensor) else None
    tb = b if isinstance(b, Tensor) else None
    inputs = tuple(t for t in (ta, tb) if t is not None)
    need_a = ta is not None and ta.requires_grad
    need_b = tb is not None and tb.requires_grad
    uses = _binary_uses(name.rstrip("_"), uses, need_a, need_b)
    o = out.detach() if "o" in uses else None
    saved = tuple(t for t, letter in ((ta, "a"), (tb, "b"), (o, "o")) if t is not None and letter in uses)

    # the rule gets only what it reads, so unread inputs are not kept alive until backward
    ra = a if ta is None or "a" in uses else None
    rb = b if tb is None or "b" in uses else None

    def backward(g):
        ga, gb = rule(g, ra, rb, o, need_a, need_b)
        return tuple(gr for gr, t in ((ga, ta), (gb, tb)) if t is not None)
    record(name, y, inputs, backward, saved=saved)


def _check_inplace_target(name, out: Tensor):
    if not is_grad_enabled():
        return
    if out.requires_grad and out._node is None:
        raise RuntimeError(f"a leaf tensor that requires grad is being used in an in-place operation "
                           f"({name}_); wrap the update in `with clnet.no_grad():`")
    base = out._base
    if base is not None and base.requires_grad and base._node is None:
        raise RuntimeError(f"a view of a leaf tensor that requires grad is being used in an in-place "
                           f"operation ({name}_); wrap the update in `with clnet.no_grad():`")


def _inplace(name, expr, operands, out, result_dt, ct, rule, uses, unary=False):
    """out <- expr(operands) in place: checks, overlap safety, version bump and autograd history."""
    if not isinstance(out, Tensor):
        raise TypeError(f"out must be a clnet Tensor, got {type(out).__name__}")
    if not _dt.can_cast(result_dt, out.dtype):
        raise TypeError(f"result type {result_dt.name} of {name} can't be cast to the in-place "
                        f"output's dtype {out.dtype.name}")
    _check_inplace_target(name, out)
    tensors = [x for x in operands if isinstance(x, Tensor)]
    track = rule is not None and needs_grad(*tensors)
    if track and any(x is out for x in operands):
        # a tensor standing for out's old value keeps the old history; it is a real copy only when
        # the gradient rule reads that value (mul_, clamp_), an alias otherwise (add_, relu_)
        if unary:
            letters, reads = "x", uses
        else:
            letters = "abc"
            reads = _binary_uses(name, uses, *(isinstance(x, Tensor) and x.requires_grad for x in operands[:2]))
        reads_old = any(x is out and letters[i] in reads for i, x in enumerate(operands))
        old = launch("v0", [out], out.dtype, out.dtype) if reads_old else out.detach()
        old._node, old._out_index, old.requires_grad = out._node, out._out_index, out.requires_grad
        operands = [old if x is out else x for x in operands]
        tensors = [x for x in operands if isinstance(x, Tensor)]
    overlap = any(t._buf is out._buf and (t.offset, t.strides) != (out.offset, out.strides)
                  for t in tensors if t.numel() > 1)
    if overlap:  # e.g. x += x.T: compute into a fresh buffer first so no element is read after it is written
        tmp = launch(expr, operands, out.dtype, ct)
        launch("v0", [tmp], out.dtype, out.dtype, out=out)
    else:
        launch(expr, operands, out.dtype, ct, out=out)
    out._bump_version()
    if track:
        out._node = None
        if unary:
            _record_unary(name + "_", out, operands[0], rule, uses)
        else:
            _record_binary(name + "_", out, operands[0], operands[1], rule, uses, out)
    elif out._node is not None and is_grad_enabled() and not any(x is out for x in operands):
        out._node, out.requires_grad = None, False  # overwritten by values that need no gradient
    return out


def where(cond, a, b) -> Tensor:
    """Elementwise choice: a where cond is true (non-zero), else b (all three broadcast)."""
    device = _device_of([cond, a, b])
    cond, a, b = (_as_operand(x, device) for x in (cond, a, b))
    dt = _operand_dtype(a, b)
    y = launch("(v0 ? v1 : v2)", [cond, a, b], dt, dt)
    if needs_grad(a, b):
        ta = a if isinstance(a, Tensor) and a.requires_grad else None
        tb = b if isinstance(b, Tensor) and b.requires_grad else None
        inputs = tuple(t for t in (a, b) if isinstance(t, Tensor))

        def backward(g):
            grads = []
            if isinstance(a, Tensor):
                grads.append(_fused("(v1 ? v0 : 0)", g, cond) if ta is not None else None)
            if isinstance(b, Tensor):
                grads.append(_fused("(v1 ? 0 : v0)", g, cond) if tb is not None else None)
            return tuple(grads)
        record("where", y, inputs, backward)
    return y


def clamp(x, min=None, max=None, out: Tensor | None = None) -> Tensor:
    """Limit values to [min, max] (either may be None) as min(max(x, min), max); NaN stays NaN."""
    if min is None and max is None:
        raise ValueError("clamp needs at least one of min and max")
    if not isinstance(x, Tensor):
        x = _as_operand(x, None)
        if not isinstance(x, Tensor):
            from .creation import tensor
            x = tensor(x)
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        if out is not None:
            raise TypeError("in-place clamp_ takes number bounds; use clnet.maximum/minimum for tensors")
        y = x
        if min is not None:
            y = maximum(y, min)
        if max is not None:
            y = minimum(y, max)
        return y
    dt = _dt.result_type([x.dtype], [v for v in (min, max) if v is not None])
    if min is not None and max is not None:
        expr, operands = "((v0 < v1 ? v1 : v0) > v2 ? v2 : (v0 < v1 ? v1 : v0))", [x, min, max]
    elif min is not None:
        expr, operands = "(v0 < v1 ? v1 : v0)", [x, min]
    else:
        expr, operands = "(v0 > v1 ? v1 : v0)", [x, max]
    if min is not None and max is not None:
        gexpr = "((v1 >= v2 && v1 <= v3) ? v0 : 0)"
    elif min is not None:
        gexpr = "(v1 >= v2 ? v0 : 0)"
    else:
        gexpr = "(v1 <= v2 ? v0 : 0)"

    def rule(g, xx, o):
        return _fused(gexpr, g, xx, *operands[1:])
    if out is not None:
        return _inplace("clamp", expr, operands, out, dt, dt, _ClampRule(rule), "a")
    y = launch(expr, operands, dt, dt)
    if needs_grad(x):
        record("clamp", y, (x,), lambda g: rule(g, x, None), saved=(x,))
    return y


class _ClampRule:
    """Adapts clamp's one-input rule to _inplace's binary-rule calling convention."""

    def __init__(self, rule):
        self.rule = rule

    def __call__(self, g, a, b, o, need_a, need_b):
        return (self.rule(g, a, o) if need_a else None), None


def cast(x: Tensor, dtype) -> Tensor:
    """Convert to another dtype (to bool means != 0); differentiable between float types."""
    dtype = _dt.as_dtype(dtype)
    if dtype == x.dtype:
        return x
    ct = x.dtype if dtype == _dt.bool_ else dtype
    y = launch("v0", [x], dtype, ct)
    if _dt.is_floating(dtype) and _dt.is_floating(x.dtype) and needs_grad(x):
        src = x.dtype
        record("cast", y, (x,), lambda g: cast(g, src))
    return y


def copy_into(dst: Tensor, src) -> Tensor:
    """dst[...] = src with broadcasting and dtype conversion (no autograd; callers record)."""
    if isinstance(src, Tensor):
        if broadcast_shapes(src.shape, dst.shape) != dst.shape:
            raise ValueError(f"cannot copy a tensor of shape {tuple(src.shape)} into one of shape "
                             f"{tuple(dst.shape)}")
        if src.device is not dst.device:
            raise ValueError(f"cannot copy a tensor on {src.device} into one on {dst.device}; use .to()")
        src_dt = src.dtype
    else:
        src = _as_operand(src, dst.device)
        src_dt = src.dtype if isinstance(src, Tensor) else _dt.result_type([], [src])
    if isinstance(src, Tensor) and src._buf is dst._buf and (src.offset, src.strides) != (dst.offset, dst.strides):
        src = launch("v0", [src], src.dtype, src.dtype)  # overlapping views: read everything first
    ct = src_dt if (dst.dtype == _dt.bool_ or src_dt == _dt.bool_) else dst.dtype
    launch("v0", [src], dst.dtype, ct, out=dst)
    return dst


# --- public names --------------------------------------------------------------------------------
def _unary_fn(name):
    def fn(x):
        return unary(name, x)
    fn.__name__ = name
    fn.__qualname__ = name
    fn.__doc__ = f"Elementwise {name} (C: {UNARY[name][0]})."
    return fn


def _binary_fn(name):
    def fn(a, b):
        return binary(name, a, b)
    fn.__name__ = name
    fn.__qualname__ = name
    fn.__doc__ = f"Elementwise {name} with broadcasting (C: {BINARY[name][0]})."
    return fn


neg, abs, sign, exp, log, sqrt, rsqrt, sin, cos, tanh, sigmoid, relu, reciprocal, square, log1p, expm1, \
    floor, ceil, round, logical_not, isnan, isinf = (_unary_fn(n) for n in UNARY)
add, sub, mul, div, pow, maximum, minimum, eq, ne, lt, le, gt, ge, logical_and, logical_or, logical_xor, \
    floor_divide, remainder = (_binary_fn(n) for n in BINARY)

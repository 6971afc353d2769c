"""Elementwise ops: each one is a C expression over operands v0, v1, ... plus its gradient rule.

`launch` is the one place that turns an expression into a kernel call: it broadcasts shapes, merges
dimensions that are contiguous for every operand, and passes sizes and strides as kernel arguments,
so a new shape of the same rank reuses the built kernel. Scalars are kernel arguments too.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import dtypes as _dt
from ..autograd import is_grad_enabled, needs_grad, record
from ..backend.programs import ctype, get_kernel
from ..tensor import Tensor

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


def _broadcast_strides(t: Tensor, shape) -> list:
    pad = len(shape) - t.ndim
    strides = [0] * pad
    for size, tsize, st in zip(shape[pad:], t.shape, t.strides):
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
        if x.device is not device:
            raise ValueError(f"tensors are on different devices: {device} and {x.device}; "
                             "move one with .to(device)")
        return x
    if isinstance(x, (bool, numbers.Number, np.number, np.bool_)):
        return x
    if isinstance(x, np.ndarray):
        from .creation import tensor
        return tensor(x, device=device)
    if isinstance(x, (list, tuple)):
        from .creation import tensor
        return tensor(x, device=device)
    raise TypeError(f"unsupported operand type {type(x).__name__}; expected a Tensor, a number or an array")


def _device_of(xs):
    for x in xs:
        if isinstance(x, Tensor):
            return x.device
    from ..backend.devices import default_device
    return default_device()


def _cast_scalar(x, ct_dtype):
    return ct_dtype.type(x)


def launch(expr: str, operands, out_dtype, compute_dtype, out: Tensor | None = None) -> Tensor:
    """Run `out = expr(operands)` elementwise, broadcasting; returns the (new or given) output."""
    device = _device_of(operands)
    tensors = [x for x in operands if isinstance(x, Tensor)]
    shape = broadcast_shapes(*(t.shape for t in tensors)) if tensors else ()
    if out is None:
        out = Tensor._empty(shape, out_dtype, device)
    elif broadcast_shapes(out.shape, shape) != out.shape:
        raise ValueError(f"output of shape {tuple(out.shape)} cannot hold the broadcast result of shape "
                         f"{tuple(shape)}")
    else:
        shape = out.shape
    n = math.prod(shape)
    if n == 0:
        return out
    strides = [list(out.strides)] + [_broadcast_strides(t, shape) for t in tensors]
    sizes, strides = _collapse(shape, strides)
    rank = len(sizes)
    if rank <= 1 and all(st == [1] or not st for st in strides):
        rank = 0
    biggest = max([out._storage_size] + [t._storage_size for t in tensors])
    idx = "int" if biggest <= _INT_MAX and n <= _INT_MAX else "long"
    idx_dt = np.dtype(np.int32 if idx == "int" else np.int64)
    ct_dtype = np.dtype(np.float32) if compute_dtype == _dt.float16 else np.dtype(compute_dtype)
    in_ts = tuple(ctype(x.dtype) if isinstance(x, Tensor) else None for x in operands)

    arg_dtypes = [idx_dt, None, idx_dt] + [idx_dt, idx_dt] * rank
    args = [n, out._buf, out.offset]
    for d in range(rank):
        args += [sizes[d], strides[0][d]]
    k = 1
    for x, t in zip(operands, in_ts):
        if t is None:
            arg_dtypes.append(ct_dtype)
            args.append(_cast_scalar(x, ct_dtype))
        else:
            arg_dtypes += [None, idx_dt] + [idx_dt] * rank
            args += [x._buf, x.offset] + (strides[k] if rank else [])
            k += 1
    kern = get_kernel(device, "elementwise.cl.mako", "ew", arg_dtypes=arg_dtypes,
                      name="ew", expr=expr, out_t=ctype(out.dtype), in_ts=in_ts,
                      ct=ctype(ct_dtype), rank=rank, idx=idx)
    wg = device.profile.elementwise_wg
    kern(device.queue, (-(-n // wg) * wg,), (wg,), *args)
    return out


# --- op table ------------------------------------------------------------------------------------
# Unary ops: name -> (C expression of v0, float-only?, gradient rule (g, x, out) -> grad_x).
# Gradient rules use the same ops, so they run on the device and can be recorded again.
UNARY = {
    "neg": ("-v0", False, lambda g, x, out: -g),
    "abs": ("(v0 < 0 ? -v0 : v0)", False, lambda g, x, out: g * sign(x)),
    "sign": ("(v0 > 0) - (v0 < 0)", False, None),
    "exp": ("exp(v0)", True, lambda g, x, out: g * out),
    "log": ("log(v0)", True, lambda g, x, out: g / x),
    "sqrt": ("sqrt(v0)", True, lambda g, x, out: g * 0.5 / out),
    "rsqrt": ("rsqrt(v0)", True, lambda g, x, out: g * -0.5 * out / x),
    "sin": ("sin(v0)", True, lambda g, x, out: g * cos(x)),
    "cos": ("cos(v0)", True, lambda g, x, out: -g * sin(x)),
    "tanh": ("tanh(v0)", True, lambda g, x, out: g * (1 - out * out)),
    "sigmoid": ("1 / (1 + exp(-v0))", True, lambda g, x, out: g * out * (1 - out)),
    "relu": ("(v0 < 0 ? 0 : v0)", False, lambda g, x, out: g * (out > 0)),
    "reciprocal": ("1 / v0", True, lambda g, x, out: -g * out * out),
    "square": ("v0 * v0", False, lambda g, x, out: g * 2 * x),
    "log1p": ("log1p(v0)", True, lambda g, x, out: g / (x + 1)),
    "expm1": ("expm1(v0)", True, lambda g, x, out: g * (out + 1)),
    "floor": ("floor(v0)", True, None),
    "ceil": ("ceil(v0)", True, None),
    "round": ("rint(v0)", True, None),
    "logical_not": ("!v0", False, None),
    "isnan": ("v0 != v0", False, None),
    "isinf": ("isinf(v0)", True, None),
}
_BOOL_RESULT = {"logical_not", "isnan", "isinf"}

# Binary ops: name -> (C expression of v0, v1, result kind, gradient rule (g, a, b, out) -> (ga, gb)).
# kind: "same" (promoted type), "float" (true division: ints give float32), "bool" (comparisons).
BINARY = {
    "add": ("v0 + v1", "same", lambda g, a, b, out: (g, g)),
    "sub": ("v0 - v1", "same", lambda g, a, b, out: (g, -g)),
    "mul": ("v0 * v1", "same", lambda g, a, b, out: (g * b, g * a)),
    "div": ("v0 / v1", "float", lambda g, a, b, out: (g / b, -g * out / b)),
    "pow": ("pow(v0, v1)", "float", lambda g, a, b, out: (g * b * pow(a, b - 1), g * out * log(a))),
    "maximum": ("((v0 > v1 || v0 != v0) ? v0 : v1)", "same",
                lambda g, a, b, out: (g * (a >= b), g * (a < b))),
    "minimum": ("((v0 < v1 || v0 != v0) ? v0 : v1)", "same",
                lambda g, a, b, out: (g * (a <= b), g * (a > b))),
    "eq": ("v0 == v1", "bool", None),
    "ne": ("v0 != v1", "bool", None),
    "lt": ("v0 < v1", "bool", None),
    "le": ("v0 <= v1", "bool", None),
    "gt": ("v0 > v1", "bool", None),
    "ge": ("v0 >= v1", "bool", None),
    "logical_and": ("v0 && v1", "bool", None),
    "logical_or": ("v0 || v1", "bool", None),
    "logical_xor": ("(!v0) != (!v1)", "bool", None),
    "floor_divide": ("floor((double)v0 / (double)v1)", "same", None),
    "remainder": ("v0 - floor((double)v0 / (double)v1) * v1", "same", None),
}


def _scalars(xs):
    return [x for x in xs if not isinstance(x, Tensor)]


def _tensor_dtypes(xs):
    return [x.dtype for x in xs if isinstance(x, Tensor)]


def _float_type(dt):
    return dt if _dt.is_floating(dt) else _dt.DEFAULT_FLOAT


def unary(name: str, x, out: Tensor | None = None) -> Tensor:
    expr, float_only, rule = UNARY[name]
    if not isinstance(x, Tensor):
        x = _as_operand(x, _device_of([x]))
        if not isinstance(x, Tensor):
            from .creation import tensor
            x = tensor(x)
    dt = _float_type(x.dtype) if float_only else x.dtype
    if name == "sign" and x.dtype == _dt.bool_:
        dt = _dt.bool_
    result_dt = _dt.bool_ if name in _BOOL_RESULT else dt
    ct = dt if name not in ("logical_not",) else x.dtype
    if out is not None:
        return _inplace(name, expr, [x], out, result_dt, ct, rule and (lambda g, xx, o: (rule(g, xx, o),)))
    y = launch(expr, [x], result_dt, ct)
    if rule is not None and needs_grad(x):
        saved_out = y.detach()
        record(name, y, (x,), lambda g: rule(g, x, saved_out), saved=(x, saved_out))
    return y


def binary(name: str, a, b, out: Tensor | None = None) -> Tensor:
    expr, kind, rule = BINARY[name]
    device = _device_of([a, b])
    a, b = _as_operand(a, device), _as_operand(b, device)
    dt = _dt.result_type(_tensor_dtypes([a, b]), _scalars([a, b]))
    if kind == "float":
        dt = _float_type(dt)
    if name in ("logical_and", "logical_or", "logical_xor"):
        ct = dt
        result_dt = _dt.bool_
    elif kind == "bool":
        ct, result_dt = dt, _dt.bool_
    else:
        ct = result_dt = dt
    if name == "pow" and not isinstance(b, Tensor) and b == 2:
        expr = "v0 * v0"
    if name in ("floor_divide", "remainder") and _dt.is_floating(dt):
        expr = expr.replace("(double)", "")
    if out is not None:
        return _inplace(name, expr, [a, b], out, result_dt, ct, rule)
    y = launch(expr, [a, b], result_dt, ct)
    if rule is not None and needs_grad(a, b):
        saved_out = y.detach()
        ta = a if isinstance(a, Tensor) else None
        tb = b if isinstance(b, Tensor) else None
        inputs = tuple(t for t in (ta, tb) if t is not None)

        def backward(g):
            ga, gb = rule(g, a, b, saved_out)
            return tuple(gr for gr, t in ((ga, ta), (gb, tb)) if t is not None)
        record(name, y, inputs, backward, saved=inputs + (saved_out,))
    return y


def _inplace(name, expr, operands, out, result_dt, ct, rule):
    """out <- expr(operands) in place: checks, overlap safety, version bump and autograd history."""
    if result_dt != out.dtype and not (_dt.is_floating(out.dtype) or result_dt == _dt.bool_):
        raise TypeError(f"result type {result_dt.name} of {name} can't be cast to the in-place "
                        f"output's dtype {out.dtype.name}")
    if is_grad_enabled() and out.requires_grad and out._node is None:
        raise RuntimeError("a leaf tensor that requires grad is being used in an in-place operation; "
                           "wrap the update in `with clnet.no_grad():`")
    tensors = [x for x in operands if isinstance(x, Tensor)]
    track = rule is not None and needs_grad(*tensors, out)
    old = None
    if track:  # a copy of the pre-op value keeps the old history; `out` gets a new node on top of it
        old = launch("v0", [out], out.dtype, out.dtype)
        old._node, old._out_index, old.requires_grad = out._node, out._out_index, out.requires_grad
        operands = [old if x is out else x for x in operands]
    overlap = any(t._buf is out._buf and (t.offset, t.strides) != (out.offset, out.strides)
                  for t in tensors if t.numel() > 1)
    if overlap:  # e.g. x += x.T: compute into a fresh buffer first so no element is read after it is written
        tmp = launch(expr, operands, out.dtype, ct)
        launch("v0", [tmp], out.dtype, out.dtype, out=out)
    else:
        launch(expr, operands, out.dtype, ct, out=out)
    out._bump_version()
    if track:
        a = operands[0]
        b = operands[1] if len(operands) > 1 else None
        saved_out = out.detach()
        ins = tuple(x for x in operands if isinstance(x, Tensor))
        out._node = None

        def backward(g):
            grads = rule(g, a, b, saved_out) if b is not None or len(operands) > 1 else rule(g, a, saved_out)
            return tuple(gr for gr, x in zip(grads, operands) if isinstance(x, Tensor))
        record(name + "_", out, ins, backward, saved=ins)
    return out


def where(cond, a, b) -> Tensor:
    """Elementwise choice: a where cond is true, else b (all three broadcast)."""
    device = _device_of([cond, a, b])
    cond, a, b = (_as_operand(x, device) for x in (cond, a, b))
    if isinstance(cond, Tensor) and cond.dtype != _dt.bool_:
        cond = cond != 0
    dt = _dt.result_type(_tensor_dtypes([a, b]), _scalars([a, b]))
    y = launch("v0 ? v1 : v2", [cond, a, b], dt, dt)
    if needs_grad(a, b):
        ta = a if isinstance(a, Tensor) else None
        tb = b if isinstance(b, Tensor) else None
        inputs = tuple(t for t in (ta, tb) if t is not None)

        def backward(g):
            zero = 0.0
            grads = []
            if ta is not None:
                grads.append(where(cond, g, zero))
            if tb is not None:
                grads.append(where(cond, zero, g))
            return tuple(grads)
        record("where", y, inputs, backward)
    return y


def clamp(x: Tensor, min=None, max=None, out: Tensor | None = None) -> Tensor:
    """Limit values to [min, max] (either may be None); NaN stays NaN as in PyTorch."""
    if min is None and max is None:
        raise ValueError("clamp needs at least one of min and max")
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        y = x
        if min is not None:
            y = maximum(y, min)
        if max is not None:
            y = minimum(y, max)
        return y
    dt = _dt.result_type([x.dtype], [v for v in (min, max) if v is not None])
    if min is not None and max is not None:
        expr, operands = "(v0 < v1 ? v1 : (v0 > v2 ? v2 : v0))", [x, min, max]
    elif min is not None:
        expr, operands = "(v0 < v1 ? v1 : v0)", [x, min]
    else:
        expr, operands = "(v0 > v1 ? v1 : v0)", [x, max]

    def rule(g, xx, *rest):
        inside = g
        if min is not None:
            inside = inside * (xx >= min)
        if max is not None:
            inside = inside * (xx <= max)
        return (inside,) + (None,) * (len(operands) - 1)
    if out is not None:
        return _inplace("clamp", expr, operands, out, dt, dt, lambda g, a, b, o: rule(g, a))
    y = launch(expr, operands, dt, dt)
    if needs_grad(x):
        record("clamp", y, (x,), lambda g: rule(g, x)[:1], saved=(x,))
    return y


def cast(x: Tensor, dtype) -> Tensor:
    """Convert to another dtype (to bool means != 0); differentiable between float types."""
    dtype = _dt.as_dtype(dtype)
    if dtype == x.dtype:
        return x
    expr = "v0 != 0" if dtype == _dt.bool_ else "v0"
    ct = x.dtype if dtype == _dt.bool_ else dtype
    y = launch(expr, [x], dtype, ct)
    if _dt.is_floating(dtype) and needs_grad(x):
        record("cast", y, (x,), lambda g: cast(g, x.dtype))
    return y


def copy_into(dst: Tensor, src) -> Tensor:
    """dst[...] = src with broadcasting and dtype conversion (no autograd; callers record)."""
    if isinstance(src, Tensor) and broadcast_shapes(src.shape, dst.shape) != dst.shape:
        raise ValueError(f"cannot copy a tensor of shape {tuple(src.shape)} into one of shape "
                         f"{tuple(dst.shape)}")
    src_dt = src.dtype if isinstance(src, Tensor) else _dt.result_type([], [src])
    if dst.dtype == _dt.bool_ and src_dt != _dt.bool_:
        launch("v0 != 0", [src], dst.dtype, src_dt, out=dst)
    else:
        launch("v0", [src], dst.dtype, dst.dtype, out=dst)
    return dst


# --- public names --------------------------------------------------------------------------------
def _unary_fn(name):
    def fn(x):
        return unary(name, x)
    fn.__name__ = name
    fn.__doc__ = f"Elementwise {name} (C: {UNARY[name][0]})."
    return fn


def _binary_fn(name):
    def fn(a, b):
        return binary(name, a, b)
    fn.__name__ = name
    fn.__doc__ = f"Elementwise {name} with broadcasting (C: {BINARY[name][0]})."
    return fn


neg, abs, sign, exp, log, sqrt, rsqrt, sin, cos, tanh, sigmoid, relu, reciprocal, square, log1p, expm1, \
    floor, ceil, round, logical_not, isnan, isinf = (_unary_fn(n) for n in UNARY)
add, sub, mul, div, pow, maximum, minimum, eq, ne, lt, le, gt, ge, logical_and, logical_or, logical_xor, \
    floor_divide, remainder = (_binary_fn(n) for n in BINARY)

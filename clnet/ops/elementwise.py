"""Elementwise ops: each one is a C expression over operands v0, v1, ... plus its gradient rule.

An op is one row of `UNARY` or `BINARY` (a `Unary`/`Binary`: expression, result type, gradient), or a
call of `pointwise` (expression + one gradient expression per operand) for ops defined elsewhere. A
gradient rule names what it reads by its parameter names (`g` the incoming gradient, `x` the operand,
`a`/`b` the operands of a binary op, `out` the result): only those are saved (and version-checked),
so `y = x + 1; y += 1` stays differentiable as in PyTorch and d(a*b)/da keeps only b alive.

`launch` is the one place that turns an expression into a kernel call: it broadcasts shapes, merges
dimensions that are contiguous for every operand, and passes sizes and strides as kernel arguments,
so a new shape of the same rank reuses the built kernel. Scalars are kernel arguments too. The
work done per distinct layout (broadcast, collapse, kernel lookup) is kept in a small plan cache,
so a training step that repeats the same shapes pays only for building the argument list.
"""
from __future__ import annotations

import inspect
import math
import numbers
import weakref
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .. import dtypes as _dt
from ..backend import caches
from ..backend.devices import default_device
from ..backend.programs import ctype, get_kernel
from ..core import dispatch
from ..core.dispatch import op
from ..core.storage import TensorBase, check_device_dtype, contiguous_strides
from ..core.tape import is_grad_enabled, needs_grad, record
from .shapes import broadcast_shapes, broadcast_strides

_INT_MAX = 2**31 - 1


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
    """A tensor on `device`, or a scalar; arrays and lists are uploaded."""
    if isinstance(x, TensorBase):
        if device is not None and x.device is not device:
            raise ValueError(f"tensors are on different devices: {device} and {x.device}; "
                             "move one with .to(device)")
        return x
    if isinstance(x, (numbers.Number, np.number, np.bool_)):
        if isinstance(x, complex) or isinstance(x, np.complexfloating):
            raise TypeError("complex numbers are not supported by clnet")
        return x
    if isinstance(x, (np.ndarray, list, tuple)):
        return _upload(x, device)
    raise TypeError(f"unsupported operand type {type(x).__name__}; expected a Tensor, a number or an array")


def _upload(data, device) -> TensorBase:
    """Host data as a new tensor (the dtype rules of clnet.tensor: lists of floats are float32)."""
    device = device if device is not None else default_device()
    dt = _dt.infer_dtype(data)
    if dt == _dt.float64 and not device.fp64:
        dt = _dt.float32
    return dispatch.upload_array(np.asarray(data, dtype=dt, order="C"), dt, device)


def _device_of(xs):
    for x in xs:
        if isinstance(x, TensorBase):
            return x.device
    return default_device()


# --- the launcher --------------------------------------------------------------------------------------
class EwNote:
    """What an elementwise launch computes, for graph passes (given only while a trace records):
    out[...] = expr(operands) over `shape`, operands read through `strides` (broadcast to `shape`)."""

    __slots__ = ("expr", "operands", "strides", "out", "out_strides", "out_dtype", "compute_dtype", "shape")

    def __init__(self, expr, operands, out, out_dtype, compute_dtype, shape):
        self.expr, self.operands, self.out = expr, list(operands), out
        self.out_dtype, self.compute_dtype, self.shape = np.dtype(out_dtype), np.dtype(compute_dtype), shape
        self.strides = [tuple(broadcast_strides(x.shape, x.strides, shape)) if isinstance(x, TensorBase) else None
                        for x in operands]
        self.out_strides = tuple(out.strides)


class _Plan:
    """Everything about one (expression, dtypes, layouts) launch that does not depend on buffers/scalars."""

    __slots__ = ("kern", "shape", "strides", "n", "gsize", "lsize", "out_dims", "op_strides", "scalar_type")


_PLANS = caches.new_cache("elementwise plans")  # build-then-publish; bounded (backend/caches.py)
_PLAN_LIMIT = 4096


def _make_plan(device, expr, operands, out_dtype, compute_dtype, out) -> _Plan:
    for dt in (out_dtype, compute_dtype):  # a clear error before the compiler's, e.g. double on llvmpipe
        check_device_dtype(device, _dt.as_dtype(dt))
    tensors = [x for x in operands if isinstance(x, TensorBase)]
    shape = broadcast_shapes(*(t.shape for t in tensors)) if tensors else ()
    if out is not None:
        if broadcast_shapes(out.shape, shape) != out.shape:
            raise ValueError(f"output of shape {tuple(out.shape)} cannot hold the broadcast result of shape "
                             f"{tuple(shape)}")
        shape = out.shape
    plan = _Plan()
    plan.shape = shape
    plan.strides = contiguous_strides(shape)
    plan.n = n = math.prod(shape)
    ct_dtype = _dt.float32 if compute_dtype == _dt.float16 else np.dtype(compute_dtype)
    plan.scalar_type = ct_dtype.type
    if n == 0:
        plan.kern = None
        return plan
    out_strides = list(out.strides) if out is not None else list(plan.strides)
    strides = [out_strides] + [broadcast_strides(t.shape, t.strides, shape) for t in tensors]
    sizes, strides = _collapse(shape, strides)
    rank = len(sizes)
    if rank <= 1 and all(st == [1] or not st for st in strides):
        rank = 0
    storage = [out._storage_size if out is not None else n] + [t._storage_size for t in tensors]
    idx = "int" if max(storage) <= _INT_MAX and n <= _INT_MAX else "long"
    idx_dt = np.dtype(np.int32 if idx == "int" else np.int64)
    in_ts = tuple(ctype(x.dtype) if isinstance(x, TensorBase) else None for x in operands)
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
                           name="ew", results=(expr,), body=(), outs=((ctype(out_dtype), out_dtype == _dt.bool_),),
                           in_ts=in_ts, native=False, ct=ctype(ct_dtype), rank=rank, idx=idx, grid2=grid2)
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


def launch(expr: str, operands, out_dtype, compute_dtype, out: TensorBase | None = None) -> TensorBase:
    """Run `out = expr(operands)` elementwise, broadcasting; returns the (new or given) output.

    `operands` are tensors (on one device) and Python/numpy scalars, named v0, v1, ... in `expr`;
    each is loaded and converted to `compute_dtype` before `expr` runs; the result is stored as
    `out_dtype` (bool stores `expr != 0`). Returns at once: the kernel is only enqueued. No autograd:
    the ops below record their own history.
    """
    device = None
    sig = []
    for x in operands:
        if isinstance(x, TensorBase):
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
            device = default_device()
    key = (device, expr, out_dtype, compute_dtype, out_sig, tuple(sig))
    plan = _PLANS.get(key)
    if plan is None:
        plan = _make_plan(device, expr, operands, out_dtype, compute_dtype, out)
        if len(_PLANS) >= _PLAN_LIMIT:
            _PLANS.clear()
        _PLANS[key] = plan
    if out is None:
        out = TensorBase._empty(plan.shape, out_dtype, device, plan.strides)
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
    note = EwNote(expr, operands, out, out_dtype, compute_dtype, plan.shape) if dispatch.recording_active() else None
    dispatch.launch(device, plan.kern, plan.gsize, plan.lsize, args, note=note)
    return out


def _fused(expr: str, *operands) -> TensorBase:
    """A gradient formula as one kernel, in the (floating) type of its tensor operands."""
    dt = _dt.result_type([x.dtype for x in operands if isinstance(x, TensorBase)])
    return launch(expr, operands, dt, dt)


# --- recording gradients -------------------------------------------------------------------------------
def _reads(rule) -> tuple:
    """The names a gradient rule reads besides g (its parameter names)."""
    if rule is None:
        return ()
    return tuple(p for p in inspect.signature(rule).parameters if p != "g")


def _record(name, y, operands, names, rules, reads, graph_rules=None):
    """Hang the node of `y = name(operands)` on y. `names[i]` is operand i's name in the rules, `rules[i]`
    its gradient rule (None: no gradient) and `reads[i]` what that rule reads; only what the rules of
    operands that need a gradient read is kept (and version-checked).

    `graph_rules[i]`, when given, is operand i's rule written with recorded ops (GRAPH_RULES): what a
    backward with create_graph=True runs instead of the fused kernel, so the gradient can be
    differentiated again (`out` is then the output re-attached to this node, as PyTorch's saved outputs)."""
    tensors = [i for i, x in enumerate(operands) if isinstance(x, TensorBase)]
    need = {i for i in tensors if rules[i] is not None and operands[i].requires_grad}
    if graph_rules is not None and any(graph_rules[i] is None for i in need):
        graph_rules = None
    graph_reads = [_reads(graph_rules[i]) if i in need else () for i in range(len(operands))] \
        if graph_rules is not None else ()
    wanted = {r for i in need for r in reads[i]} | {r for rs in graph_reads for r in rs}
    env = {}
    saved = []
    for i, nm in enumerate(names):
        if nm in wanted:
            env[nm] = operands[i]
            if i in tensors:
                saved.append(operands[i])
    if "out" in wanted:
        env["out"] = y.detach()  # a detached alias: the node hanging on y must not reference y itself
        saved.append(env["out"])
    calls = [(i, rules[i], reads[i]) if i in need else (i, None, ()) for i in tensors]

    def backward(g):
        return tuple(None if rule is None else rule(g, **{r: env[r] for r in used}) for _, rule, used in calls)
    node_ref = []
    if graph_rules is not None:
        def graph_rule(g):
            local = dict(env)
            if "out" in local:
                local["out"] = _reattached(local["out"], node_ref[0]())
            return tuple(None if rule is None else graph_rules[i](g, **{r: local[r] for r in graph_reads[i]})
                         for i, rule, _ in calls)
        backward.graph_rule = graph_rule
    record(name, y, tuple(operands[i] for i in tensors), backward, saved=tuple(saved))
    if graph_rules is not None:
        node_ref.append(weakref.ref(y._node))


def _reattached(alias, node):
    """A new alias of a node's saved output that has the node as its history (PyTorch's saved outputs),
    so a gradient computed from it is differentiated through the node again."""
    t = alias.detach()
    t._node, t._out_index, t.requires_grad = node, 0, True
    return t


# --- op tables -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Unary:
    """One elementwise op of one operand.

    expr        C expression of v0 (the operand, already in the compute type)
    float_only  integer operands compute (and return) the default float type: exp(int) -> float32
    grad        d/dx: a function of g and, by parameter name, x and/or out; None: not differentiable
    bool_result the result is a bool tensor (isnan, logical_not)
    int_same    on integer operands the op is the identity and keeps the type (floor/ceil/round)
    int_expr    expression for signed integer operands, `{t}` standing for their C type (None: expr)
    """
    expr: str
    float_only: bool = False
    grad: Callable | None = None
    bool_result: bool = False
    int_same: bool = False
    int_expr: str | None = None
    reads: tuple = field(init=False, default=())

    def __post_init__(self):
        object.__setattr__(self, "reads", _reads(self.grad))


@dataclass(frozen=True)
class Binary:
    """One elementwise op of two operands (tensors or scalars, broadcast).

    expr        C expression of v0 and v1
    result      "same" (the promoted type), "float" (true division: ints give float32), "bool"
    grad_a/b    d/da and d/db: functions of g and, by parameter name, a, b and/or out; None: no gradient
    int_expr    the expression integer operands use instead (Python's floor semantics)
    """
    expr: str
    result: str = "same"
    grad_a: Callable | None = None
    grad_b: Callable | None = None
    int_expr: str | None = None
    reads: tuple = field(init=False, default=())

    def __post_init__(self):
        object.__setattr__(self, "reads", (_reads(self.grad_a), _reads(self.grad_b)))

    @property
    def differentiable(self) -> bool:
        return self.grad_a is not None or self.grad_b is not None


def _zero_grad(g):
    return launch("0", [g], g.dtype, g.dtype)


_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)  # d/dx erf(x) = 2/sqrt(pi) exp(-x^2); a scalar operand, exact in double


UNARY = {
    "neg": Unary("-v0", grad=lambda g: neg(g)),
    # integers through OpenCL's max(): LLVM's optimiser turns the ternary on an int into its llvm.abs
    # intrinsic, which Oclgrind 21.10 cannot run (a builtin call is the simulator's own; devices inline it)
    "abs": Unary("(v0 < 0 ? -v0 : v0)", int_expr="max(v0, ({t})(-v0))", grad=lambda g, x: _fused("v0 * ((v1 > 0) - (v1 < 0))", g, x)),
    "sign": Unary("(v0 != v0 ? v0 : (v0 > 0) - (v0 < 0))", grad=_zero_grad),
    "exp": Unary("exp(v0)", True, grad=lambda g, out: _fused("v0 * v1", g, out)),
    "log": Unary("log(v0)", True, grad=lambda g, x: _fused("v0 / v1", g, x)),
    "sqrt": Unary("sqrt(v0)", True, grad=lambda g, out: _fused("v0 / (2 * v1)", g, out)),
    "rsqrt": Unary("rsqrt(v0)", True, grad=lambda g, x, out: _fused("-0.5f * v0 * v1 / v2", g, out, x)),
    "sin": Unary("sin(v0)", True, grad=lambda g, x: _fused("v0 * cos(v1)", g, x)),
    "cos": Unary("cos(v0)", True, grad=lambda g, x: _fused("-v0 * sin(v1)", g, x)),
    "tanh": Unary("tanh(v0)", True, grad=lambda g, out: _fused("v0 * (1 - v1 * v1)", g, out)),
    "sigmoid": Unary("1 / (1 + exp(-v0))", True, grad=lambda g, out: _fused("v0 * v1 * (1 - v1)", g, out)),
    "relu": Unary("(v0 < 0 ? 0 : v0)", grad=lambda g, out: _fused("(v1 > 0 ? v0 : 0)", g, out)),
    "reciprocal": Unary("1 / v0", True, grad=lambda g, out: _fused("-v0 * v1 * v1", g, out)),
    "square": Unary("v0 * v0", grad=lambda g, x: _fused("2 * v0 * v1", g, x)),
    "log1p": Unary("log1p(v0)", True, grad=lambda g, x: _fused("v0 / (1 + v1)", g, x)),
    "expm1": Unary("expm1(v0)", True, grad=lambda g, out: _fused("v0 * (v1 + 1)", g, out)),
    "floor": Unary("floor(v0)", True, grad=_zero_grad, int_same=True),
    "ceil": Unary("ceil(v0)", True, grad=_zero_grad, int_same=True),
    "round": Unary("rint(v0)", True, grad=_zero_grad, int_same=True),
    "logical_not": Unary("!v0", bool_result=True),
    "isnan": Unary("v0 != v0", bool_result=True),
    "isinf": Unary("isinf(v0)", True, bool_result=True),
    "tan": Unary("tan(v0)", True, grad=lambda g, out: _fused("v0 * (1 + v1 * v1)", g, out)),
    "asin": Unary("asin(v0)", True, grad=lambda g, x: _fused("v0 * rsqrt(1 - v1 * v1)", g, x)),
    "acos": Unary("acos(v0)", True, grad=lambda g, x: _fused("-v0 * rsqrt(1 - v1 * v1)", g, x)),
    "atan": Unary("atan(v0)", True, grad=lambda g, x: _fused("v0 / (1 + v1 * v1)", g, x)),
    "sinh": Unary("sinh(v0)", True, grad=lambda g, x: _fused("v0 * cosh(v1)", g, x)),
    "cosh": Unary("cosh(v0)", True, grad=lambda g, x: _fused("v0 * sinh(v1)", g, x)),
    "asinh": Unary("asinh(v0)", True, grad=lambda g, x: _fused("v0 * rsqrt(v1 * v1 + 1)", g, x)),
    "acosh": Unary("acosh(v0)", True, grad=lambda g, x: _fused("v0 * rsqrt(v1 * v1 - 1)", g, x)),
    "atanh": Unary("atanh(v0)", True, grad=lambda g, x: _fused("v0 / (1 - v1 * v1)", g, x)),
    "log2": Unary("log2(v0)", True, grad=lambda g, x: _fused("v0 / (v1 * v2)", g, x, math.log(2.0))),
    "log10": Unary("log10(v0)", True, grad=lambda g, x: _fused("v0 / (v1 * v2)", g, x, math.log(10.0))),
    "exp2": Unary("exp2(v0)", True, grad=lambda g, out: _fused("v0 * v1 * v2", g, out, math.log(2.0))),
    "erf": Unary("erf(v0)", True, grad=lambda g, x: _fused("v0 * v2 * exp(-v1 * v1)", g, x, _TWO_OVER_SQRT_PI)),
    "erfc": Unary("erfc(v0)", True, grad=lambda g, x: _fused("-v0 * v2 * exp(-v1 * v1)", g, x, _TWO_OVER_SQRT_PI)),
    "trunc": Unary("trunc(v0)", True, grad=_zero_grad, int_same=True),
    "frac": Unary("(v0 - trunc(v0))", True, grad=lambda g: g),
    "isfinite": Unary("isfinite(v0)", True, bool_result=True),
}


def _pow_grad_a(g, a, b):
    if isinstance(b, TensorBase):
        return _fused("v0 * v2 * pow(v1, v2 - 1)", g, a, b)
    if b == 0:
        return _zero_grad(g)
    return _fused("v0 * v2 * pow(v1, v3)", g, a, b, b - 1)


# d/db a**b = a**b log a, taken as 0 where a == 0 and b >= 0 (as PyTorch)
def _pow_grad_b(g, out, a, b):
    return _fused("((v2 == 0 && v3 >= 0) ? 0 : v0 * v1 * log(v2))", g, out, a, b)


# ties share the gradient equally, as in PyTorch
_MAX_A = "(v1 > v2 ? v0 : (v1 == v2 ? v0 / 2 : 0))"
_MAX_B = "(v2 > v1 ? v0 : (v1 == v2 ? v0 / 2 : 0))"
_REMAINDER = "((fmod(v0, v1) != 0 && ((fmod(v0, v1) < 0) != (v1 < 0))) ? fmod(v0, v1) + v1 : fmod(v0, v1))"

BINARY = {
    "add": Binary("v0 + v1", grad_a=lambda g: g, grad_b=lambda g: g),
    "sub": Binary("v0 - v1", grad_a=lambda g: g, grad_b=lambda g: neg(g)),
    "mul": Binary("v0 * v1", grad_a=lambda g, b: _fused("v0 * v1", g, b), grad_b=lambda g, a: _fused("v0 * v1", g, a)),
    "div": Binary("v0 / v1", "float", grad_a=lambda g, b: _fused("v0 / v1", g, b),
                  grad_b=lambda g, out, b: _fused("-v0 * v1 / v2", g, out, b)),
    "pow": Binary("pow(v0, v1)", grad_a=_pow_grad_a, grad_b=_pow_grad_b, int_expr="clnet_ipow(v0, v1)"),
    "maximum": Binary("((v0 > v1 || v0 != v0) ? v0 : v1)", grad_a=lambda g, a, b: _fused(_MAX_A, g, a, b),
                      grad_b=lambda g, a, b: _fused(_MAX_B, g, a, b)),
    "minimum": Binary("((v0 < v1 || v0 != v0) ? v0 : v1)", grad_a=lambda g, a, b: _fused(_MAX_B, g, a, b),
                      grad_b=lambda g, a, b: _fused(_MAX_A, g, a, b)),
    "eq": Binary("v0 == v1", "bool"),
    "ne": Binary("v0 != v1", "bool"),
    "lt": Binary("v0 < v1", "bool"),
    "le": Binary("v0 <= v1", "bool"),
    "gt": Binary("v0 > v1", "bool"),
    "ge": Binary("v0 >= v1", "bool"),
    "logical_and": Binary("v0 && v1", "bool"),
    "logical_or": Binary("v0 || v1", "bool"),
    "logical_xor": Binary("(!v0) != (!v1)", "bool"),
    # integer forms: floor semantics as Python; x // 0 and x % 0 give 0 instead of trapping the device
    "floor_divide": Binary("floor(v0 / v1)",
                           int_expr="(v1 == 0 ? 0 : v0 / v1 - ((v0 % v1 != 0) && ((v0 < 0) != (v1 < 0))))"),
    "remainder": Binary(_REMAINDER, int_expr="(v1 == 0 ? 0 : ((v0 % v1 != 0 && ((v0 % v1 < 0) != (v1 < 0)))"
                                             " ? v0 % v1 + v1 : v0 % v1))"),
    "atan2": Binary("atan2(v0, v1)", "float", grad_a=lambda g, a, b: _fused("v0 * v2 / (v1 * v1 + v2 * v2)", g, a, b),
                    grad_b=lambda g, a, b: _fused("-v0 * v1 / (v1 * v1 + v2 * v2)", g, a, b)),
    "hypot": Binary("hypot(v0, v1)", "float", grad_a=lambda g, a, out: _fused("v0 * v1 / v2", g, a, out),
                    grad_b=lambda g, b, out: _fused("v0 * v1 / v2", g, b, out)),
    # C's fmod: the remainder takes the dividend's sign (torch.fmod); integers by C's %, x fmod 0 gives 0
    "fmod": Binary("fmod(v0, v1)", grad_a=lambda g: g, grad_b=lambda g, a, b: _fused("-v0 * trunc(v1 / v2)", g, a, b),
                   int_expr="(v1 == 0 ? 0 : v0 % v1)"),
}


# --- rules written with recorded ops, for create_graph=True (second derivatives) ----------------------
def _pow_graph_a(g, a, b):
    if isinstance(b, TensorBase):
        return mul(mul(g, b), pow(a, sub(b, 1)))
    return mul(g, mul(pow(a, b - 1), b)) if b != 0 else mul(g, 0)


def _pow_graph_b(g, out, a, b):
    return where(logical_and(eq(a, 0), ge(b, 0)), 0.0, mul(mul(g, out), log(a)))


GRAPH_RULES = {  # op -> (rule of operand 0, rule of operand 1): the parameter names are those of UNARY/BINARY
    "neg": (lambda g: neg(g),),
    "abs": (lambda g, x: mul(g, sign(x)),),
    "sign": (lambda g: mul(g, 0),),
    "exp": (lambda g, out: mul(g, out),),
    "log": (lambda g, x: div(g, x),),
    "sqrt": (lambda g, out: div(g, mul(out, 2)),),
    "rsqrt": (lambda g, x, out: mul(g, mul(div(out, x), -0.5)),),
    "sin": (lambda g, x: mul(g, cos(x)),),
    "cos": (lambda g, x: neg(mul(g, sin(x))),),
    "tanh": (lambda g, out: mul(g, sub(1, mul(out, out))),),
    "sigmoid": (lambda g, out: mul(g, mul(out, sub(1, out))),),
    "relu": (lambda g, out: mul(g, gt(out, 0)),),
    "reciprocal": (lambda g, out: neg(mul(g, mul(out, out))),),
    "square": (lambda g, x: mul(g, mul(x, 2)),),
    "log1p": (lambda g, x: div(g, add(x, 1)),),
    "expm1": (lambda g, out: mul(g, add(out, 1)),),
    "floor": (lambda g: mul(g, 0),),
    "ceil": (lambda g: mul(g, 0),),
    "round": (lambda g: mul(g, 0),),
    "add": (lambda g: g, lambda g: g),
    "sub": (lambda g: g, lambda g: neg(g)),
    "mul": (lambda g, b: mul(g, b), lambda g, a: mul(g, a)),
    "div": (lambda g, b: div(g, b), lambda g, out, b: neg(div(mul(g, out), b))),
    "pow": (_pow_graph_a, _pow_graph_b),
    "where": (None, lambda g, cond: where(cond, g, 0.0), lambda g, cond: where(cond, 0.0, g)),
    "tan": (lambda g, out: mul(g, add(mul(out, out), 1)),),
    "atan": (lambda g, x: div(g, add(mul(x, x), 1)),),
    "sinh": (lambda g, x: mul(g, cosh(x)),),
    "cosh": (lambda g, x: mul(g, sinh(x)),),
    "erf": (lambda g, x: mul(g, mul(exp(neg(mul(x, x))), _TWO_OVER_SQRT_PI)),),
    "trunc": (lambda g: mul(g, 0),),
    "frac": (lambda g: g,),
}

_PY_NUMBERS = (int, float)


def _float_type(dt):
    return dt if _dt.is_floating(dt) else _dt.DEFAULT_FLOAT


def _operand_dtype(a, b):
    """Result dtype of a binary op over tensors/scalars with PyTorch's three-tier promotion."""
    if isinstance(a, TensorBase) and isinstance(b, TensorBase):
        if a.dtype is b.dtype or a.dtype == b.dtype:
            return a.dtype
        if a.ndim and b.ndim:
            return _dt.promote_types(a.dtype, b.dtype)
    dims, zero, scalars = [], [], []
    for x in (a, b):
        if isinstance(x, TensorBase):
            (dims if x.ndim else zero).append(x.dtype)
        else:
            scalars.append(x)
    return _dt.result_type(dims, scalars, zero)


def _tensor_operand(x):
    if isinstance(x, TensorBase):
        return x
    x = _as_operand(x, None)
    return x if isinstance(x, TensorBase) else _upload(x, None)


def _unary_types(name, row, x):
    """(expression, compute dtype, result dtype) of unary op `name` on x."""
    if x.dtype == _dt.bool_ and name in ("neg", "sign"):
        raise TypeError(f"{name} is not defined for bool tensors; use logical_not (~) instead")
    if row.int_same and not _dt.is_floating(x.dtype):
        return "v0", x.dtype, x.dtype
    dt = _float_type(x.dtype) if row.float_only else x.dtype
    expr = row.expr
    if row.int_expr is not None and dt.kind == "i":
        expr = row.int_expr.format(t=ctype(dt))
    return expr, dt, (_dt.bool_ if row.bool_result else dt)


def unary(name: str, x, out: TensorBase | None = None) -> TensorBase:
    """UNARY[name] of x (or into `out`, in place)."""
    row = UNARY[name]
    x = _tensor_operand(x)
    expr, dt, result_dt = _unary_types(name, row, x)
    if out is not None:
        return _inplace(name, expr, [x], ("x",), (row.grad,), (row.reads,), out, result_dt, dt)
    y = launch(expr, [x], result_dt, dt)
    if row.grad is not None and needs_grad(x):
        _record(name, y, [x], ("x",), (row.grad,), (row.reads,), GRAPH_RULES.get(name))
    return y


def _binary_types(name, row, a, b):
    """(a, b, expression, compute dtype, result dtype) of binary op `name`; scalars stay scalars."""
    ta, tb = isinstance(a, TensorBase), isinstance(b, TensorBase)
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
        device = a.device if ta else (b.device if tb else _device_of([a, b]))
        a, b = _as_operand(a, device), _as_operand(b, device)
        dt = _operand_dtype(a, b)
    if row.result == "float":
        dt = _float_type(dt)
    if dt == _dt.bool_ and name == "sub":
        raise TypeError("subtracting bool tensors is not supported; use logical_xor (^) or logical_not (~)")
    expr = row.expr
    if not _dt.is_floating(dt) and row.int_expr is not None:
        if name == "pow" and not isinstance(b, TensorBase) and b < 0:
            raise ValueError("integers to negative integer powers are not allowed; use a float tensor")
        expr = row.int_expr
    elif name == "pow" and not isinstance(b, TensorBase):
        if b == 2:
            expr = "v0 * v0"
        elif b == 1:
            expr = "v0"
    return a, b, expr, dt, (_dt.bool_ if row.result == "bool" else dt)


def binary(name: str, a, b, out: TensorBase | None = None) -> TensorBase:
    """BINARY[name] of a and b, broadcast (or into `out`, in place)."""
    row = BINARY[name]
    a, b, expr, ct, result_dt = _binary_types(name, row, a, b)
    rules = (row.grad_a, row.grad_b)
    if out is not None:
        return _inplace(name, expr, [a, b], ("a", "b"), rules, row.reads, out, result_dt, ct)
    y = launch(expr, [a, b], result_dt, ct)
    if row.differentiable and needs_grad(a, b):
        _record(name, y, [a, b], ("a", "b"), rules, row.reads, GRAPH_RULES.get(name))
    return y


def check_inplace_target(name, out: TensorBase):
    """An in-place op may not overwrite a leaf that requires grad (or a view of one) in grad mode."""
    if not is_grad_enabled():
        return
    if out.requires_grad and out._node is None:
        raise RuntimeError(f"a leaf tensor that requires grad is being used in an in-place operation "
                           f"({name}_); wrap the update in `with clnet.no_grad():`")
    base = out._base
    if base is not None and base.requires_grad and base._node is None:
        raise RuntimeError(f"a view of a leaf tensor that requires grad is being used in an in-place "
                           f"operation ({name}_); wrap the update in `with clnet.no_grad():`")


_check_inplace_target = check_inplace_target


def _inplace(name, expr, operands, names, rules, reads, out, result_dt, ct):
    """out <- expr(operands) in place: checks, overlap safety, version bump and autograd history."""
    if not isinstance(out, TensorBase):
        raise TypeError(f"out must be a clnet Tensor, got {type(out).__name__}")
    if not _dt.can_cast(result_dt, out.dtype):
        raise TypeError(f"result type {result_dt.name} of {name} can't be cast to the in-place "
                        f"output's dtype {out.dtype.name}")
    check_inplace_target(name, out)
    tensors = [x for x in operands if isinstance(x, TensorBase)]
    track = any(r is not None for r in rules) and needs_grad(*tensors)
    if track and any(x is out for x in operands):
        # a tensor standing for out's old value keeps the old history; it is a real copy only when
        # a gradient rule reads that value (mul_, clamp_), an alias otherwise (add_, relu_)
        wanted = {r for i, x in enumerate(operands) if isinstance(x, TensorBase) and x.requires_grad
                  and rules[i] is not None for r in reads[i]}
        reads_old = any(x is out and names[i] in wanted for i, x in enumerate(operands))
        old = launch("v0", [out], out.dtype, out.dtype) if reads_old else out.detach()
        old._node, old._out_index, old.requires_grad = out._node, out._out_index, out.requires_grad
        operands = [old if x is out else x for x in operands]
        tensors = [x for x in operands if isinstance(x, TensorBase)]
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
        _record(name + "_", out, operands, names, rules, reads)
    elif out._node is not None and is_grad_enabled() and not any(x is out for x in operands):
        out._node, out.requires_grad = None, False  # overwritten by values that need no gradient
    return out


def pointwise(name: str, expr: str, operands, grad_exprs: dict, dtype) -> TensorBase:
    """An elementwise op defined by C expressions: y = expr(operands) in one kernel; grad_exprs[i] is the
    C expression of operand i's gradient over the same operands plus the incoming gradient as the last
    operand (operands without an entry get no gradient). The losses and nn.functional use it; under a
    recorder it is reported as op `name`."""
    return dispatch.call_op(name, _pointwise, name, expr, operands, grad_exprs, dtype)


def _pointwise(name, expr, operands, grad_exprs, dtype):
    """pointwise's body (a recorder's row for it has name `name` and these arguments)."""
    y = launch(expr, operands, dtype, dtype)
    wanted = [(i, x) for i, x in enumerate(operands) if isinstance(x, TensorBase) and i in grad_exprs]
    inputs = tuple(x for _, x in wanted)
    if needs_grad(*inputs):
        frozen = [x.detach() if isinstance(x, TensorBase) else x for x in operands]

        def backward(g):
            return tuple(launch(grad_exprs[i], frozen + [g], x.dtype, dtype) if x.requires_grad else None
                         for i, x in wanted)
        record(name, y, inputs, backward, saved=tuple(x for x in frozen if isinstance(x, TensorBase)))
    return y


dispatch.OPS.setdefault("pointwise", _pointwise)


@op("where")
def where(cond, a, b) -> TensorBase:
    """Elementwise choice: a where cond is true (non-zero), else b (all three broadcast)."""
    device = _device_of([cond, a, b])
    cond, a, b = (_as_operand(x, device) for x in (cond, a, b))
    dt = _operand_dtype(a, b)
    y = launch("(v0 ? v1 : v2)", [cond, a, b], dt, dt)
    if needs_grad(a, b):
        _record("where", y, [cond, a, b], ("cond", "a", "b"), _WHERE_RULES, _WHERE_READS, GRAPH_RULES["where"])
    return y


_WHERE_RULES = (None, lambda g, cond: _fused("(v1 ? v0 : 0)", g, cond),
                lambda g, cond: _fused("(v1 ? 0 : v0)", g, cond))
_WHERE_READS = tuple(_reads(r) for r in _WHERE_RULES)


def _clamp(x, min, max, out):
    """clamp and clamp_: min(max(x, min), max) for number bounds; NaN stays NaN."""
    if min is None and max is None:
        raise ValueError("clamp needs at least one of min and max")
    x = _tensor_operand(x)
    if isinstance(min, TensorBase) or isinstance(max, TensorBase):
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
        expr, bounds = "((v0 < v1 ? v1 : v0) > v2 ? v2 : (v0 < v1 ? v1 : v0))", [min, max]
        gexpr = "((v1 >= v2 && v1 <= v3) ? v0 : 0)"
    elif min is not None:
        expr, bounds, gexpr = "(v0 < v1 ? v1 : v0)", [min], "(v1 >= v2 ? v0 : 0)"
    else:
        expr, bounds, gexpr = "(v0 > v1 ? v1 : v0)", [max], "(v1 <= v2 ? v0 : 0)"

    def grad(g, x):
        return _fused(gexpr, g, x, *bounds)
    operands = [x] + bounds
    names = ("x",) + ("lo", "hi")[:len(bounds)]
    rules = (grad,) + (None,) * len(bounds)
    reads = (("x",),) + ((),) * len(bounds)
    if out is not None:
        return _inplace("clamp", expr, operands, names, rules, reads, out, dt, dt)
    y = launch(expr, operands, dt, dt)
    if needs_grad(x):
        _record("clamp", y, operands, names, rules, reads)
    return y


@op("clamp")
def clamp(x, min=None, max=None) -> TensorBase:
    """Limit values to [min, max] (either may be None; tensor bounds broadcast)."""
    return _clamp(x, min, max, None)


@op("clamp_")
def clamp_(x, min=None, max=None) -> TensorBase:
    """clamp in place (number bounds)."""
    return _clamp(x, min, max, x)


@op("cast")
def cast(x: TensorBase, dtype) -> TensorBase:
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


def copy_into(dst: TensorBase, src) -> TensorBase:
    """dst[...] = src with broadcasting and dtype conversion (no autograd; callers record)."""
    if isinstance(src, TensorBase):
        if broadcast_shapes(src.shape, dst.shape) != dst.shape:
            raise ValueError(f"cannot copy a tensor of shape {tuple(src.shape)} into one of shape "
                             f"{tuple(dst.shape)}")
        if src.device is not dst.device:
            raise ValueError(f"cannot copy a tensor on {src.device} into one on {dst.device}; use .to()")
        src_dt = src.dtype
    else:
        src = _as_operand(src, dst.device)
        src_dt = src.dtype if isinstance(src, TensorBase) else _dt.result_type([], [src])
    if isinstance(src, TensorBase) and src._buf is dst._buf and (src.offset, src.strides) != (dst.offset, dst.strides):
        src = launch("v0", [src], src.dtype, src.dtype)  # overlapping views: read everything first
    ct = src_dt if (dst.dtype == _dt.bool_ or src_dt == _dt.bool_) else dst.dtype
    launch("v0", [src], dst.dtype, ct, out=dst)
    return dst


@op("copy_")
def copy_(dst: TensorBase, src) -> TensorBase:
    """Overwrite dst's values with src (broadcast, converted); bumps the version counter.

    Differentiable as in PyTorch: with grad mode on, dst's new history is the copy from src (its old
    values, and their history, are gone); gradients flow back to src summed to its shape."""
    check_inplace_target("copy", dst)
    copy_into(dst, src)
    dst._bump_version()
    if is_grad_enabled():
        if isinstance(src, TensorBase) and src.requires_grad and _dt.is_floating(dst.dtype):
            dst._node = None
            src_dtype = src.dtype
            record("copy_", dst, (src,), lambda g: g if g.dtype == src_dtype else cast(g, src_dtype))
        elif dst._node is not None:
            dst._node, dst.requires_grad = None, False
    return dst


# --- public names --------------------------------------------------------------------------------
def _named(fn, name):
    """fn reporting itself (in tracebacks and argument errors: `exp() got an unexpected keyword argument`)
    under its public name instead of the factory's `_unary_fn.<locals>.fn`."""
    fn.__name__ = fn.__qualname__ = name
    fn.__code__ = fn.__code__.replace(co_name=name, co_qualname=name)
    return fn


def _unary_fn(name):
    def fn(x):
        return unary(name, x)
    fn.__doc__ = f"Elementwise {name} (C: {UNARY[name].expr})."
    return op(name)(_named(fn, name))


def _unary_inplace_fn(name):
    def fn(x):
        return unary(name, x, out=x)
    fn.__doc__ = f"Elementwise {name} in place."
    return op(name + "_")(_named(fn, name + "_"))


def _binary_fn(name):
    def fn(a, b):
        return binary(name, a, b)
    fn.__doc__ = f"Elementwise {name} with broadcasting (C: {BINARY[name].expr})."
    return op(name)(_named(fn, name))


def _binary_inplace_fn(name):
    def fn(a, b):
        return binary(name, a, b, out=a)
    fn.__doc__ = f"a = {name}(a, b) in place (b broadcasts to a's shape)."
    return op(name + "_")(_named(fn, name + "_"))


neg, abs, sign, exp, log, sqrt, rsqrt, sin, cos, tanh, sigmoid, relu, reciprocal, square, log1p, expm1, \
    floor, ceil, round, logical_not, isnan, isinf, tan, asin, acos, atan, sinh, cosh, asinh, acosh, atanh, \
    log2, log10, exp2, erf, erfc, trunc, frac, isfinite = (_unary_fn(n) for n in UNARY)
neg_, abs_, sign_, exp_, log_, sqrt_, rsqrt_, sin_, cos_, tanh_, sigmoid_, relu_, reciprocal_, square_, log1p_, \
    expm1_, floor_, ceil_, round_, logical_not_, isnan_, isinf_, tan_, asin_, acos_, atan_, sinh_, cosh_, \
    asinh_, acosh_, atanh_, log2_, log10_, exp2_, erf_, erfc_, trunc_, frac_, isfinite_ = \
    (_unary_inplace_fn(n) for n in UNARY)
add, sub, mul, div, pow, maximum, minimum, eq, ne, lt, le, gt, ge, logical_and, logical_or, logical_xor, \
    floor_divide, remainder, atan2, hypot, fmod = (_binary_fn(n) for n in BINARY)
add_, sub_, mul_, div_, pow_, maximum_, minimum_, eq_, ne_, lt_, le_, gt_, ge_, logical_and_, logical_or_, \
    logical_xor_, floor_divide_, remainder_, atan2_, hypot_, fmod_ = (_binary_inplace_fn(n) for n in BINARY)

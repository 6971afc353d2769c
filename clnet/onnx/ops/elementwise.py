"""ONNX elementwise operators: arithmetic, comparisons and logic, unary math and activations.

Each entry runs on host arrays with numpy when every input is one (shape arithmetic), else with clnet's ops
on the device, broadcasting as numpy does (ONNX's multidirectional broadcasting is numpy's).
"""
from __future__ import annotations

import math

import numpy as np

from ... import (acos as _acos, acosh as _acosh, asin as _asin, asinh as _asinh, atan as _atan,
                 atanh as _atanh, cosh as _cosh, erf as _erf, fmod as _fmod, sinh as _sinh, tan as _tan)
from ... import (abs as _abs, ceil as _ceil, clamp as _clamp, cos as _cos, eq as _eq, exp as _exp,
                 floor as _floor, floor_divide as _floor_divide, ge as _ge, gt as _gt, isinf as _isinf,
                 isnan as _isnan, le as _le, log as _log, log1p as _log1p, logical_and as _and,
                 logical_not as _not, logical_or as _or, logical_xor as _xor, lt as _lt, maximum as _maximum,
                 minimum as _minimum, neg as _neg, pow as _pow, reciprocal as _reciprocal, relu as _relu,
                 remainder as _remainder, round as _round, sigmoid as _sigmoid, sign as _sign, sin as _sin,
                 sqrt as _sqrt, tanh as _tanh, where as _where)
from ...nn import functional as F
from .common import all_host, operand


def _binary(np_fn, cl_fn):
    def run(ctx, node, a, b):
        if all_host(a, b):
            return np.asarray(np_fn(a, b))
        return cl_fn(operand(ctx, a, b), operand(ctx, b, a))
    return run


def _int_div(a, b):
    """ONNX's integer Div truncates toward zero (C's division), numpy's // floors."""
    q = np.abs(a) // np.abs(b)
    return (q * np.sign(a) * np.sign(b)).astype(np.result_type(a, b))


def _div_host(a, b):
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":
        return _int_div(a, b)
    return (a / b).astype(np.result_type(a, b))


def _div(ctx, node, a, b):
    if all_host(a, b):
        return _div_host(a, b)
    if a.dtype.kind in "iu" and np.dtype(b.dtype).kind in "iu":
        a, b = ctx.tensor(a), ctx.tensor(b)
        q = _floor_divide(a, b)
        inexact = _and(_remainder(a, b) != 0, _xor(a < 0, b < 0))
        return _where(inexact, q + 1, q)
    return operand(ctx, a, b) / operand(ctx, b, a)


def _mod(ctx, node, a, b):
    if node.attrs.get("fmod", 0):
        if all_host(a, b):
            return np.asarray(np.fmod(a, b))
        a, b = ctx.tensor(a), ctx.tensor(b)
        if a.dtype.kind in "iu":
            return a - _div(ctx, node, a, b) * b
        return _fmod(a, operand(ctx, b, a))
    return _binary(np.mod, _remainder)(ctx, node, a, b)


def _pow_run(ctx, node, a, b):
    if all_host(a, b):
        return np.power(a, b).astype(a.dtype)
    x = ctx.tensor(a)
    if isinstance(b, np.ndarray) and b.ndim == 0:
        return _pow(x, b.item())  # the exponent as a kernel argument: x ** 2 is one kernel
    return _pow(x, ctx.tensor(b).to(x.dtype))


def _variadic(np_fn, cl_fn):
    def run(ctx, node, *values):
        out = values[0]
        for v in values[1:]:
            out = np.asarray(np_fn(out, v)) if all_host(out, v) else cl_fn(operand(ctx, out, v), operand(ctx, v, out))
        return out
    return run


def _mean(ctx, node, *values):
    total = _variadic(np.add, lambda a, b: a + b)(ctx, node, *values)
    return total / len(values) if not all_host(total) else (total / len(values)).astype(total.dtype)


def _unary(np_fn, cl_fn):
    def run(ctx, node, x):
        if all_host(x):
            return np.asarray(np_fn(x)).astype(x.dtype)
        return cl_fn(x)
    return run


def _logic_unary(np_fn, cl_fn):
    def run(ctx, node, x):
        return np.asarray(np_fn(x)) if all_host(x) else cl_fn(x)
    return run


def _clip(ctx, node, x, lo=None, hi=None):
    """Clip with bounds as inputs (opset 11 on, either may be absent) or attributes (before)."""
    if ctx.opset < 11:
        lo, hi = node.attrs.get("min"), node.attrs.get("max")
    lo, hi = (None if v is None else float(v) if isinstance(v, float) else v.item() for v in (lo, hi))
    lo, hi = (None if v is not None and isinstance(v, float) and math.isinf(v) else v for v in (lo, hi))
    if lo is None and hi is None:
        return x
    if all_host(x):
        return np.clip(x, -np.inf if lo is None else lo, np.inf if hi is None else hi).astype(x.dtype)
    return _clamp(x, lo, hi)


def _where_run(ctx, node, cond, a, b):
    if all_host(cond, a, b):
        return np.where(cond, a, b)
    return _where(ctx.tensor(cond), operand(ctx, a, b), operand(ctx, b, a))


# --- activations that ONNX has as operators (compositions where clnet has no kernel of their own) -------------
def _leaky_relu(ctx, node, x):
    return F.leaky_relu(x, node.attrs.get("alpha", 0.01))


def _elu(ctx, node, x):
    alpha = node.attrs.get("alpha", 1.0)
    return _where(x > 0, x, (_exp(_minimum(x, 0.0)) - 1) * alpha)


def _selu(ctx, node, x):
    alpha = node.attrs.get("alpha", 1.67326319217681884765625)
    gamma = node.attrs.get("gamma", 1.05070102214813232421875)
    return _where(x > 0, x, (_exp(_minimum(x, 0.0)) - 1) * alpha) * gamma


def _celu(ctx, node, x):
    alpha = node.attrs.get("alpha", 1.0)
    return _maximum(x, 0.0) + _minimum(0.0, (_exp(x / alpha) - 1) * alpha)


def _softplus(ctx, node, x):
    # log(1 + e^x) without overflow: max(x, 0) + log1p(e^-|x|)
    return _relu(x) + _log1p(_exp(-_abs(x)))


def _softsign(ctx, node, x):
    return x / (_abs(x) + 1)


def _hard_sigmoid(ctx, node, x):
    return _clamp(x * node.attrs.get("alpha", 0.2) + node.attrs.get("beta", 0.5), 0.0, 1.0)


def _hard_swish(ctx, node, x):
    return x * _clamp(x * (1 / 6) + 0.5, 0.0, 1.0)


def _prelu(ctx, node, x, slope):
    return _where(x < 0, x * operand(ctx, slope, x), x)


def _thresholded_relu(ctx, node, x):
    return _where(x > node.attrs.get("alpha", 1.0), x, 0.0)


def _mish(ctx, node, x):
    return x * _tanh(_softplus(ctx, node, x))


def _gelu(ctx, node, x):
    """opset 20's Gelu: F.gelu, exact (erf) or with the tanh approximation."""
    return F.gelu(ctx.tensor(x), approximate=node.attrs.get("approximate", "none"))


OPS = {
    "Add": _binary(np.add, lambda a, b: a + b),
    "Sub": _binary(np.subtract, lambda a, b: a - b),
    "Mul": _binary(np.multiply, lambda a, b: a * b),
    "Div": _div,
    "Mod": _mod,
    "Pow": _pow_run,
    "Max": _variadic(np.maximum, _maximum),
    "Min": _variadic(np.minimum, _minimum),
    "Sum": _variadic(np.add, lambda a, b: a + b),
    "Mean": _mean,
    "Equal": _binary(np.equal, _eq),
    "Less": _binary(np.less, _lt),
    "LessOrEqual": _binary(np.less_equal, _le),
    "Greater": _binary(np.greater, _gt),
    "GreaterOrEqual": _binary(np.greater_equal, _ge),
    "And": _binary(np.logical_and, _and),
    "Or": _binary(np.logical_or, _or),
    "Xor": _binary(np.logical_xor, _xor),
    "Not": _logic_unary(np.logical_not, _not),
    "IsNaN": _logic_unary(np.isnan, _isnan),
    "IsInf": _logic_unary(np.isinf, _isinf),
    "Where": _where_run,
    "Abs": _unary(np.abs, _abs),
    "Neg": _unary(np.negative, _neg),
    "Sign": _unary(np.sign, _sign),
    "Floor": _unary(np.floor, _floor),
    "Ceil": _unary(np.ceil, _ceil),
    "Round": _unary(np.round, _round),
    "Exp": _unary(np.exp, _exp),
    "Log": _unary(np.log, _log),
    "Sqrt": _unary(np.sqrt, _sqrt),
    "Reciprocal": _unary(np.reciprocal, _reciprocal),
    "Sin": _unary(np.sin, _sin),
    "Cos": _unary(np.cos, _cos),
    "Tanh": _unary(np.tanh, _tanh),
    "Sigmoid": _unary(lambda v: 1 / (1 + np.exp(-v)), _sigmoid),
    "Relu": _unary(lambda v: np.maximum(v, 0), _relu),
    "Clip": _clip,
    "LeakyRelu": _leaky_relu,
    "Elu": _elu,
    "Selu": _selu,
    "Celu": _celu,
    "Softplus": _softplus,
    "Softsign": _softsign,
    "HardSigmoid": _hard_sigmoid,
    "HardSwish": _hard_swish,
    "PRelu": _prelu,
    "ThresholdedRelu": _thresholded_relu,
    "Mish": _mish,
    "Erf": _unary(np.vectorize(math.erf), _erf),
    "Gelu": _gelu,
    "Tan": _unary(np.tan, _tan), "Asin": _unary(np.arcsin, _asin), "Acos": _unary(np.arccos, _acos),
    "Atan": _unary(np.arctan, _atan), "Sinh": _unary(np.sinh, _sinh), "Cosh": _unary(np.cosh, _cosh),
    "Asinh": _unary(np.arcsinh, _asinh), "Acosh": _unary(np.arccosh, _acosh), "Atanh": _unary(np.arctanh, _atanh),
}

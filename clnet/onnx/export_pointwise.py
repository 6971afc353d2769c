"""ONNX export of clnet's pointwise rows: the row's C expression, parsed (clnet/jit/cexpr.py), becomes ONNX
nodes, so every pointwise op (leaky_relu, batch_norm, the losses, and any op written as one later) exports
without a rule of its own. A few names get the ONNX operator that says what they are (LeakyRelu,
BatchNormalization) when their arguments have the expected form.
"""
from __future__ import annotations

import math

import numpy as np

from ..jit.cexpr import parse
from .ops.common import UnsupportedOperatorError

_UNARY = {"exp": "Exp", "log": "Log", "sqrt": "Sqrt", "tanh": "Tanh", "sin": "Sin", "cos": "Cos", "tan": "Tan",
          "fabs": "Abs", "floor": "Floor", "ceil": "Ceil", "rint": "Round", "erf": "Erf", "atan": "Atan",
          "asin": "Asin", "acos": "Acos", "sinh": "Sinh", "cosh": "Cosh", "sign": "Sign"}
_BINARY = {"+": "Add", "-": "Sub", "*": "Mul", "/": "Div", "fmax": "Max", "fmin": "Min", "max": "Max",
           "min": "Min", "pow": "Pow", "clnet_ipow": "Pow"}
_COMPARE = {"<": "Less", ">": "Greater", "<=": "LessOrEqual", ">=": "GreaterOrEqual", "==": "Equal"}


class _Translator:
    """Evaluates an expression tree into ONNX nodes; each result is (value name, is_bool)."""

    def __init__(self, e, operands, dtype):
        self.e, self.b, self.dtype = e, e.b, np.dtype(dtype)
        self.operands = operands
        self._names = {}

    def num(self, x) -> str:
        return self.b.const(np.asarray(x, self.dtype))

    def as_num(self, v):
        name, is_bool = v
        return self.e.cast(name, self.dtype) if is_bool else name

    def as_bool(self, v):
        name, is_bool = v
        return name if is_bool else self.b.node("Not", [self.b.node("Equal", [name, self.num(0)])])

    def operand(self, k):
        if k not in self._names:
            v = self.operands[k]
            self._names[k] = (self.e.x(v, self.dtype), False)
        return self._names[k]

    def eval(self, t):
        kind = t[0]
        b = self.b
        if kind == "num":
            return self.num(t[1]), False
        if kind == "v":
            return self.operand(t[1])
        if kind == "neg":
            return b.node("Neg", [self.as_num(self.eval(t[1]))]), False
        if kind == "!":
            return b.node("Not", [self.as_bool(self.eval(t[1]))]), True
        if kind == "?":
            cond = self.as_bool(self.eval(t[1]))
            return b.node("Where", [cond, self.as_num(self.eval(t[2])), self.as_num(self.eval(t[3]))]), False
        if kind in _COMPARE or kind == "!=":
            x, y = self.as_num(self.eval(t[1])), self.as_num(self.eval(t[2]))
            if kind == "!=":
                return b.node("Not", [b.node("Equal", [x, y])]), True
            return b.node(_COMPARE[kind], [x, y]), True
        if kind in ("&&", "||"):
            x, y = self.as_bool(self.eval(t[1])), self.as_bool(self.eval(t[2]))
            return b.node("And" if kind == "&&" else "Or", [x, y]), True
        if kind == "%":
            return b.node("Mod", [self.as_num(self.eval(t[1])), self.as_num(self.eval(t[2]))], fmod=1), False
        if kind in _BINARY:
            return b.node(_BINARY[kind], [self.as_num(self.eval(t[1])), self.as_num(self.eval(t[2]))]), False
        if kind == "call":
            return self.call(t[1], [self.eval(a) for a in t[2]])
        raise UnsupportedOperatorError(f"clnet.onnx.export: the expression node {kind!r} has no ONNX form")

    def call(self, fn, args):
        b = self.b
        if fn in ("isinf", "isnan"):
            return b.node("IsInf" if fn == "isinf" else "IsNaN", [self.as_num(args[0])]), True
        xs = [self.as_num(a) for a in args]
        if fn in _UNARY:
            return b.node(_UNARY[fn], xs), False
        if fn in _BINARY:
            return b.node(_BINARY[fn], xs), False
        x = xs[0]
        if fn == "rsqrt":
            return b.node("Reciprocal", [b.node("Sqrt", [x])]), False
        if fn == "log1p":
            return b.node("Log", [b.node("Add", [x, self.num(1)])]), False
        if fn == "expm1":
            return b.node("Sub", [b.node("Exp", [x]), self.num(1)]), False
        if fn == "log2":
            return b.node("Div", [b.node("Log", [x]), self.num(math.log(2))]), False
        if fn == "exp2":
            return b.node("Pow", [self.num(2), x]), False
        if fn == "erfc":
            return b.node("Sub", [self.num(1), b.node("Erf", [x])]), False
        if fn == "trunc":
            return b.node("Mul", [b.node("Sign", [x]), b.node("Floor", [b.node("Abs", [x])])]), False
        if fn == "fmod":
            return b.node("Mod", xs, fmod=1), False
        raise UnsupportedOperatorError(f"clnet.onnx.export: the C function {fn!r} in a pointwise op has no ONNX form")


def _leaky_relu(e, operands, expr):
    if expr == "(v0 < 0 ? v0 * v1 : v0)" and not e.is_tensor(operands[1]):
        return e.b.node("LeakyRelu", [e.x(operands[0])], alpha=float(operands[1]))
    return None


def _batch_norm(e, operands, expr):
    """F.batch_norm's row reads (1, C, 1, ...) views of 1-D statistics and affine parameters: when they are,
    the row is one BatchNormalization of the 1-D tensors."""
    if expr != "(v0 - v1) * rsqrt(v2 + v5) * v3 + v4" or e.is_tensor(operands[5]):
        return None
    flat = []
    for v in operands[1:5]:
        source = e.reshaped_from(v)
        if source is None or len(e.shape_of(source)) != 1:
            return None
        flat.append(source)
    mean, var, scale, bias = flat
    return e.b.node("BatchNormalization", [e.x(operands[0]), e.x(scale), e.x(bias), e.x(mean), e.x(var)],
                    epsilon=float(operands[5]))


_NAMED = {"leaky_relu": _leaky_relu, "batch_norm": _batch_norm}


def _gelu_formula(expr):
    """F.gelu's float32 row computes Phi through a fitted erfc (nn/functions/activation.py); ONNX gets the
    formula it stands for, 0.5 x (1 + Erf(x / sqrt 2)) (operands x, 1 / sqrt 2, 1 / sqrt(2 pi))."""
    from ..nn.functions.activation import _phi_float
    return "0.5f * v0 * (1 + erf(v0 * v1))" if expr == f"v0 * {_phi_float()[0]}" else expr


def export_pointwise(e, a, out):
    """The rule for `pointwise` rows (their arguments: name, expr, operands, grad_exprs, dtype)."""
    name, expr, operands, dtype = a["name"], a["expr"], list(a["operands"]), a["dtype"]
    if name == "gelu":
        expr = _gelu_formula(expr)
    special = _NAMED.get(name)
    if special is not None:
        y = special(e, operands, expr)
        if y is not None:
            return y
    value, is_bool = _Translator(e, operands, dtype).eval(parse(expr, len(operands)))
    return e.cast(value, dtype) if is_bool else value

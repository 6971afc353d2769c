"""The C expressions of clnet's pointwise ops, parsed: checked before a saved graph may run one, and
translated by ONNX export.

A pointwise row (leaky_relu, batch_norm, the pointwise losses, ...) carries its kernel as C expressions over
its operands v0, v1, ... (clnet/ops/elementwise.py: `pointwise`). A file could carry any text there, and
that text would be compiled into a kernel; so a loaded graph's expressions must parse as this small
language first: operands v<N>, numbers, the math functions below, arithmetic, comparisons, logic and
?: -- no statements, no pointers, no indexing, no assignments, nothing else.

    parse("(v0 < 0 ? v0 * v1 : v0)")  ->  ("?", ("<", ("v", 0), ("num", 0.0)), ("*", ("v", 0), ("v", 1)), ("v", 0))
"""
from __future__ import annotations

import re

# pure math functions (OpenCL C builtins and clnet's helpers) an expression may call, with their arity
FUNCTIONS = {
    "exp": 1, "log": 1, "sqrt": 1, "rsqrt": 1, "tanh": 1, "sin": 1, "cos": 1, "tan": 1, "fabs": 1, "floor": 1,
    "ceil": 1, "rint": 1, "round": 1, "trunc": 1, "log1p": 1, "expm1": 1, "log2": 1, "exp2": 1, "erf": 1,
    "erfc": 1, "atan": 1, "asin": 1, "acos": 1, "sinh": 1, "cosh": 1, "isinf": 1, "isnan": 1, "sign": 1,
    "fmax": 2, "fmin": 2, "pow": 2, "fmod": 2, "atan2": 2, "clnet_ipow": 2, "max": 2, "min": 2, "copysign": 2,
}
_MAX_LENGTH = 4000
_TOKEN = re.compile(r"\s*(?:(?P<num>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?[fF]?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|"
                    r"(?P<op>\|\||&&|==|!=|<=|>=|[-+*/%<>!?:(),]))")
_BINARY = [("||",), ("&&",), ("==", "!="), ("<", ">", "<=", ">="), ("+", "-"), ("*", "/", "%")]


class ExpressionError(ValueError):
    """Text that is not an expression of the pointwise language."""


def _tokens(text: str) -> list:
    if not isinstance(text, str) or len(text) > _MAX_LENGTH:
        raise ExpressionError("a pointwise expression must be a string of at most 4000 characters")
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ExpressionError(f"unexpected text in a pointwise expression at {pos}: {text[pos:pos + 20]!r}")
        kind = m.lastgroup
        value = m.group(kind)
        if kind == "name" and not (re.fullmatch(r"v\d{1,3}", value) or value in FUNCTIONS):
            raise ExpressionError(f"unknown name {value!r} in a pointwise expression")
        out.append((kind, value))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str, n_operands: int | None):
        self.toks = _tokens(text)
        self.i = 0
        self.n = n_operands
        self.depth = 0

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else (None, None)

    def take(self, value=None):
        tok = self.peek()
        if tok[0] is None or (value is not None and tok[1] != value):
            raise ExpressionError(f"expected {value or 'more'} in a pointwise expression, got {tok[1]!r}")
        self.i += 1
        return tok

    def expr(self):
        self.depth += 1
        if self.depth > 200:
            raise ExpressionError("a pointwise expression is nested too deeply")
        cond = self.binary(0)
        if self.peek()[1] == "?":
            self.take("?")
            a = self.expr()
            self.take(":")
            b = self.expr()
            cond = ("?", cond, a, b)
        self.depth -= 1
        return cond

    def binary(self, level):
        if level == len(_BINARY):
            return self.unary()
        left = self.binary(level + 1)
        while self.peek()[0] == "op" and self.peek()[1] in _BINARY[level]:
            op = self.take()[1]
            left = (op, left, self.binary(level + 1))
        return left

    def unary(self):
        tok = self.peek()
        if tok[0] == "op" and tok[1] in ("-", "+", "!"):
            self.take()
            inner = self.unary()
            return inner if tok[1] == "+" else ("neg" if tok[1] == "-" else "!", inner)
        return self.primary()

    def primary(self):
        kind, value = self.take()
        if kind == "num":
            return ("num", float(value.rstrip("fF")))
        if kind == "name" and value in FUNCTIONS:
            self.take("(")
            args = [self.expr()]
            while self.peek()[1] == ",":
                self.take(",")
                args.append(self.expr())
            self.take(")")
            if len(args) != FUNCTIONS[value]:
                raise ExpressionError(f"{value} takes {FUNCTIONS[value]} argument(s), got {len(args)}")
            return ("call", value, tuple(args))
        if kind == "name":
            k = int(value[1:])
            if self.n is not None and k >= self.n:
                raise ExpressionError(f"the pointwise expression reads {value}, but has {self.n} operands")
            return ("v", k)
        if value == "(":
            inner = self.expr()
            self.take(")")
            return inner
        raise ExpressionError(f"unexpected {value!r} in a pointwise expression")


def parse(text: str, n_operands: int | None = None):
    """The expression's tree: ("num", x), ("v", k), ("call", name, args), ("neg", a), ("!", a),
    (op, a, b) for binary operators, ("?", cond, a, b). ExpressionError for anything else, or for an
    operand v<k> with k >= n_operands."""
    p = _Parser(text, n_operands)
    tree = p.expr()
    if p.i != len(p.toks):
        raise ExpressionError(f"unexpected {p.toks[p.i][1]!r} after the end of a pointwise expression")
    return tree

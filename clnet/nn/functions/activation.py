"""Activation functions with PyTorch's names, formulas and defaults.

Each is one elementwise kernel forward and one for its gradient (clnet.ops.elementwise.pointwise: a C expression
over x and the constants, and the gradient's expression over the same operands plus the incoming
gradient, which is the last operand). Irrational constants are operands, so they arrive in the compute
type (float64 stays exact).
"""
from __future__ import annotations

import math
import numbers

from ... import dtypes as _dt
from ...autograd import no_grad
from ...ops import elementwise as _ew
from ...ops import movement as _mv
from ...ops.elementwise import pointwise as _pointwise
from ...ops.nn import softmax
from ...tensor import Tensor


def _check(x, fn):
    if not isinstance(x, Tensor):
        raise TypeError(f"{fn}: input must be a clnet Tensor, got {type(x).__name__}")
    if not _dt.is_floating(x.dtype):
        raise TypeError(f"{fn}: input must be a floating-point tensor, got {x.dtype.name}")


def _number(v, fn, what):
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{fn}: {what} must be a number, got {v!r}")
    return float(v)


def _act(name, x, expr, grad, *consts, inplace=False):
    """y = expr(x, consts) with gradient grad(x, consts, g); in place writes y back into x."""
    _check(x, name)
    y = _pointwise(name, expr, [x, *consts], {0: grad}, x.dtype)
    if inplace:
        with no_grad():
            x.copy_(y)
        return x
    return y


# Phi(x) = 1 - erfc(x / sqrt 2) / 2 for float32: erfc(z) = t * R(t) * exp(-z^2) with t = 1 / (1 + z / 2) and
# R a degree-10 polynomial fitted (Chebyshev least squares, float64) to erfcx(z) / t for z in [0, 14].
# Why: PoCL's erf is a scalar libm call (about 14x the time of x * 2 on a 3M-element tensor, 5x torch's
# whole GELU); this is one exp and one division, and gelu's error is below 2e-6 relative wherever
# |gelu(x)| > 1e-6 and 4e-7 absolute (torch's float32 erf formula: 4e-7 absolute, worse relative for
# x < -3, where 1 + erf(x) cancels). exp(-z^2) = exp(-x^2 / 2) also gives the gradient's normal density.
_ERFCX_T = (0.28209376335144043, 0.2821204364299774, 0.24660179018974304, 0.17692330479621887,
            0.08803584426641464, -0.04790027439594269, 0.11769259721040726, -0.4442736804485321,
            0.4900580942630768, -0.2348390370607376, 0.04348716512322426)


def _phi_float():
    """(Phi(v0), exp(-v0^2 / 2)) as float C expressions; v1 = 1 / sqrt(2)."""
    z = "(fabs(v0) * v1)"
    t = f"(1.0f / (1.0f + 0.5f * {z}))"
    r = f"{_ERFCX_T[-1]!r}f"
    for c in reversed(_ERFCX_T[:-1]):
        r = f"({r} * {t} + {c!r}f)"
    e = f"exp(-{z} * {z})"
    half_erfc = f"(0.5f * {t} * {r} * {e})"
    return f"(v0 < 0 ? {half_erfc} : 1.0f - {half_erfc})", e


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """x * Phi(x) (Phi the standard normal CDF, through erf; float32 through erfc's fit above);
    approximate='tanh' uses 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))."""
    if approximate == "none":
        # v1 = 1 / sqrt(2), v2 = 1 / sqrt(2 pi), v3 = g
        if isinstance(input, Tensor) and input.dtype in (_dt.float32, _dt.float16):
            phi, e = _phi_float()
            return _act("gelu", input, f"v0 * {phi}", f"v3 * ({phi} + v0 * v2 * {e})",
                        1 / math.sqrt(2), 1 / math.sqrt(2 * math.pi))
        return _act("gelu", input, "0.5f * v0 * (1 + erf(v0 * v1))",
                    "v3 * (0.5f * (1 + erf(v0 * v1)) + v0 * v2 * exp(-0.5f * v0 * v0))",
                    1 / math.sqrt(2), 1 / math.sqrt(2 * math.pi))
    if approximate == "tanh":
        inner = "(v1 * (v0 + 0.044715f * v0 * v0 * v0))"
        return _act("gelu", input, f"0.5f * v0 * (1 + tanh({inner}))",
                    f"v2 * (0.5f * (1 + tanh({inner})) + 0.5f * v0 * (1 - tanh({inner}) * tanh({inner})) "
                    f"* v1 * (1 + 3 * 0.044715f * v0 * v0))", math.sqrt(2 / math.pi))
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    """x * sigmoid(x) (also called swish)."""
    s = "(1 / (1 + exp(-v0)))"
    return _act("silu", input, f"v0 * {s}", f"v1 * {s} * (1 + v0 * (1 - {s}))", inplace=inplace)


def mish(input: Tensor, inplace: bool = False) -> Tensor:
    """x * tanh(softplus(x))."""
    sp = "(v0 > 20 ? v0 : log1p(exp(v0)))"
    t = f"tanh({sp})"
    return _act("mish", input, f"v0 * {t}", f"v1 * ({t} + v0 * (1 - {t} * {t}) / (1 + exp(-v0)))", inplace=inplace)


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """x for x > 0, alpha (exp(x) - 1) below."""
    a = _number(alpha, "elu", "alpha")
    return _act("elu", input, "(v0 > 0 ? v0 : v1 * expm1(v0))", "(v0 > 0 ? v2 : v2 * v1 * exp(v0))", a,
                inplace=inplace)


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def selu(input: Tensor, inplace: bool = False) -> Tensor:
    """scale * elu(x, alpha) with the self-normalising constants of Klambauer et al. (2017)."""
    return _act("selu", input, "v2 * (v0 > 0 ? v0 : v1 * expm1(v0))", "v3 * v2 * (v0 > 0 ? 1 : v1 * exp(v0))",
                _SELU_ALPHA, _SELU_SCALE, inplace=inplace)


def celu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """max(0, x) + min(0, alpha (exp(x / alpha) - 1))."""
    a = _number(alpha, "celu", "alpha")
    if a == 0:
        raise ValueError("celu: alpha must not be 0")
    return _act("celu", input, "(v0 > 0 ? v0 : v1 * expm1(v0 / v1))", "(v0 > 0 ? v2 : v2 * exp(v0 / v1))", a,
                inplace=inplace)


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta x)) / beta, and x itself where beta x > threshold (for stability)."""
    b, th = _number(beta, "softplus", "beta"), _number(threshold, "softplus", "threshold")
    return _act("softplus", input, "(v0 * v1 > v2 ? v0 : log1p(exp(v0 * v1)) / v1)",
                "(v0 * v1 > v2 ? v3 : v3 / (1 + exp(-v0 * v1)))", b, th)


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> Tensor:
    """x clamped to [min_val, max_val]; the gradient passes strictly inside."""
    lo, hi = _number(min_val, "hardtanh", "min_val"), _number(max_val, "hardtanh", "max_val")
    if lo > hi:
        raise ValueError(f"hardtanh: min_val ({lo}) cannot be greater than max_val ({hi})")
    return _act("hardtanh", input, "(v0 < v1 ? v1 : (v0 > v2 ? v2 : v0))", "((v0 > v1 && v0 < v2) ? v3 : 0)",
                lo, hi, inplace=inplace)


def relu6(input: Tensor, inplace: bool = False) -> Tensor:
    return hardtanh(input, 0.0, 6.0, inplace)


def hardsigmoid(input: Tensor, inplace: bool = False) -> Tensor:
    """0 below -3, 1 above 3, x / 6 + 1 / 2 between."""
    return _act("hardsigmoid", input, "(v0 <= -3 ? 0 : (v0 >= 3 ? 1 : v0 / 6 + 0.5f))",
                "((v0 > -3 && v0 < 3) ? v1 / 6 : 0)", inplace=inplace)


def hardswish(input: Tensor, inplace: bool = False) -> Tensor:
    """x * hardsigmoid(x) (MobileNetV3)."""
    return _act("hardswish", input, "(v0 <= -3 ? 0 : (v0 >= 3 ? v0 : v0 * (v0 + 3) / 6))",
                "(v0 < -3 ? 0 : (v0 <= 3 ? v1 * (v0 / 3 + 0.5f) : v1))", inplace=inplace)


def logsigmoid(input: Tensor) -> Tensor:
    """log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|)), stable for large |x|."""
    return _act("logsigmoid", input, "((v0 < 0 ? v0 : 0) - log1p(exp(-fabs(v0))))", "v1 / (1 + exp(v0))")


def softsign(input: Tensor) -> Tensor:
    """x / (1 + |x|)."""
    return _act("softsign", input, "v0 / (1 + fabs(v0))", "v1 / ((1 + fabs(v0)) * (1 + fabs(v0)))")


def tanhshrink(input: Tensor) -> Tensor:
    """x - tanh(x)."""
    return _act("tanhshrink", input, "v0 - tanh(v0)", "v1 * tanh(v0) * tanh(v0)")


def hardshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
    """x where |x| > lambd, else 0."""
    return _act("hardshrink", input, "(fabs(v0) > v1 ? v0 : 0)", "(fabs(v0) > v1 ? v2 : 0)",
                _number(lambd, "hardshrink", "lambd"))


def softshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
    """x - lambd above lambd, x + lambd below -lambd, 0 between."""
    return _act("softshrink", input, "(v0 > v1 ? v0 - v1 : (v0 < -v1 ? v0 + v1 : 0))",
                "(fabs(v0) > v1 ? v2 : 0)", _number(lambd, "softshrink", "lambd"))


def threshold(input: Tensor, threshold: float, value: float, inplace: bool = False) -> Tensor:
    """x where x > threshold, else value."""
    return _act("threshold", input, "(v0 > v1 ? v0 : v2)", "(v0 > v1 ? v3 : 0)",
                _number(threshold, "threshold", "threshold"), _number(value, "threshold", "value"), inplace=inplace)


def prelu(input: Tensor, weight: Tensor) -> Tensor:
    """x for x >= 0, weight * x below; weight has one value or one per channel (dim 1)."""
    _check(input, "prelu")
    if not isinstance(weight, Tensor):
        raise TypeError(f"prelu: weight must be a clnet Tensor, got {type(weight).__name__}")
    n = weight.numel()
    if weight.ndim > 1:
        raise ValueError(f"prelu: weight must be 1-D (one value, or one per channel), got {tuple(weight.shape)}")
    if n != 1:
        if input.ndim < 2 or input.shape[1] != n:
            raise ValueError(f"prelu: weight has {n} values but the input {tuple(input.shape)} has "
                             f"{input.shape[1] if input.ndim > 1 else 1} channels (dim 1)")
        w = _mv.reshape(weight, (1, n) + (1,) * (input.ndim - 2))
    else:
        w = _mv.reshape(weight, ())
    # v0 = x, v1 = weight, v2 = incoming gradient
    return _pointwise("prelu", "(v0 >= 0 ? v0 : v1 * v0)", [input, w],
                      {0: "(v0 >= 0 ? v2 : v1 * v2)", 1: "(v0 >= 0 ? 0 : v0 * v2)"}, input.dtype)


def glu(input: Tensor, dim: int = -1) -> Tensor:
    """a * sigmoid(b), with a and b the two halves of input along dim."""
    _check(input, "glu")
    d = dim % input.ndim if input.ndim else 0
    if input.ndim == 0 or input.shape[d] % 2:
        raise ValueError(f"glu: halving dimension {dim} must have an even size, got shape {tuple(input.shape)}")
    a, b = _mv.chunk(input, 2, d)
    return a * _ew.sigmoid(b)


def softmin(input: Tensor, dim=None, dtype=None) -> Tensor:
    """softmax(-x) along dim."""
    _check(input, "softmin")
    return softmax(-input, dim, dtype)


__all__ = ["gelu", "silu", "mish", "elu", "selu", "celu", "softplus", "hardtanh", "relu6", "hardsigmoid",
           "hardswish", "logsigmoid", "softsign", "tanhshrink", "hardshrink", "softshrink", "threshold", "prelu",
           "glu", "softmin"]

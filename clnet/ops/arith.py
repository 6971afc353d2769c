"""Elementwise ops of several operands or with options, each one kernel made by elementwise.pointwise (or a
short composition): lerp, addcmul, addcdiv, nan_to_num, isclose, fmax/fmin, division with a rounding mode.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes as _dt
from ..core.dispatch import op
from ..core.storage import TensorBase
from .elementwise import (_operand_dtype, _tensor_operand, cast, div, floor_divide, isnan, maximum, minimum,
                          pointwise, trunc, where)
from .movement import clone


def _float_result(*xs):
    dts = [x.dtype for x in xs if isinstance(x, TensorBase)]
    dt = dts[0]
    for d in dts[1:]:
        dt = _dt.promote_types(dt, d)
    return dt if _dt.is_floating(dt) else _dt.DEFAULT_FLOAT


@op("divide")
def divide(input, other, rounding_mode=None) -> TensorBase:
    """input / other: rounding_mode None (true division), 'trunc' (towards zero) or 'floor' (integers stay
    integers with a rounding mode, as in PyTorch)."""
    if rounding_mode is None:
        return div(input, other)
    if rounding_mode == "floor":
        return floor_divide(input, other)
    if rounding_mode == "trunc":
        q = trunc(div(input, other))
        dt = _operand_dtype(_tensor_operand(input), other)
        return q if _dt.is_floating(dt) else cast(q, dt)
    raise ValueError(f"div expected rounding_mode to be one of None, 'trunc', or 'floor' but found {rounding_mode!r}")


@op("fmax")
def fmax(input, other) -> TensorBase:
    """maximum that ignores NaN (the other value wins over a NaN)."""
    return where(isnan(input), other, where(isnan(other), input, maximum(input, other)))


@op("fmin")
def fmin(input, other) -> TensorBase:
    """minimum that ignores NaN."""
    return where(isnan(input), other, where(isnan(other), input, minimum(input, other)))


@op("lerp")
def lerp(input, end, weight) -> TensorBase:
    """input + weight * (end - input); weight a number or a tensor (all broadcast)."""
    return pointwise("lerp", "v0 + v2 * (v1 - v0)", [input, end, weight],
                     {0: "v3 * (1 - v2)", 1: "v3 * v2", 2: "v3 * (v1 - v0)"}, _float_result(input, end))


@op("addcmul")
def addcmul(input, tensor1, tensor2, value=1) -> TensorBase:
    """input + value * tensor1 * tensor2 in one kernel."""
    return pointwise("addcmul", "v0 + v3 * v1 * v2", [input, tensor1, tensor2, value],
                     {0: "v4", 1: "v4 * v3 * v2", 2: "v4 * v3 * v1"}, _float_result(input, tensor1, tensor2))


@op("addcdiv")
def addcdiv(input, tensor1, tensor2, value=1) -> TensorBase:
    """input + value * tensor1 / tensor2 in one kernel."""
    return pointwise("addcdiv", "v0 + v3 * v1 / v2", [input, tensor1, tensor2, value],
                     {0: "v4", 1: "v4 * v3 / v2", 2: "-v4 * v3 * v1 / (v2 * v2)"},
                     _float_result(input, tensor1, tensor2))


@op("nan_to_num")
def nan_to_num(input: TensorBase, nan=0.0, posinf=None, neginf=None) -> TensorBase:
    """NaN, +inf and -inf replaced by `nan`, `posinf` and `neginf` (by default 0 and the dtype's largest and
    smallest finite values); an integer tensor comes back as a copy."""
    if not _dt.is_floating(input.dtype):
        return clone(input)
    info = np.finfo(input.dtype)
    hi = float(info.max) if posinf is None else float(posinf)
    lo = float(info.min) if neginf is None else float(neginf)
    return pointwise("nan_to_num", "(v0 != v0 ? v1 : (isinf(v0) ? (v0 > 0 ? v2 : v3) : v0))",
                     [input, float(nan), hi, lo], {0: "(isfinite(v0) ? v4 : 0)"}, input.dtype)


@op("isclose")
def isclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False) -> TensorBase:
    """|input - other| <= atol + rtol * |other| elementwise, as a bool tensor (infinities are close only to
    themselves; NaN is close to NaN only with equal_nan)."""
    expr = "(v0 == v1 || (isfinite(v0) && isfinite(v1) && fabs(v0 - v1) <= v3 + v2 * fabs(v1)))"
    if equal_nan:
        expr = f"({expr} || (v0 != v0 && v1 != v1))"
    a, b = _as_float(input), _as_float(other)
    dt = _float_result(a, b) if isinstance(b, TensorBase) or isinstance(a, TensorBase) else _dt.DEFAULT_FLOAT
    return cast(pointwise("isclose", expr, [a, b, float(rtol), float(atol)], {}, dt), _dt.bool_)


def _as_float(x):
    if isinstance(x, TensorBase) and not _dt.is_floating(x.dtype):
        return cast(x, _dt.DEFAULT_FLOAT)
    return x

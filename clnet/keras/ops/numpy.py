"""keras.ops' numpy-like math: elementwise functions, reductions and tensor creation, on clnet ops.

Every function takes clnet tensors, numpy arrays or Python numbers (and returns a clnet tensor), or
KerasTensors (and records itself in the functional model being built). Where clnet has the op, it is
called (one implementation of the math); a few missing ones are short compositions of clnet ops, and
functions whose clnet op does not exist yet raise NotImplementedError naming it.
"""
from __future__ import annotations

import math

import numpy as np

import clnet
from clnet import dtypes as _dt

from .. import config
from .symbolic import (KerasTensor, absolute, add, as_tensor, elementwise_spec, equal, floor_divide, get_item,  # noqa: F401
                       greater, greater_equal, is_float_dtype, keras_op, less, less_equal, logical_and,
                       logical_not, logical_or, logical_xor, matmul, mod, multiply, negative, not_equal, numpy_spec,
                       power, reshape, same_spec, squeeze, standardize_dtype, subtract, transpose, true_divide)

divide = true_divide
abs = absolute  # noqa: A001


def clnet_op(*names):
    """clnet's function of one of these names, or a stand-in that says which op clnet still lacks."""
    for name in names:
        fn = getattr(clnet, name, None)
        if fn is not None:
            return fn

    def missing(*args, **kwargs):
        raise NotImplementedError(f"this keras.ops function needs clnet.{names[0]}, which this version of clnet "
                                  "does not have yet")
    return missing


def _float(x):
    """A float tensor of x (ints become floatx, as Keras's float-valued functions do)."""
    t = as_tensor(x)
    return t if _dt.is_floating(t.dtype) else t.to(dtype=_dt.as_dtype(config.floatx()))


def float_spec(x, *args, **kwargs):
    return KerasTensor(x.shape, x.dtype if is_float_dtype(x.dtype) else config.floatx())


def bool_spec(x, *args, **kwargs):
    return KerasTensor(x.shape, "bool")


def _unary(name, fn, spec=float_spec):
    fn.__name__ = fn.__qualname__ = name
    return keras_op(spec=spec)(fn)


def _binary_float(name, fn):
    def run(x1, x2):
        return fn(_float(x1), _float(x2))
    run.__name__ = run.__qualname__ = name

    def spec(x1, x2):
        out = elementwise_spec(x1, x2)
        return out if is_float_dtype(out.dtype) else KerasTensor(out.shape, config.floatx())
    return keras_op(spec=spec)(run)


# --- elementwise: float-valued ----------------------------------------------------------------------
_LN2, _LN10 = math.log(2.0), math.log(10.0)
exp = _unary("exp", lambda x: clnet.exp(_float(x)))
exp2 = _unary("exp2", lambda x: clnet.exp(_float(x) * _LN2))
expm1 = _unary("expm1", lambda x: clnet.expm1(_float(x)))
log = _unary("log", lambda x: clnet.log(_float(x)))
log1p = _unary("log1p", lambda x: clnet.log1p(_float(x)))
log2 = _unary("log2", lambda x: clnet.log(_float(x)) * (1.0 / _LN2))
log10 = _unary("log10", lambda x: clnet.log(_float(x)) * (1.0 / _LN10))
sqrt = _unary("sqrt", lambda x: clnet.sqrt(_float(x)))
rsqrt = _unary("rsqrt", lambda x: clnet.rsqrt(_float(x)))
cbrt = _unary("cbrt", lambda x: clnet.sign(_float(x)) * clnet.pow(clnet.abs(_float(x)), 1.0 / 3.0))
sin = _unary("sin", lambda x: clnet.sin(_float(x)))
cos = _unary("cos", lambda x: clnet.cos(_float(x)))
tan = _unary("tan", lambda x: clnet.sin(_float(x)) / clnet.cos(_float(x)))
sinh = _unary("sinh", lambda x: (clnet.exp(_float(x)) - clnet.exp(-_float(x))) * 0.5)
cosh = _unary("cosh", lambda x: (clnet.exp(_float(x)) + clnet.exp(-_float(x))) * 0.5)
tanh = _unary("tanh", lambda x: clnet.tanh(_float(x)))
arcsin = _unary("arcsin", lambda x: clnet_op("asin", "arcsin")(_float(x)))
arccos = _unary("arccos", lambda x: clnet_op("acos", "arccos")(_float(x)))
arctan = _unary("arctan", lambda x: clnet_op("atan", "arctan")(_float(x)))
arcsinh = _unary("arcsinh", lambda x: clnet.log(_float(x) + clnet.sqrt(_float(x) * _float(x) + 1.0)))
arccosh = _unary("arccosh", lambda x: clnet.log(_float(x) + clnet.sqrt(_float(x) * _float(x) - 1.0)))
arctanh = _unary("arctanh", lambda x: (clnet.log1p(_float(x)) - clnet.log1p(-_float(x))) * 0.5)
arctan2 = _binary_float("arctan2", lambda a, b: clnet_op("atan2", "arctan2")(a, b))
reciprocal = _unary("reciprocal", lambda x: clnet.reciprocal(_float(x)))
hypot = _binary_float("hypot", lambda a, b: clnet.sqrt(a * a + b * b))
logaddexp = _binary_float("logaddexp", lambda a, b: clnet.maximum(a, b) + clnet.log1p(clnet.exp(-clnet.abs(a - b))))
logaddexp2 = _binary_float("logaddexp2", lambda a, b: clnet.maximum(a, b) + clnet.log1p(
    clnet.exp((-clnet.abs(a - b)) * _LN2)) * (1.0 / _LN2))
deg2rad = _unary("deg2rad", lambda x: _float(x) * (math.pi / 180.0))
rad2deg = _unary("rad2deg", lambda x: _float(x) * (180.0 / math.pi))
sinc = _unary("sinc", lambda x: clnet.where(_float(x) == 0.0, 1.0, clnet.sin(_float(x) * math.pi) /
                                            clnet.where(_float(x) == 0.0, 1.0, _float(x) * math.pi)))


# --- elementwise: keep the dtype --------------------------------------------------------------------
square = _unary("square", lambda x: clnet.square(as_tensor(x)), same_spec)
sign = _unary("sign", lambda x: clnet.sign(as_tensor(x)), same_spec)
floor = _unary("floor", lambda x: clnet.floor(_float(x)))
ceil = _unary("ceil", lambda x: clnet.ceil(_float(x)))
trunc = _unary("trunc", lambda x: clnet.sign(_float(x)) * clnet.floor(clnet.abs(_float(x))), same_spec)
fabs = _unary("fabs", lambda x: clnet.abs(_float(x)))
conj = conjugate = _unary("conjugate", lambda x: as_tensor(x), same_spec)
real = _unary("real", lambda x: as_tensor(x), same_spec)
positive = _unary("positive", lambda x: as_tensor(x), same_spec)
copy = _unary("copy", lambda x: clnet.clone(as_tensor(x)), same_spec)
isnan = _unary("isnan", lambda x: clnet.isnan(as_tensor(x)), bool_spec)
isinf = _unary("isinf", lambda x: clnet.isinf(as_tensor(x)), bool_spec)
isfinite = _unary("isfinite", lambda x: clnet.logical_not(clnet.logical_or(clnet.isnan(as_tensor(x)),
                                                                           clnet.isinf(as_tensor(x)))), bool_spec)
isposinf = _unary("isposinf", lambda x: clnet.logical_and(clnet.isinf(as_tensor(x)), as_tensor(x) > 0), bool_spec)
isneginf = _unary("isneginf", lambda x: clnet.logical_and(clnet.isinf(as_tensor(x)), as_tensor(x) < 0), bool_spec)
signbit = _unary("signbit", lambda x: as_tensor(x) < 0, bool_spec)
maximum = keras_op(spec=lambda a, b: elementwise_spec(a, b))(lambda x1, x2: clnet.maximum(*_pair(x1, x2)))
minimum = keras_op(spec=lambda a, b: elementwise_spec(a, b))(lambda x1, x2: clnet.minimum(*_pair(x1, x2)))
maximum.__name__, minimum.__name__ = "maximum", "minimum"
fmax, fmin = maximum, minimum


def _pair(x1, x2):
    a = x1 if isinstance(x1, (clnet.Tensor, int, float)) else as_tensor(x1)
    b = x2 if isinstance(x2, (clnet.Tensor, int, float)) else as_tensor(x2)
    if not isinstance(a, clnet.Tensor) and not isinstance(b, clnet.Tensor):
        a = as_tensor(a)
    if not isinstance(a, clnet.Tensor):
        a, b = b, a  # clnet's maximum/minimum want the tensor first; both are symmetric
    return a, b


@keras_op(spec=lambda x1, x2: elementwise_spec(x1, x2))
def fmod(x1, x2):
    a, b = as_tensor(x1), as_tensor(x2) if not isinstance(x2, (int, float)) else x2
    return a - clnet.sign(a / b) * clnet.floor(clnet.abs(a / b)) * b


@keras_op(spec=lambda x, x_min, x_max: same_spec(x))
def clip(x, x_min, x_max):
    return clnet.clamp(as_tensor(x), x_min, x_max)


@keras_op(spec=lambda x, decimals=0: same_spec(x))
def round(x, decimals=0):  # noqa: A001
    t = as_tensor(x)
    if decimals == 0:
        return clnet.round(t)
    scale = 10.0 ** decimals
    return clnet.round(t * scale) / scale


def _where_spec(condition, x1=None, x2=None):
    if x1 is None and x2 is None:
        raise NotImplementedError("where(condition) with one argument (nonzero) cannot run on symbolic tensors")
    return elementwise_spec(condition, x1, x2, dtype=elementwise_spec(x1, x2).dtype)


@keras_op(spec=_where_spec)
def where(condition, x1=None, x2=None):
    """x1 where condition, else x2; with only condition, the indices where it is true (as numpy)."""
    cond = as_tensor(condition)
    if x1 is None and x2 is None:
        return tuple(i.to(dtype=_dt.int32) for i in clnet.nonzero(cond, as_tuple=True))
    if x1 is None or x2 is None:
        raise ValueError("`x1` and `x2` either both should be `None` or both should have non-None value.")
    if cond.dtype != _dt.bool_:
        cond = cond != 0
    a = x1 if isinstance(x1, (clnet.Tensor, int, float)) else as_tensor(x1)
    b = x2 if isinstance(x2, (clnet.Tensor, int, float)) else as_tensor(x2)
    return clnet.where(cond, a, b)


@keras_op(spec=lambda x1, x2, rtol=1e-5, atol=1e-8, equal_nan=False: elementwise_spec(x1, x2, dtype="bool"))
def isclose(x1, x2, rtol=1e-5, atol=1e-8, equal_nan=False):
    a, b = _float(x1), _float(x2)
    close = clnet.abs(a - b) <= atol + rtol * clnet.abs(b)
    if equal_nan:
        close = clnet.logical_or(close, clnet.logical_and(clnet.isnan(a), clnet.isnan(b)))
    return close


def allclose(x1, x2, rtol=1e-5, atol=1e-8, equal_nan=False):
    return all(isclose(x1, x2, rtol, atol, equal_nan))


@keras_op(spec=lambda x, nan=0.0, posinf=None, neginf=None: same_spec(x))
def nan_to_num(x, nan=0.0, posinf=None, neginf=None):
    t = as_tensor(x)
    if not _dt.is_floating(t.dtype):
        return t
    big = float(np.finfo(np.dtype(t.dtype)).max)
    t = clnet.where(clnet.isnan(t), float(nan), t)
    t = clnet.where(clnet.logical_and(clnet.isinf(t), t > 0), big if posinf is None else float(posinf), t)
    return clnet.where(clnet.logical_and(clnet.isinf(t), t < 0), -big if neginf is None else float(neginf), t)


@keras_op(spec=lambda x1, x2: elementwise_spec(x1, x2, dtype=elementwise_spec(x1, x2).dtype))
def heaviside(x1, x2):
    a, b = as_tensor(x1), x2
    return clnet.where(a > 0, 1.0, clnet.where(a == 0, b if isinstance(b, (int, float)) else as_tensor(b), 0.0))


@keras_op(spec=lambda x1, x2: _true_div_nonan_spec(x1, x2))
def divide_no_nan(x1, x2):
    a, b = _float(x1), _float(x2)
    safe = clnet.where(b == 0, 1.0, b)
    return clnet.where(b == 0, 0.0, a / safe)


def _true_div_nonan_spec(x1, x2):
    out = elementwise_spec(x1, x2)
    return out if is_float_dtype(out.dtype) else KerasTensor(out.shape, config.floatx())


# --- reductions -------------------------------------------------------------------------------------
def _axis(axis):
    if axis is None:
        return None
    return int(axis) if isinstance(axis, (int, np.integer)) else tuple(int(a) for a in axis)


def _reduction(name, np_fn, impl, dtype_rule=None):
    def run(x, axis=None, keepdims=False):
        return impl(as_tensor(x), _axis(axis), bool(keepdims))
    run.__name__ = run.__qualname__ = name

    def spec(x, axis=None, keepdims=False):
        out = numpy_spec(lambda a: np_fn(a, axis=_axis(axis), keepdims=keepdims))(x)
        return KerasTensor(out.shape, dtype_rule(x.dtype) if dtype_rule else x.dtype)
    return keras_op(spec=spec)(run)


def _float_or_same(dtype):
    return dtype if is_float_dtype(dtype) else config.floatx()


def _empty_axis(t, axis):
    return axis == () or (isinstance(axis, tuple) and len(axis) == 0)


sum = _reduction("sum", np.sum, lambda t, a, k: t if _empty_axis(t, a) else clnet.sum(t, a, k))  # noqa: A001
prod = _reduction("prod", np.prod, lambda t, a, k: clnet.prod(t, a, k))
mean = _reduction("mean", np.mean, lambda t, a, k: clnet.mean(_float(t), a, k), _float_or_same)
max = _reduction("max", np.max, lambda t, a, k: clnet.amax(t, a, k))  # noqa: A001
min = _reduction("min", np.min, lambda t, a, k: clnet.amin(t, a, k))  # noqa: A001
amax, amin = max, min
var = _reduction("var", np.var, lambda t, a, k: clnet.var(_float(t), a, k, unbiased=False), _float_or_same)
std = _reduction("std", np.std, lambda t, a, k: clnet.std(_float(t), a, k, unbiased=False), _float_or_same)
any = _reduction("any", np.any, lambda t, a, k: clnet.any(t if t.dtype == _dt.bool_ else t != 0, a, k),  # noqa: A001
                 lambda d: "bool")
all = _reduction("all", np.all, lambda t, a, k: clnet.all(t if t.dtype == _dt.bool_ else t != 0, a, k),  # noqa: A001
                 lambda d: "bool")
logsumexp = _reduction("logsumexp", lambda a, axis=None, keepdims=False: np.sum(a, axis=axis, keepdims=keepdims),
                       lambda t, a, k: clnet.logsumexp(_float(t), a, k), _float_or_same)
count_nonzero = _reduction("count_nonzero", lambda a, axis=None, keepdims=False: np.sum(a, axis=axis, keepdims=keepdims),
                           lambda t, a, k: clnet.sum((t != 0).to(dtype=_dt.int32), a, k), lambda d: "int32")


def _arg_reduction(name, clnet_fn):
    def run(x, axis=None, keepdims=False):
        t = as_tensor(x)
        if axis is None:
            out = clnet_fn(t.reshape(-1), 0)
            return out.reshape((1,) * t.ndim if keepdims else ()).to(dtype=_dt.int32)
        return clnet_fn(t, int(axis), bool(keepdims)).to(dtype=_dt.int32)
    run.__name__ = run.__qualname__ = name

    def spec(x, axis=None, keepdims=False):
        out = numpy_spec(lambda a: np.argmax(a, axis=axis, keepdims=keepdims))(x)
        return KerasTensor(out.shape, "int32")
    return keras_op(spec=spec)(run)


argmax = _arg_reduction("argmax", clnet.argmax)
argmin = _arg_reduction("argmin", clnet.argmin)


@keras_op(spec=lambda x, axis=None, weights=None: KerasTensor(
    numpy_spec(lambda a: np.mean(a, axis=axis))(x).shape, _float_or_same(x.dtype)))
def average(x, axis=None, weights=None):
    t = _float(x)
    if weights is None:
        return clnet.mean(t, _axis(axis))
    w = _float(weights)
    if axis is not None and w.ndim == 1 and t.ndim > 1:
        shape = [1] * t.ndim
        shape[int(axis)] = w.shape[0]
        w = w.reshape(shape)
    return clnet.sum(t * w, _axis(axis)) / clnet.sum(w * clnet.ones_like(t), _axis(axis))


@keras_op(spec=lambda x, axis=None, keepdims=False: numpy_spec(
    lambda a: np.ptp(a, axis=axis, keepdims=keepdims))(x))
def ptp(x, axis=None, keepdims=False):
    t = as_tensor(x)
    return clnet.amax(t, _axis(axis), keepdims) - clnet.amin(t, _axis(axis), keepdims)


def _cum(name, mode):
    def run(x, axis=None, dtype=None):
        t = as_tensor(x, dtype)
        if axis is None:
            t, axis = t.reshape(-1), 0
        fn = getattr(clnet, name, None)
        if fn is not None:
            return fn(t, int(axis))
        # composition while clnet has no scan op: a triangular matmul (sum) or exp(cumsum(log|x|)) with signs
        axis = int(axis) % t.ndim
        moved = t.movedim(axis, -1)
        n = moved.shape[-1]
        tri = clnet.tensor(np.triu(np.ones((n, n), dtype=np.dtype(_float(t).dtype))))
        if mode == "sum":
            out = clnet.matmul(_float(moved), tri)
        else:
            f = _float(moved)
            logs = clnet.matmul(clnet.log(clnet.abs(f)), tri)
            negs = clnet.matmul((f < 0).to(dtype=f.dtype), tri)
            sign = 1.0 - 2.0 * clnet.remainder(negs, 2.0)
            out = clnet.where(clnet.matmul((f == 0).to(dtype=f.dtype), tri) > 0, 0.0, clnet.exp(logs) * sign)
        out = out.movedim(-1, axis)
        return out if _dt.is_floating(t.dtype) else clnet.round(out).to(dtype=t.dtype)
    run.__name__ = run.__qualname__ = name

    def spec(x, axis=None, dtype=None):
        shape = x.shape if axis is not None else (None if any(s is None for s in x.shape) else
                                                  int(np.prod(x.shape)),)
        return KerasTensor(shape, standardize_dtype(dtype) if dtype else x.dtype)
    return keras_op(spec=spec)(run)


cumsum = _cum("cumsum", "sum")
cumprod = _cum("cumprod", "prod")


# --- creation ---------------------------------------------------------------------------------------
def _dtype(dtype, default=None):
    return _dt.as_dtype(standardize_dtype(dtype if dtype is not None else (default or config.floatx())))


def _shape(shape):
    return (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)


def zeros(shape, dtype=None):
    return clnet.zeros(_shape(shape), dtype=_dtype(dtype))


def ones(shape, dtype=None):
    return clnet.ones(_shape(shape), dtype=_dtype(dtype))


def full(shape, fill_value, dtype=None):
    if dtype is None:
        dtype = "bool" if isinstance(fill_value, bool) else ("int32" if isinstance(fill_value, int)
                                                             else config.floatx())
    return clnet.full(_shape(shape), fill_value, dtype=_dtype(dtype))


def empty(shape, dtype=None):
    return clnet.empty(_shape(shape), dtype=_dtype(dtype))


def _like(name, make):
    def run(x, dtype=None, **kwargs):
        t = as_tensor(x)
        return make(tuple(t.shape), _dtype(dtype, standardize_dtype(t.dtype)), **kwargs)
    run.__name__ = run.__qualname__ = name
    return keras_op(spec=lambda x, dtype=None, **kw: KerasTensor(x.shape, standardize_dtype(dtype) if dtype
                                                                  else x.dtype))(run)


zeros_like = _like("zeros_like", lambda s, d: clnet.zeros(s, dtype=d))
ones_like = _like("ones_like", lambda s, d: clnet.ones(s, dtype=d))
empty_like = _like("empty_like", lambda s, d: clnet.empty(s, dtype=d))


@keras_op(spec=lambda x, fill_value, dtype=None: KerasTensor(x.shape, standardize_dtype(dtype) if dtype else x.dtype))
def full_like(x, fill_value, dtype=None):
    t = as_tensor(x)
    return clnet.full(tuple(t.shape), fill_value, dtype=_dtype(dtype, standardize_dtype(t.dtype)))


def arange(start, stop=None, step=1, dtype=None):
    if dtype is None:
        dtype = "int32" if all(isinstance(v, (int, np.integer)) for v in (start, stop, step) if v is not None) \
            else config.floatx()
    return clnet.arange(start, stop, step, dtype=_dtype(dtype))


def linspace(start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0):
    if axis != 0:
        raise NotImplementedError("linspace: only axis=0 is supported")
    n = int(num)
    if endpoint:
        out = clnet.linspace(float(start), float(stop), n, dtype=_dtype(dtype))
        step = (float(stop) - float(start)) / max(n - 1, 1)
    else:
        step = (float(stop) - float(start)) / n
        out = clnet.linspace(float(start), float(stop) - step, n, dtype=_dtype(dtype))
    return (out, step) if retstep else out


def logspace(start, stop, num=50, endpoint=True, base=10, dtype=None, axis=0):
    return clnet.pow(float(base), linspace(start, stop, num, endpoint, dtype=dtype, axis=axis))


def geomspace(start, stop, num=50, endpoint=True, dtype=None, axis=0):
    return clnet.exp(linspace(math.log(start), math.log(stop), num, endpoint, dtype=dtype, axis=axis))


def eye(N, M=None, k=0, dtype=None):  # noqa: N803  (numpy's argument names)
    if k == 0:
        return clnet.eye(N, M, dtype=_dtype(dtype))
    return clnet.tensor(np.eye(N, M, k, dtype=standardize_dtype(dtype)))


def identity(n, dtype=None):
    return clnet.eye(n, dtype=_dtype(dtype))


def tri(N, M=None, k=0, dtype=None):  # noqa: N803
    return clnet.tensor(np.tri(N, M, k, dtype=standardize_dtype(dtype)))


def array(x, dtype=None):
    return as_tensor(x, dtype)

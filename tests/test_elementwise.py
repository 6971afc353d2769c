"""Elementwise ops against numpy float64 over a grid of shapes, layouts, scalars and dtypes."""
from __future__ import annotations

import numpy as np
import pytest

import clnet
from clnet.backend import programs
from clnet.ops import elementwise as ew
from conftest import assert_close, small

RTOL = 1e-5  # float32 relative error bound of the issue

# (shape a, shape b): equal, broadcasting both ways, size-1 and size-0 dims, sizes that are not
# multiples of any work-group size, ranks 0..4
SHAPE_PAIRS = [
    ((), ()),
    ((5,), ()),
    ((), (7,)),
    ((3, 4), (3, 4)),
    ((3, 1), (1, 4)),
    ((2, 3, 4), (4,)),
    ((2, 1, 4), (3, 1)),
    ((1, 1, 1), (2, 1, 3)),
    ((5, 1, 6, 1), (1, 7, 1, 3)),
    ((67,), (67,)),
    ((131, 3), (1,)),
    ((1000, 3), (1000, 1)),
    ((0, 3), (1, 3)),
    ((4, 0), (4, 1)),
    ((0,), ()),
]

UNARY_REF = {
    "neg": np.negative, "abs": np.abs, "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "tanh": np.tanh,
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)), "relu": lambda x: np.maximum(x, 0), "sin": np.sin,
    "cos": np.cos, "square": np.square, "reciprocal": np.reciprocal, "rsqrt": lambda x: 1 / np.sqrt(x),
    "log1p": np.log1p, "expm1": np.expm1, "floor": np.floor, "ceil": np.ceil, "round": np.round,
    "sign": np.sign,
}
POSITIVE_ONLY = {"log", "sqrt", "rsqrt", "log1p"}

BINARY_REF = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide, "pow": np.power,
    "maximum": np.maximum, "minimum": np.minimum,
}
COMPARE_REF = {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
               "gt": np.greater, "ge": np.greater_equal}


def _inputs(rng, name, shape):
    """Random float32 inputs suited to op `name` (never zeros; positive where the op needs it)."""
    x = rng.standard_normal(shape).astype(np.float32)
    if name in POSITIVE_ONLY or name == "pow":
        x = np.abs(x) + 0.5
    if name == "div_b" or name == "reciprocal":
        x = np.sign(x) * (np.abs(x) + 0.5)
    return x


def _close(actual, expected, rtol=RTOL):
    """Relative error bound with an absolute floor scaled to the data (near-zero results)."""
    expected = np.asarray(expected, dtype=np.float64)
    floor = rtol * max(1.0, float(np.abs(expected[np.isfinite(expected)]).max(initial=0)))
    assert_close(actual, expected, rtol=rtol, atol=floor)


# --- unary --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(UNARY_REF))
@pytest.mark.parametrize("shape", [(), (1,), (67,), (3, 5), (2, 1, 70)])
def test_unary_matches_numpy(device, rng, name, shape):
    x = _inputs(rng, name, shape)
    if name == "round":
        x = x * 10  # values between integers, so rounding is exercised (never exactly .5 here)
    y = getattr(clnet, name)(clnet.tensor(x, device=device))
    assert y.shape == shape and y.dtype == clnet.float32
    _close(y, UNARY_REF[name](x.astype(np.float64)))


@pytest.mark.parametrize("name", ["exp", "tanh", "sigmoid", "relu", "abs", "neg", "sqrt"])
def test_unary_on_non_contiguous_views(device, rng, name):
    base = _inputs(rng, name, (6, 9, 4))
    t = clnet.tensor(base, device=device)
    for view, ref in ((t.permute(2, 0, 1), base.transpose(2, 0, 1)),
                      (t[1:5:2, ::3], base[1:5:2, ::3]),
                      (t[:, 2], base[:, 2]),
                      (t.transpose(0, 2)[1:], base.transpose(2, 1, 0)[1:])):
        _close(getattr(clnet, name)(view), UNARY_REF[name](ref.astype(np.float64)))


def test_unary_int_inputs_give_float_where_needed(device):
    i = clnet.tensor([1, 2, 3], device=device)
    assert clnet.exp(i).dtype == clnet.float32
    _close(clnet.exp(i), np.exp([1.0, 2.0, 3.0]))
    assert (-i).dtype == clnet.int64 and (-i).tolist() == [-1, -2, -3]
    assert abs(clnet.tensor([-3, 4], dtype=clnet.int32, device=device)).tolist() == [3, 4]
    assert clnet.floor(i).dtype == clnet.int64
    assert clnet.relu(clnet.tensor([-2, 5], device=device)).tolist() == [0, 5]


# --- binary -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(BINARY_REF))
@pytest.mark.parametrize("shapes", SHAPE_PAIRS, ids=[f"{a}-{b}" for a, b in SHAPE_PAIRS])
def test_binary_broadcast_matches_numpy(device, rng, name, shapes):
    sa, sb = shapes
    a = _inputs(rng, name, sa)
    b = _inputs(rng, "div_b" if name == "div" else name, sb)
    if name == "pow":
        b = rng.uniform(-2, 2, sb).astype(np.float32)
    y = getattr(clnet, name)(clnet.tensor(a, device=device), clnet.tensor(b, device=device))
    expected = BINARY_REF[name](a.astype(np.float64), b.astype(np.float64))
    assert y.shape == expected.shape
    _close(y, expected)


@pytest.mark.parametrize("name", sorted(COMPARE_REF))
@pytest.mark.parametrize("shapes", SHAPE_PAIRS[:10], ids=[f"{a}-{b}" for a, b in SHAPE_PAIRS[:10]])
def test_comparisons_give_bool(device, rng, name, shapes):
    sa, sb = shapes
    a = rng.integers(-2, 3, sa).astype(np.float32)  # small integers: many ties, so == matters
    b = rng.integers(-2, 3, sb).astype(np.float32)
    y = getattr(clnet, name)(clnet.tensor(a, device=device), clnet.tensor(b, device=device))
    assert y.dtype == clnet.bool
    np.testing.assert_array_equal(y.numpy(), COMPARE_REF[name](a, b))


def test_operators_and_logical_ops(device, rng):
    a = rng.standard_normal((4, 5)).astype(np.float32)
    b = rng.standard_normal((5,)).astype(np.float32)
    ta, tb = clnet.tensor(a, device=device), clnet.tensor(b, device=device)
    _close(ta + tb, a + b.astype(np.float64))
    _close(ta - tb, a - b.astype(np.float64))
    _close(ta * tb, a * b.astype(np.float64))
    _close(ta / tb, a / b.astype(np.float64))
    _close(-ta, -a)
    for op in ("__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__"):
        np.testing.assert_array_equal(getattr(ta, op)(tb).numpy(), getattr(a, op)(b))
    m, n = ta > 0, tb > 0
    np.testing.assert_array_equal((m & n).numpy(), (a > 0) & (b > 0))
    np.testing.assert_array_equal((m | n).numpy(), (a > 0) | (b > 0))
    np.testing.assert_array_equal((m ^ n).numpy(), (a > 0) ^ (b > 0))
    np.testing.assert_array_equal((~m).numpy(), ~(a > 0))


@pytest.mark.parametrize("layout", ["T", "slice", "permute", "expand", "offset_row"])
def test_binary_non_contiguous_without_copy(device, rng, layout, monkeypatch):
    x = rng.standard_normal((8, 6, 5)).astype(np.float32)
    t = clnet.tensor(x, device=device)
    views = {
        "T": (t[0].T, x[0].T),
        "slice": (t[1:7:2, ::2, 1:], x[1:7:2, ::2, 1:]),
        "permute": (t.permute(1, 2, 0), x.transpose(1, 2, 0)),
        "expand": (t[:, :1, :].expand(8, 6, 5), np.broadcast_to(x[:, :1, :], (8, 6, 5))),
        "offset_row": (t[3, 2], x[3, 2]),
    }
    view, ref = views[layout]
    assert layout == "offset_row" or not view.is_contiguous()
    other = rng.standard_normal(ref.shape).astype(np.float32)

    def no_copy(*a, **k):
        raise AssertionError("the elementwise kernel should read strided views directly")
    monkeypatch.setattr(clnet.ops.movement, "contiguous", no_copy)
    monkeypatch.setattr(clnet.ops.movement, "clone", no_copy)
    y = view * clnet.tensor(other, device=device) + view
    monkeypatch.undo()
    _close(y, ref.astype(np.float64) * other + ref)


@pytest.mark.parametrize("scalar", [2, 0.5, -3.25, True, np.float64(1.5), np.int32(3)])
def test_python_and_numpy_scalars_on_either_side(device, rng, scalar):
    a = rng.standard_normal((3, 7)).astype(np.float32)
    t = clnet.tensor(a, device=device)
    s = float(scalar)
    for got, want in ((t + scalar, a + s), (scalar + t, s + a), (t - scalar, a - s), (scalar - t, s - a),
                      (t * scalar, a * s), (scalar * t, s * a), (t / scalar, a / s),
                      (scalar / (t.abs() + 1), s / (np.abs(a) + 1)),
                      (clnet.maximum(t, scalar), np.maximum(a, s)), (clnet.minimum(scalar, t), np.minimum(s, a))):
        assert isinstance(got, clnet.Tensor) and got.dtype == clnet.float32
        _close(got, want.astype(np.float64))
    _close((t.abs() + 0.5) ** scalar, (np.abs(a).astype(np.float64) + 0.5) ** s)
    with np.errstate(invalid="ignore"):  # a negative base to the power 0.5 is NaN in both
        _close(scalar ** clnet.tensor([0.5, 2.0], device=device), float(scalar) ** np.array([0.5, 2.0]))


def test_numpy_arrays_on_either_side(device, rng):
    a = rng.standard_normal((2, 3)).astype(np.float32)
    t = clnet.tensor(a, device=device)
    n = rng.standard_normal((3,)).astype(np.float32)
    for got, want in ((t + n, a + n), (n + t, n + a), (n * t, n * a), (np.float32(2) * t, 2 * a)):
        assert isinstance(got, clnet.Tensor)
        _close(got, want.astype(np.float64))


def test_size_zero_and_size_one(device):
    e = clnet.zeros(0, 3, device=device)
    assert (e + 1).shape == (0, 3) and (e * e).numpy().shape == (0, 3)
    assert clnet.exp(e).shape == (0, 3)
    one = clnet.tensor([[2.0]], device=device)
    assert (one + clnet.ones(4, 1, 3, device=device)).shape == (4, 1, 3)


def test_broadcast_error_names_shapes(device):
    a = clnet.ones(3, 4, device=device)
    b = clnet.ones(5, device=device)
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(5,\)"):
        a + b


def test_new_shapes_do_not_rebuild_kernels(device, rng):
    def run(m, n):
        a = clnet.tensor(rng.standard_normal((m, 1)).astype(np.float32), device=device)
        b = clnet.tensor(rng.standard_normal((1, n)).astype(np.float32), device=device)
        return (a * b).numpy()
    run(3, 4)
    (clnet.ones(5, device=device) + clnet.ones(5, device=device)).numpy()
    built = programs.built_count()
    run(17, 9)
    run(70, 3)
    (clnet.ones(129, device=device) + clnet.ones(129, device=device)).numpy()
    assert programs.built_count() == built


# --- NaN / Inf ---------------------------------------------------------------------------------------
SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -2.5, 3.0], dtype=np.float32)


@pytest.mark.parametrize("name", ["neg", "abs", "exp", "log", "sqrt", "tanh", "sigmoid", "relu", "floor",
                                  "sign", "square"])
def test_unary_nan_inf_like_numpy(device, name):
    with np.errstate(all="ignore"):
        expected = UNARY_REF[name](SPECIAL.astype(np.float64))
    got = getattr(clnet, name)(clnet.tensor(SPECIAL, device=device)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6, equal_nan=True)


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div", "maximum", "minimum", "pow"])
def test_binary_nan_inf_like_numpy(device, name):
    a, b = np.meshgrid(SPECIAL, SPECIAL)
    with np.errstate(all="ignore"):
        expected = BINARY_REF[name](a.astype(np.float64), b.astype(np.float64))
    got = getattr(clnet, name)(clnet.tensor(a, device=device), clnet.tensor(b, device=device)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6, equal_nan=True)


def test_comparisons_with_nan(device):
    t = clnet.tensor(SPECIAL, device=device)
    np.testing.assert_array_equal((t == t).numpy(), SPECIAL == SPECIAL)
    np.testing.assert_array_equal((t != t).numpy(), SPECIAL != SPECIAL)
    np.testing.assert_array_equal((t < 1).numpy(), SPECIAL < 1)
    np.testing.assert_array_equal(clnet.isnan(t).numpy(), np.isnan(SPECIAL))
    np.testing.assert_array_equal(clnet.isinf(t).numpy(), np.isinf(SPECIAL))
    np.testing.assert_allclose(t.clamp(-1, 1).numpy(), np.clip(SPECIAL, -1, 1), equal_nan=True)


# --- clamp / where ---------------------------------------------------------------------------------
def test_clamp(device, rng):
    a = rng.standard_normal((5, 67)).astype(np.float32)
    t = clnet.tensor(a, device=device)
    _close(t.clamp(min=0), np.maximum(a, 0))
    _close(t.clamp(max=0.3), np.minimum(a, 0.3))
    _close(t.clamp(-0.5, 0.5), np.clip(a, -0.5, 0.5))
    _close(clnet.clamp(t, min=0.7, max=0.2), np.minimum(np.maximum(a, 0.7), 0.2))  # as torch: max wins
    lo = rng.standard_normal((67,)).astype(np.float32)
    _close(t.clamp(min=clnet.tensor(lo, device=device)), np.maximum(a, lo))
    with pytest.raises(ValueError, match="at least one"):
        t.clamp()
    i = clnet.tensor([-3, 0, 7], device=device)
    assert i.clamp(min=0).dtype == clnet.int64 and i.clamp(0, 5).tolist() == [0, 0, 5]


@pytest.mark.parametrize("shapes", [((4, 5), (4, 5), (4, 5)), ((4, 1), (1, 5), (5,)), ((3, 4), (), (4,))])
def test_where(device, rng, shapes):
    sc, sa, sb = shapes
    c = rng.standard_normal(sc) > 0
    a = rng.standard_normal(sa).astype(np.float32)
    b = rng.standard_normal(sb).astype(np.float32)
    y = clnet.where(clnet.tensor(c, device=device), clnet.tensor(a, device=device), clnet.tensor(b, device=device))
    _close(y, np.where(c, a, b))
    _close(clnet.where(clnet.tensor(c, device=device), clnet.tensor(a, device=device), 0.0), np.where(c, a, 0.0))
    _close(clnet.where(clnet.tensor(c, device=device), 1.0, clnet.tensor(b, device=device)), np.where(c, 1.0, b))


# --- dtypes and promotion (docs/dtypes.md) -----------------------------------------------------------
PROMOTION = [
    # (a, b, expected): a/b are dtypes (tensors of shape (3,)), "0d:<dtype>" (0-d tensors) or Python scalars
    ("int32", "int64", "int64"),
    ("int64", "float32", "float32"),
    ("bool", "int32", "int32"),
    ("bool", "float32", "float32"),
    ("int32", 2, "int32"),
    ("int32", 2.5, "float32"),
    ("bool", 1, "int64"),
    ("bool", True, "bool"),
    ("float32", 2, "float32"),
    ("float32", "0d:float64", "float32"),
    ("int32", "0d:float64", "float64"),
    ("0d:int64", "0d:int32", "int64"),
    ("float32", "float64", "float64"),
]


def _make(device, spec):
    if not isinstance(spec, str):
        return spec
    if spec.startswith("0d:"):
        dt = np.dtype(spec[3:])
        if dt == np.float64 and not device.fp64:
            pytest.skip("float64 needs cl_khr_fp64")
        return clnet.tensor(np.array(1, dtype=dt), device=device)
    dt = np.dtype(spec)
    if dt == np.float64 and not device.fp64:
        pytest.skip("float64 needs cl_khr_fp64")
    return clnet.tensor(np.array([1, 2, 3]).astype(dt), device=device)


@pytest.mark.parametrize("a,b,expected", PROMOTION)
def test_type_promotion_rules(device, a, b, expected):
    ta, tb = _make(device, a), _make(device, b)
    assert (ta + tb).dtype == np.dtype(expected)
    assert (tb * ta).dtype == np.dtype(expected)
    av = np.asarray(ta.numpy() if isinstance(ta, clnet.Tensor) else ta, dtype=np.float64)
    bv = np.asarray(tb.numpy() if isinstance(tb, clnet.Tensor) else tb, dtype=np.float64)
    np.testing.assert_allclose((ta + tb).numpy().astype(np.float64),
                               (av + bv).astype(expected).astype(np.float64))


def test_division_and_int_ops(device):
    i = clnet.tensor([-7, -1, 0, 5, 9], device=device)
    assert (i / 2).dtype == clnet.float32
    np.testing.assert_allclose((i / 2).numpy(), np.array([-7, -1, 0, 5, 9]) / 2)
    n = np.array([-7, -1, 0, 5, 9])
    for d in (2, -3):
        assert (i // d).tolist() == (n // d).tolist()
        assert (i % d).tolist() == (n % d).tolist()
    assert (i ** 2).dtype == clnet.int64 and (i ** 2).tolist() == (n ** 2).tolist()
    assert (clnet.tensor([3, 2], device=device) ** clnet.tensor([4, 31], device=device)).tolist() == [81, 2**31]
    with pytest.raises(ValueError, match="negative integer powers"):
        i ** -1
    f = clnet.tensor([-7.5, 7.5, -1.0], device=device)
    np.testing.assert_allclose((f // 2).numpy(), np.array([-7.5, 7.5, -1.0]) // 2)
    np.testing.assert_allclose((f % 2).numpy(), np.array([-7.5, 7.5, -1.0]) % 2)


def test_bool_arithmetic(device):
    t = clnet.tensor([True, False, True], device=device)
    u = clnet.tensor([True, True, False], device=device)
    s = t + u
    assert s.dtype == clnet.bool and s.tolist() == [True, True, True]
    assert (t * u).tolist() == [True, False, False]
    assert (t + 1).dtype == clnet.int64 and (t + 1).tolist() == [2, 1, 2]
    assert (t * 0.5).dtype == clnet.float32
    with pytest.raises(TypeError, match="bool"):
        t - u
    with pytest.raises(TypeError, match="bool"):
        -t


def test_mixed_dtypes_compute_in_the_wider_type(device, rng):
    if not device.fp64:
        pytest.skip("float64 needs cl_khr_fp64")
    a = rng.standard_normal(50)
    b = rng.standard_normal(50).astype(np.float32)
    y = clnet.tensor(a, dtype=clnet.float64, device=device) * clnet.tensor(b, device=device)
    assert y.dtype == clnet.float64
    np.testing.assert_allclose(y.numpy(), a * b.astype(np.float64), rtol=1e-14)
    big = clnet.tensor([2**40 + 1], dtype=clnet.int64, device=device)
    assert (big + clnet.tensor([1], dtype=clnet.int32, device=device)).tolist() == [2**40 + 2]


# --- in place ------------------------------------------------------------------------------------
def test_inplace_operators_bump_version(device, rng):
    a = rng.standard_normal((4, 5)).astype(np.float32)
    t = clnet.tensor(a, device=device)
    ref = a.astype(np.float64)
    buf = t._buf
    v = t._version[0]
    t += 2
    t -= clnet.tensor(a[0], device=device)
    t *= 3
    t /= 4
    ref = ((ref + 2) - a[0]) * 3 / 4
    assert t._buf is buf and t._version[0] == v + 4
    _close(t, ref)
    t.add_(1).sub_(0.5).mul_(2).div_(3)
    ref = (ref + 1 - 0.5) * 2 / 3
    _close(t, ref)
    t.clamp_(min=-0.5, max=1.0)
    ref = np.clip(ref, -0.5, 1.0)
    _close(t, ref)
    t.relu_()
    _close(t, np.maximum(ref, 0))
    t.exp_()
    _close(t, np.exp(np.maximum(ref, 0)))
    assert t._version[0] == v + 11


def test_inplace_on_view_writes_base(device):
    t = clnet.zeros(3, 4, device=device)
    row = t[1]
    row += 5
    col = t[:, 2]
    col.mul_(2)
    assert t._version[0] == 2 and row._version is t._version
    expected = np.zeros((3, 4))
    expected[1] = 5
    expected[:, 2] *= 2
    np.testing.assert_array_equal(t.numpy(), expected)


def test_inplace_overlapping_operands(device, rng):
    a = rng.standard_normal((5, 5)).astype(np.float32)
    t = clnet.tensor(a, device=device)
    t += t.T
    _close(t, a + a.T)


def test_inplace_dtype_rules(device):
    i = clnet.tensor([1, 2, 3], device=device)
    with pytest.raises(TypeError, match="can't be cast"):
        i += 0.5
    i += 2
    assert i.dtype == clnet.int64 and i.tolist() == [3, 4, 5]
    f = clnet.ones(3, device=device)
    f += i  # int into float: allowed (same or higher category)
    assert f.tolist() == [4.0, 5.0, 6.0]
    b = clnet.tensor([True, False, True], device=device)
    with pytest.raises(TypeError):
        b += 1


def test_cast_and_copy(device, rng):
    a = rng.standard_normal(9).astype(np.float32) * 4
    t = clnet.tensor(a, device=device)
    assert t.to(clnet.int32).tolist() == a.astype(np.int32).tolist()
    assert t.to(clnet.bool).tolist() == (a != 0).tolist()
    assert t.bool().float().tolist() == (a != 0).astype(np.float32).tolist()
    d = clnet.zeros(3, 9, device=device)
    d.copy_(t)
    np.testing.assert_array_equal(d.numpy(), np.broadcast_to(a, (3, 9)))
    d.fill_(2.5)
    assert float(d.sum()) == pytest.approx(2.5 * 27)
    d.zero_()
    assert not d.numpy().any()


def test_plan_cache_is_bounded(device):
    x = clnet.ones(3, device=device)
    n = small(device, 40, 5)
    for k in range(n):
        x[: k % 3 + 1] + 1.0
    assert len(ew._PLANS) <= ew._PLAN_LIMIT


def test_dtype_support_is_explicit(device):
    if device.fp64:
        t = clnet.ones(3, dtype=clnet.float64, device=device)
        assert (t * 2).dtype == clnet.float64
    else:
        with pytest.raises(clnet.DtypeNotSupportedError, match="float64"):
            clnet.ones(3, dtype=clnet.float64, device=device)
    if device.profile.fp16:
        h = clnet.tensor([1.5, -2.0], dtype=clnet.float16, device=device)
        assert (h * 2).dtype == clnet.float16 and (h * 2).tolist() == [3.0, -4.0]
        assert (h + clnet.ones(2, device=device)).dtype == clnet.float32
    else:
        with pytest.raises(clnet.DtypeNotSupportedError, match="float16"):
            clnet.ones(3, dtype=clnet.float16, device=device)

"""Property-based tests (Hypothesis) with numpy in float64 as the oracle.

Random shapes (0-d, size-0 and size-1 dims included), broadcasting pairs, axes, views made by permute and
slicing, dtypes (float32, int32, int64, bool where it means something, float64 where the device has it)
and scalar operands, for elementwise ops, reductions, matmul and indexing (basic and advanced).

Reproducible in CI: the settings profile "clnet-properties" (registered here) derandomizes (examples
follow from each test's source, not from a seed or a database) and keeps no example database; it sets
no deadline and a budget of examples that keeps this module within about a minute on PoCL. Slow devices
(llvmpipe, Oclgrind) run a prefix of the same examples. CLNET_PROPERTY_EXAMPLES=N runs N per test.
Values are bounded (no overflow) and never zero: magnitudes in [1/4, 4] for floats, [1, 9] for ints.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import clnet
from conftest import is_slow_device

settings.register_profile(
    "clnet-properties", derandomize=True, database=None, deadline=None, print_blob=True,
    max_examples=int(os.environ.get("CLNET_PROPERTY_EXAMPLES", "25")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                           HealthCheck.data_too_large, HealthCheck.filter_too_much])
PROFILE = settings.get_profile("clnet-properties")


def budget(device, share=1.0):
    """Settings for one property on `device`: the profile's examples (times `share`), fewer on slow devices."""
    n = max(1, int(PROFILE.max_examples * share))
    if is_slow_device(device):
        n = max(1, n // (8 if device.is_simulator else 4))
    return settings(PROFILE, max_examples=n)


# --- strategies -----------------------------------------------------------------------------------------
def dtypes_for(device, ints=True, bools=False):
    out = [np.float32]
    if device.fp64:
        out.append(np.float64)
    if ints:
        out += [np.int32, np.int64]
    if bools:
        out.append(np.bool_)
    return out


def values(dtype, positive=False):
    """Element strategy: bounded, never zero."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return st.booleans()
    if dtype.kind in "iu":
        mag = st.integers(1, 9)
    else:
        mag = st.floats(0.25, 4.0, width=32 if dtype == np.float32 else 64)
    if positive:
        return mag
    return st.tuples(mag, st.sampled_from([-1, 1])).map(lambda t: t[0] * t[1])


def array(draw, shape, dtype, positive=False):
    a = draw(hnp.arrays(dtype, shape, elements=values(dtype, positive)))
    if a.dtype == np.bool_ and a.size and not a.any():
        a.flat[0] = True  # never all zeros
    return a


def shapes(min_dims=0, max_dims=4, max_side=5):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=0, max_side=max_side)


@st.composite
def view_of(draw, shape, dtype, positive=False):
    """(numpy view, the same view in clnet): a base array permuted and sliced (steps of either sign) down
    to `shape`-like strides; the clnet view is made by the same permute and slices, so it is strided too."""
    nd = len(shape)
    perm = draw(st.permutations(range(nd))) if nd else []
    steps = [draw(st.sampled_from([1, 1, 2, -1])) for _ in range(nd)]
    # the base holds enough elements that slicing with `steps` yields `shape` after the inverse permute
    base_shape = [0] * nd
    for out_axis, base_axis in enumerate(perm):
        n = shape[out_axis]
        base_shape[base_axis] = n * abs(steps[out_axis]) + draw(st.integers(0, 1))
    base = array(draw, tuple(base_shape), dtype, positive)
    key = []
    for base_axis in range(nd):
        out_axis = perm.index(base_axis)
        n, step = shape[out_axis], steps[out_axis]
        if step > 0:
            key.append(slice(0, n * step, step))
        else:
            key.append(slice(n - 1 if n else 0, None if n else 0, step) if n else slice(0, 0))
    np_view = base[tuple(key)].transpose(perm) if nd else base
    return base, tuple(key), tuple(perm), np_view


def to_clnet(device, base, key, perm):
    t = clnet.tensor(base, dtype=base.dtype, device=device)
    if base.ndim:
        t = t[key].permute(*perm)
    return t


def check(actual, expected, dtype, what=""):
    actual = actual.numpy() if isinstance(actual, clnet.Tensor) else np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        tol = 2e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(actual.astype(np.float64), expected.astype(np.float64), rtol=tol,
                                   atol=tol, err_msg=what)
    else:
        np.testing.assert_array_equal(actual, expected.astype(actual.dtype), err_msg=what)


# --- elementwise ----------------------------------------------------------------------------------------------

# name -> (clnet function, numpy float64/int64 oracle, dtypes kinds it applies to, positive operands?)
BINARY = {
    "add": (lambda a, b: a + b, np.add, "fib"),
    "sub": (lambda a, b: a - b, np.subtract, "fi"),
    "mul": (lambda a, b: a * b, np.multiply, "fi"),
    "div": (lambda a, b: a / b, np.true_divide, "f"),
    "floordiv": (lambda a, b: a // b, np.floor_divide, "fi"),
    "mod": (lambda a, b: a % b, np.remainder, "fi"),
    "pow": (lambda a, b: a ** b, np.power, "f"),
    "maximum": (clnet.maximum, np.maximum, "fi"),
    "minimum": (clnet.minimum, np.minimum, "fi"),
    "lt": (lambda a, b: a < b, np.less, "fi"),
    "eq": (lambda a, b: a == b, np.equal, "fib"),
    "and": (lambda a, b: a & b, np.logical_and, "b"),
    "xor": (lambda a, b: a ^ b, np.logical_xor, "b"),
}


def _oracle_binary(fn, a, b, dtype):
    wide = np.float64 if np.dtype(dtype).kind == "f" else (np.int64 if np.dtype(dtype).kind in "iu" else np.bool_)
    return fn(a.astype(wide), b.astype(wide) if isinstance(b, np.ndarray) else b)


# One property per dtype kind, the op drawn per example: every op gets a few examples, and the number of
# distinct kernels (each costs a build on a cold cache) stays near the number of examples.
KIND_SHARE = {"f": 1.2, "i": 0.8, "b": 0.4}


@pytest.mark.parametrize("kind", sorted(KIND_SHARE))
def test_binary_ops_broadcast_views(device, kind):
    names = sorted(n for n, (_, _, kinds) in BINARY.items() if kind in kinds)

    @budget(device, KIND_SHARE[kind])
    @given(st.data())
    def prop(data):
        name = data.draw(st.sampled_from(names))
        fn, oracle, _ = BINARY[name]
        dtype = data.draw(st.sampled_from([d for d in dtypes_for(device, bools=True) if np.dtype(d).kind == kind]))
        sa, sb = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=4)
                           .map(lambda r: r.input_shapes))
        positive = name == "pow"
        a_base, a_key, a_perm, a = data.draw(view_of(sa, dtype, positive))
        b_base, b_key, b_perm, b = data.draw(view_of(sb, dtype))
        if name == "pow":
            b = np.clip(b, -3, 3)
            b_base = np.clip(b_base, -3, 3)
        ta, tb = to_clnet(device, a_base, a_key, a_perm), to_clnet(device, b_base, b_key, b_perm)
        check(fn(ta, tb), _oracle_binary(oracle, a, b, dtype), dtype if name not in ("lt", "eq") else np.bool_,
              f"{name} {np.dtype(dtype).name} {sa} {sb}")
    prop()


UNARY = {
    "neg": (lambda x: -x, np.negative, "fi", False),
    "abs": (abs, np.abs, "fi", False),
    "exp": (clnet.exp, np.exp, "f", False),
    "log": (clnet.log, np.log, "f", True),
    "sqrt": (lambda x: x.sqrt(), np.sqrt, "f", True),
    "tanh": (lambda x: x.tanh(), np.tanh, "f", False),
    "sigmoid": (lambda x: x.sigmoid(), lambda x: 1 / (1 + np.exp(-x)), "f", False),
    "relu": (clnet.relu, lambda x: np.maximum(x, 0), "fi", False),
    "not": (lambda x: ~x, np.logical_not, "b", False),
}


def test_unary_ops_views(device):
    @budget(device, 0.8)
    @given(st.data())
    def prop(data):
        name = data.draw(st.sampled_from(sorted(UNARY)))
        fn, oracle, kinds, positive = UNARY[name]
        dtype = data.draw(st.sampled_from([d for d in dtypes_for(device, bools=True) if np.dtype(d).kind in kinds]))
        shape = data.draw(shapes())
        base, key, perm, x = data.draw(view_of(shape, dtype, positive))
        wide = np.float64 if np.dtype(dtype).kind == "f" else x.dtype
        check(fn(to_clnet(device, base, key, perm)), oracle(x.astype(wide)), dtype, f"{name} {shape}")
    prop()


def test_scalar_operands(device):
    """tensor (op) Python number and number (op) tensor: a float tensor keeps its dtype, an int tensor with
    an int keeps its dtype, an int tensor with a float becomes floating point (PyTorch's rules)."""

    @budget(device, 0.6)
    @given(st.data())
    def prop(data):
        kind = data.draw(st.sampled_from(["float", "int"]))
        dtype = data.draw(st.sampled_from([d for d in dtypes_for(device) if np.dtype(d).kind == kind[0]]))
        shape = data.draw(shapes(max_dims=3))
        base, key, perm, x = data.draw(view_of(shape, dtype))
        s = data.draw(values(np.float32 if kind == "float" else np.int64))
        s = float(s) if kind == "float" else int(s)
        t = to_clnet(device, base, key, perm)
        wide = x.astype(np.float64 if kind == "float" else np.int64)
        for got, want in ((t + s, wide + s), (s - t, s - wide), (t < s, wide < s)):
            check(got, want, got.dtype, f"{shape} with scalar {s}")
            if got.dtype != np.bool_:
                assert got.dtype == np.dtype(dtype), f"{np.dtype(dtype).name} with {type(s).__name__} gave {got.dtype}"
        if kind == "int":
            f = t * 0.5
            assert f.dtype.kind == "f", f"int tensor times 0.5 gave {f.dtype}"
            check(f, wide * 0.5, f.dtype, "times 0.5")
    prop()


def test_where_broadcast(device):
    @budget(device, 0.4)
    @given(st.data())
    def prop(data):
        dtype = data.draw(st.sampled_from(dtypes_for(device)))
        sc, sa, sb = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=3, max_dims=3, max_side=4)
                               .map(lambda r: r.input_shapes))
        cond = data.draw(hnp.arrays(np.bool_, sc))
        a, b = array(data.draw, sa, dtype), array(data.draw, sb, dtype)
        got = clnet.where(clnet.tensor(cond, device=device), clnet.tensor(a, device=device),
                          clnet.tensor(b, device=device))
        check(got, np.where(cond, a, b), dtype, f"where {sc} {sa} {sb}")
    prop()


# --- reductions -------------------------------------------------------------------------------------------------
REDUCTIONS = {
    "sum": (lambda t, d, k: t.sum(d, keepdim=k), lambda x, d, k: x.sum(d, keepdims=k), "fib"),
    "mean": (lambda t, d, k: t.mean(d, keepdim=k), lambda x, d, k: x.mean(d, keepdims=k), "f"),
    "prod": (lambda t, d, k: t.prod(d, keepdim=k), lambda x, d, k: x.prod(d, keepdims=k), "fi"),
    "amax": (lambda t, d, k: t.amax(d, keepdim=k), lambda x, d, k: x.max(d, keepdims=k), "fi"),
    "amin": (lambda t, d, k: t.amin(d, keepdim=k), lambda x, d, k: x.min(d, keepdims=k), "fi"),
    "argmax": (lambda t, d, k: t.argmax(d, keepdim=k), lambda x, d, k: x.argmax(d, keepdims=k), "fi"),
    "argmin": (lambda t, d, k: t.argmin(d, keepdim=k), lambda x, d, k: x.argmin(d, keepdims=k), "fi"),
    "any": (lambda t, d, k: clnet.any(t, d, keepdim=k), lambda x, d, k: x.any(d, keepdims=k), "b"),
    "all": (lambda t, d, k: clnet.all(t, d, keepdim=k), lambda x, d, k: x.all(d, keepdims=k), "b"),
}


@st.composite
def axes_for(draw, ndim, single=False):
    """None, one axis (maybe negative) or, unless single, a tuple of distinct axes."""
    if ndim == 0 or draw(st.booleans()) and draw(st.booleans()):
        return None
    if single or draw(st.booleans()):
        a = draw(st.integers(0, ndim - 1))
        return a - ndim if draw(st.booleans()) else a
    return tuple(draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True)))


def test_reductions_axes_views(device):
    @budget(device, 2.0)
    @given(st.data())
    def prop(data):
        name = data.draw(st.sampled_from(sorted(REDUCTIONS)))
        fn, oracle, kinds = REDUCTIONS[name]
        is_arg = name.startswith("arg")
        dtype = data.draw(st.sampled_from([d for d in dtypes_for(device, bools=True) if np.dtype(d).kind in kinds]))
        shape = data.draw(shapes(max_side=6))
        base, key, perm, x = data.draw(view_of(shape, dtype))
        if name == "prod" and np.dtype(dtype).kind in "iu":  # keep integer products in range
            base, x = np.clip(base, -2, 2), np.clip(x, -2, 2)
        dim = data.draw(axes_for(len(shape), single=is_arg))
        keep = data.draw(st.booleans())
        t = to_clnet(device, base, key, perm)
        kind = np.dtype(dtype).kind
        wide = x.astype({"f": np.float64, "b": np.bool_}.get(kind, np.int64))
        axes = {a % len(shape) for a in np.atleast_1d(dim)} if dim is not None else set(range(len(shape)))
        reduced = [shape[a] for a in axes]
        kept = [shape[a] for a in range(len(shape)) if a not in axes]
        if name in ("amax", "amin", "argmax", "argmin") and 0 in reduced:
            # numpy and PyTorch refuse a max over nothing; clnet raises too when the result has elements, and
            # returns an empty result when it has none (numpy/PyTorch raise there as well: reported)
            with pytest.raises(ValueError) if 0 not in kept else _maybe_raises():
                fn(t, dim, keep)
            return
        with np.errstate(invalid="ignore", divide="ignore"):
            want = oracle(wide, dim, keep)
        got = fn(t, dim, keep)
        if np.dtype(dtype).kind == "f" and name in ("sum", "mean"):
            scale = np.abs(wide).sum(dim, keepdims=keep) + 1
            got_v = got.numpy().astype(np.float64)
            assert got_v.shape == np.shape(want)
            ok = np.isclose(got_v, want, rtol=0, atol=0) | (np.abs(got_v - want) <= 2e-6 * scale) \
                | (np.isnan(got_v) & np.isnan(want))
            assert ok.all(), f"{name} {shape} dim={dim}: {got_v} != {want}"
        else:
            check(got, want, got.dtype, f"{name} {np.dtype(dtype).name} {shape} dim={dim} keepdim={keep}")
    prop()


class _maybe_raises:
    """Either raises ValueError or returns (the result of an empty reduction over nothing)."""

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        return kind is None or issubclass(kind, ValueError)


# --- matmul -------------------------------------------------------------------------------------------------------
@st.composite
def matmul_operands(draw):
    """Shapes for numpy's matmul: 1-D operands, 2-D, batched with broadcast batch dims; sizes 0-6."""
    m, k, n = (draw(st.integers(0, 6)) for _ in range(3))
    ba, bb = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=2, max_side=3)
                  .map(lambda r: r.input_shapes))
    a_vec, b_vec = draw(st.booleans()) and draw(st.booleans()), draw(st.booleans()) and draw(st.booleans())
    sa = (k,) if a_vec else ba + (m, k)
    sb = (k,) if b_vec else bb + (k, n)
    return sa, sb, draw(st.booleans()), draw(st.booleans())


def test_matmul_shapes_transposes(device):
    @budget(device, 1.0)
    @given(st.data())
    def prop(data):
        dtype = data.draw(st.sampled_from(dtypes_for(device, ints=False)))
        sa, sb, ta, tb = data.draw(matmul_operands())
        # a transposed operand is stored transposed and viewed back (strides swapped, no copy)
        def make(shape, trans):
            if len(shape) >= 2 and trans:
                stored = array(data.draw, shape[:-2] + (shape[-1], shape[-2]), dtype)
                return np.swapaxes(stored, -1, -2), clnet.tensor(stored, device=device).transpose(-1, -2)
            a = array(data.draw, shape, dtype)
            return a, clnet.tensor(a, device=device)
        a, at = make(sa, ta)
        b, bt = make(sb, tb)
        want = np.matmul(a.astype(np.float64), b.astype(np.float64))
        got = at @ bt
        k = sa[-1]
        tol = (1e-5 if dtype == np.float32 else 1e-12) * (k + 1)
        assert got.shape == want.shape, f"{sa} @ {sb}: {got.shape} != {want.shape}"
        np.testing.assert_allclose(got.numpy().astype(np.float64), want, rtol=tol, atol=tol * 16,
                                   err_msg=f"{sa}{'.T' if ta else ''} @ {sb}{'.T' if tb else ''}")
    prop()


# --- indexing ----------------------------------------------------------------------------------------------------
@st.composite
def basic_key(draw, shape):
    """A tuple of ints (negative too), slices (steps of either sign, bounds past the ends), None and at most
    one Ellipsis, valid for `shape`."""
    key, dim = [], 0
    used_ellipsis = False
    while dim < len(shape) and draw(st.integers(0, 4)):
        kind = draw(st.sampled_from(["int", "slice", "slice", "none", "ellipsis"]))
        if kind == "int" and shape[dim]:
            key.append(draw(st.integers(-shape[dim], shape[dim] - 1)))
            dim += 1
        elif kind == "none":
            key.append(None)
        elif kind == "ellipsis" and not used_ellipsis:
            key.append(Ellipsis)
            used_ellipsis = True
            dim = len(shape) - draw(st.integers(0, len(shape) - dim))
        else:
            lim = shape[dim] + 2
            start = draw(st.one_of(st.none(), st.integers(-lim, lim)))
            stop = draw(st.one_of(st.none(), st.integers(-lim, lim)))
            step = draw(st.sampled_from([None, 1, 2, 3, -1, -2]))
            key.append(slice(start, stop, step))
            dim += 1
    return tuple(key)


def test_basic_indexing_get_set(device):
    @budget(device, 1.0)
    @given(st.data())
    def prop(data):
        dtype = data.draw(st.sampled_from(dtypes_for(device, bools=True)))
        shape = data.draw(shapes(min_dims=1, max_side=5))
        x = array(data.draw, shape, dtype)
        key = data.draw(basic_key(shape))
        t = clnet.tensor(x, device=device)
        check(t[key], x[key], dtype, f"{shape}[{key}]")
        value = data.draw(values(dtype))
        t[key] = value
        y = x.copy()
        y[key] = value
        check(t, y, dtype, f"{shape}[{key}] = {value}")
    prop()


@st.composite
def advanced_key(draw, shape):
    """Slices plus integer index arrays (negative entries too, broadcasting shapes) on some dims, or one
    bool mask over leading dims. Ints are left out: mixed with arrays they follow PyTorch (applied first)
    where numpy moves the array dims to the front, and numpy is the oracle here."""
    nd = len(shape)
    if draw(st.booleans()) and all(shape):
        k = draw(st.integers(1, nd))
        lead = draw(st.integers(0, nd - k))
        mask = draw(hnp.arrays(np.bool_, shape[lead:lead + k]))
        return (slice(None),) * lead + (mask,), True
    n_arrays = draw(st.integers(1, min(2, nd)))
    dims = sorted(draw(st.lists(st.integers(0, nd - 1), min_size=n_arrays, max_size=n_arrays, unique=True)))
    ishape = draw(hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=3))
    key = []
    for d in range(nd):
        if d in dims:
            if shape[d] == 0:
                key.append(np.zeros((0,), np.int64))
            else:
                key.append(draw(hnp.arrays(np.int64, ishape, elements=st.integers(-shape[d], shape[d] - 1))))
        else:
            key.append(draw(st.sampled_from([slice(None), slice(None, None, -1), slice(1, None)])))
    return tuple(key), False


def test_advanced_indexing_get_set(device):
    @budget(device, 0.8)
    @given(st.data())
    def prop(data):
        dtype = data.draw(st.sampled_from(dtypes_for(device, bools=True)))
        shape = data.draw(shapes(min_dims=1, max_dims=3, max_side=5))
        x = array(data.draw, shape, dtype)
        key, is_mask = data.draw(advanced_key(shape))
        try:
            want = x[key]
        except IndexError:
            assume(False)  # arrays of different shapes that do not broadcast: not this property
        t = clnet.tensor(x, device=device)
        as_tensor = data.draw(st.booleans())
        ckey = tuple(clnet.tensor(k, device=device) if as_tensor and isinstance(k, np.ndarray) else k for k in key)
        check(t[ckey], want, dtype, f"{shape}[{key}]")
        value = data.draw(values(dtype))
        t[ckey] = value
        y = x.copy()
        y[key] = value
        check(t, y, dtype, f"{shape}[{key}] = {value}")
    prop()

"""Reductions against numpy float64 over shapes, axes, layouts and dtypes; their gradients; the plans."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import clnet
from clnet.backend import programs
from clnet.ops import reduce as R
from clnet.ops.broadcast import sum_to

from conftest import assert_close, gradcheck, is_slow_device, small

AXES_3D = [None, 0, 1, 2, (0, 1), (0, 2), (1, 2), (0, 1, 2), -1, (-1, 0)]


def _np_axes(dim):
    return dim if dim is None or isinstance(dim, int) else tuple(dim)


def _ref(op, a, dim, keepdim):
    a64 = a.astype(np.float64)
    ax = _np_axes(dim)
    fn = {"sum": np.sum, "mean": np.mean, "amax": np.max, "amin": np.min, "prod": np.prod}[op]
    return fn(a64, axis=ax, keepdims=keepdim)


def _run(op, t, dim, keepdim):
    return getattr(clnet.ops.reduce, op)(t, dim, keepdim)


# --- values over shapes and axes -------------------------------------------------------------------
@pytest.mark.parametrize("op", ["sum", "mean", "amax", "amin"])
def test_every_axis_set_of_3d(device, rng, op):
    shapes = small(device, [(3, 5, 7), (2, 67, 33), (1, 4, 1), (65, 1, 129)], [(3, 5, 7), (2, 9, 1)])
    for shape in shapes:
        a = rng.standard_normal(shape).astype(np.float32)
        t = clnet.tensor(a, device=device)
        for dim, keepdim in itertools.product(AXES_3D, (False, True)):
            assert_close(_run(op, t, dim, keepdim), _ref(op, a, dim, keepdim), rtol=1e-5, atol=1e-5,
                         what=f"{op} {shape} dim={dim} keepdim={keepdim}")


def test_prod(device, rng):
    a = rng.uniform(0.5, 1.5, size=(4, 37, 5)).astype(np.float32)
    t = clnet.tensor(a, device=device)
    for dim in (None, 0, 1, 2, (0, 2)):
        assert_close(clnet.ops.reduce.prod(t, dim), _ref("prod", a, dim, False), rtol=1e-5, what=f"dim={dim}")


@pytest.mark.parametrize("n", [1, 2, 5, 15, 16, 17, 63, 64, 65, 255, 257, 1000, 4097, 65537, 1 << 20 | 7])
def test_1d_lengths_not_multiples_of_the_group(device, rng, n):
    if is_slow_device(device) and n > 5000:
        pytest.skip("long 1-D reductions are for real devices")
    a = rng.standard_normal(n).astype(np.float32)
    t = clnet.tensor(a, device=device)
    assert_close(t.sum(), a.astype(np.float64).sum(), rtol=1e-5, atol=1e-4, what="sum")
    assert_close(t.amax(), a.max(), rtol=0, atol=0, what="max")
    assert_close(t.amin(), a.min(), rtol=0, atol=0, what="min")
    assert t.argmax().item() == a.argmax() and t.argmin().item() == a.argmin()


# (33, 1000): on CPUs the last work-item of a column sum gets a partial block (896..999 with 16 x 8 columns
# per item): whole vectors, then single columns
@pytest.mark.parametrize("rows,cols", [(1, 1), (1, 100), (100, 1), (37, 10), (1000, 10), (513, 130),
                                       (4096, 17), (64, 4097), (3, 100000), (33, 1000)])
def test_rows_and_columns_of_a_matrix(device, rng, rows, cols):
    if is_slow_device(device) and rows * cols > 20000:
        pytest.skip("big matrices are for real devices")
    a = rng.standard_normal((rows, cols)).astype(np.float32)
    t = clnet.tensor(a, device=device)
    for dim in (0, 1):
        assert_close(t.sum(dim), a.astype(np.float64).sum(dim), rtol=1e-5, atol=1e-4, what=f"sum {dim}")
        assert_close(t.amax(dim), a.max(dim), rtol=0, atol=0, what=f"max {dim}")
        np.testing.assert_array_equal(t.argmax(dim).numpy(), a.argmax(dim))
        np.testing.assert_array_equal(t.argmin(dim).numpy(), a.argmin(dim))


def test_non_contiguous_inputs_are_read_in_place(device, rng):
    a = rng.standard_normal((6, 40, 24)).astype(np.float32)
    t = clnet.tensor(a, device=device)
    views = {
        "transposed": (t.permute(2, 0, 1), a.transpose(2, 0, 1)),
        "T of 2-D": (t[0].T, a[0].T),
        "sliced": (t[1:5, ::3, 2:20:2], a[1:5, ::3, 2:20:2]),
        "expanded": (clnet.tensor(a[:, :1, :], device=device).expand(6, 40, 24),
                     np.broadcast_to(a[:, :1, :], (6, 40, 24))),
    }
    for name, (tv, av) in views.items():
        for dim in [None] + list(range(av.ndim)) + [(0, av.ndim - 1)]:
            assert_close(tv.sum(dim), av.astype(np.float64).sum(_np_axes(dim)), rtol=1e-5, atol=1e-5,
                         what=f"sum {name} dim={dim}")
            assert_close(tv.amin(dim), av.min(_np_axes(dim)), rtol=0, atol=0, what=f"min {name} dim={dim}")
        for dim in range(av.ndim):
            np.testing.assert_array_equal(tv.argmax(dim).numpy(), av.argmax(dim), err_msg=f"{name} {dim}")
        assert tv.argmax().item() == av.argmax(), name


def test_sum_of_ten_million_float32_is_accurate(device):
    if is_slow_device(device):
        pytest.skip("10**7 elements are for real devices")
    rng = np.random.default_rng(5)
    a = rng.uniform(0.09, 0.11, 10**7).astype(np.float32)  # small positive terms: a float32 loop drifts 5%
    exact = a.astype(np.float64).sum()
    naive = np.cumsum(a, dtype=np.float32)[-1]  # what a sequential float32 loop gives
    got = clnet.tensor(a, device=device).sum().item()
    assert abs(got - exact) / exact < 1e-5, (got, exact)
    assert abs(naive - exact) / exact > 1e-3  # the test would catch a naive kernel
    assert_close(clnet.tensor(a, device=device).mean(), a.astype(np.float64).mean(), rtol=1e-5)


def test_results_are_deterministic(device, rng):
    a = rng.standard_normal(small(device, 3_000_001, 5000)).astype(np.float32)
    t = clnet.tensor(a, device=device)
    first = t.sum().numpy()
    for _ in range(3):
        assert t.sum().numpy().tobytes() == first.tobytes()


# --- plans -----------------------------------------------------------------------------------------
def test_plans_split_long_rows_and_coalesce_columns(device):
    long_1d = R.plan((1 << 22,), (1,), (0,), device)
    assert len(long_1d) >= 2 and long_1d[0].nchunks > 1 and long_1d[-1].nchunks == 1
    cols = R.plan((4096, 512), (512, 1), (0,), device)
    assert cols[0].layout == "outer" and cols[0].columns == (512, 1)
    rows = R.plan((512, 4096), (4096, 1), (1,), device)
    assert rows[0].layout == "inner" and rows[0].n == 4096
    transposed = R.plan((512, 4096), (1, 512), (0,), device)  # x.T.sum(0): contiguous rows of x
    assert transposed[0].layout == "inner" and transposed[0].s_r == 1
    # small inputs (a 256 x 10 bias gradient) take one pass: no second launch (nor, on PoCL, its compile)
    assert [len(R.plan(s, (s[1], 1), (d,), device)) for s in [(256, 10), (10, 256)] for d in (0, 1)] == [1] * 4
    if R._tuning(device).cv > 1:  # CPUs: column sums of any width share one program and one local size
        firsts = [R.plan(s, (s[1], 1), (0,), device)[0] for s in [(256, 10), (256, 512), (3, 7), (4096, 17)]]
        assert len({(p.layout, p.vec, p.cv, p.local_size) for p in firsts}) == 1, firsts
    prof = device.profile
    for p in long_1d + cols + rows:
        assert np.prod(p.local_size) <= prof.reduce_wg <= device.max_work_group_size
        assert all(g % l == 0 for g, l in zip(p.global_size, p.local_size))


def test_multi_pass_plans_compute_the_right_values(device, rng):
    n = small(device, 3 << 20, 3000)
    a = rng.standard_normal((2, n)).astype(np.float32)
    t = clnet.tensor(a, device=device)
    for dim in (1, None):
        passes = R.plan(t.shape, t.strides, (1,) if dim == 1 else (0, 1), device)
        assert len(passes) >= 2
        assert_close(t.sum(dim), a.astype(np.float64).sum(dim), rtol=1e-5, atol=1e-3, what=f"sum {dim}")
        np.testing.assert_array_equal(t.argmax(dim).numpy(), a.argmax(dim))
    col = rng.standard_normal((small(device, 200000, 2000), 3)).astype(np.float32)
    tc = clnet.tensor(col, device=device)
    assert len(R.plan(tc.shape, tc.strides, (0,), device)) >= 2
    assert_close(tc.sum(0), col.astype(np.float64).sum(0), rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(tc.argmin(0).numpy(), col.argmin(0))


def test_new_shapes_do_not_recompile(device, rng):
    clnet.tensor(rng.standard_normal((30, 50)).astype(np.float32), device=device).sum(1)
    before = programs.built_count()
    for shape in [(31, 51), (7, 77), (100, 40)]:
        clnet.tensor(rng.standard_normal(shape).astype(np.float32), device=device).sum(1)
    assert programs.built_count() == before


# --- semantics: NaN, ties, empty, dtypes ----------------------------------------------------------
def test_nan_propagates_and_argmax_takes_the_first(device):
    a = np.array([[1.0, np.nan, 3.0, np.nan], [2.0, 5.0, 5.0, -1.0], [-np.inf, -np.inf, -np.inf, -np.inf]],
                 dtype=np.float32)
    t = clnet.tensor(a, device=device)
    np.testing.assert_array_equal(t.amax(1).numpy(), np.max(a, 1))
    np.testing.assert_array_equal(t.amin(1).numpy(), np.min(a, 1))
    np.testing.assert_array_equal(t.argmax(1).numpy(), np.argmax(a, 1))
    np.testing.assert_array_equal(t.argmin(1).numpy(), np.argmin(a, 1))
    assert np.isnan(t.amax().item()) and t.argmax().item() == 1
    values, idx = t.max(1)
    np.testing.assert_array_equal(idx.numpy(), [1, 1, 0])


def test_ties_give_the_first_index(device, rng):
    a = rng.integers(0, 3, size=(40, 300)).astype(np.float32)
    t = clnet.tensor(a, device=device)
    for dim in (0, 1):
        np.testing.assert_array_equal(t.argmax(dim).numpy(), a.argmax(dim))
        np.testing.assert_array_equal(t.argmin(dim).numpy(), a.argmin(dim))
    assert t.argmax().item() == a.argmax() and t.argmin().item() == a.argmin()


def test_empty_reductions(device):
    e = clnet.zeros(3, 0, 4, device=device)
    assert_close(e.sum(1), np.zeros((3, 4)))
    assert_close(e.sum(), 0.0)
    assert e.sum(0).shape == (0, 4) and e.amax(0).shape == (0, 4)
    assert np.isnan(e.mean().item())
    assert_close(clnet.ops.reduce.prod(e, 1), np.ones((3, 4)))
    with pytest.raises(ValueError, match="empty"):
        e.amax()
    with pytest.raises(ValueError, match="empty"):
        e.argmax(1)
    with pytest.raises(ValueError, match="empty"):
        e.max(1)
    assert not clnet.ops.reduce.any(e).item() and clnet.ops.reduce.all(e).item()


def test_size_one_and_zero_d(device, rng):
    a = rng.standard_normal((1, 1, 1)).astype(np.float32)
    t = clnet.tensor(a, device=device)
    assert_close(t.sum((0, 2)), a.sum((0, 2)))
    s = clnet.tensor(2.5, device=device)
    assert s.sum().item() == 2.5 and s.amax().item() == 2.5 and s.argmax().item() == 0
    assert s.sum(0).item() == 2.5 and s.mean(-1).item() == 2.5


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.bool_])
def test_integer_and_bool_inputs(device, rng, dtype):
    a = rng.integers(0, 2 if dtype == np.bool_ else 100, size=(9, 131)).astype(dtype)
    t = clnet.tensor(a, device=device)
    for dim in (None, 0, 1):
        got = t.sum(dim)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got.numpy(), a.sum(dim, dtype=np.int64))
        np.testing.assert_array_equal(t.amax(dim).numpy(), a.max(dim))
        np.testing.assert_array_equal(t.amin(dim).numpy(), a.min(dim))
        np.testing.assert_array_equal(np.asarray(t.argmax(dim).numpy()), a.argmax(dim))
        assert t.amax(dim).dtype == a.dtype


def test_int64_sum_is_exact(device):
    a = np.full(1000, 2**40 + 3, dtype=np.int64)
    assert clnet.tensor(a, device=device).sum().item() == int(a.sum())


def test_float64_and_dtype_argument(device, rng):
    if not device.fp64:
        pytest.skip("no fp64")
    a = rng.standard_normal((50, 70))
    t = clnet.tensor(a, device=device)
    assert t.dtype == np.float64
    assert_close(t.sum(1), a.sum(1), rtol=1e-12, atol=1e-12)
    assert_close(t.mean(0), a.mean(0), rtol=1e-12, atol=1e-12)
    t32 = clnet.tensor(a.astype(np.float32), device=device)
    s64 = t32.sum(0, dtype=clnet.float64)
    assert s64.dtype == np.float64
    assert_close(s64, a.astype(np.float32).astype(np.float64).sum(0), rtol=1e-12, atol=1e-12)


def test_float16_inputs(device, rng):
    if not device.profile.fp16:
        pytest.skip("no fp16")
    a = rng.standard_normal((20, 300)).astype(np.float16)
    t = clnet.tensor(a, device=device)
    assert t.sum(1).dtype == np.float16
    assert_close(t.sum(1), a.astype(np.float64).sum(1), rtol=2e-3, atol=2e-2)
    np.testing.assert_array_equal(t.amax(0).numpy(), a.max(0))


def test_var_std_logsumexp_any_all(device, rng):
    a = rng.standard_normal((5, 130, 3)).astype(np.float32)
    t = clnet.tensor(a, device=device)
    a64 = a.astype(np.float64)
    for dim in (None, 1, (0, 2)):
        ax = _np_axes(dim)
        assert_close(R.var(t, dim), a64.var(ax, ddof=1), rtol=1e-5, what=f"var {dim}")
        assert_close(R.var(t, dim, unbiased=False), a64.var(ax), rtol=1e-5, what=f"var0 {dim}")
        assert_close(R.std(t, dim, keepdim=True), a64.std(ax, ddof=1, keepdims=True), rtol=1e-5)
        m = a64.max(axis=ax, keepdims=True)
        lse = np.log(np.exp(a64 - m).sum(axis=ax, keepdims=True)) + m
        assert_close(R.logsumexp(t, dim, keepdim=True), lse, rtol=1e-5, what=f"lse {dim}")
    big = clnet.tensor(np.array([1000.0, 1000.0, -np.inf], dtype=np.float32), device=device)
    assert_close(R.logsumexp(big, 0), 1000.0 + np.log(2.0), rtol=1e-6)
    b = a > 1.5
    tb = clnet.tensor(b, device=device)
    for dim in (None, 0, 1, 2):
        np.testing.assert_array_equal(R.any(tb, dim).numpy(), b.any(dim))
        np.testing.assert_array_equal(R.all(tb, dim).numpy(), b.all(dim))
        np.testing.assert_array_equal(R.any(t, dim).numpy(), a.any(dim))


def test_tensor_methods_and_top_level_names(device, rng):
    a = rng.uniform(0.5, 1.5, size=(4, 6)).astype(np.float32)
    t = clnet.tensor(a, device=device)
    a64 = a.astype(np.float64)
    assert_close(t.prod(1), a64.prod(1), rtol=1e-5)
    assert_close(t.var(0, keepdim=True), a64.var(0, ddof=1, keepdims=True), rtol=1e-5)
    assert_close(t.std(axis=1, unbiased=False), a64.std(1), rtol=1e-5)
    assert_close(t.logsumexp(1), np.log(np.exp(a64).sum(1)), rtol=1e-5)
    assert (t > 1).any().item() == (a > 1).any() and (t > 1).all(1).numpy().tolist() == (a > 1).all(1).tolist()
    assert_close(clnet.prod(t), a64.prod(), rtol=1e-5)
    assert_close(clnet.var(t), a64.var(ddof=1), rtol=1e-5)
    assert clnet.any(t > 1.4).item() == (a > 1.4).any() and not clnet.all(t > 1.4).item()


def test_axis_and_keepdims_spellings(device, rng):
    a = rng.standard_normal((4, 6)).astype(np.float32)
    t = clnet.tensor(a, device=device)
    assert_close(R.sum(t, axis=1, keepdims=True), a.sum(1, keepdims=True), rtol=1e-5)
    assert_close(clnet.reduce_mean(t, axis=0), a.mean(0), rtol=1e-5)
    with pytest.raises(TypeError):
        R.sum(t, 0, axis=1)


def test_bad_arguments_raise_before_any_kernel(device):
    t = clnet.zeros(2, 3, device=device)
    with pytest.raises(IndexError, match="out of range"):
        t.sum(2)
    with pytest.raises(ValueError, match="twice"):
        t.sum((1, -1))
    with pytest.raises(TypeError):
        R.sum(np.zeros(3))
    with pytest.raises(TypeError, match="floating"):
        clnet.zeros(3, dtype=clnet.int32, device=device).mean()
    with pytest.raises(TypeError):
        t.argmax((0, 1))


# --- gradients -------------------------------------------------------------------------------------
@pytest.mark.parametrize("dim,keepdim", [(None, False), (0, False), (1, True), ((0, 2), False), (-1, True)])
def test_gradients_of_sum_mean_amax(device, rng, dim, keepdim):
    a = rng.standard_normal((3, 4, 5))
    gradcheck(lambda x: R.sum(x, dim, keepdim), a, device=device)
    gradcheck(lambda x: R.mean(x, dim, keepdim), a, device=device)
    gradcheck(lambda x: R.amax(x, dim, keepdim), a, device=device)
    gradcheck(lambda x: R.amin(x, dim, keepdim), a, device=device)


def test_gradients_of_prod_var_std_logsumexp_and_max_dim(device, rng):
    a = rng.uniform(0.5, 2.0, size=(3, 6))
    gradcheck(lambda x: R.prod(x, 1), a, device=device)
    gradcheck(lambda x: R.var(x, 1), a, device=device)
    gradcheck(lambda x: R.std(x, 0, keepdim=True), a, device=device)
    gradcheck(lambda x: R.logsumexp(x, 1), a, device=device)
    gradcheck(lambda x: R.max(x, 1)[0], a, device=device)
    gradcheck(lambda x: R.min(x, 0, keepdim=True)[0], a, device=device)
    gradcheck(lambda x: R.sum(x.T, 0), a, device=device)


def test_tie_gradients(device):
    x = clnet.tensor([[1.0, 3.0, 3.0], [2.0, 0.0, 2.0]], device=device, requires_grad=True)
    R.amax(x, 1).sum().backward()  # split evenly, as PyTorch's amax
    assert_close(x.grad, [[0, 0.5, 0.5], [0.5, 0, 0.5]])
    x.grad = None
    R.max(x, 1)[0].sum().backward()  # to the returned (first) index, as PyTorch's max(dim)
    assert_close(x.grad, [[0, 1, 0], [1, 0, 0]])
    x.grad = None
    x.max().backward()
    assert_close(x.grad, [[0, 0.5, 0.5], [0, 0, 0]])


def test_against_torch(device, rng):
    torch = pytest.importorskip("torch")
    a = rng.standard_normal((4, 7, 3)).astype(np.float32)
    a[1, 2, 0] = a[1, 3, 0]  # a tie
    tt = torch.tensor(a, requires_grad=True)
    ct = clnet.tensor(a, device=device, requires_grad=True)
    cases = [lambda m, x: m.sum(x, 1), lambda m, x: m.mean(x, (0, 2)), lambda m, x: m.amax(x, 1),
             lambda m, x: m.logsumexp(x, 2), lambda m, x: m.max(x, 1)[0], lambda m, x: m.var(x, 0)]
    for i, f in enumerate(cases):
        tt.grad, ct.grad = None, None
        yt, yc = f(torch, tt), f(R, ct)
        assert_close(yc, yt.detach().numpy(), rtol=1e-5, atol=1e-6, what=f"case {i}")
        w = rng.standard_normal(yt.shape).astype(np.float32)
        (yt * torch.tensor(w)).sum().backward()
        (yc * clnet.tensor(w, device=device)).sum().backward()
        assert_close(ct.grad, tt.grad.numpy(), rtol=1e-5, atol=1e-6, what=f"grad case {i}")


def test_sum_to_reduces_broadcast_gradients(device, rng):
    g = rng.standard_normal((4, 3, 5)).astype(np.float32)
    tg = clnet.tensor(g, device=device)
    assert_close(sum_to(tg, (3, 1)), g.sum(0).sum(1, keepdims=True), rtol=1e-5)
    assert_close(sum_to(tg, (1, 5)), g.sum((0, 1))[None], rtol=1e-5)
    assert_close(sum_to(tg, ()), g.sum(), rtol=1e-5)
    assert sum_to(tg, (4, 3, 5)) is tg

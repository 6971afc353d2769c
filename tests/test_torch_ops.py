"""The PyTorch ops of issue 13 item 1: values against numpy in float64 on random inputs, gradients by finite
differences (float64 devices), and forward + gradients against PyTorch where it is installed.

Ops: the new elementwise rows (tan, erf, atan2, ...), lerp/addcmul/addcdiv/nan_to_num/isclose, cumsum/cumprod,
sort/argsort/topk/kthvalue/unique, tril/triu/diagonal/diag/diag_embed/roll/meshgrid/take_along_dim, scatter,
dot/outer/addmm/baddbmm/tensordot/einsum/norms, normal/bernoulli/multinomial/logspace.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import clnet
import clnet as torch_like  # the PyTorch spellings under test
from conftest import assert_close, gradcheck, small

try:
    import torch
except ImportError:  # pragma: no cover - torch is the reference, optional
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed (reference only)")


def _fdt(device):
    return np.float64 if device.fp64 else np.float32


def _tol(device):
    return dict(rtol=1e-9, atol=1e-10) if device.fp64 else dict(rtol=2e-5, atol=2e-6)


def T(a, device, **kw):
    return clnet.tensor(a, device=device, **kw)


# --- elementwise rows ----------------------------------------------------------------------------------
UNARY = {  # name: (numpy reference, input transform)
    "tan": (np.tan, lambda x: x * 0.6), "asin": (np.arcsin, lambda x: x * 0.45), "acos": (np.arccos, lambda x: x * 0.45),
    "atan": (np.arctan, None), "sinh": (np.sinh, None), "cosh": (np.cosh, None), "asinh": (np.arcsinh, None),
    "acosh": (np.arccosh, lambda x: np.abs(x) + 1.1), "atanh": (np.arctanh, lambda x: x * 0.45),
    "log2": (np.log2, np.abs), "log10": (np.log10, np.abs), "exp2": (np.exp2, None),
    "erf": (np.vectorize(math.erf), None), "erfc": (np.vectorize(math.erfc), None),
    "trunc": (np.trunc, lambda x: x * 3), "frac": (lambda x: x - np.trunc(x), lambda x: x * 3),
}


def _data(rng, *shape, lo=0.2, hi=2.0):
    return rng.uniform(lo, hi, shape) * rng.choice([-1.0, 1.0], shape)


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_rows(device, rng, name):
    ref, domain = UNARY[name]
    x = _data(rng, 4, 7)
    x = domain(x) if domain else x
    y = getattr(clnet, name)(T(x, device, dtype=_fdt(device)))
    assert_close(y, ref(x), **_tol(device), what=name)
    assert_close(getattr(clnet, name)(T(x, device, dtype=np.float32)), ref(x), rtol=3e-5, atol=3e-6, what=name)
    if name not in ("trunc",):
        gradcheck(lambda t: getattr(t, name)(), x, device=device)


@pytest.mark.parametrize("name,ref", [("atan2", np.arctan2), ("hypot", np.hypot), ("fmod", np.fmod)])
def test_binary_rows(device, rng, name, ref):
    a, b = _data(rng, 3, 4) * 3, _data(rng, 4)
    assert_close(getattr(clnet, name)(T(a, device, dtype=_fdt(device)), T(b, device, dtype=_fdt(device))),
                 ref(a, b), **_tol(device), what=name)
    gradcheck(lambda s, t: getattr(clnet, name)(s, t), a, b, device=device)


def test_isfinite_and_integer_fmod(device):
    x = clnet.tensor([1.0, float("inf"), float("nan"), -2.0], device=device)
    assert clnet.isfinite(x).numpy().tolist() == [True, False, False, True]
    assert clnet.fmod(clnet.tensor([7, -7, 5], device=device), 3).numpy().tolist() == [1, -1, 2]


# --- arith ----------------------------------------------------------------------------------------------
def test_lerp_addcmul_addcdiv(device, rng):
    a, b, c = _data(rng, 3, 4), _data(rng, 3, 4), _data(rng, 4)
    dt = _fdt(device)
    ta, tb, tc = (T(v, device, dtype=dt) for v in (a, b, c))
    assert_close(clnet.lerp(ta, tb, 0.3), a + 0.3 * (b - a), **_tol(device))
    assert_close(clnet.lerp(ta, tb, tc), a + c * (b - a), **_tol(device))
    assert_close(clnet.addcmul(ta, tb, tc, value=-2), a - 2 * b * c, **_tol(device))
    assert_close(clnet.addcdiv(ta, tb, tc, value=0.5), a + 0.5 * b / c, **_tol(device))
    gradcheck(lambda x, y, z: clnet.lerp(x, y, z), a, b, c, device=device)
    gradcheck(lambda x, y, z: x.addcmul(y, z, value=1.5), a, b, c, device=device)
    gradcheck(lambda x, y, z: x.addcdiv(y, z, value=1.5), a, b, c, device=device)
    x = T(a, device, dtype=dt)
    with clnet.no_grad():
        x.addcmul_(tb, tc, value=2).addcdiv_(tb, tc)
    assert_close(x, a + 2 * b * c + b / c, rtol=1e-5, atol=1e-6)


def test_nan_to_num_isclose_equal(device):
    dt = _fdt(device)
    x = clnet.tensor([1.0, float("nan"), float("inf"), -float("inf")], dtype=dt, device=device)
    big = np.finfo(dt).max
    assert clnet.nan_to_num(x).numpy().tolist() == [1.0, 0.0, big, -big]
    assert clnet.nan_to_num(x, nan=5.0, posinf=1.0, neginf=-1.0).numpy().tolist() == [1.0, 5.0, 1.0, -1.0]
    a = clnet.tensor([1.0, 2.0, float("nan"), float("inf")], dtype=dt, device=device)
    b = clnet.tensor([1.0 + 1e-9, 2.1, float("nan"), float("inf")], dtype=dt, device=device)
    assert clnet.isclose(a, b).numpy().tolist() == [True, False, False, True]
    assert clnet.isclose(a, b, equal_nan=True).numpy().tolist() == [True, False, True, True]
    assert clnet.allclose(a[:1], b[:1]) and not clnet.allclose(a, b) and clnet.allclose(a, b, rtol=0.1, equal_nan=True)
    assert clnet.equal(a[:2], a[:2].clone()) and not clnet.equal(a[:2], b[:2]) and not clnet.equal(a, a[:2])


def test_div_rounding_modes_and_fmax(device):
    a = clnet.tensor([-7, 7, -8], device=device)
    assert clnet.div(a, 2, rounding_mode="trunc").numpy().tolist() == [-3, 3, -4]
    assert clnet.div(a, 2, rounding_mode="floor").numpy().tolist() == [-4, 3, -4]
    assert clnet.div(a, 2).numpy().tolist() == [-3.5, 3.5, -4.0]
    f = clnet.tensor([-7.5, 7.5], device=device)
    assert f.div(2, rounding_mode="trunc").numpy().tolist() == [-3.0, 3.0]
    with pytest.raises(ValueError, match="rounding_mode"):
        clnet.div(a, 2, rounding_mode="round")
    n = clnet.tensor([float("nan"), 1.0, float("nan")], device=device)
    m = clnet.tensor([2.0, float("nan"), float("nan")], device=device)
    assert np.array_equal(clnet.fmax(n, m).numpy(), [2.0, 1.0, np.nan], equal_nan=True)
    assert np.array_equal(clnet.fmin(n, m).numpy(), [2.0, 1.0, np.nan], equal_nan=True)


# --- scans ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_cumsum_cumprod(device, rng, dim):
    x = _data(rng, 3, 5, 4)
    x[1, 2, 1] = 0.0
    dt = _fdt(device)
    assert_close(clnet.cumsum(T(x, device, dtype=dt), dim), np.cumsum(x, dim), **_tol(device))
    assert_close(clnet.cumprod(T(x, device, dtype=dt), dim), np.cumprod(x, dim), rtol=1e-6 if device.fp64 else 1e-4,
                 atol=1e-8 if device.fp64 else 1e-5)
    gradcheck(lambda t: t.cumsum(dim), x, device=device)
    gradcheck(lambda t: t.cumprod(dim), x, device=device)  # exact where x has a zero


def test_scan_dtypes(device):
    i = clnet.tensor([[1, 2], [3, 4]], dtype=clnet.int32, device=device)
    assert clnet.cumsum(i, 0).dtype == clnet.int64 and clnet.cumsum(i, 1).numpy().tolist() == [[1, 3], [3, 7]]
    assert clnet.cumsum(clnet.tensor([True, True, False], device=device), 0).numpy().tolist() == [1, 2, 2]
    assert clnet.cumsum(i, 1, dtype=clnet.float32).dtype == clnet.float32
    assert clnet.cumprod(i, 1).numpy().tolist() == [[1, 2], [3, 12]]
    with pytest.raises(TypeError, match="dim"):
        clnet.cumsum(i)


# --- sorting ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [7, 300])  # 300 > RANK_SORT_MAX: the merge sort kernel
def test_sort_argsort_against_numpy(device, rng, n):
    x = np.round(_data(rng, 3, n) * 4) / 4  # ties
    x[0, 2] = np.nan
    dt = _fdt(device)
    for desc in (False, True):
        v, i = clnet.sort(T(x, device, dtype=dt), dim=1, descending=desc)
        key = np.where(np.isnan(x), np.inf, x) if not desc else np.where(np.isnan(x), -np.inf, -x)
        order = np.argsort(key, axis=1, kind="stable")
        np.testing.assert_array_equal(i.numpy(), order)
        np.testing.assert_array_equal(v.numpy(), np.take_along_axis(x, order, 1).astype(dt))
        np.testing.assert_array_equal(clnet.argsort(T(x, device, dtype=dt), dim=1, descending=desc).numpy(), order)
    np.testing.assert_array_equal(clnet.msort(T(x[:, :5].T, device, dtype=dt)).numpy(), np.sort(x[:, :5].T, 0))


def test_topk_kthvalue_and_gradients(device, rng):
    x = _data(rng, 4, 9)
    t = T(x, device, dtype=_fdt(device))
    v, i = clnet.topk(t, 3, dim=1)
    np.testing.assert_array_equal(i.numpy(), np.argsort(-x, 1, kind="stable")[:, :3])
    v2, _ = t.topk(2, dim=0, largest=False)
    np.testing.assert_allclose(v2.numpy(), np.sort(x, 0)[:2])
    k = clnet.kthvalue(t, 4, dim=1)
    np.testing.assert_allclose(k.values.numpy(), np.sort(x, 1)[:, 3])
    assert k.indices.shape == (4,) and clnet.kthvalue(t, 1, 0, keepdim=True).values.shape == (1, 9)
    gradcheck(lambda s: clnet.topk(s, 3, dim=1).values, x, device=device)
    gradcheck(lambda s: clnet.sort(s, dim=0, descending=True).values, x, device=device)
    gradcheck(lambda s: clnet.kthvalue(s, 2, dim=1).values, x, device=device)
    with pytest.raises(ValueError, match="topk: k"):
        clnet.topk(t, 10, dim=1)
    with pytest.raises(ValueError, match="kthvalue: k"):
        clnet.kthvalue(t, 0)


def test_unique(device):
    x = clnet.tensor([3, 1, 3, 2, 1, 3], device=device)
    u, inv, cnt = clnet.unique(x, return_inverse=True, return_counts=True)
    assert u.numpy().tolist() == [1, 2, 3] and inv.numpy().tolist() == [2, 0, 2, 1, 0, 2]
    assert cnt.numpy().tolist() == [2, 1, 3] and x.unique().numpy().tolist() == [1, 2, 3]
    rows = clnet.unique(clnet.tensor([[1, 2], [1, 2], [0, 5]], device=device), dim=0)
    assert rows.numpy().tolist() == [[0, 5], [1, 2]]


# --- positional ops ------------------------------------------------------------------------------------------
def test_triangles_diagonals(device, rng):
    x = _data(rng, 2, 4, 5).astype(_fdt(device))
    t = T(x, device, dtype=_fdt(device))
    for k in (-2, 0, 1, 6):
        np.testing.assert_array_equal(clnet.tril(t, k).numpy(), np.tril(x, k))
        np.testing.assert_array_equal(t.triu(k).numpy(), np.triu(x, k))
    for off in (-1, 0, 2):
        np.testing.assert_array_equal(clnet.diagonal(t, off, 1, 2).numpy(), np.diagonal(x, off, 1, 2))
    np.testing.assert_array_equal(t.diagonal(1, 2, 0).numpy(), np.diagonal(x, 1, 2, 0))
    np.testing.assert_array_equal(clnet.diag(t[0], 1).numpy(), np.diag(x[0], 1))
    np.testing.assert_array_equal(clnet.diag(t[0, 0], -2).numpy(), np.diag(x[0, 0], -2))
    emb = clnet.diag_embed(t, 1)
    assert emb.shape == (2, 4, 6, 6)
    np.testing.assert_array_equal(np.diagonal(emb.numpy(), 1, 2, 3), x)
    gradcheck(lambda s: clnet.tril(s, -1), x, device=device)
    gradcheck(lambda s: s.diagonal(1, 1, 2), x, device=device)
    gradcheck(lambda s: clnet.diag_embed(s), x[0], device=device)
    gradcheck(lambda s: clnet.diag(s), x[0], device=device)
    y = T(x[0], device, dtype=_fdt(device))
    with clnet.no_grad():
        y.triu_(1)
    np.testing.assert_array_equal(y.numpy(), np.triu(x[0], 1))


def test_roll_meshgrid_take_along_dim(device, rng):
    x = _data(rng, 3, 4, 5).astype(_fdt(device))
    t = T(x, device, dtype=_fdt(device))
    np.testing.assert_array_equal(clnet.roll(t, (1, -2), (1, 2)).numpy(), np.roll(x, (1, -2), (1, 2)))
    np.testing.assert_array_equal(t.roll(7).numpy(), np.roll(x, 7))
    a, b = T(x[0, 0], device), T(x[0, 1, :3], device)
    for indexing in ("ij", "xy"):
        got = clnet.meshgrid(a, b, indexing=indexing)
        for g, e in zip(got, np.meshgrid(x[0, 0], x[0, 1, :3], indexing=indexing)):
            np.testing.assert_allclose(g.numpy(), e, rtol=1e-6)
    idx = rng.integers(0, 5, (3, 4, 2))
    np.testing.assert_array_equal(clnet.take_along_dim(t, T(idx, device), 2).numpy(),
                                  np.take_along_axis(x, idx, 2))
    idx_b = rng.integers(0, 4, (1, 2, 5))
    np.testing.assert_array_equal(t.take_along_dim(T(idx_b, device), 1).numpy(),
                                  np.take_along_axis(x, np.broadcast_to(idx_b, (3, 2, 5)), 1))
    gradcheck(lambda s: clnet.roll(s, 2, 1), x, device=device)
    gradcheck(lambda s: clnet.take_along_dim(s, T(idx, device), 2), x, device=device)


def test_scatter(device, rng):
    x = _data(rng, 3, 5)
    src = _data(rng, 2, 5)
    idx = np.array([[0, 1, 2, 0, 1], [2, 0, 1, 1, 0]])
    expect = x.copy()
    for j in range(2):
        for c in range(5):
            expect[idx[j, c], c] = src[j, c]
    t = T(x, device, dtype=_fdt(device))
    np.testing.assert_allclose(clnet.scatter(t, 0, T(idx, device), T(src, device, dtype=_fdt(device))).numpy(),
                               expect)
    np.testing.assert_allclose(t.scatter(1, T([[1], [4], [0]], device), 9.0).numpy()[:, [1, 4, 0]].diagonal(),
                               [9.0, 9.0, 9.0])
    gradcheck(lambda a, b: clnet.scatter(a, 0, T(idx, device), b), x, src, device=device)
    z = clnet.zeros(2, 3, device=device)
    z.scatter_(1, T([[0, 2], [1, 1]], device), clnet.ones(2, 2, device=device))
    assert z.numpy().tolist() == [[1, 0, 1], [0, 1, 0]]
    z.scatter_add_(1, T([[0, 0], [2, 2]], device), clnet.ones(2, 2, device=device))
    assert z.numpy().tolist() == [[3, 0, 1], [0, 1, 2]]


# --- products and norms -------------------------------------------------------------------------------------------
def test_products(device, rng):
    dt = _fdt(device)
    A, B, v, w = _data(rng, 3, 4), _data(rng, 4, 5), _data(rng, 4), _data(rng, 3)
    C, D, I = _data(rng, 2, 3, 4), _data(rng, 2, 4, 5), _data(rng, 3, 5)
    t = lambda a: T(a, device, dtype=dt)  # noqa: E731
    tol = dict(rtol=1e-9 if device.fp64 else 1e-5, atol=1e-9 if device.fp64 else 1e-5)
    assert_close(clnet.dot(t(v), t(v[::-1].copy())), np.dot(v, v[::-1]), **tol)
    assert_close(clnet.outer(t(v), t(w)), np.outer(v, w), **tol)
    assert_close(clnet.mv(t(A), t(v)), A @ v, **tol)
    assert_close(clnet.addmm(t(I), t(A), t(B), beta=0.5, alpha=2), 0.5 * I + 2 * A @ B, **tol)
    assert_close(clnet.addmv(t(w), t(A), t(v), alpha=-1), w - A @ v, **tol)
    assert_close(clnet.addr(t(A), t(w), t(v)), A + np.outer(w, v), **tol)
    assert_close(clnet.baddbmm(t(I), t(C), t(D), beta=2), 2 * I + C @ D, **tol)
    assert_close(clnet.addbmm(t(I), t(C), t(D)), I + (C @ D).sum(0), **tol)
    assert_close(clnet.trace(t(A[:, :3])), np.trace(A[:, :3]), **tol)
    assert_close(clnet.cross(t(C[:, :, :3]), t(C[:, :, 1:]), dim=2), np.cross(C[:, :, :3], C[:, :, 1:]), **tol)
    assert_close(clnet.tensordot(t(C), t(B), 1), np.tensordot(C, B, 1), **tol)
    assert_close(clnet.tensordot(t(C), t(D), ([0, 2], [0, 1])), np.tensordot(C, D, ([0, 2], [0, 1])), **tol)
    gradcheck(lambda a, b, c: clnet.addmm(a, b, c, beta=0.5, alpha=-1), I, A, B, device=device)
    gradcheck(lambda a, b: clnet.tensordot(a, b, 1), C, B, device=device)


EINSUMS = ["ij,jk->ik", "bij,bjk->bik", "ii->i", "ii", "ij->ji", "i,j->ij", "ij,ij->", "bij,jk->bik",
           "...ij,...jk->...ik", "ijk->k", "ij,jk,kl->il", "bn,anm,bm->ba", "ij,kj", "i,i"]


@pytest.mark.parametrize("equation", EINSUMS)
def test_einsum(device, rng, equation):
    shapes = {"ij,jk->ik": [(3, 4), (4, 5)], "bij,bjk->bik": [(2, 3, 4), (2, 4, 5)], "ii->i": [(4, 4)],
              "ii": [(4, 4)], "ij->ji": [(3, 4)], "i,j->ij": [(3,), (4,)], "ij,ij->": [(3, 4), (3, 4)],
              "bij,jk->bik": [(2, 3, 4), (4, 5)], "...ij,...jk->...ik": [(2, 3, 4), (2, 4, 5)],
              "ijk->k": [(2, 3, 4)], "ij,jk,kl->il": [(2, 3), (3, 4), (4, 2)],
              "bn,anm,bm->ba": [(2, 3), (4, 3, 5), (2, 5)], "ij,kj": [(3, 4), (5, 4)], "i,i": [(4,), (4,)]}[equation]
    xs = [_data(rng, *s) for s in shapes]
    got = clnet.einsum(equation, *[T(x, device, dtype=_fdt(device)) for x in xs])
    assert_close(got, np.einsum(equation, *xs), rtol=1e-9 if device.fp64 else 1e-5,
                 atol=1e-9 if device.fp64 else 1e-5, what=equation)
    if equation in ("bij,bjk->bik", "ii->i", "bn,anm,bm->ba"):
        gradcheck(lambda *ts: clnet.einsum(equation, *ts), *xs, device=device)


@pytest.mark.parametrize("p", [2, 1, math.inf, -math.inf, 3, 0.5, 0])
def test_vector_norms(device, rng, p):
    x = _data(rng, 3, 4)
    t = T(x, device, dtype=_fdt(device))
    ref = np.linalg.norm(x, ord=p, axis=1)
    assert_close(clnet.linalg.vector_norm(t, p, 1), ref, rtol=1e-6 if device.fp64 else 1e-5)
    assert_close(clnet.norm(t, p, dim=1, keepdim=True), ref[:, None], rtol=1e-6 if device.fp64 else 1e-5)
    if p != 0:
        gradcheck(lambda s: clnet.linalg.vector_norm(s, p, 1), x, device=device)


def test_matrix_norms_and_zero_gradient(device, rng):
    x = _data(rng, 2, 3, 4)
    t = T(x, device, dtype=_fdt(device))
    for ord_ in ("fro", 1, -1, math.inf, -math.inf):
        assert_close(clnet.linalg.matrix_norm(t, ord_), np.linalg.norm(x, ord=ord_, axis=(1, 2)), rtol=1e-6)
    assert_close(clnet.linalg.norm(t), np.linalg.norm(x.ravel()), rtol=1e-6)
    assert_close(t.norm(), np.linalg.norm(x.ravel()), rtol=1e-6)
    assert_close(clnet.dist(t[0], t[1]), np.linalg.norm((x[0] - x[1]).ravel()), rtol=1e-6)
    with pytest.raises(NotImplementedError, match="singular values"):
        clnet.linalg.matrix_norm(t, "nuc")
    z = clnet.zeros(3, device=device, requires_grad=True)
    clnet.linalg.vector_norm(z).backward()
    assert z.grad.numpy().tolist() == [0.0, 0.0, 0.0]  # PyTorch's subgradient at zero
    gradcheck(lambda s: clnet.linalg.matrix_norm(s, 1), x, device=device)


# --- sampling -----------------------------------------------------------------------------------------------------
def test_multinomial_bernoulli_normal(device):
    clnet.manual_seed(0)
    n = small(device, 20000, 4000)
    p = clnet.tensor([[0.1, 0.0, 0.6, 0.3], [1.0, 1.0, 1.0, 1.0]], device=device)
    s = clnet.multinomial(p, n, replacement=True)
    assert s.shape == (2, n) and s.dtype == clnet.int64
    freq = np.stack([np.bincount(r, minlength=4) / n for r in s.numpy()])
    np.testing.assert_allclose(freq, [[0.1, 0.0, 0.6, 0.3], [0.25] * 4], atol=4 / math.sqrt(n))
    for _ in range(20):
        draw = clnet.multinomial(p[0], 3).numpy()  # without replacement: distinct, never the zero weight
        assert len(set(draw)) == 3 and 1 not in draw
    assert clnet.multinomial(p[1], 1).shape == (1,) and p.multinomial(2).shape == (2, 2)
    with pytest.raises(ValueError, match="without replacement"):
        clnet.multinomial(p, 5)
    b = clnet.bernoulli(clnet.full((n,), 0.3, device=device))
    assert abs(b.mean().item() - 0.3) < 4 * math.sqrt(0.21 / n) and set(np.unique(b.numpy())) <= {0.0, 1.0}
    g = clnet.normal(1.0, 2.0, (n,), device=device)
    assert abs(g.mean().item() - 1.0) < 0.1 and abs(g.std().item() - 2.0) < 0.1
    m = clnet.tensor([0.0, 10.0], device=device, requires_grad=True)
    y = clnet.normal(m, clnet.tensor([1.0, 0.0], device=device))
    assert y.numpy()[1] == 10.0
    y.sum().backward()
    assert m.grad.numpy().tolist() == [1.0, 1.0]
    x = clnet.zeros(1000, device=device)
    assert 0.3 < x.bernoulli_(0.5).mean().item() < 0.7


def test_logspace_randint_like(device):
    np.testing.assert_allclose(clnet.logspace(0, 2, 5, device=device).numpy(), np.logspace(0, 2, 5), rtol=1e-6)
    assert clnet.logspace(0, 3, 4, base=2, dtype=clnet.int64, device=device).numpy().tolist() == [1, 2, 4, 8]
    r = clnet.randint_like(clnet.zeros(3, 4, dtype=clnet.int32, device=device), 5)
    assert r.shape == (3, 4) and r.dtype == clnet.int32 and 0 <= r.numpy().min() and r.numpy().max() < 5


# --- against PyTorch ------------------------------------------------------------------------------------------------
TORCH_CASES = [  # name, clnet fn, torch fn, input shapes
    ("tan", lambda m, x: m.tan(x * 0.5), None, [(3, 4)]),
    ("erf", lambda m, x: m.erf(x), None, [(3, 4)]),
    ("atan2", lambda m, x, y: m.atan2(x, y), None, [(3, 4), (4,)]),
    ("lerp", lambda m, x, y: m.lerp(x, y, 0.25), None, [(3, 4), (3, 4)]),
    ("addcdiv", lambda m, x, y: m.addcdiv(x, y, y * y + 1, value=0.5), None, [(3, 4), (3, 4)]),
    ("cumsum", lambda m, x: m.cumsum(x, 1), None, [(3, 4)]),
    ("cumprod", lambda m, x: m.cumprod(x, 0), None, [(3, 4)]),
    ("sort", lambda m, x: m.sort(x, 1, descending=True)[0], None, [(3, 6)]),
    ("topk", lambda m, x: m.topk(x, 2, 0)[0], None, [(5, 3)]),
    ("tril", lambda m, x: m.tril(x, -1), None, [(4, 4)]),
    ("roll", lambda m, x: m.roll(x, 2, 1), None, [(3, 5)]),
    ("diag_embed", lambda m, x: m.diag_embed(x), None, [(2, 3)]),
    ("einsum", lambda m, x, y: m.einsum("bij,bkj->bik", x, y), None, [(2, 3, 4), (2, 5, 4)]),
    ("baddbmm", lambda m, i, x, y: m.baddbmm(i, x, y, beta=0.5, alpha=2), None, [(2, 3, 5), (2, 3, 4), (2, 4, 5)]),
    ("vector_norm", lambda m, x: m.linalg.vector_norm(x, 3, 1), None, [(3, 4)]),
    ("norm", lambda m, x: m.norm(x), None, [(3, 4)]),
    ("take_along_dim", lambda m, x: m.take_along_dim(x, m.tensor([[0, 2], [1, 1], [3, 0]]), 1), None, [(3, 4)]),
]


@needs_torch
@pytest.mark.torch
@pytest.mark.parametrize("case", TORCH_CASES, ids=[c[0] for c in TORCH_CASES])
def test_against_pytorch(device, rng, case):
    """Forward values and gradients of every input agree with PyTorch (float64 when the device has it)."""
    name, fn, _, shapes = case
    dt = _fdt(device)
    xs = [_data(rng, *s) for s in shapes]
    ours = [T(x, device, dtype=dt, requires_grad=True) for x in xs]
    theirs = [torch.tensor(x, dtype=torch.float64 if dt == np.float64 else torch.float32, requires_grad=True)
              for x in xs]
    y, ty = fn(clnet, *ours), fn(torch, *theirs)
    tol = dict(rtol=1e-9, atol=1e-10) if dt == np.float64 else dict(rtol=1e-5, atol=1e-5)
    assert_close(y, ty.detach().numpy(), **tol, what=f"{name} forward")
    w = rng.standard_normal(tuple(ty.shape))
    (y * T(w, device, dtype=dt)).sum().backward()
    (ty * torch.tensor(w, dtype=ty.dtype)).sum().backward()
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert_close(a.grad, b.grad.numpy(), **tol, what=f"{name} gradient of input {i}")


def test_torch_like_spelling_is_the_same_module():
    assert torch_like.einsum is clnet.einsum

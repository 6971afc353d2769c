"""Softmax family and losses (clnet.ops.nn via clnet.nn.functional): numpy float64 references, finite-
difference gradient checks, numerical stability, and the errors raised on bad input."""
from __future__ import annotations

import dataclasses
import os
from contextlib import contextmanager

import numpy as np
import pytest

import clnet
import clnet.nn as nn
import clnet.nn.functional as F
from clnet.ops import nn as ops_nn
from clnet.ops.nn import row_group_size, row_vector_width
from conftest import assert_close, gradcheck, small


# --- numpy references (float64) -----------------------------------------------------------------------
def np_log_softmax(x, axis):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def np_softmax(x, axis):
    return np.exp(np_log_softmax(x, axis))


def np_cross_entropy(x, t, weight=None, ignore_index=-100, reduction="mean", eps=0.0, nll=False):
    """PyTorch's definition: x (N, C, ...) or (C,), t (N, ...) or ()."""
    x = np.asarray(x, np.float64)
    if x.ndim == 1:
        x, t = x[None], np.asarray(t)[None]
        squeeze = True
    else:
        squeeze = False
    C = x.shape[1]
    logp = x if nll else np_log_softmax(x, 1)
    logp = np.moveaxis(logp, 1, -1).reshape(-1, C)          # rows x C
    tf = np.asarray(t).reshape(-1)
    w = np.ones(C) if weight is None else np.asarray(weight, np.float64)
    keep = tf != ignore_index
    safe = np.where(keep, tf, 0)
    wt = np.where(keep, w[safe], 0.0)
    nll_rows = -wt * logp[np.arange(len(tf)), safe]
    smooth_rows = np.where(keep, -(logp * w).sum(1), 0.0)
    loss = (1 - eps) * nll_rows + eps / C * smooth_rows
    if reduction == "none":
        out = loss.reshape(np.asarray(t).shape) if not squeeze else loss.reshape(())
        return out
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / wt.sum()


def _class_data(rng, shape, ignore=False):
    x = rng.standard_normal(shape) * 2
    C = shape[0] if len(shape) == 1 else shape[1]
    tshape = () if len(shape) == 1 else (shape[0],) + tuple(shape[2:])
    t = rng.integers(0, C, size=tshape)
    if ignore and t.ndim:
        t.reshape(-1)[::3] = -100
    w = rng.random(C) + 0.5
    return x, t, w


# --- softmax / log_softmax ------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,dim", [((4, 7), 1), ((4, 7), 0), ((3, 5, 6), 1), ((3, 5, 6), -1), ((5,), 0),
                                       ((2, 3, 4, 5), 2)])
@pytest.mark.parametrize("log", [False, True])
def test_softmax_matches_numpy(device, rng, shape, dim, log):
    x = rng.standard_normal(shape).astype(np.float32) * 3
    fn = F.log_softmax if log else F.softmax
    ref = (np_log_softmax if log else np_softmax)(x.astype(np.float64), dim)
    assert_close(fn(clnet.tensor(x), dim), ref, rtol=1e-5, atol=1e-5)


def _skip_oclgrind_16_wide(device, vw):
    if vw == 16 and device.is_simulator and os.environ.get("OCLGRIND_UNINITIALIZED", "0") not in ("", "0"):
        pytest.skip("Oclgrind 21.10's uninitialized-value checker flags the .hi half of 16-wide vectors "
                    "(a false positive, see docs/sanitizer.md): run these with OCLGRIND_UNINITIALIZED=0")


@contextmanager
def variant(device, wg=None, vw=None, cpu=None, fp16=None):
    """Force the softmax kernels' variant: wg work-items per row, vector width vw, and (cpu) the CPU
    choice of one work-item per row for the cross-entropy backward, whatever the device would pick."""
    saved = ops_nn.row_group_size, device._profile, device.type
    if wg is not None:
        ops_nn.row_group_size = lambda *a, **k: wg
    if vw is not None:
        device._profile = dataclasses.replace(device.profile, vector_width=vw)
    if fp16 is not None:
        device._profile = dataclasses.replace(device.profile, fp16=fp16)
    if cpu is not None:
        device.type = "cpu" if cpu else "gpu"
    try:
        yield
    finally:
        ops_nn.row_group_size, device._profile, device.type = saved


@pytest.mark.parametrize("log", [False, True])
def test_softmax_long_rows_work_group_per_row(device, rng, log):
    """The local-memory variant (GPUs' choice for long rows) gives the same results on every device."""
    n = 2 * device.profile.reduce_wg + 37  # odd length: the last pass of each work-item is ragged
    x = rng.standard_normal((2, n)).astype(np.float32) * 4
    if device.profile.reduce_wg < 2:
        pytest.skip("the device allows no work-group of 2+ items")
    with variant(device, wg=device.profile.reduce_wg):
        _check_softmax_fwd_bwd(rng, x, 1, log)


# every row length around the vector widths, and strided layouts whose inner size is divisible by
# 16, 8, 4, 2 or nothing (the vector-of-rows variant picks the largest width dividing it)
ROW_LENGTHS = [1, 3, 4, 5, 15, 16, 17, 37]
STRIDED = [((3, 5, 16), 1), ((2, 6, 8), 1), ((4, 3, 12), 1), ((3, 7, 2), 1), ((2, 4, 3), 1), ((9, 5), 0)]


def _check_softmax_fwd_bwd(rng, x, dim, log):
    fn = F.log_softmax if log else F.softmax
    xt = clnet.tensor(x, requires_grad=True)
    y = fn(xt, dim)
    yr = (np_log_softmax if log else np_softmax)(x.astype(np.float64), dim)
    assert_close(y, yr, rtol=1e-5, atol=1e-6)
    g = rng.standard_normal(x.shape)
    y.backward(clnet.tensor(g.astype(np.float32)))
    sm = np_softmax(x.astype(np.float64), dim)
    expected = g - sm * g.sum(dim, keepdims=True) if log else sm * (g - (g * sm).sum(dim, keepdims=True))
    assert_close(xt.grad, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("vw", [1, 4, 16])
@pytest.mark.parametrize("log", [False, True])
def test_softmax_one_item_per_row_every_length_and_vector_width(device, rng, vw, log):
    """One work-item per row (CPUs' choice) with vectors of vw values along the row (the scalar loop
    takes the rest) or, for strided rows and short rows (a long scalar tail; partial last block), vw rows
    per work-item."""
    _skip_oclgrind_16_wide(device, vw)
    with variant(device, wg=1, vw=vw):
        for rows, n in [(3, n) for n in ROW_LENGTHS] + [(21, 5), (33, 7), (16, 3), (2, 1)]:
            _check_softmax_fwd_bwd(rng, rng.standard_normal((rows, n)).astype(np.float32) * 3, 1, log)
        for shape, dim in STRIDED:
            _check_softmax_fwd_bwd(rng, rng.standard_normal(shape).astype(np.float32) * 3, dim, log)


@pytest.mark.parametrize("vw", [1, 16])
def test_softmax_nan_and_inf_as_torch(device, vw):
    """A NaN or +inf anywhere in a row (vector part or scalar tail) makes the row NaN; -inf values give
    0 (log: -inf); a row of only -inf is NaN. Values as torch.softmax / torch.log_softmax."""
    _skip_oclgrind_16_wide(device, vw)
    inf, nan = float("inf"), float("nan")
    rows = []
    for at in (3, 36):  # inside the first vector of 16 and in the scalar tail of a 37-long row
        for bad in (nan, inf):
            r = np.linspace(-2, 2, 37)
            r[at] = bad
            rows.append(r)
    r = np.linspace(-2, 2, 37)
    r[[0, 20, 36]] = -inf
    rows += [r, np.full(37, -inf)]
    x = np.array(rows, np.float32)
    with variant(device, vw=vw):
        y, ly = F.softmax(clnet.tensor(x), 1).numpy(), F.log_softmax(clnet.tensor(x), 1).numpy()
    assert np.isnan(y[:4]).all() and np.isnan(ly[:4]).all() and np.isnan(y[5]).all() and np.isnan(ly[5]).all()
    assert_close(y[4], np_softmax(x[4:5].astype(np.float64), 1)[0], atol=1e-6)
    assert y[4][[0, 20, 36]].tolist() == [0, 0, 0] and np.isneginf(ly[4][[0, 20, 36]]).all()
    keep = np.isfinite(x[4])
    assert_close(ly[4][keep], np_log_softmax(x[4][keep].astype(np.float64), 0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("vw", [1, 4, 16])
@pytest.mark.parametrize("cpu", [True, False], ids=["per-row-backward", "per-element-backward"])
def test_cross_entropy_one_item_per_row_vector_widths(device, rng, vw, cpu):
    """Cross-entropy forward (one work-item per row, vectors of vw along it) and its backward, one
    work-item per row (CPUs) or per element (GPUs), for weighted, smoothed, ignored, nll cases and
    row lengths around the vector width (short ones take a row per vector lane), and a bad target."""
    _skip_oclgrind_16_wide(device, vw)
    with variant(device, wg=1, vw=vw, cpu=cpu):
        for n, kw in ((1, {}), (5, dict(weight=True, eps=0.1)), (17, dict(eps=0.2, ignore=True)),
                      (37, dict(weight=True, eps=0.3, ignore=True)), (16, dict(nll=True, weight=True)),
                      (3, dict(weight=True, eps=0.2, ignore=True)), (7, dict(weight=True, ignore=True)),
                      (10, dict(eps=0.1, ignore=True))):
            x, t, w = _class_data(rng, (6, n), kw.get("ignore", False) and n > 1)
            weight = w if kw.get("weight") else None
            eps, nll = kw.get("eps", 0.0), kw.get("nll", False)
            xt = clnet.tensor(x.astype(np.float32), requires_grad=True)
            wt = None if weight is None else clnet.tensor(weight.astype(np.float32))
            if nll:
                loss = F.nll_loss(xt, clnet.tensor(t), weight=wt)
            else:
                loss = F.cross_entropy(xt, clnet.tensor(t), weight=wt, label_smoothing=eps)
            assert_close(loss, np_cross_entropy(x, t, weight, eps=eps, nll=nll), rtol=1e-5, atol=1e-5)
            loss.backward()
            assert_close(xt.grad, _np_ce_grad(x, t, weight, eps, nll), rtol=1e-4, atol=1e-6)
        for n in (3, 10, 37):  # a target outside [0, n): that row's loss and gradient are NaN, no other
            x, t, _ = _class_data(rng, (6, n))
            t[2] = n
            xt = clnet.tensor(x.astype(np.float32), requires_grad=True)
            loss = F.cross_entropy(xt, clnet.tensor(t), reduction="none", label_smoothing=0.1)
            loss.sum().backward()
            got, grad = loss.numpy(), xt.grad.numpy()
            assert np.isnan(got[2]) and np.isfinite(np.delete(got, 2)).all()
            assert np.isnan(grad[2]).all() and np.isfinite(np.delete(grad, 2, 0)).all()


@pytest.mark.parametrize("vw", [4, 16])
def test_softmax_family_half_storage_vector_variants(device, rng, vw):
    """float16 storage (vload_halfN / vstore_halfN_rte, float accumulation) in the vector variants:
    along the row, a row per lane, a vector of strided rows; softmax, log_softmax, cross-entropy.
    These kernels only load and store halves (core OpenCL C, no cl_khr_fp16), so on Oclgrind the
    profile's fp16 is switched on, as test_sanitize does. (Forced on PoCL 3.1, which has no fp16 and so
    never gets float16 tensors from clnet, the 16-wide variant crashes PoCL's compiler.)"""
    if not (device.profile.fp16 or device.is_simulator):
        pytest.skip("the device has no usable float16: clnet offers no float16 tensors on it")
    _skip_oclgrind_16_wide(device, vw)

    def half(a, grad=False):
        return clnet.tensor(np.asarray(a, np.float16), dtype=clnet.float16, device=device, requires_grad=grad)
    with variant(device, wg=1, vw=vw, cpu=True, fp16=True):
        for shape, dim in (((5, 3), 1), ((3, 37), 1), ((2, 5, 8), 1)):
            x = (rng.standard_normal(shape) * 2).astype(np.float16)
            for log in (False, True):
                xt = half(x, True)
                y = (F.log_softmax if log else F.softmax)(xt, dim)
                ref = (np_log_softmax if log else np_softmax)(x.astype(np.float64), dim)
                assert_close(y, ref, rtol=4e-3, atol=4e-3)
                y.sum().backward()
                sm = np_softmax(x.astype(np.float64), dim)
                expected = 1 - sm * shape[dim] if log else np.zeros(shape)
                assert_close(xt.grad, expected, rtol=4e-3, atol=4e-3)
        for n in (3, 37):
            x, t, w = _class_data(rng, (6, n), ignore=True)
            xt = half(x, True)
            loss = F.cross_entropy(xt, clnet.tensor(t), weight=half(w), label_smoothing=0.1)
            xh = x.astype(np.float16).astype(np.float64)
            wh = w.astype(np.float16).astype(np.float64)
            assert_close(loss, np_cross_entropy(xh, t, wh, eps=0.1), rtol=4e-3, atol=4e-3)
            loss.backward()
            assert_close(xt.grad, _np_ce_grad(xh, t, wh, 0.1, False), rtol=4e-3, atol=4e-3)


def _np_ce_grad(x, t, w, eps, nll, ignore_index=-100):
    """d/dx of the "mean" cross-entropy (or nll) over the rows of x, in float64."""
    n = x.shape[1]
    w = np.ones(n) if w is None else w.astype(np.float64)
    keep = t != ignore_index
    ts = np.where(keep, t, 0)
    onehot = np.eye(n)[ts]
    wt = np.where(keep, w[ts], 0.0)
    if nll:
        grad = -wt[:, None] * onehot
    else:
        p = np_softmax(x.astype(np.float64), 1)
        grad = (1 - eps) * wt[:, None] * (p - onehot) + np.where(keep, eps / n, 0)[:, None] * (w.sum() * p - w)
    return grad / wt.sum()


@pytest.mark.parametrize("log", [False, True])
def test_softmax_few_long_rows_chosen_variant(device, rng, log):
    """Few long rows: whatever variant the device picks gives the reference result."""
    n = 2 * device.profile.reduce_wg + 37
    _check_softmax_fwd_bwd(rng, rng.standard_normal((2, n)).astype(np.float32) * 4, 1, log)


def test_softmax_choice_of_variant(device):
    wg = device.profile.reduce_wg
    assert row_group_size(device, 1000, 10) == 1           # short rows: one work-item per row
    assert row_group_size(device, 10**7, 3 * wg, inner=7) == 1  # many strided rows: one work-item each
    if wg >= 2:  # one long row: a work-group on GPUs; on CPUs (a work-group runs on one core) one item
        assert row_group_size(device, 1, 4 * wg) == (1 if device.type == "cpu" else wg)
    vw = device.profile.vector_width
    if vw > 1:
        assert row_vector_width(device, 1, 1, 1000) == (vw, False, False)  # long rows: vectors along the row
        assert row_vector_width(device, 1, 1, 3) == (vw, True, True)       # short rows: a row per lane
    if wg > 1:
        assert row_vector_width(device, wg, 1, 1000) == (1, False, False)
    if vw >= 4:
        assert row_vector_width(device, 1, 12, 5) == (4, True, False)  # strided: 4 rows (lanes) per item
    assert row_vector_width(device, 1, 3, 5) == (1, False, False)


def test_softmax_is_stable_for_huge_logits(device):
    x = clnet.tensor([[1e4, 1e4 - 1.0, -1e4], [-1e30, 0.0, 1e30]])
    y = F.softmax(x, 1).numpy()
    assert np.isfinite(y).all()
    assert_close(y[0], np_softmax(np.array([0.0, -1.0, -2e4]), 0), atol=1e-6)
    assert_close(y[1], [0, 0, 1], atol=0)
    assert np.isfinite(F.log_softmax(x, 1).numpy()[0]).all()


def test_softmax_nan_propagates_to_its_row(device):
    y = F.softmax(clnet.tensor([[1.0, float("nan"), 2.0], [1.0, 2.0, 3.0]]), 1).numpy()
    assert np.isnan(y[0]).all() and np.isfinite(y[1]).all()


@pytest.mark.parametrize("log", [False, True])
def test_softmax_gradcheck(device, rng, log):
    x = rng.standard_normal(small(device, (3, 4, 2), (2, 3)))
    fn = F.log_softmax if log else F.softmax
    gradcheck(lambda t: fn(t, 1), x, device=device)


def test_softmax_modules_and_legacy_dim(device, rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    assert_close(nn.Softmax(dim=1)(clnet.tensor(x)), np_softmax(x.astype(np.float64), 1), atol=1e-6)
    assert_close(nn.LogSoftmax(dim=0)(clnet.tensor(x)), np_log_softmax(x.astype(np.float64), 0), atol=1e-5)
    with pytest.warns(UserWarning, match="implicit dimension"):
        y = F.softmax(clnet.tensor(x))
    assert_close(y, np_softmax(x.astype(np.float64), 1), atol=1e-6)  # 2-D: PyTorch's legacy choice is dim 1


def test_softmax_rejects_bad_input(device):
    with pytest.raises(TypeError, match="floating-point"):
        F.softmax(clnet.tensor([1, 2, 3]), 0)
    with pytest.raises(IndexError, match="out of range"):
        F.softmax(clnet.tensor([[1.0, 2.0]]), 2)


# --- cross-entropy and nll ---------------------------------------------------------------------------------
CE_CASES = [
    dict(shape=(8, 5)),
    dict(shape=(8, 5), weight=True),
    dict(shape=(8, 5), ignore=True),
    dict(shape=(8, 5), eps=0.1),
    dict(shape=(8, 5), weight=True, eps=0.2, ignore=True),
    dict(shape=(3, 4, 2, 3), weight=True, eps=0.1, ignore=True),
    dict(shape=(7,)),
    dict(shape=(7,), weight=True, eps=0.3),
]


@pytest.mark.parametrize("case", CE_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_numpy(device, rng, case, reduction):
    x, t, w = _class_data(rng, case["shape"], case.get("ignore", False))
    weight = w if case.get("weight") else None
    eps = case.get("eps", 0.0)
    got = F.cross_entropy(clnet.tensor(x.astype(np.float32)), clnet.tensor(t),
                          weight=None if weight is None else clnet.tensor(weight.astype(np.float32)),
                          reduction=reduction, label_smoothing=eps)
    assert_close(got, np_cross_entropy(x, t, weight, reduction=reduction, eps=eps), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CE_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_cross_entropy_gradcheck(device, rng, case, reduction):
    shape = case["shape"] if len(case["shape"]) < 4 else small(device, case["shape"], (2, 3, 2))
    x, t, w = _class_data(rng, shape, case.get("ignore", False))
    weight = clnet.tensor(w, device=device) if case.get("weight") and device.fp64 else None
    tt = clnet.tensor(t, device=device)
    gradcheck(lambda v: F.cross_entropy(v, tt, weight=weight, reduction=reduction,
                                        label_smoothing=case.get("eps", 0.0)), x, device=device)


@pytest.mark.parametrize("forced", [False, True], ids=["chosen", "group"])
def test_cross_entropy_long_rows_group_variant(device, rng, forced):
    """Few rows of many classes: the device's choice, and the work-group-per-row kernel forced."""
    n = 2 * device.profile.reduce_wg + 5
    x, t, w = _class_data(rng, (3, n))
    xt = clnet.tensor(x.astype(np.float32), requires_grad=True)
    with variant(device, wg=device.profile.reduce_wg if forced else None):
        loss = F.cross_entropy(xt, clnet.tensor(t), weight=clnet.tensor(w.astype(np.float32)),
                               label_smoothing=0.1)
    assert_close(loss, np_cross_entropy(x, t, w, eps=0.1), rtol=1e-5, atol=1e-5)
    loss.backward()
    p = np_softmax(x, 1)
    onehot = np.eye(n)[t]
    target = 0.9 * onehot + 0.1 / n
    wt = w[t]
    # d/dx of sum_r [(1-e) w_t (lse - x_t) + e/n sum_j w_j (lse - x_j)] / sum_r w_t
    grad = (0.9 * wt[:, None] * (p - onehot) + 0.1 / n * (w.sum() * p - w[None, :])) / wt.sum()
    del target
    assert_close(xt.grad, grad, rtol=1e-4, atol=1e-6)


def test_cross_entropy_is_stable_for_huge_logits(device):
    x = clnet.tensor([[1e4, -1e4, 0.0], [-5e3, 5e3, 0.0]], requires_grad=True)
    t = clnet.tensor([0, 0])
    loss = F.cross_entropy(x, t, reduction="none")
    assert_close(loss, [0.0, 1e4], rtol=1e-6)
    loss.sum().backward()
    assert np.isfinite(x.grad.numpy()).all()
    assert_close(x.grad, [[0, 0, 0], [-1, 1, 0]], atol=1e-6)


def test_cross_entropy_all_ignored_mean_is_nan_and_grad_is_zero(device):
    x = clnet.tensor([[1.0, 2.0], [0.5, 0.1]], requires_grad=True)
    loss = F.cross_entropy(x, clnet.tensor([-100, -100]))
    assert np.isnan(loss.item())  # 0 / 0, as PyTorch
    F.cross_entropy(x, clnet.tensor([-100, 1]), reduction="sum").backward()
    assert_close(x.grad[0], [0.0, 0.0], atol=0)


def test_cross_entropy_out_of_range_target_gives_nan_not_a_crash(device):
    """A bad class index cannot be checked on the host without a sync; the kernel yields NaN instead of
    reading outside the row."""
    loss = F.cross_entropy(clnet.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]), clnet.tensor([1, 7]), reduction="none")
    got = loss.numpy()
    assert np.isfinite(got[0]) and np.isnan(got[1])


def test_cross_entropy_int32_targets_and_custom_ignore_index(device, rng):
    x, t, _ = _class_data(rng, (6, 4))
    t[1] = 3
    got = F.cross_entropy(clnet.tensor(x.astype(np.float32)), clnet.tensor(t.astype(np.int32)), ignore_index=3)
    assert_close(got, np_cross_entropy(x, t, ignore_index=3), rtol=1e-5, atol=1e-6)


def test_cross_entropy_probability_targets(device, rng):
    x = rng.standard_normal((5, 4))
    p = rng.random((5, 4))
    p /= p.sum(1, keepdims=True)
    w = rng.random(4) + 0.5
    got = F.cross_entropy(clnet.tensor(x.astype(np.float32)), clnet.tensor(p.astype(np.float32)),
                          weight=clnet.tensor(w.astype(np.float32)), label_smoothing=0.2)
    ps = p * 0.8 + 0.2 / 4
    expected = -(np_log_softmax(x, 1) * ps * w).sum(1).mean()
    assert_close(got, expected, rtol=1e-5, atol=1e-6)
    pt = clnet.tensor(p, device=device) if device.fp64 else None
    if pt is not None:
        gradcheck(lambda v: F.cross_entropy(v, pt, reduction="none"), x, device=device)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_nll_loss_matches_numpy_and_gradcheck(device, rng, reduction, weighted):
    x, t, w = _class_data(rng, (6, 4), ignore=True)
    logp = np_log_softmax(x, 1)
    weight = w if weighted else None
    got = F.nll_loss(clnet.tensor(logp.astype(np.float32)), clnet.tensor(t),
                     weight=None if weight is None else clnet.tensor(weight.astype(np.float32)), reduction=reduction)
    assert_close(got, np_cross_entropy(logp, t, weight, reduction=reduction, nll=True), rtol=1e-5, atol=1e-6)
    wt = clnet.tensor(w, device=device) if weighted and device.fp64 else None
    tt = clnet.tensor(t, device=device)
    gradcheck(lambda v: F.nll_loss(v, tt, weight=wt, reduction=reduction), logp, device=device)


def test_log_softmax_then_nll_equals_cross_entropy(device, rng):
    x, t, _ = _class_data(rng, (5, 6))
    xt, tt = clnet.tensor(x.astype(np.float32)), clnet.tensor(t)
    assert_close(F.nll_loss(F.log_softmax(xt, 1), tt), F.cross_entropy(xt, tt).numpy(), rtol=1e-5, atol=1e-6)


def test_cross_entropy_rejects_bad_input(device):
    x = clnet.tensor([[1.0, 2.0, 3.0]] * 2)
    with pytest.raises(ValueError, match=r"needs a target of shape \(2,\), got \(3,\)"):
        F.cross_entropy(x, clnet.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="probability targets"):
        F.cross_entropy(x, clnet.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\)"):
        F.cross_entropy(x, clnet.tensor([0, 1]), weight=clnet.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="reduction must be one of"):
        F.cross_entropy(x, clnet.tensor([0, 1]), reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(x, clnet.tensor([0, 1]), label_smoothing=1.5)
    with pytest.raises(TypeError, match="floating-point"):
        F.cross_entropy(clnet.tensor([[1, 2]]), clnet.tensor([0]))
    with pytest.raises(TypeError, match="integer"):
        F.nll_loss(x, clnet.tensor([[0.0, 1.0, 0.0]] * 2).to(clnet.float32)[:, 0])


# --- pointwise losses ------------------------------------------------------------------------------------------
def _reduce(v, reduction):
    return v if reduction == "none" else (v.sum() if reduction == "sum" else v.mean())


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_and_l1_match_numpy(device, rng, reduction):
    a, b = rng.standard_normal((2, 4, 3))
    ta, tb = clnet.tensor(a.astype(np.float32)), clnet.tensor(b.astype(np.float32))
    assert_close(F.mse_loss(ta, tb, reduction=reduction), _reduce((a - b) ** 2, reduction), rtol=1e-5, atol=1e-6)
    assert_close(F.l1_loss(ta, tb, reduction=reduction), _reduce(np.abs(a - b), reduction), rtol=1e-5, atol=1e-6)
    assert_close(nn.MSELoss(reduction=reduction)(ta, tb), _reduce((a - b) ** 2, reduction), rtol=1e-5, atol=1e-6)
    assert_close(nn.L1Loss(reduction=reduction)(ta, tb), _reduce(np.abs(a - b), reduction), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fn", [F.mse_loss, F.l1_loss])
def test_mse_and_l1_gradcheck_both_arguments(device, rng, fn):
    a, b = rng.standard_normal((2, 3, 4))
    gradcheck(lambda x, y: fn(x, y), a, b, device=device)
    gradcheck(lambda x, y: fn(x, y, reduction="none"), a, b, device=device)


def test_mse_warns_on_broadcast_targets(device):
    with pytest.warns(UserWarning, match="target size"):
        F.mse_loss(clnet.ones(3, 1), clnet.ones(3))
    with pytest.raises(ValueError, match="cannot be broadcast"):
        F.mse_loss(clnet.ones(3, 2), clnet.ones(4))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_binary_cross_entropy_matches_numpy(device, rng, reduction, weighted):
    p = rng.uniform(0.02, 0.98, (4, 3))
    y = rng.random((4, 3))
    w = rng.random((4, 3)) + 0.5 if weighted else np.ones((4, 3))
    ref = _reduce(-w * (y * np.log(p) + (1 - y) * np.log(1 - p)), reduction)
    got = F.binary_cross_entropy(clnet.tensor(p.astype(np.float32)), clnet.tensor(y.astype(np.float32)),
                                 weight=clnet.tensor(w.astype(np.float32)) if weighted else None, reduction=reduction)
    assert_close(got, ref, rtol=1e-5, atol=1e-6)
    assert_close(nn.BCELoss(reduction=reduction, weight=clnet.tensor(w.astype(np.float32)) if weighted else None)(
        clnet.tensor(p.astype(np.float32)), clnet.tensor(y.astype(np.float32))), ref, rtol=1e-5, atol=1e-6)


def test_binary_cross_entropy_gradcheck_and_log_floor(device, rng):
    p = rng.uniform(0.05, 0.95, (3, 4))
    y = rng.random((3, 4))
    gradcheck(lambda a, b: F.binary_cross_entropy(a, b), p, y, device=device)
    # log(0) is floored at -100, as PyTorch: a confident wrong answer costs 100, not inf
    loss = F.binary_cross_entropy(clnet.tensor([0.0, 1.0]), clnet.tensor([1.0, 0.0]), reduction="none")
    assert_close(loss, [100.0, 100.0])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_with_logits_matches_numpy(device, rng, reduction):
    x = rng.standard_normal((4, 3)) * 3
    y = rng.random((4, 3))
    w = rng.random((4, 3)) + 0.5
    pw = rng.random(3) + 0.5
    sig = 1 / (1 + np.exp(-x))
    ref = _reduce(-w * (pw * y * np.log(sig) + (1 - y) * np.log(1 - sig)), reduction)
    got = F.binary_cross_entropy_with_logits(clnet.tensor(x.astype(np.float32)), clnet.tensor(y.astype(np.float32)),
                                             weight=clnet.tensor(w.astype(np.float32)), reduction=reduction,
                                             pos_weight=clnet.tensor(pw.astype(np.float32)))
    assert_close(got, ref, rtol=1e-5, atol=1e-5)
    plain = _reduce(-(y * np.log(sig) + (1 - y) * np.log(1 - sig)), reduction)
    assert_close(nn.BCEWithLogitsLoss(reduction=reduction)(clnet.tensor(x.astype(np.float32)),
                                                           clnet.tensor(y.astype(np.float32))), plain,
                 rtol=1e-5, atol=1e-5)


def test_bce_with_logits_gradcheck_and_stability(device, rng):
    x = rng.standard_normal((3, 4)) * 2
    y = rng.random((3, 4))
    pw = rng.random(4) + 0.5
    gradcheck(lambda a, b: F.binary_cross_entropy_with_logits(a, b), x, y, device=device)
    pwt = clnet.tensor(pw, device=device) if device.fp64 else None
    gradcheck(lambda a, b: F.binary_cross_entropy_with_logits(a, b, pos_weight=pwt), x, y, device=device)
    big = clnet.tensor([200.0, -200.0, 200.0], requires_grad=True)
    loss = F.binary_cross_entropy_with_logits(big, clnet.tensor([1.0, 0.0, 0.0]), reduction="none")
    assert_close(loss, [0.0, 0.0, 200.0], atol=1e-5)
    loss.sum().backward()
    assert_close(big.grad, [0.0, 0.0, 1.0], atol=1e-6)


def test_pointwise_losses_reject_bad_input(device):
    with pytest.raises(ValueError, match="target size"):
        F.binary_cross_entropy(clnet.ones(3) * 0.5, clnet.ones(2))
    with pytest.raises(ValueError, match="target size"):
        F.binary_cross_entropy_with_logits(clnet.ones(3), clnet.ones(3, 1))
    with pytest.raises(TypeError, match="floating-point"):
        F.mse_loss(clnet.tensor([1, 2]), clnet.tensor([1, 2]))
    with pytest.raises(ValueError, match="reduction"):
        nn.MSELoss(reduction="mean ")

"""Softmax family and losses (clnet.ops.nn via clnet.nn.functional): numpy float64 references, finite-
difference gradient checks, numerical stability, and the errors raised on bad input."""
from __future__ import annotations

import numpy as np
import pytest

import clnet
import clnet.nn as nn
import clnet.nn.functional as F
from clnet.ops.nn import row_group_size
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


@pytest.mark.parametrize("log", [False, True])
def test_softmax_long_rows_use_a_work_group_per_row(device, rng, log):
    """Few long rows take the local-memory variant; the result must not depend on the variant."""
    n = 2 * device.profile.reduce_wg + 37  # odd length: the last pass of each work-item is ragged
    x = rng.standard_normal((2, n)).astype(np.float32) * 4
    assert row_group_size(device, 2, n) > 1 or device.profile.reduce_wg < 2
    fn = F.log_softmax if log else F.softmax
    ref = (np_log_softmax if log else np_softmax)(x.astype(np.float64), 1)
    t = clnet.tensor(x, requires_grad=True)
    y = fn(t, 1)
    assert_close(y, ref, rtol=1e-5, atol=1e-6)
    g = rng.standard_normal(x.shape)
    y.backward(clnet.tensor(g.astype(np.float32)))
    yr = ref
    expected = g - np.exp(yr) * g.sum(1, keepdims=True) if log else yr * (g - (g * yr).sum(1, keepdims=True))
    assert_close(t.grad, expected, rtol=1e-4, atol=1e-5)


def test_softmax_choice_of_variant(device):
    wg = device.profile.reduce_wg
    assert row_group_size(device, 1000, 10) == 1           # short rows: one work-item per row
    assert row_group_size(device, 10**7, 3 * wg, inner=7) == 1  # many strided rows: one work-item each
    if wg >= 2:
        assert row_group_size(device, 1, 4 * wg) == wg      # one long row: a work-group


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


def test_cross_entropy_long_rows_group_variant(device, rng):
    """Few rows of many classes go through the work-group-per-row kernel."""
    n = 2 * device.profile.reduce_wg + 5
    x, t, w = _class_data(rng, (3, n))
    xt = clnet.tensor(x.astype(np.float32), requires_grad=True)
    loss = F.cross_entropy(xt, clnet.tensor(t), weight=clnet.tensor(w.astype(np.float32)), label_smoothing=0.1)
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

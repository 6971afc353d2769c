"""Fused row normalisation (kernels/norm.cl.mako): layer, group and instance norm against numpy float64,
finite-difference gradients (float64, inputs and affine parameters), and PyTorch's numbers."""
from __future__ import annotations

import numpy as np
import pytest

import clnet
import clnet.nn.functional as F
from clnet.ops import norm
from conftest import assert_close, gradcheck, simulator_subset

torch = pytest.importorskip("torch")


def np_layer_norm(x, ns, w=None, b=None, eps=1e-5):
    axes = tuple(range(x.ndim - len(ns), x.ndim))
    x = x.astype(np.float64)
    m = x.mean(axes, keepdims=True)
    v = ((x - m) ** 2).mean(axes, keepdims=True)
    y = (x - m) / np.sqrt(v + eps)
    return y * (1 if w is None else w) + (0 if b is None else b)


def np_group_norm(x, g, w, b, eps=1e-5):
    n, c = x.shape[:2]
    y = np_layer_norm(x.reshape(n, g, -1), (x.reshape(n, g, -1).shape[-1],), eps=eps).reshape(x.shape)
    cs = (1, c) + (1,) * (x.ndim - 2)
    return y * w.reshape(cs) + b.reshape(cs)


LN_CASES = [((4, 7, 33), (33,)), ((3, 5, 6), (5, 6)), ((2, 300), (300,)), ((5, 1), (1,))]


@pytest.mark.parametrize("shape,ns", simulator_subset(LN_CASES, {0, 1}, unpack=True))
def test_layer_norm_matches_numpy(device, rng, shape, ns):
    x = rng.standard_normal(shape) * 3 + 2
    w, b = rng.standard_normal(ns), rng.standard_normal(ns)
    c = lambda a: clnet.tensor(a.astype(np.float32))  # noqa: E731
    assert_close(norm.layer_norm(c(x), ns, c(w), c(b)), np_layer_norm(x, ns, w, b), rtol=1e-4, atol=1e-5)
    assert_close(norm.layer_norm(c(x), ns), np_layer_norm(x, ns), rtol=1e-4, atol=1e-5)
    assert_close(norm.layer_norm(c(x), ns, None, c(b), eps=0.1), np_layer_norm(x, ns, None, b, 0.1), rtol=1e-4,
                 atol=1e-5)


@pytest.mark.parametrize("affine", ["both", "weight", "none"])
def test_layer_norm_gradcheck(device, rng, affine):
    x = rng.standard_normal((3, 2, 5))
    w, b = rng.standard_normal((2, 5)), rng.standard_normal((2, 5))
    if affine == "both":
        gradcheck(lambda x, w, b: norm.layer_norm(x, (2, 5), w, b), x, w, b, device=device)
    elif affine == "weight":
        gradcheck(lambda x, w: norm.layer_norm(x, (2, 5), w), x, w, device=device)
    else:
        gradcheck(lambda x: norm.layer_norm(x, (2, 5)), x, device=device)


def test_group_norm_matches_numpy_and_gradcheck(device, rng):
    x = rng.standard_normal((2, 6, 3, 4))
    w, b = rng.standard_normal(6), rng.standard_normal(6)
    c = lambda a: clnet.tensor(a.astype(np.float32))  # noqa: E731
    assert_close(norm.group_norm(c(x), 3, c(w), c(b)), np_group_norm(x, 3, w, b), rtol=1e-4, atol=1e-5)
    gradcheck(lambda x, w, b: norm.group_norm(x, 2, w, b), x[:, :, :2, :2], w, b, device=device)


def test_layer_and_group_norm_like_torch(device, rng):
    x = rng.standard_normal((4, 6, 5)).astype(np.float32)
    w, b = rng.standard_normal(5).astype(np.float32), rng.standard_normal(5).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    cx, cw, cb = (clnet.tensor(a, requires_grad=True) for a in (x, w, b))
    torch.nn.functional.layer_norm(tx, (5,), tw, tb).backward(torch.tensor(g))
    F.layer_norm(cx, (5,), cw, cb).backward(clnet.tensor(g))
    for c, t in ((cx, tx), (cw, tw), (cb, tb)):
        assert_close(c.grad, t.grad.numpy(), rtol=1e-4, atol=1e-5)
    w6, b6 = rng.standard_normal(6).astype(np.float32), rng.standard_normal(6).astype(np.float32)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w6, b6))
    cx, cw, cb = (clnet.tensor(a, requires_grad=True) for a in (x, w6, b6))
    ty = torch.nn.functional.group_norm(tx, 3, tw, tb)
    cy = F.group_norm(cx, 3, cw, cb)
    assert_close(cy, ty.detach().numpy(), rtol=1e-4, atol=1e-5)
    ty.backward(torch.tensor(g))
    cy.backward(clnet.tensor(g))
    for c, t in ((cx, tx), (cw, tw), (cb, tb)):
        assert_close(c.grad, t.grad.numpy(), rtol=1e-4, atol=1e-4)


def test_instance_norm_with_running_stats_like_torch(device, rng):
    x = rng.standard_normal((3, 4, 5, 2)).astype(np.float32) * 2 + 1
    tm = torch.nn.InstanceNorm2d(4, affine=True, track_running_stats=True, momentum=0.3)
    cm = clnet.nn.InstanceNorm2d(4, affine=True, track_running_stats=True, momentum=0.3)
    with torch.no_grad():
        tm.weight.copy_(torch.tensor(rng.standard_normal(4)))
        tm.bias.copy_(torch.tensor(rng.standard_normal(4)))
    cm.load_state_dict({k: v.numpy() for k, v in tm.state_dict().items()})
    assert_close(cm(clnet.tensor(x)), tm(torch.tensor(x)).detach().numpy(), rtol=1e-4, atol=1e-5)
    assert_close(cm.running_mean, tm.running_mean.numpy(), rtol=1e-5, atol=1e-6)
    assert_close(cm.running_var, tm.running_var.numpy(), rtol=1e-5, atol=1e-6)
    tm.eval()
    cm.eval()
    assert_close(cm(clnet.tensor(x)), tm(torch.tensor(x)).detach().numpy(), rtol=1e-4, atol=1e-5)
    plain_t, plain_c = torch.nn.InstanceNorm1d(4), clnet.nn.InstanceNorm1d(4)
    x3 = x.reshape(3, 4, 10)
    assert_close(plain_c(clnet.tensor(x3)), plain_t(torch.tensor(x3)).numpy(), rtol=1e-4, atol=1e-5)
    assert_close(plain_c(clnet.tensor(x3[0])), plain_t(torch.tensor(x3[0])).numpy(), rtol=1e-4, atol=1e-5)


def test_norm_rejects_bad_arguments(device):
    x = clnet.randn(2, 6, 3)
    with pytest.raises(ValueError, match="trailing dimensions"):
        F.layer_norm(x, (6,))
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\)"):
        F.layer_norm(x, (3,), clnet.ones(4))
    with pytest.raises(ValueError, match="divisible by num_groups"):
        F.group_norm(x, 4)
    with pytest.raises(TypeError, match="floating-point"):
        F.layer_norm(clnet.tensor([[1, 2]]), (2,))


def test_layer_norm_group_per_row_path(device, rng, monkeypatch):
    """GPUs reduce a long row with a work-group; force that path here and compare with numpy."""
    from clnet.ops import norm as norm_ops
    monkeypatch.setattr(norm_ops, "row_group_size", lambda dev, rows, n, inner=1: min(16, dev.max_work_group_size))
    x = rng.standard_normal((3, 100)) * 2 + 5
    w, b = rng.standard_normal(100), rng.standard_normal(100)
    cx = clnet.tensor(x.astype(np.float32), requires_grad=True)
    y = norm.layer_norm(cx, (100,), clnet.tensor(w.astype(np.float32)), clnet.tensor(b.astype(np.float32)))
    assert_close(y, np_layer_norm(x, (100,), w, b), rtol=1e-4, atol=1e-4)
    g = rng.standard_normal(x.shape)
    y.backward(clnet.tensor(g.astype(np.float32)))
    tx = torch.tensor(x, requires_grad=True)
    torch.nn.functional.layer_norm(tx, (100,), torch.tensor(w), torch.tensor(b)).backward(torch.tensor(g))
    assert_close(cx.grad, tx.grad.numpy(), rtol=1e-3, atol=1e-4)

"""The same expressions in clnet and PyTorch CPU: values and gradients must agree (as micrograd's
test_engine.py checks micrograd against torch)."""
from __future__ import annotations

import numpy as np
import pytest

import clnet

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def _dtypes(device):
    """float64 on both sides where the device has it; float32 (looser tolerance) elsewhere."""
    if device.fp64:
        return clnet.float64, torch.float64, 1e-9
    return clnet.float32, torch.float32, 2e-5


def _close(ours, theirs, tol):
    ours = ours.numpy().astype(np.float64) if isinstance(ours, clnet.Tensor) else np.float64(ours)
    theirs = theirs.detach().numpy().astype(np.float64)
    np.testing.assert_allclose(ours, theirs, rtol=tol, atol=tol)


def test_sanity_check(device):
    cdt, tdt, tol = _dtypes(device)

    def expression(x):
        z = 2 * x + 2 + x
        q = z.relu() + z * x
        h = (z * z).relu()
        y = h + q + q * x
        return y

    x = clnet.tensor([-4.0], dtype=cdt, requires_grad=True, device=device)
    y = expression(x)
    y.backward(clnet.ones_like(y))
    xt = torch.tensor([-4.0], dtype=tdt, requires_grad=True)
    yt = expression(xt)
    yt.backward(torch.ones_like(yt))
    _close(y, yt, tol)
    _close(x.grad, xt.grad, tol)


def _more_ops(a, b, inplace):
    c = a + b
    d = a * b + b ** 3
    if inplace:  # PyTorch (and clnet) run these in place on non-leaf tensors
        c += c + 1
        c += 1 + c + (-a)
        d += d * 2 + (b + a).relu()
        d += 3 * d + (b - a).relu()
    else:        # micrograd's Value rebinds instead
        c = c + c + 1
        c = c + 1 + c + (-a)
        d = d + d * 2 + (b + a).relu()
        d = d + 3 * d + (b - a).relu()
    e = c - d
    f = e ** 2
    g = f / 2.0
    g = g + 10.0 / f
    return g


@pytest.mark.parametrize("inplace", [False, True], ids=["rebind", "inplace"])
def test_more_ops(device, inplace):
    cdt, tdt, tol = _dtypes(device)
    a = clnet.tensor([-4.0], dtype=cdt, requires_grad=True, device=device)
    b = clnet.tensor([2.0], dtype=cdt, requires_grad=True, device=device)
    g = _more_ops(a, b, inplace)
    g.sum().backward()
    at = torch.tensor([-4.0], dtype=tdt, requires_grad=True)
    bt = torch.tensor([2.0], dtype=tdt, requires_grad=True)
    gt = _more_ops(at, bt, inplace)
    gt.sum().backward()
    _close(g, gt, tol)
    _close(a.grad, at.grad, tol)
    _close(b.grad, bt.grad, tol)


def _tensor_expression(lib, x, w, b, c):
    h = (x @ w + b).tanh()
    h = h * lib.sigmoid(h) - lib.maximum(h, c) + lib.minimum(h, c) * 0.5
    h = h.clamp(min=-0.8, max=0.9) + (h * h + 1).sqrt() + (h.abs() + 0.1).log()
    h = h.exp() / (1 + h ** 2) - h.relu()
    return lib.where(h > 0.5, h, -h).sum() + (h ** 3).mean()


def test_tensor_expression_with_broadcasting(device, rng):
    cdt, tdt, tol = _dtypes(device)
    arrays = [rng.standard_normal(s) for s in ((5, 4), (4, 3), (3,), (5, 1))]
    ours = [clnet.tensor(a, dtype=cdt, requires_grad=True, device=device) for a in arrays]
    theirs = [torch.tensor(a, dtype=tdt, requires_grad=True) for a in arrays]
    y = _tensor_expression(clnet, *ours)
    y.backward()
    yt = _tensor_expression(torch, *theirs)
    yt.backward()
    loose = max(tol, 1e-4 if cdt == clnet.float32 else tol)
    _close(y, yt, loose)
    for o, t in zip(ours, theirs):
        assert o.grad.shape == tuple(t.grad.shape)
        _close(o.grad, t.grad, loose)


def test_two_layer_autograd_steps(device, rng):
    """A few steps of the lecture's autograd two-layer net: losses and weights agree with torch."""
    cdt, tdt, tol = _dtypes(device)
    N, D_in, H, D_out = 16, 30, 12, 5
    data = [rng.standard_normal(s) for s in ((N, D_in), (N, D_out), (D_in, H), (H, D_out))]

    def train(lib, dt, no_grad, steps=5):
        x, y = (lib.tensor(a, dtype=dt) for a in data[:2])
        w1, w2 = (lib.tensor(a, dtype=dt, requires_grad=True) for a in data[2:])
        losses = []
        for _ in range(steps):
            y_pred = x.mm(w1).clamp(min=0).mm(w2)
            loss = (y_pred - y).pow(2).sum()
            losses.append(loss.item())
            loss.backward()
            with no_grad():
                w1 -= 1e-3 * w1.grad
                w2 -= 1e-3 * w2.grad
                w1.grad.zero_()
                w2.grad.zero_()
        return losses, w1

    ours, w1 = train(clnet, cdt, clnet.no_grad)
    theirs, w1t = train(torch, tdt, torch.no_grad)
    np.testing.assert_allclose(ours, theirs, rtol=max(tol, 1e-4 if cdt == clnet.float32 else 1e-9))
    _close(w1, w1t, max(tol, 1e-4))

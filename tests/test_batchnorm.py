"""clnet.ops.batchnorm (two passes each way, optional fused ReLU) against PyTorch, numpy float64 and finite
differences, through F.batch_norm and nn.BatchNorm1d/2d."""
from __future__ import annotations

import numpy as np
import pytest

import clnet
import clnet.nn.functional as F
from clnet.ops import batchnorm

from conftest import assert_close, gradcheck

# (shape, training, relu, affine): BatchNorm2d, BatchNorm1d on (N, C) and (N, C, L), eval mode, no affine
CASES = [
    ((4, 3, 5, 6), True, False, True),
    ((4, 3, 5, 6), True, True, True),
    ((8, 5), True, False, True),
    ((3, 4, 7), False, False, True),
    ((3, 4, 7), False, True, False),
    ((2, 3, 4, 4), True, False, False),
    ((5, 9, 3, 11), True, False, True),   # planes that fill no vector exactly
]


def _ref(x, rm, rv, w, b, training, momentum, eps, relu):
    """numpy float64: y, and the running statistics after the call."""
    axes = (0,) + tuple(range(2, x.ndim))
    cshape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    if training:
        mean, var = x.mean(axes), x.var(axes)
        n = x.size // x.shape[1]
        rm = (1 - momentum) * rm + momentum * mean
        rv = (1 - momentum) * rv + momentum * var * n / (n - 1)
    else:
        mean, var = rm, rv
    y = (x - mean.reshape(cshape)) / np.sqrt(var.reshape(cshape) + eps)
    if w is not None:
        y = y * w.reshape(cshape) + b.reshape(cshape)
    return (np.maximum(y, 0) if relu else y), rm, rv


@pytest.mark.parametrize("case", CASES, ids=str)
def test_matches_numpy_and_torch(device, rng, case):
    torch = pytest.importorskip("torch")
    shape, training, relu, affine = case
    C = shape[1]
    x = rng.standard_normal(shape) * 3 + 5          # an offset mean: the one-pass variance must stay exact
    w, b = rng.standard_normal(C), rng.standard_normal(C)
    rm, rv = rng.standard_normal(C), rng.random(C) + 0.5
    gy = rng.standard_normal(shape)
    y_ref, rm_ref, rv_ref = _ref(x, rm, rv, w if affine else None, b, training, 0.1, 1e-5, relu)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.batch_norm(tx, torch.tensor(rm), torch.tensor(rv), tw if affine else None,
                                        tb if affine else None, training, 0.1, 1e-5)
    (torch.relu(ty) if relu else ty).backward(torch.tensor(gy))
    f32 = lambda a, **kw: clnet.tensor(a.astype(np.float32), device=device, **kw)  # noqa: E731
    cx, cw, cb = f32(x, requires_grad=True), f32(w, requires_grad=True), f32(b, requires_grad=True)
    crm, crv = f32(rm), f32(rv)
    y = batchnorm.batch_norm(cx, crm, crv, cw if affine else None, cb if affine else None, training, 0.1, 1e-5,
                             relu=relu)
    y.backward(f32(gy))
    assert_close(y, y_ref, rtol=1e-4, atol=1e-4, what="output")
    assert_close(crm, rm_ref, rtol=1e-5, atol=1e-5, what="running mean")
    assert_close(crv, rv_ref, rtol=1e-4, atol=1e-5, what="running var")
    assert_close(cx.grad, tx.grad.numpy(), rtol=1e-4, atol=1e-4, what="grad input")
    if affine:
        assert_close(cw.grad, tw.grad.numpy(), rtol=1e-4, atol=2e-4, what="grad weight")
        assert_close(cb.grad, tb.grad.numpy(), rtol=1e-4, atol=2e-4, what="grad bias")


@pytest.mark.parametrize("training", [True, False])
def test_gradcheck(device, training):
    rng = np.random.default_rng(5)
    x, w, b = rng.standard_normal((3, 2, 4, 3)) + 2, rng.standard_normal(2), rng.standard_normal(2)
    rm, rv = rng.standard_normal(2), rng.random(2) + 0.5

    def fn(a, ww, bb):
        # fresh running statistics per call: training updates them in place
        return batchnorm.batch_norm(a, clnet.tensor(rm, device=device), clnet.tensor(rv, device=device), ww, bb,
                                    training, 0.1, 1e-5, relu=True)
    gradcheck(fn, x, w, b, device=device)


def test_float64_and_strided_input(device, rng):
    """float64 to 1e-12, and a non-contiguous input (a permuted view) read through its strides."""
    if not device.fp64:
        pytest.skip("no float64")
    x = rng.standard_normal((3, 5, 4, 6)) * 2 - 1
    w, b = rng.standard_normal(4), rng.standard_normal(4)
    xt = clnet.tensor(x, device=device).permute(0, 2, 1, 3)          # (3, 4, 5, 6), channels not outermost
    y = batchnorm.batch_norm(xt, None, None, clnet.tensor(w, device=device), clnet.tensor(b, device=device), True)
    y_ref, _, _ = _ref(x.transpose(0, 2, 1, 3), np.zeros(4), np.ones(4), w, b, True, 0.1, 1e-5, False)
    assert_close(y, y_ref, rtol=1e-12, atol=1e-12)


def test_modules_use_it(device, rng):
    """nn.BatchNorm2d in train and eval mode gives PyTorch's outputs and running statistics."""
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
    tm, cm = torch.nn.BatchNorm2d(3), clnet.nn.BatchNorm2d(3).to(device)
    for train in (True, False):
        tm.train(train)
        cm.train(train)
        assert_close(cm(clnet.tensor(x, device=device)), tm(torch.tensor(x)).detach().numpy(), rtol=1e-4, atol=1e-4)
        assert_close(cm.running_var, tm.running_var.numpy(), rtol=1e-5, atol=1e-6)


def test_bad_input(device):
    x = clnet.ones((2, 3, 4), device=device)
    with pytest.raises(ValueError, match=r"running_mean must have shape \(3,\)"):
        F.batch_norm(x, clnet.zeros(4, device=device), clnet.ones(3, device=device), training=True)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        F.batch_norm(clnet.ones((1, 3), device=device), None, None, training=True)
    with pytest.raises(ValueError, match="needed when training=False"):
        F.batch_norm(x, None, None, training=False)
    with pytest.raises(TypeError, match="floating point"):
        F.batch_norm(clnet.ones((2, 3), dtype=clnet.int32, device=device), None, None, training=True)

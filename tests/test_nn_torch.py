"""Side by side with PyTorch (CPU, optional): load PyTorch's weights into clnet with load_state_dict
(numpy arrays), run the same forward and backward on the same data, compare outputs and gradients.

Tolerances are float32's: rtol=1e-5 / atol=1e-5 for single ops, 1e-4 where a result goes through a
reduction over a batch (BatchNorm statistics, mean losses over many rows) or through several layers.
"""
from __future__ import annotations

import numpy as np
import pytest

import clnet
import clnet.nn as cnn
import clnet.nn.functional as CF
from conftest import assert_close, small

torch = pytest.importorskip("torch")
tnn = torch.nn
TF = torch.nn.functional

RTOL, ATOL = 1e-5, 1e-5          # one op in float32
RTOL_DEEP, ATOL_DEEP = 1e-4, 1e-4  # through batch reductions or several layers


def _np_state(module):
    return {k: v.detach().numpy() for k, v in module.state_dict().items()}


def _pair(x, requires_grad=True):
    """The same float32 data as a torch leaf and a clnet leaf."""
    x = np.asarray(x, np.float32)
    return torch.tensor(x, requires_grad=requires_grad), clnet.tensor(x, requires_grad=requires_grad)


def _backward_both(t_out, c_out, rng):
    g = np.asarray(rng.standard_normal(tuple(t_out.shape)), np.float32).reshape(tuple(t_out.shape))
    t_out.backward(torch.tensor(g))
    c_out.backward(clnet.tensor(g))


def _compare_params(tmod, cmod, rtol, atol):
    cparams = dict(cmod.named_parameters())
    for name, p in tmod.named_parameters():
        assert_close(cparams[name].grad, p.grad.numpy(), rtol=rtol, atol=atol, what=f"grad of {name}")


@pytest.mark.parametrize("shape", [(6, 5), (2, 3, 5)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_like_torch(device, rng, shape, bias):
    tl = tnn.Linear(5, 4, bias=bias)
    cl = cnn.Linear(5, 4, bias=bias)
    cl.load_state_dict(_np_state(tl))
    tx, cx = _pair(rng.standard_normal(shape))
    ty, cy = tl(tx), cl(cx)
    assert_close(cy, ty.detach().numpy(), rtol=RTOL, atol=ATOL)
    _backward_both(ty, cy, rng)
    assert_close(cx.grad, tx.grad.numpy(), rtol=RTOL, atol=ATOL)
    _compare_params(tl, cl, RTOL, ATOL)


@pytest.mark.parametrize("cls,shape", [("BatchNorm1d", (8, 3)), ("BatchNorm1d", (4, 3, 5)),
                                       ("BatchNorm2d", (4, 3, 5, 2))])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_like_torch_train_and_eval(device, rng, cls, shape, affine):
    tb = getattr(tnn, cls)(3, momentum=0.3, affine=affine)
    if affine:
        with torch.no_grad():
            tb.weight.copy_(torch.tensor(rng.standard_normal(3) + 1))
            tb.bias.copy_(torch.tensor(rng.standard_normal(3)))
    cb = getattr(cnn, cls)(3, momentum=0.3, affine=affine)
    cb.load_state_dict(_np_state(tb))
    for _ in range(2):  # training: batch statistics, running statistics updated
        tx, cx = _pair(rng.standard_normal(shape) * 2 + 0.5)
        ty, cy = tb(tx), cb(cx)
        assert_close(cy, ty.detach().numpy(), rtol=RTOL_DEEP, atol=ATOL_DEEP)
        _backward_both(ty, cy, rng)
        assert_close(cx.grad, tx.grad.numpy(), rtol=RTOL_DEEP, atol=ATOL_DEEP)
        if affine:
            _compare_params(tb, cb, RTOL_DEEP, ATOL_DEEP)
        tb.zero_grad()
        cb.zero_grad()
    for name, value in tb.state_dict().items():
        assert_close(cb.state_dict()[name], value.numpy(), rtol=RTOL_DEEP, atol=ATOL_DEEP, what=name)
    tb.eval()
    cb.eval()
    tx, cx = _pair(rng.standard_normal(shape))
    ty, cy = tb(tx), cb(cx)
    assert_close(cy, ty.detach().numpy(), rtol=RTOL, atol=ATOL)
    _backward_both(ty, cy, rng)
    assert_close(cx.grad, tx.grad.numpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("log", [False, True])
def test_softmax_like_torch(device, rng, dim, log):
    n = small(device, 700, 40)  # long enough rows for the work-group variant on real devices
    tx, cx = _pair(rng.standard_normal((3, n)) * 3)
    ty = (TF.log_softmax if log else TF.softmax)(tx, dim)
    cy = (CF.log_softmax if log else CF.softmax)(cx, dim)
    assert_close(cy, ty.detach().numpy(), rtol=RTOL, atol=ATOL)
    _backward_both(ty, cy, rng)
    assert_close(cx.grad, tx.grad.numpy(), rtol=RTOL, atol=ATOL)


CE_CASES = [
    dict(shape=(16, 10)),
    dict(shape=(16, 10), weight=True, ignore=True),
    dict(shape=(16, 10), eps=0.1),
    dict(shape=(16, 10), weight=True, eps=0.25, ignore=True),
    dict(shape=(4, 5, 3, 2), weight=True, eps=0.1, ignore=True),
    dict(shape=(10,), eps=0.1),
    dict(shape=(3, 300), weight=True, eps=0.05),
]


def _class_case(rng, case):
    shape = case["shape"]
    C = shape[0] if len(shape) == 1 else shape[1]
    tshape = () if len(shape) == 1 else (shape[0],) + shape[2:]
    t = rng.integers(0, C, size=tshape)
    if case.get("ignore") and t.ndim:
        t.reshape(-1)[::4] = -100
    w = (rng.random(C) + 0.5).astype(np.float32) if case.get("weight") else None
    return rng.standard_normal(shape) * 2, t, w


@pytest.mark.parametrize("case", CE_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_like_torch(device, rng, case, reduction):
    x, t, w = _class_case(rng, case)
    tx, cx = _pair(x)
    eps = case.get("eps", 0.0)
    tl = tnn.CrossEntropyLoss(weight=None if w is None else torch.tensor(w), reduction=reduction,
                              label_smoothing=eps)(tx, torch.tensor(t))
    cl = cnn.CrossEntropyLoss(weight=None if w is None else clnet.tensor(w), reduction=reduction,
                              label_smoothing=eps)(cx, clnet.tensor(t))
    assert_close(cl, tl.detach().numpy(), rtol=RTOL_DEEP, atol=ATOL)
    _backward_both(tl, cl, rng)
    assert_close(cx.grad, tx.grad.numpy(), rtol=RTOL_DEEP, atol=ATOL)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_probability_targets_like_torch(device, rng, reduction):
    x = rng.standard_normal((6, 5))
    p = rng.random((6, 5))
    p /= p.sum(1, keepdims=True)
    w = (rng.random(5) + 0.5).astype(np.float32)
    tx, cx = _pair(x)
    tp, cp = _pair(p)
    tl = TF.cross_entropy(tx, tp, weight=torch.tensor(w), reduction=reduction, label_smoothing=0.1)
    cl = CF.cross_entropy(cx, cp, weight=clnet.tensor(w), reduction=reduction, label_smoothing=0.1)
    assert_close(cl, tl.detach().numpy(), rtol=RTOL, atol=ATOL)
    _backward_both(tl, cl, rng)
    assert_close(cx.grad, tx.grad.numpy(), rtol=RTOL, atol=ATOL)
    assert_close(cp.grad, tp.grad.numpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("case", [dict(shape=(12, 6)), dict(shape=(12, 6), weight=True, ignore=True),
                                  dict(shape=(3, 4, 5), weight=True, ignore=True), dict(shape=(6,))],
                         ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss_like_torch(device, rng, case, reduction):
    x, t, w = _class_case(rng, case)
    tx, cx = _pair(x)
    tl = tnn.NLLLoss(weight=None if w is None else torch.tensor(w), reduction=reduction)(
        TF.log_softmax(tx, 0 if tx.ndim == 1 else 1), torch.tensor(t))
    cl = cnn.NLLLoss(weight=None if w is None else clnet.tensor(w), reduction=reduction)(
        CF.log_softmax(cx, 0 if cx.ndim == 1 else 1), clnet.tensor(t))
    assert_close(cl, tl.detach().numpy(), rtol=RTOL, atol=ATOL)
    _backward_both(tl, cl, rng)
    assert_close(cx.grad, tx.grad.numpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", ["MSELoss", "L1Loss", "BCELoss", "BCEWithLogitsLoss"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_pointwise_losses_like_torch(device, rng, name, reduction, weighted):
    shape = (5, 4)
    x = rng.uniform(0.05, 0.95, shape) if name == "BCELoss" else rng.standard_normal(shape) * 2
    y = rng.random(shape) if name.startswith("BCE") else rng.standard_normal(shape)
    kwargs_t, kwargs_c = dict(reduction=reduction), dict(reduction=reduction)
    if weighted:
        if name in ("MSELoss", "L1Loss"):
            pytest.skip(f"{name} has no weight")
        w = (rng.random(shape) + 0.5).astype(np.float32)
        kwargs_t["weight"], kwargs_c["weight"] = torch.tensor(w), clnet.tensor(w)
        if name == "BCEWithLogitsLoss":
            pw = (rng.random(4) + 0.5).astype(np.float32)
            kwargs_t["pos_weight"], kwargs_c["pos_weight"] = torch.tensor(pw), clnet.tensor(pw)
    tx, cx = _pair(x)
    ty, cy = _pair(y)
    tl = getattr(tnn, name)(**kwargs_t)(tx, ty)
    cl = getattr(cnn, name)(**kwargs_c)(cx, cy)
    assert_close(cl, tl.detach().numpy(), rtol=RTOL, atol=ATOL)
    _backward_both(tl, cl, rng)
    assert_close(cx.grad, tx.grad.numpy(), rtol=RTOL, atol=ATOL)
    assert_close(cy.grad, ty.grad.numpy(), rtol=RTOL, atol=ATOL)  # targets are differentiable too


def test_dropout_eval_is_identity_like_torch(device, rng):
    tx, cx = _pair(rng.standard_normal((4, 6)))
    td, cd = tnn.Dropout(0.4).eval(), cnn.Dropout(0.4).eval()
    assert_close(cd(cx), td(tx).detach().numpy(), rtol=0, atol=0)


@pytest.mark.parametrize("padding,k", [("same", 3), ("same", 4), ("valid", 3), (1, 3)])
def test_conv2d_module_like_torch(device, rng, padding, k):
    tc = tnn.Conv2d(2, 3, k, padding=padding)
    cc = cnn.Conv2d(2, 3, k, padding=padding)
    cc.load_state_dict(_np_state(tc))
    tx, cx = _pair(rng.standard_normal((2, 2, 6, 5)))
    ty, cy = tc(tx), cc(cx)
    assert_close(cy, ty.detach().numpy(), rtol=RTOL_DEEP, atol=ATOL)
    _backward_both(ty, cy, rng)
    assert_close(cx.grad, tx.grad.numpy(), rtol=RTOL_DEEP, atol=ATOL)
    _compare_params(tc, cc, RTOL_DEEP, ATOL_DEEP)


def _mlps():
    def build(nn):
        return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 8),
                             nn.Tanh(), nn.Linear(8, 3))
    return build(tnn), build(cnn)


def test_whole_model_state_dict_from_torch(device, rng):
    """PyTorch's state_dict keys are clnet's: a torch model's weights load as they are (eval mode)."""
    tm, cm = _mlps()
    tm.train()
    tm(torch.randn(16, 6))  # move the running statistics away from their initial values
    assert list(_np_state(tm)) == list(cm.state_dict())
    cm.load_state_dict(_np_state(tm))
    tm.eval()
    cm.eval()
    tx, cx = _pair(rng.standard_normal((5, 6)))
    t = rng.integers(0, 3, 5)
    tl = TF.cross_entropy(tm(tx), torch.tensor(t))
    cl = CF.cross_entropy(cm(cx), clnet.tensor(t))
    assert_close(cl, tl.detach().numpy(), rtol=RTOL_DEEP, atol=ATOL_DEEP)
    tl.backward()
    cl.backward()
    assert_close(cx.grad, tx.grad.numpy(), rtol=RTOL_DEEP, atol=ATOL_DEEP)
    _compare_params(tm, cm, RTOL_DEEP, ATOL_DEEP)


def test_state_dict_back_to_torch(device):
    tm, cm = _mlps()
    tm.load_state_dict({k: torch.tensor(v.numpy()) for k, v in cm.state_dict().items()})
    for k, v in tm.state_dict().items():
        assert_close(cm.state_dict()[k], v.numpy(), rtol=0, atol=0, what=k)


def test_repr_like_torch(device):
    tm, cm = _mlps()
    assert repr(cm) == repr(tm)
    for t_mod, c_mod in [(tnn.Conv2d(1, 4, 3, stride=2, padding=1), cnn.Conv2d(1, 4, 3, stride=2, padding=1)),
                         (tnn.MaxPool2d(2), cnn.MaxPool2d(2)), (tnn.Softmax(dim=1), cnn.Softmax(dim=1)),
                         (tnn.BatchNorm2d(4), cnn.BatchNorm2d(4)), (tnn.Flatten(), cnn.Flatten()),
                         (tnn.CrossEntropyLoss(), cnn.CrossEntropyLoss())]:
        assert repr(c_mod) == repr(t_mod)

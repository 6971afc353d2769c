"""Layers and init: numpy float64 references, finite-difference gradient checks of inputs AND parameters
(float64), PyTorch's initialisation rules, and train/eval behaviour of Dropout and BatchNorm."""
from __future__ import annotations

import math

import numpy as np
import pytest

import clnet
import clnet.nn as nn
import clnet.nn.functional as F
from conftest import assert_close, numeric_grad, small


def module_gradcheck(module, x, device, rtol=1e-4, atol=1e-6):
    """Finite differences (float64) of sum(module(x) * w) for the input and every parameter."""
    if not device.fp64:
        pytest.skip(f"{device.name} has no float64 for finite differences")
    module.double()
    x = np.asarray(x, np.float64)
    xt = clnet.tensor(x, device=device, requires_grad=True)
    out = module(xt)
    w = np.random.default_rng(5).standard_normal(out.shape)
    (out * clnet.tensor(w, device=device)).sum().backward()

    def value():
        return float((module(clnet.tensor(current_x[0], device=device)).numpy() * w).sum())
    current_x = [x]

    def f_x(v):
        current_x[0] = v
        return value()
    assert_close(xt.grad, numeric_grad(f_x, x.copy()), rtol=rtol, atol=atol, what="input gradient")
    current_x[0] = x
    for name, p in module.named_parameters():
        base = p.numpy().astype(np.float64)

        def f_p(v, p=p):
            with clnet.no_grad():
                p.copy_(clnet.tensor(v, device=device))
            return value()
        expected = numeric_grad(f_p, base.copy())
        f_p(base)
        assert p.grad is not None, f"{name} got no gradient"
        assert_close(p.grad, expected, rtol=rtol, atol=atol, what=f"gradient of {name}")


# --- Linear and Identity ------------------------------------------------------------------------------------
def test_linear_forward_matches_numpy(device, rng):
    lin = nn.Linear(5, 3)
    x = rng.standard_normal((4, 5)).astype(np.float32)
    w, b = lin.weight.numpy().astype(np.float64), lin.bias.numpy().astype(np.float64)
    assert lin.weight.shape == (3, 5) and lin.bias.shape == (3,)
    assert_close(lin(clnet.tensor(x)), x @ w.T + b, rtol=1e-5, atol=1e-6)
    x3 = rng.standard_normal((2, 4, 5)).astype(np.float32)  # leading dims are batch dims
    assert_close(lin(clnet.tensor(x3)), x3 @ w.T + b, rtol=1e-5, atol=1e-6)
    x1 = rng.standard_normal(5).astype(np.float32)
    assert_close(lin(clnet.tensor(x1)), x1 @ w.T + b, rtol=1e-5, atol=1e-6)
    nobias = nn.Linear(5, 3, bias=False)
    assert nobias.bias is None
    assert_close(nobias(clnet.tensor(x)), x @ nobias.weight.numpy().T.astype(np.float64), rtol=1e-5, atol=1e-6)


def test_linear_gradcheck(device, rng):
    module_gradcheck(nn.Linear(4, 3), rng.standard_normal((2, 4)), device)
    module_gradcheck(nn.Linear(3, 2, bias=False), rng.standard_normal((2, 2, 3)), device)


def test_linear_init_follows_pytorch(device):
    fan_in = small(device, 256, 64)
    lin = nn.Linear(fan_in, 128)
    bound = 1 / math.sqrt(fan_in)  # kaiming_uniform_(a=sqrt(5)) == U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    w, b = lin.weight.numpy(), lin.bias.numpy()
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.05 * bound / math.sqrt(3)
    assert abs(w.mean()) < 0.05 * bound
    assert np.unique(w).size > w.size // 2  # actually random


def test_linear_rejects_bad_shapes(device):
    lin = nn.Linear(3, 2)
    with pytest.raises(ValueError, match=r"input of shape \(4, 5\) does not end in in_features=3"):
        lin(clnet.ones(4, 5))
    with pytest.raises(ValueError, match="in_features must be"):
        nn.Linear(-1, 2)
    with pytest.raises(ValueError, match=r"bias must have shape \(2,\)"):
        F.linear(clnet.ones(1, 3), clnet.ones(2, 3), clnet.ones(3))


def test_identity(device):
    x = clnet.ones(2)
    assert nn.Identity(54, unused="x")(x) is x


# --- activations ----------------------------------------------------------------------------------------------
ACTIVATIONS = [
    (nn.ReLU, lambda x: np.maximum(x, 0)),
    (nn.Sigmoid, lambda x: 1 / (1 + np.exp(-x))),
    (nn.Tanh, np.tanh),
    (lambda: nn.LeakyReLU(0.2), lambda x: np.where(x < 0, 0.2 * x, x)),
    (lambda: nn.Softmax(dim=1), lambda x: np.exp(x) / np.exp(x).sum(1, keepdims=True)),
    (lambda: nn.LogSoftmax(dim=-1), lambda x: x - np.log(np.exp(x).sum(-1, keepdims=True))),
]


@pytest.mark.parametrize("make,ref", ACTIVATIONS, ids=lambda v: getattr(v, "__name__", ""))
def test_activation_matches_numpy_and_gradcheck(device, rng, make, ref):
    x = rng.standard_normal((3, 4))
    assert_close(make()(clnet.tensor(x.astype(np.float32))), ref(x), rtol=1e-5, atol=1e-6)
    module_gradcheck(make(), x, device)


def test_relu_inplace(device):
    x = clnet.tensor([-1.0, 2.0])
    y = nn.ReLU(inplace=True)(x)
    assert y is x and list(x.numpy()) == [0.0, 2.0]
    assert repr(nn.ReLU(inplace=True)) == "ReLU(inplace=True)"


# --- Flatten ----------------------------------------------------------------------------------------------------
def test_flatten_and_unflatten(device, rng):
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    t = clnet.tensor(x, requires_grad=True)
    y = nn.Flatten()(t)
    assert y.shape == (2, 60)
    assert_close(y, x.reshape(2, 60))
    assert nn.Flatten(0, 2)(t).shape == (24, 5)
    y.sum().backward()
    assert_close(t.grad, np.ones_like(x))
    assert nn.Unflatten(1, (3, 20))(y).shape == (2, 3, 20)


# --- Dropout ----------------------------------------------------------------------------------------------------
def test_dropout_train_drops_and_scales(device):
    n = small(device, 20000, 2000)
    p = 0.3
    x = clnet.ones(n, requires_grad=True)
    drop = nn.Dropout(p)
    y = drop(x)
    yv = y.numpy()
    kept = yv != 0
    assert abs(kept.mean() - (1 - p)) < (0.02 if n > 5000 else 0.06)
    assert_close(yv[kept], np.full(kept.sum(), 1 / (1 - p)), rtol=1e-6)
    y.backward(clnet.ones(n) * 2.0)
    assert_close(x.grad, np.where(kept, 2 / (1 - p), 0.0), rtol=1e-6)  # the same mask
    assert not np.array_equal(drop(x).numpy() != 0, kept)  # a fresh mask per call


def test_dropout_eval_and_edge_probabilities(device, rng):
    x = clnet.tensor(rng.standard_normal(50).astype(np.float32))
    drop = nn.Dropout(0.5).eval()
    assert drop(x) is x
    assert nn.Dropout(0.0)(x) is x
    zeros = nn.Dropout(1.0)(x).numpy()
    assert np.all(zeros == 0) and not np.any(np.isnan(zeros))
    assert F.dropout(x, 0.5, training=False) is x
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)


def test_dropout_is_reproducible_from_the_seed(device):
    x = clnet.ones(64)
    clnet.manual_seed(11)
    a = F.dropout(x, 0.5).numpy()
    clnet.manual_seed(11)
    b = F.dropout(x, 0.5).numpy()
    assert np.array_equal(a, b)


# --- BatchNorm ----------------------------------------------------------------------------------------------------
def np_batch_norm_train(x, w, b, eps):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean = x.mean(axes)
    var = x.var(axes)
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * w.reshape(shape) + b.reshape(shape)
    n = x.size // x.shape[1]
    return y, mean, var * n / (n - 1)


@pytest.mark.parametrize("cls,shape", [(nn.BatchNorm1d, (6, 3)), (nn.BatchNorm1d, (4, 3, 5)),
                                       (nn.BatchNorm2d, (3, 2, 4, 5))])
def test_batch_norm_train_then_eval(device, rng, cls, shape):
    C = shape[1]
    bn = cls(C, momentum=0.2)
    w, b = rng.standard_normal(C) + 1, rng.standard_normal(C)
    bn.load_state_dict({"weight": w, "bias": b, "running_mean": np.zeros(C), "running_var": np.ones(C),
                        "num_batches_tracked": np.array(0)})
    run_mean, run_var = np.zeros(C), np.ones(C)
    for step in range(2):
        x = rng.standard_normal(shape) * 3 + 1
        y, mean, var_unbiased = np_batch_norm_train(x, w, b, 1e-5)
        assert_close(bn(clnet.tensor(x.astype(np.float32))), y, rtol=1e-4, atol=1e-4)
        run_mean = 0.8 * run_mean + 0.2 * mean
        run_var = 0.8 * run_var + 0.2 * var_unbiased
    assert_close(bn.running_mean, run_mean, rtol=1e-4, atol=1e-5)
    assert_close(bn.running_var, run_var, rtol=1e-4, atol=1e-5)
    assert int(bn.num_batches_tracked.item()) == 2
    bn.eval()
    x = rng.standard_normal(shape)
    cs = (1, -1) + (1,) * (len(shape) - 2)
    expected = (x - run_mean.reshape(cs)) / np.sqrt(run_var.reshape(cs) + 1e-5) * w.reshape(cs) + b.reshape(cs)
    assert_close(bn(clnet.tensor(x.astype(np.float32))), expected, rtol=1e-4, atol=1e-4)
    assert int(bn.num_batches_tracked.item()) == 2  # eval leaves the statistics alone
    assert_close(bn.running_mean, run_mean, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_gradcheck(device, rng, training):
    bn = nn.BatchNorm2d(2)
    with clnet.no_grad():
        bn.weight.copy_(clnet.tensor([1.5, -0.5]))
        bn.bias.copy_(clnet.tensor([0.1, 0.2]))
        bn.running_mean.copy_(clnet.tensor([0.3, -0.2]))
        bn.running_var.copy_(clnet.tensor([2.0, 0.5]))
    bn.train(training)
    module_gradcheck(bn, rng.standard_normal((3, 2, 2, 3)), device)
    module_gradcheck(nn.BatchNorm1d(3, affine=False), rng.standard_normal((4, 3)), device)


def test_batch_norm_options(device, rng):
    x = rng.standard_normal((5, 2)).astype(np.float32)
    plain = nn.BatchNorm1d(2, affine=False)
    assert list(plain.parameters()) == []
    y, _, _ = np_batch_norm_train(x.astype(np.float64), np.ones(2), np.zeros(2), 1e-5)
    assert_close(plain(clnet.tensor(x)), y, rtol=1e-4, atol=1e-4)
    free = nn.BatchNorm1d(2, track_running_stats=False).eval()  # no running stats: batch statistics always
    assert free.running_mean is None and "running_mean" not in free.state_dict()
    assert_close(free(clnet.tensor(x)), y, rtol=1e-4, atol=1e-4)
    cma = nn.BatchNorm1d(2, momentum=None)  # cumulative moving average
    xs = [rng.standard_normal((4, 2)) for _ in range(3)]
    for xi in xs:
        cma(clnet.tensor(xi.astype(np.float32)))
    assert_close(cma.running_mean, np.mean([xi.mean(0) for xi in xs], axis=0), rtol=1e-4, atol=1e-5)
    assert_close(cma.running_var, np.mean([xi.var(0, ddof=1) for xi in xs], axis=0), rtol=1e-4, atol=1e-5)


def test_batch_norm_rejects_bad_input(device):
    with pytest.raises(ValueError, match="expected 4D input, got 2D"):
        nn.BatchNorm2d(3)(clnet.ones(2, 3))
    with pytest.raises(ValueError, match="expected 3 channels"):
        nn.BatchNorm1d(3)(clnet.ones(2, 4))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(3)(clnet.ones(1, 3))


# --- Conv2d and pooling (modules over clnet.ops.conv) ---------------------------------------------------------
def np_conv2d(x, w, b, stride=(1, 1), pads=((0, 0), (0, 0)), dilation=(1, 1)):
    xp = np.pad(x, ((0, 0), (0, 0)) + tuple(pads))
    N, C, H, W = xp.shape
    O, _, KH, KW = w.shape
    OH = (H - dilation[0] * (KH - 1) - 1) // stride[0] + 1
    OW = (W - dilation[1] * (KW - 1) - 1) // stride[1] + 1
    out = np.zeros((N, O, OH, OW))
    for i in range(KH):
        for j in range(KW):
            hi, wj = i * dilation[0], j * dilation[1]
            patch = xp[:, :, hi:hi + stride[0] * (OH - 1) + 1:stride[0], wj:wj + stride[1] * (OW - 1) + 1:stride[1]]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    return out + (0 if b is None else b.reshape(1, -1, 1, 1))


CONV_CASES = [dict(k=3), dict(k=3, stride=2, padding=1), dict(k=(2, 3), padding=(1, 0), dilation=2),
              dict(k=3, padding="same"), dict(k=4, padding="same"), dict(k=(2, 3), padding="same", dilation=(1, 2)),
              dict(k=3, padding="valid", bias=False)]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_conv2d_module_matches_numpy(device, rng, case):
    conv = nn.Conv2d(2, 3, case["k"], stride=case.get("stride", 1), padding=case.get("padding", 0),
                     dilation=case.get("dilation", 1), bias=case.get("bias", True))
    x = rng.standard_normal((2, 2, 7, 6)).astype(np.float32)
    w = conv.weight.numpy().astype(np.float64)
    b = conv.bias.numpy().astype(np.float64) if conv.bias is not None else None
    pad = case.get("padding", 0)
    if pad == "same":
        total = [conv.dilation[i] * (conv.kernel_size[i] - 1) for i in range(2)]
        pads = tuple((t // 2, t - t // 2) for t in total)  # the odd extra goes bottom/right, as PyTorch
    elif pad == "valid":
        pads = ((0, 0), (0, 0))
    else:
        p = (pad, pad) if isinstance(pad, int) else pad
        pads = ((p[0], p[0]), (p[1], p[1]))
    expected = np_conv2d(x.astype(np.float64), w, b, conv.stride, pads, conv.dilation)
    got = conv(clnet.tensor(x))
    if pad == "same":
        assert got.shape[2:] == x.shape[2:]
    assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_conv2d_module_gradcheck(device, rng):
    # (a 3x3 image on simulators: finite differences evaluate the module twice per input and weight)
    shape = small(device, (1, 2, 4, 5), (1, 2, 3, 3))
    module_gradcheck(nn.Conv2d(2, 2, 3, padding=1, stride=2), rng.standard_normal(shape), device)
    module_gradcheck(nn.Conv2d(1, 2, 2, padding="same"), rng.standard_normal((1, 1, 3, 3)), device)


def test_conv2d_init_and_repr(device):
    conv = nn.Conv2d(4, 8, 3)
    bound = 1 / math.sqrt(4 * 9)
    assert conv.weight.shape == (8, 4, 3, 3)
    assert np.abs(conv.weight.numpy()).max() <= bound and np.abs(conv.bias.numpy()).max() <= bound
    assert repr(conv) == "Conv2d(4, 8, kernel_size=(3, 3), stride=(1, 1))"
    assert "padding='same'" in repr(nn.Conv2d(1, 1, 3, padding="same"))
    assert nn.Conv2d(4, 6, 3, groups=2).weight.shape == (6, 2, 3, 3)
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv2d(4, 5, 3, groups=2)
    with pytest.raises(ValueError, match="strided"):
        nn.Conv2d(1, 1, 3, stride=2, padding="same")


def np_pool(x, k, s, p, op):
    pad_value = -np.inf if op == "max" else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=pad_value)
    OH = (x.shape[2] + 2 * p - k) // s + 1
    OW = (x.shape[3] + 2 * p - k) // s + 1
    out = np.zeros(x.shape[:2] + (OH, OW))
    for i in range(OH):
        for j in range(OW):
            win = xp[:, :, i * s:i * s + k, j * s:j * s + k]
            out[:, :, i, j] = win.max((2, 3)) if op == "max" else win.mean((2, 3))
    return out


@pytest.mark.parametrize("k,s,p", [(2, None, 0), (3, 2, 1), (3, 1, 0)])
def test_pool_modules_match_numpy_and_gradcheck(device, rng, k, s, p):
    x = rng.standard_normal((2, 3, 7, 6))
    for cls, op in ((nn.MaxPool2d, "max"), (nn.AvgPool2d, "avg")):
        mod = cls(k, s, p)
        assert_close(mod(clnet.tensor(x.astype(np.float32))), np_pool(x, k, s or k, p, op), rtol=1e-5, atol=1e-6)
        module_gradcheck(cls(k, s, p), x[:1, :small(device, 2, 1)], device)  # (one plane on simulators)


def test_pool_unsupported_options_are_explicit(device):
    with pytest.raises(NotImplementedError, match="ceil_mode"):
        nn.MaxPool2d(2, ceil_mode=True)
    with pytest.raises(NotImplementedError, match="count_include_pad"):
        nn.AvgPool2d(2, count_include_pad=False)


def test_small_cnn_end_to_end(device, rng):
    """Conv-BN-ReLU-Pool-Flatten-Dropout-Linear trains one step and all parameters get gradients."""
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Dropout(0.1), nn.Linear(4 * 4 * 4, 3))
    x = clnet.tensor(rng.standard_normal((5, 1, 8, 8)).astype(np.float32))
    loss = F.cross_entropy(model(x), clnet.tensor(rng.integers(0, 3, 5)))
    loss.backward()
    assert np.isfinite(loss.item())
    assert all(p.grad is not None and np.isfinite(p.grad.numpy()).all() for p in model.parameters())
    model.eval()
    assert model(x).shape == (5, 3)


# --- init --------------------------------------------------------------------------------------------------------
def test_calculate_gain():
    init = nn.init
    assert init.calculate_gain("linear") == 1 and init.calculate_gain("sigmoid") == 1
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))
    assert init.calculate_gain("leaky_relu", math.sqrt(5)) == pytest.approx(math.sqrt(1 / 3))
    assert init.calculate_gain("selu") == 0.75
    with pytest.raises(ValueError, match="unsupported nonlinearity"):
        init.calculate_gain("swish")


def _stats_tensor(device, shape):
    return clnet.empty(*shape, device=device)


@pytest.mark.parametrize("fn,kwargs,bound_or_std", [
    ("xavier_uniform_", dict(gain=2.0), ("bound", lambda fi, fo: 2.0 * math.sqrt(6 / (fi + fo)))),
    ("xavier_normal_", dict(), ("std", lambda fi, fo: math.sqrt(2 / (fi + fo)))),
    ("kaiming_uniform_", dict(a=0, nonlinearity="relu"), ("bound", lambda fi, fo: math.sqrt(2) * math.sqrt(3 / fi))),
    ("kaiming_uniform_", dict(mode="fan_out", nonlinearity="relu"),
     ("bound", lambda fi, fo: math.sqrt(2) * math.sqrt(3 / fo))),
    ("kaiming_normal_", dict(nonlinearity="relu"), ("std", lambda fi, fo: math.sqrt(2) / math.sqrt(fi))),
])
def test_fan_based_init(device, fn, kwargs, bound_or_std):
    shape = small(device, (64, 32, 3, 3), (16, 8, 3, 3))
    t = nn.Parameter(_stats_tensor(device, shape))
    fan_in, fan_out = shape[1] * 9, shape[0] * 9
    out = getattr(nn.init, fn)(t, **kwargs)
    assert out is t and t.requires_grad
    v = t.numpy()
    kind, formula = bound_or_std
    expected = formula(fan_in, fan_out)
    if kind == "bound":
        assert np.abs(v).max() <= expected
        assert abs(v.std() - expected / math.sqrt(3)) < 0.06 * expected
    else:
        assert abs(v.std() - expected) < 0.06 * expected
    assert abs(v.mean()) < 0.06 * (expected if kind == "std" else expected / math.sqrt(3))


def test_simple_init(device):
    t = _stats_tensor(device, (50, 40))
    assert nn.init.zeros_(t) is t and not np.any(t.numpy())
    nn.init.ones_(t)
    assert np.all(t.numpy() == 1)
    nn.init.constant_(t, 2.5)
    assert np.all(t.numpy() == 2.5)
    nn.init.uniform_(t, -3, -1)
    v = t.numpy()
    assert v.min() >= -3 and v.max() <= -1 and abs(v.mean() + 2) < 0.1
    nn.init.normal_(t, 5.0, 0.5)
    v = t.numpy()
    assert abs(v.mean() - 5) < 0.05 and abs(v.std() - 0.5) < 0.05
    nn.init.eye_(t)
    assert_close(t, np.eye(50, 40))


def test_init_errors(device):
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        nn.init.xavier_uniform_(clnet.empty(5))
    with pytest.raises(ValueError, match="fan_in, fan_out"):
        nn.init.kaiming_uniform_(clnet.empty(3, 3), mode="fan_avg")
    with pytest.raises(TypeError, match="floating-point"):
        nn.init.uniform_(clnet.zeros(3, dtype=clnet.int32))

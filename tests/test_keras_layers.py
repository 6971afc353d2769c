"""clnet.keras layers against numpy float64 references (Keras's NHWC layouts and "same" padding rules) and,
when PyTorch is installed, against torch for values and gradients of whole Dense/Conv2D models."""
import math

import numpy as np
import pytest

import clnet
from clnet import keras
from clnet.keras import layers

from conftest import assert_close, small
from keras_test_support import only_small_models_on_simulators  # noqa: F401  (autouse: small models on Oclgrind)


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.clear_session()
    keras.utils.set_random_seed(0)


# --- numpy references (float64, NHWC) ----------------------------------------------------------------
def same_pads(size, k, s, d=1):
    out = -(-size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def np_conv_nhwc(x, kernel, bias, strides, padding, dilation=(1, 1)):
    kh, kw, _, out_c = kernel.shape
    if padding == "same":
        (t, b), (l, r) = same_pads(x.shape[1], kh, strides[0], dilation[0]), same_pads(x.shape[2], kw, strides[1],
                                                                                      dilation[1])
        x = np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))
    n, h, w, _ = x.shape
    oh = (h - (kh - 1) * dilation[0] - 1) // strides[0] + 1
    ow = (w - (kw - 1) * dilation[1] - 1) // strides[1] + 1
    y = np.zeros((n, oh, ow, out_c))
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i * dilation[0]:i * dilation[0] + strides[0] * (oh - 1) + 1:strides[0],
                      j * dilation[1]:j * dilation[1] + strides[1] * (ow - 1) + 1:strides[1], :]
            y += patch @ kernel[i, j]
    return y + bias


def np_pool_nhwc(x, pool, strides, padding, kind):
    n, h, w, c = x.shape
    if padding == "same":
        (t, b), (l, r) = same_pads(h, pool[0], strides[0]), same_pads(w, pool[1], strides[1])
    else:
        t = b = l = r = 0
    fill = -np.inf if kind == "max" else np.nan
    xp = np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)), constant_values=fill)
    oh = (h + t + b - pool[0]) // strides[0] + 1
    ow = (w + l + r - pool[1]) // strides[1] + 1
    y = np.zeros((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            win = xp[:, i * strides[0]:i * strides[0] + pool[0], j * strides[1]:j * strides[1] + pool[1], :]
            y[:, i, j, :] = win.max(axis=(1, 2)) if kind == "max" else np.nanmean(win, axis=(1, 2))
    return y


# --- dense and activations ---------------------------------------------------------------------------
ACTIVATIONS = {
    "relu": lambda z: np.maximum(z, 0), "sigmoid": lambda z: 1 / (1 + np.exp(-z)), "tanh": np.tanh,
    "linear": lambda z: z, "softmax": lambda z: np.exp(z - z.max(-1, keepdims=True)) /
    np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True),
    "elu": lambda z: np.where(z > 0, z, np.expm1(z)), "softplus": lambda z: np.log1p(np.exp(z)),
    "silu": lambda z: z / (1 + np.exp(-z)), "relu6": lambda z: np.clip(z, 0, 6),
    "leaky_relu": lambda z: np.where(z >= 0, z, 0.2 * z),
}


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_dense_with_each_activation_matches_numpy(device, rng, activation):
    layer = layers.Dense(5, activation=activation)
    x = rng.standard_normal((6, 4)) * 2
    y = layer(x.astype(np.float32))
    kernel, bias = (w.astype(np.float64) for w in layer.get_weights())
    assert kernel.shape == (4, 5)
    assert_close(y, ACTIVATIONS[activation](x @ kernel + bias), rtol=1e-4, atol=1e-5)


def test_activation_as_callable_and_dense_on_3d_input(device, rng):
    layer = layers.Dense(3, activation=clnet.relu, use_bias=False)
    x = rng.standard_normal((2, 5, 4)).astype(np.float32)
    y = layer(x)
    (kernel,) = layer.get_weights()
    assert y.shape == (2, 5, 3)
    assert_close(y, np.maximum(x.astype(np.float64) @ kernel, 0), rtol=1e-4, atol=1e-5)


def test_core_shape_layers(device, rng):
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    assert_close(layers.Flatten()(x), x.reshape(2, -1))
    assert_close(layers.Reshape((12, 5))(x), x.reshape(2, 12, 5))
    assert_close(layers.Reshape((-1, 10))(x), x.reshape(2, 6, 10))
    assert layers.Reshape((-1, 10)).compute_output_shape((None, 3, 4, 5)) == (None, 6, 10)
    assert_close(layers.GlobalAveragePooling2D()(x), x.astype(np.float64).mean(axis=(1, 2)), rtol=1e-5)
    assert_close(layers.GlobalAveragePooling2D(keepdims=True)(x), x.astype(np.float64).mean((1, 2), keepdims=True),
                 rtol=1e-5)
    assert_close(layers.ReLU(max_value=1.0, negative_slope=0.1, threshold=0.5)(x),
                 np.where(x >= 0.5, np.minimum(x, 1.0), 0.1 * (x - 0.5)), rtol=1e-5, atol=1e-6)
    assert_close(layers.Softmax()(x), ACTIVATIONS["softmax"](x.astype(np.float64)), rtol=1e-5, atol=1e-6)
    assert_close(layers.Activation("tanh")(x), np.tanh(x), rtol=1e-5, atol=1e-6)


def test_dropout_is_identity_in_inference_and_scales_in_training(device):
    x = np.ones((small(device, 200, 20), 50), np.float32)
    layer = layers.Dropout(0.4)
    assert_close(layer(x), x)
    y = layer(x, training=True).numpy()
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1 / 0.6, rtol=1e-6)
    if y.size >= 10000:
        assert 0.35 < 1 - kept.mean() < 0.45


# --- convolution and pooling --------------------------------------------------------------------------
CONV_CASES = [  # (kernel, strides, padding, dilation)
    ((3, 3), (1, 1), "valid", (1, 1)), ((3, 3), (1, 1), "same", (1, 1)), ((3, 3), (2, 2), "same", (1, 1)),
    ((2, 2), (1, 1), "same", (1, 1)), ((4, 3), (2, 1), "same", (1, 1)), ((3, 3), (2, 2), "valid", (1, 1)),
    ((3, 3), (1, 1), "same", (2, 2)), ((1, 1), (1, 1), "valid", (1, 1)),
]


@pytest.mark.parametrize("kernel_size,strides,padding,dilation", CONV_CASES)
def test_conv2d_matches_numpy(device, rng, kernel_size, strides, padding, dilation):
    x = rng.standard_normal((2, 7, 8, 3))
    layer = layers.Conv2D(4, kernel_size, strides=strides, padding=padding, dilation_rate=dilation,
                          bias_initializer="he_normal")
    y = layer(x.astype(np.float32))
    kernel, bias = layer.get_weights()
    assert kernel.shape == kernel_size + (3, 4)
    expected = np_conv_nhwc(x, kernel.astype(np.float64), bias.astype(np.float64), strides, padding, dilation)
    assert y.shape == expected.shape
    assert layer.compute_output_shape((None, 7, 8, 3)) == (None,) + expected.shape[1:]
    assert_close(y, expected, rtol=1e-4, atol=1e-5)


POOL_CASES = [((2, 2), None, "valid"), ((2, 2), None, "same"), ((3, 3), (2, 2), "same"), ((3, 3), (1, 1), "valid"),
              ((3, 2), (2, 1), "same")]


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("pool,strides,padding", POOL_CASES)
def test_pooling_matches_numpy(device, rng, kind, pool, strides, padding):
    x = rng.standard_normal((2, 7, 5, 3))
    cls = layers.MaxPooling2D if kind == "max" else layers.AveragePooling2D
    layer = cls(pool, strides=strides, padding=padding)
    y = layer(x.astype(np.float32))
    expected = np_pool_nhwc(x, pool, strides or pool, padding, kind)
    assert layer.compute_output_shape((None, 7, 5, 3)) == (None,) + expected.shape[1:]
    assert_close(y, expected, rtol=1e-5, atol=1e-6)


def test_batch_normalization_training_and_inference(device, rng):
    x = (rng.standard_normal((16, 3, 3, 4)) * 3 + 2).astype(np.float32)
    bn = layers.BatchNormalization(momentum=0.9, epsilon=1e-3)
    gamma = rng.standard_normal(4).astype(np.float32)
    beta = rng.standard_normal(4).astype(np.float32)
    bn.build((None, 3, 3, 4))
    bn.set_weights([gamma, beta, np.zeros(4, np.float32), np.ones(4, np.float32)])
    x64 = x.astype(np.float64)
    mean, var = x64.mean((0, 1, 2)), x64.var((0, 1, 2))
    assert_close(bn(x, training=True), (x64 - mean) / np.sqrt(var + 1e-3) * gamma + beta, rtol=1e-4, atol=1e-4)
    count = x.size // 4
    moving_mean, moving_var = bn.get_weights()[2:]
    assert_close(moving_mean, 0.1 * mean, rtol=1e-4, atol=1e-5)
    assert_close(moving_var, 0.9 + 0.1 * var * count / (count - 1), rtol=1e-4, atol=1e-5)
    assert_close(bn(x), (x64 - moving_mean) / np.sqrt(moving_var + 1e-3) * gamma + beta, rtol=1e-4, atol=1e-4)
    assert [w.path for w in bn.weights] == [f"{bn.name}/gamma", f"{bn.name}/beta", f"{bn.name}/moving_mean",
                                           f"{bn.name}/moving_variance"]
    assert len(bn.trainable_weights) == 2


# --- against PyTorch -----------------------------------------------------------------------------------
def _torch_nhwc_conv(torch, x, kernel, bias, strides, padding):
    import torch.nn.functional as F
    xc = x.permute(0, 3, 1, 2)
    if padding == "same":
        (t, b), (l, r) = same_pads(xc.shape[2], kernel.shape[0], strides[0]), same_pads(xc.shape[3], kernel.shape[1],
                                                                                       strides[1])
        xc = F.pad(xc, (l, r, t, b))
    return F.conv2d(xc, kernel.permute(3, 2, 0, 1), bias, stride=strides).permute(0, 2, 3, 1)


@pytest.mark.torch
@pytest.mark.parametrize("padding,strides", [("valid", (1, 1)), ("same", (2, 2)), ("same", (1, 1))])
def test_conv_pool_gradients_match_pytorch(device, rng, padding, strides):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 9, 8, 3)).astype(np.float32)
    conv = layers.Conv2D(5, (3, 2), strides=strides, padding=padding, bias_initializer="he_normal")
    pool = layers.MaxPooling2D((2, 2), padding=padding)
    avg = layers.AveragePooling2D((3, 3), strides=(2, 2), padding=padding)
    xt = clnet.tensor(x, requires_grad=True)
    h = conv(xt)
    y = clnet.concat([pool(h).reshape(2, -1), avg(h).reshape(2, -1)], 1)
    w = rng.standard_normal(tuple(y.shape)).astype(np.float32)
    (y * clnet.tensor(w)).sum().backward()

    kernel, bias = conv.get_weights()
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    tk = torch.tensor(kernel, dtype=torch.float64, requires_grad=True)
    tb = torch.tensor(bias, dtype=torch.float64, requires_grad=True)
    th = _torch_nhwc_conv(torch, tx, tk, tb, strides, padding).permute(0, 3, 1, 2)
    import torch.nn.functional as F

    def tpool(t, k, s, kind):
        if padding == "same":
            (t0, b0), (l0, r0) = same_pads(t.shape[2], k, s), same_pads(t.shape[3], k, s)
            if kind == "max":
                return F.max_pool2d(F.pad(t, (l0, r0, t0, b0), value=-math.inf), k, s)
            ones = torch.ones_like(t[:1, :1])
            return F.avg_pool2d(F.pad(t, (l0, r0, t0, b0)), k, s) / F.avg_pool2d(F.pad(ones, (l0, r0, t0, b0)), k, s)
        return (F.max_pool2d if kind == "max" else F.avg_pool2d)(t, k, s)
    ty = torch.cat([tpool(th, 2, 2, "max").permute(0, 2, 3, 1).reshape(2, -1),
                    tpool(th, 3, 2, "avg").permute(0, 2, 3, 1).reshape(2, -1)], 1)
    (ty * torch.tensor(w, dtype=torch.float64)).sum().backward()
    assert_close(y, ty.detach().numpy(), rtol=1e-4, atol=1e-5, what="outputs")
    assert_close(xt.grad, tx.grad.numpy(), rtol=1e-4, atol=1e-4, what="input gradient")
    assert_close(conv.kernel.grad, tk.grad.numpy(), rtol=1e-4, atol=1e-4, what="kernel gradient")
    assert_close(conv.bias.grad, tb.grad.numpy(), rtol=1e-4, atol=1e-4, what="bias gradient")


@pytest.mark.torch
def test_convnet_matches_pytorch_forward_and_one_training_step(device, rng):
    """Same weights (Keras layouts converted to PyTorch's), same batch: outputs, loss and updated weights agree."""
    torch = pytest.importorskip("torch")
    model = keras.Sequential([
        keras.Input(shape=(10, 10, 2)),
        layers.Conv2D(4, (3, 3), activation="relu", padding="same"),
        layers.MaxPooling2D((2, 2)),
        layers.Flatten(),
        layers.Dense(6, activation="relu"),
        layers.Dense(3, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="categorical_crossentropy")
    x = rng.standard_normal((8, 10, 10, 2)).astype(np.float32)
    y = keras.utils.to_categorical(rng.integers(0, 3, 8), 3)
    k1, b1, k2, b2, k3, b3 = model.get_weights()

    tm = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                             _NhwcFlatten(torch), torch.nn.Linear(100, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    with torch.no_grad():
        tm[0].weight.copy_(torch.tensor(k1).permute(3, 2, 0, 1))
        tm[0].bias.copy_(torch.tensor(b1))
        tm[4].weight.copy_(torch.tensor(k2).T)
        tm[4].bias.copy_(torch.tensor(b2))
        tm[6].weight.copy_(torch.tensor(k3).T)
        tm[6].bias.copy_(torch.tensor(b3))
    tx = torch.tensor(x).permute(0, 3, 1, 2)
    assert_close(model.predict(x, verbose=0), torch.softmax(tm(tx), -1).detach().numpy(), rtol=1e-4, atol=1e-5,
                 what="predictions")
    opt = torch.optim.SGD(tm.parameters(), lr=0.1, momentum=0.9)
    for _ in range(2):
        opt.zero_grad()
        loss = -(torch.tensor(y) * torch.log_softmax(tm(tx), -1)).sum(-1).mean()
        loss.backward()
        opt.step()
    hist = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    assert_close(hist.history["loss"][-1], loss.item(), rtol=1e-4, what="loss of the second step")
    k1, _, k2, _, k3, b3 = model.get_weights()
    assert_close(k1, tm[0].weight.detach().permute(2, 3, 1, 0).numpy(), rtol=1e-4, atol=1e-5, what="conv kernel")
    assert_close(k2, tm[4].weight.detach().T.numpy(), rtol=1e-4, atol=1e-5, what="dense kernel")
    assert_close(b3, tm[6].bias.detach().numpy(), rtol=1e-4, atol=1e-5, what="output bias")


def _NhwcFlatten(torch):
    class Flatten(torch.nn.Module):
        def forward(self, t):  # Keras flattens channels-last
            return t.permute(0, 2, 3, 1).reshape(t.shape[0], -1)
    return Flatten()

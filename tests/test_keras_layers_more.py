"""The Keras 3 layers beyond the first set (conv variants, 1-D pooling, reshaping, parametric activations, Lambda,
Rescaling, Normalization, LayerNormalization, random augmentation) against real Keras 3 on its PyTorch backend:
same weights (set_weights with Keras's arrays), random inputs, outputs and the gradients of sum(y * w) with
respect to the input and every trainable weight. Then configs, symbolic shapes, saving, and small functional
models that train with fit()."""
import json
import os
import sys

import numpy as np
import pytest

import clnet
from clnet import keras
from clnet.keras import layers

from conftest import assert_close
from keras_test_support import only_small_models_on_simulators  # noqa: F401  (autouse: small models on Oclgrind)


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.clear_session()
    keras.utils.set_random_seed(0)


@pytest.fixture(scope="module")
def real_keras():
    """Keras 3 on its PyTorch backend (the backend must be chosen before keras is first imported)."""
    pytest.importorskip("torch")
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = "torch"
    k = pytest.importorskip("keras")
    if k.backend.backend() != "torch":
        pytest.skip(f"keras was imported with the {k.backend.backend()!r} backend; these tests need "
                    "KERAS_BACKEND=torch")
    return k


# (id, layer class, constructor arguments, input shape)
CASES = [
    ("conv1d", "Conv1D", dict(filters=4, kernel_size=3, activation="tanh"), (2, 9, 3)),
    ("conv1d_same_strided", "Conv1D", dict(filters=4, kernel_size=3, strides=2, padding="same"), (2, 10, 3)),
    ("conv1d_causal_dilated", "Conv1D", dict(filters=3, kernel_size=3, dilation_rate=2, padding="causal",
                                             activation="relu"), (2, 9, 2)),
    ("conv1d_groups", "Conv1D", dict(filters=4, kernel_size=2, groups=2, padding="same", use_bias=False), (2, 7, 6)),
    ("conv2d", "Conv2D", dict(filters=3, kernel_size=3, strides=2, padding="same"), (2, 7, 6, 2)),  # Keras's config
    ("convT_same_k3s2", "Conv2DTranspose", dict(filters=3, kernel_size=3, strides=2, padding="same"), (2, 5, 4, 2)),
    ("convT_valid_k3s2", "Conv2DTranspose", dict(filters=3, kernel_size=3, strides=2), (2, 4, 3, 2)),
    ("convT_same_k4s2", "Conv2DTranspose", dict(filters=2, kernel_size=4, strides=2, padding="same",
                                                activation="relu"), (2, 3, 4, 3)),
    ("convT_valid_k2s3", "Conv2DTranspose", dict(filters=2, kernel_size=2, strides=3), (1, 3, 3, 2)),
    ("convT_rect", "Conv2DTranspose", dict(filters=3, kernel_size=(3, 2), strides=(2, 1), padding="same"),
     (2, 4, 3, 2)),
    ("convT_dilated", "Conv2DTranspose", dict(filters=2, kernel_size=3, dilation_rate=2), (1, 4, 4, 2)),
    ("convT_output_padding", "Conv2DTranspose", dict(filters=2, kernel_size=3, strides=2, output_padding=1),
     (1, 3, 4, 2)),
    ("depthwise", "DepthwiseConv2D", dict(kernel_size=3), (2, 6, 5, 3)),
    ("depthwise_same_m2", "DepthwiseConv2D", dict(kernel_size=3, strides=2, padding="same", depth_multiplier=2),
     (2, 7, 6, 3)),
    ("depthwise_dilated", "DepthwiseConv2D", dict(kernel_size=(2, 3), dilation_rate=2, padding="same",
                                                  activation="tanh"), (1, 6, 7, 2)),
    ("separable", "SeparableConv2D", dict(filters=4, kernel_size=3, activation="relu"), (2, 6, 5, 3)),
    ("separable_same_m2", "SeparableConv2D", dict(filters=3, kernel_size=3, strides=2, padding="same",
                                                  depth_multiplier=2), (2, 7, 6, 2)),
    # data_format="channels_first" (NCHW in and out, pooled and convolved as given)
    ("conv2d_channels_first", "Conv2D", dict(filters=3, kernel_size=3, padding="same", activation="relu",
                                             data_format="channels_first"), (2, 2, 7, 6)),
    ("conv2d_channels_first_strided", "Conv2D", dict(filters=2, kernel_size=(3, 2), strides=2, activation="softmax",
                                                     data_format="channels_first"), (2, 3, 7, 6)),
    ("maxpool2d", "MaxPooling2D", dict(), (2, 7, 6, 3)),
    ("maxpool2d_channels_first", "MaxPooling2D", dict(data_format="channels_first"), (2, 3, 7, 6)),
    ("maxpool2d_channels_first_same", "MaxPooling2D", dict(pool_size=3, strides=2, padding="same",
                                                           data_format="channels_first"), (2, 3, 7, 6)),
    ("avgpool2d_channels_first", "AveragePooling2D", dict(pool_size=(2, 3), strides=1, data_format="channels_first"),
     (2, 3, 5, 6)),
    ("avgpool2d_channels_first_strided", "AveragePooling2D", dict(pool_size=3, strides=2,
                                                                  data_format="channels_first"), (2, 2, 7, 6)),
    ("gap2d_channels_first", "GlobalAveragePooling2D", dict(data_format="channels_first"), (2, 3, 4, 5)),
    ("gmp2d_channels_first_keepdims", "GlobalMaxPooling2D", dict(data_format="channels_first", keepdims=True),
     (2, 3, 4, 5)),
    ("flatten_channels_first", "Flatten", dict(data_format="channels_first"), (2, 3, 4, 5)),
    ("maxpool1d", "MaxPooling1D", dict(), (2, 9, 3)),
    ("maxpool1d_same", "MaxPooling1D", dict(pool_size=3, strides=2, padding="same"), (2, 8, 3)),
    ("avgpool1d", "AveragePooling1D", dict(pool_size=3, strides=1), (2, 7, 3)),
    ("avgpool1d_same", "AveragePooling1D", dict(pool_size=3, strides=2, padding="same"), (2, 9, 3)),
    ("gap1d", "GlobalAveragePooling1D", dict(), (2, 5, 3)),
    ("gmp1d_keepdims", "GlobalMaxPooling1D", dict(keepdims=True), (2, 5, 3)),
    ("upsampling1d", "UpSampling1D", dict(size=3), (2, 4, 3)),
    ("upsampling2d", "UpSampling2D", dict(size=(2, 3)), (2, 3, 4, 2)),
    ("upsampling2d_bilinear", "UpSampling2D", dict(size=(2, 3), interpolation="bilinear"), (2, 3, 4, 2)),
    ("zeropad1d", "ZeroPadding1D", dict(padding=(1, 2)), (2, 4, 3)),
    ("zeropad2d", "ZeroPadding2D", dict(padding=((1, 2), (0, 3))), (2, 3, 4, 2)),
    ("zeropad2d_int", "ZeroPadding2D", dict(padding=2), (1, 3, 2, 2)),
    ("crop1d", "Cropping1D", dict(cropping=(1, 2)), (2, 6, 3)),
    ("crop2d", "Cropping2D", dict(cropping=((1, 2), (0, 1))), (2, 5, 4, 2)),
    ("permute", "Permute", dict(dims=(2, 1)), (2, 4, 3)),
    ("permute3", "Permute", dict(dims=(3, 1, 2)), (2, 4, 3, 5)),
    ("repeatvector", "RepeatVector", dict(n=3), (2, 4)),
    ("leakyrelu", "LeakyReLU", dict(negative_slope=0.2), (3, 4)),
    ("leakyrelu_default", "LeakyReLU", dict(), (3, 4)),
    ("elu", "ELU", dict(alpha=0.7), (3, 4)),
    ("prelu", "PReLU", dict(), (3, 4, 5)),
    ("prelu_shared", "PReLU", dict(shared_axes=[1, 2]), (3, 4, 5, 2)),
    ("rescaling", "Rescaling", dict(scale=1 / 255.0, offset=-1.0), (2, 3)),
    ("rescaling_channels", "Rescaling", dict(scale=[1.0, 2.0, 3.0], offset=[0.5, 0.0, 1.0]), (2, 4, 3)),
    ("layernorm", "LayerNormalization", dict(), (3, 5)),
    ("layernorm_two_axes", "LayerNormalization", dict(axis=[1, 2]), (3, 4, 5)),
    ("layernorm_eps_nocenter", "LayerNormalization", dict(epsilon=1e-5, center=False), (3, 4, 5)),
    ("layernorm_noscale", "LayerNormalization", dict(axis=[-1, -2], scale=False), (2, 4, 5, 2)),
    ("normalization_given", "Normalization", dict(mean=[1.0, 2.0, 3.0], variance=[1.0, 4.0, 0.25]), (2, 3)),
    ("normalization_invert", "Normalization", dict(mean=2.0, variance=3.0, invert=True), (2, 3)),
    # deterministic draws ((f, f) ranges) so Keras's and clnet's transforms are the same
    ("rotation", "RandomRotation", dict(factor=(0.1, 0.1)), (2, 7, 6, 3)),
    ("rotation_zoom_modes", None, None, None),  # expanded below
]
CASES = CASES[:-1]
for _fm in ("reflect", "wrap", "constant", "nearest"):
    for _interp in ("bilinear", "nearest"):
        CASES.append((f"rotation_{_fm}_{_interp}", "RandomRotation",
                      dict(factor=(-0.13, -0.13), fill_mode=_fm, interpolation=_interp, fill_value=0.5), (2, 7, 6, 2)))
        CASES.append((f"zoom_{_fm}_{_interp}", "RandomZoom",
                      dict(height_factor=(0.3, 0.3), width_factor=(-0.2, -0.2), fill_mode=_fm, interpolation=_interp,
                           fill_value=0.5), (2, 6, 7, 2)))
CASES.append(("zoom_in_both_axes", "RandomZoom", dict(height_factor=(-0.4, -0.4)), (2, 7, 6, 3)))

# layers that only move or copy entries have no math of their own to differentiate
NO_GRADIENT_CHECK = {"Permute", "RepeatVector", "Flatten", "ZeroPadding1D", "ZeroPadding2D", "Cropping1D", "Cropping2D",
                     "UpSampling1D"}


def _keras_pair(real_keras, cls, kwargs, x, rng):
    """A real Keras layer and a clnet one with the same (randomized) weights."""
    theirs = getattr(real_keras.layers, cls)(**kwargs)
    theirs(x)
    weights = [w + (0.3 * rng.standard_normal(w.shape)).astype(w.dtype) if w.dtype.kind == "f" else w
               for w in theirs.get_weights()]
    theirs.set_weights(weights)
    ours = getattr(layers, cls)(**kwargs)
    ours(x)
    ours.set_weights(weights)
    return theirs, ours


@pytest.mark.torch
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_layer_matches_real_keras_forward_and_gradients(device, rng, real_keras, case):
    import torch
    _, cls, kwargs, shape = case
    x = rng.standard_normal(shape).astype(np.float32)
    theirs, ours = _keras_pair(real_keras, cls, kwargs, x, rng)
    assert [tuple(w.shape) for w in ours.weights] == [tuple(w.shape) for w in theirs.weights]

    tx = torch.tensor(x, requires_grad=True)
    ty = theirs(tx)
    y_ref = ty.detach().numpy()
    cx = clnet.tensor(x, requires_grad=True)
    y = ours(cx)
    assert_close(y, y_ref, rtol=1e-4, atol=1e-5, what=f"{cls} output")
    if cls in NO_GRADIENT_CHECK:
        return
    w = rng.standard_normal(y_ref.shape).astype(np.float32)
    params = [v.value for v in theirs.trainable_weights]
    grads = torch.autograd.grad((ty * torch.tensor(w)).sum(), [tx] + params)
    (y * clnet.tensor(w)).sum().backward()
    assert_close(cx.grad, grads[0].numpy(), rtol=1e-4, atol=1e-4, what=f"{cls} input gradient")
    assert len(ours.trainable_weights) == len(params)
    for var, g, ref in zip(ours.trainable_weights, grads[1:], theirs.trainable_weights):
        assert_close(var.grad, g.numpy(), rtol=1e-4, atol=1e-4, what=f"{cls} gradient of {ref.path}")


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_config_round_trip_and_symbolic_shape(device, rng, case):
    """get_config is JSON, from_config rebuilds a layer that computes the same; on keras.Input the output shape
    is the eager one with a None batch."""
    _, cls, kwargs, shape = case
    x = rng.standard_normal(shape).astype(np.float32)
    layer = getattr(layers, cls)(**kwargs)
    y = layer(x, training=False) if cls.startswith("Random") else layer(x)
    config = json.loads(json.dumps(layer.get_config()))
    clone = getattr(layers, cls).from_config(config)
    clone(x)
    clone.set_weights(layer.get_weights())
    y2 = clone(x, training=False) if cls.startswith("Random") else clone(x)
    assert_close(y2, y.numpy(), what=f"{cls} rebuilt from its config")
    assert layers.LAYER_CLASSES[cls] is getattr(layers, cls)

    fresh = getattr(layers, cls)(**kwargs)
    out = fresh(keras.Input(shape=shape[1:]))
    assert tuple(out.shape) == (None,) + tuple(y.shape[1:])


@pytest.mark.torch
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_config_written_by_real_keras_rebuilds_the_layer(device, rng, real_keras, case):
    """A layer config as Keras 3 writes it (DTypePolicy, initializer objects, constraints None, tuples) rebuilds
    the same layer in clnet (model_from_json of a Keras model's JSON goes through this)."""
    _, cls, kwargs, shape = case
    x = rng.standard_normal(shape).astype(np.float32)
    theirs = getattr(real_keras.layers, cls)(**kwargs)
    y = theirs(x).detach().numpy()
    config = json.loads(json.dumps(theirs.get_config()))
    for key, value in config.items():  # Keras 3.15's GlorotUniform/VarianceScaling configs carry input_axes and
        if key.endswith("_initializer") and isinstance(value, dict):  # output_axes, which clnet's initializers
            value.get("config", {}).pop("input_axes", None)  # (not this layer code) do not take yet
            value.get("config", {}).pop("output_axes", None)
    ours = getattr(layers, cls).from_config(config)
    ours(x)
    ours.set_weights(theirs.get_weights())
    assert_close(ours(x), y, rtol=1e-4, atol=1e-5, what=f"{cls} rebuilt from Keras's config")


# --- what Keras's PyTorch backend cannot run: checked against PyTorch formulas in float64 ---------------------
@pytest.mark.torch
def test_layer_normalization_on_a_middle_axis_matches_torch_values_and_gradients(device, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    layer = layers.LayerNormalization(axis=1, epsilon=1e-4)
    layer(x)
    gamma, beta = rng.standard_normal(4).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    layer.set_weights([gamma, beta])
    tx, tg, tb = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (x, gamma, beta))
    mean, var = tx.mean(1, keepdim=True), tx.var(1, unbiased=False, keepdim=True)
    ty = (tx - mean) / torch.sqrt(var + 1e-4) * tg[None, :, None] + tb[None, :, None]
    w = rng.standard_normal(ty.shape)
    (ty * torch.tensor(w)).sum().backward()
    cx = clnet.tensor(x, requires_grad=True)
    y = layer(cx)
    (y * clnet.tensor(w.astype(np.float32))).sum().backward()
    assert_close(y, ty.detach().numpy(), rtol=1e-4, atol=1e-5, what="output")
    assert_close(cx.grad, tx.grad.numpy(), rtol=1e-4, atol=1e-4, what="input gradient")
    assert_close(layer.gamma.grad, tg.grad.numpy(), rtol=1e-4, atol=1e-4, what="gamma gradient")
    assert_close(layer.beta.grad, tb.grad.numpy(), rtol=1e-4, atol=1e-4, what="beta gradient")
    two = layers.LayerNormalization(axis=[2, 1])
    two(x)
    assert tuple(two.gamma.shape) == (4, 5)  # Keras sorts the axes
    m2, v2 = x.mean((1, 2), keepdims=True), x.var((1, 2), keepdims=True)
    assert_close(two(x), (x - m2) / np.sqrt(v2 + 1e-3), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("strides,padding,k", [(2, "same", 3), (2, "valid", 3), (3, "same", 4), (2, "same", 4),
                                               (1, "same", 2)])
def test_conv2d_transpose_is_the_adjoint_of_conv2d(device, rng, strides, padding, k):
    """<conv(z), x> == <z, conv_transpose(x)> with the same kernel: Conv2DTranspose is the gradient of Conv2D
    (TensorFlow's definition) for every stride/padding, whatever a backend pads."""
    z = rng.standard_normal((2, 4 * strides + 1, 3 * strides, 3)).astype(np.float32)
    if padding == "same":  # a "same" transpose gives size * stride: the conv input must be a multiple of it
        z = z[:, :4 * strides]
    conv = layers.Conv2D(4, k, strides=strides, padding=padding, use_bias=False)
    y = conv(z)
    tr = layers.Conv2DTranspose(3, k, strides=strides, padding=padding, use_bias=False)
    x = rng.standard_normal(tuple(y.shape)).astype(np.float32)
    tr(x)
    tr.set_weights(conv.get_weights())  # (kh, kw, in=3, out=4) read as (kh, kw, filters=3, in=4)
    back = tr(x).numpy()
    if back.shape != z.shape:  # "valid" with a stride that skips the last rows: they get no gradient
        assert padding == "valid" and all(b <= a for a, b in zip(z.shape, back.shape))
        back = np.pad(back, [(0, 0)] + [(0, a - b) for a, b in zip(z.shape[1:3], back.shape[1:3])] + [(0, 0)])
    np.testing.assert_allclose(float((y.numpy() * x).sum()), float((z * back).sum()), rtol=1e-4)


@pytest.mark.parametrize("steps", [8, 9])
def test_average_pooling_1d_same_averages_the_real_steps_as_tensorflow(device, rng, steps):
    """Keras's "same" average pooling divides by the steps inside the input (TensorFlow's rule; Keras on the
    PyTorch backend differs where the padding is all at the end, e.g. 8 steps, pool 3, stride 2)."""
    x = rng.standard_normal((2, steps, 3)).astype(np.float32)
    total = max((-(-steps // 2) - 1) * 2 + 3 - steps, 0)
    xp = np.pad(x, ((0, 0), (total // 2, total - total // 2), (0, 0)), constant_values=np.nan)
    want = np.stack([np.nanmean(xp[:, 2 * i:2 * i + 3], axis=1) for i in range(-(-steps // 2))], 1)
    assert_close(layers.AveragePooling1D(3, 2, padding="same")(x), want, rtol=1e-5, atol=1e-6)


def test_global_average_pooling_1d_with_a_mask_matches_keras(device, rng, real_keras):
    x = rng.standard_normal((3, 5, 2)).astype(np.float32)
    mask = np.array([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 1, 0, 1]], dtype=bool)
    want = real_keras.layers.GlobalAveragePooling1D()(x, mask=mask).numpy()
    got = layers.GlobalAveragePooling1D()(x, mask=clnet.tensor(mask))
    assert_close(got, want, rtol=1e-5, atol=1e-6)
    emb = layers.Embedding if hasattr(layers, "Embedding") else None
    if emb is not None:  # the mask of Embedding(mask_zero=True) reaches the pooling in a model
        ids = np.array([[3, 2, 0, 0], [1, 1, 1, 4]])
        e = emb(5, 2, mask_zero=True)
        vectors = e(ids).numpy()
        pooled = layers.GlobalAveragePooling1D()(e(ids)).numpy()
        assert_close(pooled[0], vectors[0, :2].mean(0), rtol=1e-5, atol=1e-6)


def test_normalization_adapt_matches_keras_and_batches_merge(device, rng, real_keras):
    x = (rng.standard_normal((20, 4, 3)) * 3 + 1).astype(np.float32)
    for axis in (-1, None, (1, 2)):
        theirs = real_keras.layers.Normalization(axis=axis)
        theirs.adapt(x)
        ours = layers.Normalization(axis=axis)
        ours.adapt(x)
        assert [w.shape for w in ours.get_weights()] == [w.shape for w in theirs.get_weights()]
        for a, b in zip(ours.get_weights(), theirs.get_weights()):
            assert_close(a, b, rtol=1e-5, atol=1e-5)
        assert_close(ours(x), theirs(x).numpy(), rtol=1e-4, atol=1e-5)
        batched = layers.Normalization(axis=axis)
        batched.adapt([x[:7], clnet.tensor(x[7:15]), x[15:]])  # arrays and tensors, unequal batches
        assert_close(batched(x), theirs(x).numpy(), rtol=1e-4, atol=1e-5)
    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return x[i * 7:(i + 1) * 7], None  # (x, y) batches: adapt reads x
    from_dataset = layers.Normalization()
    from_dataset.adapt(Batches())
    assert_close(from_dataset.get_weights()[0], x.mean((0, 1)), rtol=1e-5, atol=1e-5)
    assert_close(from_dataset.get_weights()[1], x.var((0, 1)), rtol=1e-5, atol=1e-5)
    ours = layers.Normalization()
    ours.adapt(x.astype(np.int32))  # integer data is normalized as floats
    assert ours(x.astype(np.int32)).dtype == clnet.float32


def test_random_layers_are_identity_at_inference_seeded_and_active_in_training(device, rng):
    x = rng.standard_normal((16, 6, 5, 2)).astype(np.float32)
    for make in (lambda s: layers.RandomFlip(seed=s), lambda s: layers.RandomRotation(0.2, seed=s),
                 lambda s: layers.RandomZoom(0.3, seed=s)):
        a, b = make(7), make(7)
        assert_close(a(x, training=False), x)
        first, second = a(x).numpy(), b(x).numpy()  # training defaults to True, as in Keras 3
        np.testing.assert_array_equal(first, second)  # same seed, same draws
        assert not np.allclose(first, x)
        assert not np.allclose(a(x).numpy(), first)  # the next call draws again
    flip = layers.RandomFlip("horizontal", seed=3)
    y = flip(x).numpy()
    flipped = [np.array_equal(y[i], x[i, :, ::-1]) for i in range(16)]
    same = [np.array_equal(y[i], x[i]) for i in range(16)]
    assert all(f or s for f, s in zip(flipped, same)) and any(flipped) and any(same)
    both = layers.RandomFlip(seed=4)(x).numpy()
    assert all(np.array_equal(both[i], x[i]) or np.array_equal(both[i], x[i, ::-1, ::-1]) for i in range(16))
    one = layers.RandomFlip("vertical", seed=0)(x[0]).numpy()  # one image (height, width, channels)
    assert one.shape == x[0].shape


@pytest.mark.parametrize("functional", [False, True])
@pytest.mark.parametrize("make", [lambda: layers.RandomFlip(seed=1), lambda: layers.RandomZoom(0.2, seed=2)],
                         ids=["flip", "zoom"])
def test_fit_draws_new_augmentations_every_batch(device, rng, monkeypatch, functional, make):
    """fit's train step is compiled (traced once, then replayed); a replay would repeat the traced draws, so
    an augmentation layer keeps that step eager: each batch of each epoch is augmented anew."""
    aug = make()
    seen = []

    def spy(self, x, original=type(aug)._augment):
        y = original(self, x)
        seen.append(y)  # read after fit: a host read here would itself keep the step eager
        return y
    monkeypatch.setattr(type(aug), "_augment", spy)
    head = [layers.Flatten(), layers.Dense(1)]
    if functional:
        inp = keras.Input(shape=(4, 4, 1))
        model = keras.Model(inp, head[1](head[0](aug(inp))))
    else:
        model = keras.Sequential([keras.Input(shape=(4, 4, 1)), aug] + head)
    model.compile(optimizer="sgd", loss="mse")
    x = np.repeat(rng.standard_normal((1, 4, 4, 1)).astype(np.float32), 32, axis=0)  # one image, 32 times
    model.fit(x, rng.standard_normal((32, 1)).astype(np.float32), batch_size=8, epochs=2, verbose=0)
    assert len(seen) == 8  # 4 batches x 2 epochs, each drawn in Python
    assert len({y.numpy().tobytes() for y in seen}) == 8  # and each batch differently


def test_bad_arguments_raise_clear_errors(device):
    with pytest.raises(ValueError, match="negative_slope"):
        layers.LeakyReLU(negative_slope=-1)
    with pytest.warns(UserWarning, match="alpha"):
        assert layers.LeakyReLU(alpha=0.1).negative_slope == pytest.approx(0.1)
    with pytest.raises(ValueError, match="consecutive and start from 1"):
        layers.Permute((0, 1))
    with pytest.raises(ValueError, match="greater than output_padding"):
        layers.Conv2DTranspose(2, 3, strides=2, output_padding=2)
    with pytest.raises(ValueError, match="causal"):
        layers.Conv1D(2, 3, padding="full")
    with pytest.raises(ValueError, match="removes all"):
        layers.Cropping1D((2, 3))(np.zeros((1, 5, 2), np.float32) + 1)
    with pytest.raises(ValueError, match="range"):
        layers.RandomRotation(1.5)
    with pytest.raises(NotImplementedError, match="fill_mode"):
        layers.RandomZoom(0.1, fill_mode="mirror")
    with pytest.raises(ValueError, match="both `mean` and `variance`"):
        layers.Normalization(mean=1.0)
    with pytest.raises(NotImplementedError, match="constraint"):
        layers.Conv1D(2, 3, kernel_constraint="non_neg")
    with pytest.raises(ValueError, match="expected ndim=3"):
        conv = layers.Conv1D(2, 3)
        conv(np.ones((2, 5, 3), np.float32))
        conv(np.ones((2, 5, 3, 1), np.float32))


@keras.saving.register_keras_serializable(package="test_layers_more")
def doubled(t):
    return t * 2.0


def test_lambda_layer_shapes_saving_and_refusal(device, rng, tmp_path):
    x = rng.standard_normal((4, 6)).astype(np.float32)
    inp = keras.Input(shape=(6,))
    assert tuple(layers.Lambda(lambda t: t[:, :3] * t[:, 3:])(inp).shape) == (None, 3)  # found by a placeholder run
    assert tuple(layers.Lambda(lambda t: t, output_shape=(2, 3))(keras.Input(shape=(6,))).shape) == (None, 2, 3)
    scaled = layers.Lambda(lambda t, factor: t * factor, arguments={"factor": 3.0})
    assert_close(scaled(x), x * 3.0)

    model = keras.Sequential([keras.Input(shape=(6,)), layers.Dense(3), layers.Lambda(doubled)])
    path = tmp_path / "lambda.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert_close(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6, atol=1e-6)

    anonymous = keras.Sequential([keras.Input(shape=(6,)), layers.Lambda(lambda t: t + 1)])
    with pytest.raises(ValueError, match="register_keras_serializable"):
        anonymous.save(tmp_path / "anonymous.keras")
    keras_entry = {"module": __name__, "class_name": "function", "config": "doubled",
                   "registered_name": "test_layers_more>doubled"}  # how Keras 3 writes a registered function
    rebuilt = layers.Lambda.from_config({"name": "l", "function": keras_entry})
    assert_close(rebuilt(x), x * 2.0)
    with pytest.raises(ValueError, match="never loads code"):
        layers.Lambda.from_config({"name": "l", "function": {"class_name": "__lambda__", "config": {"code": "..."}}})


def _image_model(seed):
    inp = keras.Input(shape=(12, 12, 3))
    h = layers.RandomFlip("horizontal", seed=seed)(inp)
    h = layers.RandomRotation(0.05, seed=seed + 1)(h)
    h = layers.RandomZoom(0.1, seed=seed + 2)(h)
    h = layers.Rescaling(1 / 4.0)(h)
    h = layers.SeparableConv2D(6, 3, padding="same")(h)
    h = layers.PReLU(shared_axes=[1, 2])(h)
    h = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same")(h)
    h = layers.LayerNormalization()(h)
    h = layers.ZeroPadding2D(1)(h)
    h = layers.Cropping2D(((1, 1), (1, 1)))(h)
    h = layers.MaxPooling2D()(h)
    h = layers.Conv2DTranspose(4, 3, strides=2, padding="same", activation="relu")(h)
    h = layers.UpSampling2D(interpolation="bilinear")(h)
    h = layers.GlobalAveragePooling2D()(h)
    return keras.Model(inp, layers.Dense(2, activation="softmax")(h))


def test_image_model_of_new_layers_trains_saves_and_predicts_without_augmentation(device, rng, tmp_path):
    n = 48
    labels = rng.integers(0, 2, n)
    x = rng.standard_normal((n, 12, 12, 3)).astype(np.float32)
    x[labels == 1, 3:9, 3:9, :] += 2.0  # class 1: a bright centre (survives flips, small rotations and zooms)
    model = _image_model(seed=1)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, labels, batch_size=16, epochs=6, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.75 * losses[0], losses
    p1, p2 = model.predict(x, verbose=0), model.predict(x, verbose=0)
    np.testing.assert_array_equal(p1, p2)  # augmentation is off in predict
    path = tmp_path / "images.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert_close(loaded.predict(x, verbose=0), p1, rtol=1e-5, atol=1e-6)


def test_sequence_model_of_new_layers_trains(device, rng, tmp_path):
    n = 64
    x = (rng.standard_normal((n, 10, 4)) * 5 + 3).astype(np.float32)
    target = (x[:, :, 0].mean(1, keepdims=True) - 3) / 5 * 4
    norm = layers.Normalization()
    norm.adapt(x)
    inp = keras.Input(shape=(10, 4))
    h = norm(inp)
    h = layers.Conv1D(8, 3, padding="causal")(h)
    h = layers.LeakyReLU(0.1)(h)
    h = layers.MaxPooling1D(padding="same")(h)
    h = layers.UpSampling1D(2)(h)
    h = layers.ZeroPadding1D((1, 2))(h)
    h = layers.Cropping1D((1, 2))(h)
    h = layers.Permute((2, 1))(h)
    h = layers.Permute((2, 1))(h)
    h = layers.AveragePooling1D(2)(h)
    h = layers.ELU()(h)
    h = layers.GlobalAveragePooling1D()(h)
    h = layers.RepeatVector(2)(h)
    h = layers.Flatten()(h)
    h = layers.Lambda(doubled)(h)
    model = keras.Model(inp, layers.Dense(1)(h))
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="mse")
    history = model.fit(x, target, batch_size=16, epochs=8, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.5 * losses[0], losses
    path = tmp_path / "sequence.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert_close(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert [w.shape for w in loaded.get_layer(norm.name).get_weights()] == [(4,), (4,), ()]


@pytest.mark.parametrize("cls", ["GlobalAveragePooling1D", "GlobalMaxPooling1D"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling_1d_data_formats_match_keras(device, real_keras, cls, data_format, keepdims):
    real = real_keras
    x = np.random.default_rng(3).standard_normal((2, 5, 3)).astype(np.float32)
    want = real.ops.convert_to_numpy(getattr(real.layers, cls)(data_format=data_format, keepdims=keepdims)(x))
    layer = getattr(keras.layers, cls)(data_format=data_format, keepdims=keepdims)
    got = layer(x).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    symbolic = getattr(keras.layers, cls)(data_format=data_format, keepdims=keepdims)(keras.Input((5, 3)))
    assert tuple(symbolic.shape)[1:] == want.shape[1:]
    assert layer.get_config()["data_format"] == data_format


@pytest.mark.parametrize("kwargs", [dict(filters=4, kernel_size=3),
                                    dict(filters=2, kernel_size=3, strides=2, padding="same"),
                                    dict(filters=2, kernel_size=4, strides=2, output_padding=1, activation="relu")],
                         ids=["valid", "same_strided", "output_padding"])
def test_conv1d_transpose_matches_keras(device, real_keras, kwargs):
    """Keras's Conv1DTranspose (kernel (k, filters, in)): outputs, input and weight gradients, shapes, config."""
    import torch
    x = np.random.default_rng(5).standard_normal((2, 7, 3)).astype(np.float32)
    ref = real_keras.layers.Conv1DTranspose(**kwargs)
    xt = torch.tensor(x, requires_grad=True)
    want = ref(xt)
    want.sum().backward()
    ours = layers.Conv1DTranspose(**kwargs)
    ours(x)
    ours.set_weights([w.detach().cpu().numpy() if hasattr(w, "detach") else np.asarray(w) for w in ref.get_weights()])
    xc = clnet.tensor(x, requires_grad=True)
    got = ours(xc)
    got.sum().backward()
    np.testing.assert_allclose(got.numpy(), want.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(xc.grad.numpy(), xt.grad.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours.kernel.grad.numpy(), ref.kernel.value.grad.numpy(), rtol=1e-4, atol=1e-5)
    assert tuple(layers.Conv1DTranspose(**kwargs)(keras.Input((7, 3))).shape) == (None,) + tuple(want.shape[1:])
    again = layers.Conv1DTranspose.from_config(ours.get_config())
    assert again.get_config() == ours.get_config()

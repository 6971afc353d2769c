"""Convolution layouts in clnet.keras: channels_first layers compute what channels_last ones do on the transposed
data, and a compiled Keras train step makes no transposing copy of activations (pooling reads channels-last views
through their strides)."""
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


def _model(fmt, shape):
    L = layers
    return keras.Sequential([keras.Input(shape=shape), L.Conv2D(4, 3, activation="relu", data_format=fmt),
                             L.MaxPooling2D(2, data_format=fmt),
                             L.Conv2D(3, 3, padding="same", data_format=fmt),
                             L.AveragePooling2D(3, 2, padding="same", data_format=fmt),
                             L.GlobalMaxPooling2D(data_format=fmt, keepdims=True),
                             L.Flatten(data_format=fmt), L.Dense(5)])


def test_channels_first_model_matches_channels_last(device, rng):
    """The same weights on NCHW data give the channels_last model's outputs and gradients (Keras's "same"
    pooling rule included)."""
    x = rng.standard_normal((3, 11, 10, 2)).astype(np.float32)
    last, first = _model("channels_last", (11, 10, 2)), _model("channels_first", (2, 11, 10))
    first.set_weights(last.get_weights())
    xl = clnet.tensor(x, requires_grad=True)
    xf = clnet.tensor(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), requires_grad=True)
    yl, yf = last(xl), first(xf)
    assert_close(yf, yl.numpy(), rtol=1e-5, atol=1e-5, what="output")
    w = clnet.tensor(rng.standard_normal(tuple(yl.shape)).astype(np.float32))
    (yl * w).sum().backward()
    (yf * w).sum().backward()
    assert_close(xf.grad, xl.grad.numpy().transpose(0, 3, 1, 2), rtol=1e-4, atol=1e-5, what="input gradient")
    for a, b in zip(last.trainable_weights, first.trainable_weights):
        assert_close(b.grad, a.grad.numpy(), rtol=1e-4, atol=1e-5, what=f"gradient of {a.path}")


def test_channels_first_shapes_and_config():
    conv = layers.Conv2D(6, 3, strides=2, data_format="channels_first")
    assert tuple(conv(keras.Input(shape=(3, 9, 8))).shape) == (None, 6, 4, 3)
    assert conv.get_config()["data_format"] == "channels_first"
    pool = layers.MaxPooling2D(2, data_format="channels_first")
    assert tuple(pool(keras.Input(shape=(3, 9, 8))).shape) == (None, 3, 4, 4)
    assert layers.MaxPooling2D.from_config(pool.get_config()).data_format == "channels_first"
    with pytest.raises(ValueError, match="data_format"):
        layers.Conv2D(2, 3, data_format="NCHW")


def _copies(graph):
    """Launches that copy a tensor (elementwise `v0` with a tensor operand), as (phase, shape)."""
    return [(la.phase, tuple(la.note.shape)) for la in graph.kernel_launches
            if la.note is not None and getattr(la.note, "expr", None) == "v0" and la.note.strides[0] is not None]


def test_compiled_keras_convnet_step_copies_no_activation(device, rng):
    """Keras's simple convnet: pooling and the input gradients of pooling run on channels-last views without a
    copy. What still copies (reported, owned elsewhere): conv2d's contiguous weight (its kernel is a permuted
    view of Keras's (kh, kw, in, out) variable), the weight gradients autograd makes contiguous, and Flatten's
    reorder of NCHW memory into channels-last order (the one activation copy left, (8, 2, 2, 6) here)."""
    L = layers
    model = keras.Sequential([keras.Input(shape=(14, 14, 1)), L.Conv2D(4, 3, activation="relu"), L.MaxPooling2D(2),
                              L.Conv2D(6, 3, activation="relu"), L.MaxPooling2D(2), L.Flatten(), L.Dropout(0.5),
                              L.Dense(3, activation="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"], jit_compile=True)
    x = rng.standard_normal((16, 14, 14, 1)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 16)]
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    (graph,) = model._compiled_steps["train"].graphs
    weights = {tuple(w.shape) for w in model.trainable_weights}
    weights |= {tuple(w.shape[::-1]) for w in model.trainable_weights}
    weights |= {(s[3], s[2], s[0], s[1]) for s in (tuple(w.shape) for w in model.trainable_weights) if len(s) == 4}
    activations = [c for c in _copies(graph) if c[1] not in weights]
    # at most Flatten's (a compiler pass may fold it into the next elementwise kernel)
    assert set(activations) <= {("forward", (8, 2, 2, 6))}, f"activation copies (phase, shape): {activations}"

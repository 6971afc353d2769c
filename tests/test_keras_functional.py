"""Functional models: several inputs and outputs (lists and dicts), shared layers, layers called with two tensors,
layer.input/output, Sequential.inputs/outputs, get_layer, the training flag and masks passed down, add_loss
semantics, configs that rebuild the same graph, and Keras-worded errors. (Numbers of training runs against
real Keras are in test_keras_reference.py.)"""
import numpy as np
import pytest

import clnet
from clnet import keras
from clnet.keras import layers, ops

from conftest import assert_close
from keras_test_support import only_small_models_on_simulators  # noqa: F401  (autouse: small models on Oclgrind)


@pytest.fixture(autouse=True)
def _fresh_names():
    keras.utils.clear_session()
    keras.utils.set_random_seed(0)


class Scale2(layers.Layer):
    """A layer called with two tensors: a * w + b."""

    def build(self, a_shape, b_shape=None):
        self.w = self.add_weight(shape=(a_shape[-1],), initializer="ones", name="w")

    def call(self, a, b):
        return a * self.w + b


def _numpy_dense(layer, x):
    w, b = layer.get_weights()
    return x @ w + b


def test_two_inputs_two_outputs_lists_dicts_and_shared_layers(device, rng):
    xa, xb = keras.Input((4,), name="xa"), keras.Input((4,), name="xb")
    shared = layers.Dense(3, name="shared")
    ha, hb = shared(xa), shared(xb)
    out1 = Scale2(name="scale")(ha, hb)
    out2 = layers.subtract([ha, hb], name="diff")
    model = keras.Model(inputs=[xa, xb], outputs=[out1, out2])
    a = rng.standard_normal((6, 4)).astype(np.float32)
    b = rng.standard_normal((6, 4)).astype(np.float32)
    p1, p2 = model.predict([a, b], verbose=0)
    want_a, want_b = _numpy_dense(shared, a), _numpy_dense(shared, b)
    assert_close(p1, want_a + want_b, rtol=1e-5, atol=1e-6)
    assert_close(p2, want_a - want_b, rtol=1e-5, atol=1e-6)
    d1, d2 = model.predict({"xb": b, "xa": a}, verbose=0)  # a dict matches the inputs by name
    assert_close(d1, p1)
    assert_close(d2, p2)
    assert [lay.name for lay in model.layers] == ["xa", "xb", "shared", "scale", "diff"]
    assert model.get_layer("shared") is shared and model.get_layer(index=2) is shared
    assert len(shared._inbound_nodes) == 2 and shared.output is ha  # the first call's output, as Keras
    assert model.input_names == ["xa", "xb"] and model.output_names == ["scale", "diff"]
    eager1, eager2 = model([a, b])
    assert isinstance(eager1, clnet.Tensor)
    assert_close(eager1.numpy(), p1, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="No such layer: nope"):
        model.get_layer("nope")
    with pytest.raises(ValueError, match="expects 2 input"):
        model(a)


def test_dict_inputs_and_outputs_and_rank_adjustment(device, rng):
    x = keras.Input((3, 1), name="x")
    flat = layers.Flatten()(x)
    model = keras.Model({"features": x}, {"double": flat * 2.0, "neg": -flat})
    xs = rng.standard_normal((4, 3)).astype(np.float32)  # rank one short: a trailing 1 is added, as Keras
    out = model.predict({"features": xs}, verbose=0)
    assert sorted(out) == ["double", "neg"]
    assert_close(out["double"], xs * 2)
    assert_close(out["neg"], -xs)
    with pytest.raises(ValueError, match="Missing data for input 'features'"):
        model({"x": xs})


def test_symbolic_arithmetic_matches_eager_and_config_rebuilds_the_graph(device, rng):
    inputs = keras.Input((5,))
    h = layers.Dense(5, activation="relu")(inputs)
    x = h + inputs
    x = x * 0.5 - 1.0
    x = 2.0 / (ops.abs(x) + 1.0)
    outputs = layers.Dense(2)(x[:, 1:])
    model = keras.Model(inputs, outputs, name="residual")
    xs = rng.standard_normal((7, 5)).astype(np.float32)
    dense1, dense2 = model.get_layer("dense"), model.get_layer("dense_1")
    hv = np.maximum(_numpy_dense(dense1, xs), 0)
    want = _numpy_dense(dense2, (2.0 / (np.abs((hv + xs) * 0.5 - 1.0) + 1.0))[:, 1:])
    assert_close(model.predict(xs, verbose=0), want, rtol=1e-5, atol=1e-6)
    rebuilt = keras.Model.from_config(model.get_config())
    rebuilt.set_weights(model.get_weights())
    assert [type(op).__name__ for op in rebuilt.operations] == [type(op).__name__ for op in model.operations]
    assert_close(rebuilt.predict(xs, verbose=0), want, rtol=1e-5, atol=1e-6)
    config = model.get_config()
    assert config["input_layers"] == [model.operations[0].name, 0, 0]
    assert {entry["class_name"] for entry in config["layers"]} >= {"InputLayer", "Dense", "Add", "GetItem"}


def test_sequential_inputs_outputs_and_feature_extraction(device, rng):
    seq = keras.Sequential([keras.Input((4,)), layers.Dense(3, activation="relu", name="hidden"), layers.Dense(2)])
    assert seq.inputs[0].shape == (None, 4) and seq.outputs[0].shape == (None, 2)
    assert seq.get_layer("hidden").output.shape == (None, 3) and seq.layers[1].input is seq.layers[0].output
    extractor = keras.Model(inputs=seq.inputs, outputs=[layer.output for layer in seq.layers])
    xs = rng.standard_normal((5, 4)).astype(np.float32)
    hidden, final = extractor.predict(xs, verbose=0)
    assert_close(final, seq.predict(xs, verbose=0), rtol=1e-5, atol=1e-6)
    assert_close(hidden, np.maximum(_numpy_dense(seq.layers[0], xs), 0), rtol=1e-5, atol=1e-6)
    seq.add(layers.Dense(1))  # a rebuild: layer.output now belongs to the new graph
    assert keras.Model(seq.inputs, seq.layers[1].output).predict(xs, verbose=0).shape == (5, 2)
    lazy = keras.Sequential([layers.Dense(2)])
    with pytest.raises(AttributeError, match="has no defined inputs yet"):
        lazy.inputs
    lazy(xs)
    assert lazy.built and lazy.layers[0].kernel.shape == (4, 2)


def test_training_flag_and_masks_reach_inner_layers(device, rng):
    seen = []

    class Inner(layers.Layer):
        def call(self, x, training=None):
            seen.append(training)
            return x

    class Outer(layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.inner = Inner()
            self.supports_masking = True  # passes the incoming mask on (Keras drops it otherwise)

        def call(self, x):
            return self.inner(x)  # no training argument: inherited from the outer call, as Keras

    class MakeMask(layers.Layer):
        def call(self, x):
            return x

        def compute_mask(self, inputs, mask=None):
            return inputs[:, :, 0] != 0

    class UseMask(layers.Layer):
        def call(self, x, mask=None):
            return ops.sum(x * ops.expand_dims(ops.cast(mask, "float32"), -1), axis=1)

    inputs = keras.Input((3, 2))
    model = keras.Model(inputs, UseMask()(Outer()(MakeMask()(inputs))))
    xs = rng.standard_normal((2, 3, 2)).astype(np.float32)
    xs[0, 1] = 0.0
    seen.clear()
    model(xs, training=True)
    model.predict(xs, verbose=0)
    assert seen == [True, False]
    assert_close(model(xs).numpy(), np.stack([xs[0, [0, 2]].sum(0), xs[1].sum(0)]), rtol=1e-6)


def test_add_loss_lasts_one_call_and_symbolic_add_loss_is_explained(device, rng):
    class Penalty(layers.Layer):
        def call(self, x):
            self.add_loss(ops.sum(x * x))
            return x

    p = Penalty()
    model = keras.Sequential([keras.Input((2,)), layers.Dense(2), p])
    xs = rng.standard_normal((3, 2)).astype(np.float32)
    model(xs)
    model(xs)
    assert len(model.losses) == 1 and len(p.losses) == 1  # replaced at each call, not accumulated
    out = model(xs)
    assert_close(model.losses[0].numpy(), np.sum(out.numpy() ** 2), rtol=1e-5)
    reg = keras.Sequential([keras.Input((2,)), layers.Dense(2, kernel_regularizer=keras.regularizers.L2(0.1))])
    assert len(reg.losses) == 1
    assert_close(reg.losses[0].numpy(), 0.1 * np.sum(reg.layers[0].kernel.numpy() ** 2), rtol=1e-5)
    with pytest.raises(ValueError, match="add_loss\\(\\) received a symbolic KerasTensor"):
        layers.Layer().add_loss(keras.Input((2,)))


def test_errors_say_what_was_wrong(device):
    a = keras.Input((3,), name="a")
    b = keras.Input((3,), name="b")
    out = layers.Dense(2)(layers.add([a, b]))
    with pytest.raises(ValueError, match="Graph disconnected"):
        keras.Model(a, out)
    with pytest.raises(ValueError, match='The name "d" is used 2 times in the model'):
        keras.Model(a, layers.Dense(1, name="d")(layers.Dense(1, name="d")(a)))
    with pytest.raises(ValueError, match="should be called on a list of inputs"):
        layers.Add()(a)
    with pytest.raises(ValueError, match="All `outputs` values must be KerasTensors"):
        keras.Model(a, np.ones(3))
    with pytest.raises(TypeError, match="Error calling layer 'scale'.*call\\(\\) signature"):
        Scale2(name="scale")(a)
    with pytest.raises(ValueError, match="Only instances of `keras.Layer` can be added"):
        keras.Sequential([keras.Input((3,)), "dense"])
    with pytest.raises(ValueError, match="Unrecognized keyword arguments passed to Dense"):
        layers.Dense(2, activations="relu")


def test_functional_summary_has_connected_to(device):
    a, b = keras.Input((3,), name="a"), keras.Input((2,), name="b")
    x = layers.Dense(2, name="d")(a)
    model = keras.Model([a, b], layers.Dense(1, name="o")(layers.concatenate([x, b], name="cat")) + x[:, :1])
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "Connected to" in text and "d[0][0], b[0][0]" in text and "cat (Concatenate)" in text
    assert "add (Add)" in text and " Total params: 13 (52.00 B)" in text

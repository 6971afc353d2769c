"""clnet.keras models: building (Input, input_shape=, lazily), summary(), weights, and clear errors."""
import re

import numpy as np
import pytest

import clnet
from clnet import keras
from clnet.keras import layers

from conftest import assert_close


@pytest.fixture(autouse=True)
def _fresh_names():
    keras.utils.clear_session()
    keras.utils.set_random_seed(0)
    yield


def mnist_convnet():
    """The classic Keras "simple MNIST convnet" (its published summary has 34,826 parameters)."""
    return keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ])


def summary_text(model, **kw):
    lines = []
    model.summary(print_fn=lines.append, **kw)
    return "\n".join(lines)


def test_summary_of_the_mnist_convnet_matches_keras(device):
    text = summary_text(mnist_convnet())
    expected_rows = [("conv2d (Conv2D)", "(None, 26, 26, 32)", "320"),
                     ("max_pooling2d (MaxPooling2D)", "(None, 13, 13, 32)", "0"),
                     ("conv2d_1 (Conv2D)", "(None, 11, 11, 64)", "18,496"),
                     ("max_pooling2d_1 (MaxPooling2D)", "(None, 5, 5, 64)", "0"),
                     ("flatten (Flatten)", "(None, 1600)", "0"),
                     ("dropout (Dropout)", "(None, 1600)", "0"),
                     ("dense (Dense)", "(None, 10)", "16,010")]
    rows = [line for line in text.splitlines() if line.startswith("│")]
    assert len(rows) == len(expected_rows)
    for line, (name, shape, params) in zip(rows, expected_rows):
        cells = [c.strip() for c in line.strip("│").split("│")]
        assert cells == [name, shape, params]
    assert 'Model: "sequential"' in text
    assert "┃ Layer (type)                    ┃ Output Shape           ┃       Param # ┃" in text
    assert " Total params: 34,826 (136.04 KB)" in text
    assert " Trainable params: 34,826 (136.04 KB)" in text
    assert " Non-trainable params: 0 (0.00 B)" in text


def test_summary_counts_non_trainable_batchnorm_statistics(device):
    model = keras.Sequential([layers.Dense(8, input_shape=(4,)), layers.BatchNormalization(), layers.Dense(2)])
    text = summary_text(model)
    assert "(None, 8)" in text and "(None, 2)" in text
    # Dense 4*8+8 = 40, BN 4*8 = 32 (16 trainable gamma/beta, 16 moving statistics), Dense 8*2+2 = 18
    assert " Total params: 90 " in text
    assert " Trainable params: 74 " in text
    assert " Non-trainable params: 16 " in text
    assert model.count_params() == 90


def test_unbuilt_summary_says_so_and_lazy_build_on_first_data(device):
    model = keras.Sequential([layers.Dense(5, activation="relu"), layers.Dense(3)])
    assert not model.built
    text = summary_text(model)
    assert "?" in text and "0 (unbuilt)" in text
    y = model(np.random.default_rng(0).standard_normal((7, 4)))
    assert isinstance(y, clnet.Tensor) and y.shape == (7, 3)
    assert model.built and model.count_params() == 4 * 5 + 5 + 5 * 3 + 3
    assert "(None, 5)" in summary_text(model)


def test_three_ways_to_give_the_input_shape(device):
    a = keras.Sequential([keras.Input(shape=(6,)), layers.Dense(2)])
    b = keras.Sequential([layers.Dense(2, input_shape=(6,))])
    c = keras.Sequential()
    c.add(keras.Input(shape=(6,)))
    c.add(layers.Dense(2))
    for m in (a, b, c):
        assert m.built and [w.shape for w in m.weights] == [(6, 2), (2,)]


def test_dense_kernel_is_in_by_out_and_get_set_weights_round_trip(device, rng):
    model = keras.Sequential([layers.Dense(3, input_shape=(4,), activation="tanh"), layers.Dense(2)])
    weights = model.get_weights()
    assert [w.shape for w in weights] == [(4, 3), (3,), (3, 2), (2,)]
    new = [rng.standard_normal(w.shape).astype(np.float32) for w in weights]
    model.set_weights(new)
    for got, want in zip(model.get_weights(), new):
        np.testing.assert_array_equal(got, want)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    expected = np.tanh(x @ new[0] + new[1]) @ new[2] + new[3]
    assert_close(model(x), expected, rtol=1e-4, atol=1e-5)
    assert_close(model(clnet.tensor(x)), expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"with a weight list of length 3, but the layer was expecting 4 weights"):
        model.set_weights(new[:3])
    with pytest.raises(ValueError, match=r"weight shape \(4, 3\) is not compatible with provided weight shape \(3, 4\)"):
        model.set_weights([new[0].T] + new[1:])


def test_trainable_variables_and_freezing_a_layer(device):
    model = keras.Sequential([layers.Dense(3, input_shape=(2,)), layers.Dense(1)])
    assert len(model.trainable_variables) == 4 and model.non_trainable_weights == []
    model.layers[0].trainable = False
    assert len(model.trainable_variables) == 2 and len(model.non_trainable_weights) == 2
    assert all(not w.requires_grad for w in model.layers[0].weights)
    assert [w.path for w in model.trainable_variables] == ["dense_1/kernel", "dense_1/bias"]


def test_wrong_feature_count_names_expected_and_received_shapes(device):
    model = keras.Sequential([keras.Input(shape=(784,)), layers.Dense(10)])
    with pytest.raises(ValueError, match=re.escape("expected shape=(None, 784), found shape=(32, 100)")):
        model(np.zeros((32, 100), np.float32))
    lazy = keras.Sequential([layers.Dense(10)])
    lazy(np.zeros((2, 784), np.float32))
    with pytest.raises(ValueError, match=re.escape('layer "dense_1" is incompatible with the layer: expected axis -1 '
                                                   "of input shape to have value 784, but received input with shape "
                                                   "(32, 100)")):
        lazy(np.zeros((32, 100), np.float32))


def test_unknown_names_list_the_valid_ones(device):
    with pytest.raises(ValueError, match=r"Unknown activation 'relux'. Valid names: .*relu.*sigmoid"):
        layers.Dense(3, activation="relux")
    model = keras.Sequential([layers.Dense(1, input_shape=(2,))])
    with pytest.raises(ValueError, match=r"Could not interpret loss identifier: 'msee'. Valid names: .*mse"):
        model.compile(optimizer="sgd", loss="msee")
    with pytest.raises(ValueError, match=r"Could not interpret optimizer identifier: 'adamm'. Valid names: .*adam"):
        model.compile(optimizer="adamm", loss="mse")
    with pytest.raises(ValueError, match=r"Could not interpret metric identifier: 'acuracy'. Valid names: .*accuracy"):
        model.compile(optimizer="sgd", loss="mse", metrics=["acuracy"])
    with pytest.raises(ValueError, match=r"Unknown initializer 'he_normall'. Valid names: .*he_normal"):
        layers.Dense(3, kernel_initializer="he_normall")


def test_fit_before_compile_and_ambiguous_cardinality(device):
    model = keras.Sequential([layers.Dense(1, input_shape=(2,))])
    x, y = np.zeros((10, 2), np.float32), np.zeros((10, 1), np.float32)
    with pytest.raises(ValueError, match=r"You must call `compile\(\)` before calling `fit\(\)`"):
        model.fit(x, y, verbose=0)
    with pytest.raises(ValueError, match=r"You must call `compile\(\)` before calling `evaluate\(\)`"):
        model.evaluate(x, y, verbose=0)
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match=r"(?s)Data cardinality is ambiguous.*'x' sizes: 10\n'y' sizes: 7"):
        model.fit(x, y[:7], verbose=0)


def test_unexpected_layer_arguments_and_bad_values_are_rejected(device):
    with pytest.raises(ValueError, match=r"Unrecognized keyword arguments passed to Dense: \{'unitz': 4\}"):
        layers.Dense(3, unitz=4)
    with pytest.raises(ValueError, match="units must be a positive integer"):
        layers.Dense(0)
    with pytest.raises(ValueError, match="padding must be 'valid' or 'same'"):
        layers.Conv2D(4, 3, padding="full")
    with pytest.raises(ValueError, match="channels_last"):
        layers.Conv2D(4, 3, data_format="NHWC")  # Keras's two names only (channels_first is supported)
    with pytest.raises(ValueError, match="unique names"):
        keras.Sequential([layers.Dense(2, name="a"), layers.Dense(2, name="a")])


def test_functional_api_and_subclassed_model(device, rng):
    inputs = keras.Input(shape=(4,))
    h = layers.Dense(8, activation="relu")(inputs)
    outputs = layers.Dense(2)(h)
    model = keras.Model(inputs=inputs, outputs=outputs)
    assert isinstance(model, keras.Model) and model.built
    assert [type(layer).__name__ for layer in model.layers] == ["InputLayer", "Dense", "Dense"]
    text = summary_text(model)
    assert "(None, 8)" in text and " Total params: 58 " in text

    class TwoLayer(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = layers.Dense(8, activation="relu")
            self.out = layers.Dense(2)

        def call(self, x):
            return self.out(self.hidden(x))

    sub = TwoLayer()
    x = rng.standard_normal((3, 4)).astype(np.float32)
    y = sub(x)
    assert y.shape == (3, 2) and len(sub.trainable_variables) == 4
    sub.set_weights(model.get_weights())
    assert_close(sub(x), model(x).numpy(), rtol=1e-5, atol=1e-6)


def test_torch_style_loop_over_model_parameters(device):
    """Keras 3 on torch makes a model a Module: optim over model.parameters(), zero_grad(), loss.backward()."""
    import clnet
    inputs = keras.Input((5,))
    outputs = keras.layers.Dense(3)(keras.layers.Dense(4, activation="relu")(inputs))
    model = keras.Model(inputs, outputs)
    params = list(model.parameters())
    assert [id(p) for p in params] == [id(w) for w in model.weights] and len(params) == 4
    assert [n for n, _ in model.named_parameters()][0].endswith("kernel")
    opt = clnet.optim.SGD(model.parameters(), lr=0.1)
    x = np.random.default_rng(0).standard_normal((8, 5)).astype(np.float32)
    before = [w.numpy().copy() for w in model.weights]
    loss = (model(x) ** 2).mean()
    model.zero_grad()
    loss.backward()
    assert all(p.grad is not None for p in params)
    opt.step()
    for w, b, p in zip(model.weights, before, params):
        np.testing.assert_allclose(w.numpy(), b - 0.1 * p.grad.numpy(), rtol=1e-5, atol=1e-6)
    model.zero_grad()
    assert all(p.grad is None for p in params)

"""keras.utils (to_categorical, set_random_seed) and keras.datasets (local mnist.npz, sklearn digits)."""
import numpy as np
import pytest

from clnet import keras


def test_to_categorical():
    np.testing.assert_array_equal(keras.utils.to_categorical([0, 2, 1]), [[1, 0, 0], [0, 0, 1], [0, 1, 0]])
    out = keras.utils.to_categorical(np.array([[1], [3]]), num_classes=5)
    assert out.shape == (2, 5) and out.dtype == np.float32 and out[1, 3] == 1
    assert keras.utils.to_categorical(np.zeros((2, 3), int), 4).shape == (2, 3, 4)
    with pytest.raises(ValueError, match="out of range for num_classes=3"):
        keras.utils.to_categorical([0, 3], 3)
    with pytest.raises(ValueError, match="integer class labels"):
        keras.utils.to_categorical([0.5])


def test_set_random_seed_makes_weights_reproducible(device):
    def weights():
        keras.utils.set_random_seed(42)
        return keras.Sequential([keras.layers.Dense(3, input_shape=(4,))]).get_weights()[0]
    np.testing.assert_array_equal(weights(), weights())
    keras.utils.set_random_seed(43)
    assert not np.array_equal(weights(), keras.Sequential([keras.layers.Dense(3, input_shape=(4,))]).get_weights()[0])


def test_initializer_statistics():
    fan_in, fan_out = 300, 200
    glorot = keras.initializers.get("glorot_uniform")((fan_in, fan_out))
    limit = np.sqrt(6 / (fan_in + fan_out))
    assert glorot.dtype == np.float32 and np.abs(glorot).max() <= limit and glorot.std() == pytest.approx(
        limit / np.sqrt(3), rel=0.03)
    he = keras.initializers.HeNormal(seed=1)((3, 3, 40, 30))
    assert np.abs(he).max() <= 2 * np.sqrt(2 / 360) / 0.87962566103423978 + 1e-6
    assert he.std() == pytest.approx(np.sqrt(2 / 360), rel=0.05)
    np.testing.assert_array_equal(he, keras.initializers.HeNormal(seed=1)((3, 3, 40, 30)))
    assert not keras.initializers.get("zeros")((2, 2)).any()


def test_mnist_load_data_reads_a_local_file_and_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("CLNET_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match=r"mnist\.npz.*\.keras/datasets/mnist\.npz"):
        keras.datasets.mnist.load_data()
    rng = np.random.default_rng(0)
    arrays = dict(x_train=rng.integers(0, 255, (5, 28, 28), dtype=np.uint8), y_train=np.arange(5, dtype=np.uint8),
                  x_test=rng.integers(0, 255, (2, 28, 28), dtype=np.uint8), y_test=np.arange(2, dtype=np.uint8))
    (tmp_path / ".keras" / "datasets").mkdir(parents=True)
    np.savez(tmp_path / ".keras" / "datasets" / "mnist.npz", **arrays)
    (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    np.testing.assert_array_equal(x_train, arrays["x_train"])
    np.testing.assert_array_equal(y_test, arrays["y_test"])
    np.savez(tmp_path / "other.npz", x_train=arrays["x_train"])
    with pytest.raises(ValueError, match="lacks y_train"):
        keras.datasets.mnist.load_data(str(tmp_path / "other.npz"))


def test_digits_are_mnist_shaped():
    pytest.importorskip("sklearn")
    (x_train, y_train), (x_test, y_test) = keras.datasets.digits.load_data()
    assert x_train.shape == (1438, 28, 28) and x_test.shape == (359, 28, 28)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.uint8
    assert sorted(np.unique(y_test)) == list(range(10))
    assert x_train.max() == 255 and x_train[:, :4].max() == 0 and x_train[:, 24:].max() == 0  # a 20x20 digit, centred
    assert keras.datasets.digits.load_data(expand_dims=True)[0][0].shape == (1438, 28, 28, 1)
    from sklearn.datasets import load_digits
    small = load_digits().images[:100]
    big = keras.datasets.digits.upsample(small).astype(np.float64)

    def centre(images):
        grid = np.arange(images.shape[1]) + 0.5
        mass = images.sum(axis=(1, 2))
        return (images.sum(2) @ grid) / mass, (images.sum(1) @ grid) / mass
    # the picture is kept the right way up: centres of mass map through the 8 -> 20 scale and 4-pixel margin
    for got, want in zip(centre(big), centre(small)):
        np.testing.assert_allclose(got, 4 + want * 20 / 8, atol=0.35)


def test_plot_model_and_model_to_dot(tmp_path):
    """model_to_dot builds the graph with pydot; plot_model needs Graphviz's `dot` and says so when it is missing."""
    pydot = pytest.importorskip("pydot")
    a, b = keras.Input((3,), name="a"), keras.Input((2,), name="b")
    x = keras.layers.Dense(2, name="d")(a)
    model = keras.Model([a, b], keras.layers.concatenate([x, b], name="cat"))
    dot = keras.utils.model_to_dot(model, show_shapes=True)
    assert isinstance(dot, pydot.Dot) and len(dot.get_nodes()) == 4 and len(dot.get_edges()) == 3
    labels = " ".join(n.get_label() for n in dot.get_nodes())
    assert "d (Dense)" in labels and "Output shape: (None, 4)" in labels
    if keras.model_visualization.check_graphviz():
        keras.utils.plot_model(model, to_file=tmp_path / "m.png")
        assert (tmp_path / "m.png").stat().st_size > 0
    else:
        with pytest.raises(ImportError, match="install graphviz"):
            keras.utils.plot_model(model, to_file=tmp_path / "m.png")


def test_timeseries_windows_match_keras_rule():
    """(Real Keras needs TensorFlow for this one, so the reference is Keras's documented rule, in numpy.)"""
    ds = keras.utils.timeseries_dataset_from_array(np.arange(20), np.arange(20) * 10, sequence_length=4,
                                                   sequence_stride=3, sampling_rate=2, batch_size=2)
    batches = [(np.asarray(x.numpy() if hasattr(x, "numpy") else x), np.asarray(y.numpy() if hasattr(y, "numpy")
                                                                                 else y)) for x, y in ds]
    starts = np.arange(0, 20 - (4 - 1) * 2, 3)
    windows = np.concatenate([b[0] for b in batches])
    assert np.array_equal(windows, starts[:, None] + np.arange(4) * 2)
    assert np.array_equal(np.concatenate([b[1] for b in batches]), starts * 10)
    assert [len(b[0]) for b in batches] == [2, 2, 1]

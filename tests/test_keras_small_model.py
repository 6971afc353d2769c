"""One small Keras model end to end on every device, Oclgrind included: its race, bounds and
uninitialized-value checks then cover every kernel a Keras fit/evaluate/predict/save uses (conv, pooling,
dense, softmax cross-entropy, Adam, metrics, the ragged last batch)."""
import numpy as np

from clnet import keras
from clnet.keras import layers

from conftest import assert_close


def numpy_forward(x, weights):
    """Conv2D(2, 3, same) + relu, MaxPooling2D(2), Flatten (channels-last order), Dense + softmax, in float64."""
    k, b, w, c = (a.astype(np.float64) for a in weights)
    xp = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    h = np.zeros(x.shape[:3] + (k.shape[-1],))
    for i in range(3):
        for j in range(3):
            h += xp[:, i:i + x.shape[1], j:j + x.shape[2], :] @ k[i, j]
    h = np.maximum(h + b, 0)
    n, height, width, ch = h.shape
    pooled = h[:, :height // 2 * 2, :width // 2 * 2].reshape(n, height // 2, 2, width // 2, 2, ch).max(axis=(2, 4))
    logits = pooled.reshape(n, -1) @ w + c
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_small_convnet_end_to_end(device, rng, tmp_path):
    keras.utils.clear_session()
    keras.utils.set_random_seed(0)
    x = rng.standard_normal((6, 5, 5, 1)).astype(np.float32)
    y = rng.integers(0, 3, 6)
    model = keras.Sequential([keras.Input(shape=(5, 5, 1)), layers.Conv2D(2, 3, padding="same", activation="relu"),
                              layers.MaxPooling2D(), layers.Flatten(), layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    assert_close(model.predict(x, batch_size=4, verbose=0), numpy_forward(x, model.get_weights()), rtol=1e-4,
                 atol=1e-6, what="predictions before training")
    history = model.fit(x, y, batch_size=4, epochs=4, verbose=0)  # batches of 4 and 2
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    probs = model.predict(x, batch_size=4, verbose=0)
    assert_close(probs, numpy_forward(x, model.get_weights()), rtol=1e-4, atol=1e-6, what="predictions after")
    loss, accuracy = model.evaluate(x, y, batch_size=4, verbose=0)
    assert accuracy == np.mean(probs.argmax(-1) == y)
    assert loss == np.float32(loss) and abs(loss - np.mean(-np.log(probs[np.arange(6), y]))) < 1e-4
    model.save(tmp_path / "small.keras")
    np.testing.assert_array_equal(keras.models.load_model(tmp_path / "small.keras").predict(x, verbose=0),
                                  model.predict(x, verbose=0))


def test_same_padding_that_needs_an_extra_row_and_column(device, rng):
    """Keras's "same" with a stride or an even kernel pads one more at the bottom/right (TensorFlow's rule)."""
    from test_keras_layers import np_conv_nhwc, np_pool_nhwc
    keras.utils.clear_session()
    keras.utils.set_random_seed(0)
    x = rng.standard_normal((2, 5, 6, 2))
    conv = layers.Conv2D(3, (2, 3), strides=2, padding="same", bias_initializer="he_normal")
    y = conv(x.astype(np.float32))
    k, b = (w.astype(np.float64) for w in conv.get_weights())
    assert_close(y, np_conv_nhwc(x, k, b, (2, 2), "same"), rtol=1e-4, atol=1e-5, what="conv")
    for cls, kind in ((layers.MaxPooling2D, "max"), (layers.AveragePooling2D, "avg")):
        pooled = cls(2, padding="same")(x.astype(np.float32))
        assert_close(pooled, np_pool_nhwc(x, (2, 2), (2, 2), "same", kind), rtol=1e-5, atol=1e-6, what=kind)

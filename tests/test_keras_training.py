"""compile / fit / evaluate / predict, optimizers and losses of clnet.keras against hand-written references."""
import numpy as np
import pyopencl as cl
import pytest

import clnet
from clnet import keras
from clnet.backend import programs
from clnet.keras import layers

from conftest import assert_close, small
from keras_test_support import only_small_models_on_simulators  # noqa: F401  (autouse: small models on Oclgrind)


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.clear_session()
    keras.utils.set_random_seed(0)


def mlp(n_in=5, hidden=8, n_out=3, activation=None):
    return keras.Sequential([keras.Input(shape=(n_in,)), layers.Dense(hidden, activation="relu"),
                             layers.Dense(n_out, activation=activation)])


def test_fit_reduces_the_loss_on_a_learnable_problem(device, rng):
    n, batch, epochs = small(device, (256, 32, 20), (32, 8, 10))  # 160 or 40 steps
    x = rng.standard_normal((n, 4)).astype(np.float32)
    y = (x @ rng.standard_normal((4, 2)) + 0.5).astype(np.float32)
    model = keras.Sequential([layers.Dense(2, input_shape=(4,))])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", metrics=["mae"])
    history = model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0)
    assert sorted(history.history) == ["loss", "mae"]
    losses = history.history["loss"]
    assert len(losses) == epochs and losses[-1] < losses[0] / 10
    assert history.epoch == list(range(len(losses)))


def _hand_loop_weights(weights, x, y, batch_size, epochs, make_opt, loss_fn):
    """The same training written directly with clnet tensors, clnet.nn.functional and clnet.optim."""
    import clnet.nn.functional as F
    params = [clnet.tensor(w, requires_grad=True) for w in weights]
    opt = make_opt(params)
    snapshots = []
    for _ in range(epochs):
        for start in range(0, len(x), batch_size):
            xb, yb = clnet.tensor(x[start:start + batch_size]), clnet.tensor(y[start:start + batch_size])
            h = clnet.relu(xb @ params[0] + params[1])
            out = h @ params[2] + params[3]
            loss = loss_fn(F, out, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            snapshots.append([p.numpy() for p in params])
    return snapshots


@pytest.mark.parametrize("case", ["sgd_momentum_mse", "nesterov_softmax_ce", "adam_sparse_ce"])
def test_fit_matches_a_hand_written_clnet_loop_step_for_step(device, rng, case):
    n, batch = 23, 8  # three batches per epoch, the last one ragged
    x = rng.standard_normal((n, 5)).astype(np.float32)
    if case == "sgd_momentum_mse":
        y = rng.standard_normal((n, 3)).astype(np.float32)
        model, loss = mlp(), "mse"
        opt = keras.optimizers.SGD(0.05, momentum=0.9)

        def make_opt(p):
            return clnet.optim.SGD(p, lr=0.05, momentum=0.9)

        def loss_fn(F, out, yb):
            return F.mse_loss(out, yb)
    elif case == "nesterov_softmax_ce":
        y = keras.utils.to_categorical(rng.integers(0, 3, n), 3)
        model, loss = mlp(activation="softmax"), keras.losses.CategoricalCrossentropy()
        opt = keras.optimizers.SGD(0.1, momentum=0.5, nesterov=True)

        def make_opt(p):
            return clnet.optim.SGD(p, lr=0.1, momentum=0.5, nesterov=True)

        def loss_fn(F, out, yb):
            return F.cross_entropy(out, yb)
    else:
        y = rng.integers(0, 3, n)
        model, loss = mlp(), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        opt = keras.optimizers.Adam(0.01, epsilon=1e-7)
        state = {"t": 0}

        def make_opt(p):
            inner = clnet.optim.Adam(p, lr=0.01)

            class KerasEps:  # Keras puts epsilon outside the bias correction: eps_torch = eps / sqrt(1 - b2^t)
                def zero_grad(self):
                    inner.zero_grad()

                def step(self):
                    state["t"] += 1
                    inner.param_groups[0]["eps"] = 1e-7 / np.sqrt(1 - 0.999 ** state["t"])
                    inner.step()
            return KerasEps()

        def loss_fn(F, out, yb):
            return F.cross_entropy(out, yb)
    model.compile(optimizer=opt, loss=loss)
    initial = model.get_weights()
    seen = []
    record = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(model.get_weights()))
    model.fit(x, y, batch_size=batch, epochs=2, shuffle=False, verbose=0, callbacks=[record])
    expected = _hand_loop_weights(initial, x, y, batch, 2, make_opt, loss_fn)
    assert len(seen) == len(expected) == 6
    for step, (got, want) in enumerate(zip(seen, expected)):
        for g, w in zip(got, want):
            assert_close(g, w, rtol=1e-4, atol=1e-5, what=f"step {step}")


def test_keras_optimizer_formulas_against_numpy(device, rng):
    """SGD (momentum, nesterov), Adam and decoupled weight decay follow Keras's update equations."""
    w0 = rng.standard_normal((3, 4)).astype(np.float32)
    grads = [rng.standard_normal((3, 4)).astype(np.float32) for _ in range(3)]

    def run(opt):
        v = clnet.Variable(w0)
        for g in grads:
            opt.apply_gradients([(clnet.tensor(g), v)])
        return v.numpy()

    w, m = w0.astype(np.float64), np.zeros_like(w0, dtype=np.float64)
    for g in grads:  # Keras SGD nesterov: m = mu m - lr g; w += mu m - lr g
        m = 0.9 * m - 0.1 * g
        w = w + 0.9 * m - 0.1 * g
    assert_close(run(keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True)), w, rtol=1e-5, atol=1e-6)

    w, m, v = w0.astype(np.float64), 0.0, 0.0
    for t, g in enumerate(grads, 1):  # Keras Adam, epsilon outside the bias correction
        m = m + (g - m) * 0.1
        v = v + (g * g - v) * 0.001
        w = w - 0.01 * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t) * m / (np.sqrt(v) + 0.1)
    assert_close(run(keras.optimizers.Adam(0.01, epsilon=0.1)), w, rtol=1e-5, atol=1e-6)

    w = w0.astype(np.float64)
    for g in grads:  # Keras weight decay: w -= lr * wd * w, then the plain SGD step
        w = w - 0.1 * 0.5 * w - 0.1 * g
    assert_close(run(keras.optimizers.SGD(0.1, weight_decay=0.5)), w, rtol=1e-5, atol=1e-6)

    w = w0.astype(np.float64)
    for g in grads:
        w = w - 0.1 * g * min(1.0, 0.5 / np.linalg.norm(g))
    assert_close(run(keras.optimizers.SGD(0.1, clipnorm=0.5)), w, rtol=1e-5, atol=1e-6)


def test_optimizer_arguments_as_in_keras(device):
    assert keras.optimizers.SGD(1e-6).learning_rate == pytest.approx(1e-6)
    opt = keras.optimizers.get("adam")
    assert isinstance(opt, keras.optimizers.Adam) and opt.learning_rate == pytest.approx(1e-3)
    assert isinstance(keras.optimizers.get("RMSprop"), keras.optimizers.RMSprop)
    opt.learning_rate = 0.5
    assert opt.learning_rate == 0.5
    opt.learning_rate.assign(0.25)  # Keras 3 code treats the rate as a variable
    assert float(opt.learning_rate) == 0.25 and opt.learning_rate.numpy() == np.float32(0.25)
    assert keras.optimizers.SGD(lambda: 0.125).learning_rate == 0.125
    sched = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    opt = keras.optimizers.SGD(sched)
    v = clnet.Variable(np.zeros(2, np.float32))
    for _ in range(10):
        opt.apply_gradients([(clnet.ones(2), v)])
    assert opt.iterations == 10 and opt.learning_rate == pytest.approx(0.05)
    expected = -sum(0.1 * 0.5 ** (t / 10) for t in range(10))
    assert_close(v, [expected, expected], rtol=1e-5)


def test_gradient_tape_loop_equals_fit(device, rng):
    """The lecture's manual loop (GradientTape + apply_gradients) and fit() take the same steps."""
    n = 16
    x = rng.standard_normal((n, 6)).astype(np.float32)
    y = rng.standard_normal((n, 6)).astype(np.float32)
    a = keras.Sequential([layers.Dense(4, input_shape=(6,), activation=clnet.relu), layers.Dense(6)])
    b = keras.Sequential([layers.Dense(4, input_shape=(6,), activation="relu"), layers.Dense(6)])
    b.set_weights(a.get_weights())
    opt = keras.optimizers.SGD(1e-1)
    xt, yt = clnet.convert_to_tensor(x), clnet.convert_to_tensor(y)
    losses = []
    for _ in range(3):
        with clnet.GradientTape() as tape:
            y_pred = a(xt)
            loss = keras.losses.MeanSquaredError()(y_pred, yt)
        gradients = tape.gradient(loss, a.trainable_variables)
        opt.apply_gradients(zip(gradients, a.trainable_variables))
        losses.append(loss.item())
    b.compile(optimizer=keras.optimizers.SGD(1e-1), loss=keras.losses.MeanSquaredError())
    history = b.fit(x, y, batch_size=n, epochs=3, verbose=0)
    assert_close(history.history["loss"], losses, rtol=1e-5)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        assert_close(wa, wb, rtol=1e-5, atol=1e-6)


def test_evaluate_predict_and_accuracy_resolution(device, rng):
    n = 37
    x = rng.standard_normal((n, 5)).astype(np.float32)
    labels = rng.integers(0, 3, n)
    model = mlp(activation="softmax")
    probs = model.predict(x, batch_size=8, verbose=0)
    assert isinstance(probs, np.ndarray) and probs.shape == (n, 3)
    assert_close(probs, model(x).numpy(), rtol=1e-5, atol=1e-6)
    acc = float(np.mean(probs.argmax(-1) == labels))
    ce = float(np.mean(-np.log(probs[np.arange(n), labels])))

    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    loss, accuracy = model.evaluate(x, labels, batch_size=8, verbose=0)
    assert accuracy == pytest.approx(acc) and loss == pytest.approx(ce, rel=1e-4)
    assert isinstance(model._compile_metrics.metrics[0], keras.metrics.SparseCategoricalAccuracy)

    model.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["accuracy", "mse"])
    logs = model.evaluate(x, keras.utils.to_categorical(labels, 3), verbose=0, return_dict=True)
    assert sorted(logs) == ["accuracy", "loss", "mse"]
    assert logs["accuracy"] == pytest.approx(acc) and logs["loss"] == pytest.approx(ce, rel=1e-4)
    assert isinstance(model._compile_metrics.metrics[0], keras.metrics.CategoricalAccuracy)

    binary = keras.Sequential([layers.Dense(1, input_shape=(5,), activation="sigmoid")])
    binary.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    yb = (labels > 0).astype(np.float32)
    loss, accuracy = binary.evaluate(x, yb, verbose=0)
    p = binary.predict(x, verbose=0)[:, 0]
    assert accuracy == pytest.approx(np.mean((p > 0.5) == (yb > 0.5)))
    assert loss == pytest.approx(np.mean(-(yb * np.log(p) + (1 - yb) * np.log(1 - p))), rel=1e-4)
    assert binary.evaluate(x, yb, verbose=0, return_dict=True).keys() == {"loss", "accuracy"}


def test_validation_split_uses_the_last_samples(device, rng):
    n = 40
    x = rng.standard_normal((n, 5)).astype(np.float32)
    y = rng.standard_normal((n, 3)).astype(np.float32)
    model = mlp()
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse", metrics=["mae"])
    history = model.fit(x, y, batch_size=8, epochs=2, validation_split=0.25, verbose=0)
    assert sorted(history.history) == ["loss", "mae", "val_loss", "val_mae"]
    val_loss, val_mae = model.evaluate(x[30:], y[30:], verbose=0)
    assert history.history["val_loss"][-1] == pytest.approx(val_loss, rel=1e-5)
    assert history.history["val_mae"][-1] == pytest.approx(val_mae, rel=1e-5)
    history = model.fit(x[:30], y[:30], epochs=1, validation_data=(x[30:], y[30:]), verbose=0)
    assert "val_loss" in history.history


def test_regularization_losses_are_added(device, rng):
    x = rng.standard_normal((10, 4)).astype(np.float32)
    y = rng.standard_normal((10, 2)).astype(np.float32)
    model = keras.Sequential([layers.Dense(2, input_shape=(4,), kernel_regularizer=keras.regularizers.L2(0.1))])
    model.compile(optimizer="sgd", loss="mse")
    kernel, bias = model.get_weights()
    mse = np.mean((x @ kernel + bias - y) ** 2)
    assert model.evaluate(x, y, verbose=0) == pytest.approx(mse + 0.1 * np.sum(kernel.astype(np.float64) ** 2),
                                                            rel=1e-4)


def test_train_step_never_waits_for_the_device(device, rng, monkeypatch):
    """Per batch nothing is read back; the loss and metrics are read once per epoch (verbose=0)."""
    x = rng.standard_normal((64, 5)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    model = mlp()
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # warm up: kernels built, state made
    blocking = []
    real_copy = cl.enqueue_copy

    def counting_copy(queue, dest, src, **kwargs):
        if kwargs.get("is_blocking", True):
            blocking.append(type(dest).__name__)
        return real_copy(queue, dest, src, **kwargs)
    monkeypatch.setattr(cl, "enqueue_copy", counting_copy)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)  # 16 batches
    assert len(blocking) <= 2 * 2, f"{len(blocking)} blocking transfers in 16 steps: {blocking}"


def test_ragged_last_batch_builds_no_new_kernels(device, rng):
    x = rng.standard_normal((70, 6, 6, 2)).astype(np.float32)
    y = rng.integers(0, 4, 70)
    model = keras.Sequential([keras.Input(shape=(6, 6, 2)), layers.Conv2D(3, 3, activation="relu"),
                              layers.MaxPooling2D(), layers.Flatten(), layers.Dense(4, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:64], y[:64], batch_size=16, epochs=1, verbose=0)  # full batches only
    model.evaluate(x[:64], y[:64], batch_size=16, verbose=0)
    model.predict(x[:64], batch_size=16, verbose=0)
    before = programs.built_count()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)  # last batch of 6
    model.evaluate(x, y, batch_size=16, verbose=0)
    model.predict(x, batch_size=16, verbose=0)
    assert programs.built_count() == before


def test_dropout_only_in_training_and_predict_is_deterministic(device, rng):
    x = rng.standard_normal((20, 5)).astype(np.float32)
    model = keras.Sequential([layers.Dense(16, input_shape=(5,)), layers.Dropout(0.5), layers.Dense(2)])
    np.testing.assert_array_equal(model.predict(x, verbose=0), model.predict(x, verbose=0))
    a = model(x, training=True).numpy()
    b = model(x, training=True).numpy()
    assert not np.allclose(a, b)


def test_bad_fit_arguments(device, rng):
    model = mlp()
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.zeros((10, 5), np.float32), np.zeros((10, 3), np.float32)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        model.fit(x, y, batch_size=0, verbose=0)
    with pytest.raises(ValueError, match="validation_split must be in"):
        model.fit(x, y, validation_split=1.5, verbose=0)
    with pytest.raises(ValueError, match="must have the same shape.*target.shape=\\(10, 2\\)"):
        model.fit(x, y[:, :2], verbose=0)
    with pytest.raises(ValueError, match="`y` argument is not supported when using a generator"):
        model.fit((xi for xi in x), y, verbose=0)


def test_fit_evaluate_predict_take_generators_pydatasets_loaders_and_datasets(device, rng):
    """Every input kind reaches the same batches: the same model trained on each gives the same weights."""
    import clnet.data
    from clnet.utils.data import DataLoader, TensorDataset

    x = rng.standard_normal((24, 5)).astype(np.float32)
    y = rng.standard_normal((24, 3)).astype(np.float32)

    class Batches(keras.utils.PyDataset):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)

        def __len__(self):
            return 3

        def __getitem__(self, i):
            return x[i * 8:(i + 1) * 8], y[i * 8:(i + 1) * 8]

    def generator():
        while True:
            for i in range(3):
                yield x[i * 8:(i + 1) * 8], y[i * 8:(i + 1) * 8]

    sources = {
        "arrays": dict(x=x, y=y, batch_size=8, shuffle=False),
        "generator": dict(x=generator(), steps_per_epoch=3),
        "pydataset": dict(x=Batches(workers=2), shuffle=False),  # shuffle=True would shuffle the batch order
        "loader": dict(x=DataLoader(TensorDataset(clnet.tensor(x), clnet.tensor(y)), batch_size=8)),
        "dataset": dict(x=clnet.data.Dataset.from_tensor_slices((x, y)).batch(8)),
    }
    results = {}
    for name, kwargs in sources.items():
        keras.utils.set_random_seed(0)
        model = mlp()
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse", metrics=["mae"])
        history = model.fit(epochs=2, verbose=0, **kwargs)
        results[name] = (history.history["loss"], model.get_weights())
    for name, (losses, weights) in results.items():
        assert_close(losses, results["arrays"][0], rtol=1e-5, what=name)
        for w, ref in zip(weights, results["arrays"][1]):
            assert_close(w, ref, rtol=1e-5, atol=1e-6, what=name)
    model.evaluate(Batches(), verbose=0)
    assert model.predict(Batches(), verbose=0).shape == (24, 3)

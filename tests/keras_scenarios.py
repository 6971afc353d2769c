"""Small Keras programs written once and run twice: on real Keras 3 (tests/keras_reference/make_reference.py
records their numbers in keras_reference.json) and on clnet.keras (tests/test_keras_reference.py compares).

Each scenario takes the `keras` module to use and returns a dict of plain numbers/lists. Models start from
weights drawn by numpy from a fixed seed (set_weights), data is seeded numpy, nothing is shuffled and no
dropout runs, so both frameworks compute the same thing and only rounding may differ.
"""
import numpy as np

SCENARIOS = {}


def scenario(fn):
    SCENARIOS[fn.__name__] = fn
    return fn


def seeded_weights(model, seed=0, scale=0.5):
    rng = np.random.default_rng(seed)
    model.set_weights([(rng.standard_normal(w.shape) * scale).astype(np.float32) for w in model.get_weights()])


def _floats(values):
    return [float(v) for v in np.asarray(values, dtype=np.float64).ravel()]


def _history(h):
    return {k: _floats(v) for k, v in sorted(h.history.items())}


def _two_in_two_out(keras, name_b="b"):
    layers = keras.layers
    xa = keras.Input(shape=(4,), name="xa")
    xb = keras.Input(shape=(3,), name="xb")
    shared = layers.Dense(5, activation="tanh", name="shared")
    ha, hb = shared(layers.Dense(5, name="pa")(xa)), shared(layers.Dense(5, name="pb")(xb))
    merged = layers.concatenate([ha, hb], name="merge")
    out_a = layers.Dense(2, name="a")(merged[:, :5] + ha)
    out_b = layers.Dense(1, activation="sigmoid", name=name_b)(layers.add([ha, hb]) * 0.5)
    return keras.Model([xa, xb], [out_a, out_b])


def _data(n=12, seed=1):
    rng = np.random.default_rng(seed)
    xa = rng.standard_normal((n, 4)).astype(np.float32)
    xb = rng.standard_normal((n, 3)).astype(np.float32)
    ya = rng.standard_normal((n, 2)).astype(np.float32)
    yb = (rng.random((n, 1)) > 0.5).astype(np.float32)
    return xa, xb, ya, yb


@scenario
def multi_output_loss_weights(keras):
    model = _two_in_two_out(keras)
    seeded_weights(model)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss={"a": "mse", "b": "binary_crossentropy"},
                  loss_weights={"a": 1.0, "b": 0.5}, metrics={"a": ["mae"], "b": ["accuracy"]})
    xa, xb, ya, yb = _data()
    h = model.fit([xa, xb], {"a": ya, "b": yb}, batch_size=4, epochs=2, shuffle=False, verbose=0)
    ev = model.evaluate([xa, xb], [ya, yb], batch_size=5, verbose=0, return_dict=True)
    pred = model.predict({"xa": xa, "xb": xb}, verbose=0)
    return {"history": _history(h), "evaluate": {k: float(v) for k, v in sorted(ev.items())},
            "pred_a": _floats(pred[0][:3]), "pred_b": _floats(pred[1][:3]),
            "weights_after": _floats(model.get_layer("shared").get_weights()[0][:2])}


@scenario
def dict_outputs_and_list_losses(keras):
    layers = keras.layers
    x = keras.Input(shape=(4,), name="x")
    h = layers.Dense(6, activation="relu", name="h")(x)
    model = keras.Model({"x": x}, {"reg": layers.Dense(2, name="r")(h), "cls": layers.Dense(3, name="c",
                                                                                       activation="softmax")(h)})
    seeded_weights(model, 3)
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss={"reg": "mae", "cls": "sparse_categorical_crossentropy"},
                  metrics={"cls": ["accuracy"], "reg": ["mse"]})
    rng = np.random.default_rng(4)
    xs = rng.standard_normal((10, 4)).astype(np.float32)
    y = {"reg": rng.standard_normal((10, 2)).astype(np.float32), "cls": rng.integers(0, 3, (10,))}
    h = model.fit({"x": xs}, y, batch_size=5, epochs=2, shuffle=False, verbose=0)
    out = model.predict({"x": xs}, verbose=0)
    return {"history": _history(h), "cls": _floats(out["cls"][:2]), "reg": _floats(out["reg"][:2]),
            "evaluate": [float(v) for v in model.evaluate({"x": xs}, y, verbose=0)]}


@scenario
def sample_and_class_weights(keras):
    layers = keras.layers
    model = keras.Sequential([keras.Input(shape=(3,)), layers.Dense(4, activation="relu"),
                              layers.Dense(3, activation="softmax")])
    seeded_weights(model, 5)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], weighted_metrics=["accuracy"])
    rng = np.random.default_rng(6)
    x = rng.standard_normal((16, 3)).astype(np.float32)
    y = rng.integers(0, 3, (16,))
    sw = rng.random(16).astype(np.float32) + 0.25
    h1 = model.fit(x, y, sample_weight=sw, batch_size=4, epochs=2, shuffle=False, verbose=0)
    h2 = model.fit(x, y, class_weight={0: 1.0, 1: 2.0, 2: 0.5}, batch_size=8, epochs=1, shuffle=False, verbose=0)
    ev = model.evaluate(x, y, sample_weight=sw, verbose=0, return_dict=True)
    return {"sample_weight": _history(h1), "class_weight": _history(h2),
            "evaluate": {k: float(v) for k, v in sorted(ev.items())}}


@scenario
def steps_epochs_and_validation(keras):
    layers = keras.layers
    model = keras.Sequential([keras.Input(shape=(2,)), layers.Dense(1)])
    seeded_weights(model, 7)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse", metrics=["mae"])
    rng = np.random.default_rng(8)
    x = rng.standard_normal((20, 2)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0]], np.float32) + 0.5).astype(np.float32)
    h = model.fit(x, y, batch_size=4, epochs=4, initial_epoch=1, steps_per_epoch=3, validation_data=(x[:8], y[:8]),
                  validation_freq=2, shuffle=False, verbose=0)
    h2 = model.fit(x, y, batch_size=6, epochs=2, validation_split=0.25, validation_steps=1, shuffle=False,
                   verbose=0)
    return {"history": _history(h), "epochs": list(h.epoch), "history2": _history(h2)}


@scenario
def custom_train_step_subclass(keras):
    ops = keras.ops

    class CustomModel(keras.Model):
        def train_step(self, data):
            x, y = data
            y_pred = self(x, training=True)
            loss = self.compute_loss(y=y, y_pred=y_pred)
            self.zero_grad()
            loss.backward()
            grads = [v.value.grad for v in self.trainable_weights]
            self.optimizer.apply(grads, self.trainable_weights)
            for metric in self.metrics:
                if metric.name == "loss":
                    metric.update_state(loss)
                else:
                    metric.update_state(y, y_pred)
            return {m.name: m.result() for m in self.metrics}

    inputs = keras.Input(shape=(3,))
    outputs = keras.layers.Dense(1)(ops.relu(inputs) - 0.1 * inputs)
    model = CustomModel(inputs, outputs)
    seeded_weights(model, 9)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", metrics=["mae"])
    rng = np.random.default_rng(10)
    x = rng.standard_normal((12, 3)).astype(np.float32)
    y = rng.standard_normal((12, 1)).astype(np.float32)
    h = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    return {"history": _history(h), "type": type(model).__name__, "pred": _floats(model.predict(x[:3], verbose=0))}


@scenario
def add_loss_endpoint_layer(keras):
    ops = keras.ops

    class ActivityPenalty(keras.layers.Layer):
        def call(self, inputs):
            self.add_loss(0.1 * ops.mean(ops.square(inputs)))
            return inputs

    x = keras.Input(shape=(3,))
    h = ActivityPenalty()(keras.layers.Dense(4, name="d1")(x))
    out = keras.layers.Dense(2, name="d2")(h)
    model = keras.Model(x, out)
    seeded_weights(model, 11)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    rng = np.random.default_rng(12)
    xs = rng.standard_normal((8, 3)).astype(np.float32)
    ys = rng.standard_normal((8, 2)).astype(np.float32)
    h = model.fit(xs, ys, batch_size=4, epochs=2, shuffle=False, verbose=0)
    model(xs[:2])
    n_after_call = len(model.losses)
    model(xs[:2])
    return {"history": _history(h), "losses_after_two_calls": n_after_call, "still": len(model.losses)}


@scenario
def symbolic_op_shapes(keras):
    ops = keras.ops
    x = keras.Input(shape=(4, 6))
    i = keras.Input(shape=(5,), dtype="int32")
    results = {
        "sum_axis1": ops.sum(x, axis=1), "mean_keep": ops.mean(x, axis=-1, keepdims=True),
        "expand": ops.expand_dims(x, 1), "concat": ops.concatenate([x, x], axis=-1), "stack": ops.stack([x, x], 1),
        "reshape": ops.reshape(x, (-1, 24)), "transpose": ops.transpose(x, (0, 2, 1)), "matmul": x @ ops.ones((6, 3)),
        "onehot": ops.one_hot(i, 7), "argmax": ops.argmax(x, axis=-1), "getitem": x[:, 1:3, ::2],
        "softmax": ops.softmax(x), "where": ops.where(x > 0, x, 0.0), "take": ops.take(x, [0, 2], axis=2),
        "cast": ops.cast(i, "float32"), "squeeze": ops.squeeze(ops.expand_dims(x, -1), -1),
        "tile": ops.tile(x, (1, 2, 1)), "split0": ops.split(x, 2, axis=2)[0], "norm": ops.norm(x, axis=-1),
        "pad": ops.pad(x, [[0, 0], [1, 1], [0, 2]]), "repeat": ops.repeat(x, 2, axis=1), "max": ops.max(x, axis=(1, 2)),
        "cumsum": ops.cumsum(x, axis=1), "topk_values": ops.top_k(x, 2)[0],
    }
    return {k: {"shape": [None if s is None else int(s) for s in v.shape], "dtype": str(v.dtype)}
            for k, v in sorted(results.items())}

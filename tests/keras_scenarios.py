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


def _metric_data():
    rng = np.random.default_rng(20)
    yb = (rng.random((16, 1)) > 0.5).astype(np.float32)
    pb = rng.random((16, 1)).astype(np.float32)
    yc = rng.integers(0, 4, (16,))
    pc = rng.random((16, 4)).astype(np.float32)
    pc /= pc.sum(-1, keepdims=True)
    yr = rng.standard_normal((16, 3)).astype(np.float32)
    pr = (yr + 0.3 * rng.standard_normal((16, 3))).astype(np.float32)
    sw = (rng.random(16) + 0.2).astype(np.float32)
    return yb, pb, yc, pc, yr, pr, sw


@scenario
def metric_values(keras):
    """Every metric class on the same data, twice (two update_state calls), with and without sample weights."""
    m = keras.metrics
    yb, pb, yc, pc, yr, pr, sw = _metric_data()
    onehot = np.eye(4, dtype=np.float32)[yc]
    binary = {"auc": m.AUC(), "auc_pr": m.AUC(curve="PR"), "auc_pr_minoring": m.AUC(curve="PR", summation_method="minoring"),
              "auc_20": m.AUC(num_thresholds=20), "precision": m.Precision(), "recall": m.Recall(),
              "precision_t": m.Precision(thresholds=[0.3, 0.7]), "tp": m.TruePositives(), "tn": m.TrueNegatives(),
              "fp": m.FalsePositives(), "fn": m.FalseNegatives(thresholds=[0.2, 0.5, 0.8]),
              "p_at_r": m.PrecisionAtRecall(0.6), "r_at_p": m.RecallAtPrecision(0.5),
              "sens_at_spec": m.SensitivityAtSpecificity(0.5), "spec_at_sens": m.SpecificityAtSensitivity(0.5),
              "binary_accuracy": m.BinaryAccuracy(), "binary_ce": m.BinaryCrossentropy(), "binary_iou": m.BinaryIoU(),
              "hinge": m.Hinge(), "squared_hinge": m.SquaredHinge()}
    sparse = {"sparse_acc": m.SparseCategoricalAccuracy(), "sparse_top2": m.SparseTopKCategoricalAccuracy(k=2),
              "sparse_ce": m.SparseCategoricalCrossentropy(), "mean_iou": m.MeanIoU(num_classes=4, sparse_y_pred=False),
              "iou_12": m.IoU(num_classes=4, target_class_ids=[1, 2], sparse_y_pred=False)}
    categorical = {"cat_acc": m.CategoricalAccuracy(), "top2": m.TopKCategoricalAccuracy(k=2),
                   "cat_ce": m.CategoricalCrossentropy(), "kld": m.KLDivergence(), "cat_hinge": m.CategoricalHinge(),
                   "f1_none": m.F1Score(), "f1_macro": m.F1Score(average="macro"),
                   "f1_micro": m.F1Score(average="micro"), "fbeta_weighted": m.FBetaScore(average="weighted", beta=2.0),
                   "f1_threshold": m.F1Score(average="macro", threshold=0.3), "onehot_iou": m.OneHotMeanIoU(4)}
    regression = {"mse": m.MeanSquaredError(), "rmse": m.RootMeanSquaredError(), "mae": m.MeanAbsoluteError(),
                  "mape": m.MeanAbsolutePercentageError(), "msle": m.MeanSquaredLogarithmicError(),
                  "cosine": m.CosineSimilarity(), "logcosh": m.LogCoshError(), "r2": m.R2Score(),
                  "poisson": m.Poisson()}
    out = {}
    for weighted in (False, True):
        for group, y, p in ((binary, yb, pb), (sparse, yc, pc), (categorical, onehot, pc),
                            (regression, yr, np.abs(pr) if False else pr)):
            for name, metric in group.items():
                metric.reset_state()
                y_use = np.abs(y) if name in ("msle", "poisson") else y
                p_use = np.abs(p) if name in ("msle", "poisson") else p
                for half in (slice(0, 8), slice(8, 16)):
                    metric.update_state(y_use[half], p_use[half], sample_weight=sw[half] if weighted else None)
                out[f"{name}{'_w' if weighted else ''}"] = _floats(metric.result())
    return out


@scenario
def loss_values(keras):
    """Every loss class on the same data, reduced (default) and unreduced, with sample weights."""
    L = keras.losses
    yb, pb, yc, pc, yr, pr, sw = _metric_data()
    onehot = np.eye(4, dtype=np.float32)[yc]
    cases = {"mse": (L.MeanSquaredError(), yr, pr), "mae": (L.MeanAbsoluteError(), yr, pr),
             "mape": (L.MeanAbsolutePercentageError(), yr, pr), "msle": (L.MeanSquaredLogarithmicError(), np.abs(yr),
                                                                        np.abs(pr)),
             "cosine": (L.CosineSimilarity(), yr, pr), "huber": (L.Huber(delta=0.5), yr, pr),
             "logcosh": (L.LogCosh(), yr, pr), "hinge": (L.Hinge(), yb, pb), "squared_hinge": (L.SquaredHinge(), yb, pb),
             "cat_hinge": (L.CategoricalHinge(), onehot, pc), "kld": (L.KLDivergence(), onehot, pc),
             "poisson": (L.Poisson(), np.abs(yr), np.abs(pr)), "bce": (L.BinaryCrossentropy(), yb, pb),
             "bce_logits_smooth": (L.BinaryCrossentropy(from_logits=True, label_smoothing=0.1), yb, pb * 4 - 2),
             "cce": (L.CategoricalCrossentropy(), onehot, pc),
             "cce_logits": (L.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2), onehot, pc * 3),
             "scce": (L.SparseCategoricalCrossentropy(), yc, pc),
             "scce_logits": (L.SparseCategoricalCrossentropy(from_logits=True), yc, pc * 3),
             "binary_focal": (L.BinaryFocalCrossentropy(gamma=1.5), yb, pb),
             "binary_focal_balanced": (L.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.3), yb, pb),
             "categorical_focal": (L.CategoricalFocalCrossentropy(), onehot, pc),
             "dice": (L.Dice(), yb, pb), "tversky": (L.Tversky(alpha=0.3, beta=0.7), yb, pb)}
    out = {}
    for name, (loss, y, p) in cases.items():
        out[name] = _floats(loss(y, p))
        out[name + "_w"] = _floats(loss(y, p, sample_weight=sw))
    out["mse_sum"] = _floats(L.MeanSquaredError(reduction="sum")(yr, pr, sample_weight=sw))
    out["mse_none"] = _floats(L.MeanSquaredError(reduction="none")(yr, pr))
    return out


@scenario
def callbacks_and_logs(keras):
    """What callbacks see (hooks, logs keys) and do (schedules, plateaus, early stopping, NaN stop)."""
    layers = keras.layers
    rng = np.random.default_rng(30)
    x = rng.standard_normal((24, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-1.0], [0.5]], np.float32)).astype(np.float32)

    def model():
        m = keras.Sequential([keras.Input(shape=(3,)), layers.Dense(1)])
        seeded_weights(m, 31)
        m.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", metrics=["mae"])
        return m

    seen = []

    class Recorder(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen.append(("train_begin", sorted(logs.keys())))

        def on_epoch_begin(self, epoch, logs=None):
            seen.append(("epoch_begin", epoch, sorted(logs.keys())))

        def on_train_batch_end(self, batch, logs=None):
            if batch == 0:
                seen.append(("batch_end", batch, sorted(logs.keys())))

        def on_test_begin(self, logs=None):
            seen.append(("test_begin", sorted(logs.keys())))

        def on_epoch_end(self, epoch, logs=None):
            seen.append(("epoch_end", epoch, sorted(logs.keys())))

        def on_train_end(self, logs=None):
            seen.append(("train_end", sorted(logs.keys())))

    m = model()
    m.fit(x, y, batch_size=8, epochs=2, validation_data=(x[:8], y[:8]), shuffle=False, verbose=0, callbacks=[Recorder()])
    sched = model()
    h_sched = sched.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0, callbacks=[
        keras.callbacks.LearningRateScheduler(lambda epoch, lr: lr * 0.5 if epoch > 0 else lr)])
    plateau = model()
    h_plateau = plateau.fit(x, y * 0 + 5.0, batch_size=24, epochs=6, shuffle=False, verbose=0, callbacks=[
        keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=10.0, cooldown=1)])
    early = model()
    h_early = early.fit(x, y, batch_size=8, epochs=10, validation_data=(x[:4], y[:4] + 3.0), shuffle=False,
                        verbose=0, callbacks=[keras.callbacks.EarlyStopping(monitor="val_loss", patience=2,
                                                                            restore_best_weights=True)])
    nan = model()
    h_nan = nan.fit(x, y * np.float32(1e30), batch_size=8, epochs=3, shuffle=False, verbose=0,
                    callbacks=[keras.callbacks.TerminateOnNaN()])
    return {"seen": [list(item) for item in seen], "schedule": _history(h_sched), "plateau": _history(h_plateau),
            "early": {"epochs": list(h_early.epoch), "history": _history(h_early),
                      "weights": _floats(early.get_weights()[0])},
            "nan_epochs": list(h_nan.epoch), "nan_loss_is_finite": [bool(np.isfinite(v)) for v in h_nan.history["loss"]]}


@scenario
def custom_metric_and_utils(keras):
    """A Metric subclass with add_variable (the keras.io training guide's CategoricalTruePositives), and the
    sequence helpers."""
    ops = keras.ops

    class CategoricalTruePositives(keras.metrics.Metric):
        def __init__(self, name="categorical_true_positives", **kwargs):
            super().__init__(name=name, **kwargs)
            self.true_positives = self.add_variable(shape=(), name="ctp", initializer="zeros")

        def update_state(self, y_true, y_pred, sample_weight=None):
            y_pred = ops.reshape(ops.argmax(y_pred, axis=1), (-1, 1))
            values = ops.cast(y_true, "int32") == ops.cast(y_pred, "int32")
            values = ops.cast(values, "float32")
            if sample_weight is not None:
                sample_weight = ops.cast(sample_weight, "float32")
                values = ops.multiply(values, sample_weight)
            self.true_positives.assign_add(ops.sum(values))

        def result(self):
            return self.true_positives

        def reset_state(self):
            self.true_positives.assign(0.0)

    layers = keras.layers
    model = keras.Sequential([keras.Input(shape=(4,)), layers.Dense(3, activation="softmax")])
    seeded_weights(model, 40)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy",
                  metrics=[CategoricalTruePositives()])
    rng = np.random.default_rng(41)
    x = rng.standard_normal((12, 4)).astype(np.float32)
    y = rng.integers(0, 3, (12, 1))
    h = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    padded = keras.utils.pad_sequences([[1, 2, 3], [4], [5, 6, 7, 8, 9]], maxlen=4, padding="post",
                                       truncating="pre", value=-1)
    return {"history": _history(h), "padded": padded.tolist(),
            "to_categorical": keras.utils.to_categorical([0, 2, 1], 3).tolist()}

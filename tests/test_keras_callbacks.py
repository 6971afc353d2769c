"""clnet.keras callbacks: Keras's hook order, the progress bar's format, EarlyStopping, ModelCheckpoint,
CSVLogger, LambdaCallback, schedulers, and BackupAndRestore resuming a fit killed mid-epoch."""
import csv
import io
import os
import re
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import clnet
from clnet import keras
from clnet.keras import layers

from conftest import assert_close
from keras_test_support import only_small_models_on_simulators  # noqa: F401  (autouse: small models on Oclgrind)

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.clear_session()
    keras.utils.set_random_seed(0)


def small_model():
    model = keras.Sequential([layers.Dense(4, input_shape=(3,), activation="relu"), layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse", metrics=["mae"])
    return model


def data(rng, n=16):
    return rng.standard_normal((n, 3)).astype(np.float32), rng.standard_normal((n, 2)).astype(np.float32)


class Recorder(keras.callbacks.Callback):
    def __init__(self, log):
        super().__init__()
        self.log = log

    def __getattribute__(self, name):
        if name.startswith("on_") and name not in ("on_batch_begin", "on_batch_end"):
            return lambda *args: object.__getattribute__(self, "log").append((name,) + args[:1] if args and
                                                                              isinstance(args[0], int) else (name,))
        return object.__getattribute__(self, name)


class Inject(keras.callbacks.Callback):
    """Puts a scripted value into the epoch logs (placed before the callback under test)."""

    def __init__(self, name, values):
        super().__init__()
        self.name, self.values = name, values

    def on_epoch_end(self, epoch, logs=None):
        logs[self.name] = self.values[epoch]


def test_hooks_fire_in_keras_order(device, rng):
    x, y = data(rng, 16)
    log = []
    model = small_model()
    model.fit(x, y, batch_size=8, epochs=2, validation_data=(x[:8], y[:8]), verbose=0, callbacks=[Recorder(log)])
    epoch = lambda e: ([("on_epoch_begin", e), ("on_train_batch_begin", 0), ("on_train_batch_end", 0),  # noqa: E731
                        ("on_train_batch_begin", 1), ("on_train_batch_end", 1), ("on_test_begin",),
                        ("on_test_batch_begin", 0), ("on_test_batch_end", 0), ("on_test_end",), ("on_epoch_end", e)])
    assert log == [("on_train_begin",)] + epoch(0) + epoch(1) + [("on_train_end",)]
    log.clear()
    model.evaluate(x, y, batch_size=8, verbose=0, callbacks=[Recorder(log)])
    assert log == [("on_test_begin",), ("on_test_batch_begin", 0), ("on_test_batch_end", 0),
                   ("on_test_batch_begin", 1), ("on_test_batch_end", 1), ("on_test_end",)]
    log.clear()
    model.predict(x, batch_size=16, verbose=0, callbacks=[Recorder(log)])
    assert log == [("on_predict_begin",), ("on_predict_batch_begin", 0), ("on_predict_batch_end", 0),
                   ("on_predict_end",)]


def test_batch_logs_are_running_means_and_epoch_logs_floats(device, rng):
    x, y = data(rng, 24)
    seen, epochs = [], []
    model = small_model()
    cb = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(dict(logs)),
                                        on_epoch_end=lambda e, logs: epochs.append(dict(logs)))
    history = model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[cb])
    assert [sorted(s) for s in seen] == [["loss", "mae"]] * 3
    assert all(isinstance(v, float) for v in epochs[0].values())
    assert seen[-1]["loss"] == pytest.approx(epochs[0]["loss"]) == pytest.approx(history.history["loss"][0])
    assert model.history is history


def test_progress_bar_lines(device, rng, capsys):
    x, y = data(rng, 20)
    model = small_model()
    model.fit(x, y, batch_size=8, epochs=2, validation_split=0.2, verbose=1)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Epoch 1/2" and out[2] == "Epoch 2/2" and len(out) == 4
    line = re.compile(r"^2/2 ━{20} \d+s \d+(s|ms|us)/step - loss: \d+\.\d{4} - mae: \d+\.\d{4} - val_loss: "
                      r"\d+\.\d{4} - val_mae: \d+\.\d{4}$")
    assert line.match(out[1]) and line.match(out[3]), out
    model.fit(x, y, batch_size=8, epochs=1, verbose=2)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and re.match(r"^3/3 - \d+s - \d+(s|ms|us)/step - loss: \d+\.\d{4} - mae: \d+\.\d{4}$",
                                      out[0]), out
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    model.evaluate(x, y, verbose=0)
    model.predict(x, verbose=0)
    assert capsys.readouterr().out == ""
    model.evaluate(x, y, batch_size=8, verbose=1)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and re.match(r"^3/3 ━{20} \d+s \d+(s|ms|us)/step - loss: \d+\.\d{4} - mae", out[0])


def test_progbar_on_a_terminal_redraws_in_place():
    stream = io.StringIO()
    bar = keras.utils.Progbar(50, stream=stream, dynamic=True, interval=0.0)
    bar.update(12, [("accuracy", 0.9312), ("loss", 0.2104)])
    text = stream.getvalue()
    assert text.startswith("\r") and "\x1b[32m" in text  # carriage return, coloured bar
    plain = ANSI.sub("", text)
    assert re.match(r"^\r12/50 ━{20} \d+s \d+(s|ms|us)/step - accuracy: 0\.9312 - loss: 0\.2104$", plain), plain
    bar.update(50, [("accuracy", 0.9), ("loss", 0.3)])
    last = ANSI.sub("", stream.getvalue()).split("\r")[-1]
    assert last.endswith("\n") and last.startswith("50/50 ━━━━━━━━━━━━━━━━━━━━ ")
    # values are averaged over steps unless stateful, as Keras's Progbar does
    assert "accuracy: 0.9075" in last and "loss: 0.2785" in last


def test_early_stopping_patience_and_restore_best_weights(device, rng):
    x, y = data(rng, 8)
    model = small_model()
    weights = []
    keep = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: weights.append(model.get_weights()))
    stop = keras.callbacks.EarlyStopping(monitor="score", patience=2, restore_best_weights=True)
    history = model.fit(x, y, epochs=10, verbose=0, callbacks=[keep, Inject("score", [5, 3, 4, 4, 1, 0, 0, 0, 0, 0]),
                                                                stop])
    assert history.epoch == [0, 1, 2, 3] and stop.stopped_epoch == 3 and stop.best == 3 and stop.best_epoch == 1
    for got, want in zip(model.get_weights(), weights[1]):
        np.testing.assert_array_equal(got, want)
    # min_delta: improvements smaller than it do not count; "acc" in the name means higher is better
    stop = keras.callbacks.EarlyStopping(monitor="score", patience=1, min_delta=0.1)
    history = model.fit(x, y, epochs=5, verbose=0, callbacks=[Inject("score", [5, 4.95, 4.9, 4.8, 4.7]), stop])
    assert history.epoch == [0, 1]
    stop = keras.callbacks.EarlyStopping(monitor="val_acc", patience=0)
    assert stop.mode == "max"
    history = model.fit(x, y, epochs=5, verbose=0, callbacks=[Inject("val_acc", [0.5, 0.6, 0.55, 0.7, 0.8]), stop])
    assert history.epoch == [0, 1, 2]
    with pytest.warns(UserWarning, match="`val_loss` which is not available. Available metrics are: loss, mae"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[keras.callbacks.EarlyStopping()])


def test_model_checkpoint_epoch_names_best_only_and_weights_only(device, rng, tmp_path):
    x, y = data(rng, 8)
    model = small_model()
    weights = []
    keep = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: weights.append(model.get_weights()))
    every = keras.callbacks.ModelCheckpoint(str(tmp_path / "m_{epoch:02d}-{loss:.2f}.keras"), save_best_only=False)
    best = keras.callbacks.ModelCheckpoint(str(tmp_path / "best.keras"), monitor="score", save_best_only=True)
    wonly = keras.callbacks.ModelCheckpoint(str(tmp_path / "w.weights.h5"), save_weights_only=True)
    history = model.fit(x, y, epochs=3, verbose=0, callbacks=[keep, Inject("score", [3, 1, 2]), every, best, wonly])
    names = sorted(p.name for p in tmp_path.iterdir())
    expected = [f"m_{e + 1:02d}-{history.history['loss'][e]:.2f}.keras" for e in range(3)]
    assert names == sorted(expected + ["best.keras", "w.weights.h5"])
    restored = keras.models.load_model(tmp_path / "best.keras")
    for got, want in zip(restored.get_weights(), weights[1]):
        np.testing.assert_array_equal(got, want)
    other = small_model()
    other.load_weights(tmp_path / "w.weights.h5")
    for got, want in zip(other.get_weights(), weights[2]):
        np.testing.assert_array_equal(got, want)


def test_csv_logger_and_lambda_callback(device, rng, tmp_path):
    x, y = data(rng, 8)
    model = small_model()
    path = tmp_path / "log.csv"
    ends = []
    history = model.fit(x, y, epochs=3, verbose=0, validation_data=(x, y),
                        callbacks=[keras.callbacks.CSVLogger(str(path)),
                                   keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: ends.append(e))])
    rows = list(csv.DictReader(path.open()))
    assert list(rows[0]) == ["epoch", "loss", "mae", "val_loss", "val_mae"]
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2] and ends == [0, 1, 2]
    assert [float(r["val_loss"]) for r in rows] == pytest.approx(history.history["val_loss"])
    model.fit(x, y, epochs=2, verbose=0, initial_epoch=0, callbacks=[keras.callbacks.CSVLogger(str(path), append=True)])
    assert len(list(csv.DictReader(path.open()))) == 5
    with pytest.raises(TypeError, match="unknown hook"):
        keras.callbacks.LambdaCallback(on_epoch_finish=print)


def test_learning_rate_callbacks_and_terminate_on_nan(device, rng):
    x, y = data(rng, 8)
    model = small_model()
    history = model.fit(x, y, epochs=3, verbose=0,
                        callbacks=[keras.callbacks.LearningRateScheduler(lambda epoch, lr: 0.1 / (epoch + 1))])
    assert history.history["learning_rate"] == pytest.approx([0.1, 0.05, 0.1 / 3])
    model.optimizer.learning_rate = 1.0
    plateau = keras.callbacks.ReduceLROnPlateau(monitor="score", factor=0.5, patience=1)
    model.fit(x, y, epochs=3, verbose=0, callbacks=[Inject("score", [1.0, 1.0, 1.0]), plateau])
    assert model.optimizer.learning_rate == pytest.approx(0.25)
    model.optimizer.learning_rate = 1e30
    history = model.fit(x * 1e10, y, batch_size=2, epochs=2, verbose=0, callbacks=[keras.callbacks.TerminateOnNaN()])
    assert len(history.epoch) == 1 and not np.isfinite(history.history["loss"][0])


SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from clnet import keras
    from clnet.keras import layers

    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((40, 3)).astype(np.float32)
    y = rng.standard_normal((40, 2)).astype(np.float32)
    model = keras.Sequential([layers.Dense(6, input_shape=(3,), activation="relu"), layers.Dropout(0.3),
                              layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")

    class Killer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
        def on_train_batch_end(self, batch, logs=None):
            if os.environ.get("KILL_AT") == f"{self.epoch}:{batch}":
                os.kill(os.getpid(), signal.SIGKILL)

    history = model.fit(x, y, batch_size=8, epochs=5, verbose=0,
                        callbacks=[keras.callbacks.BackupAndRestore(sys.argv[1]), Killer()])
    print("epochs run:", history.epoch)
    np.savez(sys.argv[2], *model.get_weights())
""")


def test_backup_and_restore_resumes_a_killed_fit_with_nothing_lost(device, tmp_path):
    """Weights, Adam's moments, the epoch, the shuffling order and the dropout masks' RNG all resume."""
    if device.is_simulator:
        pytest.skip("starts child processes on the device; an Oclgrind run must stay in one process (its log)")
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, CLNET_DEVICE=device.spec,
               PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(os.path.abspath(clnet.__file__)))] +
                                          [p for p in [os.environ.get("PYTHONPATH")] if p]))

    def run(backup, out, kill=None):
        e = dict(env, **({"KILL_AT": kill} if kill else {}))
        return subprocess.run([sys.executable, str(script), str(backup), str(out)], env=e, capture_output=True,
                              text=True, timeout=300)

    ref = run(tmp_path / "backup_ref", tmp_path / "ref.npz")
    assert ref.returncode == 0, ref.stderr
    assert "epochs run: [0, 1, 2, 3, 4]" in ref.stdout
    killed = run(tmp_path / "backup", tmp_path / "resumed.npz", kill="2:3")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (tmp_path / "backup" / keras.callbacks.BackupAndRestore.FILENAME).exists()
    resumed = run(tmp_path / "backup", tmp_path / "resumed.npz")
    assert resumed.returncode == 0, resumed.stderr
    assert "epochs run: [2, 3, 4]" in resumed.stdout
    assert not (tmp_path / "backup").exists()  # deleted once fit finished
    want, got = np.load(tmp_path / "ref.npz"), np.load(tmp_path / "resumed.npz")
    for key in want.files:
        assert_close(got[key], want[key], rtol=1e-6, atol=1e-7, what=key)


def test_tensorboard_writes_event_files_tensorboard_reads(device, tmp_path):
    """Scalars per epoch (train/ and validation/ runs, as Keras), per batch, the learning rate and weight
    histograms, read back with TensorBoard's own event reader."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 4)).astype(np.float32)
    y = x @ rng.standard_normal((4, 2)).astype(np.float32)
    model = keras.Sequential([keras.Input(shape=(4,)), layers.Dense(2, name="out")])
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse", metrics=["mae"])
    tb = keras.callbacks.TensorBoard(log_dir=tmp_path / "logs", histogram_freq=1, update_freq=2)
    history = model.fit(x, y, batch_size=8, epochs=3, validation_split=0.25, verbose=0, callbacks=[tb])
    train = EventAccumulator(str(tmp_path / "logs" / "train"), size_guidance={"scalars": 0, "histograms": 0})
    val = EventAccumulator(str(tmp_path / "logs" / "validation"), size_guidance={"scalars": 0})
    train.Reload()
    val.Reload()
    tags = train.Tags()
    assert {"epoch_loss", "epoch_mae", "epoch_learning_rate", "batch_loss"} <= set(tags["scalars"])
    assert [e.step for e in train.Scalars("epoch_loss")] == [0, 1, 2]
    assert np.allclose([e.value for e in train.Scalars("epoch_loss")], history.history["loss"], rtol=1e-6)
    assert np.allclose([e.value for e in val.Scalars("epoch_loss")], history.history["val_loss"], rtol=1e-6)
    assert [e.step for e in train.Scalars("batch_loss")] == [2, 4, 6, 8]  # 3 batches per epoch, every 2nd
    assert [e.step for e in val.Scalars("evaluation_loss_vs_iterations")] == [3, 6, 9]
    assert np.allclose([e.value for e in train.Scalars("epoch_learning_rate")], 0.05)
    assert set(tags["histograms"]) == {"out/kernel", "out/bias"}
    kernel = train.Histograms("out/kernel")[-1].histogram_value
    assert kernel.num == 8 and np.isclose(kernel.sum, model.layers[0].kernel.numpy().sum(), rtol=1e-5)

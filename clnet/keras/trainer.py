"""compile / fit / evaluate / predict: Keras's training loop on clnet's autograd and optimizers.

A train step enqueues forward, loss, backward, the fused optimizer update and the metric updates, and
returns without waiting for the device: batches are uploaded with non-blocking copies, the loss and
metrics accumulate in device scalars, and values are read back only when something looks at them (the
progress bar at a refresh, a callback, the end of an epoch). Sizes travel as kernel arguments, so the
ragged last batch reuses the kernels built for the full ones.
"""
from __future__ import annotations

import math
from collections.abc import MutableMapping

import numpy as np
import pyopencl as cl

import clnet
from clnet.core import dispatch
from clnet.tensor import Tensor

from . import callbacks as callbacks_module
from . import losses as losses_module
from . import metrics as metrics_module
from . import optimizers as optimizers_module
from . import utils


# --- data ------------------------------------------------------------------------------------------
def _as_array(data, what):
    if isinstance(data, Tensor):
        data = data.numpy()
    elif isinstance(data, (list, tuple)) and data and isinstance(data[0], (np.ndarray, Tensor)) and \
            any(np.shape(d) != np.shape(data[0]) for d in data):
        raise TypeError(f"{what}: several input arrays (multi-input models) are not supported yet")
    if isinstance(data, dict):
        raise TypeError(f"{what}: dicts of arrays (named inputs) are not supported yet; pass a numpy array")
    if hasattr(data, "__next__") or (hasattr(data, "__getitem__") and not hasattr(data, "__array__")
                                     and not isinstance(data, (list, tuple))):
        raise TypeError(f"{what}: generators and datasets are not supported yet; pass numpy arrays or clnet tensors "
                        f"(got {type(data).__name__})")
    arr = np.asarray(data)
    if arr.dtype == object:
        raise TypeError(f"{what}: could not convert the data to a numeric array (ragged or mixed types)")
    if arr.ndim == 0:
        raise ValueError(f"{what}: expected an array with a batch dimension, got a scalar")
    return arr


def _x_array(x, what="x"):
    arr = _as_array(x, what)
    if arr.dtype.kind in "fiub" and arr.dtype != np.float32:
        arr = arr.astype(np.float32)
    return arr


def _y_array(y, what="y"):
    arr = _as_array(y, what)
    if arr.dtype.kind == "f" and arr.dtype != np.float32:
        arr = arr.astype(np.float32)
    elif arr.dtype.kind == "b":
        arr = arr.astype(np.float32)
    elif arr.dtype.kind in "iu" and arr.dtype != np.int64:
        arr = arr.astype(np.int64)
    return arr


def _check_cardinality(x, y):
    if y is not None and len(x) != len(y):
        raise ValueError("Data cardinality is ambiguous. Make sure all arrays contain the same number of samples. "
                         f"'x' sizes: {len(x)}\n'y' sizes: {len(y)}")


class _Uploader:
    """Non-blocking host->device copies; keeps each pending copy's host array alive until it has finished."""

    def __init__(self, device):
        self.device = device
        self._pending = []

    def __call__(self, arr):
        arr = np.ascontiguousarray(arr)
        t = Tensor._empty(arr.shape, arr.dtype, self.device)
        if arr.size:
            self._pending.append(dispatch.upload(self.device, t._buf, arr, blocking=False))
        if len(self._pending) > 64:
            done = cl.command_execution_status.COMPLETE
            self._pending = [e for e in self._pending if e.command_execution_status != done]
        return t

    def finish(self):
        for e in self._pending:
            e.wait()
        self._pending = []


def _batches(n, batch_size, order):
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size] if order is not None else slice(start, min(start + batch_size, n))


# --- running values on the device ------------------------------------------------------------------
class _LossTracker:
    """Batch-size weighted mean of the loss, summed on the device."""

    name = "loss"

    def __init__(self):
        self.reset_state()

    def reset_state(self):
        self._total, self._count = None, 0

    def update(self, loss, n):
        with clnet.no_grad():
            part = loss.detach() * float(n)
            self._total = part if self._total is None else self._total + part
        self._count += n

    def result(self):
        if self._total is None:
            return clnet.tensor(0.0)
        with clnet.no_grad():
            return self._total / float(self._count)


class _Logs(MutableMapping):
    """The logs of a batch: names -> floats, read from the device only on first access.

    Values a callback sets are kept beside them (and shadow them), as with Keras's dict."""

    def __init__(self, trackers):
        self._trackers = trackers
        self._values = None
        self._extra = {}

    def _read(self):
        if self._values is None:
            self._values = {t.name: float(t.result().item()) for t in self._trackers}
        return self._values

    def _names(self):
        return sorted({t.name for t in self._trackers} | set(self._extra))

    def __getitem__(self, key):
        if key in self._extra:
            return self._extra[key]
        return self._read()[key]

    def __setitem__(self, key, value):
        self._extra[key] = value

    def __delitem__(self, key):
        if key in self._extra:
            del self._extra[key]
        else:
            raise KeyError(f"{key!r} is a metric of the model and cannot be removed from the logs")

    def __iter__(self):
        return iter(self._names())

    def __len__(self):
        return len(self._names())

    def __contains__(self, key):
        return key in self._extra or any(t.name == key for t in self._trackers)

    def __repr__(self):
        return repr(dict(self))


def _read_logs(trackers):
    return {k: v for k, v in sorted((t.name, float(t.result().item())) for t in trackers)}


# --- compile-time objects --------------------------------------------------------------------------
def _resolve_metric(identifier, y_true, y_pred, loss):
    """Keras's rule for "accuracy": binary for one output unit, sparse for integer labels, else categorical."""
    if isinstance(identifier, str) and identifier.lower() in ("accuracy", "acc"):
        loss_fn = getattr(loss, "fn", None)
        if y_pred.shape[-1] == 1 or loss_fn is losses_module.binary_crossentropy:
            fn = metrics_module.binary_accuracy
        elif loss_fn is losses_module.sparse_categorical_crossentropy or y_true.ndim < y_pred.ndim or (
                y_true.shape[-1] == 1 and y_pred.shape[-1] > 1):
            fn = metrics_module.sparse_categorical_accuracy
        else:
            fn = metrics_module.categorical_accuracy
        return metrics_module.MeanMetricWrapper(fn, name=identifier)
    return metrics_module.get(identifier)


class Trainer:
    """The compile/fit/evaluate/predict half of keras.Model."""

    def _init_trainer(self):
        self.compiled = False
        self.optimizer = None
        self.loss = None
        self._loss_obj = None
        self._metric_ids = []
        self._metrics = None
        self._loss_tracker = _LossTracker()
        self.stop_training = False
        self.history = None
        self._initial_epoch = None
        self._fit_rng = None

    # --- compile ---------------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None, weighted_metrics=None,
                run_eagerly=False, steps_per_execution=1, jit_compile="auto", auto_scale_loss=True):
        """Store the optimizer, loss and metrics (nothing runs until fit/evaluate)."""
        if loss_weights is not None or weighted_metrics is not None:
            raise NotImplementedError("loss_weights and weighted_metrics are not supported yet")
        if isinstance(loss, (dict, list, tuple)):
            raise NotImplementedError("one loss per output (multi-output models) is not supported yet")
        if isinstance(metrics, dict):
            raise NotImplementedError("metrics per output (a dict) is not supported yet")
        if metrics is not None and not isinstance(metrics, (list, tuple)):
            raise TypeError(f"metrics must be a list, e.g. metrics=['accuracy'], got {metrics!r}")
        self.optimizer = optimizers_module.get(optimizer)
        self._loss_obj = losses_module.as_loss_object(loss)
        self.loss = loss
        ids = list(metrics or [])
        for m in ids:  # unknown names fail here, at compile time, as in Keras
            if not (isinstance(m, str) and m.lower() in ("accuracy", "acc")):
                metrics_module.get(m)
        self._metric_ids = ids
        self._metrics = None
        self.compiled = True

    def _assert_compiled(self, method):
        if not getattr(self, "compiled", False):
            raise ValueError(f"You must call `compile()` before calling `{method}()`.")
        if self._loss_obj is None and method in ("fit", "evaluate") and not self.losses:
            raise ValueError(f"`{method}()` needs a loss: pass loss=... to compile()")

    def _build_metrics(self, y_true, y_pred):
        if self._metrics is None:
            self._metrics = [_resolve_metric(m, y_true, y_pred, self._loss_obj) for m in self._metric_ids]
            names = [m.name for m in self._metrics]
            dup = {n for n in names if names.count(n) > 1 or n == "loss"}
            if dup:
                raise ValueError(f"metric names must be unique and differ from 'loss'; repeated: {sorted(dup)}")

    @property
    def metrics(self):
        return [self._loss_tracker] + list(self._metrics or [])

    @property
    def metrics_names(self):
        return [m.name for m in self.metrics]

    def reset_metrics(self):
        for m in self.metrics:
            m.reset_state()

    def _trackers(self):
        return [self._loss_tracker] + (self._metrics or [])

    # --- steps -----------------------------------------------------------------------------------
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The compiled loss plus the regularization losses of the layers (Keras 3's compute_loss)."""
        total = self._loss_obj(y, y_pred, sample_weight) if self._loss_obj is not None else None
        for extra in self.losses:
            total = extra if total is None else total + extra
        return total

    def train_step(self, xb, yb):
        variables = self._train_vars
        for v in variables:
            v.grad = None
        with clnet.enable_grad():
            y_pred = self(xb, training=True)
            self._build_metrics(yb, y_pred)
            loss = self.compute_loss(xb, yb, y_pred)
        if variables and loss.requires_grad:  # a fully frozen model only tracks its loss and metrics
            loss.backward()
            self.optimizer.step_variables(variables)
        self._update_metrics(loss, yb, y_pred, xb.shape[0])

    def test_step(self, xb, yb):
        with clnet.no_grad():
            y_pred = self(xb, training=False)
            self._build_metrics(yb, y_pred)
            loss = self.compute_loss(xb, yb, y_pred, training=False)
            self._update_metrics(loss, yb, y_pred, xb.shape[0])

    def _update_metrics(self, loss, yb, y_pred, n):
        self._loss_tracker.update(loss, n)
        with clnet.no_grad():
            for m in self._metrics:
                m.update_state(yb, y_pred.detach())

    # --- preparing data --------------------------------------------------------------------------
    def _prepare_build(self, x):
        if not self.built:
            self._build_for_data(x)

    def _build_for_data(self, x):
        """Build by calling the model on one sample (Sequential overrides this to build from the shape)."""
        with clnet.no_grad():
            self(x[:1])

    def _device(self):
        for w in self.weights:
            return w.device
        return clnet.default_device()

    # --- fit -------------------------------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, class_weight=None, sample_weight=None, initial_epoch=0,
            steps_per_epoch=None, validation_steps=None, validation_batch_size=None, validation_freq=1):
        """Train for `epochs` epochs; returns the History callback (history.history[name] per epoch)."""
        self._assert_compiled("fit")
        for name, value in (("class_weight", class_weight), ("sample_weight", sample_weight),
                            ("steps_per_epoch", steps_per_epoch), ("validation_steps", validation_steps)):
            if value is not None:
                raise NotImplementedError(f"fit: {name} is not supported yet")
        if x is None or y is None:
            raise ValueError("fit needs both x and y (numpy arrays or clnet tensors)")
        batch_size = 32 if batch_size is None else _check_batch_size(batch_size)
        epochs, initial_epoch = int(epochs), int(initial_epoch)
        x, y = _x_array(x), _y_array(y)
        _check_cardinality(x, y)
        if not 0.0 <= validation_split < 1.0:
            raise ValueError(f"validation_split must be in [0, 1), got {validation_split}")
        if validation_data is not None and validation_split:
            validation_split = 0.0  # Keras: validation_data takes precedence
        val = None
        if validation_split:
            split = int(math.floor(len(x) * (1.0 - validation_split)))
            if split == 0 or split == len(x):
                raise ValueError(f"validation_split={validation_split} leaves no training or no validation samples "
                                 f"out of {len(x)}")
            x, y, val = x[:split], y[:split], (x[split:], y[split:])
        elif validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise ValueError("validation_data must be a tuple (x_val, y_val)")
            if len(validation_data) == 3 and validation_data[2] is not None:
                raise NotImplementedError("validation sample weights are not supported yet")
            val = (_x_array(validation_data[0], "validation x"), _y_array(validation_data[1], "validation y"))
            _check_cardinality(*val)
        if len(x) == 0:
            raise ValueError("fit: x holds no samples")
        self._prepare_build(x)
        device = self._device()
        self._train_vars = self.trainable_variables
        verbose = 1 if verbose == "auto" else int(verbose)
        steps = -(-len(x) // batch_size)
        cbs = callbacks_module.CallbackList(callbacks, add_history=True, add_progbar=verbose != 0, model=self,
                                            verbose=verbose, epochs=epochs, steps=steps)
        self.stop_training = False
        self._initial_epoch = None
        if self._fit_rng is None:
            self._fit_rng = np.random.default_rng(utils.host_rng().integers(2**63))
        upload = _Uploader(device)
        cbs.on_train_begin()
        start_epoch = self._initial_epoch if self._initial_epoch is not None else initial_epoch
        epoch_logs = {}
        for epoch in range(start_epoch, epochs):
            self.reset_metrics()
            cbs.on_epoch_begin(epoch)
            order = self._fit_rng.permutation(len(x)) if shuffle else None
            for step, idx in enumerate(_batches(len(x), batch_size, order)):
                cbs.on_train_batch_begin(step)
                self.train_step(upload(x[idx]), upload(y[idx]))
                cbs.on_train_batch_end(step, _Logs(self._trackers()))
                if self.stop_training:
                    break
            epoch_logs = _read_logs(self._trackers())
            upload.finish()
            if val is not None and (epoch + 1) % validation_freq == 0:
                val_logs = self._run_test(val[0], val[1], validation_batch_size or batch_size, cbs, upload)
                epoch_logs.update({"val_" + k: v for k, v in val_logs.items()})
            cbs.on_epoch_end(epoch, epoch_logs)
            if self.stop_training:
                break
        cbs.on_train_end(epoch_logs)
        self._train_vars = None
        return cbs.history

    # --- evaluate --------------------------------------------------------------------------------
    def _run_test(self, x, y, batch_size, cbs, upload):
        self.reset_metrics()
        cbs.on_test_begin()
        for step, idx in enumerate(_batches(len(x), batch_size, None)):
            cbs.on_test_batch_begin(step)
            self.test_step(upload(x[idx]), upload(y[idx]))
            cbs.on_test_batch_end(step, _Logs(self._trackers()))
        logs = _read_logs(self._trackers())
        upload.finish()
        cbs.on_test_end(logs)
        return logs

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
                 callbacks=None, return_dict=False):
        """The loss, or [loss, *metrics] in compile order (a dict with return_dict=True)."""
        self._assert_compiled("evaluate")
        if sample_weight is not None or steps is not None:
            raise NotImplementedError("evaluate: sample_weight and steps are not supported yet")
        if x is None or y is None:
            raise ValueError("evaluate needs both x and y")
        batch_size = 32 if batch_size is None else _check_batch_size(batch_size)
        x, y = _x_array(x), _y_array(y)
        _check_cardinality(x, y)
        if len(x) == 0:
            raise ValueError("evaluate: x holds no samples")
        self._prepare_build(x)
        verbose = 1 if verbose == "auto" else int(verbose)
        cbs = callbacks_module.CallbackList(callbacks, add_progbar=verbose != 0, model=self, verbose=verbose,
                                            epochs=1, steps=-(-len(x) // batch_size))
        logs = self._run_test(x, y, batch_size, cbs, _Uploader(self._device()))
        if return_dict:
            return logs
        ordered = [logs["loss"]] + [logs[m.name] for m in self._metrics or []]
        return ordered[0] if len(ordered) == 1 else ordered

    # --- predict ---------------------------------------------------------------------------------
    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """Outputs for every sample as one numpy array, computed batch by batch; one wait at the end."""
        if steps is not None:
            raise NotImplementedError("predict: steps is not supported yet")
        batch_size = 32 if batch_size is None else _check_batch_size(batch_size)
        x = _x_array(x)
        self._prepare_build(x)
        device = self._device()
        verbose = 1 if verbose == "auto" else int(verbose)
        cbs = callbacks_module.CallbackList(callbacks, add_progbar=verbose != 0, model=self, verbose=verbose,
                                            epochs=1, steps=-(-len(x) // batch_size))
        upload = _Uploader(device)
        out, reads = None, []
        cbs.on_predict_begin()
        with clnet.no_grad():
            for step, idx in enumerate(_batches(len(x), batch_size, None)):
                cbs.on_predict_batch_begin(step)
                y = self(upload(x[idx]), training=False)
                if not isinstance(y, Tensor):
                    raise TypeError(f"predict: the model returned {type(y).__name__}; only single-tensor outputs "
                                    "are supported")
                y = y.contiguous()
                if out is None:
                    out = np.empty((len(x),) + tuple(y.shape[1:]), dtype=y.dtype)
                dst = out[idx]
                if dst.size:
                    reads.append(dispatch.download(device, dst, y._buf, y.offset * y.dtype.itemsize, blocking=False))
                cbs.on_predict_batch_end(step, {"outputs": y})
        for e in reads:
            e.wait()
        upload.finish()
        cbs.on_predict_end()
        if out is None:
            return np.empty((0,), dtype=np.float32)
        return out

    def predict_on_batch(self, x):
        with clnet.no_grad():
            return self(x, training=False).numpy()

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        self._assert_compiled("train_on_batch")
        x, y = _x_array(x), _y_array(y)
        _check_cardinality(x, y)
        self._prepare_build(x)
        self._train_vars = self.trainable_variables
        self.reset_metrics()
        up = _Uploader(self._device())
        self.train_step(up(x), up(y))
        logs = _read_logs(self._trackers())
        up.finish()
        if return_dict:
            return logs
        ordered = [logs["loss"]] + [logs[m.name] for m in self._metrics or []]
        return ordered[0] if len(ordered) == 1 else ordered

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        return self.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=return_dict)


def _check_batch_size(batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


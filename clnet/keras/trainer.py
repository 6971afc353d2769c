"""compile / fit / evaluate / predict: Keras's training loop on clnet's autograd and optimizers.

A train step enqueues forward, loss, backward, the fused optimizer update and the metric updates, and
returns without waiting for the device: batches are uploaded with non-blocking copies, the loss and
metrics accumulate in device scalars, and values are read back only when something looks at them (the
progress bar at a refresh, a callback that reads its logs, the end of an epoch). Sizes travel as kernel
arguments, so the ragged last batch reuses the kernels built for the full ones.

train_step(data) / test_step(data) / predict_step(data) take Keras 3's `data` (x, y, sample_weight) and
may be overridden, as in Keras. Every way data comes in (arrays, lists and dicts of arrays, generators,
datasets, loaders) goes through one function, Trainer._epoch_iterator.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, MutableMapping

import numpy as np
import pyopencl as cl

import clnet
from clnet.core import dispatch
from clnet.tensor import Tensor

from . import callbacks as callbacks_module
from . import config, tree, utils
from . import losses as losses_module
from . import metrics as metrics_module
from . import optimizers as optimizers_module
from .compile_utils import CompileLoss, CompileMetrics


# --- data ------------------------------------------------------------------------------------------
def _host_array(data, what):
    """numpy view of one array-like (floats as float32, ints as int64, bools kept)."""
    if isinstance(data, Tensor):
        data = data.detach().numpy()
    arr = np.asarray(data)
    if arr.dtype == object:
        raise TypeError(f"{what}: could not convert the data to a numeric array (ragged or mixed types)")
    if arr.ndim == 0:
        raise ValueError(f"{what}: expected an array with a batch dimension, got a scalar")
    if arr.dtype.kind == "f" and arr.dtype != np.float32:
        arr = arr.astype(np.float32)
    elif arr.dtype.kind in "iu" and arr.dtype != np.int64:
        arr = arr.astype(np.int64)
    return arr


def _is_array_like(x):
    return isinstance(x, (np.ndarray, Tensor)) or (hasattr(x, "__array__") and not hasattr(x, "__next__"))


def _is_array_data(x):
    """Arrays, or lists/tuples/dicts of arrays (what fit slices into batches itself)."""
    if x is None:
        return True
    if isinstance(x, dict):
        return all(_is_array_like(v) or isinstance(v, (list, tuple)) for v in x.values())
    if isinstance(x, (list, tuple)):
        return all(_is_array_like(v) or (isinstance(v, (int, float)) and not isinstance(v, bool)) or
                   isinstance(v, (list, tuple, dict)) for v in x)
    return _is_array_like(x)


def _array_structure(x, what):
    """x as a structure of host arrays (a flat list of numbers is one array, as numpy reads it)."""
    if x is None:
        return None
    if isinstance(x, (list, tuple)) and x and all(isinstance(v, (int, float, np.number)) for v in x):
        return _host_array(np.asarray(x), what)
    if isinstance(x, (list, tuple)) and x and all(isinstance(v, (list, tuple)) for v in x) and \
            not any(isinstance(e, (np.ndarray, Tensor)) for v in x for e in v):
        return _host_array(np.asarray(x), what)
    return tree.map_structure(lambda a: _host_array(a, what), x)


def _num_samples(struct):
    sizes = {len(a) for a in tree.flatten(struct) if a is not None}
    return sizes


def _check_cardinality(x, y, sw):
    sizes = {"x": _num_samples(x), "y": _num_samples(y) if y is not None else set(),
             "sample_weight": _num_samples(sw) if sw is not None else set()}
    allsizes = set().union(*sizes.values())
    if len(allsizes) > 1:
        parts = "".join(f"'{k}' sizes: {', '.join(str(s) for s in sorted(v))}\n" for k, v in sizes.items() if v)
        raise ValueError("Data cardinality is ambiguous. Make sure all arrays contain the same number of samples."
                         + parts)
    return allsizes.pop() if allsizes else 0


def _class_weight_to_sample_weight(y, class_weight):
    if y is None or tree.is_nested(y):
        raise ValueError("`class_weight` is only supported for Models with a single output.")
    labels = y.argmax(-1) if y.ndim > 1 and y.shape[-1] > 1 else y.reshape(len(y), -1)[:, 0]
    labels = np.asarray(labels).astype(np.int64)
    table = np.ones(max(int(labels.max()) + 1 if labels.size else 1, max(class_weight) + 1), dtype=np.float32)
    for k, w in class_weight.items():
        table[int(k)] = float(w)
    return table[labels]


def _split(struct, start, stop):
    return tree.map_structure(lambda a: a[start:stop], struct) if struct is not None else None


class _Uploader:
    """Non-blocking host->device copies; keeps each pending copy's host array alive until it has finished."""

    def __init__(self, device):
        self.device = device
        self._pending = []

    def __call__(self, arr):
        if isinstance(arr, Tensor):
            return arr
        arr = np.ascontiguousarray(arr)
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        t = Tensor._empty(arr.shape, arr.dtype, self.device)
        if arr.size:
            self._pending.append(dispatch.upload(self.device, t._buf, arr, blocking=False))
        if len(self._pending) > 64:
            done = cl.command_execution_status.COMPLETE
            self._pending = [e for e in self._pending if e.command_execution_status != done]
        return t

    def structure(self, struct):
        return tree.map_structure(lambda a: None if a is None else self(a), struct) if struct is not None else None

    def finish(self):
        for e in self._pending:
            e.wait()
        self._pending = []


def unpack_x_y_sample_weight(data):
    """Keras's rule for a batch: x, (x,), (x, y) or (x, y, sample_weight)."""
    if isinstance(data, list):
        data = tuple(data)
    if not isinstance(data, tuple):
        return data, None, None
    if len(data) == 1:
        return data[0], None, None
    if len(data) == 2:
        return data[0], data[1], None
    if len(data) == 3:
        return data
    raise ValueError(f"Data is expected to be in format `x`, `(x,)`, `(x, y)`, or `(x, y, sample_weight)`, found: "
                     f"a tuple of {len(data)} items")


class _ArrayEpochs:
    """Batches of arrays (and lists/dicts of arrays): a shuffled order per epoch, the last batch ragged."""

    def __init__(self, x, y, sample_weight, batch_size, shuffle, rng):
        self.x, self.y, self.sw = x, y, sample_weight
        self.n = _check_cardinality(x, y, sample_weight)
        self.batch_size, self.shuffle, self.rng = batch_size, shuffle, rng  # rng(): the generator to draw from
        self.num_batches = -(-self.n // batch_size) if self.n else 0

    def batches(self):
        order = self.rng().permutation(self.n) if self.shuffle else None
        for start in range(0, self.n, self.batch_size):
            idx = order[start:start + self.batch_size] if order is not None else \
                slice(start, min(start + self.batch_size, self.n))

            def take(struct):
                return tree.map_structure(lambda a: a[idx], struct) if struct is not None else None
            yield take(self.x), take(self.y), take(self.sw)


class _IterableEpochs:
    """Batches from a generator, a dataset, a DataLoader or a PyDataset (each batch x, (x, y) or (x, y, sw))."""

    def __init__(self, data, class_weight=None):
        self.data, self.class_weight = data, class_weight
        self._iterator = None
        self.num_batches = len(data) if hasattr(data, "__len__") and not hasattr(data, "__next__") else None

    def batches(self):
        if hasattr(self.data, "__next__"):  # a generator: one pass, continued across epochs
            source = self.data
        elif hasattr(self.data, "__getitem__") and hasattr(self.data, "__len__") and not hasattr(self.data, "__iter__"):
            source = (self.data[i] for i in range(len(self.data)))
        else:
            source = iter(self.data)
        for batch in source:
            x, y, sw = unpack_x_y_sample_weight(batch)
            x = tree.map_structure(lambda a: a if isinstance(a, Tensor) else _host_array(a, "x"), x)
            y = tree.map_structure(lambda a: a if isinstance(a, Tensor) else _host_array(a, "y"), y) \
                if y is not None else None
            if self.class_weight is not None and sw is None:
                sw = _class_weight_to_sample_weight(y.numpy() if isinstance(y, Tensor) else y, self.class_weight)
            yield x, y, sw
        if hasattr(self.data, "on_epoch_end"):
            self.data.on_epoch_end()


# --- logs ------------------------------------------------------------------------------------------
def _value(v):
    if isinstance(v, Tensor):
        return float(v.item()) if v.numel() == 1 else v.numpy()
    return v


def _flatten_logs(logs):
    out = {}
    for k, v in logs.items():
        if isinstance(v, Mapping):
            out.update(_flatten_logs(v))
        else:
            out[k] = v
    return out


class _Logs(MutableMapping):
    """The logs of a batch: names -> floats, read from the device only on first access.

    `source` is a dict of tensors or a function returning one (called on first access); values a callback
    sets are kept beside them (and shadow them), as with Keras's dict."""

    def __init__(self, source):
        self._source = source
        self._values = None
        self._extra = {}

    def _read(self):
        if self._values is None:
            raw = self._source() if callable(self._source) else self._source
            self._values = {k: _value(v) for k, v in _flatten_logs(dict(raw or {})).items()}
        return self._values

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
        return iter(sorted(set(self._read()) | set(self._extra)))

    def __len__(self):
        return len(set(self._read()) | set(self._extra))

    def __repr__(self):
        return repr(dict(self))


def _read_logs(logs):
    return {k: v for k, v in sorted(dict(logs).items())}


# --- the trainer -----------------------------------------------------------------------------------
class Trainer:
    """The compile/fit/evaluate/predict half of keras.Model."""

    def _init_trainer(self):
        self.compiled = False
        self.optimizer = None
        self.loss = None
        self._compile_loss = None
        self._compile_metrics = None
        self._compile_config = None
        self._loss_tracker = None
        self.stop_training = False
        self.history = None
        self._initial_epoch = None
        self._fit_rng = None
        self._train_vars = None
        self.steps_per_execution = 1
        self.run_eagerly = False
        self.jit_compile = False

    # --- compile ---------------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None, weighted_metrics=None,
                run_eagerly=False, steps_per_execution=1, jit_compile="auto", auto_scale_loss=True):
        """Store the optimizer, loss(es) and metrics (nothing runs until fit/evaluate)."""
        self.optimizer = optimizers_module.get(optimizer)
        output_names = self._output_names()
        if loss is not None:
            for item in (tree.flatten(loss) if isinstance(loss, (list, tuple, dict)) else [loss]):
                if item is not None:
                    losses_module.get(item)  # unknown names fail at compile time, as in Keras
        self._compile_loss = CompileLoss(loss, loss_weights, output_names) if loss is not None else None
        self._compile_metrics = CompileMetrics(metrics, weighted_metrics, output_names) \
            if (metrics or weighted_metrics) else None
        self._loss_tracker = metrics_module.Mean(name="loss")
        self.loss = loss
        self._compile_config = {"optimizer": optimizer, "loss": loss, "loss_weights": loss_weights,
                                "metrics": metrics, "weighted_metrics": weighted_metrics}
        self.run_eagerly, self.steps_per_execution, self.jit_compile = run_eagerly, steps_per_execution, jit_compile
        self.compiled = True

    def _output_names(self):
        graph = self.__dict__.get("_graph")
        if graph is None:
            return None
        if isinstance(graph.outputs_struct, dict):
            return sorted(graph.outputs_struct)
        return [t._keras_history.operation.name for t in graph.outputs]

    def get_compile_config(self):
        """The compile() arguments, serialized (model.save stores them); raises ValueError for custom objects."""
        if not self.compiled:
            return None
        cc = self._compile_config
        return {"optimizer": optimizers_module.serialize(self.optimizer),
                "loss": _serialize_loss_spec(cc["loss"]), "loss_weights": cc["loss_weights"],
                "metrics": _serialize_metric_spec(cc["metrics"]),
                "weighted_metrics": _serialize_metric_spec(cc["weighted_metrics"]),
                "run_eagerly": bool(self.run_eagerly), "steps_per_execution": self.steps_per_execution,
                "jit_compile": False}

    def compile_from_config(self, config):
        """compile() again from get_compile_config()'s dict."""
        self.compile(optimizer=optimizers_module.deserialize(config.get("optimizer")),
                     loss=_deserialize_loss_spec(config.get("loss")), loss_weights=config.get("loss_weights"),
                     metrics=_deserialize_metric_spec(config.get("metrics")),
                     weighted_metrics=_deserialize_metric_spec(config.get("weighted_metrics")))

    def _assert_compiled(self, method):
        if not getattr(self, "compiled", False):
            raise ValueError(f"You must call `compile()` before calling `{method}()`.")

    # --- metrics ---------------------------------------------------------------------------------
    @property
    def metrics(self):
        """The loss tracker, the compiled metrics, the per-output loss trackers, then metrics set as attributes."""
        found = []
        if self.compiled:
            found.append(self._loss_tracker)
            if self._compile_metrics is not None:
                found.append(self._compile_metrics)
            if self._compile_loss is not None:
                found.extend(self._compile_loss.metrics)
        for value in vars(self).values():
            if isinstance(value, metrics_module.Metric) and not any(value is m for m in found) and \
                    value is not self._loss_tracker:
                found.append(value)
        return found

    @property
    def metrics_names(self):
        return [m.name for m in self.metrics]

    def reset_metrics(self):
        for m in self.metrics:
            m.reset_state()

    def get_metrics_result(self):
        """Every metric's current value (device scalars), compiled metrics flattened into their names."""
        out = {}
        for m in self.metrics:
            result = m.result()
            if isinstance(result, dict):
                out.update(result)
            else:
                out[m.name] = result
        return out

    def _ordered_results(self, logs):
        """evaluate()'s list, in Keras's order: the metrics' own names in `metrics` order, then the other logs
        (per-output and weighted names) sorted."""
        names = []
        for m in self.metrics:
            names += [sub.name for sub in m.metrics] if isinstance(m, CompileMetrics) else [m.name]
        values = [logs[n] for n in names if n in logs] + [logs[k] for k in sorted(logs) if k not in names]
        return values[0] if len(values) == 1 else values

    # --- steps -----------------------------------------------------------------------------------
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The compiled loss plus the layers' losses (add_loss and regularizers), as Keras 3's compute_loss."""
        total = None
        if self._compile_loss is not None and y is not None:
            total = self._compile_loss(y, y_pred, sample_weight)
        for extra in self.losses:
            total = extra if total is None else total + extra
        if total is None:
            raise ValueError("No loss to compute. Provide a `loss` argument in `compile()`, or add losses with "
                             "add_loss() in a layer's call().")
        return total

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """Update the compiled metrics; returns the logs (every metric's value)."""
        if self._compile_metrics is not None and y is not None:
            self._compile_metrics.update_state(y, y_pred, sample_weight)
        return self.get_metrics_result

    def train_step(self, data):
        x, y, sample_weight = unpack_x_y_sample_weight(data)
        variables = self._train_vars if self._train_vars is not None else self.trainable_variables
        for v in variables:
            v.grad = None
        with clnet.enable_grad():
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
        self._loss_tracker.update_state(loss.detach(), sample_weight=_first_dim(x))
        if variables and loss.requires_grad:  # a fully frozen model only tracks its loss and metrics
            loss.backward()
            self.optimizer.step_variables(variables)
        return self.compute_metrics(x, y, y_pred, sample_weight)

    def test_step(self, data):
        x, y, sample_weight = unpack_x_y_sample_weight(data)
        with clnet.no_grad():
            y_pred = self(x, training=False)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=False)
            self._loss_tracker.update_state(loss, sample_weight=_first_dim(x))
            return self.compute_metrics(x, y, y_pred, sample_weight)

    def predict_step(self, data):
        x, _, _ = unpack_x_y_sample_weight(data)
        with clnet.no_grad():
            return self(x, training=False)

    # --- preparing data --------------------------------------------------------------------------
    def _epoch_iterator(self, x, y=None, sample_weight=None, batch_size=None, shuffle=False, class_weight=None):
        """The one place where fit/evaluate/predict turn their data into batches of host arrays (x, y, sw).

        Arrays (and lists/dicts of them) are sliced here; anything else (generators, datasets, loaders,
        PyDataset) is iterated and its batches unpacked as Keras does."""
        if _is_array_data(x):
            if x is None:
                raise ValueError("Unrecognized data type: x=None (pass numpy arrays, tensors, a generator or a "
                                 "dataset)")
            xs = _array_structure(x, "x")
            ys = _array_structure(y, "y")
            sws = _array_structure(sample_weight, "sample_weight")
            if class_weight is not None:
                if sws is not None:
                    raise ValueError("You cannot `class_weight` and `sample_weight` at the same time.")
                sws = _class_weight_to_sample_weight(ys, class_weight)
            if self._fit_rng is None:
                self._fit_rng = np.random.default_rng(utils.host_rng().integers(2**63))
            # the shuffling generator is read at each epoch: BackupAndRestore may replace it with a saved one
            return _ArrayEpochs(xs, ys, sws, batch_size, shuffle, lambda: self._fit_rng)
        if y is not None:
            raise ValueError(f"`y` argument is not supported when using a {type(x).__name__} as input (the "
                             "batches already hold the targets)")
        if sample_weight is not None:
            raise ValueError(f"`sample_weight` argument is not supported when using a {type(x).__name__} as input")
        return _IterableEpochs(x, class_weight)

    def _prepare_build(self, x_batch):
        if not self.built:
            self._build_for_data(x_batch)

    def _build_for_data(self, x):
        """Build by calling the model on one sample (Sequential overrides this to build from the shape)."""
        with clnet.no_grad():
            self(tree.map_structure(lambda a: a[:1], x), training=False)

    def _device(self):
        for w in self.weights:
            return w.device
        return clnet.default_device()

    def _first_batch_builder(self, x):
        flat = tree.flatten(x)
        if flat and not self.built:
            if len(flat) == 1 and not isinstance(x, (list, tuple, dict)):
                self._build_for_data(flat[0])
            else:
                with clnet.no_grad():
                    self(tree.map_structure(lambda a: a[:1], x), training=False)

    # --- fit -------------------------------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, class_weight=None, sample_weight=None, initial_epoch=0,
            steps_per_epoch=None, validation_steps=None, validation_batch_size=None, validation_freq=1):
        """Train for `epochs` epochs; returns the History callback (history.history[name] per epoch)."""
        self._assert_compiled("fit")
        batch_size = 32 if batch_size is None else _check_batch_size(batch_size)
        epochs, initial_epoch = int(epochs), int(initial_epoch)
        if config.max_epochs() is not None:
            epochs = min(epochs, config.max_epochs())
        if not 0.0 <= validation_split < 1.0:
            raise ValueError(f"validation_split must be in [0, 1), got {validation_split}")
        val = None
        if validation_data is not None:
            val = validation_data
        elif validation_split:
            if not _is_array_data(x):
                raise ValueError("`validation_split` is only supported for Tensors or NumPy arrays, found following "
                                 f"types in the input: {[type(x)]}")
            xs, ys = _array_structure(x, "x"), _array_structure(y, "y")
            sws = _array_structure(sample_weight, "sample_weight")
            n = _check_cardinality(xs, ys, sws)
            split = int(math.floor(n * (1.0 - validation_split)))
            if split == 0 or split == n:
                raise ValueError(f"validation_split={validation_split} leaves no training or no validation samples "
                                 f"out of {n}")
            x, y, sample_weight = _split(xs, 0, split), _split(ys, 0, split), _split(sws, 0, split)
            val = (_split(xs, split, n), _split(ys, split, n)) + ((_split(sws, split, n),) if sws is not None else ())
        train = self._epoch_iterator(x, y, sample_weight, batch_size, shuffle, class_weight)
        if train.num_batches == 0:
            raise ValueError("Expected input data to be non-empty.")
        steps = steps_per_epoch
        if config.max_steps_per_epoch() is not None:
            steps = min(steps or config.max_steps_per_epoch(), config.max_steps_per_epoch())
        verbose = _verbose(verbose)
        cbs = callbacks_module.CallbackList(callbacks, add_history=True, add_progbar=verbose != 0, model=self,
                                            verbose=verbose, epochs=epochs, steps=steps or train.num_batches)
        self.stop_training = False
        self._initial_epoch = None
        upload = _Uploader(None)
        cbs.on_train_begin({})
        start_epoch = self._initial_epoch if self._initial_epoch is not None else initial_epoch
        epoch_logs = {}
        epochs_of_batches, val_batches = _EpochSteps(train, steps), None
        for epoch in range(start_epoch, epochs):
            self.reset_metrics()
            cbs.on_epoch_begin(epoch, {})
            logs = None
            for step, (xb, yb, swb) in epochs_of_batches.epoch():
                cbs.on_train_batch_begin(step, {})
                data = self._upload_batch(upload, xb, yb, swb)
                if self._train_vars is None:
                    self._train_vars = self.trainable_variables
                logs = _Logs(self.train_step(data))
                cbs.on_train_batch_end(step, logs)
                if self.stop_training:
                    break
            if logs is None:
                break
            epoch_logs = _read_logs(logs)
            upload.finish()
            if val is not None and _should_validate(epoch, validation_freq):
                if val_batches is None:  # made once: with validation_steps its pass continues across epochs
                    val_batches = self._test_batches(val, validation_batch_size or batch_size, validation_steps)
                val_logs = self._run_test(val_batches, cbs)
                epoch_logs.update({"val_" + k: v for k, v in val_logs.items()})
            cbs.on_epoch_end(epoch, epoch_logs)
            if self.stop_training:
                break
        cbs.on_train_end(epoch_logs)
        self._train_vars = None
        return cbs.history

    def _upload_batch(self, upload, xb, yb, swb):
        if upload.device is None:
            self._first_batch_builder(xb)
            upload.device = self._device()
        x, y, sw = upload.structure(xb), upload.structure(yb), upload.structure(swb)
        if not self.built:
            self._prepare_build(x)
        return (x,) if y is None and sw is None else ((x, y) if sw is None else (x, y, sw))

    # --- evaluate --------------------------------------------------------------------------------
    def _test_batches(self, data, batch_size, steps):
        if isinstance(data, (tuple, list)):
            x, y, sw = unpack_x_y_sample_weight(tuple(data))
            return _EpochSteps(self._epoch_iterator(x, y, sw, batch_size), steps)
        return _EpochSteps(self._epoch_iterator(data, None, None, batch_size), steps)

    def _run_test(self, batches, cbs):
        self.reset_metrics()
        cbs.on_test_begin({})
        upload = _Uploader(None)
        logs = None
        for step, (xb, yb, swb) in batches.epoch():
            cbs.on_test_batch_begin(step, {})
            result = self.test_step(self._upload_batch(upload, xb, yb, swb))
            logs = _Logs(result)
            cbs.on_test_batch_end(step, logs)
        out = _read_logs(logs) if logs is not None else {}
        upload.finish()
        cbs.on_test_end(out)
        return out

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
                 callbacks=None, return_dict=False, **kwargs):
        """The loss, or [loss, *metrics] in Keras's order (a dict with return_dict=True)."""
        self._assert_compiled("evaluate")
        batch_size = 32 if batch_size is None else _check_batch_size(batch_size)
        verbose = _verbose(verbose)
        data = (x, y, sample_weight) if _is_array_data(x) else x
        iterator_steps = steps
        if iterator_steps is None and _is_array_data(x):
            iterator_steps = -(-_check_cardinality(_array_structure(x, "x"), _array_structure(y, "y"), None)
                               // batch_size)
        cbs = callbacks_module.CallbackList(callbacks, add_progbar=verbose != 0, model=self, verbose=verbose,
                                            epochs=1, steps=iterator_steps)
        logs = self._run_test(self._test_batches(data, batch_size, steps), cbs)
        if return_dict:
            return logs
        return self._ordered_results(logs)

    # --- predict ---------------------------------------------------------------------------------
    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """Outputs for every sample as numpy arrays (in the model's output structure), computed batch by batch;
        one wait for the device at the end."""
        batch_size = 32 if batch_size is None else _check_batch_size(batch_size)
        iterator = self._epoch_iterator(x, None, None, batch_size)
        verbose = _verbose(verbose)
        cbs = callbacks_module.CallbackList(callbacks, add_progbar=verbose != 0, model=self, verbose=verbose,
                                            epochs=1, steps=steps if steps is not None else iterator.num_batches)
        upload = _Uploader(None)
        pieces, reads = [], []
        cbs.on_predict_begin({})
        for step, (xb, _, _) in _EpochSteps(iterator, steps).epoch():
            cbs.on_predict_batch_begin(step, {})
            data = self._upload_batch(upload, xb, None, None)
            outputs = self.predict_step(data)
            host = tree.map_structure(lambda t: _read_async(t, reads), outputs)
            pieces.append(host)
            cbs.on_predict_batch_end(step, {"outputs": outputs})
        for e in reads:
            e.wait()
        upload.finish()
        cbs.on_predict_end({})
        if not pieces:
            raise ValueError("Expected input data to be non-empty.")
        return tree.map_structure(lambda *parts: np.concatenate(parts, axis=0), *pieces)

    def predict_on_batch(self, x):
        with clnet.no_grad():
            out = self.predict_step((x,))
        return tree.map_structure(lambda t: t.numpy() if isinstance(t, Tensor) else t, out)

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        self._assert_compiled("train_on_batch")
        iterator = self._epoch_iterator(x, y, sample_weight, max(1, _check_cardinality(
            _array_structure(x, "x"), _array_structure(y, "y"), None)), False, class_weight)
        xb, yb, swb = next(iterator.batches())
        upload = _Uploader(None)
        data = self._upload_batch(upload, xb, yb, swb)
        self._train_vars = self.trainable_variables
        self.reset_metrics()
        logs = _read_logs(_Logs(self.train_step(data)))
        upload.finish()
        self._train_vars = None
        return logs if return_dict else self._ordered_results(logs)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        n = _check_cardinality(_array_structure(x, "x"), _array_structure(y, "y"), None)
        return self.evaluate(x, y, batch_size=max(n, 1), verbose=0, sample_weight=sample_weight,
                             return_dict=return_dict)


# --- helpers ---------------------------------------------------------------------------------------
class _EpochSteps:
    """Which batches each epoch gets, as Keras's EpochIterator: without `steps` each epoch is one full pass;
    with `steps` an epoch is that many batches of a pass that continues across epochs (a new pass starts when
    one ends; an epoch cut short by the end of the data says so)."""

    def __init__(self, source, steps):
        self.source, self.steps = source, steps
        self._current, self._seen = None, 0

    def epoch(self):
        if self.steps is None:
            for step, batch in enumerate(self.source.batches()):
                yield step, batch
            return
        known = self.source.num_batches
        if self._current is None:
            self._current, self._seen = self.source.batches(), 0
        for step in range(self.steps):
            if known and self._seen >= known:
                _ran_out()
                break
            try:
                batch = next(self._current)
            except StopIteration:
                _ran_out()
                self._current = None
                return
            self._seen += 1
            yield step, batch
        if known and self._seen >= known:
            self._current, self._seen = self.source.batches(), 0


def _ran_out():
    warnings.warn("Your input ran out of data; interrupting training. Make sure that your dataset or generator can "
                  "generate at least `steps_per_epoch * epochs` batches. You may need to use the `.repeat()` "
                  "function when building your dataset.", stacklevel=4)


def _first_dim(x):
    flat = [t for t in tree.flatten(x) if isinstance(t, Tensor) and t.ndim]
    return int(flat[0].shape[0]) if flat else 1


def _read_async(t, reads):
    """A host array that a non-blocking copy will fill (the copies are waited for once, at the end)."""
    if not isinstance(t, Tensor):
        return np.asarray(t)
    t = t.detach().contiguous()
    out = np.empty(tuple(t.shape), dtype=t.dtype)
    if out.size:
        reads.append(dispatch.download(t.device, out, t._buf, t.offset * t.dtype.itemsize, blocking=False))
    return out


def _should_validate(epoch, freq):
    if isinstance(freq, int):
        return (epoch + 1) % freq == 0
    return (epoch + 1) in freq


def _verbose(verbose):
    return 1 if verbose == "auto" else int(verbose)


def _check_batch_size(batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def _serialize_loss_spec(spec):
    if spec is None:
        return None
    if isinstance(spec, dict):
        return {k: _serialize_loss_spec(v) for k, v in spec.items()}
    if isinstance(spec, (list, tuple)):
        return [_serialize_loss_spec(v) for v in spec]
    if isinstance(spec, str):
        return spec
    return losses_module.serialize(losses_module.as_loss_object(spec))


def _deserialize_loss_spec(spec):
    if spec is None or isinstance(spec, str):
        return spec
    if isinstance(spec, list):
        return [_deserialize_loss_spec(v) for v in spec]
    if isinstance(spec, dict) and "class_name" not in spec:
        return {k: _deserialize_loss_spec(v) for k, v in spec.items()}
    return losses_module.deserialize(spec)


def _serialize_metric_spec(spec):
    if spec is None:
        return None
    if isinstance(spec, dict):
        return {k: _serialize_metric_spec(v) for k, v in spec.items()}
    if isinstance(spec, (list, tuple)):
        return [_serialize_metric_spec(v) for v in spec]
    if isinstance(spec, str):
        return spec
    return metrics_module.serialize(spec)


def _deserialize_metric_spec(spec):
    if spec is None or isinstance(spec, str):
        return spec
    if isinstance(spec, list):
        return [_deserialize_metric_spec(v) for v in spec]
    if isinstance(spec, dict) and "class_name" not in spec:
        return {k: _deserialize_metric_spec(v) for k, v in spec.items()}
    return metrics_module.deserialize(spec)

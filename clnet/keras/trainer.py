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

from collections.abc import Mapping, MutableMapping

import numpy as np

import clnet
from clnet import distribute
from clnet.compiler import CompiledFunction
from clnet.core import dispatch
from clnet.tensor import Tensor

from . import callbacks as callbacks_module
from . import config, data_adapters, tree, utils
from . import losses as losses_module
from . import metrics as metrics_module
from . import optimizers as optimizers_module
from .compile_utils import CompileLoss, CompileMetrics
from .data_adapters import unpack_x_y_sample_weight


# --- data ------------------------------------------------------------------------------------------
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
        self._distribute_strategy = None

    # --- compile ---------------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None, weighted_metrics=None,
                run_eagerly=False, steps_per_execution=1, jit_compile="auto", auto_scale_loss=True):
        """Store the optimizer, loss(es) and metrics (nothing runs until fit/evaluate)."""
        self._distribute_strategy = distribute.get_strategy()  # the strategy.scope() compile runs in, if any
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
        self.__dict__.pop("_compiled_steps", None)
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

    def _step_function(self, kind):
        """train_step, test_step or predict_step as fit/evaluate/predict call it: compiled by clnet.compile
        (traced once per batch signature, then replayed) unless run_eagerly=True or jit_compile=False. With
        jit_compile="auto" a step that cannot be replayed (a graph break, state kept in Python) runs eagerly
        without a warning; with jit_compile=True it warns."""
        step = getattr(self, kind + "_step")
        if self.run_eagerly or not self.jit_compile:
            return step
        cache = self.__dict__.setdefault("_compiled_steps", {})
        fn = cache.get(kind)
        if fn is None or fn.fn.__func__ is not step.__func__:
            fn = cache[kind] = CompiledFunction(step, warn=self.jit_compile is True)
        return fn

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
            self.distribute_strategy.sync_gradients(variables, _first_dim(x))  # averaged over workers, if several
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
    @property
    def distribute_strategy(self):
        """The tf.distribute-style strategy the model was compiled under (the default one otherwise)."""
        return self._distribute_strategy or distribute.get_strategy()

    def _epoch_iterator(self, x, y=None, sample_weight=None, batch_size=None, steps_per_epoch=None, shuffle=False,
                        class_weight=None, shard=False):
        """Epochs of device batches (x, y, sample_weight) from any data fit/evaluate/predict accept: arrays and
        lists/dicts of them, generators, PyDataset, DataLoaders, clnet.data datasets (keras.data_adapters).
        shard=True (fit's training data): under a multi-worker strategy this worker takes its part of every
        global batch, shuffled alike on every worker."""
        strategy = self.distribute_strategy
        if self._fit_rng is None:
            self._fit_rng = np.random.default_rng(strategy.shared_seed(utils.host_rng().integers(2**62)))
        # the shuffling generator is read at each epoch: BackupAndRestore may replace it with a saved one
        return data_adapters.EpochIterator(x, y, sample_weight, batch_size, steps_per_epoch, shuffle, class_weight,
                                           device=self._device(), rng=lambda: self._fit_rng,
                                           shard=strategy.shard() if shard else (0, 1))

    def _build_for_data(self, x):
        """Build by calling the model on one sample (Sequential overrides this to build from the shape)."""
        with clnet.no_grad():
            self(tree.map_structure(lambda a: a[:1], x), training=False)

    def _device(self):
        for w in self.weights:
            return w.device
        return clnet.default_device()

    def _prepare_batch(self, batch):
        """Build on the first batch; (x,), (x, y) or (x, y, sample_weight) as train_step expects."""
        x, y, sw = batch
        if not self.built:
            flat = tree.flatten(x)
            if len(flat) == 1 and not isinstance(x, (list, tuple, dict)):
                self._build_for_data(flat[0])
            else:
                with clnet.no_grad():
                    self(tree.map_structure(lambda a: a[:1], x), training=False)
        return (x,) if y is None and sw is None else ((x, y) if sw is None else (x, y, sw))

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
            arrays = tuple(data_adapters.array_structure(a, what) if data_adapters.is_array_data(a) else a
                           for a, what in ((x, "x"), (y, "y"), (sample_weight, "sample_weight")))
            (x, y, sample_weight), val = data_adapters.train_validation_split(arrays, validation_split)
        steps = steps_per_epoch
        if config.max_steps_per_epoch() is not None:
            steps = min(steps or config.max_steps_per_epoch(), config.max_steps_per_epoch())
        train = self._epoch_iterator(x, y, sample_weight, batch_size, steps, shuffle, class_weight, shard=True)
        if train.num_batches == 0:
            raise ValueError("Expected input data to be non-empty.")
        verbose = _verbose(verbose)
        cbs = callbacks_module.CallbackList(callbacks, add_history=True, add_progbar=verbose != 0, model=self,
                                            verbose=verbose, epochs=epochs, steps=steps or train.num_batches)
        self.stop_training = False
        self._initial_epoch = None
        cbs.on_train_begin({})
        start_epoch = self._initial_epoch if self._initial_epoch is not None else initial_epoch
        epoch_logs = {}
        val_batches = None
        for epoch in range(start_epoch, epochs):
            self.reset_metrics()
            cbs.on_epoch_begin(epoch, {})
            logs = None
            for step, batch in train.enumerate_epoch():
                cbs.on_train_batch_begin(step, {})
                data = self._prepare_batch(batch)
                if self._train_vars is None:
                    self._train_vars = self.trainable_variables
                    self.distribute_strategy.sync_variables(self.weights)  # every worker starts from rank 0's
                logs = _Logs(self._step_function("train")(data))
                cbs.on_train_batch_end(step, logs)
                if self.stop_training:
                    break
            if logs is None:
                break
            epoch_logs = _read_logs(logs)
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

    # --- evaluate --------------------------------------------------------------------------------
    def _test_batches(self, data, batch_size, steps):
        if isinstance(data, (tuple, list)):
            x, y, sw = unpack_x_y_sample_weight(tuple(data))
            return self._epoch_iterator(x, y, sw, batch_size, steps)
        return self._epoch_iterator(data, None, None, batch_size, steps)

    def _run_test(self, batches, cbs):
        self.reset_metrics()
        cbs.on_test_begin({})
        logs = None
        for step, batch in batches.enumerate_epoch():
            cbs.on_test_batch_begin(step, {})
            result = self._step_function("test")(self._prepare_batch(batch))
            logs = _Logs(result)
            cbs.on_test_batch_end(step, logs)
        out = _read_logs(logs) if logs is not None else {}
        cbs.on_test_end(out)
        return out

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
                 callbacks=None, return_dict=False, **kwargs):
        """The loss, or [loss, *metrics] in Keras's order (a dict with return_dict=True)."""
        self._assert_compiled("evaluate")
        batch_size = 32 if batch_size is None else _check_batch_size(batch_size)
        verbose = _verbose(verbose)
        batches = self._epoch_iterator(x, y, sample_weight, batch_size, steps)
        cbs = callbacks_module.CallbackList(callbacks, add_progbar=verbose != 0, model=self, verbose=verbose,
                                            epochs=1, steps=batches.num_batches)
        logs = self._run_test(batches, cbs)
        if return_dict:
            return logs
        return self._ordered_results(logs)

    # --- predict ---------------------------------------------------------------------------------
    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """Outputs for every sample as numpy arrays (in the model's output structure), computed batch by batch;
        one wait for the device at the end."""
        batch_size = 32 if batch_size is None else _check_batch_size(batch_size)
        iterator = self._epoch_iterator(x, None, None, batch_size, steps)
        verbose = _verbose(verbose)
        cbs = callbacks_module.CallbackList(callbacks, add_progbar=verbose != 0, model=self, verbose=verbose,
                                            epochs=1, steps=iterator.num_batches)
        pieces, reads = [], []
        cbs.on_predict_begin({})
        for step, batch in iterator.enumerate_epoch():
            cbs.on_predict_batch_begin(step, {})
            outputs = self._step_function("predict")(self._prepare_batch((batch[0], None, None)))
            host = tree.map_structure(lambda t: _read_async(t, reads), outputs)
            pieces.append(host)
            cbs.on_predict_batch_end(step, {"outputs": outputs})
        for e in reads:
            e.wait()
        cbs.on_predict_end({})
        if not pieces:
            raise ValueError("Expected input data to be non-empty.")
        return tree.map_structure(lambda *parts: np.concatenate(parts, axis=0), *pieces)

    def predict_on_batch(self, x):
        with clnet.no_grad():
            out = self.predict_step((x,))
        return tree.map_structure(lambda t: t.numpy() if isinstance(t, Tensor) else t, out)

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        """One update on this batch; returns the loss and metrics of this batch (Keras resets them first)."""
        self._assert_compiled("train_on_batch")
        (batch,) = [b for _, b in self._one_batch(x, y, sample_weight, class_weight)]
        self._train_vars = self.trainable_variables
        self.reset_metrics()
        logs = _read_logs(_Logs(self.train_step(self._prepare_batch(batch))))
        self._train_vars = None
        return logs if return_dict else self._ordered_results(logs)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        self._assert_compiled("test_on_batch")
        (batch,) = [b for _, b in self._one_batch(x, y, sample_weight, None)]
        self.reset_metrics()
        logs = _read_logs(_Logs(self.test_step(self._prepare_batch(batch))))
        return logs if return_dict else self._ordered_results(logs)

    def _one_batch(self, x, y, sample_weight, class_weight):
        structures = [data_adapters.array_structure(a, w) for a, w in ((x, "x"), (y, "y"),
                                                                       (sample_weight, "sample_weight"))]
        n = data_adapters.num_samples(*structures)
        return self._epoch_iterator(x, y, sample_weight, max(n, 1), None, False, class_weight).enumerate_epoch()


# --- helpers ---------------------------------------------------------------------------------------
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

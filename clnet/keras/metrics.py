"""keras.metrics: stateful metrics whose running totals stay on the device.

update_state() only enqueues kernels (a sum into a device scalar; the count is known on the host), so a
training step never waits for the device; result() is a device scalar that is read (one host
synchronisation) only when someone converts it, e.g. the progress bar at a refresh.
"""
from __future__ import annotations

import numpy as np

import clnet
from clnet import dtypes as _dt

from . import initializers
from . import losses as _losses
from .utils import snake_case
from .variables import Variable


class Metric:
    """Base of stateful metrics: update_state() accumulates (on the device), result() reads, reset_state() clears.

    Subclasses keep their state in variables made by add_variable (keras.Variable, on the device), as in Keras.
    """

    def __init__(self, dtype=None, name=None):
        self.name = name or snake_case(type(self).__name__)
        self._dtype = np.dtype(dtype) if dtype is not None else _dt.float32
        self._variables = []

    @property
    def dtype(self):
        return self._dtype

    @dtype.setter
    def dtype(self, value):
        self._dtype = np.dtype(value)

    def add_variable(self, shape, initializer, dtype=None, aggregation="sum", name=None):
        """A non-trainable state variable, set back to its initial value by the default reset_state()."""
        var = Variable(initializers.get(initializer), shape=tuple(shape), dtype=dtype or self._dtype.name,
                       trainable=False, name=name)
        var._initial = initializers.get(initializer)
        self._variables.append(var)
        return var

    add_weight = add_variable

    @property
    def variables(self):
        return list(self._variables)

    def update_state(self, *args, **kwargs):
        raise NotImplementedError

    def result(self):
        raise NotImplementedError

    def reset_state(self):
        for v in self._variables:
            v.assign(v._initial(tuple(v.shape), dtype=v.dtype.name))

    def reset_states(self):
        self.reset_state()

    def __call__(self, *args, **kwargs):
        self.update_state(*args, **kwargs)
        return self.result()

    def get_config(self):
        return {"name": self.name, "dtype": self._dtype.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"


class Mean(Metric):
    """Weighted mean of every value passed to update_state since the last reset."""

    def __init__(self, name="mean", dtype=None):
        super().__init__(dtype=dtype, name=name)
        self.reset_state()

    def reset_state(self):
        self._total = None
        self._count = 0.0

    def update_state(self, values, sample_weight=None):
        with clnet.no_grad():
            if not isinstance(values, clnet.Tensor):
                values = _losses.as_tensor(values, dtype=self.dtype)
            values = values.detach()
            if values.dtype != self.dtype:
                values = values.to(dtype=self.dtype)
            if isinstance(sample_weight, (int, float, np.number)):  # one weight for all: counted on the host
                part = clnet.sum(values) * float(sample_weight)
                count = float(sample_weight) * values.numel()
            elif sample_weight is not None:
                sw = _losses.as_tensor(sample_weight, values, dtype=self.dtype)
                if sw.ndim < values.ndim:
                    sw = sw.reshape(tuple(sw.shape) + (1,) * (values.ndim - sw.ndim))
                elif sw.ndim > values.ndim:  # e.g. per-sample weights (N, 1) against per-sample values (N,)
                    sw = sw.reshape(tuple(values.shape)) if sw.numel() == values.numel() else sw
                part = clnet.sum(values * sw)
                count = clnet.sum(sw * clnet.ones_like(values))
            else:
                part = clnet.sum(values)
                count = float(values.numel())
            self._total = part if self._total is None else self._total + part
            self._count = self._count + count

    def result(self):
        if self._total is None:
            return clnet.tensor(0.0, dtype=self.dtype)
        with clnet.no_grad():
            return self._total / self._count


class Sum(Mean):
    def __init__(self, name="sum", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def result(self):
        return self._total if self._total is not None else clnet.tensor(0.0, dtype=self.dtype)


class MeanMetricWrapper(Mean):
    """Mean of fn(y_true, y_pred) over every sample seen."""

    def __init__(self, fn, name=None, dtype=None, **kwargs):
        super().__init__(name=name or snake_case(fn.__name__), dtype=dtype)
        self._fn, self._fn_kwargs = fn, kwargs

    def update_state(self, y_true, y_pred, sample_weight=None):
        with clnet.no_grad():
            if isinstance(y_pred, clnet.Tensor):
                y_pred = y_pred.detach()
            else:
                y_pred = _losses.as_tensor(y_pred, dtype=np.float32)
            super().update_state(self._fn(y_true, y_pred, **self._fn_kwargs), sample_weight)

    def get_config(self):
        return {**super().get_config(), **self._fn_kwargs}


# --- metric functions (per-sample values) -----------------------------------------------------------
def accuracy(y_true, y_pred):
    y_true = _losses.as_tensor(y_true, y_pred)
    y_true = _squeeze_like(y_true, y_pred)
    return clnet.eq(y_true, y_pred.to(dtype=y_true.dtype) if y_true.dtype != y_pred.dtype else y_pred).float()


def _squeeze_like(y_true, y_pred):
    if y_true.ndim == y_pred.ndim + 1 and y_true.shape[-1] == 1:
        return y_true.reshape(y_true.shape[:-1])
    if y_pred.ndim == y_true.ndim + 1 and y_pred.shape[-1] == 1:
        return y_true.reshape(y_pred.shape)
    return y_true


def binary_accuracy(y_true, y_pred, threshold=0.5):
    y_true = _losses._same_rank(_losses.as_tensor(y_true, y_pred), y_pred)
    predicted = (y_pred > threshold)
    truth = y_true > 0.5 if _dt.is_floating(y_true.dtype) else y_true != 0
    return clnet.mean(clnet.eq(predicted, truth).float(), -1)


def categorical_accuracy(y_true, y_pred):
    y_true = _losses.as_tensor(y_true, y_pred)
    return clnet.eq(clnet.argmax(y_true, -1), clnet.argmax(y_pred, -1)).float()


def sparse_categorical_accuracy(y_true, y_pred):
    labels = _losses._labels(y_true, y_pred)
    return clnet.eq(labels, clnet.argmax(y_pred, -1)).float()


class Accuracy(MeanMetricWrapper):
    def __init__(self, name="accuracy", dtype=None):
        super().__init__(accuracy, name=name, dtype=dtype)


class BinaryAccuracy(MeanMetricWrapper):
    def __init__(self, name="binary_accuracy", dtype=None, threshold=0.5):
        super().__init__(binary_accuracy, name=name, dtype=dtype, threshold=float(threshold))


class CategoricalAccuracy(MeanMetricWrapper):
    def __init__(self, name="categorical_accuracy", dtype=None):
        super().__init__(categorical_accuracy, name=name, dtype=dtype)


class SparseCategoricalAccuracy(MeanMetricWrapper):
    def __init__(self, name="sparse_categorical_accuracy", dtype=None):
        super().__init__(sparse_categorical_accuracy, name=name, dtype=dtype)


class MeanSquaredError(MeanMetricWrapper):
    def __init__(self, name="mean_squared_error", dtype=None):
        super().__init__(_losses.mean_squared_error, name=name, dtype=dtype)


class MeanAbsoluteError(MeanMetricWrapper):
    def __init__(self, name="mean_absolute_error", dtype=None):
        super().__init__(_losses.mean_absolute_error, name=name, dtype=dtype)


class CategoricalCrossentropy(MeanMetricWrapper):
    def __init__(self, name="categorical_crossentropy", dtype=None, from_logits=False, label_smoothing=0.0):
        super().__init__(_losses.categorical_crossentropy, name=name, dtype=dtype, from_logits=bool(from_logits),
                         label_smoothing=float(label_smoothing))


class SparseCategoricalCrossentropy(MeanMetricWrapper):
    def __init__(self, name="sparse_categorical_crossentropy", dtype=None, from_logits=False):
        super().__init__(_losses.sparse_categorical_crossentropy, name=name, dtype=dtype,
                         from_logits=bool(from_logits))


class BinaryCrossentropy(MeanMetricWrapper):
    def __init__(self, name="binary_crossentropy", dtype=None, from_logits=False, label_smoothing=0.0):
        super().__init__(_losses.binary_crossentropy, name=name, dtype=dtype, from_logits=bool(from_logits),
                         label_smoothing=float(label_smoothing))


METRIC_CLASSES = {c.__name__: c for c in (Mean, Sum, Accuracy, BinaryAccuracy, CategoricalAccuracy,
                                          SparseCategoricalAccuracy, MeanSquaredError, MeanAbsoluteError,
                                          CategoricalCrossentropy, SparseCategoricalCrossentropy,
                                          BinaryCrossentropy)}
METRIC_FUNCTIONS = {"accuracy": accuracy, "binary_accuracy": binary_accuracy,
                    "categorical_accuracy": categorical_accuracy,
                    "sparse_categorical_accuracy": sparse_categorical_accuracy,
                    "mean_squared_error": _losses.mean_squared_error, "mse": _losses.mean_squared_error,
                    "mean_absolute_error": _losses.mean_absolute_error, "mae": _losses.mean_absolute_error,
                    "categorical_crossentropy": _losses.categorical_crossentropy,
                    "sparse_categorical_crossentropy": _losses.sparse_categorical_crossentropy,
                    "binary_crossentropy": _losses.binary_crossentropy}

mse = MSE = _losses.mean_squared_error
mae = MAE = _losses.mean_absolute_error


def resolve(identifier, y_true, y_pred):
    """What compile()'s metrics=[...] entry becomes for one output (Keras's rule for "accuracy": binary for one
    output unit, sparse when the targets have one axis less or a last axis of 1, else categorical)."""
    if isinstance(identifier, str) and identifier.lower() in ("accuracy", "acc"):
        t_shape, p_shape = tuple(y_true.shape), tuple(y_pred.shape)
        if p_shape[-1:] == (1,):
            metric = BinaryAccuracy(name=identifier)
        elif len(t_shape) < len(p_shape) or (t_shape[-1:] == (1,) and p_shape[-1] > 1):
            metric = SparseCategoricalAccuracy(name=identifier)
        else:
            metric = CategoricalAccuracy(name=identifier)
        return metric
    metric = get(identifier)
    if isinstance(identifier, str):
        metric.name = identifier
    return metric


def get(identifier):
    """A Metric object from a name ("mae", "categorical_accuracy", "MeanSquaredError"), object or callable.

    ("accuracy" without a model is plain equality; compile() resolves it from the loss and shapes.)
    """
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, str):
        if identifier in METRIC_CLASSES:
            return METRIC_CLASSES[identifier]()
        key = identifier.lower()
        key = "accuracy" if key == "acc" else key
        fn = METRIC_FUNCTIONS.get(key)
        if fn is None:
            valid = sorted(METRIC_FUNCTIONS) + ["acc"] + sorted(METRIC_CLASSES)
            raise ValueError(f"Could not interpret metric identifier: {identifier!r}. Valid names: {', '.join(valid)}")
        return MeanMetricWrapper(fn, name=identifier)
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if callable(identifier):
        return MeanMetricWrapper(identifier, name=getattr(identifier, "__name__", "metric"))
    raise TypeError(f"metric must be a name, a Metric or a callable(y_true, y_pred), got {identifier!r}")


def serialize(metric):
    """{"module", "class_name", "config"} of a built-in metric (a custom one raises ValueError)."""
    if isinstance(metric, Metric) and type(metric).__name__ in METRIC_CLASSES and \
            METRIC_CLASSES[type(metric).__name__] is type(metric):
        return {"module": "keras.metrics", "class_name": type(metric).__name__, "config": metric.get_config(),
                "registered_name": None}
    if isinstance(metric, str):
        return metric
    raise ValueError(f"metric {metric!r} is custom and cannot be saved by name")


def deserialize(config):
    if isinstance(config, str):
        return get(config)
    if not isinstance(config, dict) or config.get("class_name") not in METRIC_CLASSES:
        raise ValueError(f"unknown metric {config!r}")
    return METRIC_CLASSES[config["class_name"]].from_config(dict(config.get("config") or {}))

"""keras.losses: loss functions (per-sample values) and Loss objects (reduced), called as loss(y_true, y_pred).

Cross-entropies on probabilities that came out of a softmax/sigmoid activation use the logits that
activation remembered, so the fused, stable cross-entropy of clnet.nn runs (as TensorFlow's Keras does);
other probabilities are clipped to [1e-7, 1 - 1e-7] as in Keras.
"""
from __future__ import annotations

import numpy as np

import clnet
from clnet import dtypes as _dt

from . import _ops
from .utils import snake_case

EPSILON = 1e-7


# --- helpers ----------------------------------------------------------------------------------------
def as_tensor(y, like=None, dtype=None):
    """numpy/lists -> a tensor on `like`'s device (float data in `like`'s float dtype)."""
    device = like.device if like is not None else None
    if isinstance(y, clnet.Tensor):
        if dtype is not None and y.dtype != np.dtype(dtype):
            return y.to(dtype=dtype)
        return y
    arr = np.asarray(y)
    if dtype is None:
        if arr.dtype.kind == "f" or arr.dtype.kind == "b":
            dtype = like.dtype if like is not None and _dt.is_floating(like.dtype) else np.float32
        else:
            dtype = np.int64
    return clnet.tensor(arr.astype(dtype, copy=False), device=device)


def _float_target(y_true, y_pred):
    y_true = as_tensor(y_true, y_pred)
    if y_true.dtype != y_pred.dtype:
        y_true = y_true.to(dtype=y_pred.dtype)
    return y_true


def _same_rank(y_true, y_pred):
    """Keras's squeeze_or_expand_to_same_rank: (N,) against (N, 1) is fine in either order."""
    if y_true.ndim == y_pred.ndim - 1 and y_pred.shape[-1] == 1:
        y_true = y_true.reshape(y_pred.shape)
    elif y_pred.ndim == y_true.ndim - 1 and y_true.shape[-1] == 1:
        y_true = y_true.reshape(y_pred.shape)
    return y_true


def _check_same_shape(y_true, y_pred, what):
    if tuple(y_true.shape) != tuple(y_pred.shape):
        raise ValueError(f"{what}: arguments `target` and `output` must have the same shape. Received: "
                         f"target.shape={tuple(y_true.shape)}, output.shape={tuple(y_pred.shape)}")


def _logits_of(y_pred):
    return getattr(y_pred, "_keras_logits", None)


# --- loss functions (per-sample values, the last axis reduced) --------------------------------------
# Each *_impl returns per-sample values, or with overall=True the mean over every sample as one fused
# kernel where clnet.nn has one (what Loss objects use for their default reduction).
def _pointwise_impl(op, name, y_true, y_pred, overall):
    y_true = _same_rank(_float_target(y_true, y_pred), y_pred)
    _check_same_shape(y_true, y_pred, name)
    if overall:
        return op(y_pred, y_true, "mean")
    return clnet.mean(op(y_pred, y_true), -1)


def mean_squared_error(y_true, y_pred, overall=False):
    return _pointwise_impl(_ops.squared_error, "mean_squared_error", y_true, y_pred, overall)


def mean_absolute_error(y_true, y_pred, overall=False):
    return _pointwise_impl(_ops.absolute_error, "mean_absolute_error", y_true, y_pred, overall)


def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1, overall=False):
    """-sum(y_true * log(y_pred)) over the class axis; y_true one-hot (or any distribution)."""
    if axis not in (-1, y_pred.ndim - 1):
        raise NotImplementedError("categorical_crossentropy: only axis=-1 is supported")
    y_true = _float_target(y_true, y_pred)
    _check_same_shape(y_true, y_pred, "categorical_crossentropy")
    logits = y_pred if from_logits else _logits_of(y_pred)
    if logits is not None:
        return _ops.cross_entropy_logits(logits, y_true, "mean" if overall else "none", label_smoothing)
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + label_smoothing / y_pred.shape[-1]
    p = y_pred / clnet.sum(y_pred, -1, keepdim=True)
    p = clnet.clamp(p, EPSILON, 1.0 - EPSILON)
    values = -clnet.sum(y_true * clnet.log(p), -1)
    return clnet.mean(values) if overall else values


def _labels(y_true, y_pred):
    labels = as_tensor(y_true, y_pred)
    if labels.dtype != _dt.int64:
        labels = labels.to(dtype=_dt.int64)
    if labels.ndim == y_pred.ndim and labels.shape[-1] == 1:
        labels = labels.reshape(labels.shape[:-1])
    if tuple(labels.shape) != tuple(y_pred.shape[:-1]):
        raise ValueError(f"sparse_categorical_crossentropy: labels of shape {tuple(labels.shape)} do not match "
                         f"predictions of shape {tuple(y_pred.shape)} (expected labels of shape "
                         f"{tuple(y_pred.shape[:-1])})")
    return labels


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, axis=-1, overall=False):
    """-log(y_pred[label]) with integer labels (shape (N,) or (N, 1))."""
    if axis not in (-1, y_pred.ndim - 1):
        raise NotImplementedError("sparse_categorical_crossentropy: only axis=-1 is supported")
    labels = _labels(y_true, y_pred)
    logits = y_pred if from_logits else _logits_of(y_pred)
    if logits is not None:
        return _ops.cross_entropy_logits(logits, labels, "mean" if overall else "none")
    p = clnet.clamp(y_pred / clnet.sum(y_pred, -1, keepdim=True), EPSILON, 1.0 - EPSILON)
    values = -clnet.sum(_ops.one_hot(labels, y_pred.shape[-1], y_pred.dtype) * clnet.log(p), -1)
    return clnet.mean(values) if overall else values


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1, overall=False):
    """Mean over the last axis of -(y log p + (1 - y) log(1 - p))."""
    y_true = _same_rank(_float_target(y_true, y_pred), y_pred)
    _check_same_shape(y_true, y_pred, "binary_crossentropy")
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
    logits = y_pred if from_logits else _logits_of(y_pred)
    if logits is not None:
        if overall:
            return _ops.binary_cross_entropy_logits(logits, y_true, "mean")
        return clnet.mean(_ops.binary_cross_entropy_logits(logits, y_true), -1)
    p = clnet.clamp(y_pred, EPSILON, 1.0 - EPSILON)
    values = -(y_true * clnet.log(p) + (1.0 - y_true) * clnet.log(1.0 - p))
    return clnet.mean(values) if overall else clnet.mean(values, -1)


_FUSABLE = (mean_squared_error, mean_absolute_error, categorical_crossentropy, sparse_categorical_crossentropy,
            binary_crossentropy)


mse = MSE = mean_squared_error
mae = MAE = mean_absolute_error


# --- Loss objects -----------------------------------------------------------------------------------
_REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "none", None)


def reduce_values(values, sample_weight=None, reduction="sum_over_batch_size"):
    if sample_weight is not None:
        sw = as_tensor(sample_weight, values, dtype=values.dtype)
        if sw.ndim < values.ndim:
            sw = sw.reshape(tuple(sw.shape) + (1,) * (values.ndim - sw.ndim))
        values = values * sw
    if reduction in (None, "none"):
        return values
    if reduction == "sum":
        return clnet.sum(values)
    return clnet.mean(values) if values.ndim else values


class Loss:
    """Callable(y_true, y_pred, sample_weight=None) -> a scalar tensor (reduced as `reduction` says)."""

    def __init__(self, name=None, reduction="sum_over_batch_size", dtype=None):
        if reduction not in _REDUCTIONS:
            raise ValueError(f"Invalid reduction {reduction!r}; valid: {', '.join(map(str, _REDUCTIONS))}")
        self.name = name or _snake(type(self).__name__)
        self.reduction = reduction
        self.dtype = dtype

    def call(self, y_true, y_pred):
        raise NotImplementedError

    def __call__(self, y_true, y_pred, sample_weight=None):
        if not isinstance(y_pred, clnet.Tensor):
            y_pred = as_tensor(y_pred, as_tensor(y_true) if isinstance(y_true, clnet.Tensor) else None)
            if not _dt.is_floating(y_pred.dtype):
                y_pred = y_pred.to(dtype=_dt.float32)
        return reduce_values(self.call(y_true, y_pred), sample_weight, self.reduction)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _snake(name):
    return snake_case(name)


class LossFunctionWrapper(Loss):
    def __init__(self, fn, reduction="sum_over_batch_size", name=None, **kwargs):
        super().__init__(name=name or fn.__name__, reduction=reduction)
        self.fn, self._fn_kwargs = fn, kwargs

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred, **self._fn_kwargs)

    def __call__(self, y_true, y_pred, sample_weight=None):
        if sample_weight is None and self.reduction in ("sum_over_batch_size", "mean") and \
                self.fn in _FUSABLE and isinstance(y_pred, clnet.Tensor) and y_pred.ndim >= 1:
            return self.fn(y_true, y_pred, overall=True, **self._fn_kwargs)
        return super().__call__(y_true, y_pred, sample_weight)

    def get_config(self):
        return {**super().get_config(), **self._fn_kwargs}


class MeanSquaredError(LossFunctionWrapper):
    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_error"):
        super().__init__(mean_squared_error, reduction=reduction, name=name)


class MeanAbsoluteError(LossFunctionWrapper):
    def __init__(self, reduction="sum_over_batch_size", name="mean_absolute_error"):
        super().__init__(mean_absolute_error, reduction=reduction, name=name)


class CategoricalCrossentropy(LossFunctionWrapper):
    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size",
                 name="categorical_crossentropy"):
        super().__init__(categorical_crossentropy, reduction=reduction, name=name, from_logits=bool(from_logits),
                         label_smoothing=float(label_smoothing), axis=axis)


class SparseCategoricalCrossentropy(LossFunctionWrapper):
    def __init__(self, from_logits=False, ignore_class=None, reduction="sum_over_batch_size",
                 name="sparse_categorical_crossentropy"):
        if ignore_class is not None:
            raise NotImplementedError("SparseCategoricalCrossentropy: ignore_class is not supported yet")
        super().__init__(sparse_categorical_crossentropy, reduction=reduction, name=name,
                         from_logits=bool(from_logits))


class BinaryCrossentropy(LossFunctionWrapper):
    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size",
                 name="binary_crossentropy"):
        super().__init__(binary_crossentropy, reduction=reduction, name=name, from_logits=bool(from_logits),
                         label_smoothing=float(label_smoothing), axis=axis)


LOSS_CLASSES = {c.__name__: c for c in (MeanSquaredError, MeanAbsoluteError, CategoricalCrossentropy,
                                        SparseCategoricalCrossentropy, BinaryCrossentropy)}
LOSS_FUNCTIONS = {"mean_squared_error": mean_squared_error, "mse": mean_squared_error,
                  "mean_absolute_error": mean_absolute_error, "mae": mean_absolute_error,
                  "categorical_crossentropy": categorical_crossentropy,
                  "sparse_categorical_crossentropy": sparse_categorical_crossentropy,
                  "binary_crossentropy": binary_crossentropy}


def get(identifier):
    """A Loss object, a loss function, or a name ("mse", "categorical_crossentropy", "MeanSquaredError"...)."""
    if identifier is None:
        return None
    if isinstance(identifier, str):
        if identifier in LOSS_CLASSES:
            return LOSS_CLASSES[identifier]()
        fn = LOSS_FUNCTIONS.get(identifier.lower())
        if fn is None:
            valid = sorted(LOSS_FUNCTIONS) + sorted(LOSS_CLASSES)
            raise ValueError(f"Could not interpret loss identifier: {identifier!r}. Valid names: {', '.join(valid)}")
        return fn
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if callable(identifier):
        return identifier
    raise TypeError(f"loss must be a name, a Loss or a callable(y_true, y_pred), got {identifier!r}")


def as_loss_object(identifier):
    """What compile() keeps: always a Loss object."""
    loss = get(identifier)
    if loss is None or isinstance(loss, Loss):
        return loss
    name = identifier if isinstance(identifier, str) else getattr(loss, "__name__", "loss")
    return LossFunctionWrapper(loss, name=name)


def serialize(loss):
    if isinstance(loss, LossFunctionWrapper) and type(loss) is LossFunctionWrapper:
        for name, fn in LOSS_FUNCTIONS.items():
            if loss.fn is fn:
                return {"class_name": "function", "config": {"name": name, **loss._fn_kwargs}}
    if type(loss).__name__ in LOSS_CLASSES:
        return {"class_name": type(loss).__name__, "config": loss.get_config()}
    raise ValueError(f"loss {loss!r} is custom and cannot be saved by name; pass it again to compile() after loading")


def deserialize(config):
    if not isinstance(config, dict):
        raise ValueError(f"invalid loss config {config!r}")
    cls, cfg = config.get("class_name"), dict(config.get("config") or {})
    if cls == "function" and cfg.get("name") in LOSS_FUNCTIONS:
        name = cfg.pop("name")
        return LossFunctionWrapper(LOSS_FUNCTIONS[name], name=name, **cfg)
    if cls in LOSS_CLASSES:
        return LOSS_CLASSES[cls].from_config(cfg)
    raise ValueError(f"unknown loss in the saved config: {config!r}")

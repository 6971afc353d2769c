"""keras.losses: loss functions (per-sample values) and Loss objects (reduced), called as loss(y_true, y_pred).

Cross-entropies on probabilities that came out of a softmax/sigmoid activation use the logits that
activation remembered, so the fused, stable cross-entropy of clnet.nn runs (as TensorFlow's Keras does);
other probabilities are clipped to [1e-7, 1 - 1e-7] as in Keras.
"""
from __future__ import annotations

import math

import numpy as np

import clnet
from clnet import dtypes as _dt

from . import _ops
from .ops import nn as _ops_nn
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


def _pair(y_true, y_pred, name):
    y_true = _same_rank(_float_target(y_true, y_pred), y_pred)
    _check_same_shape(y_true, y_pred, name)
    return y_true, y_pred


def mean_absolute_percentage_error(y_true, y_pred):
    """100 * mean(|(y - p) / max(|y|, eps)|) over the last axis."""
    y, p = _pair(y_true, y_pred, "mean_absolute_percentage_error")
    return clnet.mean(clnet.abs((y - p) / clnet.clamp(clnet.abs(y), EPSILON)), -1) * 100.0


def mean_squared_logarithmic_error(y_true, y_pred):
    y, p = _pair(y_true, y_pred, "mean_squared_logarithmic_error")
    return clnet.mean(clnet.square(clnet.log1p(clnet.clamp(p, EPSILON)) - clnet.log1p(clnet.clamp(y, EPSILON))), -1)


def cosine_similarity(y_true, y_pred, axis=-1):
    """-sum(unit(y) * unit(p)) along `axis` (so perfectly aligned vectors give -1, as Keras)."""
    y, p = _pair(y_true, y_pred, "cosine_similarity")
    return -clnet.sum(_ops_nn.normalize.eager(y, axis) * _ops_nn.normalize.eager(p, axis), axis)


def huber(y_true, y_pred, delta=1.0):
    y, p = _pair(y_true, y_pred, "huber")
    err = clnet.abs(p - y)
    quadratic = clnet.clamp(err, max=float(delta))
    return clnet.mean(0.5 * quadratic * quadratic + float(delta) * (err - quadratic), -1)


def log_cosh(y_true, y_pred):
    y, p = _pair(y_true, y_pred, "log_cosh")
    x = p - y
    return clnet.mean(x + _ops_nn.softplus.eager(-2.0 * x) - math.log(2.0), -1)


def _hinge_labels(y):
    """Keras: labels in {0, 1} become {-1, 1}."""
    binary = bool(clnet.all(clnet.logical_or(y == 0.0, y == 1.0)).item())
    return y * 2.0 - 1.0 if binary else y


def hinge(y_true, y_pred):
    y, p = _pair(y_true, y_pred, "hinge")
    return clnet.mean(clnet.relu(1.0 - _hinge_labels(y) * p), -1)


def squared_hinge(y_true, y_pred):
    y, p = _pair(y_true, y_pred, "squared_hinge")
    return clnet.mean(clnet.square(clnet.relu(1.0 - _hinge_labels(y) * p)), -1)


def categorical_hinge(y_true, y_pred):
    y, p = _pair(y_true, y_pred, "categorical_hinge")
    pos = clnet.sum(y * p, -1)
    neg = clnet.amax((1.0 - y) * p, -1)
    return clnet.relu(neg - pos + 1.0)


def kl_divergence(y_true, y_pred):
    y, p = _pair(y_true, y_pred, "kl_divergence")
    y, p = clnet.clamp(y, EPSILON, 1.0), clnet.clamp(p, EPSILON, 1.0)
    return clnet.sum(y * clnet.log(y / p), -1)


def poisson(y_true, y_pred):
    y, p = _pair(y_true, y_pred, "poisson")
    return clnet.mean(p - y * clnet.log(p + EPSILON), -1)


def binary_focal_crossentropy(y_true, y_pred, apply_class_balancing=False, alpha=0.25, gamma=2.0, from_logits=False,
                              label_smoothing=0.0, axis=-1):
    """Binary cross-entropy scaled by (1 - p_t)^gamma (and alpha per class when balancing), as Keras."""
    y, p = _pair(y_true, y_pred, "binary_focal_crossentropy")
    if label_smoothing:
        y = y * (1.0 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        bce = _ops.binary_cross_entropy_logits(p, y)
        p = clnet.sigmoid(p)
    else:
        pc = clnet.clamp(p, EPSILON, 1.0 - EPSILON)
        bce = -(y * clnet.log(pc) + (1.0 - y) * clnet.log(1.0 - pc))
    p_t = y * p + (1.0 - y) * (1.0 - p)
    loss = clnet.pow(1.0 - p_t, float(gamma)) * bce
    if apply_class_balancing:
        loss = (y * alpha + (1.0 - y) * (1.0 - alpha)) * loss
    return clnet.mean(loss, axis)


def categorical_focal_crossentropy(y_true, y_pred, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0,
                                   axis=-1):
    y = _float_target(y_true, y_pred)
    _check_same_shape(y, y_pred, "categorical_focal_crossentropy")
    if label_smoothing:
        y = y * (1.0 - label_smoothing) + label_smoothing / y_pred.shape[-1]
    p = _ops.softmax(y_pred, axis) if from_logits else y_pred
    p = clnet.clamp(p / clnet.sum(p, axis, keepdim=True), EPSILON, 1.0 - EPSILON)
    ce = -y * clnet.log(p)
    return clnet.sum(float(alpha) * clnet.pow(1.0 - p, float(gamma)) * ce, axis)


def dice(y_true, y_pred, axis=None):
    """1 - 2 sum(y p) / (sum(y) + sum(p) + eps) over `axis` (every element when None, as Keras)."""
    y, p = _pair(y_true, y_pred, "dice")
    inter = clnet.sum(y * p, axis)
    return 1.0 - 2.0 * inter / (clnet.sum(y, axis) + clnet.sum(p, axis) + EPSILON)


def tversky(y_true, y_pred, alpha=0.5, beta=0.5, axis=None):
    """1 - sum(y p) / (sum(y p) + alpha sum(y (1 - p)) + beta sum((1 - y) p) + eps), Keras's weighting."""
    y, p = _pair(y_true, y_pred, "tversky")
    inter = clnet.sum(y * p, axis)
    missed = clnet.sum((1.0 - p) * y, axis)
    extra = clnet.sum(p * (1.0 - y), axis)
    return 1.0 - inter / (inter + float(alpha) * missed + float(beta) * extra + EPSILON)


_FUSABLE = (mean_squared_error, mean_absolute_error, categorical_crossentropy, sparse_categorical_crossentropy,
            binary_crossentropy)


mse = MSE = mean_squared_error
mae = MAE = mean_absolute_error
mape = MAPE = mean_absolute_percentage_error
msle = MSLE = mean_squared_logarithmic_error
kld = KLD = kullback_leibler_divergence = kl_divergence
logcosh = log_cosh


# --- Loss objects -----------------------------------------------------------------------------------
_REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)


def _weights(sample_weight, values):
    """sample_weight in values' dtype and rank (a trailing 1 dropped or axes added, as Keras squeezes/expands)."""
    sw = as_tensor(sample_weight, values, dtype=values.dtype)
    if sw.ndim == values.ndim + 1 and sw.shape[-1] == 1:
        sw = sw.reshape(tuple(sw.shape[:-1]))
    if sw.ndim < values.ndim:
        sw = sw.reshape(tuple(sw.shape) + (1,) * (values.ndim - sw.ndim))
    return sw


def _mask_weights(mask, values, reduction):
    """Keras's apply_mask: masked entries weigh 0; for mean reductions the rest weigh total/valid."""
    m = mask.to(dtype=values.dtype) if mask.dtype != values.dtype else mask
    if tuple(m.shape) != tuple(values.shape) and m.ndim == values.ndim + 1 and m.shape[-1] == 1:
        m = m.reshape(tuple(m.shape[:-1]))
    if reduction in ("mean", "sum_over_batch_size"):
        total = float(m.numel())
        valid = clnet.sum(m)
        m = m * (total / clnet.maximum(valid, 1e-12)) * (valid > 0).to(dtype=m.dtype)
    return m


def reduce_values(values, sample_weight=None, reduction="sum_over_batch_size", mask=None):
    if mask is not None:
        mw = _mask_weights(mask, values, reduction)
        sample_weight = mw if sample_weight is None else _weights(sample_weight, values) * mw
    if sample_weight is not None:
        sw = _weights(sample_weight, values)
        values = values * sw
    if reduction in (None, "none"):
        return values
    if reduction == "sum":
        return clnet.sum(values)
    if reduction == "mean_with_sample_weight" and sample_weight is not None:
        return clnet.sum(values) / clnet.maximum(clnet.sum(sw * clnet.ones_like(values)), 1e-12)
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
        return reduce_values(self.call(y_true, y_pred), sample_weight, self.reduction,
                             getattr(y_pred, "_keras_mask", None))

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
                self.fn in _FUSABLE and isinstance(y_pred, clnet.Tensor) and y_pred.ndim >= 1 and \
                getattr(y_pred, "_keras_mask", None) is None:
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


def _wrapper_class(name, fn, defaults=None, doc=None):
    """A LossFunctionWrapper subclass whose __init__ takes fn's keyword arguments (Keras's loss classes)."""
    defaults = dict(defaults or {})
    snake = snake_case(name)

    def __init__(self, reduction="sum_over_batch_size", name=snake, dtype=None, **kwargs):
        unknown = [k for k in kwargs if k not in defaults]
        if unknown:
            raise TypeError(f"{type(self).__name__}: unexpected keyword argument(s) {', '.join(map(repr, unknown))}")
        LossFunctionWrapper.__init__(self, fn, reduction=reduction, name=name, **{**defaults, **kwargs})
    return type(name, (LossFunctionWrapper,), {"__init__": __init__, "__doc__": doc or fn.__doc__})


MeanAbsolutePercentageError = _wrapper_class("MeanAbsolutePercentageError", mean_absolute_percentage_error)
MeanSquaredLogarithmicError = _wrapper_class("MeanSquaredLogarithmicError", mean_squared_logarithmic_error)
CosineSimilarity = _wrapper_class("CosineSimilarity", cosine_similarity, {"axis": -1})
Huber = _wrapper_class("Huber", huber, {"delta": 1.0})
LogCosh = _wrapper_class("LogCosh", log_cosh)
Hinge = _wrapper_class("Hinge", hinge)
SquaredHinge = _wrapper_class("SquaredHinge", squared_hinge)
CategoricalHinge = _wrapper_class("CategoricalHinge", categorical_hinge)
KLDivergence = _wrapper_class("KLDivergence", kl_divergence)
Poisson = _wrapper_class("Poisson", poisson)
BinaryFocalCrossentropy = _wrapper_class("BinaryFocalCrossentropy", binary_focal_crossentropy, {
    "apply_class_balancing": False, "alpha": 0.25, "gamma": 2.0, "from_logits": False, "label_smoothing": 0.0,
    "axis": -1})
CategoricalFocalCrossentropy = _wrapper_class("CategoricalFocalCrossentropy", categorical_focal_crossentropy, {
    "alpha": 0.25, "gamma": 2.0, "from_logits": False, "label_smoothing": 0.0, "axis": -1})
Dice = _wrapper_class("Dice", dice, {"axis": None})
Tversky = _wrapper_class("Tversky", tversky, {"alpha": 0.5, "beta": 0.5, "axis": None})

LOSS_CLASSES = {c.__name__: c for c in (
    MeanSquaredError, MeanAbsoluteError, CategoricalCrossentropy, SparseCategoricalCrossentropy, BinaryCrossentropy,
    MeanAbsolutePercentageError, MeanSquaredLogarithmicError, CosineSimilarity, Huber, LogCosh, Hinge, SquaredHinge,
    CategoricalHinge, KLDivergence, Poisson, BinaryFocalCrossentropy, CategoricalFocalCrossentropy, Dice, Tversky)}
LOSS_FUNCTIONS = {fn.__name__: fn for fn in (
    mean_squared_error, mean_absolute_error, categorical_crossentropy, sparse_categorical_crossentropy,
    binary_crossentropy, mean_absolute_percentage_error, mean_squared_logarithmic_error, cosine_similarity, huber,
    log_cosh, hinge, squared_hinge, categorical_hinge, kl_divergence, poisson, binary_focal_crossentropy,
    categorical_focal_crossentropy, dice, tversky)}
LOSS_FUNCTIONS.update({"mse": mean_squared_error, "mae": mean_absolute_error, "mape": mean_absolute_percentage_error,
                       "msle": mean_squared_logarithmic_error, "kld": kl_divergence, "logcosh": log_cosh,
                       "huber_loss": huber, "kullback_leibler_divergence": kl_divergence})


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

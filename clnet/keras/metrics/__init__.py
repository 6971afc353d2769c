"""keras.metrics: stateful metrics whose running totals stay on the device (see base.py), by class or name."""
from __future__ import annotations

from .. import losses as _losses
from ..saving.object_registration import register_builtins
from ..utils import snake_case
from .accuracy import (Accuracy, BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy,  # noqa: F401
                       SparseTopKCategoricalAccuracy, TopKCategoricalAccuracy, accuracy, binary_accuracy,
                       categorical_accuracy, sparse_categorical_accuracy, sparse_top_k_categorical_accuracy,
                       top_k_categorical_accuracy)
from .base import Mean, MeanMetricWrapper, Metric, Sum  # noqa: F401
from .confusion import (AUC, BinaryIoU, F1Score, FalseNegatives, FalsePositives, FBetaScore, IoU,  # noqa: F401
                        MeanIoU, OneHotIoU, OneHotMeanIoU, Precision, PrecisionAtRecall, Recall, RecallAtPrecision,
                        SensitivityAtSpecificity, SpecificityAtSensitivity, TrueNegatives, TruePositives)
from .regression import (BinaryCrossentropy, CategoricalCrossentropy, CategoricalHinge, CosineSimilarity,  # noqa: F401
                         Hinge, KLDivergence, LogCoshError, MeanAbsoluteError, MeanAbsolutePercentageError,
                         MeanSquaredError, MeanSquaredLogarithmicError, Poisson, R2Score, RootMeanSquaredError,
                         SparseCategoricalCrossentropy, SquaredHinge, cosine_similarity)

METRIC_CLASSES = {c.__name__: c for c in (
    Mean, Sum, Accuracy, BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy, TopKCategoricalAccuracy,
    SparseTopKCategoricalAccuracy, MeanSquaredError, RootMeanSquaredError, MeanAbsoluteError,
    MeanAbsolutePercentageError, MeanSquaredLogarithmicError, CosineSimilarity, LogCoshError, R2Score, Hinge,
    SquaredHinge, CategoricalHinge, KLDivergence, Poisson, BinaryCrossentropy, CategoricalCrossentropy,
    SparseCategoricalCrossentropy, TruePositives, TrueNegatives, FalsePositives, FalseNegatives, Precision, Recall,
    AUC, PrecisionAtRecall, RecallAtPrecision, SensitivityAtSpecificity, SpecificityAtSensitivity, F1Score,
    FBetaScore, IoU, MeanIoU, BinaryIoU, OneHotIoU, OneHotMeanIoU)}
METRIC_FUNCTIONS = {fn.__name__: fn for fn in (
    accuracy, binary_accuracy, categorical_accuracy, sparse_categorical_accuracy, top_k_categorical_accuracy,
    sparse_top_k_categorical_accuracy, _losses.mean_squared_error, _losses.mean_absolute_error,
    _losses.mean_absolute_percentage_error, _losses.mean_squared_logarithmic_error, _losses.hinge,
    _losses.squared_hinge, _losses.categorical_hinge, _losses.kl_divergence, _losses.poisson, _losses.log_cosh,
    _losses.categorical_crossentropy, _losses.sparse_categorical_crossentropy, _losses.binary_crossentropy)}
METRIC_FUNCTIONS.update({"mse": _losses.mean_squared_error, "mae": _losses.mean_absolute_error,
                         "mape": _losses.mean_absolute_percentage_error,
                         "msle": _losses.mean_squared_logarithmic_error, "kld": _losses.kl_divergence,
                         "logcosh": _losses.log_cosh, "acc": accuracy})
_SNAKE_CLASSES = {snake_case(name): cls for name, cls in METRIC_CLASSES.items()}
register_builtins("metrics", METRIC_CLASSES.values())

mse = MSE = _losses.mean_squared_error
mae = MAE = _losses.mean_absolute_error
mape = MAPE = _losses.mean_absolute_percentage_error
msle = MSLE = _losses.mean_squared_logarithmic_error


def resolve(identifier, y_true, y_pred):
    """What compile()'s metrics=[...] entry becomes for one output (Keras's rule for "accuracy": binary for one
    output unit, sparse when the targets have one axis less or a last axis of 1, else categorical)."""
    if isinstance(identifier, str) and identifier.lower() in ("accuracy", "acc"):
        t_shape, p_shape = tuple(y_true.shape), tuple(y_pred.shape)
        if p_shape[-1:] == (1,):
            return BinaryAccuracy(name=identifier)
        if len(t_shape) < len(p_shape) or (t_shape[-1:] == (1,) and p_shape[-1] > 1):
            return SparseCategoricalAccuracy(name=identifier)
        return CategoricalAccuracy(name=identifier)
    metric = get(identifier)
    if isinstance(identifier, str):
        metric.name = identifier
    return metric


def get(identifier):
    """A Metric object from a name ("mae", "auc", "precision", "MeanSquaredError"), object, class or callable.

    ("accuracy" without a model is plain equality; compile() resolves it from the shapes.)
    """
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, str):
        cls = METRIC_CLASSES.get(identifier) or _SNAKE_CLASSES.get(identifier)
        if cls is not None:
            return cls()
        fn = METRIC_FUNCTIONS.get(identifier) or METRIC_FUNCTIONS.get(identifier.lower())
        if fn is None:
            valid = sorted(set(METRIC_FUNCTIONS) | {"accuracy"} | set(_SNAKE_CLASSES))
            raise ValueError(f"Could not interpret metric identifier: {identifier!r}. Valid names: {', '.join(valid)}")
        return MeanMetricWrapper(fn, name=identifier)
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if callable(identifier):
        return MeanMetricWrapper(identifier, name=snake_case(getattr(identifier, "__name__", "metric")))
    raise ValueError(f"Could not interpret metric identifier: {identifier}")


def serialize(metric):
    """{"module", "class_name", "config"} of a built-in metric (a custom one raises ValueError)."""
    if isinstance(metric, Metric) and METRIC_CLASSES.get(type(metric).__name__) is type(metric):
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

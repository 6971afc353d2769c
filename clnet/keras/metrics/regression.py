"""Regression, probabilistic and hinge metrics: the mean of a keras.losses function over the samples seen,
plus RootMeanSquaredError, CosineSimilarity (the similarity itself, not its negative) and R2Score."""
from __future__ import annotations

import clnet

from .. import losses as _losses
from ..ops import nn as _ops_nn
from ..variables import Variable
from .base import Mean, MeanMetricWrapper, Metric


def _wrapper(name, fn, snake, extra=()):
    """A MeanMetricWrapper class for fn: __init__(name=snake, dtype=None, *extra keyword arguments)."""
    def __init__(self, name=snake, dtype=None, **kwargs):
        unknown = [k for k in kwargs if k not in dict(extra)]
        if unknown:
            raise TypeError(f"{type(self).__name__}: unexpected keyword argument(s) {', '.join(map(repr, unknown))}")
        MeanMetricWrapper.__init__(self, fn, name=name, dtype=dtype, **{**dict(extra), **kwargs})
    return type(name, (MeanMetricWrapper,), {"__init__": __init__, "__doc__": f"Mean of {fn.__name__} (Keras)."})


MeanSquaredError = _wrapper("MeanSquaredError", _losses.mean_squared_error, "mean_squared_error")
MeanAbsoluteError = _wrapper("MeanAbsoluteError", _losses.mean_absolute_error, "mean_absolute_error")
MeanAbsolutePercentageError = _wrapper("MeanAbsolutePercentageError", _losses.mean_absolute_percentage_error,
                                       "mean_absolute_percentage_error")
MeanSquaredLogarithmicError = _wrapper("MeanSquaredLogarithmicError", _losses.mean_squared_logarithmic_error,
                                       "mean_squared_logarithmic_error")
LogCoshError = _wrapper("LogCoshError", _losses.log_cosh, "logcosh")
Hinge = _wrapper("Hinge", _losses.hinge, "hinge")
SquaredHinge = _wrapper("SquaredHinge", _losses.squared_hinge, "squared_hinge")
CategoricalHinge = _wrapper("CategoricalHinge", _losses.categorical_hinge, "categorical_hinge")
KLDivergence = _wrapper("KLDivergence", _losses.kl_divergence, "kl_divergence")
Poisson = _wrapper("Poisson", _losses.poisson, "poisson")
BinaryCrossentropy = _wrapper("BinaryCrossentropy", _losses.binary_crossentropy, "binary_crossentropy",
                              (("from_logits", False), ("label_smoothing", 0.0)))
CategoricalCrossentropy = _wrapper("CategoricalCrossentropy", _losses.categorical_crossentropy,
                                   "categorical_crossentropy", (("from_logits", False), ("label_smoothing", 0.0),
                                                                ("axis", -1)))
SparseCategoricalCrossentropy = _wrapper("SparseCategoricalCrossentropy", _losses.sparse_categorical_crossentropy,
                                         "sparse_categorical_crossentropy", (("from_logits", False), ("axis", -1)))


def cosine_similarity(y_true, y_pred, axis=-1):
    y, p = _losses._pair(y_true, y_pred, "cosine_similarity")
    return clnet.sum(_ops_nn.normalize.eager(y, axis) * _ops_nn.normalize.eager(p, axis), axis)


CosineSimilarity = _wrapper("CosineSimilarity", cosine_similarity, "cosine_similarity", (("axis", -1),))


class RootMeanSquaredError(Mean):
    """sqrt of the (weighted) mean squared error over every sample seen."""

    def __init__(self, name="root_mean_squared_error", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y, p = _losses._pair(y_true, y_pred.detach() if isinstance(y_pred, clnet.Tensor) else
                             _losses.as_tensor(y_pred), "root_mean_squared_error")
        super().update_state(clnet.square(p - y), sample_weight)

    def result(self):
        return clnet.sqrt(super().result())


class R2Score(Metric):
    """Coefficient of determination, 1 - SS_res / SS_tot over every sample seen (per output, then averaged)."""

    def __init__(self, class_aggregation="uniform_average", num_regressors=0, name="r2_score", dtype=None):
        super().__init__(dtype=dtype, name=name)
        if class_aggregation not in ("uniform_average", "variance_weighted_average", None):
            raise ValueError(f"Invalid value for argument `class_aggregation`. Received: {class_aggregation!r}")
        self.class_aggregation, self.num_regressors = class_aggregation, int(num_regressors)
        self._state = None

    def update_state(self, y_true, y_pred, sample_weight=None):
        with clnet.no_grad():
            y, p = _losses._pair(y_true, y_pred.detach() if isinstance(y_pred, clnet.Tensor) else
                                 _losses.as_tensor(y_pred), "r2_score")
            if y.ndim == 1:
                y, p = y.reshape(-1, 1), p.reshape(-1, 1)
            w = clnet.ones((y.shape[0], 1), dtype=y.dtype, device=y.device) if sample_weight is None else \
                _losses.as_tensor(sample_weight, y, dtype=y.dtype).reshape(-1, 1)
            parts = [clnet.sum(y * w, 0), clnet.sum(y * y * w, 0), clnet.sum(clnet.square(y - p) * w, 0),
                     clnet.sum(w * clnet.ones_like(y), 0)]
            if self._state is None:
                self._state = [Variable(part.numpy() * 0, trainable=False) for part in parts]
            for var, part in zip(self._state, parts):
                var.assign_add(part)
            self._samples = getattr(self, "_samples", 0) + y.shape[0]

    def result(self):
        if self._state is None:
            return clnet.tensor(0.0)
        total, squares, residual, count = self._state
        mean = total / count
        ss_tot = squares - total * mean
        scores = 1.0 - residual / ss_tot
        if self.class_aggregation == "uniform_average":
            score = clnet.mean(scores)
        elif self.class_aggregation == "variance_weighted_average":
            score = clnet.sum(scores * ss_tot) / clnet.sum(ss_tot)
        else:
            score = scores
        if self.num_regressors:
            n = float(getattr(self, "_samples", 0))
            score = 1.0 - (1.0 - score) * (n - 1.0) / (n - self.num_regressors - 1.0)
        return score

    def reset_state(self):
        self._state, self._samples = None, 0

    def get_config(self):
        return {**super().get_config(), "class_aggregation": self.class_aggregation,
                "num_regressors": self.num_regressors}

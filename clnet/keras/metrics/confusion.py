"""Confusion-matrix metrics (TruePositives ... FalseNegatives, Precision, Recall, AUC, the "X at Y" metrics),
F1Score/FBetaScore and the IoU metrics, with Keras's formulas.

Counts are accumulated on the device, per threshold, in state variables: a prediction counts as positive
when it is above the threshold, a target when it is non-zero; weights multiply each sample's counts.
"""
from __future__ import annotations

import numpy as np

import clnet
from clnet import dtypes as _dt

from .. import config
from .. import losses as _losses
from .base import Metric


def _as_float(x, like=None):
    t = _losses.as_tensor(x, like)
    return t if _dt.is_floating(t.dtype) else t.to(dtype=_dt.float32)


def _filter_top_k(pred, k):
    """Scores outside each row's k largest set far below any threshold (Keras's _filter_top_k)."""
    kth = clnet.topk(pred, k, -1)[0][..., -1:] if hasattr(clnet, "topk") else _kth_largest(pred, k)
    return clnet.where(pred >= kth, pred, -1e9)


def _kth_largest(pred, k):
    work = pred
    for _ in range(k - 1):
        top = clnet.amax(work, -1, keepdim=True)
        work = clnet.where(work >= top, -np.inf, work)
    return clnet.amax(work, -1, keepdim=True)


def confusion_counts(y_true, y_pred, thresholds, sample_weight=None, class_id=None, top_k=None, multi_label=False):
    """Weighted (tp, fp, tn, fn), each of shape (T,) (or (T, labels) with multi_label), for thresholds (T,)."""
    with clnet.no_grad():
        pred = _as_float(y_pred.detach() if isinstance(y_pred, clnet.Tensor) else y_pred)
        true = _losses.as_tensor(y_true, pred)
        true = _losses._same_rank(true, pred)
        if tuple(true.shape) != tuple(pred.shape):
            raise ValueError(f"y_true and y_pred must have the same shape for confusion-matrix metrics; got "
                             f"{tuple(true.shape)} and {tuple(pred.shape)}")
        true = (true != 0).to(dtype=pred.dtype)
        if top_k is not None:
            pred = _filter_top_k(pred, int(top_k))
        if class_id is not None:
            pred, true = pred[..., class_id], true[..., class_id]
        w = None
        if sample_weight is not None:
            w = _losses.as_tensor(sample_weight, pred, dtype=pred.dtype)
            while w.ndim < pred.ndim:
                w = w.unsqueeze(-1)
            w = w.expand(*pred.shape) if tuple(w.shape) != tuple(pred.shape) else w
        labels = pred.shape[-1] if multi_label and pred.ndim > 1 else 1
        pred, true = pred.reshape(-1, 1, labels), true.reshape(-1, 1, labels)
        if w is not None:
            w = w.reshape(-1, 1, labels)
        thr = _losses.as_tensor(thresholds, pred, dtype=pred.dtype).reshape(1, -1, 1)
        pos = (pred > thr).to(dtype=pred.dtype)
        neg = 1.0 - pos
        yes, no = true, 1.0 - true
        if w is not None:
            yes, no = yes * w, no * w
        counts = [clnet.sum(pos * yes, 0), clnet.sum(pos * no, 0), clnet.sum(neg * no, 0), clnet.sum(neg * yes, 0)]
        return [c if multi_label and labels > 1 else c.reshape(-1) for c in counts]


def _divide_no_nan(a, b):
    return clnet.where(b == 0, 0.0, a / clnet.where(b == 0, 1.0, b))


class _ConfusionBase(Metric):
    """Keeps tp/fp/tn/fn per threshold in device variables."""

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None, dtype=None, default=0.5):
        super().__init__(dtype=dtype, name=name)
        self.init_thresholds = thresholds
        self.thresholds = [default] if thresholds is None else \
            ([float(thresholds)] if np.ndim(thresholds) == 0 else [float(t) for t in thresholds])
        self._single = thresholds is None or np.ndim(thresholds) == 0
        self.top_k, self.class_id = top_k, class_id
        n = len(self.thresholds)
        self.true_positives = self.add_variable((n,), "zeros", name="true_positives")
        self.false_positives = self.add_variable((n,), "zeros", name="false_positives")
        self.true_negatives = self.add_variable((n,), "zeros", name="true_negatives")
        self.false_negatives = self.add_variable((n,), "zeros", name="false_negatives")

    def update_state(self, y_true, y_pred, sample_weight=None):
        tp, fp, tn, fn = confusion_counts(y_true, y_pred, self.thresholds, sample_weight, self.class_id, self.top_k)
        for var, value in ((self.true_positives, tp), (self.false_positives, fp), (self.true_negatives, tn),
                           (self.false_negatives, fn)):
            var.assign_add(value)

    def _scalar(self, value):
        return value.reshape(()) if self._single else value

    def get_config(self):
        return {**super().get_config(), "thresholds": self.init_thresholds, "top_k": self.top_k,
                "class_id": self.class_id}


def _count_class(attr):
    class Count(_ConfusionBase):
        def __init__(self, thresholds=None, name=None, dtype=None):
            super().__init__(thresholds, name=name, dtype=dtype)

        def result(self):
            return self._scalar(getattr(self, attr) * 1.0)

        def get_config(self):
            return {"name": self.name, "dtype": self.dtype.name, "thresholds": self.init_thresholds}
    return Count


class TruePositives(_count_class("true_positives")):
    """Weighted number of true positives (prediction above the threshold, target non-zero)."""


class FalsePositives(_count_class("false_positives")):
    """Weighted number of false positives."""


class TrueNegatives(_count_class("true_negatives")):
    """Weighted number of true negatives."""


class FalseNegatives(_count_class("false_negatives")):
    """Weighted number of false negatives."""


class Precision(_ConfusionBase):
    """tp / (tp + fp) at each threshold (0.5 by default), optionally within the top k or for one class."""

    def result(self):
        return self._scalar(_divide_no_nan(self.true_positives * 1.0, self.true_positives + self.false_positives))


class Recall(_ConfusionBase):
    """tp / (tp + fn) at each threshold (0.5 by default)."""

    def result(self):
        return self._scalar(_divide_no_nan(self.true_positives * 1.0, self.true_positives + self.false_negatives))


def _even_thresholds(num_thresholds):
    return [0.0] + [(i + 1) * 1.0 / (num_thresholds - 1) for i in range(num_thresholds - 2)] + [1.0]


class _AtConstraint(_ConfusionBase):
    """The best `dependent` rate among thresholds whose `constrained` rate reaches `value` (0 if none does)."""

    def __init__(self, value, num_thresholds=200, class_id=None, name=None, dtype=None):
        if not 0 <= value <= 1:
            raise ValueError(f"Argument `{self._value_name}` must be in the range [0, 1]. Received: {value}")
        if num_thresholds <= 0:
            raise ValueError(f"Argument `num_thresholds` must be an integer > 0. Received: {num_thresholds}")
        self.value, self.num_thresholds = float(value), int(num_thresholds)
        super().__init__([0.5] if num_thresholds == 1 else _even_thresholds(num_thresholds), class_id=class_id,
                         name=name, dtype=dtype)
        self._single = False

    def _rates(self):
        tp, fp, tn, fn = (v * 1.0 for v in (self.true_positives, self.false_positives, self.true_negatives,
                                            self.false_negatives))
        return {"sensitivity": _divide_no_nan(tp, tp + fn), "specificity": _divide_no_nan(tn, tn + fp),
                "precision": _divide_no_nan(tp, tp + fp), "recall": _divide_no_nan(tp, tp + fn)}

    def result(self):
        rates = self._rates()
        feasible = rates[self._constrained] >= self.value
        return clnet.amax(clnet.where(feasible, rates[self._dependent], 0.0))

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype.name, self._value_name: self.value,
                "num_thresholds": self.num_thresholds, "class_id": self.class_id}


class SensitivityAtSpecificity(_AtConstraint):
    _value_name, _constrained, _dependent = "specificity", "specificity", "sensitivity"

    def __init__(self, specificity, num_thresholds=200, class_id=None, name=None, dtype=None):
        super().__init__(specificity, num_thresholds, class_id, name, dtype)


class SpecificityAtSensitivity(_AtConstraint):
    _value_name, _constrained, _dependent = "sensitivity", "sensitivity", "specificity"

    def __init__(self, sensitivity, num_thresholds=200, class_id=None, name=None, dtype=None):
        super().__init__(sensitivity, num_thresholds, class_id, name, dtype)


class PrecisionAtRecall(_AtConstraint):
    _value_name, _constrained, _dependent = "recall", "recall", "precision"

    def __init__(self, recall, num_thresholds=200, class_id=None, name=None, dtype=None):
        super().__init__(recall, num_thresholds, class_id, name, dtype)


class RecallAtPrecision(_AtConstraint):
    _value_name, _constrained, _dependent = "precision", "precision", "recall"

    def __init__(self, precision, num_thresholds=200, class_id=None, name=None, dtype=None):
        super().__init__(precision, num_thresholds, class_id, name, dtype)


class AUC(Metric):
    """Area under the ROC or PR curve from counts at `num_thresholds` thresholds (Keras's Riemann sums; PR with
    "interpolation" uses Davis & Goadrich's formula, as Keras)."""

    def __init__(self, num_thresholds=200, curve="ROC", summation_method="interpolation", name=None, dtype=None,
                 thresholds=None, multi_label=False, num_labels=None, label_weights=None, from_logits=False):
        super().__init__(dtype=dtype, name=name)
        curve, summation_method = str(curve).upper(), str(summation_method).lower()
        if curve not in ("ROC", "PR", "PRGAIN"):
            raise ValueError(f'Invalid `curve` argument value "{curve}". Expected one of: ROC, PR, PRGAIN')
        if summation_method not in ("interpolation", "minoring", "majoring"):
            raise ValueError(f'Invalid `summation_method` argument value "{summation_method}". Expected one of: '
                             "interpolation, minoring, majoring")
        if thresholds is not None:
            inner = sorted(float(t) for t in thresholds)
            num_thresholds = len(inner) + 2
        else:
            if num_thresholds <= 1:
                raise ValueError(f"Argument `num_thresholds` must be an integer > 1. Received: "
                                 f"num_thresholds={num_thresholds}")
            inner = [(i + 1) * 1.0 / (num_thresholds - 1) for i in range(num_thresholds - 2)]
        eps = config.epsilon()
        self.thresholds = [0.0 - eps] + inner + [1.0 + eps]
        self._init_thresholds = thresholds
        self.num_thresholds, self.curve, self.summation_method = num_thresholds, curve, summation_method
        self.multi_label, self.num_labels, self.from_logits = bool(multi_label), num_labels, bool(from_logits)
        self.label_weights = None if label_weights is None else np.asarray(label_weights, dtype=np.float32)
        self._vars = None
        if not self.multi_label or num_labels is not None:
            self._make_vars(num_labels if self.multi_label else None)

    def _make_vars(self, labels):
        shape = (self.num_thresholds,) if labels is None else (self.num_thresholds, int(labels))
        self.true_positives = self.add_variable(shape, "zeros", name="true_positives")
        self.false_positives = self.add_variable(shape, "zeros", name="false_positives")
        self.true_negatives = self.add_variable(shape, "zeros", name="true_negatives")
        self.false_negatives = self.add_variable(shape, "zeros", name="false_negatives")
        self._vars = True

    def update_state(self, y_true, y_pred, sample_weight=None):
        pred = _as_float(y_pred.detach() if isinstance(y_pred, clnet.Tensor) else y_pred)
        if self.from_logits:
            pred = clnet.sigmoid(pred)
        if self._vars is None:
            self._make_vars(pred.shape[-1])
        counts = confusion_counts(y_true, pred, self.thresholds, sample_weight, multi_label=self.multi_label)
        for var, value in zip((self.true_positives, self.false_positives, self.true_negatives, self.false_negatives),
                              counts):
            var.assign_add(value.reshape(tuple(var.shape)))

    def _aggregate(self, terms):
        if not self.multi_label:
            return clnet.sum(terms)
        by_label = clnet.sum(terms, 0)
        if self.label_weights is None:
            return clnet.mean(by_label)
        w = clnet.tensor(self.label_weights, device=by_label.device)
        return _divide_no_nan(clnet.sum(by_label * w), clnet.sum(w))

    def _interpolate_pr(self):
        tp, fp, fn = (v * 1.0 for v in (self.true_positives, self.false_positives, self.false_negatives))
        n = self.num_thresholds
        dtp = tp[:n - 1] - tp[1:]
        p = tp + fp
        dp = p[:n - 1] - p[1:]
        slope = _divide_no_nan(dtp, clnet.relu(dp))
        intercept = tp[1:] - slope * p[1:]
        ratio = clnet.where(clnet.logical_and(p[:n - 1] > 0, p[1:] > 0),
                            _divide_no_nan(p[:n - 1], clnet.relu(p[1:])), 1.0)
        increment = _divide_no_nan(slope * (dtp + intercept * clnet.log(clnet.where(ratio > 0, ratio, 1.0))),
                                   clnet.relu(tp[1:] + fn[1:]))
        return self._aggregate(increment)

    def result(self):
        if self._vars is None:
            return clnet.tensor(0.0)
        if self.curve == "PR" and self.summation_method == "interpolation":
            return self._interpolate_pr()
        tp, fp, tn, fn = (v * 1.0 for v in (self.true_positives, self.false_positives, self.true_negatives,
                                            self.false_negatives))
        recall = _divide_no_nan(tp, tp + fn)
        if self.curve == "ROC":
            x, y = _divide_no_nan(fp, fp + tn), recall
        elif self.curve == "PR":
            x, y = recall, _divide_no_nan(tp, tp + fp)
        else:
            scale = _divide_no_nan(tp + fn, tn + fp)
            x = clnet.relu(clnet.where(tp == 0, 0.0, 1.0 - scale * _divide_no_nan(fn, tp)))
            y = clnet.where(tp == 0, 1.0, 1.0 - scale * _divide_no_nan(fp, tp))
        n = self.num_thresholds
        if self.summation_method == "interpolation":
            heights = (y[:n - 1] + y[1:]) * 0.5
        elif self.summation_method == "minoring":
            heights = clnet.minimum(y[:n - 1], y[1:])
        else:
            heights = clnet.maximum(y[:n - 1], y[1:])
        return self._aggregate((x[:n - 1] - x[1:]) * heights)

    def reset_state(self):
        if self._vars is not None:
            super().reset_state()

    def get_config(self):
        return {**super().get_config(), "num_thresholds": self.num_thresholds, "curve": self.curve,
                "summation_method": self.summation_method, "multi_label": self.multi_label,
                "num_labels": self.num_labels, "from_logits": self.from_logits,
                "label_weights": None if self.label_weights is None else self.label_weights.tolist(),
                "thresholds": self._init_thresholds}


class FBetaScore(Metric):
    """F-beta per class from tp/fp/fn (threshold None: the row's argmax is the prediction), averaged as asked."""

    def __init__(self, average=None, beta=1.0, threshold=None, name="fbeta_score", dtype=None):
        super().__init__(dtype=dtype, name=name)
        if average not in (None, "micro", "macro", "weighted"):
            raise ValueError("Invalid `average` argument value. Expected one of: {None, 'micro', 'macro', "
                             f"'weighted'}}. Received: average={average}")
        if not isinstance(beta, (int, float)) or beta <= 0:
            raise ValueError(f"Invalid `beta` argument value. It should be a Python float > 0. Received: beta={beta}")
        self.average, self.beta, self.threshold = average, float(beta), threshold
        self._built = False

    def _build(self, classes):
        self.true_positives = self.add_variable((classes,), "zeros", name="true_positives")
        self.false_positives = self.add_variable((classes,), "zeros", name="false_positives")
        self.false_negatives = self.add_variable((classes,), "zeros", name="false_negatives")
        self.intermediate_weights = self.add_variable((classes,), "zeros", name="intermediate_weights")
        self._built = True

    def update_state(self, y_true, y_pred, sample_weight=None):
        with clnet.no_grad():
            pred = _as_float(y_pred.detach() if isinstance(y_pred, clnet.Tensor) else y_pred)
            true = _losses.as_tensor(y_true, pred, dtype=pred.dtype)
            if not self._built:
                self._build(pred.shape[-1])
            if self.threshold is None:
                pred = (pred >= clnet.amax(pred, -1, keepdim=True)).to(dtype=pred.dtype)
            else:
                pred = (pred > float(self.threshold)).to(dtype=pred.dtype)
            if sample_weight is not None:
                w = _losses.as_tensor(sample_weight, pred, dtype=pred.dtype).reshape(-1, 1)
                pred_w, true_w = pred * w, true * w
            else:
                pred_w, true_w = pred, true
            self.true_positives.assign_add(clnet.sum(pred_w * true, 0))
            self.false_positives.assign_add(clnet.sum(pred_w * (1.0 - true), 0))
            self.false_negatives.assign_add(clnet.sum((1.0 - pred) * true_w, 0))
            self.intermediate_weights.assign_add(clnet.sum(true_w, 0))

    def result(self):
        if not self._built:
            return clnet.tensor(0.0)
        eps = config.epsilon()
        tp, fp, fn = (v * 1.0 for v in (self.true_positives, self.false_positives, self.false_negatives))
        if self.average == "micro":
            tp, fp, fn = clnet.sum(tp), clnet.sum(fp), clnet.sum(fn)
        precision = tp / (tp + fp + eps)
        recall = tp / (tp + fn + eps)
        b2 = self.beta ** 2
        f = (1.0 + b2) * (precision * recall) / (b2 * precision + recall + eps)
        if self.average == "weighted":
            w = self.intermediate_weights * 1.0
            return clnet.sum(f * w) / (clnet.sum(w) + eps)
        if self.average == "macro":
            return clnet.mean(f)
        return f

    def reset_state(self):
        if self._built:
            super().reset_state()

    def get_config(self):
        return {**super().get_config(), "average": self.average, "beta": self.beta, "threshold": self.threshold}


class F1Score(FBetaScore):
    def __init__(self, average=None, threshold=None, name="f1_score", dtype=None):
        super().__init__(average=average, beta=1.0, threshold=threshold, name=name, dtype=dtype)

    def get_config(self):
        config = super().get_config()
        del config["beta"]
        return config


class _IoUBase(Metric):
    """A confusion matrix over num_classes (rows: targets, columns: predictions), accumulated on the device."""

    def __init__(self, num_classes, name=None, dtype=None, ignore_class=None, sparse_y_true=True,
                 sparse_y_pred=True, axis=-1):
        super().__init__(dtype=dtype or "int32", name=name)  # Keras's IoU metrics count in int32 by default
        self.num_classes, self.ignore_class = int(num_classes), ignore_class
        self.sparse_y_true, self.sparse_y_pred, self.axis = sparse_y_true, sparse_y_pred, axis
        self.total_cm = self.add_variable((self.num_classes, self.num_classes), "zeros", name="total_confusion_matrix",
                                          dtype="float32")

    def _labels(self, y_true, y_pred):
        true = _losses.as_tensor(y_true)
        pred = y_pred.detach() if isinstance(y_pred, clnet.Tensor) else _losses.as_tensor(y_pred)
        if not self.sparse_y_true:
            true = clnet.argmax(true, self.axis)
        if not self.sparse_y_pred:
            pred = clnet.argmax(pred, self.axis)
        return true.reshape(-1).to(dtype=_dt.int64), pred.reshape(-1).to(dtype=_dt.int64)

    def update_state(self, y_true, y_pred, sample_weight=None):
        with clnet.no_grad():
            true, pred = self._labels(y_true, y_pred)
            classes = clnet.arange(0, self.num_classes, dtype=_dt.int64, device=true.device)
            t1 = clnet.eq(true.unsqueeze(-1), classes).to(dtype=_dt.float32)
            p1 = clnet.eq(pred.unsqueeze(-1), classes).to(dtype=_dt.float32)
            if sample_weight is not None:
                w = _losses.as_tensor(sample_weight, t1, dtype=t1.dtype).reshape(-1, 1)
                if not _dt.is_floating(self.dtype):  # as Keras: weights cast to the metric's integer dtype
                    w = clnet.sign(w) * clnet.floor(clnet.abs(w))
                t1 = t1 * w
            valid = clnet.logical_and(clnet.logical_and(true >= 0, true < self.num_classes),
                                      clnet.logical_and(pred >= 0, pred < self.num_classes))
            t1 = t1 * valid.to(dtype=t1.dtype).unsqueeze(-1)
            if self.ignore_class is not None:
                t1 = t1 * (true != int(self.ignore_class)).to(dtype=t1.dtype).unsqueeze(-1)
            self.total_cm.assign_add(clnet.matmul(t1.T, p1))

    def _ious(self):
        cm = self.total_cm * 1.0
        rows, cols = clnet.sum(cm, 1), clnet.sum(cm, 0)
        diag = clnet.sum(cm * clnet.eye(self.num_classes, device=cm.device), 1)
        denominator = rows + cols - diag
        return diag / (denominator + config.epsilon()), denominator

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "ignore_class": self.ignore_class,
                "sparse_y_true": self.sparse_y_true, "sparse_y_pred": self.sparse_y_pred, "axis": self.axis}


class IoU(_IoUBase):
    """Mean intersection-over-union of the classes in target_class_ids."""

    def __init__(self, num_classes, target_class_ids, name=None, dtype=None, ignore_class=None,
                 sparse_y_true=True, sparse_y_pred=True, axis=-1):
        super().__init__(num_classes, name, dtype, ignore_class, sparse_y_true, sparse_y_pred, axis)
        self.target_class_ids = list(target_class_ids)

    def result(self):
        iou, denominator = self._ious()
        idx = clnet.tensor(np.asarray(self.target_class_ids, dtype=np.int64), device=iou.device)
        iou, denominator = clnet.index_select(iou, 0, idx), clnet.index_select(denominator, 0, idx)
        valid = (denominator > 1e-9).to(dtype=iou.dtype)
        return clnet.sum(iou * valid) / (clnet.sum(valid) + config.epsilon())

    def get_config(self):
        return {**super().get_config(), "target_class_ids": self.target_class_ids}


class MeanIoU(IoU):
    def __init__(self, num_classes, name=None, dtype=None, ignore_class=None, sparse_y_true=True,
                 sparse_y_pred=True, axis=-1):
        super().__init__(num_classes, list(range(num_classes)), name, dtype, ignore_class, sparse_y_true,
                         sparse_y_pred, axis)

    def get_config(self):
        config = super().get_config()
        del config["target_class_ids"]
        return config


class BinaryIoU(IoU):
    """IoU for binary targets, predictions thresholded at `threshold`."""

    def __init__(self, target_class_ids=(0, 1), threshold=0.5, name=None, dtype=None):
        super().__init__(2, target_class_ids, name, dtype)
        self.threshold = float(threshold)

    def _labels(self, y_true, y_pred):
        pred = y_pred.detach() if isinstance(y_pred, clnet.Tensor) else _losses.as_tensor(y_pred)
        true = _losses.as_tensor(y_true, pred)
        return (true > 0.5 if _dt.is_floating(true.dtype) else true != 0).reshape(-1).to(dtype=_dt.int64), \
            (pred >= self.threshold).reshape(-1).to(dtype=_dt.int64)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype.name, "target_class_ids": self.target_class_ids,
                "threshold": self.threshold}


class OneHotIoU(IoU):
    def __init__(self, num_classes, target_class_ids, name=None, dtype=None, ignore_class=None, sparse_y_pred=False,
                 axis=-1):
        super().__init__(num_classes, target_class_ids, name, dtype, ignore_class, False, sparse_y_pred, axis)


class OneHotMeanIoU(MeanIoU):
    def __init__(self, num_classes, name=None, dtype=None, ignore_class=None, sparse_y_pred=False, axis=-1):
        super().__init__(num_classes, name, dtype, ignore_class, False, sparse_y_pred, axis)

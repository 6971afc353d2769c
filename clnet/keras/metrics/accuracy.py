"""Accuracy metrics: exact match, binary (thresholded), categorical, sparse categorical and top-k."""
from __future__ import annotations

import clnet
from clnet import dtypes as _dt

from .. import losses as _losses
from ..ops import math as _math
from .base import MeanMetricWrapper


def _squeeze_like(y_true, y_pred):
    if y_true.ndim == y_pred.ndim + 1 and y_true.shape[-1] == 1:
        return y_true.reshape(y_true.shape[:-1])
    if y_pred.ndim == y_true.ndim + 1 and y_pred.shape[-1] == 1:
        return y_true.reshape(y_pred.shape)
    return y_true


def accuracy(y_true, y_pred):
    y_true = _squeeze_like(_losses.as_tensor(y_true, y_pred), y_pred)
    return clnet.eq(y_true, y_pred.to(dtype=y_true.dtype) if y_true.dtype != y_pred.dtype else y_pred).float()


def binary_accuracy(y_true, y_pred, threshold=0.5):
    y_true = _losses._same_rank(_losses.as_tensor(y_true, y_pred), y_pred)
    predicted = y_pred > threshold
    truth = y_true > 0.5 if _dt.is_floating(y_true.dtype) else y_true != 0
    return clnet.mean(clnet.eq(predicted, truth).float(), -1)


def categorical_accuracy(y_true, y_pred):
    y_true = _losses.as_tensor(y_true, y_pred)
    return clnet.eq(clnet.argmax(y_true, -1), clnet.argmax(y_pred, -1)).float()


def sparse_categorical_accuracy(y_true, y_pred):
    labels = _losses._labels(y_true, y_pred)
    return clnet.eq(labels, clnet.argmax(y_pred, -1)).float()


def sparse_top_k_categorical_accuracy(y_true, y_pred, k=5, from_sorted_ids=False):
    """Whether the label is among the k highest scores (ties count in, as Keras's in_top_k)."""
    labels = _losses._labels(y_true, y_pred)
    if from_sorted_ids:  # y_pred holds the top class ids, best first
        ids = y_pred[..., :k].to(dtype=labels.dtype)
        return clnet.any(clnet.eq(ids, labels.unsqueeze(-1)), -1).float()
    flat = y_pred.reshape(-1, y_pred.shape[-1])
    return _math.in_top_k.eager(labels.reshape(-1), flat, k).float().reshape(tuple(labels.shape))


def top_k_categorical_accuracy(y_true, y_pred, k=5):
    y_true = _losses.as_tensor(y_true, y_pred)
    return sparse_top_k_categorical_accuracy(clnet.argmax(y_true, -1), y_pred, k)


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


class TopKCategoricalAccuracy(MeanMetricWrapper):
    def __init__(self, k=5, name="top_k_categorical_accuracy", dtype=None):
        super().__init__(top_k_categorical_accuracy, name=name, dtype=dtype, k=int(k))


class SparseTopKCategoricalAccuracy(MeanMetricWrapper):
    def __init__(self, k=5, name="sparse_top_k_categorical_accuracy", dtype=None, from_sorted_ids=False):
        super().__init__(sparse_top_k_categorical_accuracy, name=name, dtype=dtype, k=int(k),
                         from_sorted_ids=bool(from_sorted_ids))

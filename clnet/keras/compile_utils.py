"""What compile() turns its loss, loss_weights, metrics and weighted_metrics into, for one output or many.

A loss (or metric list) may be given once for every output, as a list in output order, or as a dict by
output name (the output layer's name, or the key of a dict of outputs). Names in the logs follow Keras:
with several outputs each loss is also tracked as "<output>_loss" and each metric as "<output>_<metric>".
"""
from __future__ import annotations

import clnet

from . import losses as losses_module
from . import metrics as metrics_module
from . import tree


def _per_output(spec, output_names, what):
    """The spec for each output, in output order: one for all, a list by position or a dict by name."""
    n = len(output_names)
    if spec is None:
        return [None] * n
    if isinstance(spec, dict):
        unknown = [k for k in spec if k not in output_names]
        if unknown:
            raise ValueError(f"In the dict argument `{what}`, key {unknown[0]!r} does not correspond to any model "
                             f"output. Received:\n{what}={spec}\nThe model's outputs are {output_names}")
        return [spec.get(name) for name in output_names]
    if isinstance(spec, (list, tuple)) and n > 1:
        if len(spec) != n:
            raise ValueError(f"`{what}` is a list of {len(spec)} entries, but the model has {n} outputs "
                             f"({output_names}); give one entry per output or a dict by output name")
        return list(spec)
    return [spec] * n


class CompileLoss:
    """The compiled loss: Σ loss_weight_i * loss_i(y_true_i, y_pred_i), one entry per output that has a loss."""

    def __init__(self, loss, loss_weights=None, output_names=None):
        if loss_weights is not None and not isinstance(loss_weights, (list, tuple, dict, float, int)):
            raise ValueError("Expected `loss_weights` argument to be a float (single output case) or a list, tuple, "
                             f"or dict (multiple output case). Received instead: loss_weights={loss_weights} of "
                             f"type {type(loss_weights)}")
        self._user_loss, self._user_loss_weights = loss, loss_weights
        self.output_names = output_names
        self.built = False
        self._entries = []  # (output index, Loss object, weight)
        self.metrics = []  # per-output Mean trackers when there are several losses

    def build(self, y_true, y_pred):
        flat_pred = tree.flatten(y_pred)
        names = self.output_names if self.output_names and len(self.output_names) == len(flat_pred) else \
            [f"output_{i}" if len(flat_pred) > 1 else "output" for i in range(len(flat_pred))]
        losses = _per_output(self._user_loss, names, "loss")
        weights = _per_output(self._user_loss_weights, names, "loss_weights") \
            if isinstance(self._user_loss_weights, (list, tuple, dict)) else [self._user_loss_weights] * len(names)
        order = range(len(names))
        if isinstance(self._user_loss, dict):  # Keras follows the loss dict's order (it names the trackers)
            order = [names.index(k) for k in self._user_loss if k in names]
        self._entries = [(i, losses_module.as_loss_object(losses[i]), None if weights[i] is None else float(weights[i]))
                         for i in order if losses[i] is not None]
        if len(self._entries) > 1:
            self.metrics = [metrics_module.Mean(name=f"{names[i]}_loss") for i, _, _ in self._entries]
        self.built = True

    def __call__(self, y_true, y_pred, sample_weight=None):
        if not self.built:
            self.build(y_true, y_pred)
        flat_pred = tree.flatten(y_pred)
        flat_true = _flatten_targets(y_true, len(flat_pred), self.output_names)
        flat_sw = _flatten_targets(sample_weight, len(flat_pred), self.output_names) \
            if tree.is_nested(sample_weight) else [sample_weight] * len(flat_pred)
        total = None
        for k, (i, loss, weight) in enumerate(self._entries):
            if flat_true[i] is None:
                raise ValueError(f"The model's output {self.output_names[i] if self.output_names else i!r} has a loss, "
                                 "but no target (y) was given for it")
            value = loss(flat_true[i], flat_pred[i], flat_sw[i])
            if self.metrics:  # Keras records each output's loss unweighted
                self.metrics[k].update_state(value.detach(), sample_weight=_batch_size(flat_pred[i]))
            if weight is not None:
                value = value * weight
            total = value if total is None else total + value
        return total

    def get_config(self):
        return {"loss": self._user_loss, "loss_weights": self._user_loss_weights}


def _batch_size(t):
    return int(t.shape[0]) if isinstance(t, clnet.Tensor) and t.ndim else 1


def _flatten_targets(y, n, output_names):
    """Targets in output order from one array, a list, or a dict by output name."""
    if y is None:
        return [None] * n
    if isinstance(y, dict):
        if output_names and all(name in y for name in output_names):
            return [y[name] for name in output_names]
        return tree.flatten(y)
    if isinstance(y, (list, tuple)) and n > 1:
        return list(y)
    return [y] + [None] * (n - 1) if n > 1 else [y]


class CompileMetrics(metrics_module.Metric):
    """The compiled metrics (and weighted_metrics) of every output, as one metric whose result is a dict."""

    def __init__(self, metrics, weighted_metrics, output_names=None):
        super().__init__(name="compile_metrics")
        self._user_metrics, self._user_weighted = metrics, weighted_metrics
        self.output_names = output_names
        self.built = False
        self._per_output = []  # [(output index, metric, weighted, name in the logs)]
        for spec, what in ((metrics, "metrics"), (weighted_metrics, "weighted_metrics")):
            if spec is not None and not isinstance(spec, (list, tuple, dict)):
                raise TypeError(f"Expected `{what}` argument to be a list, tuple, or dict. Received instead: "
                                f"{what}={spec} of type {type(spec)}")
            for m in (tree.flatten(spec) if spec is not None else []):  # unknown names fail at compile time
                if m is not None and not (isinstance(m, str) and m.lower() in ("accuracy", "acc")):
                    metrics_module.get(m)

    @property
    def metrics(self):
        return [m for _, m, _, _ in self._per_output]

    @property
    def metric_names(self):
        return [key for _, _, _, key in self._per_output]

    def build(self, y_true, y_pred):
        flat_pred = tree.flatten(y_pred)
        n = len(flat_pred)
        names = self.output_names if self.output_names and len(self.output_names) == n else \
            [f"output_{i}" for i in range(n)]
        flat_true = _flatten_targets(y_true, n, names)
        entries, keys = [], {}
        for spec, weighted in ((self._user_metrics, False), (self._user_weighted, True)):
            if spec is None:
                continue
            if n == 1:
                per = [tree.flatten(spec)]
            elif isinstance(spec, dict):
                per = [spec.get(name) for name in names]
                unknown = [k for k in spec if k not in names]
                if unknown:
                    raise ValueError(f"In the dict argument `metrics`, key {unknown[0]!r} does not correspond to any "
                                     f"model output. The model's outputs are {names}")
            elif isinstance(spec, (list, tuple)) and len(spec) == n and all(
                    isinstance(s, (list, tuple)) or s is None for s in spec):
                per = list(spec)
            else:
                per = [spec] * n  # one list of metrics for every output
            for i, ids in enumerate(per):
                for ident in ([] if ids is None else (ids if isinstance(ids, (list, tuple)) else [ids])):
                    metric = metrics_module.resolve(ident, flat_true[i], flat_pred[i])
                    entries.append((i, metric, weighted, self._key(metric.name, names[i] if n > 1 else None,
                                                                   weighted, keys)))
        self._per_output = entries
        self.built = True

    @staticmethod
    def _key(name, output_name, weighted, keys):
        """The metric's name in the logs (Keras's rule: output prefix; a clash gets weighted_ or _1, _2...)."""
        key = f"{output_name}_{name}" if output_name else name
        if key not in keys:
            keys[key] = 1
            return key
        if weighted:
            key = f"{output_name}_weighted_{name}" if output_name else f"weighted_{name}"
            if key not in keys:
                keys[key] = 1
                return key
        index = keys[key]
        keys[key] += 1
        return f"{key}_{index}"

    def update_state(self, y_true, y_pred, sample_weight=None):
        if not self.built:
            self.build(y_true, y_pred)
        flat_pred = tree.flatten(y_pred)
        flat_true = _flatten_targets(y_true, len(flat_pred), self.output_names)
        flat_sw = _flatten_targets(sample_weight, len(flat_pred), self.output_names) \
            if tree.is_nested(sample_weight) else [sample_weight] * len(flat_pred)
        with clnet.no_grad():
            for i, metric, weighted, _ in self._per_output:
                if flat_true[i] is None:
                    continue
                pred = flat_pred[i].detach() if isinstance(flat_pred[i], clnet.Tensor) else flat_pred[i]
                metric.update_state(flat_true[i], pred, sample_weight=flat_sw[i] if weighted else None)

    def result(self):
        return {key: m.result() for _, m, _, key in self._per_output}

    def reset_state(self):
        for _, m, _, _ in self._per_output:
            m.reset_state()

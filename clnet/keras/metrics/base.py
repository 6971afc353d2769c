"""Metric, Mean, Sum and MeanMetricWrapper: the base of keras.metrics, with running totals on the device.

update_state() only enqueues kernels (a sum into a device scalar; the count is known on the host when it
can be), so a training step never waits for the device; result() is a device scalar that is read (one
host synchronisation) only when someone converts it, e.g. the progress bar at a refresh.
"""
from __future__ import annotations

import numpy as np

import clnet
from clnet import dtypes as _dt

from .. import initializers
from .. import losses as _losses
from ..utils import snake_case
from ..variables import Variable


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
    """Weighted mean of every value passed to update_state since the last reset.

    The running total and count are device scalars made on the first update and changed in place
    afterwards (reset zeroes them), so a train step compiled by clnet.compile keeps updating them."""

    def __init__(self, name="mean", dtype=None):
        super().__init__(dtype=dtype, name=name)
        self._total = None
        self._count = None

    def reset_state(self):
        if self._total is not None:
            with clnet.no_grad():
                self._total.zero_()
                self._count.zero_()

    def update_state(self, values, sample_weight=None):
        with clnet.no_grad():
            if not isinstance(values, clnet.Tensor):
                values = _losses.as_tensor(values, dtype=self.dtype)
            values = values.detach()
            if values.dtype != self.dtype:
                values = values.to(dtype=self.dtype)
            if isinstance(sample_weight, (int, float, np.number)):  # one weight for all
                # a scalar (fit's loss tracker, every step) needs no reduction launch: its sum is itself
                part = (values.reshape(()) if values.numel() == 1 else clnet.sum(values)) * float(sample_weight)
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
            if self._total is None:
                self._total = clnet.zeros((), dtype=self.dtype, device=values.device)
                self._count = clnet.zeros((), dtype=self.dtype, device=values.device)
            self._total.add_(part)
            self._count.add_(count)

    def result(self):
        if self._total is None:
            return clnet.tensor(0.0, dtype=self.dtype)
        with clnet.no_grad():  # 0 over nothing (Keras's divide_no_nan), e.g. read right after a reset
            return clnet.where(self._count != 0, self._total / self._count, 0.0)


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
            mask = getattr(y_pred, "_keras_mask", None)
            if isinstance(y_pred, clnet.Tensor):
                y_pred = y_pred.detach()
            else:
                y_pred = _losses.as_tensor(y_pred, dtype=np.float32)
            values = self._fn(y_true, y_pred, **self._fn_kwargs)
            if mask is not None and tuple(mask.shape) == tuple(values.shape):  # masked steps do not count (Keras)
                m = mask.to(dtype=values.dtype)
                sample_weight = m if sample_weight is None else _losses._weights(sample_weight, values) * m
            super().update_state(values, sample_weight)

    def get_config(self):
        return {**super().get_config(), **self._fn_kwargs}



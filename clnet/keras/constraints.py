"""keras.constraints: projections applied to a weight after each optimizer update (as Keras applies them)."""
from __future__ import annotations

import clnet

from .saving.object_registration import register_builtins


class Constraint:
    def __call__(self, w):
        return w

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _norms(w, axis):
    return clnet.sqrt(clnet.sum(clnet.square(w), axis, keepdim=True))


class MaxNorm(Constraint):
    """Rescale incoming weight vectors (along `axis`) whose norm exceeds max_value."""

    def __init__(self, max_value=2, axis=0):
        self.max_value, self.axis = max_value, axis

    def __call__(self, w):
        norms = _norms(w, self.axis)
        desired = clnet.clamp(norms, 0.0, float(self.max_value))
        return w * (desired / (norms + 1e-7))

    def get_config(self):
        return {"max_value": self.max_value, "axis": self.axis}


class NonNeg(Constraint):
    def __call__(self, w):
        return clnet.relu(w)


class UnitNorm(Constraint):
    def __init__(self, axis=0):
        self.axis = axis

    def __call__(self, w):
        return w / (_norms(w, self.axis) + 1e-7)

    def get_config(self):
        return {"axis": self.axis}


class MinMaxNorm(Constraint):
    def __init__(self, min_value=0.0, max_value=1.0, rate=1.0, axis=0):
        self.min_value, self.max_value, self.rate, self.axis = min_value, max_value, rate, axis

    def __call__(self, w):
        norms = _norms(w, self.axis)
        desired = clnet.clamp(norms, float(self.min_value), float(self.max_value)) * self.rate + \
            norms * (1.0 - self.rate)
        return w * (desired / (norms + 1e-7))

    def get_config(self):
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate, "axis": self.axis}


max_norm, non_neg, unit_norm, min_max_norm = MaxNorm, NonNeg, UnitNorm, MinMaxNorm
_NAMES = {"max_norm": MaxNorm, "non_neg": NonNeg, "unit_norm": UnitNorm, "min_max_norm": MinMaxNorm}
register_builtins("constraints", (Constraint, MaxNorm, NonNeg, UnitNorm, MinMaxNorm), _NAMES)


def get(identifier):
    if identifier is None or isinstance(identifier, Constraint) or callable(identifier) and \
            not isinstance(identifier, (str, dict)):
        return identifier
    if isinstance(identifier, str):
        cls = _NAMES.get(identifier) or {c.__name__: c for c in _NAMES.values()}.get(identifier)
        if cls is None:
            raise ValueError(f"Could not interpret constraint identifier: {identifier}")
        return cls()
    if isinstance(identifier, dict):
        classes = {c.__name__: c for c in _NAMES.values()}
        cls = classes.get(identifier.get("class_name"))
        if cls is None:
            raise ValueError(f"Could not interpret constraint identifier: {identifier}")
        return cls.from_config(identifier.get("config") or {})
    raise ValueError(f"Could not interpret constraint identifier: {identifier}")


def serialize(constraint):
    if constraint is None:
        return None
    return {"module": "keras.constraints", "class_name": type(constraint).__name__,
            "config": constraint.get_config(), "registered_name": None}

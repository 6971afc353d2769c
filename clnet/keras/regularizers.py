"""keras.regularizers: weight penalties added to the training loss (L1, L2, L1L2), as clnet ops."""
from __future__ import annotations

import clnet


class Regularizer:
    def __call__(self, x):
        raise NotImplementedError

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class L1L2(Regularizer):
    """l1 * sum(|w|) + l2 * sum(w^2)."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1, self.l2 = float(l1), float(l2)

    def __call__(self, x):
        total = None
        if self.l1:
            total = clnet.sum(clnet.abs(x)) * self.l1
        if self.l2:
            term = clnet.sum(x * x) * self.l2
            total = term if total is None else total + term
        return total if total is not None else clnet.sum(x) * 0.0

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(L1L2):
    def __init__(self, l1=0.01):
        super().__init__(l1=l1)

    def get_config(self):
        return {"l1": self.l1}


class L2(L1L2):
    def __init__(self, l2=0.01):
        super().__init__(l2=l2)

    def get_config(self):
        return {"l2": self.l2}


l1, l2, l1_l2 = L1, L2, L1L2
_CLASSES = {"L1": L1, "L2": L2, "L1L2": L1L2}
_NAMES = {"l1": L1, "l2": L2, "l1_l2": L1L2, "l1l2": L1L2}


def get(identifier):
    if identifier is None:
        return None
    if isinstance(identifier, str):
        cls = _NAMES.get(identifier.lower())
        if cls is None:
            raise ValueError(f"Unknown regularizer {identifier!r}. Valid names: {', '.join(sorted(_NAMES))}")
        return cls()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if callable(identifier):
        return identifier
    raise TypeError(f"regularizer must be a name, a Regularizer or a callable, got {identifier!r}")


def serialize(reg):
    if reg is None:
        return None
    if type(reg).__name__ not in _CLASSES:
        raise ValueError(f"regularizer {reg!r} is a custom callable and cannot be saved; use L1, L2 or L1L2")
    return {"class_name": type(reg).__name__, "config": reg.get_config()}


def deserialize(config):
    if config is None:
        return None
    if not isinstance(config, dict) or config.get("class_name") not in _CLASSES:
        raise ValueError(f"unknown regularizer in the saved config: {config!r}; valid: {', '.join(_CLASSES)}")
    return _CLASSES[config["class_name"]].from_config(dict(config.get("config") or {}))

"""Adagrad with learning-rate decay, weight decay and maximize (torch.optim.Adagrad's algebra)."""
from __future__ import annotations

from .optimizer import Optimizer, _check_range


class Adagrad(Optimizer):
    """sum += g^2; p -= lr / (1 + (t - 1) lr_decay) * g / (sqrt(sum) + eps)."""

    _rule = "adagrad"

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
                 eps=1e-10, *, maximize=False):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps,
                                      maximize=maximize))

    def _validate(self, group):
        _check_range("learning rate", group["lr"], hi=None)
        _check_range("lr_decay", group["lr_decay"], hi=None)
        _check_range("weight_decay", group["weight_decay"], hi=None)
        _check_range("initial_accumulator_value", group["initial_accumulator_value"], hi=None)
        _check_range("epsilon", group["eps"], hi=None)

    def _state_names(self, group):
        return ("sum",)

    def _prepare(self, p, group, state):
        if state.get("sum") is None:
            from ..ops.creation import full
            state["sum"] = full(p.shape, float(group["initial_accumulator_value"]), dtype=p.dtype,
                                device=p.device)
        return False

    def _flags(self, group):
        return dict(maximize=bool(group["maximize"]), weight_decay=group["weight_decay"] != 0)

    def _scalars(self, group, step, first, state=None):
        clr = group["lr"] / (1 + (step - 1) * group["lr_decay"])
        return [float(clr), float(group["eps"]), float(group["weight_decay"])]

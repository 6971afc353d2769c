"""Adadelta (Zeiler, 2012) with weight decay and maximize (torch.optim.Adadelta's algebra)."""
from __future__ import annotations

from .optimizer import Optimizer, _check_range


class Adadelta(Optimizer):
    """s = rho s + (1 - rho) g^2; d = sqrt(a + eps) / sqrt(s + eps) * g; a = rho a + (1 - rho) d^2;
    p -= lr * d."""

    _rule = "adadelta"

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, foreach=None, *, capturable=False,
                 maximize=False, differentiable=False):
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize,
                                      foreach=foreach, capturable=capturable, differentiable=differentiable))

    def _validate(self, group):
        _check_range("learning rate", group["lr"], hi=None)
        _check_range("rho value", group["rho"], hi=1.0, hi_open=False)
        _check_range("epsilon value", group["eps"], hi=None)
        _check_range("weight_decay value", group["weight_decay"], hi=None)

    def _state_names(self, group):
        return ("square_avg", "acc_delta")

    def _flags(self, group):
        return dict(maximize=bool(group["maximize"]), weight_decay=group["weight_decay"] != 0)

    def _scalars(self, group, step, first, state=None):
        rho = group["rho"]
        return [float(group["lr"]), float(rho), 1.0 - rho, float(group["eps"]), float(group["weight_decay"])]

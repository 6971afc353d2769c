"""Adamax: Adam with the infinity norm (Kingma & Ba, 2014) (torch.optim.Adamax's algebra)."""
from __future__ import annotations

from .optimizer import Optimizer, _check_range


class Adamax(Optimizer):
    """m = lerp(m, g, 1 - beta1); u = max(beta2 u, |g| + eps); p -= lr / (1 - beta1^t) * m / u."""

    _rule = "adamax"

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, foreach=None, *,
                 maximize=False, differentiable=False, capturable=False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      maximize=maximize, foreach=foreach, differentiable=differentiable,
                                      capturable=capturable))

    def _validate(self, group):
        _check_range("learning rate", group["lr"], hi=None)
        _check_range("epsilon value", group["eps"], hi=None)
        b1, b2 = group["betas"]
        _check_range("beta parameter at index 0", b1, hi=1.0)
        _check_range("beta parameter at index 1", b2, hi=1.0)
        _check_range("weight_decay value", group["weight_decay"], hi=None)

    def _state_names(self, group):
        return ("exp_avg", "exp_inf")

    def _flags(self, group):
        return dict(maximize=bool(group["maximize"]), weight_decay=group["weight_decay"] != 0)

    def _scalars(self, group, step, first, state=None):
        b1, b2 = group["betas"]
        return [1.0 - b1, float(b2), float(group["eps"]), float(group["weight_decay"]),
                group["lr"] / (1 - b1 ** step)]

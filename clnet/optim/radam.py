"""RAdam: Adam with the variance of the adaptive rate rectified (Liu et al., 2019) (torch.optim.RAdam)."""
from __future__ import annotations

import math

from .optimizer import Optimizer, _check_range


class RAdam(Optimizer):
    """m, v as Adam; rho_inf = 2 / (1 - beta2) - 1, rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t).
    While rho_t <= 5: p -= lr m / (1 - beta1^t) (momentum SGD); after: the Adam step times
    r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))."""

    _rule = "radam"

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 decoupled_weight_decay=False, *, foreach=None, maximize=False, capturable=False,
                 differentiable=False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      decoupled_weight_decay=decoupled_weight_decay, maximize=maximize,
                                      foreach=foreach, capturable=capturable, differentiable=differentiable))

    def _validate(self, group):
        _check_range("learning rate", group["lr"], hi=None)
        _check_range("epsilon value", group["eps"], hi=None)
        b1, b2 = group["betas"]
        _check_range("beta parameter at index 0", b1, hi=1.0)
        _check_range("beta parameter at index 1", b2, hi=1.0)
        _check_range("weight_decay value", group["weight_decay"], hi=None)

    def _state_names(self, group):
        return ("exp_avg", "exp_avg_sq")

    def _flags(self, group):
        return dict(maximize=bool(group["maximize"]), weight_decay=group["weight_decay"] != 0,
                    decoupled=bool(group["decoupled_weight_decay"]))

    def _scalars(self, group, step, first, state=None):
        lr, (b1, b2), wd = group["lr"], group["betas"], group["weight_decay"]
        bc1, bc2 = 1 - b1 ** step, 1 - b2 ** step
        rho_inf = 2 / (1 - b2) - 1
        rho_t = rho_inf - 2 * step * (b2 ** step) / bc2
        rectify = rho_t > 5.0
        rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) \
            if rectify else 1.0
        return [1.0 - b1, float(b2), 1.0 - b2, float(group["eps"]), float(wd), 1.0 - lr * wd, float(lr), bc1,
                math.sqrt(bc2), rect, bool(rectify)]

"""RMSprop with momentum, centering, weight decay and maximize (torch.optim.RMSprop's algebra)."""
from __future__ import annotations

from .optimizer import Optimizer, _check_range


class RMSprop(Optimizer):
    """s = alpha s + (1 - alpha) g^2; avg = sqrt(s - ga^2 if centered else s) + eps;
    p -= lr * g / avg, or through a momentum buffer b = momentum b + g / avg.
    """

    _rule = "rmsprop"

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                 *, maximize=False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                      centered=centered, maximize=maximize))

    def _validate(self, group):
        _check_range("learning rate", group["lr"], hi=None)
        _check_range("epsilon", group["eps"], hi=None)
        _check_range("momentum", group["momentum"], hi=None)
        _check_range("weight_decay", group["weight_decay"], hi=None)
        _check_range("alpha", group["alpha"], hi=None)

    def _state_names(self, group):
        return (("square_avg",) + (("momentum_buffer",) if group["momentum"] > 0 else ())
                + (("grad_avg",) if group["centered"] else ()))

    def _flags(self, group):
        return dict(maximize=bool(group["maximize"]), weight_decay=group["weight_decay"] != 0,
                    momentum=group["momentum"] > 0, centered=bool(group["centered"]))

    def _scalars(self, group, step, first, state=None):
        a = group["alpha"]
        return [float(group["lr"]), float(a), 1.0 - a, float(group["eps"]), float(group["weight_decay"]),
                float(group["momentum"])]

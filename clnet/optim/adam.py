"""Adam and AdamW (decoupled weight decay), with amsgrad and maximize (torch.optim.Adam's algebra)."""
from __future__ import annotations

from .optimizer import Optimizer, _check_range


class Adam(Optimizer):
    """m = lerp(m, g, 1 - beta1); v = beta2 v + (1 - beta2) g^2;
    p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps).

    weight_decay adds weight_decay * p to the gradient (L2), or with decoupled_weight_decay=True (AdamW)
    multiplies p by 1 - lr * weight_decay first. amsgrad uses the running maximum of v.
    """

    _rule = "adam"

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, *,
                 maximize=False, decoupled_weight_decay=False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize,
                                      decoupled_weight_decay=decoupled_weight_decay))

    def _validate(self, group):
        _check_range("learning rate", group["lr"], hi=None)
        _check_range("epsilon", group["eps"], hi=None)
        b1, b2 = group["betas"]
        _check_range("beta parameter at index 0", b1, hi=1.0)
        _check_range("beta parameter at index 1", b2, hi=1.0)
        _check_range("weight_decay", group["weight_decay"], hi=None)

    def _state_names(self, group):
        return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if group["amsgrad"] else ())

    def _flags(self, group):
        return dict(maximize=bool(group["maximize"]), weight_decay=group["weight_decay"] != 0,
                    decoupled=bool(group["decoupled_weight_decay"]), amsgrad=bool(group["amsgrad"]))

    def _scalars(self, group, step, first, state=None):
        lr, (b1, b2), wd = group["lr"], group["betas"], group["weight_decay"]
        bc1, bc2 = 1 - b1 ** step, 1 - b2 ** step
        return [1.0 - b1, float(b2), 1.0 - b2, float(group["eps"]), float(wd), 1.0 - lr * wd,
                lr / bc1, bc2 ** 0.5]


class AdamW(Adam):
    """Adam with decoupled weight decay (default 1e-2): p *= 1 - lr * weight_decay before the Adam step."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)

"""NAdam: Adam with Nesterov momentum and momentum decay (Dozat, 2016) (torch.optim.NAdam's algebra)."""
from __future__ import annotations

from .optimizer import Optimizer, _check_range


class NAdam(Optimizer):
    """mu_t = beta1 (1 - 0.96^(t psi) / 2) (psi = momentum_decay), mu_product = prod of mu_1..mu_t;
    m, v as Adam; p -= lr (1 - mu_t) / (1 - mu_product) g / d + lr mu_{t+1} / (1 - mu_product mu_{t+1}) m / d
    with d = sqrt(v / (1 - beta2^t)) + eps. decoupled_weight_decay=True decays p as AdamW does."""

    _rule = "nadam"
    _host_state = ("step", "mu_product")

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=4e-3,
                 decoupled_weight_decay=False, *, foreach=None, maximize=False, capturable=False,
                 differentiable=False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      momentum_decay=momentum_decay, decoupled_weight_decay=decoupled_weight_decay,
                                      maximize=maximize, foreach=foreach, capturable=capturable,
                                      differentiable=differentiable))

    def _validate(self, group):
        _check_range("learning rate", group["lr"], hi=None)
        _check_range("epsilon value", group["eps"], hi=None)
        b1, b2 = group["betas"]
        _check_range("beta parameter at index 0", b1, hi=1.0)
        _check_range("beta parameter at index 1", b2, hi=1.0)
        _check_range("weight_decay value", group["weight_decay"], hi=None)
        _check_range("momentum_decay value", group["momentum_decay"], hi=None)

    def _state_names(self, group):
        return ("exp_avg", "exp_avg_sq")

    def _mu(self, group, step):
        return group["betas"][0] * (1.0 - 0.5 * 0.96 ** (step * group["momentum_decay"]))

    def _advance(self, group, state):
        state["mu_product"] = state.get("mu_product", 1.0) * self._mu(group, state["step"])

    def _batch_key(self, state):
        return (state["mu_product"],)

    def _flags(self, group):
        return dict(maximize=bool(group["maximize"]), weight_decay=group["weight_decay"] != 0,
                    decoupled=bool(group["decoupled_weight_decay"]))

    def _scalars(self, group, step, first, state=None):
        lr, (b1, b2), wd = group["lr"], group["betas"], group["weight_decay"]
        mu, mu_next = self._mu(group, step), self._mu(group, step + 1)
        mu_product = state["mu_product"]
        return [1.0 - b1, float(b2), 1.0 - b2, float(group["eps"]), float(wd), 1.0 - lr * wd, 1.0 - b2 ** step,
                -lr * (1.0 - mu) / (1.0 - mu_product), -lr * mu_next / (1.0 - mu_product * mu_next)]

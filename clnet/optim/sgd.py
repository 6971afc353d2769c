"""SGD with momentum, dampening, Nesterov momentum, weight decay and maximize (torch.optim.SGD's algebra)."""
from __future__ import annotations

from .optimizer import Optimizer, _check_range


class SGD(Optimizer):
    """p -= lr * d, where d is the gradient (+ weight_decay * p), optionally through a momentum buffer.

    First step with momentum: buf = d; later: buf = momentum * buf + (1 - dampening) * d;
    d = d + momentum * buf (nesterov) or buf.
    """

    _rule = "sgd"
    _count_steps = False

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, *,
                 maximize=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov, maximize=maximize))

    def _validate(self, group):
        _check_range("learning rate", group["lr"], hi=None)
        _check_range("momentum", group["momentum"], hi=None)
        _check_range("weight_decay", group["weight_decay"], hi=None)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def _state_names(self, group):
        return ("momentum_buffer",) if group["momentum"] != 0 else ()

    def _prepare(self, p, group, state):
        if group["momentum"] != 0 and state.get("momentum_buffer") is None:
            from ..tensor import Tensor
            state["momentum_buffer"] = Tensor._empty(p.shape, p.dtype, p.device)
            return True  # the kernel sets buf = d instead of reading it
        return False

    def _flags(self, group):
        return dict(maximize=bool(group["maximize"]), weight_decay=group["weight_decay"] != 0,
                    momentum=group["momentum"] != 0, nesterov=bool(group["nesterov"]))

    def _scalars(self, group, step, first, state=None):
        return [float(group["lr"]), float(group["momentum"]), 1.0 - group["dampening"],
                float(group["weight_decay"]), bool(first)]

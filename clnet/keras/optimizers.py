"""keras.optimizers: SGD, Adam, AdamW, RMSprop, Adagrad with Keras's arguments, over clnet.optim's fused kernels.

`SGD(1e-1)` takes the learning rate first, as `tf.optimizers.SGD(1e-6)`. The wrapped clnet.optim optimizer
is made on the first `apply_gradients(zip(grads, variables))` (Keras's build) and updates every variable
in one fused kernel launch per group of parameters, with no host synchronisation.

Formulas: SGD (momentum, nesterov) and Adam match Keras exactly (Adam's epsilon is rescaled each step to
Keras's placement, outside the bias correction). RMSprop divides by sqrt(v) + epsilon (PyTorch) where
Keras 3 uses sqrt(v + epsilon); the two differ only where v is near epsilon. Keras's `weight_decay` is
decoupled (w -= lr * weight_decay * w before the update) for every optimizer, as in Keras.
"""
from __future__ import annotations

import math

import numpy as np

import clnet
from clnet.core import dispatch
from clnet import optim as _optim

from .utils import snake_case


class LearningRateSchedule:
    """Base of learning-rate schedules: called with the step number, returns the rate."""

    def __call__(self, step):
        raise NotImplementedError

    def get_config(self):
        return {}


class ExponentialDecay(LearningRateSchedule):
    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False):
        self.initial_learning_rate, self.decay_steps = float(initial_learning_rate), int(decay_steps)
        self.decay_rate, self.staircase = float(decay_rate), bool(staircase)

    def __call__(self, step):
        p = step / self.decay_steps
        return self.initial_learning_rate * self.decay_rate ** (math.floor(p) if self.staircase else p)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase}


class CosineDecay(LearningRateSchedule):
    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0):
        self.initial_learning_rate, self.decay_steps, self.alpha = float(initial_learning_rate), int(decay_steps), \
            float(alpha)

    def __call__(self, step):
        p = min(step, self.decay_steps) / self.decay_steps
        return self.initial_learning_rate * ((1 - self.alpha) * 0.5 * (1 + math.cos(math.pi * p)) + self.alpha)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "alpha": self.alpha}


class schedules:  # noqa: N801  (keras.optimizers.schedules.ExponentialDecay)
    LearningRateSchedule = LearningRateSchedule
    ExponentialDecay = ExponentialDecay
    CosineDecay = CosineDecay


_SCHEDULES = {"ExponentialDecay": ExponentialDecay, "CosineDecay": CosineDecay}


class _Rate(float):
    """The learning rate as a float with the Variable methods Keras 3 code calls on it."""

    def __new__(cls, value, optimizer):
        rate = super().__new__(cls, value)
        rate._optimizer = optimizer
        return rate

    def assign(self, value):
        self._optimizer.learning_rate = value

    def numpy(self):
        return np.float32(self)


class Optimizer:
    """Keras optimizer surface: learning_rate, iterations, apply_gradients/apply, get_config."""

    _inner_cls = None

    def __init__(self, learning_rate=0.001, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, name=None, **kwargs):
        unknown = [k for k in kwargs if k not in ("use_ema", "ema_momentum", "ema_overwrite_frequency",
                                                  "loss_scale_factor", "gradient_accumulation_steps")]
        if unknown:
            raise TypeError(f"{type(self).__name__}: unexpected keyword argument(s) {', '.join(map(repr, unknown))}")
        if kwargs.get("use_ema") or kwargs.get("gradient_accumulation_steps"):
            raise NotImplementedError("use_ema and gradient_accumulation_steps are not supported yet")
        if sum(v is not None for v in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError("only one of clipnorm, clipvalue and global_clipnorm can be set")
        if not isinstance(learning_rate, LearningRateSchedule) and not callable(learning_rate):
            learning_rate = float(learning_rate)
            if learning_rate < 0:
                raise ValueError(f"learning_rate must be >= 0, got {learning_rate}")
        self._learning_rate = learning_rate
        self.weight_decay = None if weight_decay is None else float(weight_decay)
        self.clipnorm, self.clipvalue, self.global_clipnorm = clipnorm, clipvalue, global_clipnorm
        self.name = name or snake_case(type(self).__name__)
        self.iterations = 0
        self._inner = None
        self._known = {}

    # --- hyper-parameters ---------------------------------------------------------------------------
    @property
    def learning_rate(self):
        """The current rate: a float (a schedule is evaluated at the current iteration, a callable called)
        that also has Keras 3's `.assign(value)` and `.numpy()`."""
        lr = self._learning_rate
        if isinstance(lr, LearningRateSchedule):
            value = lr(self.iterations)
        elif callable(lr):
            value = lr()
        else:
            value = lr
        return _Rate(float(value), self)

    @learning_rate.setter
    def learning_rate(self, value):
        if isinstance(value, clnet.Tensor):
            value = value.item()
        if not isinstance(value, LearningRateSchedule) and not callable(value):
            value = float(value)
            if value < 0:
                raise ValueError(f"learning_rate must be >= 0, got {value}")
        self._learning_rate = value

    lr = learning_rate

    def _hyper(self) -> dict:
        """Keyword arguments of the wrapped clnet.optim optimizer."""
        raise NotImplementedError

    def _per_step(self, group):
        """Hyper-parameters that change per step (the rate; Adam's rescaled epsilon)."""
        group["lr"] = float(self.learning_rate)

    # --- building ----------------------------------------------------------------------------------
    def build(self, variables):
        """Create the update state for `variables` (called by the first apply_gradients)."""
        new = [v for v in variables if id(v) not in self._known]
        if not new:
            return
        for v in new:
            if not isinstance(v, clnet.Tensor):
                raise TypeError(f"optimizers update clnet Variables, got {type(v).__name__}")
            self._known[id(v)] = v
        if self._inner is None:
            self._inner = self._inner_cls(new, **self._hyper())
        else:
            self._inner.add_param_group({"params": new, **self._hyper()})

    @property
    def built(self):
        return self._inner is not None

    @property
    def variables(self):
        """The optimizer's state tensors (momenta, moments) of every variable it has updated."""
        if self._inner is None:
            return []
        out = []
        for group in self._inner.param_groups:
            for p in group["params"]:
                out += [t for t in self._inner.state.get(p, {}).values() if isinstance(t, clnet.Tensor)]
        return out

    # --- updating ----------------------------------------------------------------------------------
    def apply_gradients(self, grads_and_vars):
        """Apply one update from (gradient, variable) pairs, as tf.keras; pairs with a None gradient are skipped."""
        pairs = [(g, v) for g, v in grads_and_vars if g is not None]
        variables = [v for _, v in pairs]
        for g, v in pairs:
            if not isinstance(g, clnet.Tensor):
                g = clnet.tensor(np.asarray(g, dtype=v.dtype), device=v.device)
            if tuple(g.shape) != tuple(v.shape):
                raise ValueError(f"gradient of shape {tuple(g.shape)} does not match its variable "
                                 f"{getattr(v, 'path', getattr(v, 'name', ''))!r} of shape {tuple(v.shape)}")
            v.grad = g
        try:
            self.step_variables(variables)
        finally:
            for v in variables:
                v.grad = None
        return self.iterations

    def apply(self, grads, trainable_variables=None):
        """Keras 3's apply(grads, trainable_variables)."""
        if trainable_variables is None:
            raise ValueError("apply() needs trainable_variables (the optimizer was not built with any)")
        return self.apply_gradients(zip(grads, trainable_variables))

    def step_variables(self, variables):
        """Update `variables` from their `.grad` (what fit's train step calls after backward())."""
        variables = [v for v in variables if v.grad is not None]
        if not variables:
            return
        self.build(variables)
        with clnet.no_grad():
            self._clip(variables)
            lr = self.learning_rate
            if self.weight_decay and not self._decay_in_kernel():
                for v in variables:
                    v.mul_(1.0 - lr * self.weight_decay)
            # host bookkeeping that a step compiled by clnet.compile replays too (core.dispatch.host_step)
            dispatch.host_step(self._set_step_hyper, manages=(self, *self._inner.param_groups))
        self._inner.step()
        dispatch.host_step(self._count_iteration, manages=(self,))

    def _set_step_hyper(self):
        for group in self._inner.param_groups:
            self._per_step(group)

    def _count_iteration(self):
        self.iterations += 1

    def _decay_in_kernel(self):
        return False

    def _clip(self, variables):
        if self.clipvalue is not None:
            for v in variables:
                v.grad = clnet.clamp(v.grad, -float(self.clipvalue), float(self.clipvalue))
        elif self.clipnorm is not None:
            for v in variables:
                norm = clnet.sqrt(clnet.sum(v.grad * v.grad))
                v.grad = v.grad * clnet.minimum(float(self.clipnorm) / clnet.maximum(norm, 1e-12), 1.0)
        elif self.global_clipnorm is not None:
            total = None
            for v in variables:
                s = clnet.sum(v.grad * v.grad)
                total = s if total is None else total + s
            scale = clnet.minimum(float(self.global_clipnorm) / clnet.maximum(clnet.sqrt(total), 1e-12), 1.0)
            for v in variables:
                v.grad = v.grad * scale

    # --- state (for BackupAndRestore and model.save) -----------------------------------------------
    def state_arrays(self, variables):
        """({"iterations": n, "slots": {i: {name: step}}}, {"i/name": ndarray}) for `variables` by position."""
        meta = {"iterations": int(self.iterations), "steps": {}}
        arrays = {}
        if self._inner is None:
            return meta, arrays
        for i, v in enumerate(variables):
            state = self._inner.state.get(v) if id(v) in self._known else None
            for name, value in (state or {}).items():
                if isinstance(value, clnet.Tensor):
                    arrays[f"{i}/{name}"] = value.numpy()
                else:
                    meta["steps"][f"{i}/{name}"] = value
        return meta, arrays

    def load_state_arrays(self, variables, meta, arrays):
        """Restore what state_arrays gave, for the same variables in the same order."""
        self.iterations = int(meta.get("iterations", 0))
        if not arrays and not meta.get("steps"):
            return
        self._inner, self._known = None, {}
        self.build(list(variables))
        state = {}
        for key, value in list(arrays.items()) + list(meta.get("steps", {}).items()):
            index, _, name = key.partition("/")
            index = int(index)
            if not 0 <= index < len(variables):
                raise ValueError(f"optimizer state names variable {index}, but the model has {len(variables)}")
            state.setdefault(index, {})[name] = value
        saved = self._inner.state_dict()
        saved["state"] = state
        self._inner.load_state_dict(saved)

    # --- config -------------------------------------------------------------------------------------
    def get_config(self):
        lr = self._learning_rate
        if isinstance(lr, LearningRateSchedule):
            if type(lr).__name__ not in _SCHEDULES:
                raise ValueError("a custom learning-rate schedule cannot be saved")
            lr = {"class_name": type(lr).__name__, "config": lr.get_config()}
        elif not isinstance(lr, float):
            raise ValueError("a callable learning rate cannot be saved; use a LearningRateSchedule")
        return {"name": self.name, "learning_rate": lr, "weight_decay": self.weight_decay,
                "clipnorm": self.clipnorm, "clipvalue": self.clipvalue, "global_clipnorm": self.global_clipnorm}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        lr = config.get("learning_rate")
        if isinstance(lr, dict):
            if lr.get("class_name") not in _SCHEDULES:
                raise ValueError(f"unknown learning-rate schedule in the saved config: {lr!r}")
            config["learning_rate"] = _SCHEDULES[lr["class_name"]](**lr.get("config", {}))
        return cls(**config)

    def __repr__(self):
        return f"<keras.optimizers.{type(self).__name__} learning_rate={self.learning_rate}>"


class SGD(Optimizer):
    """velocity = momentum * velocity - lr * g; w += velocity (or the Nesterov form), as Keras."""

    _inner_cls = _optim.SGD

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None, clipnorm=None,
                 clipvalue=None, global_clipnorm=None, name="SGD", **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name, **kwargs)
        if not 0.0 <= float(momentum) <= 1.0:
            raise ValueError(f"SGD: momentum must be in [0, 1], got {momentum}")
        if nesterov and not momentum:
            raise ValueError("SGD: nesterov=True needs a momentum > 0")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)

    def _hyper(self):
        return dict(lr=float(self.learning_rate), momentum=self.momentum, nesterov=self.nesterov)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    _inner_cls = _optim.Adam

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None, name="adam", **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name, **kwargs)
        self.beta_1, self.beta_2, self.epsilon, self.amsgrad = float(beta_1), float(beta_2), float(epsilon), \
            bool(amsgrad)

    def _hyper(self):
        return dict(lr=float(self.learning_rate), betas=(self.beta_1, self.beta_2), eps=self.epsilon,
                    amsgrad=self.amsgrad, weight_decay=self.weight_decay or 0.0, decoupled_weight_decay=True)

    def _decay_in_kernel(self):
        return True

    def _per_step(self, group):
        # Keras: lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps); clnet.optim (PyTorch) puts eps
        # after dividing sqrt(v) by sqrt(1 - b2^t), so eps / sqrt(1 - b2^t) there is Keras's eps.
        group["lr"] = float(self.learning_rate)
        t = self.iterations + 1
        group["eps"] = self.epsilon / math.sqrt(1.0 - self.beta_2 ** t)
        group["weight_decay"] = self.weight_decay or 0.0

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon,
                "amsgrad": self.amsgrad}


class AdamW(Adam):
    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, clipnorm=None, clipvalue=None, global_clipnorm=None, name="adamw", **kwargs):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay, clipnorm, clipvalue,
                         global_clipnorm, name, **kwargs)


class RMSprop(Optimizer):
    _inner_cls = _optim.RMSprop

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None, name="rmsprop", **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name, **kwargs)
        self.rho, self.momentum, self.epsilon, self.centered = float(rho), float(momentum), float(epsilon), \
            bool(centered)

    def _hyper(self):
        return dict(lr=float(self.learning_rate), alpha=self.rho, eps=self.epsilon, momentum=self.momentum,
                    centered=self.centered)

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon,
                "centered": self.centered}


class Adagrad(Optimizer):
    _inner_cls = _optim.Adagrad

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, name="adagrad", **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name, **kwargs)
        self.initial_accumulator_value, self.epsilon = float(initial_accumulator_value), float(epsilon)

    def _hyper(self):
        return dict(lr=float(self.learning_rate), initial_accumulator_value=self.initial_accumulator_value,
                    eps=self.epsilon)

    def get_config(self):
        return {**super().get_config(), "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}


OPTIMIZER_CLASSES = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW, "RMSprop": RMSprop, "Adagrad": Adagrad}
_NAMES = {k.lower(): v for k, v in OPTIMIZER_CLASSES.items()}


def get(identifier):
    """An Optimizer from a name ("sgd", "adam", "rmsprop", ...), a config dict or an Optimizer."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        cls = _NAMES.get(identifier.lower())
        if cls is None:
            raise ValueError(f"Could not interpret optimizer identifier: {identifier!r}. Valid names: "
                             f"{', '.join(sorted(_NAMES))}")
        return cls()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, type) and issubclass(identifier, Optimizer):
        return identifier()
    raise TypeError(f"optimizer must be a name or a keras optimizer, got {identifier!r}"
                    + (" (a clnet.optim optimizer belongs to clnet.nn models; use keras.optimizers here)"
                       if isinstance(identifier, _optim.Optimizer) else ""))


def serialize(opt):
    if type(opt).__name__ not in OPTIMIZER_CLASSES:
        raise ValueError(f"optimizer {opt!r} is custom and cannot be saved by name")
    return {"class_name": type(opt).__name__, "config": opt.get_config()}


def deserialize(config):
    if not isinstance(config, dict) or config.get("class_name") not in OPTIMIZER_CLASSES:
        raise ValueError(f"unknown optimizer in the saved config: {config!r}; valid: {', '.join(OPTIMIZER_CLASSES)}")
    return OPTIMIZER_CLASSES[config["class_name"]].from_config(dict(config.get("config") or {}))

"""An optimizer's state as Keras 3 lists it (`optimizer.variables`, what its weights-file group holds).

Keras: [iterations, learning_rate (absent for a schedule), then the slots of every trainable variable],
slots interleaved per variable (Adam: momentum, velocity of variable 0, then of variable 1...), with
Adam's amsgrad `velocity_hat`s and RMSprop's momentums / average gradients as later runs of their own.
clnet keeps the same numbers in clnet.optim's state (PyTorch's names), with two scalings: SGD's and
RMSprop's momentum buffers hold the update before the learning rate (Keras's after it, and SGD's with
its sign), so those are multiplied by -lr and lr on the way out and divided on the way in.
"""
from __future__ import annotations

import numpy as np

# per optimizer class: runs of (Keras slot, clnet.optim state name, scale), each run over all variables;
# a tuple inside a run interleaves its slots per variable
def _runs(opt):
    name = type(opt).__name__
    if name in ("Adam", "AdamW"):
        runs = [(("momentum", "exp_avg", None), ("velocity", "exp_avg_sq", None))]
        if opt.amsgrad:
            runs.append((("velocity_hat", "max_exp_avg_sq", None),))
        return runs
    if name == "SGD":
        return [(("momentum", "momentum_buffer", "-lr"),)] if opt.momentum else []
    if name == "RMSprop":
        runs = [(("velocity", "square_avg", None),)]
        if opt.momentum > 0:
            runs.append((("momentum", "momentum_buffer", "lr"),))
        if opt.centered:
            runs.append((("average_gradient", "grad_avg", None),))
        return runs
    if name == "Adagrad":
        return [(("accumulator", "sum", None),)]
    return None


def _initial(opt, slot, shape, dtype):
    if slot == "accumulator":
        return np.full(shape, opt.initial_accumulator_value, dtype=dtype)
    return np.zeros(shape, dtype=dtype)


def _scale(opt, how):
    if how is None:
        return 1.0
    lr = float(opt.learning_rate)
    return -lr if how == "-lr" else lr


def supported(opt) -> bool:
    return _runs(opt) is not None


def keras_variables(opt, variables):
    """The list Keras's optimizer.variables would hold for `variables` (the model's trainable ones), from
    clnet's state; variables the optimizer has not updated yet get Keras's initial values."""
    runs = _runs(opt)
    if runs is None:
        raise ValueError(f"the state of optimizer {type(opt).__name__} cannot be written in Keras's layout")
    meta, arrays = opt.state_arrays(variables)
    out = [np.array(int(meta["iterations"]), dtype=np.int64)]
    if not _is_schedule(opt):
        out.append(np.array(float(opt.learning_rate), dtype=np.float32))
    for run in runs:
        for i, v in enumerate(variables):
            for slot, state_name, how in run:
                value = arrays.get(f"{i}/{state_name}")
                if value is None:
                    value = _initial(opt, slot, tuple(v.shape), np.dtype(v.dtype))
                else:
                    value = value * _scale(opt, how) if how is not None else value
                out.append(np.asarray(value, dtype=np.dtype(v.dtype)))
    return out


def _is_schedule(opt):
    lr = getattr(opt, "_learning_rate", None)
    return not isinstance(lr, (int, float))


def expected_count(opt, variables):
    runs = _runs(opt) or []
    return 1 + (0 if _is_schedule(opt) else 1) + sum(len(run) for run in runs) * len(variables)


def load_keras_variables(opt, variables, values):
    """Restore clnet's optimizer state from Keras's list for `variables` (counts and shapes checked first;
    ValueError names what does not fit)."""
    runs = _runs(opt)
    if runs is None:
        raise ValueError(f"optimizer {type(opt).__name__}'s state cannot be read from Keras's layout")
    want = expected_count(opt, variables)
    if len(values) != want:
        raise ValueError(f"the saved optimizer has {len(values)} variables, but {type(opt).__name__} on this model "
                         f"has {want}")
    iterations = int(np.asarray(values[0]).reshape(()))
    pos = 1
    lr = None
    if not _is_schedule(opt):
        lr = float(np.asarray(values[1]).reshape(()))
        pos = 2
    pending = {}
    for run in runs:
        for i, v in enumerate(variables):
            for slot, state_name, how in run:
                value = np.asarray(values[pos])
                pos += 1
                if tuple(value.shape) != tuple(v.shape):
                    raise ValueError(f"the saved optimizer's {slot} for variable {i} has shape {tuple(value.shape)}, "
                                     f"but the variable {getattr(v, 'path', '')} has shape {tuple(v.shape)}")
                pending[f"{i}/{state_name}"] = (value, how)
    if lr is not None and np.float32(lr) != np.float32(float(opt.learning_rate)):
        opt.learning_rate = lr  # changed since compile (a callback): Keras keeps it as a float32 variable
    arrays = {}
    for key, (value, how) in pending.items():
        scale = _scale(opt, how)
        if how is not None and scale == 0.0:
            value = np.zeros_like(value)
        elif how is not None:
            value = value / scale
        arrays[key] = np.array(value, dtype=value.dtype, order="C")
    steps = {}
    if iterations > 0 and type(opt).__name__ != "SGD":
        steps = {f"{i}/step": iterations for i in range(len(variables))}
    if iterations == 0:
        arrays = {}
    opt.load_state_arrays(variables, {"iterations": iterations, "steps": steps}, arrays)

"""Optimizer base: parameter groups, per-parameter state, state_dict, and the fused update launcher.

Subclasses describe their update once (`_rule`, `_state_names`, `_flags`, `_scalars`); the base class
launches kernels/optim.cl.mako so that one kernel call updates up to `SLOTS` parameters of a group
(parameters that share device, dtype and step count). Hyper-parameters travel as kernel arguments, so
changing the learning rate or stepping never rebuilds. State tensors use PyTorch's names, and
`state_dict()` is plain data (tensors and numbers), so PyTorch's own optimizer state loads too.
"""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from .. import dtypes as _dt
from ..autograd import enable_grad, no_grad, zero_grads
from ..backend.programs import ctype, get_kernel
from ..core import dispatch
from ..ops.creation import tensor, zeros
from ..ops.elementwise import copy_into
from ..tensor import Tensor

_INT_MAX = 2**31 - 1


class _Required:
    """Marks a hyper-parameter that has no default (e.g. SGD's lr in old PyTorch)."""

    def __repr__(self):
        return "<required parameter>"


required = _Required()


class UpdateNote:
    """What a one-parameter update launch computes, for graph passes (given only while a trace records):
    kernels/optim.cl.mako's `rule` with `flags` on param, grad and the state tensors (contiguous), its
    scalar arguments (their values at trace time) from argument `first_scalar` on, refreshed per replay.
    clnet.compiler can then run the update in the epilogue of the GEMM that makes the gradient."""

    __slots__ = ("rule", "flags", "param", "grad", "states", "first_scalar", "scalars")

    def __init__(self, rule, flags, param, grad, states, first_scalar, scalars):
        self.rule, self.flags, self.param, self.grad = rule, dict(flags), param, grad
        self.states, self.first_scalar, self.scalars = list(states), first_scalar, list(scalars)


class Optimizer:
    """Base class: holds `param_groups` (dicts of params + options) and `state` (per parameter)."""

    # Small parameters share launches, SLOTS at a time; a parameter of at least LARGE elements gets a
    # launch of its own. On PoCL (2-core AVX-512) 24 parameters of 64 elements stepped in 0.22 ms with
    # 4 per launch vs 0.49 ms one by one, but a 400k-element parameter ran 1.6x slower inside a 4-slot
    # launch than alone, and with 6 or 8 slots LLVM stopped vectorizing the update (9x slower).
    SLOTS = 4
    LARGE = 1 << 15
    _rule = None        # template rule name
    _count_steps = True  # whether state has a "step" entry (SGD's has not, as in PyTorch)

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.state: dict = defaultdict(dict)
        self.param_groups: list = []
        if isinstance(params, Tensor):
            raise TypeError("params must be an iterable of tensors or of dicts, got a single Tensor; "
                            "pass [tensor] or model.parameters()")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(g):
                if k != "params":
                    lines.append(f"    {k}: {g[k]}")
        return "\n".join(lines) + "\n)"

    # --- groups --------------------------------------------------------------------------------
    def add_param_group(self, param_group: dict) -> None:
        """Add a dict with "params" and optional per-group options (defaults fill the rest)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        group = dict(param_group)
        params = group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters must be an ordered collection (a list), not a set")
        params = list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize clnet Tensors, got {type(p).__name__}")
            if not _dt.is_floating(p.dtype):
                raise TypeError(f"optimizer can only optimize floating-point tensors, got {p.dtype.name}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor (one computed from others); "
                                 "use a Parameter or a tensor made with requires_grad=True")
        group["params"] = params
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(f"parameter group didn't specify a value of required optimization "
                                 f"parameter {name}")
            group.setdefault(name, default)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if len({id(p) for p in params}) != len(params):
            raise ValueError("a parameter group contains the same tensor twice")
        if any(id(p) in seen for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        self._validate(group)
        self.param_groups.append(group)

    def _validate(self, group: dict) -> None:
        """Subclasses check their hyper-parameters here (clear ValueErrors)."""
        if group.get("lr", 0) < 0:
            raise ValueError(f"Invalid learning rate: {group['lr']}")

    # --- gradients -----------------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop gradients (set_to_none=True, the default) or zero them in place."""
        zero_grads((p for group in self.param_groups for p in group["params"]), set_to_none)

    # --- stepping ------------------------------------------------------------------------------
    def step(self, closure=None):
        """One update of every parameter that has a gradient; `closure` re-evaluates the loss first."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with no_grad(), dispatch.phase("optimizer"):
            for group in self.param_groups:
                self._step_group(group)
        return loss

    def _step_group(self, group: dict) -> None:
        batches = defaultdict(list)  # (device, dtype, step, first) -> params updated by one launch family
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.shape != p.shape:
                raise RuntimeError(f"gradient of shape {tuple(p.grad.shape)} does not match its parameter's "
                                   f"shape {tuple(p.shape)}")
            state = self.state[p]
            first = self._prepare(p, group, state)
            if self._count_steps:
                state["step"] = state.get("step", 0) + 1
            self._advance(group, state)
            key = (id(p.device), p.dtype, state.get("step", 0), first, self._batch_key(state))
            batches[key].append(p)
        for (_, dtype, step, first, _), params in batches.items():
            small = [p for p in params if p.numel() < self.LARGE]
            for p in params:
                if p.numel() >= self.LARGE:
                    self._launch(group, [p], dtype, step, first, slots=1)
            for i in range(0, len(small), self.SLOTS):
                self._launch(group, small[i:i + self.SLOTS], dtype, step, first, slots=self.SLOTS)

    def _launch(self, group, params, dtype, step, first, slots):
        device = params[0].device
        names = self._state_names(group)
        acc = _dt.float32 if dtype == _dt.float16 else dtype
        work, writeback = [], []
        for p in params:
            target = p
            if not p.is_contiguous():  # rare: a strided parameter is updated through a contiguous copy
                target = p.contiguous()
                writeback.append((p, target))
            g = p.grad if p.grad.is_contiguous() else p.grad.contiguous()
            if g.dtype != dtype:
                g = g.to(dtype=dtype)
            work.append((target, g, [self.state[p][n] for n in names]))
        wg = device.profile.elementwise_wg
        gstarts, groups, total = [], 0, 0
        for target, _, _ in work:
            gstarts.append(groups)
            groups += -(-target.numel() // wg)
            total += target.numel()
        if groups * wg > _INT_MAX:  # too big for one launch's int indices: split
            if len(params) > 1:
                half = len(params) // 2
                self._launch(group, params[:half], dtype, step, first, slots)
                self._launch(group, params[half:], dtype, step, first, slots)
                return
            raise ValueError(f"a parameter with {total} elements is too large for one update launch")
        if total == 0:
            return
        i32 = np.int32
        arg_dtypes, args = [], []
        for k in range(slots):
            used = k < len(work)
            target, g, states = work[k] if used else work[0]
            arg_dtypes += [i32, i32, None, i32, None, i32] + [None] * len(names)
            args += [gstarts[k] if used else groups, target.numel() if used else 0,
                     target._buf, target.offset, g._buf, g.offset]
            args += [s._buf for s in states]
        scalars = self._scalars(group, step, first, self.state[params[0]])
        scalar_dt = np.dtype(acc)
        first_scalar = len(args)
        for v in scalars:
            if isinstance(v, (bool, np.bool_)):  # flags are ints in C; every other scalar is a float
                arg_dtypes.append(i32)
                args.append(int(v))
            else:
                arg_dtypes.append(scalar_dt)
                args.append(float(v))
        flags = self._flags(group)
        kern = get_kernel(device, "optim.cl.mako", f"{self._rule}_step", arg_dtypes=arg_dtypes,
                          rule=self._rule, t=ctype(dtype), acc=ctype(acc), slots=slots,
                          states=list(names), **flags)
        note = None
        if dispatch.recording_active() and len(work) == 1 and not writeback and work[0][1] is params[0].grad:
            note = UpdateNote(self._rule, flags, work[0][0], work[0][1], work[0][2], first_scalar, scalars)
        dispatch.launch(device, kern, (groups * wg,), (wg,), args,
                        refresh=lambda: self._replayed_step(group, params, first_scalar), manages=(self.state,),
                        note=note)
        for p, target in writeback:
            copy_into(p, target)
        for p in params:
            p._bump_version()

    def _replayed_step(self, group, params, first_scalar) -> dict:
        """What a replayed graph (clnet.compile) does instead of this step's Python: count the step for
        `params` and return the launch's scalar arguments for it (learning rate read now, so schedulers
        keep working; bias corrections of the new step)."""
        step = 0
        if self._count_steps:
            for p in params:
                state = self.state[p]
                state["step"] = step = state.get("step", 0) + 1
        values = [int(v) if isinstance(v, (bool, np.bool_)) else float(v)
                  for v in self._scalars(group, step, False)]
        return dict(enumerate(values, first_scalar))

    # --- subclass hooks ------------------------------------------------------------------------
    def _state_names(self, group) -> tuple:
        raise NotImplementedError

    def _flags(self, group) -> dict:
        raise NotImplementedError

    def _scalars(self, group, step, first, state) -> list:
        """The kernel's scalar arguments for parameters at `step` (`state`: one of theirs, for per-parameter
        host values such as NAdam's mu_product, which _batch_key keeps equal within a launch)."""
        raise NotImplementedError

    def _advance(self, group, state) -> None:
        """Update host-side state after the step count grew (e.g. NAdam's running momentum product)."""

    def _batch_key(self, state) -> tuple:
        """Host-side state values that parameters sharing one launch must have in common."""
        return ()

    _host_state = ("step",)  # state entries that are numbers on the host (PyTorch keeps them as 0-d tensors)

    def _prepare(self, p, group, state) -> bool:
        """Make sure p's state buffers exist (zeros by default); True if the kernel must treat them as unset."""
        for n in self._state_names(group):
            if state.get(n) is None:
                state[n] = zeros(p.shape, dtype=p.dtype, device=p.device)
        return False

    # --- saving --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """{"state": {index: {name: tensor or number}}, "param_groups": [{options..., "params": [index]}]}.

        Parameters are named by their position across groups, as in PyTorch; values are the live state
        tensors (copy them, e.g. with .numpy(), to keep a snapshot).
        """
        index, groups = {}, []
        for g in self.param_groups:
            ids = []
            for p in g["params"]:
                index.setdefault(id(p), len(index))
                ids.append(index[id(p)])
            groups.append({**{k: v for k, v in g.items() if k != "params"}, "params": ids})
        state = {index[id(p)]: dict(s) for p, s in self.state.items() if id(p) in index and s}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore options and state from `state_dict()` output (tensors, numpy arrays or PyTorch's)."""
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(groups)} parameter groups, this optimizer has "
                             f"{len(self.param_groups)}")
        for i, (mine, saved) in enumerate(zip(self.param_groups, groups)):
            if len(mine["params"]) != len(saved["params"]):
                raise ValueError(f"parameter group {i} has {len(mine['params'])} parameters, but the loaded "
                                 f"state dict's has {len(saved['params'])}")
        new_state = defaultdict(dict)
        saved_state = state_dict["state"]
        for mine, saved in zip(self.param_groups, groups):
            for p, key in zip(mine["params"], saved["params"]):
                entry = saved_state.get(key, saved_state.get(str(key)))
                if entry is None:
                    continue
                st = {}
                for name, value in entry.items():
                    if name in self._host_state:
                        number = float(np.asarray(_host(value)).reshape(()))
                        st[name] = int(round(number)) if name == "step" else number
                    elif _is_array(value):
                        arr = np.asarray(_host(value))
                        if arr.shape != tuple(p.shape):
                            raise ValueError(f"state '{name}' of parameter {key} has shape {arr.shape}, but "
                                             f"the parameter has shape {tuple(p.shape)}")
                        st[name] = tensor(np.ascontiguousarray(arr, dtype=p.dtype), device=p.device)
                    else:
                        st[name] = value
                new_state[p] = st
            for k, v in saved.items():
                if k != "params":
                    mine[k] = v
        self.state = new_state


def _host(value):
    """A clnet tensor, torch tensor or array-like as something numpy can read."""
    if isinstance(value, Tensor):
        return value.numpy()
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
        return value.detach().cpu().numpy()
    return value


def _is_array(value) -> bool:
    return isinstance(value, (Tensor, np.ndarray)) or (hasattr(value, "shape") and hasattr(value, "dtype"))


def _check_range(name, value, lo=0.0, hi=None, lo_open=False, hi_open=True):
    if value is None or isinstance(value, (str, bytes)) or not hasattr(value, "__float__"):
        raise TypeError(f"Invalid {name}: expected a number, got {value!r} ({type(value).__name__})")
    bad = value < lo or (lo_open and value == lo) or (hi is not None and (value > hi or (hi_open and value == hi)))
    if bad or (isinstance(value, float) and math.isnan(value)):
        raise ValueError(f"Invalid {name} value: {value}")

"""Module: the base class of every layer and model, as in PyTorch.

Assigning a Parameter or a Module to an attribute registers it (``__setattr__``), so
``parameters()``, ``state_dict()``, ``to()`` and ``zero_grad()`` find everything without bookkeeping
in user code. Buffers (running statistics) are registered with ``register_buffer``.
"""
from __future__ import annotations

import copy
import itertools
from collections import OrderedDict, namedtuple

import numpy as np

from .. import dtypes as _dt
from ..autograd import no_grad, zero_grads
from ..backend.devices import Device, get_device
from ..tensor import Tensor
from .parameter import Parameter

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


def _addindent(text: str, spaces: int) -> str:
    lines = text.split("\n")
    if len(lines) == 1:
        return text
    return lines[0] + "\n" + "\n".join(" " * spaces + line for line in lines[1:])


def _as_array(value, key):
    """A state_dict value (clnet tensor, numpy array, or anything array-like such as a torch tensor)."""
    if isinstance(value, Tensor):
        return value
    if hasattr(value, "detach") and hasattr(value, "cpu") and hasattr(value, "numpy"):  # a torch tensor
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except Exception as err:
        raise TypeError(f"state_dict entry {key!r} is a {type(value).__name__}, not a tensor or an array") from err


class Module:
    """Base class for layers and models: define ``__init__`` (assign sub-modules and parameters) and
    ``forward``; call the module to run it."""

    training: bool

    def __init__(self):
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())

    # --- registration ---------------------------------------------------------------------------
    def _check_init(self, name):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {name!r} before Module.__init__() is called; "
                                 f"call super().__init__() first in {type(self).__name__}.__init__")

    def __setattr__(self, name, value):
        if isinstance(value, Parameter):
            self._check_init(name)
            self._forget(name)
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._check_init(name)
            self._forget(name)
            self._modules[name] = value
        elif "_parameters" in self.__dict__ and name in self._parameters:
            if value is not None:
                raise TypeError(f"cannot assign a {type(value).__name__} to parameter {name!r} "
                                "(a clnet.nn.Parameter or None is required)")
            self._parameters[name] = None
        elif "_modules" in self.__dict__ and name in self._modules:
            if value is not None:
                raise TypeError(f"cannot assign a {type(value).__name__} to child module {name!r} "
                                "(a clnet.nn.Module or None is required)")
            self._modules[name] = None
        elif "_buffers" in self.__dict__ and name in self._buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign a {type(value).__name__} to buffer {name!r} "
                                "(a clnet Tensor or None is required)")
            self._buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name):
        for table in (self._parameters, self._buffers, self._modules):
            table.pop(name, None)
        self._non_persistent.discard(name)
        self.__dict__.pop(name, None)

    def __getattr__(self, name):
        d = self.__dict__
        for table in ("_parameters", "_buffers", "_modules"):
            if table in d and name in d[table]:
                return d[table][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for table in (self._parameters, self._buffers, self._modules):
            if name in table:
                del table[name]
                self._non_persistent.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers) | set(self._modules))

    @staticmethod
    def _check_name(name, kind):
        if not isinstance(name, str):
            raise TypeError(f"{kind} name must be a string, got {type(name).__name__}")
        if not name or "." in name:
            raise KeyError(f"{kind} name can't be empty or contain '.', got {name!r}")

    def register_parameter(self, name: str, param) -> None:
        self._check_init(name)
        self._check_name(name, "parameter")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot register a {type(param).__name__} as parameter {name!r} "
                            "(wrap it in clnet.nn.Parameter)")
        self._forget(name)
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor, persistent: bool = True) -> None:
        """A tensor that belongs to the module's state (saved, moved by to()) but is not learned."""
        self._check_init(name)
        self._check_name(name, "buffer")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot register a {type(tensor).__name__} as buffer {name!r} (a Tensor or None)")
        self._forget(name)
        self._buffers[name] = tensor
        if not persistent:
            self._non_persistent.add(name)

    def add_module(self, name: str, module) -> None:
        self._check_init(name)
        self._check_name(name, "module")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        self._forget(name)
        self._modules[name] = module

    register_module = add_module

    def get_submodule(self, target: str) -> "Module":
        mod = self
        for item in target.split(".") if target else []:
            if item not in mod._modules or mod._modules[item] is None:
                raise AttributeError(f"{type(mod).__name__} has no submodule {item!r} (looking up {target!r})")
            mod = mod._modules[item]
        return mod

    def get_parameter(self, target: str) -> Parameter:
        path, _, name = target.rpartition(".")
        mod = self.get_submodule(path)
        if name not in mod._parameters:
            raise AttributeError(f"{type(mod).__name__} has no parameter {name!r}")
        return mod._parameters[name]

    # --- running ----------------------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward(); define forward(self, ...) in it")

    def __call__(self, *args, **kwargs):
        for hook in list(self._forward_pre_hooks.values()):
            result = hook(self, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        out = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            result = hook(self, args, out)
            if result is not None:
                out = result
        return out

    def register_forward_hook(self, hook):
        """hook(module, inputs, output) runs after forward; a non-None result replaces the output."""
        return _Handle(self._forward_hooks, hook)

    def register_forward_pre_hook(self, hook):
        """hook(module, inputs) runs before forward; a non-None result replaces the inputs."""
        return _Handle(self._forward_pre_hooks, hook)

    # --- iteration --------------------------------------------------------------------------------
    def named_modules(self, memo=None, prefix: str = "", remove_duplicate: bool = True):
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is None:
                continue
            yield from module.named_modules(memo, prefix + ("." if prefix else "") + name, remove_duplicate)

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def named_children(self):
        seen = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self):
        for _, module in self.named_children():
            yield module

    def _named_members(self, table, prefix, recurse, remove_duplicate=True):
        seen = set()
        modules = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mod_prefix, module in modules:
            for name, value in getattr(module, table).items():
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                seen.add(id(value))
                yield mod_prefix + ("." if mod_prefix else "") + name, value

    def named_parameters(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        """(name, Parameter) pairs; a parameter shared by two layers is listed once."""
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    # --- modes and gradients ------------------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        """Training mode (Dropout drops, BatchNorm uses batch statistics) for this module and its children."""
        if not isinstance(mode, bool):
            raise ValueError(f"training mode is expected to be a bool, got {type(mode).__name__}")
        object.__setattr__(self, "training", mode)
        for module in self.children():
            module.train(mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop (default) or zero every parameter's .grad before the next backward()."""
        zero_grads(self.parameters(), set_to_none)

    # --- state ------------------------------------------------------------------------------------
    def _state_items(self):
        """(full name, tensor) of every parameter and persistent buffer, in registration order."""
        for prefix, module in self.named_modules(remove_duplicate=False):
            pre = prefix + "." if prefix else ""
            for name, p in module._parameters.items():
                if p is not None:
                    yield pre + name, p
            for name, b in module._buffers.items():
                if b is not None and name not in module._non_persistent:
                    yield pre + name, b

    def state_dict(self, destination=None, prefix: str = "", keep_vars: bool = False):
        """Ordered name -> tensor (detached, sharing memory) of every parameter and persistent buffer."""
        out = OrderedDict() if destination is None else destination
        for name, t in self._state_items():
            out[prefix + name] = t if keep_vars else t.detach()
        return out

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy values (clnet tensors or numpy arrays) into the parameters and buffers, in place.

        Every problem is collected and reported at once by key: missing and unexpected keys (when
        strict) and shape mismatches (always, with both shapes). Nothing is copied unless all is well.
        Returns (missing_keys, unexpected_keys).
        """
        if not hasattr(state_dict, "items"):
            raise TypeError(f"expected a mapping of names to tensors, got {type(state_dict).__name__}")
        own = OrderedDict(self._state_items())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        values, mismatched = {}, []
        for key, target in own.items():
            if key not in state_dict:
                continue
            value = _as_array(state_dict[key], key)
            if tuple(value.shape) != tuple(target.shape):
                mismatched.append(f"size mismatch for {key}: copying a param with shape {tuple(value.shape)} "
                                  f"from checkpoint, the shape in current model is {tuple(target.shape)}.")
            values[key] = value
        errors = []
        if strict and unexpected:
            errors.append("Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected) + ".")
        if strict and missing:
            errors.append("Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing) + ".")
        errors += mismatched
        if errors:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                               + "\n\t".join(errors))
        with no_grad():
            for key, value in values.items():
                target = own[key]
                if isinstance(value, np.ndarray):
                    from ..ops.creation import tensor
                    value = tensor(value.astype(target.dtype, copy=False), device=target.device)
                elif value.device is not target.device:
                    value = value.to(target.device)
                target.copy_(value)
        return IncompatibleKeys(missing, unexpected)

    # --- moving and converting ------------------------------------------------------------------------
    def _apply(self, fn):
        """Convert every parameter and buffer with fn(tensor). A Parameter keeps its identity (its
        storage is swapped, as PyTorch's `param.data = ...`), so an optimizer made before still works."""
        for module in self.children():
            module._apply(fn)
        for p in self._parameters.values():
            if p is None:
                continue
            new = fn(p)
            if new is not p:
                _swap_storage(p, new)
                if p.grad is not None:
                    p.grad = fn(p.grad)
        for name, b in self._buffers.items():
            if b is not None:
                self._buffers[name] = fn(b)
        return self

    def to(self, *args, device=None, dtype=None) -> "Module":
        """.to(device), .to(dtype) (floating parameters and buffers only) or both; returns self."""
        for a in args:
            if isinstance(a, Device):
                device = a
            elif isinstance(a, str):
                try:
                    dtype = _dt.as_dtype(a)
                except TypeError:
                    device = a
            else:
                dtype = a
        dev = get_device(device) if device is not None else None
        dt = _dt.as_dtype(dtype) if dtype is not None else None
        if dt is not None and not _dt.is_floating(dt):
            raise TypeError(f"Module.to only accepts floating-point dtypes, got {dt.name}")

        def convert(t):
            if dev is not None and t.device is not dev:
                t = t.to(dev)
            if dt is not None and _dt.is_floating(t.dtype) and t.dtype != dt:
                t = t.to(dtype=dt)
            return t
        with no_grad():
            return self._apply(convert)

    def cpu(self) -> "Module":
        return self.to("cpu")

    def double(self) -> "Module":
        return self.to(dtype=_dt.float64)

    def float(self) -> "Module":
        return self.to(dtype=_dt.float32)

    def half(self) -> "Module":
        return self.to(dtype=_dt.float16)

    def apply(self, fn) -> "Module":
        """fn(module) for every child (depth first), then for self; e.g. custom initialisation."""
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    # --- printing ---------------------------------------------------------------------------------
    def extra_repr(self) -> str:
        """The text inside this module's parentheses in repr (its configuration)."""
        return ""

    def _get_name(self) -> str:
        return type(self).__name__

    def __repr__(self):
        lines = []
        extra = self.extra_repr()
        if extra:
            lines = extra.split("\n")
        for name, module in self._modules.items():
            lines.append(f"({name}): " + _addindent(repr(module), 2))
        main = self._get_name() + "("
        if lines:
            if len(lines) == 1 and not self._modules:
                main += lines[0]
            else:
                main += "\n  " + "\n  ".join(lines) + "\n"
        return main + ")"

    def __getstate__(self):
        raise TypeError("clnet modules are not picklable: save model.state_dict() with clnet's savers")

    def __deepcopy__(self, memo):
        """copy.deepcopy(model): the same structure with its own copies of every parameter and buffer
        (e.g. to keep the best model seen during training)."""
        new = object.__new__(type(self))
        memo[id(self)] = new
        for key, value in self.__dict__.items():
            new.__dict__[key] = _deepcopy_value(value, memo)
        return new


def _deepcopy_value(value, memo):
    """deepcopy that clones tensors on their device (tensors themselves refuse pickling protocols)."""
    if id(value) in memo:
        return memo[id(value)]
    if isinstance(value, Tensor):
        with no_grad():
            data = value.detach().clone()
        out = Parameter(data, requires_grad=value.requires_grad) if isinstance(value, Parameter) else data
        if value.grad is not None:
            out.grad = value.grad.clone()
    elif isinstance(value, dict):
        out = type(value)()
        memo[id(value)] = out
        for k, v in value.items():
            out[k] = _deepcopy_value(v, memo)
        return out
    elif isinstance(value, (list, tuple)):
        out = type(value)(_deepcopy_value(v, memo) for v in value)
    else:
        out = copy.deepcopy(value, memo)
    memo[id(value)] = out
    return out


def _swap_storage(p: Tensor, new: Tensor) -> None:
    """Make leaf `p` present `new`'s data (buffer, layout, dtype, device) without changing identity."""
    new = new.detach()
    for field in ("_buf", "offset", "shape", "strides", "dtype", "device", "_storage_size", "_base"):
        setattr(p, field, getattr(new, field))
    p._version = new._version


class _Handle:
    """Returned by register_*_hook; .remove() unregisters the hook."""

    _ids = itertools.count()

    def __init__(self, table, hook):
        self.table = table
        self.id = next(self._ids)
        table[self.id] = hook

    def remove(self):
        self.table.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()

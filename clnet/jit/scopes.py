"""Parameters and buffers registered under dotted state_dict names, as the model that was traced or exported
had them ("layer1.0.conv.weight" -> module.layer1[0].conv.weight), so a loaded graph's state_dict keys are
the original model's and `load_state_dict` moves weights between the two.
"""
from __future__ import annotations

import re

from ..nn.module import Module

_PART = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$|^\d+$")


class ParameterScope(Module):
    """One level of dotted parameter names. It holds parameters and buffers only; the module that owns it
    (a traced module, an imported ONNX model) runs the graph."""

    def forward(self, *args, **kwargs):
        raise TypeError("a ParameterScope holds a loaded model's parameters; call the model that contains it")


def flat_name(name: str, taken) -> str:
    """An attribute name made from `name` (characters other than letters, digits and _ become _), not in `taken`."""
    base = re.sub(r"[^0-9A-Za-z_]", "_", name) or "value"
    if base[0].isdigit():
        base = "_" + base
    out, k = base, 1
    while out in taken:
        k += 1
        out = f"{base}_{k}"
    return out


def place(root: Module, name: str, value, is_parameter: bool):
    """Register `value` as a parameter (or buffer) under the dotted `name` (creating ParameterScopes) when
    every part is a usable attribute name, else under a flat name made from it on `root`.
    Returns (owner module, attribute name)."""
    parts = name.split(".")
    owner = root
    if len(parts) > 1 and all(_PART.match(p) for p in parts):
        for p in parts[:-1]:
            child = owner._modules.get(p)
            if child is None:
                if p in owner._parameters or p in owner._buffers:
                    owner = None
                    break
                child = ParameterScope()
                owner.add_module(p, child)
            owner = child
        leaf = parts[-1]
        if owner is not None and leaf not in owner._modules and leaf not in owner._parameters \
                and leaf not in owner._buffers:
            _register(owner, leaf, value, is_parameter)
            return owner, leaf
    taken = set(root._parameters) | set(root._buffers) | set(root._modules) | set(dir(type(root)))
    usable = _PART.match(name) and not name.isdigit() and name not in taken
    leaf = name if usable else flat_name(name, taken)
    _register(root, leaf, value, is_parameter)
    return root, leaf


def _register(owner, leaf, value, is_parameter):
    if is_parameter:
        owner.register_parameter(leaf, value)
    else:
        owner.register_buffer(leaf, value)


def lookup(owner: Module, leaf: str):
    """The parameter or buffer `leaf` of `owner` as it is now (after .to() or load_state_dict)."""
    return owner._parameters[leaf] if leaf in owner._parameters else owner._buffers[leaf]

"""clnet.jit: traced graphs that run, save and load without the code that built them (torch.jit's spelling).

    traced = clnet.jit.trace(model, (x, h))     # a TracedModule; print(traced.graph)
    traced.save("cell.pt")                      # or clnet.jit.save(traced, "cell.pt")
    cell = clnet.jit.load("cell.pt")            # in any process: no need for the model's class

`script` has no Python-source compiler behind it (TorchScript's scripting is out of scope): it returns a
module that traces itself on its first call, so control flow that depends on tensor values is frozen as
it ran then, as with `trace`.
"""
from __future__ import annotations

import os

from ..core import dispatch
from ..nn.module import Module
from .graph import Graph, Node, Ref, TensorSpec
from .module import TracedModule, load_module
from .trace import TracerWarning, TracingError, trace

ScriptModule = TracedModule


def save(m: TracedModule, f) -> None:
    """torch.jit.save's spelling of m.save(f)."""
    if not isinstance(m, TracedModule):
        raise TypeError(f"clnet.jit.save saves a traced module (clnet.jit.trace(...)), got {type(m).__name__}; "
                        "for a module's weights use clnet.save(model.state_dict(), path)")
    m.save(f)


def load(f, map_location=None, *, device=None) -> TracedModule:
    """The TracedModule saved in `f` (a path or a readable binary file object), its tensors on `device` (or
    `map_location`, PyTorch's name)."""
    return load_module(f if hasattr(f, "read") else os.fspath(f), dispatch.OPS,
                       device=device if device is not None else map_location)


class _ScriptedModule(Module):
    """What clnet.jit.script returns: runs `module`, traced on the first call (see the module docstring)."""

    def __init__(self, module):
        super().__init__()
        self.module = module
        object.__setattr__(self, "_traced", None)

    def forward(self, *inputs):
        if self._traced is None:
            object.__setattr__(self, "_traced", trace(self.module, inputs, check_trace=False))
        return self._traced(*inputs)

    @property
    def graph(self) -> Graph:
        if self._traced is None:
            raise RuntimeError("clnet.jit.script traces on the first call: call the module once before reading "
                               "its graph")
        return self._traced.graph

    def save(self, f) -> None:
        if self._traced is None:
            raise RuntimeError("clnet.jit.script traces on the first call: call the module once before saving it")
        self._traced.save(f)


def script(obj, *args, **kwargs):
    """torch.jit.script's spelling: a module traced on its first call (no source compiler; see above)."""
    if not isinstance(obj, Module):
        raise TypeError("clnet.jit.script takes an nn.Module (functions: clnet.jit.trace(fn, example_inputs))")
    return _ScriptedModule(obj)


__all__ = ["trace", "script", "save", "load", "TracedModule", "ScriptModule", "TracerWarning", "TracingError",
           "Graph", "Node", "Ref", "TensorSpec"]

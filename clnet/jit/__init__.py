"""clnet.jit: traced graphs that run, save and load without the code that built them (torch.jit's spelling).

    traced = clnet.jit.trace(model, (x, h))     # a TracedModule; print(traced.graph)
    traced.save("cell.pt")                      # or clnet.jit.save(traced, "cell.pt")
    cell = clnet.jit.load("cell.pt")            # in any process: no need for the model's class
"""
from __future__ import annotations

from .graph import Graph, Node, Ref, TensorSpec
from .module import TracedModule

__all__ = ["Graph", "Node", "Ref", "TensorSpec", "TracedModule"]

"""The portable graph of a traced model: op rows by name, with their arguments, in the order they ran.

    graph(%x : float32[3, 4], %h : float32[3, 4]):
      %0 : float32[3, 4] = linear(%x, %self.linear.weight, %self.linear.bias)
      %1 : float32[3, 4] = add(%0, %h)
      %2 : float32[3, 4] = tanh(%1)
      return (%2, %2)

A node names its op (a public clnet op, run again through the op table by that name), its positional and
keyword arguments as Python values (numbers, strings, tuples, dtypes, slices...) with tensors replaced by
references, and its results as a tree of value numbers. References say where a tensor comes from: a graph
input, a parameter or buffer of the traced module (by its state_dict name), a constant captured while
tracing, or an earlier node's result. This is what `TracedModule.graph` prints, what clnet.jit's file
stores (clnet/jit/format.py) and what ONNX export reads.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class _DeviceArg:
    """The device argument of an op row (`zeros(..., device=...)` inside a traced function): a saved graph
    does not name a device; it runs on the device of its inputs."""

    def __repr__(self):
        return "<device>"



DEVICE = _DeviceArg()


@dataclass(frozen=True)
class Ref:
    """Where a tensor argument comes from: kind is "input" (index), "param" / "buffer" (state_dict name),
    "const" (index into Graph.constants) or "value" (number of an earlier node's result)."""
    kind: str
    key: object

    KINDS = ("input", "param", "buffer", "const", "value")

    def label(self, graph: "Graph | None" = None) -> str:
        if self.kind == "input" and graph is not None:
            return "%" + graph.inputs[self.key].name
        if self.kind in ("param", "buffer"):
            return "%self." + str(self.key)
        if self.kind == "const":
            return f"%const{self.key}"
        return f"%{self.key}"


@dataclass
class TensorSpec:
    """A graph input's or value's name (inputs only), dtype and shape as traced."""
    name: str
    dtype: np.dtype
    shape: tuple

    def type_text(self) -> str:
        return f"{np.dtype(self.dtype).name}[{', '.join(str(d) for d in self.shape)}]"


@dataclass
class Node:
    """One op row: op name, arguments (trees with Refs for tensors) and the results (a tree of Refs of kind
    "value": one Ref for one tensor, a tuple for ops that return several, None where the op returned no
    tensor)."""
    op: str
    args: tuple
    kwargs: dict
    outputs: object
    children: list = field(default_factory=list)   # the rows this op ran inside it (ONNX export's fallback)
    own_kernels: int = 0                           # kernels the op launched itself, besides its children's


@dataclass
class Graph:
    inputs: list                              # TensorSpec per graph input
    nodes: list                               # Node, in the order they ran
    outputs: object                           # tree of Refs: what the traced function returned
    constants: list = field(default_factory=list)   # numpy arrays captured while tracing
    values: dict = field(default_factory=dict)      # value number -> TensorSpec (for printing and export)
    aliases: dict = field(default_factory=dict)     # a row's result -> the child row's result it is

    def walk(self, nodes=None):
        """Every node, depth first (a row before the rows it ran inside it)."""
        for n in self.nodes if nodes is None else nodes:
            yield n
            yield from self.walk(n.children)

    def refs_in(self, tree):
        """Every Ref in an argument or result tree."""
        if isinstance(tree, Ref):
            yield tree
        elif isinstance(tree, (list, tuple)):
            for item in tree:
                yield from self.refs_in(item)
        elif isinstance(tree, dict):
            for item in tree.values():
                yield from self.refs_in(item)
        elif isinstance(tree, slice):
            for item in (tree.start, tree.stop, tree.step):
                yield from self.refs_in(item)

    def _arg_text(self, v) -> str:
        if isinstance(v, Ref):
            return v.label(self)
        if isinstance(v, tuple):
            inner = ", ".join(self._arg_text(x) for x in v)
            return f"({inner}{',' if len(v) == 1 else ''})"
        if isinstance(v, list):
            return "[" + ", ".join(self._arg_text(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k!r}: {self._arg_text(x)}" for k, x in v.items()) + "}"
        if isinstance(v, slice):
            parts = [self._arg_text(p) if p is not None else "" for p in (v.start, v.stop, v.step)]
            return ":".join(parts[:2] if v.step is None else parts)
        if isinstance(v, np.dtype):
            return f"clnet.{v.name}"
        if v is Ellipsis:
            return "..."
        return repr(v)

    def _result_text(self, tree) -> str:
        if tree is None:
            return "_"
        if isinstance(tree, Ref):
            spec = self.values.get(tree.key)
            return f"%{tree.key}" + (f" : {spec.type_text()}" if spec is not None else "")
        return "(" + ", ".join(self._result_text(t) for t in tree) + ")"

    def __str__(self) -> str:
        head = ", ".join(f"%{s.name} : {s.type_text()}" for s in self.inputs)
        lines = [f"graph({head}):"]
        for n in self.nodes:
            args = [self._arg_text(a) for a in n.args] + [f"{k}={self._arg_text(v)}" for k, v in n.kwargs.items()]
            lines.append(f"  {self._result_text(n.outputs)} = {n.op}({', '.join(args)})")
        lines.append(f"  return {self._arg_text(self.outputs)}")
        return "\n".join(lines)

    __repr__ = __str__

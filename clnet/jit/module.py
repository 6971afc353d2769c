"""TracedModule: a traced graph with the parameters and buffers it reads, runnable without the model's code.

`clnet.jit.trace` makes one from a module or function; `.save(path)` writes it (clnet/jit/format.py) and
`clnet.jit.load(path)` makes it again in any process, from the file alone: the graph's nodes name public
clnet ops, which `forward` calls again by name from the op table with the same arguments. The parameters
keep the traced module's state_dict names and stay trainable (a loaded graph fine-tunes), and `.to()`,
`state_dict()`, `load_state_dict()`, `train()`/`eval()` work as on any module.
"""
from __future__ import annotations

import os

import numpy as np

from ..backend.devices import get_device
from ..errors import FileFormatError
from ..nn.module import Module
from ..nn.parameter import Parameter
from ..ops.creation import tensor as _make_tensor
from ..tensor import Tensor
from .format import load_graph, save_graph
from .graph import DEVICE, Graph, Ref
from .scopes import lookup, place


class TracedModule(Module):
    """Runs `graph` with `ops` (op name -> function). Made by clnet.jit.trace or clnet.jit.load."""

    def __init__(self, graph: Graph, params: dict, buffers: dict, ops, name: str = "TracedModule",
                 training: bool = False):
        super().__init__()
        refs = {}
        for pname, p in params.items():
            refs[("param", pname)] = place(self, pname, p if isinstance(p, Parameter) else Parameter(p), True)
        for bname, b in buffers.items():
            refs[("buffer", bname)] = place(self, bname, b, False)
        object.__setattr__(self, "_graph", graph)
        object.__setattr__(self, "_ops", ops)
        object.__setattr__(self, "_refs", refs)
        object.__setattr__(self, "_uploads", {})
        object.__setattr__(self, "original_name", name)
        self.train(training)

    @property
    def graph(self) -> Graph:
        """The traced graph (print it to read it)."""
        return self._graph

    @property
    def code(self) -> str:
        return str(self._graph)

    def _const(self, k, device):
        key = (k, device)
        if key not in self._uploads:
            self._uploads[key] = _make_tensor(self._graph.constants[k], device=device)
        return self._uploads[key]

    def forward(self, *inputs):
        g = self._graph
        if len(inputs) != len(g.inputs):
            raise TypeError(f"{self.original_name} was traced with {len(g.inputs)} input(s) "
                            f"({', '.join(s.type_text() for s in g.inputs)}), got {len(inputs)}")
        for i, (spec, x) in enumerate(zip(g.inputs, inputs)):
            if not isinstance(x, Tensor):
                raise TypeError(f"input {i} of {self.original_name} must be a clnet Tensor, got {type(x).__name__}")
            if x.dtype != spec.dtype or x.ndim != len(spec.shape):
                raise TypeError(f"input {i} of {self.original_name} was traced as {spec.type_text()}, got "
                                f"{np.dtype(x.dtype).name}[{', '.join(map(str, x.shape))}]")
        device = inputs[0].device if inputs else self._device()
        values = {}

        def resolve(tree):
            if tree is DEVICE:
                return device
            if isinstance(tree, Ref):
                if tree.kind == "input":
                    return inputs[tree.key]
                if tree.kind == "value":
                    return values[tree.key]
                if tree.kind == "const":
                    return self._const(tree.key, device)
                return lookup(*self._refs[(tree.kind, tree.key)])
            if isinstance(tree, tuple):
                return tuple(resolve(v) for v in tree)
            if isinstance(tree, list):
                return [resolve(v) for v in tree]
            if isinstance(tree, dict):
                return {k: resolve(v) for k, v in tree.items()}
            if isinstance(tree, slice):
                return slice(resolve(tree.start), resolve(tree.stop), resolve(tree.step))
            return tree

        def bind(tree, result, op):
            if tree is None:
                return
            if isinstance(tree, Ref):
                values[tree.key] = result
                return
            if not isinstance(result, (tuple, list)) or len(result) != len(tree):
                raise RuntimeError(f"the op {op!r} returned {type(result).__name__}, the graph expects "
                                   f"{len(tree)} results")
            for t, r in zip(tree, result):
                bind(t, r, op)

        for node in g.nodes:
            bind(node.outputs, self._ops[node.op](*resolve(node.args), **resolve(node.kwargs)), node.op)
        return resolve(g.outputs)

    def _device(self):
        for t in list(self.parameters()) + list(self.buffers()):
            return t.device
        return get_device(None)

    def save(self, path) -> None:
        """Write the graph, parameters and buffers to `path`, a path or a writable binary file object (zip +
        JSON + .npy; see clnet/jit/format.py)."""
        params, buffers = {}, {}
        for (kind, name), ref in self._refs.items():
            t = lookup(*ref)
            if kind == "param":
                params[name] = (t.detach().numpy(), t.requires_grad)
            else:
                buffers[name] = t.detach().numpy()
        save_graph(path, self._graph, params, buffers, {"name": self.original_name, "training": self.training})

    def extra_repr(self) -> str:
        return f"original_name={self.original_name}, {len(self._graph.nodes)} nodes"


def load_module(path, ops, device=None) -> TracedModule:
    """A TracedModule from a file TracedModule.save wrote, its tensors on `device`."""
    path = path if hasattr(path, "read") else os.fspath(path)
    graph, params, buffers, meta = load_graph(path, ops)
    name = meta.get("name") if isinstance(meta.get("name"), str) else "TracedModule"
    try:
        ps = {n: Parameter(_make_tensor(a, device=device), requires_grad=g) for n, (a, g) in params.items()}
        bs = {n: _make_tensor(a, device=device) for n, a in buffers.items()}
    except (TypeError, ValueError) as err:
        raise FileFormatError(f"cannot load {path}: {err}") from None
    return TracedModule(graph, ps, bs, ops, name, training=meta.get("training") is True)

"""clnet.jit.trace: run a module or function once on example inputs and keep what it did as a portable graph.

    traced = clnet.jit.trace(my_cell, (x, h))      # torch.jit.trace's spelling
    print(traced.graph)
    traced(x, h)                                   # runs the graph: op rows called again by name
    traced.save("cell.pt")                         # clnet.jit.load("cell.pt") needs no model code

Tracing is clnet.compiler.trace (the static-graph IR every static feature shares); this module turns its
top-level forward op rows into a clnet.jit.graph.Graph: tensors become references to the inputs, to the
module's parameters and buffers by their state_dict names, to constants captured while tracing, or to
earlier rows' results; devices become "the device of the inputs".

As with torch.jit.trace, what Python decided while tracing is frozen into the graph: an `if` on a tensor's
value, a loop over a tensor's size, a size computed with `x.shape[0]`. The graph replays that path for
inputs of other values; use inputs of the traced shapes (or trace once per shape). Reading a value on the
host while tracing (`.item()`, `.numpy()`) freezes it too: trace warns with where it happened.
"""
from __future__ import annotations

import inspect
import warnings

import numpy as np

from ..backend.devices import Device
from ..compiler import trace as _trace_ir
from ..core import dispatch
from ..errors import ClnetError
from ..nn.module import Module
from ..tensor import Tensor
from .graph import DEVICE, Graph, Node, Ref, TensorSpec
from .module import TracedModule


class TracingError(ClnetError, RuntimeError):
    """What a module or function did cannot be kept as a graph of clnet ops (the message says what)."""


class TracerWarning(UserWarning):
    """The traced graph may not generalise: it froze a value read on the host, or differs from eager."""


def _row_op(node, strict: bool = True):
    """The op-table name a row is called by again, and its arguments ("pointwise" rows carry their
    expressions as arguments). A row outside the table is an error (strict) or keeps its name."""
    fn = dispatch.OPS.get(node.name)
    if fn is not None and (fn is node.fn or getattr(fn, "__wrapped__", None) is node.fn):
        return node.name, node.args
    pointwise = dispatch.OPS.get("pointwise")
    if pointwise is not None and node.fn is pointwise:
        return "pointwise", node.args
    if not strict:
        return node.name, node.args
    raise TracingError(f"the op row {node.name!r} ({node.qualified_name}) is not in clnet's op table, so a graph "
                       "cannot call it again")


class _Converter:
    """Core's IR (clnet.compiler.graph) -> the portable Graph. With `children`, each row also keeps the rows it
    ran inside it (what ONNX export falls back to for an op it has no rule for); their results are numbered
    too, and a row's result that is a child's result is recorded in Graph.aliases."""

    def __init__(self, ir, param_names: dict, buffer_names: dict, children: bool = False):
        self.ir = ir
        self.param_names, self.buffer_names = param_names, buffer_names
        self.with_children = children
        self.refs = {}            # id(core Value) -> Ref
        self.by_tensor = {}       # id(tensor) -> value number of the latest child result holding it
        self.constants = []
        self.values = {}
        self.aliases = {}

    @staticmethod
    def _source(v):
        """The Value `v` really is: an op that returned one of its inputs unchanged (contiguous of a contiguous
        tensor, a cast to its own dtype) gave the same tensor a new Value; later uses mean the input."""
        while v.kind == "intermediate" and v.producer is not None and not v.producer.name.endswith("_") \
                and v.tensor is not None:
            same = [i for i in v.producer.inputs if i is not v and i.tensor is v.tensor]
            if not same:
                break
            v = same[0]
        return v

    def ref(self, v) -> Ref:
        v = self._source(v)
        r = self.refs.get(id(v))
        if r is not None:
            return r
        if v.kind == "input":  # by position in the inputs (Value.index also numbers outputs: an input returned as is)
            r = Ref("input", next(i for i, iv in enumerate(self.ir.inputs) if iv is v))
        elif v.kind in ("param", "constant"):
            t = v.tensor
            if id(t) in self.param_names:
                r = Ref("param", self.param_names[id(t)])
            elif id(t) in self.buffer_names:
                r = Ref("buffer", self.buffer_names[id(t)])
            else:
                self.constants.append(np.array(t.detach().numpy(), copy=True))
                r = Ref("const", len(self.constants) - 1)
        else:
            raise TracingError(f"a tensor {v.describe()} was made by code that is not a clnet op (a raw kernel "
                               "launch), so the graph cannot make it again")
        self.refs[id(v)] = r
        return r

    def tree(self, obj):
        if hasattr(obj, "kind") and hasattr(obj, "producer") and hasattr(obj, "shape"):  # a core Value
            return self.ref(obj)
        if isinstance(obj, Device):
            return DEVICE
        if isinstance(obj, tuple):
            return tuple(self.tree(x) for x in obj)
        if isinstance(obj, list):
            return [self.tree(x) for x in obj]
        if isinstance(obj, dict):
            return {k: self.tree(x) for k, x in obj.items()}
        return obj

    def results(self, obj, child_results=None):
        if hasattr(obj, "kind") and hasattr(obj, "producer") and hasattr(obj, "shape"):
            k = len(self.values)
            self.values[k] = TensorSpec("", np.dtype(obj.dtype), tuple(obj.shape))
            self.refs[id(obj)] = Ref("value", k)
            if obj.tensor is not None:
                if child_results is not None and id(obj.tensor) in child_results:
                    self.aliases[k] = child_results[id(obj.tensor)]
                self.by_tensor[id(obj.tensor)] = k
            return Ref("value", k)
        if isinstance(obj, (tuple, list)):
            return tuple(self.results(x, child_results) for x in obj)
        return None

    def node(self, row) -> Node:
        op, args = _row_op(row, strict=row.parent is None)
        args, kwargs = self.tree(tuple(args)), self.tree(dict(row.kwargs))
        children, made = [], None
        if self.with_children and row.children:
            before, n_values, n_refs, n_alias = dict(self.by_tensor), len(self.values), dict(self.refs), \
                dict(self.aliases)
            try:
                children = [self.node(c) for c in row.children]
                made = {t: k for t, k in self.by_tensor.items() if before.get(t) != k}
            except TracingError:  # inner rows that read tensors made outside any op: no fallback for this row
                children, made = [], None
                self.by_tensor, self.refs, self.aliases = before, n_refs, n_alias
                for k in [k for k in self.values if k >= n_values]:
                    del self.values[k]
        own = sum(1 for x in row.launches if hasattr(x, "kernel"))
        return Node(op, args, kwargs, self.results(row.result, made), children, own)

    def graph(self, names) -> Graph:
        nodes = []
        for row in self.ir.ops:
            if row.phase != "forward":
                continue
            nodes.append(self.node(row))
        inputs = [TensorSpec(name, np.dtype(v.dtype), tuple(v.shape)) for name, v in zip(names, self.ir.inputs)]
        outputs = self.tree(self.ir.output_structure)
        return Graph(inputs, nodes, outputs, self.constants, self.values, self.aliases)


def _input_names(func, n: int) -> list:
    """The names of forward's (or the function's) first n parameters, as the graph's input names."""
    target = func.forward if isinstance(func, Module) else func
    try:
        params = [p for p in inspect.signature(target).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    names = [p.name for p in params[:n]]
    if len(names) < n or len(set(names)) < n:
        return [f"input{i}" for i in range(n)] if n > 1 else ["input"]
    return names


def _as_tuple(example_inputs) -> tuple:
    if isinstance(example_inputs, Tensor):
        return (example_inputs,)
    if isinstance(example_inputs, (list, tuple)):
        return tuple(example_inputs)
    raise TypeError(f"clnet.jit.trace: example_inputs must be a Tensor or a tuple of Tensors, got "
                    f"{type(example_inputs).__name__}")


def _same(a, b) -> bool:
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return a.shape == b.shape and np.allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-5, atol=1e-6,
                                                  equal_nan=True)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b)


def capture(func, inputs: tuple, children: bool = False):
    """Trace `func` on `inputs`: (graph, parameters {name: Parameter}, buffers {name: Tensor}, result).
    A module's parameters and buffers are named by their state_dict names; children=True keeps each row's
    inner rows (ONNX export)."""
    for i, x in enumerate(inputs):
        if not isinstance(x, Tensor):
            raise TypeError(f"clnet.jit.trace: example input {i} is a {type(x).__name__}, not a clnet Tensor")
    module = func if isinstance(func, Module) else None
    if module is None and not callable(func):
        raise TypeError(f"clnet.jit.trace: expected an nn.Module or a function, got {type(func).__name__}")
    params = dict(module.named_parameters()) if module is not None else {}
    buffers = {n: b for n, b in module.named_buffers() if b is not None} if module is not None else {}
    ir, result = _trace_ir(func, *inputs)
    loose = [x for x in ir.kernel_launches if x.op is None and x.phase == "forward"]
    if loose:
        raise TracingError(f"the traced code ran {len(loose)} kernel(s) outside any clnet op (first: "
                           f"{loose[0].name!r}), which a graph of op rows would not run again; the code that launches "
                           "them (a function of clnet.nn or your own) needs to call clnet ops")
    breaks = [b for b in ir.breaks if b.op is None]  # inside an op, the op reads again when the graph calls it
    if breaks:
        warnings.warn("clnet.jit.trace: the traced code read tensor values on the host (" +
                      "; ".join(b.where for b in breaks[:3]) + "); the graph keeps the values it read then and "
                      "will not follow different ones", TracerWarning, stacklevel=3)
    graph = _Converter(ir, {id(p): n for n, p in params.items()}, {id(b): n for n, b in buffers.items()},
                       children).graph(_input_names(func, len(ir.inputs)))
    return graph, params, buffers, result


def trace(func, example_inputs=None, *, check_trace: bool = True, example_kwarg_inputs=None, strict: bool = True,
          **_torch_options) -> TracedModule:
    """A TracedModule that runs what `func` (an nn.Module or a function of tensors) did on `example_inputs`
    (a Tensor or a tuple of Tensors). A module's parameters and buffers are shared with the traced module
    under the same names; a function's captured tensors become constants. check_trace=True runs the graph
    once on the example inputs and warns if it disagrees with what `func` returned."""
    if example_kwarg_inputs:
        raise TypeError("clnet.jit.trace: example_kwarg_inputs is not supported; pass the inputs positionally")
    inputs = _as_tuple(example_inputs)
    graph, params, buffers, result = capture(func, inputs)
    module = func if isinstance(func, Module) else None
    name = type(func).__name__ if module is not None else getattr(func, "__name__", "function")
    traced = TracedModule(graph, params, buffers, dispatch.OPS, name,
                          training=module.training if module is not None else False)
    if check_trace and not _same(traced(*inputs), result):
        warnings.warn(f"clnet.jit.trace: the traced graph of {name} gives different results from the code on the "
                      "example inputs (random ops, or Python that read tensor values)", TracerWarning, stacklevel=2)
    return traced

"""clnet.onnx.load: an ONNX model as a clnet nn.Module that runs and fine-tunes.

    model = clnet.onnx.load("model.onnx")          # eval mode, parameters on the default device
    y = model(x)                                  # one output -> a Tensor, several -> a tuple
    model.train(); loss = F.mse_loss(model(x), t); loss.backward(); opt.step()

Float initializers of one or more dimensions become Parameters named as in the file ("fc.weight" is
`model.fc.weight` and the state_dict key "fc.weight"; names that are not Python identifiers are spelled
with underscores); the running statistics BatchNormalization reads are buffers; integer initializers and
Constant nodes stay host constants. Nodes whose inputs are all host constants are evaluated once when the
file is loaded. `forward` interprets the node list with the op table of clnet.onnx.ops: each node runs
clnet's own ops, so autograd records the graph as it would the equivalent clnet model.

The file is checked before anything runs: every operator against the table (one error lists every
unsupported operator), every initializer's data against its declared type and shape, every value defined
before it is used. (onnx's own checker is not used: it refuses valid files that PyTorch and onnxruntime
accept, such as graph outputs without a declared shape.) The module starts in eval mode
(ONNX files are inference graphs; `train()` makes BatchNormalization use batch statistics and Dropout drop,
as clnet.nn's layers do).
"""
from __future__ import annotations

import os

import numpy as np

from ..backend.devices import get_device
from ..errors import FileFormatError
from ..nn.module import Module
from ..nn.parameter import Parameter
from ..ops.creation import tensor as _make_tensor
from ..jit.scopes import lookup, place
from ..tensor import Tensor
from . import ops as _ops
from .ops.common import Context, Node, UnsupportedOperatorError
from .proto import numpy_dtype, require

_DOMAINS = ("", "ai.onnx")
_FOLDABLE = set(_ops.elementwise.OPS) | set(_ops.shape.OPS) | set(_ops.reduce.OPS)
# inputs that hold state, not weights: BatchNormalization's running mean and variance
_BUFFER_INPUTS = {"BatchNormalization": (3, 4)}


class InputSpec:
    """A graph input: name, dtype (None if the file does not say) and dims (int, a symbol name, or None)."""

    def __init__(self, name: str, dtype, dims):
        self.name, self.dtype, self.dims = name, dtype, dims

    def __repr__(self):
        dims = "x".join(str(d) if d is not None else "?" for d in self.dims) if self.dims is not None else "?"
        return f"{self.name}: {self.dtype if self.dtype is not None else '?'}[{dims}]"


class ImportedGraph:
    """The node list of an imported model, printable (`print(model.graph)`)."""

    def __init__(self, inputs, nodes, outputs, constants):
        self.inputs, self.nodes, self.outputs, self.constants = inputs, nodes, outputs, constants

    def __str__(self):
        lines = ["graph(" + ", ".join(repr(s) for s in self.inputs) + ") {"]
        for n in self.nodes:
            attrs = ", ".join(f"{k}={_short(v)}" for k, v in sorted(n.attrs.items()))
            lines.append(f"  {', '.join('%' + o for o in n.outputs if o)} = {n.op_type}"
                         f"{'[' + attrs + ']' if attrs else ''}({', '.join('%' + i if i else '_' for i in n.inputs)})")
        lines.append("  return (" + ", ".join("%" + o for o in self.outputs) + ")")
        lines.append("}")
        return "\n".join(lines)

    __repr__ = __str__


def _short(v):
    if isinstance(v, np.ndarray):
        return f"<{v.dtype}{list(v.shape)}>" if v.size > 8 else repr(v.tolist())
    return repr(v)


# --- reading the file ----------------------------------------------------------------------------------------
def _read(f):
    onnx = require()
    if isinstance(f, onnx.ModelProto):
        return f, "the ONNX model"
    if isinstance(f, (bytes, bytearray, memoryview)):
        data, where = bytes(f), "the ONNX bytes"
    elif hasattr(f, "read"):
        data, where = f.read(), getattr(f, "name", "the ONNX file object")
    else:
        where = os.fspath(f)
        if not os.path.exists(where):
            raise FileNotFoundError(f"no such file: {where}")
        try:
            return onnx.load(where), where
        except Exception as err:  # protobuf's DecodeError and the like: damaged or not ONNX at all
            raise FileFormatError(f"cannot load {where}: not a valid ONNX model ({type(err).__name__}: "
                                  f"{err})") from None
    try:
        return onnx.load_model_from_string(data), where
    except Exception as err:
        raise FileFormatError(f"cannot load {where}: not a valid ONNX model ({type(err).__name__}: {err})") from None


def _opset(model, where) -> int:
    versions = [o.version for o in model.opset_import if o.domain in _DOMAINS]
    if not versions:
        raise FileFormatError(f"cannot load {where}: it imports no version of the standard ONNX operator set")
    return int(versions[0])


def _attr_value(attr, node_name, op_type):
    onnx = require()
    kind = onnx.AttributeProto
    if attr.type == kind.GRAPH or attr.type == kind.GRAPHS:
        raise UnsupportedOperatorError(f"ONNX node {node_name!r} ({op_type}) has a subgraph attribute "
                                       f"{attr.name!r}; control flow is not supported by clnet")
    if attr.type == kind.SPARSE_TENSOR or attr.type == kind.SPARSE_TENSORS:
        raise UnsupportedOperatorError(f"ONNX node {node_name!r} ({op_type}): sparse tensor attributes are not "
                                       "supported by clnet")
    if attr.type == kind.TENSOR:
        return _array(attr.t, f"the {attr.name!r} attribute of ONNX node {node_name!r}")
    value = onnx.helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode("utf-8", "replace") for v in value]
    return value


def _array(proto, what) -> np.ndarray:
    onnx = require()
    numpy_dtype(proto.data_type, what)
    try:
        arr = onnx.numpy_helper.to_array(proto)
    except Exception as err:
        raise FileFormatError(f"{what} cannot be read: {type(err).__name__}: {err}") from None
    return np.array(arr, copy=True)


def _input_spec(value_info) -> InputSpec:
    t = value_info.type.tensor_type
    dtype = numpy_dtype(t.elem_type, f"graph input {value_info.name!r}") if t.elem_type else None
    dims = None
    if t.HasField("shape"):
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]
    return InputSpec(value_info.name, dtype, dims)


def _unsupported_report(graph, opset) -> str | None:
    missing = {}
    for n in graph.node:
        key = n.op_type if n.domain in _DOMAINS else f"{n.domain}::{n.op_type}"
        if n.domain not in _DOMAINS or n.op_type not in _ops.TABLE:
            missing[key] = missing.get(key, 0) + 1
    if not missing:
        return None
    listed = ", ".join(f"{k} ({v} node{'s' if v > 1 else ''})" for k, v in sorted(missing.items()))
    return f"unsupported ONNX operators: {listed} (opset {opset}); clnet runs: {', '.join(sorted(_ops.TABLE))}"


# --- the module ------------------------------------------------------------------------------------------------------
class OnnxModule(Module):
    """An imported ONNX graph: call it with the graph's inputs (positionally, or by name as keywords)."""

    def __init__(self, model, device=None, where: str = "the ONNX model"):
        super().__init__()
        graph = model.graph
        opset = _opset(model, where)
        report = _unsupported_report(graph, opset)
        if report:
            raise UnsupportedOperatorError(f"cannot import {where}: {report}")
        dev = get_device(device)
        inits = {t.name: _array(t, f"initializer {t.name!r}") for t in graph.initializer}
        nodes = [Node(n.op_type, n.name, tuple(n.input), tuple(n.output),
                      {a.name: _attr_value(a, n.name, n.op_type) for a in n.attribute}) for n in graph.node]
        buffer_names = {n.inputs[i] for n in nodes for i in _BUFFER_INPUTS.get(n.op_type, ()) if len(n.inputs) > i}
        refs, statics = {}, {}
        for name, arr in inits.items():
            if arr.dtype.kind == "f" and arr.ndim >= 1:
                kind = "buffer" if name in buffer_names else "param"
                t = _make_tensor(arr, device=dev)
                refs[name] = place(self, name, Parameter(t) if kind == "param" else t, kind == "param")
            else:
                statics[name] = arr
        inputs = [_input_spec(v) for v in graph.input if v.name not in inits]
        outputs = [v.name for v in graph.output]
        object.__setattr__(self, "opset", opset)
        object.__setattr__(self, "producer", f"{model.producer_name} {model.producer_version}".strip())
        object.__setattr__(self, "_refs", refs)
        object.__setattr__(self, "_inputs", inputs)
        object.__setattr__(self, "_outputs", outputs)
        object.__setattr__(self, "_uploads", {})
        object.__setattr__(self, "_statics", statics)
        object.__setattr__(self, "_static_ids", set())
        self._check_order(nodes, where)
        object.__setattr__(self, "_nodes", self._fold(nodes, dev))
        object.__setattr__(self, "_static_ids", {id(v) for v in self._statics.values()})
        object.__setattr__(self, "_last_use", self._plan_frees())
        self.eval()

    # --- building ---------------------------------------------------------------------------------
    def _check_order(self, nodes, where):
        defined = set(self._refs) | set(self._statics) | {s.name for s in self._inputs}
        for n in nodes:
            for i in n.inputs:
                if i and i not in defined:
                    raise FileFormatError(f"cannot load {where}: {n.where()} uses {i!r} before any node defines it "
                                          "(the graph is damaged or not in topological order)")
            defined.update(o for o in n.outputs if o)
        for o in self._outputs:
            if o not in defined:
                raise FileFormatError(f"cannot load {where}: the graph output {o!r} is never computed")

    def _fold(self, nodes, dev):
        """Evaluate, once, the nodes whose inputs are all host constants (shape arithmetic on constants)."""
        ctx = Context(self.opset, False, dev, {}, set())
        kept = []
        for n in nodes:
            if n.op_type in _FOLDABLE and all(not i or i in self._statics for i in n.inputs):
                out = _ops.TABLE[n.op_type](ctx, n, *[self._statics[i] if i else None for i in n.inputs])
                outs = tuple(np.asarray(v) if isinstance(v, np.generic) else v
                             for v in (out if isinstance(out, tuple) else (out,)))
                if all(isinstance(v, np.ndarray) for v in outs):
                    self._statics.update((name, v) for name, v in zip(n.outputs, outs) if name)
                    continue
            kept.append(n)
        return kept

    def _plan_frees(self):
        """For each node, the values nothing later reads (dropped after it runs, so memory is freed early)."""
        last = {}
        for k, n in enumerate(self._nodes):
            for i in n.inputs:
                if i:
                    last[i] = k
        keep = set(self._outputs) | set(self._refs) | set(self._statics)
        frees = [[] for _ in self._nodes]
        for name, k in last.items():
            if name not in keep:
                frees[k].append(name)
        return frees

    # --- running ----------------------------------------------------------------------------------
    @property
    def graph(self) -> ImportedGraph:
        return ImportedGraph(self._inputs, self._nodes, self._outputs, self._statics)

    @property
    def input_names(self) -> list:
        return [s.name for s in self._inputs]

    @property
    def output_names(self) -> list:
        return list(self._outputs)

    def _bind(self, args, kwargs) -> dict:
        names = self.input_names
        if len(args) > len(names):
            raise TypeError(f"the ONNX model takes {len(names)} input(s) ({', '.join(names)}), got {len(args)}")
        bound = dict(zip(names, args))
        for k, v in kwargs.items():
            if k not in names:
                raise TypeError(f"the ONNX model has no input {k!r} (its inputs: {', '.join(names)})")
            if k in bound:
                raise TypeError(f"input {k!r} given twice")
            bound[k] = v
        missing = [n for n in names if n not in bound]
        if missing:
            raise TypeError(f"the ONNX model needs input(s) {', '.join(missing)} (its inputs: {', '.join(names)})")
        symbols = {}
        for spec in self._inputs:
            v = bound[spec.name]
            if isinstance(v, np.ndarray):
                v = bound[spec.name] = _make_tensor(v, device=self._device_hint())
            if not isinstance(v, Tensor):
                raise TypeError(f"input {spec.name!r} must be a clnet Tensor, got {type(v).__name__}")
            self._check_input(spec, v, symbols)
        return bound

    def _check_input(self, spec, v, symbols):
        shape = tuple(v.shape)
        if spec.dtype is not None and v.dtype != spec.dtype:
            raise TypeError(f"input {spec.name!r} must be {spec.dtype}, got {v.dtype} (the model was exported "
                            f"for {spec!r})")
        if spec.dims is None:
            return
        if len(shape) != len(spec.dims):
            raise ValueError(f"input {spec.name!r} must have {len(spec.dims)} dimensions ({spec!r}), got shape "
                             f"{shape}")
        for i, (want, got) in enumerate(zip(spec.dims, shape)):
            if isinstance(want, int) and want > 0 and want != got:
                raise ValueError(f"input {spec.name!r} has size {got} in dimension {i}, the model needs {want} "
                                 f"({spec!r}; export with dynamic axes to vary it)")
            if isinstance(want, str):
                if symbols.setdefault(want, got) != got:
                    raise ValueError(f"input {spec.name!r} has {want}={got} in dimension {i}, another input has "
                                     f"{want}={symbols[want]}")

    def _device_hint(self):
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return get_device(None)

    def forward(self, *args, **kwargs):
        bound = self._bind(args, kwargs)
        env = dict(self._statics)
        for name, (owner, leaf) in self._refs.items():
            env[name] = lookup(owner, leaf)
        env.update(bound)
        device = next(iter(bound.values())).device if bound else self._device_hint()
        ctx = Context(self.opset, self.training, device, self._uploads, self._static_ids)
        for node, frees in zip(self._nodes, self._last_use):
            out = _ops.TABLE[node.op_type](ctx, node, *[env[i] if i else None for i in node.inputs])
            outs = out if isinstance(out, tuple) else (out,)
            for name, v in zip(node.outputs, outs):
                if name:
                    env[name] = np.asarray(v) if isinstance(v, np.generic) else v
            for name in frees:
                env.pop(name, None)
        results = tuple(ctx.tensor(env[o]) for o in self._outputs)
        return results[0] if len(results) == 1 else results

    def extra_repr(self) -> str:
        ops = {}
        for n in self._nodes:
            ops[n.op_type] = ops.get(n.op_type, 0) + 1
        body = ", ".join(f"{k}x{v}" if v > 1 else k for k, v in ops.items())
        return (f"inputs=[{', '.join(repr(s) for s in self._inputs)}], outputs={self._outputs}, opset={self.opset}, "
                f"nodes: {body}")


def load(f, device=None) -> OnnxModule:
    """Import the ONNX model in `f` (a path, a file object, bytes, or an onnx.ModelProto) as an OnnxModule on
    `device` (default: the default device), in eval mode."""
    model, where = _read(f)
    return OnnxModule(model, device, where)


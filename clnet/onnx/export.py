"""clnet.onnx.export: a clnet model as an ONNX file, with torch.onnx.export's arguments and meaning.

    clnet.onnx.export(model, dummy_input, "model.onnx", input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})

The model runs once on `args` under clnet.jit.trace (in eval mode unless `training` says otherwise, as
PyTorch does); each op row of the traced graph becomes ONNX nodes by the table in export_rules.py (pointwise
rows through their C expressions, export_pointwise.py); parameters and buffers become initializers named
by their state_dict names. With `dynamic_axes`, the sizes the code computed from those axes are found by
tracing again at other sizes (clnet/onnx/dynamic.py) and computed in the graph from the inputs' shapes,
so the file runs at any size of those axes. The result passes onnx's checker (with shape inference)
before it is written.
"""
from __future__ import annotations

import enum
import inspect
import os

import numpy as np

from .. import __version__
from ..autograd import no_grad
from ..jit.graph import Ref
from ..core import dispatch
from ..jit.trace import capture
from ..nn.module import Module
from ..tensor import Tensor
from . import dynamic
from .builder import GraphBuilder
from .export_pointwise import export_pointwise
from .export_rules import RULES
from .ops.common import UnsupportedOperatorError
from .proto import elem_type, require

_DEFAULT_OPSET = 17
_OPSETS = range(13, 22)


class TrainingMode(enum.Enum):
    """torch.onnx.TrainingMode: EVAL (the default) exports the model in eval mode, TRAINING in train mode,
    PRESERVE in the mode it is in."""
    EVAL = 0
    PRESERVE = 1
    TRAINING = 2


class Emitter:
    """What rules use: ONNX names of tensor operands, dtypes and traced shapes, casts, constants,
    shape-like inputs that may depend on dynamic axes, and the builder."""

    def __init__(self, graph, builder, state: dict, input_names, symbols):
        self.g, self.b, self.state = graph, builder, state
        self.input_names = input_names
        self.symbols = symbols            # dynamic.Symbols: SymInt args and value dims, or None
        self.names = {}                   # Ref -> ONNX value name
        self.producers = {}               # value number -> the graph Node that made it
        self.index_of = {id(n): i for i, n in enumerate(graph.walk())}  # a row's place in Symbols
        self._dims = {}

    # --- what a reference is ------------------------------------------------------------------------------
    @staticmethod
    def is_tensor(v) -> bool:
        return isinstance(v, Ref)

    def _spec(self, ref: Ref):
        if ref.kind == "input":
            s = self.g.inputs[ref.key]
            return s.dtype, s.shape
        if ref.kind in ("param", "buffer"):
            arr = self.state[ref.key]
            return arr.dtype, arr.shape
        if ref.kind == "const":
            arr = self.g.constants[ref.key]
            return arr.dtype, arr.shape
        s = self.g.values[ref.key]
        return s.dtype, s.shape

    def dtype_of(self, v):
        if isinstance(v, Ref):
            return np.dtype(self._spec(v)[0])
        if isinstance(v, (tuple, list)):
            return self.dtype_of(next(r for r in v if isinstance(r, Ref)))
        if isinstance(v, (bool, np.bool_)):
            return np.dtype(np.bool_)
        if isinstance(v, (int, np.integer)):
            return np.dtype(np.int64)
        return np.dtype(np.float32)

    def shape_of(self, v) -> tuple:
        shape = tuple(self._spec(v)[1])
        if self.symbols is not None and v.kind in ("value", "input"):
            shape = self.symbols.shape(v, shape)
        return shape

    def common_dtype(self, a, b):
        """The dtype a binary op computes in: the tensors' promotion; a Python number adopts the tensor's dtype
        unless it is a float meeting an integer tensor (then float32), as clnet promotes."""
        ta, tb = isinstance(a, Ref), isinstance(b, Ref)
        if ta and tb:
            return np.result_type(self.dtype_of(a), self.dtype_of(b))
        t, s = (a, b) if ta else (b, a)
        dt = self.dtype_of(t)
        if isinstance(s, float) and dt.kind in "biu":
            return np.dtype(np.float32)
        if isinstance(s, (int, np.integer)) and not isinstance(s, bool) and dt.kind == "b":
            return np.dtype(np.int64)
        return dt

    def reshaped_from(self, ref):
        """The tensor a value is a reshape/view of (one step back), or None."""
        if not isinstance(ref, Ref) or ref.kind != "value":
            return None
        node = self.producers.get(ref.key)
        if node is None or node.op not in ("reshape", "view") or not isinstance(node.args[0], Ref):
            return None
        return node.args[0]

    # --- ONNX names --------------------------------------------------------------------------------------------
    def name(self, ref: Ref) -> str:
        if ref not in self.names:
            if ref.kind in ("param", "buffer"):
                self.names[ref] = self.b.initializer(ref.key, self.state[ref.key])
            elif ref.kind == "const":
                self.names[ref] = self.b.const(self.g.constants[ref.key])
            else:
                raise KeyError(ref)
        return self.names[ref]

    def x(self, v, dtype=None) -> str:
        """An operand as an ONNX value: a tensor by its name (cast to `dtype` when given and different), a
        Python number or list as a constant of `dtype`."""
        if isinstance(v, Ref):
            name = self.name(v)
            if dtype is not None and np.dtype(dtype) != self.dtype_of(v):
                return self.cast(name, dtype)
            return name
        if v is None:
            return ""
        dt = np.dtype(dtype) if dtype is not None else self.dtype_of(v)
        if isinstance(v, dynamic.SymInt):
            return self.cast(self.scalar_input(v, np.int64), dt) if dt != np.int64 else self.scalar_input(v, dt)
        return self.b.const(np.asarray(v, dt))

    def cast(self, name: str, dtype) -> str:
        return self.b.node("Cast", [name], to=elem_type(dtype, "a cast"))

    @staticmethod
    def elem(dtype) -> int:
        return elem_type(dtype, "a value")

    # --- shapes and reductions ------------------------------------------------------------------------------
    def dim(self, ref: Ref, axis: int) -> str:
        """Input `ref`'s size along `axis` as a 1-element int64 tensor."""
        key = (ref, axis)
        if key not in self._dims:
            self._dims[key] = self.b.node("Shape", [self.name(ref)], start=axis, end=axis + 1)
        return self._dims[key]

    def shape_input(self, values) -> str:
        """A 1-D int64 tensor of `values` (ints, and SymInts computed from the inputs' dynamic sizes)."""
        values = list(values)
        for v in values:
            if isinstance(v, dynamic.FixedDim):
                raise UnsupportedOperatorError(v.why)
        if not any(isinstance(v, dynamic.SymInt) for v in values):
            return self.b.ints([int(v) for v in values])
        parts, run = [], []
        for v in values:
            if isinstance(v, dynamic.SymInt):
                if run:
                    parts.append(self.b.ints(run))
                    run = []
                parts.append(v.emit(self))
            else:
                run.append(int(v))
        if run:
            parts.append(self.b.ints(run))
        return self.b.node("Concat", parts, axis=0) if len(parts) > 1 else parts[0]

    def scalar_input(self, v, dtype) -> str:
        """A 0-d tensor of `v` (an int, float or SymInt) in `dtype`."""
        if isinstance(v, dynamic.SymInt):
            scalar = self.b.node("Squeeze", [v.emit(self), self.b.ints([0])])
            return scalar if np.dtype(dtype) == np.int64 else self.cast(scalar, dtype)
        return self.b.const(np.asarray(v, dtype))

    def count(self, ref: Ref, axes, dtype) -> str:
        """How many elements of `ref` the axes hold, as a 0-d tensor of `dtype` (computed from the input's
        shape when a dynamic axis is among them)."""
        shape = self.shape_of(ref)
        sizes = [shape[i] for i in axes]
        if not any(isinstance(s, (dynamic.SymInt, dynamic.FixedDim)) for s in sizes):
            return self.b.const(np.asarray(int(np.prod([int(s) for s in sizes])), dtype))
        dims = self.b.node("Gather", [self.b.node("Shape", [self.name(ref)]), self.b.ints(axes)], axis=0)
        return self.cast(self.b.node("ReduceProd", [dims], keepdims=0), dtype)

    def reduce(self, op_type, x, axes, keep) -> str:
        """A Reduce* node over `axes` (None: all), with axes as an input where the opset wants it."""
        keepdims = int(bool(keep))
        if axes is None:
            return self.b.node(op_type, [x], keepdims=keepdims)
        if op_type == "ReduceSum" or self.b.opset >= 18:
            return self.b.node(op_type, [x, self.b.ints(axes)], keepdims=keepdims)
        return self.b.node(op_type, [x], axes=list(axes), keepdims=keepdims)


def _bind(op_name, fn, args, kwargs) -> dict:
    try:
        bound = inspect.signature(fn).bind(*args, **kwargs)
    except TypeError as err:
        raise UnsupportedOperatorError(f"clnet.onnx.export: the row {op_name!r} has arguments its op does not take "
                                       f"({err})") from None
    bound.apply_defaults()
    return dict(bound.arguments)


def _emit(e: Emitter, node, ops) -> None:
    """Emit one row by its rule; a row without one (a composite op) through the rows it ran inside it."""
    rule = export_pointwise if node.op == "pointwise" else RULES.get(node.op)
    if rule is None or node.op not in ops:
        if not node.children:
            raise UnsupportedOperatorError(f"clnet.onnx.export: the op {node.op!r} has no ONNX rule yet (supported: "
                                           f"{', '.join(sorted(RULES))}, every pointwise op, and ops made of them)")
        if node.own_kernels:
            raise UnsupportedOperatorError(f"clnet.onnx.export: the op {node.op!r} has no ONNX rule yet, and it runs "
                                           "kernels of its own besides the ops inside it, so those cannot stand for "
                                           "it")
        if e.symbols is not None:
            e.symbols.check_children(e.index_of[id(node)])
        for child in node.children:
            _emit(e, child, ops)
        for r in e.g.refs_in(node.outputs):
            inner = e.g.aliases.get(r.key)
            if inner is None or Ref("value", inner) not in e.names:
                raise UnsupportedOperatorError(f"clnet.onnx.export: the op {node.op!r} has no ONNX rule, and its "
                                               "result is not made by the ops it runs inside")
            e.names[r] = e.names[Ref("value", inner)]
        return
    args, kwargs = node.args, node.kwargs
    if e.symbols is not None:
        args, kwargs = e.symbols.arguments(e.index_of[id(node)], args, kwargs)
    a = _bind(node.op, ops[node.op], args, kwargs)
    _bind_results(e, node.outputs, rule(e, a, node.outputs), node.op)


def _emit_nodes(e: Emitter, graph, ops) -> None:
    for node in graph.walk():
        for r in graph.refs_in(node.outputs):
            e.producers[r.key] = node
    for node in graph.nodes:
        _emit(e, node, ops)


def _bind_results(e, tree, result, op):
    if tree is None:
        return
    if isinstance(tree, Ref):
        if isinstance(result, (tuple, list)):
            raise RuntimeError(f"clnet.onnx.export: the rule for {op!r} returned several values for one result")
        e.names[tree] = result
        return
    result = result if isinstance(result, (tuple, list)) else (result,)
    if len(result) != len(tree):
        raise RuntimeError(f"clnet.onnx.export: the rule for {op!r} returned {len(result)} values, the row has "
                           f"{len(tree)} results")
    for t, r in zip(tree, result):
        _bind_results(e, t, r, op)


def _name_outputs(e: Emitter, outs, names) -> list:
    """Give the graph's outputs the names asked for: a value made by a node is renamed; an input, an
    initializer or a value already given out under another name goes through an Identity."""
    renamed = {}
    for ref, name in zip(outs, names):
        value = e.names[ref] if ref.kind == "value" else e.name(ref)
        if ref.kind == "value" and value not in renamed and value not in e.input_names \
                and value not in e.b.initializer_names():
            e.b.rename(value, name)
            renamed[value] = name
        else:
            e.b.node("Identity", [renamed.get(value, value)], outputs=[e.b.reserve(name)])
    return list(names)


def _flat_outputs(tree) -> list:
    if isinstance(tree, Ref):
        return [tree]
    if isinstance(tree, (tuple, list)):
        return [r for item in tree for r in _flat_outputs(item)]
    if tree is None:
        return []
    raise UnsupportedOperatorError(f"clnet.onnx.export: the model returns a {type(tree).__name__}; ONNX outputs "
                                   "are tensors (return a tensor or a tuple of tensors)")


def _as_inputs(args) -> tuple:
    if isinstance(args, Tensor):
        return (args,)
    if isinstance(args, (tuple, list)):
        if args and isinstance(args[-1], dict):
            raise UnsupportedOperatorError("clnet.onnx.export: keyword inputs (a dict at the end of args) are not "
                                           "supported; pass every input positionally")
        return tuple(args)
    raise TypeError(f"clnet.onnx.export: args must be a Tensor or a tuple of Tensors, got {type(args).__name__}")


def _training_mode(model, training):
    if training is None or training is False or training == TrainingMode.EVAL:
        return False
    if training is True or training == TrainingMode.TRAINING:
        return True
    if training == TrainingMode.PRESERVE:
        return model.training if isinstance(model, Module) else False
    raise ValueError(f"clnet.onnx.export: training must be a clnet.onnx.TrainingMode, got {training!r}")


def _names(given, count, default, what) -> list:
    given = list(given or [])
    if len(given) > count:
        raise ValueError(f"clnet.onnx.export: {len(given)} {what} names for {count} {what}s")
    if len(set(given)) != len(given):
        raise ValueError(f"clnet.onnx.export: the {what} names {given} repeat a name")
    return given + [default(i) for i in range(len(given), count)]


def _dynamic_axes_map(dynamic_axes, input_names, output_names) -> dict:
    """{name: {axis: symbol}} from torch's two spellings ({name: {axis: symbol}} or {name: [axes]})."""
    out = {}
    known = set(input_names) | set(output_names)
    for name, axes in (dynamic_axes or {}).items():
        if name not in known:
            raise ValueError(f"clnet.onnx.export: dynamic_axes names {name!r}, which is neither an input nor an output "
                             f"name ({', '.join(sorted(known))})")
        if isinstance(axes, dict):
            out[name] = {int(a): str(s) for a, s in axes.items()}
        else:
            out[name] = {int(a): f"{name}_dynamic_axes_{i + 1}" for i, a in enumerate(axes)}
    return out


def graph_text(proto) -> str:
    """The ONNX graph as text, initializers listed by name, type and shape (not their values)."""
    onnx = require()
    g = onnx.GraphProto()
    g.CopyFrom(proto.graph)
    weights = [onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in g.initializer]
    del g.initializer[:]
    g.input.extend(weights)
    return onnx.printer.to_text(g)


def _write(model, f):
    if f is None:
        return
    data = model.SerializeToString()
    if hasattr(f, "write"):
        f.write(data)
        return
    path = os.fspath(f)
    tmp = path + ".clnet-tmp"
    try:
        with open(tmp, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


class _Traced:
    """What export needs from the traced model: graph, weights, input/output names, dynamic sizes."""

    def __init__(self, model, inputs, training, input_names, output_names, dynamic_axes):
        was_training = model.training if isinstance(model, Module) else None
        if was_training is not None:
            model.train(_training_mode(model, training))
        try:
            with no_grad():
                self.graph, params, buffers, _ = capture(model, inputs, children=True)
                graph = self.graph
                self.in_names = _names(input_names, len(graph.inputs), lambda i: graph.inputs[i].name, "input")
                self.outs = _flat_outputs(graph.outputs)
                n_out = len(self.outs)
                self.out_names = _names(output_names, n_out, lambda i: "output" if n_out == 1 else f"output{i}",
                                        "output")
                self.axes = _dynamic_axes_map(dynamic_axes, self.in_names, self.out_names)
                by_input = {i: self.axes[n] for i, n in enumerate(self.in_names) if n in self.axes}
                self.symbols = dynamic.analyse(model, inputs, graph, by_input) if by_input else None
        finally:
            if was_training is not None:
                model.train(was_training)
        self.state = {n: p.detach().numpy() for n, p in params.items()}
        self.state.update({n: b.detach().numpy() for n, b in buffers.items()})

    def value_infos(self, e: Emitter):
        """The typed graph inputs and outputs, dynamic axes as symbols (outputs' also where a size follows one)."""
        b, axes = e.b, self.axes
        inputs = [b.value_info(n, spec.dtype, [axes.get(n, {}).get(d, s) for d, s in enumerate(spec.shape)])
                  for n, spec in zip(self.in_names, self.graph.inputs)]
        outputs = []
        for n, ref in zip(self.out_names, self.outs):
            shape = list(e.shape_of(ref)) if ref.kind in ("value", "input") else list(e._spec(ref)[1])
            dims = [axes.get(n, {}).get(d, s.symbol if isinstance(s, dynamic.SymInt) else int(s))
                    for d, s in enumerate(shape)]
            outputs.append(b.value_info(n, e.dtype_of(ref), dims))
        return inputs, outputs


def export(model, args=(), f=None, *, export_params: bool = True, verbose: bool = False, training=None,
           input_names=None, output_names=None, opset_version=None, dynamic_axes=None,
           keep_initializers_as_inputs: bool = False, do_constant_folding: bool = True, dynamo=None,
           external_data=None, optimize=None, **unsupported):
    """Export `model` (an nn.Module or a function of tensors) run on `args` to the ONNX file `f` (a path or a
    binary file object); returns the onnx.ModelProto. The arguments have torch.onnx.export's meaning;
    `dynamo`, `external_data` and `optimize` are accepted and change nothing (clnet has one exporter)."""
    onnx = require()
    if unsupported:
        raise TypeError(f"clnet.onnx.export: unsupported arguments {sorted(unsupported)}")
    opset = _DEFAULT_OPSET if opset_version is None else int(opset_version)
    if opset not in _OPSETS:
        raise ValueError(f"clnet.onnx.export: opset_version {opset} is not supported (13 to {_OPSETS[-1]})")
    traced = _Traced(model, _as_inputs(args), training, input_names, output_names, dynamic_axes)
    b = GraphBuilder(opset)
    for n in traced.in_names:
        b.reserve(n)
    e = Emitter(traced.graph, b, traced.state, traced.in_names, traced.symbols)
    for i, n in enumerate(traced.in_names):
        e.names[Ref("input", i)] = n
    _emit_nodes(e, traced.graph, dispatch.OPS)
    final = _name_outputs(e, traced.outs, traced.out_names)
    weights_are_inputs = not export_params or keep_initializers_as_inputs
    if do_constant_folding and not weights_are_inputs:  # (folding would put weights into new initializers)
        b.fold_constants(final)
    b.drop_unused(final)
    inputs, outputs = traced.value_infos(e)
    if weights_are_inputs:
        inputs += [b.value_info(t.name, np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type)), list(t.dims))
                   for t in b.initializers if t.name in traced.state]
        if not export_params:
            b.initializers = [t for t in b.initializers if t.name not in traced.state]
    name = type(model).__name__ if isinstance(model, Module) else getattr(model, "__name__", "function")
    proto = b.model(inputs, outputs, producer=__version__, graph_name=f"main_graph_{name}")
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as err:  # an exporter bug: say which model and what
        raise RuntimeError(f"clnet.onnx.export made a model onnx's checker rejects ({type(err).__name__}: {err}); "
                           "please report it with the model") from err
    if verbose:
        print(graph_text(proto))
    _write(proto, f)
    return proto


__all__ = ["export", "TrainingMode"]

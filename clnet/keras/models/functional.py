"""The graph of a functional model: which nodes lie between its inputs and outputs, in which order its
layers are listed, how it runs on real tensors, and its config (Keras 3's format).

The order follows Keras's rule, because saved weight files name layers by their position: nodes are
found by a depth-first walk from the outputs; an operation's depth is its longest distance to an output;
operations are listed by decreasing depth, ties in the order the walk first met them.
"""
from __future__ import annotations

import inspect

import numpy as np

import clnet
from clnet import dtypes as _dt

from .. import tree
from ..layers.base import InputLayer, Layer
from ..ops.symbolic import FunctionOp, KerasTensor, Node, is_float_dtype
from ..saving.object_registration import builtin_objects
from ..saving.serialization_lib import FileFormatError, deserialize_layer, serialize_layer


def _node_of(tensor):
    op, node_index, _ = tensor._keras_history
    return op._inbound_nodes[node_index]


def map_graph(inputs, outputs):
    """(nodes by depth, operations in Keras's order) of the graph from `inputs` to `outputs`."""
    finished, in_progress, ordered, first_seen = set(), set(), [], {}
    input_ids = {id(t) for t in inputs}

    def visit(tensor):
        if tensor._keras_history is None:
            raise ValueError(f"Graph disconnected: {tensor} was not produced by keras.Input or a layer call, so the "
                             "model cannot reach it from its inputs")
        node = _node_of(tensor)
        if id(node) in finished:
            return
        if not node.is_input and id(tensor) in input_ids:
            finished.add(id(node))
            return
        if id(node) in in_progress:
            raise ValueError(f"Tensor {tensor} from operation '{node.operation.name}' is part of a cycle.")
        first_seen.setdefault(id(node.operation), len(first_seen))
        in_progress.add(id(node))
        if not node.is_input:
            for x in node.input_tensors:
                visit(x)
        finished.add(id(node))
        in_progress.discard(id(node))
        ordered.append(node)

    for out in outputs:
        visit(out)
    in_graph = {id(n) for n in ordered}
    node_depth, op_depth, ops = {}, {}, {}
    for node in reversed(ordered):
        depth = max(node_depth.setdefault(id(node), 0), op_depth.get(id(node.operation), 0))
        op_depth[id(node.operation)] = depth
        node_depth[id(node)] = depth
        ops[id(node.operation)] = node.operation
        for parent in node.parent_nodes:
            if id(parent) in in_graph:
                node_depth[id(parent)] = max(depth + 1, node_depth.get(id(parent), 0))
    for t in inputs:
        node = _node_of(t)
        if id(node.operation) not in op_depth and node.is_input:
            op_depth[id(node.operation)], first_seen[id(node.operation)] = 0, -1
            node_depth[id(node)], ops[id(node.operation)] = 0, node.operation
            ordered.append(node)
    by_depth = {}
    for node in ordered:
        by_depth.setdefault(node_depth[id(node)], []).append(node)
    operations = sorted(ops.values(), key=lambda op: (-op_depth[id(op)], first_seen[id(op)]))
    computable = {id(t) for t in inputs}
    done = []
    for depth in sorted(by_depth, reverse=True):
        for node in by_depth[depth]:
            if node.is_input and not any(id(t) in computable for t in node.outputs):
                raise ValueError(f"Graph disconnected: cannot obtain value for tensor {node.outputs[0]} at layer "
                                 f"'{node.operation.name}': it is a keras.Input that is not among the model's "
                                 f"inputs. The following previous layers were accessed without issue: {done}")
            for x in node.input_tensors:
                if id(x) not in computable:
                    raise ValueError(f"Graph disconnected: cannot find parent for tensor {x} at operation "
                                     f"'{node.operation.name}'. The following previous operations were accessed "
                                     f"without issue: {done}")
            done.append(node.operation.name)
            computable.update(id(t) for t in node.outputs)
    names = [op.name for op in operations]
    for name in names:
        if names.count(name) != 1:
            raise ValueError(f'The name "{name}" is used {names.count(name)} times in the model. All operation names '
                             "should be unique.")
    return by_depth, operations


class FunctionalGraph:
    """The nodes between a model's inputs and outputs, and how to run them on real tensors."""

    def __init__(self, inputs, outputs):
        self.inputs_struct, self.outputs_struct = inputs, outputs
        self.inputs, self.outputs = tree.flatten(inputs), tree.flatten(outputs)
        for what, items in (("inputs", self.inputs), ("outputs", self.outputs)):
            for t in items:
                if not isinstance(t, KerasTensor):
                    raise ValueError(f"All `{what}` values must be KerasTensors (from keras.Input and layer calls). "
                                     f"Received: {what}={t!r} of type {type(t).__name__}")
        for t in self.inputs:
            if t._keras_history is None:
                raise ValueError(f"{t} is not the output of keras.Input(): a model's inputs must be keras.Input() "
                                 "tensors (or tensors made from them by layers)")
        self.nodes_by_depth, self.operations = map_graph(self.inputs, self.outputs)
        self.nodes = [n for d in sorted(self.nodes_by_depth, reverse=True) for n in self.nodes_by_depth[d]]
        self._node_ids = {id(n) for n in self.nodes}
        self.run_order = [n for n in self.nodes if not n.is_input and n.input_tensors]

    @property
    def layers(self):
        return [op for op in self.operations if isinstance(op, Layer)]

    # --- running ----------------------------------------------------------------------------------
    def standardize_inputs(self, inputs):
        """The flat list of input tensors, matched by name when given a dict, converted to the Inputs' dtypes."""
        if isinstance(inputs, dict) and not isinstance(self.inputs_struct, dict):
            names = [t.name for t in self.inputs]
            missing = [n for n in names if n not in inputs]
            if missing:
                raise ValueError(f"Missing data for input {missing[0]!r}. You passed a data dictionary with keys "
                                 f"{sorted(inputs)}. Expected the following keys: {names}")
            flat = [inputs[n] for n in names]
        elif isinstance(self.inputs_struct, dict) and isinstance(inputs, dict):
            missing = [k for k in self.inputs_struct if k not in inputs]
            if missing:
                raise ValueError(f"Missing data for input {missing[0]!r}. You passed a data dictionary with keys "
                                 f"{sorted(inputs)}. Expected the following keys: {sorted(self.inputs_struct)}")
            flat = tree.flatten({k: inputs[k] for k in self.inputs_struct})
        else:
            flat = tree.flatten(inputs) if isinstance(inputs, (list, tuple, dict)) else [inputs]
        if len(flat) != len(self.inputs):
            raise ValueError(f"The model expects {len(self.inputs)} input(s), but it received {len(flat)} input "
                             f"tensors. Inputs received: {_describe(inputs)}")
        return [_adjust(x, spec) for x, spec in zip(flat, self.inputs)]

    def run(self, flat_inputs):
        values = {id(spec): x for spec, x in zip(self.inputs, flat_inputs)}
        for node in self.run_order:
            if not all(id(t) in values for t in node.input_tensors):
                continue
            args, kwargs = tree.map_structure(
                lambda v: values[id(v)] if isinstance(v, KerasTensor) else v, node.arguments)
            outputs = node.operation(*args, **kwargs)
            for spec, out in zip(node.outputs, tree.flatten(outputs)):
                values[id(spec)] = out
        return tree.pack_sequence_as(self.outputs_struct, [values[id(t)] for t in self.outputs])

    # --- config (Keras 3's format) ----------------------------------------------------------------
    def node_index(self, op, node):
        """A node's index among the nodes of `op` that belong to this graph (what configs store)."""
        kept = [n for n in op._inbound_nodes if id(n) in self._node_ids]
        return kept.index(node)

    def _history(self, tensor):
        op, node_index, tensor_index = tensor._keras_history
        return [op.name, self.node_index(op, op._inbound_nodes[node_index]), tensor_index]

    def _serialize_arg(self, value):
        if isinstance(value, KerasTensor):
            return {"class_name": "__keras_tensor__", "config": {"shape": list(value.shape), "dtype": value.dtype,
                                                                 "keras_history": self._history(value)}}
        if isinstance(value, (list, tuple)):
            return [self._serialize_arg(v) for v in value]
        if isinstance(value, dict):
            return {k: self._serialize_arg(v) for k, v in value.items()}
        if isinstance(value, slice):
            return {"class_name": "__slice__", "config": {"start": self._serialize_arg(value.start),
                                                          "stop": self._serialize_arg(value.stop),
                                                          "step": self._serialize_arg(value.step)}}
        if value is Ellipsis:
            return {"class_name": "__ellipsis__", "config": {}}
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, np.generic):
            return value.item()
        raise ValueError(f"an argument of type {type(value).__name__} in a layer call cannot be saved in the model's "
                         "config")

    def get_config(self):
        layers = []
        for op in self.operations:
            entry = _serialize_operation(op)
            entry["name"] = op.name
            entry["inbound_nodes"] = [{"args": self._serialize_arg(list(n.arguments[0])),
                                       "kwargs": self._serialize_arg(n.arguments[1])}
                                      for n in op._inbound_nodes if id(n) in self._node_ids and not n.is_input]
            layers.append(entry)

        def refs(struct):
            return tree.map_structure(self._history, struct)
        return {"layers": layers, "input_layers": refs(self.inputs_struct), "output_layers": refs(self.outputs_struct)}


def _serialize_operation(op):
    if isinstance(op, Layer):
        return serialize_layer(op)
    if isinstance(op, FunctionOp):
        return {"module": "keras.src.ops.numpy", "class_name": op.class_name, "config": {"name": op.name},
                "registered_name": op.class_name}
    raise ValueError(f"operation {op!r} cannot be saved")


def _describe(inputs):
    return tree.map_structure(lambda x: f"<{type(x).__name__} shape={tuple(getattr(x, 'shape', ()))}>", inputs)


def _adjust(x, spec):
    """Input data as a tensor of the Input's dtype and rank (a missing or extra trailing 1 is fixed, as Keras)."""
    if not isinstance(x, clnet.Tensor):
        arr = np.asarray(x)
        if arr.dtype == object:
            raise TypeError(f"cannot convert the input for {spec.name!r} ({type(x).__name__}) to a tensor")
        if arr.dtype.kind in "fiub" and np.dtype(spec.dtype) != arr.dtype:
            arr = arr.astype(spec.dtype)
        x = clnet.tensor(arr)
    elif x.dtype != np.dtype(spec.dtype) and (_dt.is_floating(x.dtype) != is_float_dtype(spec.dtype) or
                                               _dt.is_floating(x.dtype)):
        x = x.to(dtype=_dt.as_dtype(spec.dtype))
    want = len(spec.shape)
    if x.ndim == want - 1 and spec.shape[-1] == 1:
        x = x.unsqueeze(-1)
    elif x.ndim == want + 1 and x.shape[-1] == 1:
        x = x.squeeze(-1)
    return x


# --- rebuilding from a config -----------------------------------------------------------------------
def graph_from_config(config, custom_objects=None):
    """(inputs, outputs) KerasTensors rebuilt from a functional config: layers first, then their nodes in an order
    where each node's inputs exist (Keras's algorithm)."""
    entries = config.get("layers")
    if not isinstance(entries, list) or not entries:
        raise FileFormatError("a functional model config needs a non-empty list of layers")
    created, queues = {}, {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("inbound_nodes", []), list):
            raise FileFormatError(f"a layer entry of the functional config is malformed: {str(entry)[:200]}")
        op = _deserialize_operation(entry, custom_objects)
        name = entry.get("name") or op.name
        created[name] = op
        queues[name] = list(entry.get("inbound_nodes") or [])
    node_map = {(name, 0): 0 for name, op in created.items() if isinstance(op, InputLayer)}
    done = {name: 0 for name in created}
    while any(queues.values()):
        progressed = False
        for name, queue in queues.items():
            while queue:  # a layer's nodes in their saved order; stop at the first whose inputs are not made yet
                try:
                    args, kwargs = _node_args(queue[0], created, node_map)
                except KeyError:
                    break
                op = created[name]
                if isinstance(op, FunctionOp) and op.op_name == "get_item" and len(args) == 2 and \
                        isinstance(args[1], list):
                    args = (args[0], tuple(args[1]))  # an index tuple is saved as a list
                before = len(op._inbound_nodes)
                op(*args, **_call_kwargs(op, kwargs))
                node_map[(name, done[name])] = before
                done[name] += 1
                queue.pop(0)
                progressed = True
        if not progressed:
            names = sorted(n for n, q in queues.items() if q)
            raise FileFormatError(f"the functional config cannot be rebuilt: the inputs of layer(s) {names} are "
                                  "never produced (is a layer missing from the config?)")

    def tensor(ref):
        if not isinstance(ref, list) or len(ref) != 3:
            raise FileFormatError(f"malformed input/output reference {ref!r} in the functional config")
        name, node_index, tensor_index = ref
        if name not in created or (name, node_index) not in node_map:
            raise FileFormatError(f"the functional config refers to {ref!r}, which is not defined before use")
        return created[name]._inbound_nodes[node_map[(name, node_index)]].outputs[tensor_index]

    outputs = _map_refs(config.get("output_layers"), tensor)
    if isinstance(outputs, list) and len(outputs) == 1:
        outputs = outputs[0]  # tf.keras 2 lists even a single output; Keras 3 returns one tensor from it
    return _map_refs(config.get("input_layers"), tensor), outputs


def _call_kwargs(op, kwargs):
    """A saved call's keyword arguments without the unset ones this layer's call() does not take (Keras
    records `mask=None` for every layer that accepts a mask; clnet's BatchNormalization does not)."""
    if not kwargs or not isinstance(op, Layer):
        return kwargs
    params = inspect.signature(op.call).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params or v is not None}


def _map_refs(struct, fn):
    if isinstance(struct, list) and len(struct) == 3 and isinstance(struct[0], str) and isinstance(struct[1], int):
        return fn(struct)
    if isinstance(struct, dict):
        return {k: _map_refs(v, fn) for k, v in struct.items()}
    if isinstance(struct, list):
        return [_map_refs(v, fn) for v in struct]
    raise FileFormatError(f"malformed input/output reference {struct!r} in the functional config")


def _node_args(node_data, created, node_map):
    if isinstance(node_data, list):  # older Keras: [[layer, node, tensor, kwargs], ...]
        args = [created[n]._inbound_nodes[node_map[(n, i)]].outputs[t] for n, i, t, *_ in node_data]
        return (args[0] if len(args) == 1 else args,), {}

    def resolve(value):
        if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
            name, node_index, tensor_index = value["config"]["keras_history"]
            return created[name]._inbound_nodes[node_map[(name, node_index)]].outputs[tensor_index]
        if isinstance(value, dict) and value.get("class_name") == "__tuple__":
            return tuple(resolve(v) for v in value["config"]["value"])
        if isinstance(value, dict) and value.get("class_name") == "__slice__":
            c = value.get("config") or {}
            return slice(c.get("start"), c.get("stop"), c.get("step"))
        if isinstance(value, dict) and value.get("class_name") == "__ellipsis__":
            return Ellipsis
        if isinstance(value, list):
            return [resolve(v) for v in value]
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        return value
    return tuple(resolve(a) for a in node_data.get("args", [])), resolve(node_data.get("kwargs", {}))


def _deserialize_operation(entry, custom_objects):
    module = entry.get("module") or ""
    if module.startswith("keras.src.ops") or module == "keras.ops":
        fn = builtin_objects("ops").get(entry.get("class_name"))
        if fn is None:
            raise FileFormatError(f"unknown operation {entry.get('class_name')!r} in the functional config")
        name = (entry.get("config") or {}).get("name")
        return FunctionOp(fn.eager, fn.spec, name=name, class_name=fn.class_name)
    return deserialize_layer(entry, custom_objects)


__all__ = ["FunctionalGraph", "graph_from_config", "map_graph", "Node"]

"""model.summary(): Keras's table of layers, output shapes and parameter counts, then the totals.

Functional models whose graph is not a simple chain get Keras's fourth column, "Connected to".
"""
from __future__ import annotations

import numpy as np

from ..layers.base import Layer, format_shape
from ..ops.symbolic import KerasTensor


def _count(weights):
    return int(sum(int(np.prod(w.shape)) for w in weights))


def readable(nbytes):
    size = float(nbytes)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size / 1024 < 1:
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} PB"


def _shape_text(op):
    outs = [t for node in op._inbound_nodes for t in node.outputs if isinstance(t, KerasTensor)]
    if len(op._inbound_nodes) <= 1 and outs:
        shapes = [format_shape(t.shape) for t in outs]
        return shapes[0] if len(shapes) == 1 else "[" + ", ".join(shapes) + "]"
    shape = getattr(op, "_summary_shape", None)
    return format_shape(shape) if shape else "?"


def _params(op):
    if not isinstance(op, Layer):
        return "0"
    return f"{op.count_params():,}" if op.built else "0 (unbuilt)"


def _connections(op, graph):
    if not op._inbound_nodes or all(n.is_input for n in op._inbound_nodes):
        return "-"
    refs = []
    for node in op._inbound_nodes:
        if id(node) not in graph._node_ids:
            continue
        for t in node.input_tensors:
            src, node_index, tensor_index = t._keras_history
            refs.append(f"{src.name}[{graph.node_index(src, src._inbound_nodes[node_index])}][{tensor_index}]")
    return ", ".join(refs) or "-"


def _is_chain(graph):
    if graph is None:
        return True
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        return False
    for op in graph.operations:
        nodes = [n for n in op._inbound_nodes if id(n) in graph._node_ids]
        if len(nodes) > 1 or any(len(n.input_tensors) > 1 for n in nodes) or \
                not isinstance(op, Layer):
            return False
    return True


def print_summary(model, operations, graph, print_fn=None, show_trainable=False):
    print_fn = print_fn or print
    chain = _is_chain(graph)
    headers = ["Layer (type)", "Output Shape", "Param #"] + ([] if chain else ["Connected to"]) + \
        (["Trainable"] if show_trainable else [])
    body = []
    for op in operations:
        row = [f"{op.name} ({getattr(op, 'class_name', type(op).__name__)})", _shape_text(op), _params(op)]
        if not chain:
            row.append(_connections(op, graph))
        if show_trainable:
            row.append(("Y" if op.trainable else "N") if isinstance(op, Layer) and op.weights else "-")
        body.append(row)
    widths = ([33, 24, 15] if chain else [21, 19, 12, 19]) + ([11] if show_trainable else [])
    widths = [max(w, max([len(h) + 2] + [len(b[i]) + 2 for b in body])) for i, (w, h) in enumerate(zip(widths, headers))]
    right = {2}

    def cells(values, edge, sep):
        return edge + sep.join(f" {v.rjust(w - 2) if i in right else v.ljust(w - 2)} "
                               for i, (v, w) in enumerate(zip(values, widths))) + edge

    def rule(left, fill, mid, end):
        return left + mid.join(fill * w for w in widths) + end

    lines = [f'Model: "{model.name}"', rule("┏", "━", "┳", "┓"), cells(headers, "┃", "┃"), rule("┡", "━", "╇", "┩")]
    for i, b in enumerate(body):
        lines.append(cells(b, "│", "│"))
        if i != len(body) - 1:
            lines.append(rule("├", "─", "┼", "┤"))
    lines.append(rule("└", "─", "┴", "┘"))
    trainable, non_trainable = _count(model.trainable_weights), _count(model.non_trainable_weights)
    itemsize = np.dtype(model.dtype).itemsize
    opt = getattr(model, "optimizer", None)
    opt_count = (_count(opt.variables) + 2) if opt is not None and opt.built else 0
    total = trainable + non_trainable + opt_count
    lines.append(f" Total params: {total:,} ({readable(total * itemsize)})")
    lines.append(f" Trainable params: {trainable:,} ({readable(trainable * itemsize)})")
    lines.append(f" Non-trainable params: {non_trainable:,} ({readable(non_trainable * itemsize)})")
    if opt_count:
        lines.append(f" Optimizer params: {opt_count:,} ({readable(opt_count * itemsize)})")
    for line in lines:
        print_fn(line)


__all__ = ["print_summary", "readable"]

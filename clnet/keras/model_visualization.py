"""keras.utils.plot_model / model_to_dot: the model's graph through pydot, drawn by Graphviz's `dot`.

pydot and Graphviz are optional: without them plot_model raises Keras's ImportError saying what to install.
"""
from __future__ import annotations

import os


def _pydot():
    try:
        import pydot  # optional dependency, imported where it is used (as Keras does)
    except ImportError:
        return None
    return pydot


def check_graphviz():
    """True when pydot is installed and Graphviz's `dot` runs."""
    pydot = _pydot()
    if pydot is None:
        return False
    try:
        pydot.Dot.create(pydot.Dot())
    except (OSError, FileNotFoundError, Exception):  # pydot raises a plain Exception when `dot` is missing
        return False
    return True


def _shape_text(tensors):
    shapes = [tuple(t.shape) for t in tensors]
    text = ", ".join(str(s).replace("None", "None") for s in shapes)
    return text if len(shapes) == 1 else f"[{text}]"


def _label(op, show_shapes, show_dtype, show_layer_names, show_layer_activations, show_trainable):
    name = type(op).__name__ if not hasattr(op, "class_name") else op.class_name
    lines = [f"{op.name} ({name})" if show_layer_names else name]
    if show_layer_activations and hasattr(op, "activation"):
        lines.append(f"Activation: {getattr(op.activation, '__name__', op.activation)}")
    if show_trainable and hasattr(op, "trainable"):
        lines.append(f"Trainable: {'Y' if op.trainable else 'N'}")
    node = op._inbound_nodes[0] if getattr(op, "_inbound_nodes", None) else None
    if show_shapes and node is not None:
        if node.input_tensors:
            lines.append(f"Input shape: {_shape_text(node.input_tensors)}")
        lines.append(f"Output shape: {_shape_text(node.outputs)}")
    if show_dtype and node is not None and node.outputs:
        lines.append(f"Output dtype: {node.outputs[0].dtype}")
    return "\n".join(lines)


def _operations(model):
    if hasattr(model, "_graph") and model._graph is not None:
        return list(model._graph.operations)
    return list(getattr(model, "layers", []))


def model_to_dot(model, show_shapes=False, show_dtype=False, show_layer_names=True, rankdir="TB",
                 expand_nested=False, dpi=200, subgraph=False, show_layer_activations=False, show_trainable=False,
                 **kwargs):
    """A pydot.Dot of the model: one node per operation, one edge per tensor passed between them."""
    pydot = _pydot()
    if pydot is None:
        raise ImportError("You must install pydot (`pip install pydot`) for `model_to_dot` to work.")
    dot = pydot.Dot(graph_type="digraph", rankdir=rankdir, dpi=str(dpi), concentrate="True")
    ops = _operations(model)
    ids = {id(op): str(i) for i, op in enumerate(ops)}
    for op in ops:
        dot.add_node(pydot.Node(ids[id(op)], label=_label(op, show_shapes, show_dtype, show_layer_names,
                                                          show_layer_activations, show_trainable), shape="record"))
    if hasattr(model, "_graph") and model._graph is not None:
        for op in ops:
            for node in op._inbound_nodes:
                for t in node.input_tensors:
                    source = t._keras_history.operation if t._keras_history else None
                    if source is not None and id(source) in ids:
                        dot.add_edge(pydot.Edge(ids[id(source)], ids[id(op)]))
    else:
        for a, b in zip(ops, ops[1:]):
            dot.add_edge(pydot.Edge(ids[id(a)], ids[id(b)]))
    return dot


def plot_model(model, to_file="model.png", show_shapes=False, show_dtype=False, show_layer_names=True, rankdir="TB",
               expand_nested=False, dpi=200, show_layer_activations=False, show_trainable=False, **kwargs):
    """Draw the model's graph into `to_file` (png, svg, pdf... from the extension) with Graphviz."""
    if not check_graphviz():
        raise ImportError("You must install pydot (`pip install pydot`) and install graphviz (see instructions at "
                          "https://graphviz.gitlab.io/download/) for `plot_model` to work.")
    dot = model_to_dot(model, show_shapes, show_dtype, show_layer_names, rankdir, expand_nested, dpi,
                       show_layer_activations=show_layer_activations, show_trainable=show_trainable)
    to_file = os.fspath(to_file)
    extension = os.path.splitext(to_file)[1][1:] or "png"
    dot.write(to_file, format=extension)
    return None

"""Keras's `model.export(path, format="onnx")` on clnet: the model, called in inference mode, through
clnet.onnx.export.

    model.export("model.onnx", format="onnx")                       # every None dimension stays dynamic
    model.export("model.onnx", format="onnx", input_signature=[keras.InputSpec(shape=(None, 784))])

The inputs are the model's (keras.Input or a first layer's input_shape, or `input_signature`); each
dimension that is None there (the batch, usually) is a dynamic axis of the file. The weights become
initializers named by their Keras paths ("dense.kernel" for "dense/kernel"). Only format="onnx" is
written: "tf_saved_model" needs TensorFlow.
"""
from __future__ import annotations

import numpy as np

from .. import onnx as _onnx
from ..jit.scopes import place
from ..nn.module import Module
from ..ops.creation import tensor as _tensor


class _Inference(Module):
    """A Keras model called in inference mode, with its weights registered under their paths (so the
    ONNX initializers are named after them)."""

    def __init__(self, model):
        super().__init__()
        object.__setattr__(self, "keras_model", model)
        taken = set()
        for i, w in enumerate(model.weights):
            name = str(getattr(w, "path", "") or f"weight_{i}").replace("/", ".")
            while name in taken:
                name += "_"
            taken.add(name)
            place(self, name, w, False)

    def forward(self, *inputs):
        x = inputs[0] if len(inputs) == 1 else list(inputs)
        return self.keras_model(x, training=False)


def _signature(model, input_signature):
    """[(name, shape with None for dynamic sizes, dtype)] of the model's inputs."""
    if input_signature is not None:
        specs = input_signature if isinstance(input_signature, (list, tuple)) else [input_signature]
    else:
        try:
            specs = list(model.inputs)
        except (AttributeError, ValueError):
            specs = []
        if not specs:
            shape = getattr(model, "_build_input_shape", None)
            if shape is None:
                raise ValueError(f"model.export: the model {model.name!r} has no known input shape yet; call it on "
                                 "data (or build it) first, or pass input_signature=")
            specs = [shape]
    out = []
    for i, s in enumerate(specs):
        shape = tuple(getattr(s, "shape", s))
        dtype = np.dtype(getattr(s, "dtype", None) or "float32")
        name = getattr(s, "name", None) or (f"input_{i}" if len(specs) > 1 else "input")
        out.append((str(name).replace("/", "_").replace(":", "_"), shape, dtype))
    return out


def export_model(model, filepath, format="tf_saved_model", verbose=True, input_signature=None, opset_version=None,
                 **kwargs):
    """Keras's Model.export for format="onnx" (see the module docstring); returns the onnx.ModelProto."""
    if format != "onnx":
        raise NotImplementedError(f"model.export: format={format!r} is not available in clnet (TensorFlow's "
                                  "SavedModel needs TensorFlow); use format='onnx'")
    if kwargs:
        raise TypeError(f"model.export: unsupported arguments {sorted(kwargs)}")
    signature = _signature(model, input_signature)
    rng = np.random.default_rng(0)
    examples, names, dynamic = [], [], {}
    for name, shape, dtype in signature:
        concrete = [2 if d is None else int(d) for d in shape]
        data = rng.standard_normal(concrete) if dtype.kind == "f" else np.zeros(concrete)
        examples.append(_tensor(data.astype(dtype)))
        names.append(name)
        axes = {axis: ("batch" if axis == 0 else f"{name}_dim{axis}") for axis, d in enumerate(shape) if d is None}
        if axes:
            dynamic[name] = axes
    proto = _onnx.export(_Inference(model), tuple(examples), filepath, input_names=names,
                         dynamic_axes=dynamic or None, opset_version=opset_version)
    if verbose:
        print(f"Saved the model {model.name!r} as ONNX to {filepath} (inputs: "
              + ", ".join(f"{n}{list(s)}" for n, s, _ in signature) + ")")
    return proto

"""keras.Model, keras.Sequential and the functional API (keras.Model(inputs, outputs)), plus summary().

A Model is a Layer with the trainer (compile/fit/evaluate/predict) mixed in. Sequential builds its layers
one after another from an input shape (from keras.Input, a first layer's input_shape=, or the first data
it sees), using each layer's shape arithmetic, so nothing runs on the device until there is data.
Subclassed models (class MyModel(keras.Model) with layers as attributes and a call()) work as in Keras.
"""
from __future__ import annotations

import json

import numpy as np

from .layers.base import InputLayer, KerasTensor, Layer, format_shape
from .saving import saving_lib
from .saving.object_registration import register_builtins
from .saving.serialization_lib import FileFormatError, deserialize_layer, model_classes, serialize_layer
from .trainer import Trainer


class Model(Trainer, Layer):
    """Base of every Keras model; `keras.Model(inputs, outputs)` makes a functional model."""

    def __new__(cls, *args, **kwargs):
        if cls is Model and (len(args) >= 2 or "inputs" in kwargs or "outputs" in kwargs):
            return object.__new__(Functional)
        return object.__new__(cls)

    def __init__(self, *args, name=None, trainable=True, dtype=None, **kwargs):
        if args:
            raise TypeError(f"{type(self).__name__}() takes keyword arguments only (name=, trainable=), got {args!r}")
        Layer.__init__(self, name=name, trainable=trainable, dtype=dtype, **kwargs)
        self._init_trainer()

    @property
    def layers(self):
        return list(self._sublayers)

    def get_layer(self, name=None, index=None):
        if index is not None:
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"No such layer: {name}. Existing layers are: {[layer.name for layer in self.layers]}.")

    # --- saving ----------------------------------------------------------------------------------
    def save(self, filepath, overwrite=True, include_optimizer=True, **kwargs):
        """Write a `.keras` zip: JSON config, weights as .npy entries, compile config, optimizer state."""
        saving_lib.save_model(self, filepath, overwrite=overwrite, include_optimizer=include_optimizer)

    def save_weights(self, filepath, overwrite=True):
        saving_lib.save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath, skip_mismatch=False):
        saving_lib.load_weights(self, filepath, skip_mismatch=skip_mismatch)

    # --- summary ---------------------------------------------------------------------------------
    def _summary_rows(self):
        rows = []
        for layer in self.layers:
            shape = getattr(layer, "_summary_shape", None)
            params = f"{layer.count_params():,}" if layer.built else "0 (unbuilt)"
            rows.append((f"{layer.name} ({type(layer).__name__})", format_shape(shape) if shape else "?", params,
                         layer))
        return rows

    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False, show_trainable=False,
                layer_range=None):
        """Print Keras's table: layer name (type), output shape, parameter count, then the totals."""
        print_fn = print_fn or print
        rows = self._summary_rows()
        headers = ["Layer (type)", "Output Shape", "Param #"] + (["Trainable"] if show_trainable else [])
        body = [[r[0], r[1], r[2]] + (["Y" if r[3].trainable else "N"] if show_trainable else []) for r in rows]
        widths = [33, 24, 15, 11][:len(headers)]
        widths = [max(w, max([len(h) + 2] + [len(b[i]) + 2 for b in body])) for i, (w, h) in
                  enumerate(zip(widths, headers))]
        right = {2}

        def cells(values, edge, sep):
            parts = []
            for i, (v, w) in enumerate(zip(values, widths)):
                text = v.rjust(w - 2) if i in right else v.ljust(w - 2)
                parts.append(f" {text} ")
            return edge + sep.join(parts) + edge

        def rule(left, fill, mid, end):
            return left + mid.join(fill * w for w in widths) + end

        lines = [f'Model: "{self.name}"', rule("┏", "━", "┳", "┓"), cells(headers, "┃", "┃"),
                 rule("┡", "━", "╇", "┩")]
        for i, b in enumerate(body):
            lines.append(cells(b, "│", "│"))
            if i != len(body) - 1:
                lines.append(rule("├", "─", "┼", "┤"))
        lines.append(rule("└", "─", "┴", "┘"))
        trainable = _count(self.trainable_weights)
        non_trainable = _count(self.non_trainable_weights)
        itemsize = np.dtype(self.dtype).itemsize
        opt = getattr(self, "optimizer", None)
        opt_count = (_count(opt.variables) + 2) if opt is not None and opt.built else 0
        total = trainable + non_trainable + opt_count
        lines.append(f" Total params: {total:,} ({_readable(total * itemsize)})")
        lines.append(f" Trainable params: {trainable:,} ({_readable(trainable * itemsize)})")
        lines.append(f" Non-trainable params: {non_trainable:,} ({_readable(non_trainable * itemsize)})")
        if opt_count:
            lines.append(f" Optimizer params: {opt_count:,} ({_readable(opt_count * itemsize)})")
        for line in lines:
            print_fn(line)

    def get_config(self):
        raise NotImplementedError(f"{type(self).__name__} is a subclassed model: it cannot be rebuilt from a "
                                  "config. Save its weights with save_weights() and rebuild it in code.")

    def to_json(self, **kwargs):
        """The architecture as JSON (keras.models.model_from_json rebuilds it, with fresh weights)."""
        return json.dumps({"class_name": type(self).__name__, "config": self.get_config()}, **kwargs)

    @property
    def output_shape(self):
        if not self.built or self._build_input_shape is None:
            raise AttributeError(f"the model {self.name!r} is not built yet, so it has no output shape")
        return tuple(self.compute_output_shape(self._build_input_shape))


def _count(weights):
    return int(sum(int(np.prod(w.shape)) for w in weights))


def _readable(nbytes):
    size = float(nbytes)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size / 1024 < 1:
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} PB"


class Sequential(Model):
    """A linear stack of layers: Sequential([Input(shape=(784,)), Dense(64, activation="relu"), Dense(10)])."""

    def __init__(self, layers=None, trainable=True, name=None):
        super().__init__(name=name, trainable=trainable)
        self._stack = []
        for layer in layers or []:
            self.add(layer, rebuild=False)
        self._maybe_rebuild()

    def add(self, layer, rebuild=True):
        """Append a layer (or the keras.Input that starts the model)."""
        if isinstance(layer, KerasTensor):
            origin = layer._keras_history[0] if layer._keras_history else None
            if not isinstance(origin, InputLayer):
                raise ValueError("Only keras.Input() tensors can be added to a Sequential model; got a tensor made "
                                 "by a layer (use the functional API: keras.Model(inputs, outputs))")
            layer = origin
        if not isinstance(layer, Layer):
            raise TypeError(f"The added layer must be an instance of class Layer. Received: layer={layer!r} of type "
                            f"{type(layer).__name__}.")
        if isinstance(layer, InputLayer) and self._stack:
            raise ValueError("Sequential: an Input can only be the first layer of the model")
        if any(existing.name == layer.name for existing in self._stack):
            raise ValueError(f"All layers added to a Sequential model should have unique names. Name {layer.name!r} "
                             "is already the name of a layer in this model. Update the `name` argument to pass a "
                             "unique name.")
        self._stack.append(layer)
        self.built = False
        if rebuild:
            self._maybe_rebuild()

    def pop(self, rebuild=True):
        layers = self.layers
        if not layers:
            raise TypeError("There are no layers in the model.")
        layer = layers[-1]
        self._stack.remove(layer)
        self.built = False
        if rebuild:
            self._maybe_rebuild()
        return layer

    @property
    def _sublayers(self):
        return [layer for layer in self.__dict__.get("_stack", []) if not isinstance(layer, InputLayer)]

    @property
    def input_shape(self):
        return self._declared_shape()

    def _declared_shape(self):
        if self._stack and isinstance(self._stack[0], InputLayer):
            return self._stack[0].batch_shape
        if self._stack and self._stack[0]._declared_input_shape is not None:
            return self._stack[0]._declared_input_shape
        return None

    def _maybe_rebuild(self):
        shape = self._declared_shape()
        if shape is not None and self.layers:
            self._maybe_build(shape)
        elif shape is not None:
            self._build_input_shape = shape

    def build(self, input_shape=None):
        input_shape = tuple(input_shape) if input_shape is not None else self._declared_shape()
        if input_shape is None:
            raise ValueError("Sequential.build needs an input shape, e.g. model.build((None, 784))")
        shape = input_shape
        for layer in self.layers:
            layer._maybe_build(shape)
            layer._check_input(shape)
            shape = tuple(layer.compute_output_shape(shape))
            layer._summary_shape = shape
        self._build_input_shape = input_shape
        self.built = True

    def _build_for_data(self, x):
        self._maybe_build((None,) + tuple(x.shape[1:]))

    def _check_input(self, shape):
        declared = self._declared_shape()
        if declared is None:
            return
        ok = len(shape) == len(declared) and all(d is None or s is None or d == s for d, s in
                                                 zip(declared[1:], shape[1:]))
        if not ok:
            raise ValueError(f'Input 0 of layer "{self.name}" is incompatible with the layer: expected '
                             f"shape={format_shape(declared)}, found shape={format_shape(tuple(shape))}")

    def call(self, inputs, training=False):
        x = inputs
        for layer in self.layers:
            x = layer(x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.layers:
            shape = tuple(layer.compute_output_shape(shape))
        return shape

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, "dtype": self.dtype.name,
                "layers": [serialize_layer(layer) for layer in self._stack],
                "build_input_shape": list(self._build_input_shape) if self._build_input_shape else None}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        model = cls(name=config.get("name"), trainable=config.get("trainable", True))
        for entry in config.get("layers", []):
            model.add(deserialize_layer(entry, custom_objects), rebuild=False)
        shape = config.get("build_input_shape")
        if shape is not None and model.layers:
            model._maybe_build(tuple(shape))
        return model


class Functional(Model):
    """keras.Model(inputs=keras.Input(...), outputs=...): the graph of layer calls between them."""

    def __init__(self, inputs, outputs, name=None, trainable=True):
        super().__init__(name=name, trainable=trainable)
        inputs = _single(inputs, "inputs")
        outputs = _single(outputs, "outputs")
        origin = inputs._keras_history[0] if inputs._keras_history else None
        if not isinstance(origin, InputLayer):
            raise ValueError("keras.Model(inputs, outputs): inputs must come from keras.Input()")
        nodes, seen = [], set()

        def visit(t):
            if id(t) in seen:
                return
            seen.add(id(t))
            if t._keras_history is None:
                raise ValueError(f"{t} was not produced by a layer call")
            layer, parents = t._keras_history
            for p in parents:
                visit(p)
            if not isinstance(layer, InputLayer):
                nodes.append((layer, parents[0], t))
            elif t is not inputs:
                raise ValueError("keras.Model(inputs, outputs): outputs depend on a keras.Input that is not in "
                                 "inputs")
        visit(outputs)
        self._input_tensor, self._output_tensor, self._nodes = inputs, outputs, nodes
        self._input_layer = origin
        for layer, _, out in nodes:
            layer._summary_shape = out.shape
        origin._summary_shape = inputs.shape
        self._build_input_shape = inputs.shape
        self.built = True

    @property
    def _sublayers(self):
        out = []
        for layer, _, _ in self.__dict__.get("_nodes", []):
            if not any(layer is o for o in out):
                out.append(layer)
        return out

    @property
    def layers(self):
        return [self._input_layer] + self._sublayers

    @property
    def input_shape(self):
        return self._input_tensor.shape

    @property
    def output_shape(self):
        return self._output_tensor.shape

    def _check_input(self, shape):
        declared = self._input_tensor.shape
        ok = len(shape) == len(declared) and all(d is None or d == s for d, s in zip(declared[1:], shape[1:]))
        if not ok:
            raise ValueError(f'Input 0 of layer "{self.name}" is incompatible with the layer: expected '
                             f"shape={format_shape(declared)}, found shape={format_shape(tuple(shape))}")

    def call(self, inputs, training=False):
        values = {id(self._input_tensor): inputs}
        for layer, parent, out in self._nodes:
            values[id(out)] = layer(values[id(parent)], training=training)
        return values[id(self._output_tensor)]

    def compute_output_shape(self, input_shape):
        return self._output_tensor.shape

    def get_config(self):
        names = [layer.name for layer, _, _ in self._nodes]
        if len(set(names)) != len(names):
            raise NotImplementedError("saving a functional model that calls one layer several times is not "
                                      "supported yet; use save_weights()")
        layers = [serialize_layer(self._input_layer)]
        for layer, parent, _ in self._nodes:
            entry = serialize_layer(layer)
            entry["inbound"] = parent._keras_history[0].name
            layers.append(entry)
        return {"name": self.name, "trainable": self.trainable, "layers": layers,
                "output_layer": self._output_tensor._keras_history[0].name}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        entries = config.get("layers") or []
        if not entries or entries[0].get("class_name") != "InputLayer":
            raise ValueError("functional model config must start with an InputLayer")
        first = deserialize_layer(entries[0], custom_objects)
        tensors = {first.name: first.output}
        for entry in entries[1:]:
            inbound = entry.get("inbound")
            if inbound not in tensors:
                raise ValueError(f"functional model config: layer input {inbound!r} is not defined before use")
            layer = deserialize_layer({k: v for k, v in entry.items() if k != "inbound"}, custom_objects)
            tensors[layer.name] = layer(tensors[inbound])
        out = config.get("output_layer")
        if out not in tensors:
            raise ValueError(f"functional model config: output layer {out!r} is unknown")
        return cls(first.output, tensors[out], name=config.get("name"), trainable=config.get("trainable", True))


def _single(t, what):
    if isinstance(t, (list, tuple)):
        if len(t) != 1:
            raise NotImplementedError(f"keras.Model: several {what} are not supported yet")
        t = t[0]
    if isinstance(t, dict):
        raise NotImplementedError(f"keras.Model: a dict of {what} is not supported yet")
    if not isinstance(t, KerasTensor):
        raise TypeError(f"keras.Model: {what} must be KerasTensors (from keras.Input and layer calls), got {t!r}")
    return t


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """Rebuild a model saved with model.save(): no user code runs and nothing is unpickled."""
    return saving_lib.load_model(filepath, custom_objects=custom_objects, compile=compile)


def model_from_json(json_string, custom_objects=None):
    """Rebuild an architecture from model.to_json() (only known layer classes; nothing is executed)."""
    try:
        spec = json.loads(json_string)
    except (json.JSONDecodeError, RecursionError) as err:
        raise FileFormatError(f"model_from_json: not valid JSON: {err}") from None
    classes = model_classes()
    if not isinstance(spec, dict) or spec.get("class_name") not in classes or not isinstance(spec.get("config"), dict):
        raise FileFormatError(f"model_from_json: expected a Sequential or Functional model description, got "
                              f"{str(spec)[:100]!r}")
    return classes[spec["class_name"]].from_config(spec["config"], custom_objects=custom_objects)


def clone_model(model):
    """A new model with the same architecture and fresh weights."""
    cls = model_classes().get(type(model).__name__)
    if cls is None:
        raise ValueError(f"clone_model supports Sequential and functional models, got {type(model).__name__}")
    return cls.from_config(model.get_config())


register_builtins("models", (Sequential, Functional))

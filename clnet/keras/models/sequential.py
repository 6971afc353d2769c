"""keras.Sequential: a linear stack of layers.

Once the input shape is known (keras.Input as the first layer, `input_shape=` on the first layer, build(),
or the first data it sees) the layers are called once on a symbolic input, which gives every layer its
output shape and makes model.inputs / model.outputs / layer.output available, as in Keras; nothing runs
on the device until there is data. Calling the model runs the layers one after another.
"""
from __future__ import annotations

from ..layers.base import BUILD_LOCK, InputLayer, Layer, format_shape
from ..ops.symbolic import KerasTensor
from ..saving.config_compat import keras_sequential_layers
from ..saving.serialization_lib import deserialize_layer, serialize_layer
from .functional import FunctionalGraph
from .model import Model
from .summary import print_summary


class Sequential(Model):
    """Sequential([keras.Input(shape=(784,)), layers.Dense(64, activation="relu"), layers.Dense(10)])."""

    def __init__(self, layers=None, trainable=True, name=None):
        super().__init__(name=name, trainable=trainable)
        self._stack = []
        self._graph = None
        self._own_nodes = []
        for layer in layers or []:
            self.add(layer, rebuild=False)
        self._maybe_rebuild()

    def add(self, layer, rebuild=True):
        """Append a layer (or the keras.Input that starts the model)."""
        if isinstance(layer, KerasTensor):
            origin = layer._keras_history.operation if layer._keras_history else None
            if not isinstance(origin, InputLayer):
                raise ValueError("Only instances of `keras.Layer` can be added to a Sequential model. Received: "
                                 f"{layer} (a tensor made by a layer; use the functional API for that: "
                                 "keras.Model(inputs, outputs))")
            layer = origin
        if not isinstance(layer, Layer):
            raise ValueError("Only instances of `keras.Layer` can be added to a Sequential model. Received: "
                             f"{layer} (of type {type(layer)})")
        if isinstance(layer, InputLayer) and self._stack:
            if isinstance(self._stack[0], InputLayer):
                raise ValueError(f"Sequential model '{self.name}' has already been configured to use input shape "
                                 f"{self._stack[0].batch_shape}. You cannot add a different Input layer to it.")
            raise ValueError("An Input can only be the first layer of a Sequential model")
        if any(existing.name == layer.name for existing in self._stack):
            raise ValueError(f"All layers added to a Sequential model should have unique names. Name "
                             f"'{layer.name}' is already the name of a layer in this model. Update the `name` "
                             "argument to pass a unique name.")
        self._stack.append(layer)
        self.built = False
        self._graph = None
        if rebuild:
            self._maybe_rebuild()

    def pop(self, rebuild=True):
        layers = self.layers
        if not layers:
            raise TypeError("There are no layers in the model.")
        layer = layers[-1]
        self._stack.remove(layer)
        self.built = False
        self._graph = None
        if rebuild:
            self._maybe_rebuild()
        return layer

    @property
    def _sublayers(self):
        return [layer for layer in self.__dict__.get("_stack", []) if not isinstance(layer, InputLayer)]

    @property
    def layers(self):
        return self._sublayers

    def _declared_shape(self):
        if self._stack and isinstance(self._stack[0], InputLayer):
            return self._stack[0].batch_shape
        if self._stack and self._stack[0]._declared_input_shape is not None:
            return self._stack[0]._declared_input_shape
        return None

    def _maybe_rebuild(self):
        shape = self._declared_shape()
        if shape is not None and self.layers:
            self.build(shape)
        elif shape is not None:
            self._build_input_shape = shape

    def build(self, input_shape=None):
        input_shape = tuple(input_shape) if input_shape is not None else self._declared_shape()
        if input_shape is None:
            raise ValueError("You must provide an `input_shape` argument to build a Sequential model, e.g. "
                             "model.build((None, 784))")
        self._drop_own_nodes()
        first = self._stack[0] if self._stack and isinstance(self._stack[0], InputLayer) else None
        if first is None or tuple(first.batch_shape) != tuple(input_shape):
            first = InputLayer(batch_shape=input_shape)
        inputs = x = first.output
        traced = True
        before = [len(layer._inbound_nodes) for layer in self.layers]
        for layer in self.layers:
            try:
                x = layer(x)
            except NotImplementedError:  # a layer that cannot run on shapes: build eagerly on first data
                traced = False
                break
        self._own_nodes = [(layer, node) for layer, n in zip(self.layers, before) for node in layer._inbound_nodes[n:]]
        self._build_input_shape = tuple(input_shape)
        self._graph = FunctionalGraph(inputs, x) if traced and isinstance(x, KerasTensor) else None
        self.built = True

    def _drop_own_nodes(self):
        """Forget the nodes of this model's earlier symbolic builds (layer.output is the current one's)."""
        for layer, node in self._own_nodes:
            if any(node is n for n in layer._inbound_nodes):
                layer._inbound_nodes.remove(node)
        self._own_nodes = []

    def _build_for_data(self, x):
        self._maybe_build((None,) + tuple(x.shape[1:]))

    def _maybe_build(self, input_shape, *others):
        if not self.built:
            with BUILD_LOCK:  # once, even when threads call the unbuilt model at the same moment
                if not self.built:
                    self.build(input_shape)

    @property
    def inputs(self):
        if self._graph is None:
            raise AttributeError(f"Sequential model '{self.name}' has no defined inputs yet.")
        return list(self._graph.inputs)

    @property
    def outputs(self):
        if self._graph is None:
            raise AttributeError(f"Sequential model '{self.name}' has no defined outputs yet.")
        return list(self._graph.outputs)

    @property
    def input(self):
        return self.inputs[0]

    @property
    def output(self):
        return self.outputs[0]

    @property
    def input_shape(self):
        return self._declared_shape() or self._build_input_shape

    @property
    def output_shape(self):
        if self._graph is None:
            raise AttributeError(f"Sequential model '{self.name}' has no defined output shape yet.")
        return self._graph.outputs[0].shape

    def _check_input(self, shape):
        declared = self._declared_shape()
        if declared is None:
            return
        ok = len(shape) == len(declared) and all(d is None or s is None or d == s for d, s in
                                                 zip(declared[1:], shape[1:]))
        if not ok:
            raise ValueError(f'Input 0 of layer "{self.name}" is incompatible with the layer: expected '
                             f"shape={format_shape(declared)}, found shape={format_shape(tuple(shape))}")

    def call(self, inputs, training=None, mask=None):
        x = inputs
        for layer in self.layers:
            x = layer(x)
        return x

    def compute_output_spec(self, inputs, training=None, mask=None):
        x = inputs
        for layer in self.layers:
            x = layer.compute_output_spec(x)
        return x

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.layers:
            shape = tuple(layer.compute_output_shape(shape))
        return shape

    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False, show_trainable=False,
                layer_range=None):
        print_summary(self, self.layers, None, print_fn, show_trainable)

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, "dtype": self._dtype_name,
                "layers": keras_sequential_layers([serialize_layer(layer) for layer in self._stack]),
                "build_input_shape": list(self._build_input_shape) if self._build_input_shape else None}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        model = cls(name=config.get("name"), trainable=config.get("trainable", True))
        for entry in config.get("layers", []):
            model.add(deserialize_layer(entry, custom_objects), rebuild=False)
        shape = config.get("build_input_shape")
        if shape is not None and model.layers:
            model.build(tuple(shape))
        else:
            model._maybe_rebuild()
        return model

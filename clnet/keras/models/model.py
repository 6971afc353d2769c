"""keras.Model and the functional model (keras.Model(inputs, outputs)).

A Model is a Layer with the trainer (compile/fit/evaluate/predict) mixed in. `keras.Model(inputs,
outputs)` makes a Functional model; a subclass built the same way, `CustomModel(inputs, outputs)`,
becomes a functional model of that subclass (so its train_step/test_step overrides apply), as in Keras.
Subclassed models (layers as attributes and a call()) work as in Keras.
"""
from __future__ import annotations

import json

from .. import onnx_export, tree
from ..layers.base import InputLayer, Layer
from ..ops.symbolic import KerasTensor
from ..saving import saving_lib
from ..saving.serialization_lib import FileFormatError
from ..trainer import Trainer
from .functional import FunctionalGraph, graph_from_config
from .summary import print_summary


def _functional_arguments(args, kwargs):
    return len(args) == 2 or (len(args) == 1 and "outputs" in kwargs) or ("inputs" in kwargs and "outputs" in kwargs)


_FUNCTIONAL_SUBCLASSES = {}


def _functional_subclass(cls):
    """CustomModel(inputs, outputs): a functional model that keeps the subclass's methods (made once per class)."""
    sub = _FUNCTIONAL_SUBCLASSES.get(cls)
    if sub is None:
        sub = type(cls.__name__, (cls, Functional), {"__module__": cls.__module__, "__qualname__": cls.__qualname__})
        _FUNCTIONAL_SUBCLASSES[cls] = sub
    return sub


class Model(Trainer, Layer):
    """Base of every Keras model; `keras.Model(inputs, outputs)` makes a functional model."""

    def __new__(cls, *args, **kwargs):
        # Model(inputs, outputs) is a functional model; so is CustomModel(inputs, outputs) when CustomModel keeps
        # Model's __init__. A subclass with its own __init__ (VAE(encoder, decoder)) decides in Model.__init__,
        # by what it passes to super().__init__ (as Keras does).
        if (_functional_arguments(args, kwargs) and not issubclass(cls, Functional)
                and (cls is Model or cls.__init__ is Model.__init__)):
            if cls is Model:
                return object.__new__(Functional)
            return Layer.__new__(_functional_subclass(cls), *args, **kwargs)
        return Layer.__new__(cls, *args, **kwargs)

    def __init__(self, *args, **kwargs):
        if _functional_arguments(args, kwargs):
            if not isinstance(self, Functional):  # super().__init__(inputs, outputs) from a subclass's __init__
                self.__class__ = _functional_subclass(type(self))
            Functional.__init__(self, *args, **kwargs)
            return
        if args:
            raise TypeError(f"{type(self).__name__}() takes keyword arguments only (name=, trainable=), or "
                            f"(inputs, outputs) for a functional model; got {len(args)} positional argument(s)")
        Layer.__init__(self, **kwargs)
        self._init_trainer()

    @property
    def layers(self):
        return list(self._sublayers)

    def get_layer(self, name=None, index=None):
        """The layer named `name` (or at `index` in model.layers)."""
        if index is not None and name is not None:
            raise ValueError(f"Provide only a layer name or a layer index. Received: index={index}, name={name}.")
        if index is not None:
            if len(self.layers) <= index:
                raise ValueError(f"Was asked to retrieve layer at index {index} but model only has "
                                 f"{len(self.layers)} layers.")
            return self.layers[index]
        if name is not None:
            for layer in self.layers:
                if layer.name == name:
                    return layer
            raise ValueError(f"No such layer: {name}. Existing layers are: {[layer.name for layer in self.layers]}.")
        raise ValueError("Provide either a layer name or layer index at `get_layer`.")

    def zero_grad(self):
        """Forget the weights' gradients (as torch.nn.Module.zero_grad, which Keras's PyTorch guides call)."""
        for w in self.trainable_weights:
            w.grad = None

    # --- saving ----------------------------------------------------------------------------------
    def save(self, filepath, overwrite=True, include_optimizer=True, **kwargs):
        """Write a `.keras` file: the config, the weights and the optimizer state."""
        saving_lib.save_model(self, filepath, overwrite=overwrite, include_optimizer=include_optimizer)

    def save_weights(self, filepath, overwrite=True):
        saving_lib.save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath, skip_mismatch=False, **kwargs):
        saving_lib.load_weights(self, filepath, skip_mismatch=skip_mismatch)

    def export(self, filepath, format="tf_saved_model", verbose=True, input_signature=None, **kwargs):
        """Keras 3's Model.export; clnet writes format="onnx" (clnet/keras/onnx_export.py)."""
        return onnx_export.export_model(self, filepath, format=format, verbose=verbose,
                                        input_signature=input_signature, **kwargs)

    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False, show_trainable=False,
                layer_range=None):
        """Print Keras's table: layer name (type), output shape, parameter count, then the totals."""
        print_summary(self, self.layers, None, print_fn, show_trainable)

    def get_config(self):
        """A subclassed model's config: name, trainable, dtype and, when get_config() is not overridden, the
        plain arguments its __init__ was called with (Keras's automatic config)."""
        auto = self.__dict__.get("_auto_config")
        base = {"name": self.name, "trainable": self.trainable, "dtype": self._dtype_name}
        if type(self).get_config is not Model.get_config:  # super().get_config() from the user's own
            return base
        if auto is not None:
            return {**base, **auto}
        raise NotImplementedError(f"Model {type(self).__name__} is a subclassed model whose __init__ was called with "
                                  "values that cannot be saved as plain data (or positional-only / *args "
                                  "arguments): it cannot be rebuilt from a config. Define get_config() (and "
                                  "from_config() if its __init__ takes objects such as layers), or save its weights "
                                  "with save_weights() and rebuild it in code.")

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """A functional config (layers, input_layers, output_layers) rebuilds the graph as `cls`; any other
        config goes to cls(**config), as Keras."""
        if isinstance(config, dict) and "layers" in config and "input_layers" in config and "output_layers" in config:
            inputs, outputs = graph_from_config(config, custom_objects)
            return cls(inputs, outputs, name=config.get("name"), trainable=config.get("trainable", True))
        return super().from_config(config)

    def to_json(self, **kwargs):
        """The architecture as JSON (keras.models.model_from_json rebuilds it, with fresh weights)."""
        return json.dumps(saving_lib.model_config(self, compile_config=False), **kwargs)

    @property
    def output_shape(self):
        if not self.built or self._build_input_shape is None:
            raise AttributeError(f"The model {self.name!r} has not been built yet, so it has no output shape")
        return tuple(self.compute_output_shape(self._build_input_shape))


class Functional(Model):
    """keras.Model(inputs=keras.Input(...), outputs=...): the graph of layer calls between them.

    inputs and outputs may be a KerasTensor, a list or a dict of them; the model is called with (and
    returns) the same structure."""

    def __init__(self, inputs, outputs, name=None, trainable=True, **kwargs):
        Layer.__init__(self, name=name, trainable=trainable, **{k: v for k, v in kwargs.items() if k == "dtype"})
        self._init_trainer()
        self._graph = FunctionalGraph(inputs, outputs)
        self._build_input_shape = tree.map_structure(lambda t: t.shape, inputs)
        self.built = True

    @property
    def _sublayers(self):
        graph = self.__dict__.get("_graph")
        return [op for op in graph.layers if not isinstance(op, InputLayer)] if graph else []

    @property
    def layers(self):
        return self._graph.layers

    @property
    def operations(self):
        return list(self._graph.operations)

    @property
    def inputs(self):
        return list(self._graph.inputs)

    @property
    def outputs(self):
        return list(self._graph.outputs)

    @property
    def input(self):
        return self._graph.inputs_struct

    @property
    def output(self):
        return self._graph.outputs_struct

    @property
    def input_shape(self):
        return tree.map_structure(lambda t: t.shape, self._graph.inputs_struct)

    @property
    def output_shape(self):
        return tree.map_structure(lambda t: t.shape, self._graph.outputs_struct)

    @property
    def input_names(self):
        return [t.name for t in self._graph.inputs]

    @property
    def output_names(self):
        return [t._keras_history.operation.name for t in self._graph.outputs]

    def _check_input(self, shape):
        declared = self._graph.inputs[0].shape
        ok = len(shape) == len(declared) and all(d is None or d == s for d, s in zip(declared[1:], shape[1:]))
        if not ok and len(self._graph.inputs) == 1 and not (len(shape) + 1 == len(declared) and declared[-1] == 1):
            raise ValueError(f'Input 0 of layer "{self.name}" is incompatible with the layer: expected '
                             f"shape={_fmt(declared)}, found shape={_fmt(tuple(shape))}")

    def _assert_input(self, x):
        pass  # standardize_inputs checks and adjusts each input against its keras.Input

    def _convert(self, x):
        return x  # each input is converted to its keras.Input's dtype by the graph

    def call(self, inputs, training=None, mask=None):
        return self._graph.run(self._graph.standardize_inputs(inputs))

    def compute_output_spec(self, inputs, training=None, mask=None):
        return tree.map_structure(lambda t: KerasTensor(t.shape, t.dtype), self._graph.outputs_struct)

    def compute_output_shape(self, input_shape):
        return tree.map_structure(lambda t: t.shape, self._graph.outputs_struct)

    def _maybe_build(self, *shapes):
        self.built = True

    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False, show_trainable=False,
                layer_range=None):
        print_summary(self, self._graph.operations, self._graph, print_fn, show_trainable)

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, **self._graph.get_config()}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        if not isinstance(config, dict):
            raise FileFormatError(f"a functional model config must be a dict, got {type(config).__name__}")
        if "output_layer" in config and "output_layers" not in config:
            raise FileFormatError("this functional config was written by an earlier clnet (its format had "
                                  "'output_layer'); save the model again with this version")
        inputs, outputs = graph_from_config(config, custom_objects)
        return cls(inputs, outputs, name=config.get("name"), trainable=config.get("trainable", True))


def _fmt(shape):
    return "(" + ", ".join("None" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"

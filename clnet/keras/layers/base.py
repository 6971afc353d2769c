"""Layer: Keras's layer contract on clnet tensors.

`__init__` stores the configuration, `build(input_shape)` makes the weights (clnet.Variable) when the
input shape is first known, `call(x)` is the math (a few clnet ops). Calling a layer converts numpy
input to a tensor, builds on first use, checks the input against what the layer was built for (a
clear error naming the expected and received shapes), then calls `call`. Calling a layer on a
symbolic `KerasTensor` (from `keras.Input`) only computes shapes, for the functional API.
"""
from __future__ import annotations

import inspect

import numpy as np

import clnet
from clnet import dtypes as _dt

from .. import initializers, regularizers, utils


def _shape_tuple(shape):
    if shape is None:
        return None
    if isinstance(shape, (int, np.integer)):
        return (int(shape),)
    return tuple(None if s is None else int(s) for s in shape)


def format_shape(shape) -> str:
    return "(" + ", ".join("None" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


class KerasTensor:
    """A symbolic tensor: a shape (batch dim None), a dtype and the layer call that produced it."""

    def __init__(self, shape, dtype="float32", history=None, name=None):
        self.shape = _shape_tuple(shape)
        self.dtype = np.dtype(dtype)
        self._keras_history = history  # (layer, [input KerasTensors])
        self.name = name

    @property
    def ndim(self):
        return len(self.shape)

    def __repr__(self):
        return f"<KerasTensor shape={format_shape(self.shape)}, dtype={self.dtype.name}, name={self.name}>"


class InputSpec:
    """What a built layer accepts: a rank (exact or minimum) and fixed sizes on some axes."""

    def __init__(self, ndim=None, min_ndim=None, axes=None):
        self.ndim, self.min_ndim, self.axes = ndim, min_ndim, dict(axes or {})


class Layer:
    """Base of every Keras layer and model."""

    _valid_kwargs = ("input_shape", "batch_input_shape", "input_dim", "batch_size")

    def __init__(self, name=None, trainable=True, dtype=None, autocast=True, activity_regularizer=None, **kwargs):
        unknown = [k for k in kwargs if k not in self._valid_kwargs]
        if unknown:
            raise TypeError(f"{type(self).__name__}: unexpected keyword argument(s) {', '.join(map(repr, unknown))}")
        if activity_regularizer is not None:
            raise NotImplementedError("activity_regularizer is not supported yet (kernel_regularizer is)")
        object.__setattr__(self, "_tracked_layers", [])
        object.__setattr__(self, "_own_weights", [])
        self.name = name or utils.unique_name(utils.snake_case(type(self).__name__))
        self._trainable = bool(trainable)
        self.dtype = _dt.as_dtype(dtype) if dtype is not None else _dt.float32
        self.built = False
        self.input_spec = None
        self._build_input_shape = None
        self._losses = []
        input_shape = kwargs.get("input_shape")
        if input_shape is None and kwargs.get("input_dim") is not None:
            input_shape = (kwargs["input_dim"],)
        if kwargs.get("batch_input_shape") is not None:
            self._declared_input_shape = _shape_tuple(kwargs["batch_input_shape"])
        elif input_shape is not None:
            self._declared_input_shape = (kwargs.get("batch_size"),) + _shape_tuple(input_shape)
        else:
            self._declared_input_shape = None

    # --- tracking ---------------------------------------------------------------------------------
    def __setattr__(self, name, value):
        if "_tracked_layers" in self.__dict__ and not name.startswith("_"):
            items = value if isinstance(value, (list, tuple)) else [value]
            for item in items:
                if isinstance(item, Layer) and item is not self and \
                        not any(item is t for t in self._tracked_layers):
                    self._tracked_layers.append(item)
        object.__setattr__(self, name, value)

    @property
    def _sublayers(self):
        return list(self._tracked_layers)

    # --- weights ----------------------------------------------------------------------------------
    def add_weight(self, shape=None, initializer=None, dtype=None, trainable=True, autocast=True,
                   regularizer=None, constraint=None, aggregation="none", name=None):
        """Make a clnet.Variable of `shape` filled by `initializer` (a name, Initializer or callable;
        glorot_uniform by default, as Keras)."""
        if constraint is not None:
            raise NotImplementedError("weight constraints are not supported yet")
        shape = tuple(int(s) for s in (shape or ()))
        dtype = _dt.as_dtype(dtype) if dtype is not None else self.dtype
        init = initializers.get(initializer if initializer is not None else "glorot_uniform")
        value = np.asarray(init(shape, dtype=dtype), dtype=dtype)
        if value.shape != shape:
            raise ValueError(f"initializer {initializer!r} returned shape {value.shape}, expected {shape}")
        var = clnet.Variable(value, trainable=bool(trainable) and self._trainable, name=name)
        var._keras_trainable = bool(trainable)
        var.path = f"{self.name}/{name}" if name else self.name
        var._keras_regularizer = regularizers.get(regularizer)
        self._own_weights.append(var)
        return var

    def _collect(self, want):
        """Own weights (trainable first) then each sub-layer's, without duplicates."""
        own_t = [w for w in self._own_weights if w._keras_trainable and self._trainable]
        own_n = [w for w in self._own_weights if not (w._keras_trainable and self._trainable)]
        found = {"all": own_t + own_n, "trainable": own_t, "non_trainable": own_n}[want]
        attr = {"all": "weights", "trainable": "trainable_weights", "non_trainable": "non_trainable_weights"}[want]
        for layer in self._sublayers:
            found = found + getattr(layer, attr)
        out, seen = [], set()
        for w in found:
            if id(w) not in seen:
                seen.add(id(w))
                out.append(w)
        return out

    @property
    def weights(self):
        """Every weight, each layer's trainable ones then its non-trainable ones, in layer order (Keras 3)."""
        return self._collect("all")

    @property
    def trainable_weights(self):
        return self._collect("trainable")

    @property
    def non_trainable_weights(self):
        return self._collect("non_trainable")

    variables = weights
    trainable_variables = trainable_weights
    non_trainable_variables = non_trainable_weights

    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        self._trainable = bool(value)
        for w in self._own_weights:
            on = w._keras_trainable and self._trainable
            w.requires_grad = on
            w.trainable = on
        for layer in self._sublayers:
            layer.trainable = value

    def get_weights(self):
        """The weights as numpy arrays, in `weights` order (Keras order and layouts)."""
        return [w.numpy() for w in self.weights]

    def set_weights(self, weights):
        """Load numpy arrays in `weights` order; counts and shapes are checked before anything changes."""
        mine = self.weights
        weights = list(weights)
        if len(weights) != len(mine):
            raise ValueError(f"Layer {self.name!r} expects {len(mine)} weight arrays, but set_weights received "
                             f"{len(weights)}")
        arrays = []
        for w, value in zip(mine, weights):
            value = np.asarray(value.numpy() if isinstance(value, clnet.Tensor) else value)
            if tuple(value.shape) != tuple(w.shape):
                raise ValueError(f"Layer {self.name!r} weight {getattr(w, 'path', w.name)!r} has shape "
                                 f"{tuple(w.shape)}, but the value given has shape {tuple(value.shape)}")
            arrays.append(value.astype(w.dtype, copy=False))
        for w, value in zip(mine, arrays):
            w.assign(clnet.tensor(value, device=w.device))

    def count_params(self):
        if not self.built:
            raise ValueError(f"You tried to call `count_params` on layer {self.name!r}, but the layer isn't "
                             "built. You can build it manually via `layer.build(input_shape)`.")
        return int(sum(int(np.prod(w.shape)) for w in self.weights))

    @property
    def losses(self):
        """Regularization penalties of this layer's and its sub-layers' weights (recomputed each access)."""
        out = list(self._losses)
        for w in self._own_weights:
            reg = getattr(w, "_keras_regularizer", None)
            if reg is not None and w.requires_grad:
                out.append(reg(w))
        for layer in self._sublayers:
            out += layer.losses
        return out

    def add_loss(self, loss):
        self._losses.append(loss)

    # --- building and calling ---------------------------------------------------------------------
    def build(self, input_shape):
        self.built = True

    def compute_output_shape(self, input_shape):
        """Shapes by running the layer on zeros with batch 1 (built-in layers override with arithmetic)."""
        shape = tuple(1 if s is None else s for s in input_shape)
        with clnet.no_grad():
            y = self.call(clnet.zeros(shape, dtype=self.dtype))
        return (input_shape[0],) + tuple(y.shape[1:])

    def call(self, inputs, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must implement call(inputs)")

    def _maybe_build(self, input_shape):
        if not self.built:
            input_shape = _shape_tuple(input_shape)
            self._build_input_shape = input_shape
            self.build(input_shape)
            self.built = True

    def _device(self):
        for w in self.weights:
            return w.device
        return clnet.default_device()

    def _to_tensor(self, x):
        if isinstance(x, clnet.Tensor):
            if _dt.is_floating(x.dtype) and x.dtype != self.dtype and _dt.is_floating(self.dtype):
                return x.to(dtype=self.dtype)
            return x
        arr = np.asarray(x)
        if arr.dtype.kind == "f" or arr.dtype.kind in "iub" and self.dtype.kind == "f":
            arr = arr.astype(self.dtype)
        return clnet.tensor(arr, device=self._device())

    def _check_input(self, shape):
        spec = self.input_spec
        if spec is None:
            return
        where = f'Input 0 of layer "{self.name}" is incompatible with the layer: '
        if spec.ndim is not None and len(shape) != spec.ndim:
            raise ValueError(where + f"expected ndim={spec.ndim}, found ndim={len(shape)}. Full shape received: "
                             f"{format_shape(shape)}")
        if spec.min_ndim is not None and len(shape) < spec.min_ndim:
            raise ValueError(where + f"expected min_ndim={spec.min_ndim}, found ndim={len(shape)}. Full shape "
                             f"received: {format_shape(shape)}")
        for axis, value in spec.axes.items():
            if value is not None and -len(shape) <= axis < len(shape) and shape[axis] not in (value, None):
                raise ValueError(where + f"expected axis {axis} of input shape to have value {value}, but received "
                                 f"input with shape {format_shape(shape)}")

    def _call_takes(self, name):
        cache = type(self).__dict__.get("_call_params_cache")
        if cache is None:
            params = inspect.signature(self.call).parameters
            cache = {p for p in params} | ({"**"} if any(p.kind == p.VAR_KEYWORD for p in params.values()) else set())
            setattr(type(self), "_call_params_cache", cache)
        return name in cache or "**" in cache

    def __call__(self, inputs, *args, training=None, **kwargs):
        if isinstance(inputs, KerasTensor):
            return self._symbolic_call(inputs)
        x = self._to_tensor(inputs)
        if not self.built:
            self._maybe_build((None,) + tuple(x.shape[1:]))
        self._check_input(tuple(x.shape))
        if self._call_takes("training"):
            kwargs["training"] = bool(training)
        y = self.call(x, *args, **kwargs)
        if isinstance(y, clnet.Tensor) and self.__dict__.get("_summary_shape") is None:
            self._summary_shape = (None,) + tuple(y.shape[1:])
        return y

    def _symbolic_call(self, inputs):
        self._maybe_build(inputs.shape)
        self._check_input(inputs.shape)
        out_shape = self.compute_output_shape(inputs.shape)
        self._inbound = inputs
        return KerasTensor(out_shape, inputs.dtype, history=(self, [inputs]), name=self.name)

    # --- config -----------------------------------------------------------------------------------
    def get_config(self):
        config = {"name": self.name, "trainable": self._trainable, "dtype": self.dtype.name}
        if self._declared_input_shape is not None:
            config["batch_input_shape"] = list(self._declared_input_shape)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def get_build_config(self):
        return {"input_shape": list(self._build_input_shape)} if self._build_input_shape is not None else None

    def build_from_config(self, config):
        if config and config.get("input_shape") is not None:
            self._maybe_build(tuple(config["input_shape"]))

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"


class InputLayer(Layer):
    """The first layer of a model built from keras.Input: it only declares the input shape."""

    def __init__(self, shape=None, batch_size=None, dtype=None, name=None, batch_shape=None, **kwargs):
        if "input_shape" in kwargs and shape is None:
            shape = kwargs.pop("input_shape")
        if "batch_input_shape" in kwargs and batch_shape is None:
            batch_shape = kwargs.pop("batch_input_shape")
        super().__init__(name=name or utils.unique_name("input_layer"), dtype=dtype, **kwargs)
        if batch_shape is None:
            if shape is None:
                raise ValueError("keras.Input needs a shape, e.g. keras.Input(shape=(784,))")
            batch_shape = (batch_size,) + _shape_tuple(shape)
        self.batch_shape = _shape_tuple(batch_shape)
        self._build_input_shape = self.batch_shape
        self.built = True
        self.output = KerasTensor(self.batch_shape, self.dtype, history=(self, []), name=self.name)

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {"name": self.name, "batch_shape": list(self.batch_shape), "dtype": self.dtype.name}


def Input(shape=None, batch_size=None, dtype=None, name=None, batch_shape=None):
    """keras.Input(shape=(784,)): a symbolic tensor to start a Sequential or functional model."""
    return InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, name=name, batch_shape=batch_shape).output

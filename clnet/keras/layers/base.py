"""Layer: Keras's layer contract on clnet tensors.

`__init__` stores the configuration, `build(input_shape)` makes the weights (keras.Variable) when the
input shape is first known, `call(...)` is the math (a few clnet ops or keras.ops). Calling a layer
converts numpy inputs to tensors, builds on first use, checks the input against what the layer was
built for, passes the training flag and masks along, and calls `call`. On KerasTensors (from
keras.Input) it only computes the output shapes and records the call, for the functional API.

As in Keras, a layer called inside another layer's call inherits its training flag, losses added with
add_loss() during a call replace those of the previous call, and masks travel on the tensors
(`_keras_mask`) from layers that make them (Embedding(mask_zero=True), Masking) to those that use them.
"""
from __future__ import annotations

import inspect
import threading
import warnings

import numpy as np

import clnet
from clnet import dtypes as _dt

from .. import config, constraints, initializers, regularizers, tree, utils
from ..ops.symbolic import (KerasTensor, Node, Operation, any_symbolic, call_context, current_context,
                            in_shapes_only_run, is_float_dtype, placeholder_spec, standardize_dtype)
from ..variables import Variable


def _shape_tuple(shape):
    if shape is None:
        return None
    if isinstance(shape, (int, np.integer)):
        return (int(shape),)
    return tuple(None if s is None else int(s) for s in shape)


def format_shape(shape) -> str:
    return "(" + ", ".join("None" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _dtype_name(dtype):
    """The dtype a layer computes in, from a name, a numpy/clnet dtype or a DTypePolicy config."""
    if dtype is None:
        return config.floatx()
    if isinstance(dtype, dict):
        dtype = (dtype.get("config") or {}).get("name", config.floatx())
    name = standardize_dtype(getattr(dtype, "name", dtype))
    if name in ("mixed_float16", "mixed_bfloat16"):
        raise ValueError(f"dtype policy {name!r} (mixed precision) is not supported by clnet yet; use 'float32'")
    return name



# Lazy builds (a layer's weights made at its first call) happen once, under this lock, even when several
# threads call an unbuilt model at the same moment; re-entrant, as a model builds its layers inside its own.
BUILD_LOCK = threading.RLock()


class InputSpec:
    """What a built layer accepts: a rank (exact, minimum or maximum) and fixed sizes on some axes."""

    def __init__(self, dtype=None, shape=None, ndim=None, max_ndim=None, min_ndim=None, axes=None,
                 allow_last_axis_squeeze=False, name=None, optional=False):
        self.dtype, self.shape = dtype, _shape_tuple(shape)
        self.ndim = len(self.shape) if self.shape is not None else ndim
        self.max_ndim, self.min_ndim, self.axes = max_ndim, min_ndim, dict(axes or {})
        self.name, self.optional = name, optional


class Layer(Operation):
    """Base of every Keras layer and model."""

    _valid_kwargs = ("input_shape", "batch_input_shape", "input_dim", "batch_size", "weights")
    _cast_integer_inputs = False  # float-math layers (Dense, Conv...) set True: int inputs become their dtype
    _keeps_input_dtype = False  # shape-only layers (Reshape, Flatten...): symbolic outputs keep the input dtype

    @property
    def supports_masking(self):
        """Whether outputs get masks from compute_mask (by default: when the layer overrides compute_mask)."""
        value = self.__dict__.get("_supports_masking")
        return type(self).compute_mask is not Layer.compute_mask if value is None else value

    @supports_masking.setter
    def supports_masking(self, value):
        self.__dict__["_supports_masking"] = bool(value)

    def __new__(cls, *args, **kwargs):
        obj = super().__new__(cls)
        obj.__dict__["_auto_config"] = _auto_config(cls, args, kwargs)
        return obj

    def __init__(self, *, activity_regularizer=None, trainable=True, dtype=None, autocast=True, name=None,
                 **kwargs):
        unknown = [k for k in kwargs if k not in self._valid_kwargs]
        if unknown:
            raise ValueError(f"Unrecognized keyword arguments passed to {type(self).__name__}: "
                             f"{ {k: kwargs[k] for k in unknown} }")
        object.__setattr__(self, "_tracked", [])  # (attribute name, layer) of sub-layers, in assignment order
        object.__setattr__(self, "_own_weights", [])
        super().__init__(name=name)
        self._trainable = bool(trainable)
        self._dtype_name = _dtype_name(dtype)
        self.autocast = bool(autocast)
        self.activity_regularizer = regularizers.get(activity_regularizer)
        self.built = False
        self.input_spec = None
        self._build_input_shape = None
        self._losses = []
        self._initial_weights = kwargs.get("weights")
        input_shape = kwargs.get("input_shape")
        if input_shape is None and kwargs.get("input_dim") is not None:
            input_shape = (kwargs["input_dim"],)
        if kwargs.get("batch_input_shape") is not None:
            self._declared_input_shape = _shape_tuple(kwargs["batch_input_shape"])
        elif input_shape is not None:
            self._declared_input_shape = (kwargs.get("batch_size"),) + _shape_tuple(input_shape)
        else:
            self._declared_input_shape = None

    # --- dtypes -----------------------------------------------------------------------------------
    @property
    def dtype(self):
        """The dtype of the layer's weights and computations (a numpy dtype)."""
        return _dt.as_dtype(self._dtype_name)

    @property
    def compute_dtype(self):
        return self._dtype_name

    @property
    def variable_dtype(self):
        return self._dtype_name

    @property
    def dtype_policy(self):
        return self._dtype_name

    # --- tracking ---------------------------------------------------------------------------------
    def __setattr__(self, name, value):
        if "_tracked" in self.__dict__:
            self._track(name, value)
        object.__setattr__(self, name, value)

    def _track(self, name, value):
        if isinstance(value, Layer) and value is not self:
            if not any(value is t for _, t in self._tracked):
                self._tracked.append((name, value))
        elif isinstance(value, (list, tuple, dict)) and not name.startswith("__"):
            for item in (value.values() if isinstance(value, dict) else value):
                if isinstance(item, Layer) and item is not self and not any(item is t for _, t in self._tracked):
                    self._tracked.append((name, item))

    def __delattr__(self, name):
        value = self.__dict__.get(name)
        if isinstance(value, Layer):
            self._tracked[:] = [(n, t) for n, t in self._tracked if t is not value]
        object.__delattr__(self, name)

    @property
    def _layers(self):
        """The sub-layers this layer tracks (attributes holding layers or lists of layers)."""
        return [layer for _, layer in self._tracked]

    @property
    def _sublayers(self):
        return self._layers

    def _flatten_layers(self, include_self=True):
        """This layer and every layer below it, each once, depth first."""
        seen, out = set(), []

        def visit(layer):
            if id(layer) in seen:
                return
            seen.add(id(layer))
            out.append(layer)
            for sub in layer._sublayers:
                visit(sub)
        visit(self)
        return out if include_self else out[1:]

    # --- weights ----------------------------------------------------------------------------------
    def add_weight(self, shape=None, initializer=None, dtype=None, trainable=True, autocast=True,
                   regularizer=None, constraint=None, aggregation="none", overwrite_with_gradient=False,
                   name=None):
        """A keras.Variable of `shape` filled by `initializer` (a name, Initializer or callable; glorot_uniform
        for floats and zeros otherwise, as Keras), tracked as this layer's weight."""
        shape = tuple(int(s) for s in (shape or ()))
        dtype = _dtype_name(dtype) if dtype is not None else self._dtype_name
        if initializer is None:
            initializer = "glorot_uniform" if is_float_dtype(dtype) else "zeros"
        init = initializers.get(initializer)
        value = np.asarray(init(shape, dtype=dtype), dtype=dtype)
        if value.shape != shape:
            raise ValueError(f"initializer {initializer!r} returned shape {value.shape}, expected {shape}")
        var = Variable(value, trainable=bool(trainable), name=name, aggregation=aggregation, autocast=autocast)
        if not self._trainable:
            var.requires_grad = var.trainable = False
        var.path = f"{self.name}/{name}" if name else self.name
        var.regularizer = regularizers.get(regularizer)
        var.constraint = constraints.get(constraint)
        self._own_weights.append(var)
        return var

    add_variable = add_weight

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

    # --- the PyTorch face (Keras 3 on its torch backend makes every layer a torch.nn.Module) -----------
    def parameters(self, recurse=True):
        """Every variable (trainable ones require grad), for a clnet.optim optimizer: torch-style training
        loops over Keras models (`optim.Adam(model.parameters())`, `model.zero_grad()`, `loss.backward()`)."""
        return iter(self.weights if recurse else self._own_weights)

    def named_parameters(self, prefix="", recurse=True):
        for w in (self.weights if recurse else self._own_weights):
            yield (f"{prefix}." if prefix else "") + w.path.replace("/", "."), w

    def zero_grad(self, set_to_none=True):
        for w in self.weights:
            if set_to_none:
                w.grad = None
            elif w.grad is not None:
                w.grad = clnet.zeros_like(w.grad)

    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        self._trainable = bool(value)
        for w in self._own_weights:
            on = w._keras_trainable and self._trainable and _dt.is_floating(w.dtype)
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
            raise ValueError(f"You called `set_weights(weights)` on layer '{self.name}' with a weight list of length "
                             f"{len(weights)}, but the layer was expecting {len(mine)} weights.")
        arrays = []
        for w, value in zip(mine, weights):
            value = np.asarray(value.numpy() if isinstance(value, clnet.Tensor) else value)
            if tuple(value.shape) != tuple(w.shape):
                raise ValueError(f"Layer {self.name} weight shape {tuple(w.shape)} is not compatible with provided "
                                 f"weight shape {tuple(value.shape)}.")
            arrays.append(value.astype(w.dtype, copy=False))
        for w, value in zip(mine, arrays):
            w.assign(clnet.tensor(value, device=w.device))

    def count_params(self):
        if not self.built:
            raise ValueError(f"You tried to call `count_params` on layer '{self.name}', but the layer isn't built. "
                             "You can build it manually via: `layer.build(input_shape)`.")
        return int(sum(int(np.prod(w.shape)) for w in self.weights))

    # --- losses -----------------------------------------------------------------------------------
    @property
    def losses(self):
        """Losses added by add_loss() in the last call, then the weight regularization penalties, of this layer
        and every layer below it."""
        added, penalties = [], []
        for layer in self._flatten_layers():
            added += layer._losses
            for w in layer._own_weights:
                if getattr(w, "regularizer", None) is not None and w.requires_grad:
                    penalties.append(w.regularizer(w))
        return added + penalties

    def add_loss(self, loss):
        """Add a scalar loss (computed in call()) to the training objective; it lasts until the next call."""
        if in_shapes_only_run():
            return
        if isinstance(loss, KerasTensor) or any_symbolic(loss):
            raise ValueError(f"Layer {self.name!r}: add_loss() received a symbolic KerasTensor. Add losses inside a "
                             "layer's call(), where the tensors have values (the 'endpoint layer' pattern), or "
                             "return the value as a model output and give it a loss in compile().")
        for item in tree.flatten(loss):
            self._losses.append(item if isinstance(item, clnet.Tensor) else clnet.tensor(float(item)))

    def _clear_losses(self):
        for layer in self._flatten_layers():
            layer._losses = []

    # --- building ---------------------------------------------------------------------------------
    def build(self, input_shape):
        self.built = True

    def _maybe_build(self, input_shape, *other_shapes):
        if self.built:
            return
        with BUILD_LOCK:  # threads calling an unbuilt layer at once build it once (docs/threads.md)
            if not self.built:
                self._build_once(input_shape, *other_shapes)

    def _build_once(self, input_shape, *other_shapes):
        input_shape = tree.map_structure(lambda s: s, input_shape)
        self._build_input_shape = input_shape
        params = [p for p in inspect.signature(self.build).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if other_shapes and len(params) > 1:
            self.build(input_shape, *other_shapes[:len(params) - 1])
        else:
            self.build(input_shape)
        self.built = True
        if self._initial_weights is not None:
            self.set_weights(self._initial_weights)
            self._initial_weights = None

    def build_from_config(self, config):
        if config and config.get("input_shape") is not None:
            shape = config["input_shape"]
            if isinstance(shape, list) and shape and isinstance(shape[0], list):
                shape = [tuple(s) for s in shape]
            else:
                shape = _shape_tuple(shape)
            self._maybe_build(shape)

    def get_build_config(self):
        if self._build_input_shape is None:
            return None
        shape = self._build_input_shape
        return {"input_shape": tree.map_structure(lambda s: s, list(shape) if isinstance(shape, tuple) else shape)}

    def compute_output_shape(self, *args, **kwargs):
        """The output shape(s) for these input shape(s): by a placeholder run of call() (see ops.symbolic),
        unless the layer gives the arithmetic itself."""
        specs = [tree.map_structure(lambda s: s, a) for a in args]
        tensors = [_spec_of(s, self._dtype_name) for s in specs]
        out = placeholder_spec(self._call_for_shapes, tensors, {})
        return tree.map_structure(lambda t: t.shape if isinstance(t, KerasTensor) else t, out)

    def _call_for_shapes(self, *args, **kwargs):
        return self._call_eager(args, kwargs)

    def compute_output_spec(self, *args, **kwargs):
        overridden = type(self).compute_output_shape is not Layer.compute_output_shape
        if overridden:
            shapes = [tree.map_structure(lambda t: t.shape if isinstance(t, KerasTensor) else t, a)
                      for a in args if tree.flatten(a) and any(isinstance(x, KerasTensor) for x in tree.flatten(a))]
            out_shape = self.compute_output_shape(*shapes)
            first = tree.flatten(args)[0] if tree.flatten(args) else None
            dtype = first.dtype if isinstance(first, KerasTensor) and (self._keeps_input_dtype or not
                                                                          is_float_dtype(self._dtype_name)) \
                else self._dtype_name
            return _spec_from_shape(out_shape, dtype)
        return placeholder_spec(self._call_eager_quiet, args, kwargs)

    def _call_eager_quiet(self, *args, **kwargs):
        return self._call_eager(args, kwargs)

    def call(self, *args, **kwargs):
        raise NotImplementedError(f"Layer {type(self).__name__} does not have a `call()` method implemented.")

    # --- calling ----------------------------------------------------------------------------------
    def _positional_names(self):
        params = inspect.signature(self.call).parameters.values()
        return [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]

    def _call_params(self):
        """(names of call()'s parameters, the default of its `training` parameter), cached per class."""
        cache = type(self).__dict__.get("_call_params_cache")
        if cache is None:
            params = inspect.signature(self.call).parameters
            default = params["training"].default if "training" in params else None
            cache = (set(params), None if default is inspect.Parameter.empty else default)
            setattr(type(self), "_call_params_cache", cache)
        return cache

    def __call__(self, *args, **kwargs):
        if not args and not kwargs:
            raise TypeError(f"Layer {self.name!r} was called without inputs: call it on a tensor, e.g. layer(x)")
        if any_symbolic(args, kwargs):
            return self.symbolic_call(*args, **kwargs)
        return self._call_eager(args, kwargs)

    def _convert(self, x):
        """numpy data -> clnet tensors; float tensors in the layer's dtype (Keras's autocast), masks kept."""
        if isinstance(x, clnet.Tensor):
            cast = (self.autocast and _dt.is_floating(x.dtype) and is_float_dtype(self._dtype_name) and
                    x.dtype != self.dtype) or (self._cast_integer_inputs and not _dt.is_floating(x.dtype))
            if not cast:
                return x
            y = x.to(dtype=self.dtype)
            if getattr(x, "_keras_mask", None) is not None:
                y._keras_mask = x._keras_mask
            return y
        if isinstance(x, (np.ndarray, np.generic)):
            arr = np.asarray(x)
            if arr.dtype == object:
                raise TypeError(f"Layer {self.name!r} cannot convert its input (a numpy array of Python objects) to "
                                "a tensor")
            if arr.dtype.kind == "f" or (arr.dtype.kind in "iub" and self._cast_integer_inputs):
                arr = arr.astype(self._dtype_name if is_float_dtype(self._dtype_name) else np.float32)
            return clnet.tensor(arr, device=self._device())
        return x

    def _device(self):
        for w in self._own_weights:
            return w.device
        return clnet.default_device()

    def _call_eager(self, args, kwargs):
        args = list(args)
        args[0] = tree.map_structure(self._convert, args[0])
        args[1:] = [self._convert(a) if isinstance(a, np.ndarray) else a for a in args[1:]]
        first = args[0]
        if not self.built:
            shapes = [tree.map_structure(lambda t: (None,) + tuple(t.shape[1:]) if isinstance(t, clnet.Tensor)
                                         else None, a) for a in args if _has_tensor(a)]
            self._maybe_build(*(shapes or [None]))
        self._assert_input(first)
        names, training_default = self._call_params()
        outer = current_context()
        training = kwargs.pop("training", None)
        if training is None and outer is not None:
            training = outer.training
        if training is None:
            training = training_default
        if "training" in names and training is not None:
            kwargs["training"] = training
        if "mask" in kwargs and kwargs["mask"] is not None:
            mask = kwargs["mask"]
        else:
            mask = _masks_of(first)
            if mask is not None and "mask" in names:
                kwargs["mask"] = mask
        if any(n.endswith("_mask") for n in names):  # Keras passes query_mask= for an argument named query, ...
            bound = dict(zip(self._positional_names(), args))
            bound.update(kwargs)
            for arg_name, value in bound.items():
                key = f"{arg_name}_mask"
                if key in names and kwargs.get(key) is None and _masks_of(value) is not None:
                    kwargs[key] = _masks_of(value)
        if outer is None:
            self._clear_losses()
        with call_context(training=training):
            outputs = self.call(*args, **kwargs)
        self._attach_masks(first, outputs, mask)
        if self.activity_regularizer is not None and not in_shapes_only_run():
            for out in tree.flatten(outputs):
                if isinstance(out, clnet.Tensor):
                    self.add_loss(self.activity_regularizer(out) * (1.0 / max(out.shape[0], 1)))
        if isinstance(outputs, clnet.Tensor) and self.__dict__.get("_summary_shape") is None:
            self._summary_shape = (None,) + tuple(outputs.shape[1:])
        return outputs

    def _assert_input(self, x):
        flat = [t for t in tree.flatten(x) if isinstance(t, (clnet.Tensor, KerasTensor))]
        if flat:
            self._check_input(tuple(flat[0].shape))

    def _check_input(self, shape):
        spec = self.input_spec
        if spec is None or isinstance(spec, (list, tuple)):
            return
        where = f'Input 0 of layer "{self.name}" is incompatible with the layer: '
        if spec.ndim is not None and len(shape) != spec.ndim:
            raise ValueError(where + f"expected ndim={spec.ndim}, found ndim={len(shape)}. Full shape received: "
                             f"{format_shape(shape)}")
        if spec.min_ndim is not None and len(shape) < spec.min_ndim:
            raise ValueError(where + f"expected min_ndim={spec.min_ndim}, found ndim={len(shape)}. Full shape "
                             f"received: {format_shape(shape)}")
        if spec.max_ndim is not None and len(shape) > spec.max_ndim:
            raise ValueError(where + f"expected max_ndim={spec.max_ndim}, found ndim={len(shape)}. Full shape "
                             f"received: {format_shape(shape)}")
        for axis, value in spec.axes.items():
            if value is not None and -len(shape) <= axis < len(shape) and shape[axis] not in (value, None):
                raise ValueError(where + f"expected axis {axis} of input shape to have value {value}, but received "
                                 f"input with shape {format_shape(shape)}")

    # --- masks ------------------------------------------------------------------------------------
    def compute_mask(self, inputs, previous_mask=None):
        """The mask of the outputs: the incoming one for layers that support masking, else none."""
        return previous_mask if self.supports_masking else None

    def _attach_masks(self, inputs, outputs, previous_mask):
        """Keras's rule: a layer that supports masking gives its outputs compute_mask()'s masks; one that does not
        drops an incoming mask (with Keras's warning), unless it returned its input tensor itself."""
        if not self.supports_masking:
            if previous_mask is not None and not in_shapes_only_run() and \
                    not any(out is inp for out in tree.flatten(outputs) for inp in tree.flatten(inputs)):
                warnings.warn(f"Layer '{self.name}' (of type {type(self).__name__}) was passed an input with a mask "
                              "attached to it. However, this layer does not support masking and will therefore "
                              "destroy the mask information. Downstream layers will not see the mask.", stacklevel=3)
            return
        outs = tree.flatten(outputs)
        if all(getattr(o, "_keras_mask", None) is not None for o in outs if isinstance(o, clnet.Tensor)) and \
                any(isinstance(o, clnet.Tensor) for o in outs):
            return  # masks already set by call()
        masks = self.compute_mask(inputs, previous_mask)
        if masks is None:
            return
        mask_list = tree.flatten(masks) if isinstance(masks, (list, tuple)) else [masks] * len(outs)
        for out, m in zip(outs, mask_list):
            if isinstance(out, clnet.Tensor) and m is not None and getattr(out, "_keras_mask", None) is None:
                out._keras_mask = m

    # --- symbolic calls ---------------------------------------------------------------------------
    def symbolic_call(self, *args, **kwargs):
        shapes = [tree.map_structure(lambda t: t.shape if isinstance(t, KerasTensor) else None, a)
                  for a in args if any(isinstance(x, KerasTensor) for x in tree.flatten(a))]
        if not self.built and shapes:
            self._maybe_build(*shapes)
        first = [t for t in tree.flatten(args[0] if args else kwargs) if isinstance(t, KerasTensor)]
        if first:
            self._check_input(first[0].shape)
        spec_kwargs = kwargs
        if args and kwargs.get("mask") is None and "mask" in self._call_params()[0]:
            mask = _masks_of(args[0])  # call(inputs, mask=None) sees the symbolic mask too, as in eager calls
            if mask is not None:  # (not recorded in the node: a replay takes the mask its inputs carry then)
                spec_kwargs = {**kwargs, "mask": mask}
        try:
            outputs = self.compute_output_spec(*args, **spec_kwargs)
        except TypeError as err:
            raise TypeError(f"Error calling layer {self.name!r} ({type(self).__name__}) on symbolic inputs: {err}. "
                            f"Check the arguments passed to the layer against its call() signature "
                            f"{inspect.signature(self.call)}") from err
        Node(self, args, kwargs, outputs)
        flat = [t for t in tree.flatten(outputs) if isinstance(t, KerasTensor)]
        if len(flat) == 1:
            self._summary_shape = flat[0].shape
        self._symbolic_masks(args[0] if args else None, flat)
        return outputs

    def _symbolic_masks(self, inputs, outputs):
        """Give symbolic outputs the masks compute_mask() would give (found by a placeholder run), so layers
        called on them later see a mask while the model is being built, as in Keras."""
        if inputs is None or not outputs or not self.supports_masking:
            return
        masks = placeholder_spec(lambda x: self.compute_mask(x, _masks_of(x)), (inputs,), {})
        flat = tree.flatten(masks) if isinstance(masks, (list, tuple)) else [masks] * len(outputs)
        for out, m in zip(outputs, flat):
            if isinstance(m, KerasTensor):
                out._keras_mask = m

    # --- config -----------------------------------------------------------------------------------
    def get_config(self):
        """name, trainable, dtype; a subclass that does not define get_config() also gets the arguments its
        __init__ was called with, when they are plain values (Keras's automatic config)."""
        config = {"name": self.name, "trainable": self._trainable, "dtype": self._dtype_name}
        if self._declared_input_shape is not None:
            config["batch_input_shape"] = list(self._declared_input_shape)
        auto = self.__dict__.get("_auto_config")
        if auto is not None and type(self).get_config is Layer.get_config:
            config.update(auto)
        return config

    # --- saving (Keras's weights-file hooks; clnet.keras.saving.state_layout gives each layer its path) ------
    def save_own_variables(self, store):
        """Put this layer's own variables into `store` as "0", "1", ... (created-trainable ones first, as
        Keras orders them). Override with load_own_variables to save other state."""
        own = list(self._own_weights)
        for i, v in enumerate([w for w in own if w._keras_trainable] + [w for w in own if not w._keras_trainable]):
            store[str(i)] = v.numpy()

    def load_own_variables(self, store):
        """Assign this layer's own variables from `store` (what save_own_variables wrote); counts and shapes are
        checked before anything is assigned."""
        own = list(self._own_weights)
        own = [w for w in own if w._keras_trainable] + [w for w in own if not w._keras_trainable]
        if len(store) != len(own):
            raise ValueError(f"Layer '{self.name}' expected {len(own)} variables, but received {len(store)} "
                             f"variables during loading. Expected: {[w.path.rpartition('/')[2] for w in own]}")
        values = [np.asarray(store[str(i)]) for i in range(len(own))]
        for w, value in zip(own, values):
            if tuple(value.shape) != tuple(w.shape):
                raise ValueError(f"Layer '{self.name}': variable {w.path} has shape {tuple(w.shape)}, but the saved "
                                 f"value has shape {tuple(value.shape)}")
        for w, value in zip(own, values):
            w.assign(clnet.tensor(np.array(value, dtype=w.dtype, order="C"), device=w.device))

    @classmethod
    def from_config(cls, config):
        try:
            return cls(**config)
        except TypeError as err:
            raise TypeError(f"Error when deserializing class '{cls.__name__}' using config={config}.\n\nException "
                            f"encountered: {err}. If the layer's __init__ takes arguments, its get_config() must "
                            "return them (start from super().get_config() and add yours).") from None

    def __repr__(self):
        return f"<{type(self).__name__} name={self.__dict__.get('name')}, built={self.__dict__.get('built')}>"


_PLAIN = (str, int, float, bool, type(None))


def _plain(value):
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return isinstance(value, _PLAIN)


def _auto_config(cls, args, kwargs):
    """The arguments of cls(*args, **kwargs) by name (defaults filled in, `name` left to get_config), or None
    when they cannot be saved as plain values (Keras's automatic config, used when get_config is not defined)."""
    init = cls.__init__
    if init is Layer.__init__:
        return None
    try:
        sig = inspect.signature(init)
        bound = sig.bind(None, *args, **kwargs)
    except (TypeError, ValueError):
        return None
    if any(p.kind in (p.POSITIONAL_ONLY, p.VAR_POSITIONAL) for p in list(sig.parameters.values())[1:]):
        return None
    bound.apply_defaults()
    values = dict(bound.arguments)
    values.pop(next(iter(sig.parameters)), None)
    for p in sig.parameters.values():
        if p.kind == p.VAR_KEYWORD:
            values.update(values.pop(p.name, {}))
    values.pop("name", None)
    return values if _plain(values) else None


def _masks_of(x):
    """The _keras_mask of x (a tensor, or a structure of masks), or None when nothing carries one."""
    if isinstance(x, clnet.Tensor):
        return getattr(x, "_keras_mask", None)
    masks = tree.map_structure(lambda t: getattr(t, "_keras_mask", None), x)
    return masks if any(m is not None for m in tree.flatten(masks)) else None


def _has_tensor(x):
    return any(isinstance(t, clnet.Tensor) for t in tree.flatten(x))


def _spec_of(shape, dtype):
    if shape is None:
        return None
    if isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], (list, tuple)):
        return [KerasTensor(s, dtype) for s in shape]
    if isinstance(shape, dict):
        return {k: KerasTensor(v, dtype) for k, v in shape.items()}
    return KerasTensor(shape, dtype)


def _spec_from_shape(shape, dtype):
    if isinstance(shape, dict):
        return {k: _spec_from_shape(v, dtype) for k, v in shape.items()}
    if isinstance(shape, (list, tuple)) and shape and all(isinstance(s, (list, tuple)) or s is None for s in shape) \
            and any(isinstance(s, (list, tuple)) for s in shape):
        return [KerasTensor(s, dtype) for s in shape] if isinstance(shape, list) else \
            tuple(KerasTensor(s, dtype) for s in shape)
    return KerasTensor(shape, dtype)


class InputLayer(Layer):
    """The first layer of a model built from keras.Input: it only declares the input shape and dtype."""

    def __init__(self, shape=None, batch_size=None, dtype=None, sparse=None, batch_shape=None, input_tensor=None,
                 optional=False, name=None, **kwargs):
        if "input_shape" in kwargs and shape is None:
            shape = kwargs.pop("input_shape")
        if "batch_input_shape" in kwargs and batch_shape is None:
            batch_shape = kwargs.pop("batch_input_shape")
        kwargs.pop("ragged", None)
        super().__init__(name=name or utils.unique_name("input_layer"), dtype=dtype, **kwargs)
        if batch_shape is None:
            if shape is None:
                raise ValueError("You must pass a `shape` argument, e.g. keras.Input(shape=(784,))")
            batch_shape = (batch_size,) + _shape_tuple(shape)
        self.batch_shape = _shape_tuple(batch_shape)
        self.sparse, self.optional = bool(sparse), bool(optional)
        self._build_input_shape = self.batch_shape
        self.built = True
        output = KerasTensor(self.batch_shape, self._dtype_name, name=self.name)
        Node(self, (), {}, output)
        self._output = output

    @property
    def output(self):
        return self._output

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {"batch_shape": list(self.batch_shape), "dtype": self._dtype_name, "sparse": self.sparse,
                "name": self.name, "optional": self.optional}


def Input(shape=None, batch_size=None, dtype=None, sparse=None, batch_shape=None, name=None, tensor=None,  # noqa: N802
          optional=False):
    """keras.Input(shape=(784,)): a symbolic tensor to start a Sequential or functional model."""
    return InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, sparse=sparse, batch_shape=batch_shape,
                      name=name, input_tensor=tensor, optional=optional).output

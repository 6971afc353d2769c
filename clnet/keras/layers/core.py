"""Core layers: Dense, Activation, Flatten, Reshape, Dropout, ReLU, Softmax, Lambda, Rescaling (each a few
clnet ops)."""
from __future__ import annotations

import inspect
import math

import numpy as np

import clnet

from .. import _ops, activations, initializers, regularizers
from ..ops.symbolic import placeholder_spec
from ..saving.object_registration import get_registered_name, get_registered_object, is_registered
from .base import InputSpec, Layer
from .conv import data_format_of


def _check_positive_int(value, what, layer):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{layer}: {what} must be a positive integer, got {value!r}")
    return value


class Dense(Layer):
    """y = activation(x @ kernel + bias), kernel of shape (in, units) as in Keras."""

    _cast_integer_inputs = True

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True  # passes its input's mask on, as Keras's does
        self.units = _check_positive_int(units, "units", "Dense")
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)

    def build(self, input_shape):
        in_dim = input_shape[-1]
        if in_dim is None:
            raise ValueError(f"Dense layer {self.name!r} needs a known last input dimension, got input shape "
                             f"{tuple(input_shape)}")
        self.kernel = self.add_weight((in_dim, self.units), self.kernel_initializer,
                                      regularizer=self.kernel_regularizer, name="kernel")
        self.bias = self.add_weight((self.units,), self.bias_initializer, regularizer=self.bias_regularizer,
                                    name="bias") if self.use_bias else None
        self.input_spec = InputSpec(min_ndim=2, axes={-1: in_dim})
        self.built = True

    def call(self, inputs):
        return self.activation(_ops.dense(inputs, self.kernel, self.bias))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": regularizers.serialize(self.bias_regularizer)}


class Activation(Layer):
    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True  # passes its input's mask on, as Keras's does
        self.activation = activations.get(activation)

    def call(self, inputs):
        return self.activation(inputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "activation": activations.serialize(self.activation)}


class ReLU(Layer):
    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True  # passes its input's mask on, as Keras's does
        if max_value is not None and max_value < 0:
            raise ValueError(f"ReLU: max_value must be >= 0, got {max_value}")
        if negative_slope < 0:
            raise ValueError(f"ReLU: negative_slope must be >= 0, got {negative_slope}")
        self.max_value = None if max_value is None else float(max_value)
        self.negative_slope, self.threshold = float(negative_slope), float(threshold)

    def call(self, inputs):
        return activations.relu(inputs, self.negative_slope, self.max_value, self.threshold)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "max_value": self.max_value, "negative_slope": self.negative_slope,
                "threshold": self.threshold}


class Softmax(Layer):
    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = int(axis)

    def call(self, inputs):
        return activations.softmax(inputs, self.axis)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


class Flatten(Layer):
    """(batch, d1, d2, ...) -> (batch, d1 * d2 * ...) in the input's index order; with
    data_format="channels_first" the channel axis (1) moves last first, as Keras does."""

    _keeps_input_dtype = True

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = data_format_of(data_format, "Flatten")

    def call(self, inputs):
        if inputs.ndim == 2:
            return inputs
        if self.data_format == "channels_first":
            inputs = inputs.permute(0, *range(2, inputs.ndim), 1)
        return inputs.reshape(inputs.shape[0], -1)

    def compute_output_shape(self, input_shape):
        rest = input_shape[1:]
        return (input_shape[0], None if any(s is None for s in rest) else math.prod(rest))


class Reshape(Layer):
    _keeps_input_dtype = True

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        self.target_shape = tuple(int(s) for s in target_shape)
        if sum(s == -1 for s in self.target_shape) > 1:
            raise ValueError(f"Reshape: at most one -1 is allowed in target_shape {self.target_shape}")

    def call(self, inputs):
        return inputs.reshape((inputs.shape[0],) + self.target_shape)

    def compute_output_shape(self, input_shape):
        shape = list(self.target_shape)
        if -1 in shape:
            known = math.prod(s for s in shape if s != -1)
            rest = input_shape[1:]
            total = None if any(s is None for s in rest) else math.prod(rest)
            if total is not None and (known == 0 or total % known):
                raise ValueError(f"Reshape {self.name!r}: cannot reshape input of shape {tuple(input_shape)} into "
                                 f"{self.target_shape}")
            shape[shape.index(-1)] = None if total is None else total // known
        else:
            rest = input_shape[1:]
            if all(s is not None for s in rest) and math.prod(rest) != math.prod(shape):
                raise ValueError(f"Reshape {self.name!r}: total size of the input {tuple(input_shape[1:])} "
                                 f"({math.prod(rest)}) differs from the target shape {self.target_shape} "
                                 f"({math.prod(shape)})")
        return (input_shape[0],) + tuple(shape)

    def get_config(self):
        return {**super().get_config(), "target_shape": list(self.target_shape)}


class Dropout(Layer):
    """Zeroes a fraction `rate` of the inputs during training, scaling the rest by 1 / (1 - rate)."""

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True  # passes its input's mask on, as Keras's does
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"Dropout: rate must be in [0, 1), got {rate}")
        if noise_shape is not None:
            raise NotImplementedError("Dropout: noise_shape is not supported yet")
        self.rate, self.seed = float(rate), seed

    def call(self, inputs, training=False):
        return _ops.dropout(inputs, self.rate, training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


class Lambda(Layer):
    """Wraps a function of tensors (keras.ops or clnet ops) as a layer: `Lambda(lambda x: x ** 2)`.

    `output_shape` (a tuple without the batch axis, or a function of the input shape) saves the placeholder
    run that otherwise finds the output shape on symbolic inputs. Saving: a function registered with
    keras.saving.register_keras_serializable() (or a Keras activation) is saved by name; a Python lambda or
    other unregistered function cannot be saved, since clnet never writes Python code into a model file
    (Keras writes its bytecode and refuses to load it unless safe_mode=False).
    """

    def __init__(self, function, output_shape=None, mask=None, arguments=None, **kwargs):
        super().__init__(**kwargs)
        if not callable(function):
            raise TypeError(f"Lambda: `function` must be callable, got {function!r}")
        if output_shape is not None and not callable(output_shape) and not isinstance(output_shape, (tuple, list)):
            raise TypeError(f"Lambda: `output_shape` must be a tuple, a list or a function, got {output_shape!r}")
        self.function, self.arguments = function, dict(arguments or {})
        self._output_shape, self.mask = output_shape, mask
        params = inspect.signature(function).parameters if _has_signature(function) else {}
        self._fn_takes = {name for name in ("mask", "training") if name in params}
        self.supports_masking = mask is not None  # as Keras: only a given mask (or mask function) makes one

    def call(self, inputs, mask=None, training=None):
        kwargs = dict(self.arguments)
        if "mask" in self._fn_takes:
            kwargs["mask"] = mask
        if "training" in self._fn_takes:
            kwargs["training"] = training
        return self.function(inputs, **kwargs)

    def compute_mask(self, inputs, previous_mask=None):
        if callable(self.mask):
            return self.mask(inputs, previous_mask)
        return self.mask

    def compute_output_shape(self, input_shape):
        if self._output_shape is None:
            return super().compute_output_shape(input_shape)
        if callable(self._output_shape):
            return self._output_shape(input_shape)
        batch = input_shape[0] if isinstance(input_shape, tuple) and input_shape and \
            not isinstance(input_shape[0], (tuple, list)) else None
        return (batch,) + tuple(self._output_shape)

    def compute_output_spec(self, *args, **kwargs):
        if self._output_shape is None:  # no shape arithmetic given: a placeholder run of the function
            return placeholder_spec(self._call_eager_quiet, args, kwargs)
        return super().compute_output_spec(*args, **kwargs)

    @staticmethod
    def _serialize_fn(fn, layer, what):
        if fn is None:
            return None
        if is_registered(fn):
            return get_registered_name(fn)
        try:
            return activations.serialize(fn)
        except ValueError:
            pass
        kind = "a Python lambda" if getattr(fn, "__name__", "") == "<lambda>" else \
            f"the unregistered function {getattr(fn, '__qualname__', fn)!r}"
        raise ValueError(f"Lambda layer {layer!r}: its {what} is {kind}, which cannot be saved: clnet does not write "
                         "Python code into model files (Keras stores its bytecode and refuses to load it unless "
                         "safe_mode=False). Define it as a named function decorated with "
                         "@keras.saving.register_keras_serializable(), or save the weights with save_weights() and "
                         "rebuild the model in code.")

    def get_config(self):
        config = {**super().get_config(), "function": self._serialize_fn(self.function, self.name, "function"),
                  "arguments": self.arguments or None}
        if callable(self._output_shape):
            config["output_shape"] = self._serialize_fn(self._output_shape, self.name, "output_shape function")
        else:
            config["output_shape"] = None if self._output_shape is None else list(self._output_shape)
        if callable(self.mask):
            config["mask"] = self._serialize_fn(self.mask, self.name, "mask function")
        elif self.mask is not None:
            raise ValueError(f"Lambda layer {self.name!r}: a constant mask tensor cannot be saved")
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("function", "output_shape", "mask"):
            value = config.get(key)
            if isinstance(value, dict) and value.get("class_name") == "function":  # Keras's entry for a named one
                value = value.get("registered_name") or value.get("config")
            if isinstance(value, dict):
                raise ValueError(f"Lambda: the saved {key} is Python code ({value.get('class_name')!r}); clnet never "
                                 "loads code from a model file. Register the function with "
                                 "@keras.saving.register_keras_serializable() and save the model again with clnet.")
            if isinstance(value, str) and (key != "output_shape" or value):
                fn = get_registered_object(value) or activations.get(value)
                config[key] = fn
        return super().from_config(config)


def _has_signature(fn):
    try:
        inspect.signature(fn)
        return True
    except (TypeError, ValueError):
        return False


class Rescaling(Layer):
    """inputs * scale + offset (e.g. scale=1 / 255 for images); scale and offset may be per-channel lists."""

    _cast_integer_inputs = True

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale, self.offset = _number_or_list(scale, "scale"), _number_or_list(offset, "offset")
        self.supports_masking = True

    def call(self, inputs):
        scale, offset = self.scale, self.offset
        if isinstance(scale, list):
            scale = clnet.tensor(np.asarray(scale, dtype=self.dtype), device=inputs.device)
        if isinstance(offset, list):
            offset = clnet.tensor(np.asarray(offset, dtype=self.dtype), device=inputs.device)
        return inputs * scale + offset

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}


def _number_or_list(value, what):
    if isinstance(value, dict) and value.get("class_name") == "__numpy__":  # Keras's saved numpy array
        value = value.get("config", {}).get("value")
    arr = np.asarray(value.numpy() if isinstance(value, clnet.Tensor) else value, dtype=np.float64)
    if arr.dtype == object or not np.all(np.isfinite(arr)):
        raise ValueError(f"Rescaling: `{what}` must be a finite number or a list of numbers, got {value!r}")
    return float(arr) if arr.ndim == 0 else arr.tolist()

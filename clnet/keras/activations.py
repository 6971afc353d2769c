"""keras.activations: activation functions by name or callable, each a few clnet ops.

`get("relu")` returns the function; `get(callable)` returns it unchanged; `serialize(fn)` gives the
name saved in model files (a callable that is not a known activation cannot be saved by name).
"""
from __future__ import annotations

import clnet

from . import _ops
from .saving.object_registration import get_registered_object, is_registered, get_registered_name


def linear(x):
    return x


def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """max(x, 0) by default; Keras's leaky slope, cap and threshold when given."""
    if negative_slope == 0.0 and max_value is None and threshold == 0.0:
        return clnet.relu(x)
    return _ops.relu_general(x, negative_slope, max_value, threshold)


def relu6(x):
    return clnet.clamp(x, 0.0, 6.0)


def leaky_relu(x, negative_slope=0.2):
    return _ops.relu_general(x, negative_slope, None, 0.0)


def sigmoid(x):
    """1 / (1 + exp(-x)); remembers its logits so binary cross-entropy can use the stable formula."""
    y = clnet.sigmoid(x)
    y._keras_logits = x
    return y


def hard_sigmoid(x):
    return clnet.clamp(x * (1.0 / 6.0) + 0.5, 0.0, 1.0)


def tanh(x):
    return clnet.tanh(x)


def softmax(x, axis=-1):
    """exp(x) / sum(exp(x)) along `axis`; remembers its logits so cross-entropy can fuse (as TF Keras)."""
    y = _ops.softmax(x, axis)
    if axis in (-1, x.ndim - 1):
        y._keras_logits = x
    return y


def log_softmax(x, axis=-1):
    return _ops.log_softmax(x, axis)


def exponential(x):
    return clnet.exp(x)


def softplus(x):
    # log(1 + exp(x)) computed stably: max(x, 0) + log1p(exp(-|x|))
    return clnet.relu(x) + clnet.ops.elementwise.log1p(clnet.exp(-clnet.abs(x)))


def softsign(x):
    return x / (clnet.abs(x) + 1.0)


def silu(x):
    return x * clnet.sigmoid(x)


swish = silu


def elu(x, alpha=1.0):
    return clnet.where(x > 0, x, clnet.ops.elementwise.expm1(x) * alpha)


def selu(x):
    alpha, scale = 1.6732632423543772, 1.0507009873554805
    return elu(x, alpha) * scale


_ACTIVATIONS = {
    "linear": linear, "relu": relu, "relu6": relu6, "leaky_relu": leaky_relu, "sigmoid": sigmoid,
    "hard_sigmoid": hard_sigmoid, "tanh": tanh, "softmax": softmax, "log_softmax": log_softmax,
    "exponential": exponential, "softplus": softplus, "softsign": softsign, "silu": silu, "swish": swish,
    "elu": elu, "selu": selu,
}

# clnet's own functions that users may pass (the lecture's `activation=tf.nn.relu` becomes clnet.relu).
_ALIASES = {"relu": clnet.relu, "sigmoid": clnet.sigmoid, "tanh": clnet.tanh, "exp": clnet.exp}


def get(identifier):
    """None -> linear, a name -> the function, a callable -> itself; unknown names list the valid ones."""
    if identifier is None:
        return linear
    if isinstance(identifier, str):
        fn = _ACTIVATIONS.get(identifier.lower())
        if fn is None:  # a registered function ("my_package>custom_fn") or one in a custom_object_scope
            fn = get_registered_object(identifier)
        if fn is None:
            raise ValueError(f"Unknown activation {identifier!r}. Valid names: {', '.join(sorted(_ACTIVATIONS))}")
        return fn
    if callable(identifier):
        return identifier
    raise TypeError(f"activation must be a name or a callable, got {identifier!r} ({type(identifier).__name__})")


def serialize(fn):
    """The name of a known activation (None for linear's default); raises for an unknown callable."""
    for name, known in _ACTIVATIONS.items():
        if fn is known:
            return name
    for name, known in _ALIASES.items():
        if fn is known:
            return "exponential" if name == "exp" else name
    if is_registered(fn):
        return get_registered_name(fn)
    raise ValueError(f"activation {getattr(fn, '__name__', fn)!r} is a custom callable, which cannot be saved "
                     f"by name: use one of {', '.join(sorted(_ACTIVATIONS))}, or register it with "
                     "keras.saving.register_keras_serializable() and pass custom_objects= to load_model")


def deserialize(name, custom_objects=None):
    if custom_objects and name in custom_objects:
        return custom_objects[name]
    fn = get_registered_object(name)
    return fn if fn is not None else get(name)


def is_pointwise(fn) -> bool:
    """True for activations that act on each element alone (so layout does not matter to them)."""
    return fn in _POINTWISE or any(fn is f for f in _ALIASES.values())


_POINTWISE = {linear, relu, relu6, leaky_relu, sigmoid, hard_sigmoid, tanh, exponential, softplus, softsign,
              silu, elu, selu}

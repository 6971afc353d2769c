"""What a functional model is made of: KerasTensor (a shape and a dtype, no values), Operation (anything
that can be called on tensors: every layer, and each keras.ops function) and Node (one call of an
operation: its arguments and the KerasTensors it produced).

Calling an operation on KerasTensors records a Node and returns new KerasTensors; a functional model
later replays its nodes on real tensors. Output shapes come from `compute_output_spec`: an explicit
rule where the operation has one, otherwise a *placeholder run*: the operation runs on small zero tensors
(unknown sizes set to 2, then to 3; sizes that differ between the runs are unknown in the result),
without gradients, in inference mode, with add_loss calls ignored.

A KerasTensor supports Python's operators (`x + residual`, `2 * x`, `x[:, 0]`), each recorded as the
keras.ops function of the same name, so those few ops live here, next to the class that uses them.
"""
from __future__ import annotations

import contextlib
import functools
import threading
from typing import NamedTuple

import numpy as np

import clnet
from clnet import dtypes as _dt

from .. import config, tree, utils
from ..saving.object_registration import register_builtin


# --- dtypes -----------------------------------------------------------------------------------------
def standardize_dtype(dtype) -> str:
    """Keras's dtype names ("float32", "int64", "bool", ...) from strings, numpy or clnet dtypes."""
    if dtype is None:
        return config.floatx()
    if isinstance(dtype, str):
        if dtype in ("float", "double"):
            return {"float": "float32", "double": "float64"}[dtype]
        return "bool" if dtype == "bool_" else np.dtype(dtype).name
    if hasattr(dtype, "name") and not isinstance(dtype, np.dtype) and isinstance(getattr(dtype, "name"), str) \
            and not hasattr(dtype, "kind"):
        return standardize_dtype(dtype.name)  # a DTypePolicy
    return np.dtype(dtype).name


def is_float_dtype(dtype) -> bool:
    return standardize_dtype(dtype).startswith(("float", "bfloat"))


# --- call context -----------------------------------------------------------------------------------
class _CallState(threading.local):
    def __init__(self):
        self.stack = []


_state = _CallState()


class CallContext:
    """The state of the outermost layer call in progress: the training flag sub-layers inherit, and
    whether this is a placeholder run (shapes only: no losses are kept, no statistics updated)."""

    def __init__(self, training=None, shapes_only=False):
        self.training, self.shapes_only = training, shapes_only


def current_context():
    return _state.stack[-1] if _state.stack else None


@contextlib.contextmanager
def call_context(training=None, shapes_only=False):
    outer = current_context()
    if outer is not None:
        if training is None:
            training = outer.training
        shapes_only = shapes_only or outer.shapes_only
    _state.stack.append(CallContext(training, shapes_only))
    try:
        yield _state.stack[-1]
    finally:
        _state.stack.pop()


def in_shapes_only_run() -> bool:
    ctx = current_context()
    return ctx is not None and ctx.shapes_only


# --- KerasTensor ------------------------------------------------------------------------------------
class KerasHistory(NamedTuple):
    operation: object
    node_index: int
    tensor_index: int


class KerasTensor:
    """A symbolic tensor: a shape (None where unknown, e.g. the batch), a dtype and the call that made it."""

    def __init__(self, shape, dtype="float32", sparse=False, name=None):
        self.shape = tuple(None if s is None else int(s) for s in shape)
        self.dtype = standardize_dtype(dtype)
        self.sparse = bool(sparse)
        self.name = name or utils.unique_name("keras_tensor")
        self._keras_history = None
        self._keras_mask = None

    @property
    def ndim(self):
        return len(self.shape)

    def __repr__(self):
        return f"<KerasTensor shape={_fmt_shape(self.shape)}, dtype={self.dtype}, sparse={self.sparse}, " \
               f"name={self.name}>"

    # Keras's words when a symbolic tensor is used as if it held values.
    def _no_value(self, what):
        return TypeError(f"A KerasTensor is symbolic: it's a placeholder for a shape and a dtype. It doesn't have "
                         f"any actual numerical value. You cannot {what}. (It comes from keras.Input or a layer "
                         "called on one: pass real data to the model instead, or do this math inside a layer's "
                         "call() or with keras.ops, which record it in the model.)")

    def __array__(self, dtype=None, copy=None):
        raise self._no_value("convert it to a NumPy array")

    def numpy(self):
        raise self._no_value("convert it to a NumPy array")

    def __bool__(self):
        raise self._no_value("use it as a Python boolean (in an `if` or `while`)")

    def __float__(self):
        raise self._no_value("convert it to a Python float")

    def __int__(self):
        raise self._no_value("convert it to a Python int")

    def __iter__(self):
        raise self._no_value("iterate over it")

    def __len__(self):
        raise self._no_value("take its len()")

    # operators: each records the keras.ops function of the same name
    def __add__(self, other):
        return add(self, other)

    def __radd__(self, other):
        return add(other, self)

    def __sub__(self, other):
        return subtract(self, other)

    def __rsub__(self, other):
        return subtract(other, self)

    def __mul__(self, other):
        return multiply(self, other)

    def __rmul__(self, other):
        return multiply(other, self)

    def __truediv__(self, other):
        return true_divide(self, other)

    def __rtruediv__(self, other):
        return true_divide(other, self)

    def __floordiv__(self, other):
        return floor_divide(self, other)

    def __rfloordiv__(self, other):
        return floor_divide(other, self)

    def __mod__(self, other):
        return mod(self, other)

    def __rmod__(self, other):
        return mod(other, self)

    def __pow__(self, other):
        return power(self, other)

    def __rpow__(self, other):
        return power(other, self)

    def __matmul__(self, other):
        return matmul(self, other)

    def __rmatmul__(self, other):
        return matmul(other, self)

    def __neg__(self):
        return negative(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return absolute(self)

    def __invert__(self):
        return logical_not(self)

    def __and__(self, other):
        return logical_and(self, other)

    def __rand__(self, other):
        return logical_and(other, self)

    def __or__(self, other):
        return logical_or(self, other)

    def __ror__(self, other):
        return logical_or(other, self)

    def __xor__(self, other):
        return logical_xor(self, other)

    def __rxor__(self, other):
        return logical_xor(other, self)

    def __lt__(self, other):
        return less(self, other)

    def __le__(self, other):
        return less_equal(self, other)

    def __gt__(self, other):
        return greater(self, other)

    def __ge__(self, other):
        return greater_equal(self, other)

    def __ne__(self, other):  # as Keras: != is an op, == keeps its identity meaning (KerasTensors are dict keys)
        return not_equal(self, other)

    __hash__ = object.__hash__

    def __getitem__(self, key):
        return get_item(self, key)

    def reshape(self, *shape):
        return reshape(self, shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)

    def squeeze(self, axis=None):
        return squeeze(self, axis)

    @property
    def T(self):  # noqa: N802
        return transpose(self)


def _fmt_shape(shape):
    return "(" + ", ".join("None" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def is_keras_tensor(x) -> bool:
    return isinstance(x, KerasTensor)


def any_symbolic(*structures) -> bool:
    return any(isinstance(leaf, KerasTensor) for s in structures for leaf in tree.flatten(s))


# --- Node and Operation -----------------------------------------------------------------------------
class Node:
    """One call of an operation in a model: the arguments it got (KerasTensors among them) and its outputs."""

    def __init__(self, operation, call_args=(), call_kwargs=None, outputs=()):
        self.operation = operation
        self.arguments = (tuple(call_args), dict(call_kwargs or {}))
        self.outputs = tree.flatten(outputs)
        self.input_tensors = [x for x in tree.flatten(self.arguments) if isinstance(x, KerasTensor)]
        self.is_input = not self.input_tensors and not call_args
        operation._inbound_nodes.append(self)
        index = len(operation._inbound_nodes) - 1
        for i, out in enumerate(self.outputs):
            out._keras_history = KerasHistory(operation, index, i)
        for x in self.input_tensors:
            if x._keras_history is not None:
                x._keras_history.operation._outbound_nodes.append(self)

    @property
    def parent_nodes(self):
        return [x._keras_history.operation._inbound_nodes[x._keras_history.node_index] for x in self.input_tensors
                if x._keras_history is not None]

    def __repr__(self):
        return f"<Node {self.operation.name} inputs={[x.name for x in self.input_tensors]}>"


class Operation:
    """Something called on tensors: eagerly on clnet tensors, symbolically (recording a Node) on KerasTensors."""

    def __init__(self, name=None):
        object.__setattr__(self, "_inbound_nodes", [])
        object.__setattr__(self, "_outbound_nodes", [])
        if name is not None and (not isinstance(name, str) or "/" in name):
            raise ValueError(f"Argument `name` must be a string and cannot contain character `/`. Received: "
                             f"name={name!r} (of type {type(name)})")
        self.name = name or utils.unique_name(utils.snake_case(type(self).__name__))

    def __call__(self, *args, **kwargs):
        if any_symbolic(args, kwargs):
            return self.symbolic_call(*args, **kwargs)
        return self.call(*args, **kwargs)

    def call(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must implement call()")

    def symbolic_call(self, *args, **kwargs):
        outputs = self.compute_output_spec(*args, **kwargs)
        Node(self, args, kwargs, outputs)
        return outputs

    def compute_output_spec(self, *args, **kwargs):
        return placeholder_spec(self.call, args, kwargs)

    def get_config(self):
        return {"name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    # the tensors of the operation's first call on symbolic tensors (Keras's layer.input / layer.output)
    def _single_node(self, what):
        if not self._inbound_nodes:
            raise AttributeError(f"The layer {self.name} has never been called and thus has no defined {what}.")
        return self._inbound_nodes[0]

    @property
    def input(self):
        node = self._single_node("input")
        args, kwargs = node.arguments
        return args[0] if len(args) == 1 and not kwargs else (node.input_tensors[0] if len(node.input_tensors) == 1
                                                               else list(node.input_tensors))

    @property
    def output(self):
        outs = self._single_node("output").outputs
        return outs[0] if len(outs) == 1 else list(outs)

    def get_input_at(self, node_index):
        ins = self._inbound_nodes[node_index].input_tensors
        return ins[0] if len(ins) == 1 else list(ins)

    def get_output_at(self, node_index):
        outs = self._inbound_nodes[node_index].outputs
        return outs[0] if len(outs) == 1 else list(outs)


# --- placeholder runs -------------------------------------------------------------------------------
def _placeholders(structure, size, device):
    def make(x):
        if not isinstance(x, KerasTensor):
            return x
        shape = tuple(size if s is None else s for s in x.shape)
        t = clnet.zeros(shape, dtype=_dt.as_dtype(x.dtype), device=device)
        if x._keras_mask is not None:  # a symbolic mask becomes an all-true one of its shape
            t._keras_mask = clnet.ones(tuple(size if s is None else s for s in x._keras_mask.shape), dtype=_dt.bool_,
                                       device=device)
        return t
    return tree.map_structure(make, structure)


def _spec(a, b=None):
    """The KerasTensor of an output seen in two placeholder runs (sizes that differ are unknown)."""
    if not isinstance(a, clnet.Tensor):
        return a
    if b is None:
        shape = tuple(a.shape)
    else:
        shape = tuple(sa if sa == sb else None for sa, sb in zip(a.shape, b.shape))
    return KerasTensor(shape, dtype=a.dtype)


def placeholder_spec(fn, args, kwargs):
    """Output KerasTensors of fn(*args, **kwargs) from runs on zero tensors (see the module docstring)."""
    has_unknown = any(s is None for x in tree.flatten((args, kwargs)) if isinstance(x, KerasTensor) for s in x.shape)
    device = clnet.default_device()
    runs = []
    for size in ((2, 3) if has_unknown else (2,)):
        a, k = _placeholders((args, kwargs), size, device)
        with clnet.no_grad(), call_context(training=False, shapes_only=True):
            runs.append(fn(*a, **k))
    first = runs[0]
    if len(runs) == 1:
        return tree.map_structure(_spec, first)
    flat_a, flat_b = tree.flatten(first), tree.flatten(runs[1])
    if len(flat_a) != len(flat_b):
        raise ValueError(f"{getattr(fn, '__qualname__', fn)} returned differently structured outputs for different "
                         "input sizes, so its output shape cannot be inferred; give the layer a "
                         "compute_output_shape() method")
    return tree.pack_sequence_as(first, [_spec(x, y) for x, y in zip(flat_a, flat_b)])


def numpy_spec(np_fn):
    """A compute_output_spec that runs numpy's function of the same meaning on zero arrays (no device work)."""
    def spec(*args, **kwargs):
        has_unknown = any(s is None for x in tree.flatten((args, kwargs)) if isinstance(x, KerasTensor)
                          for s in x.shape)
        runs = []
        for size in ((2, 3) if has_unknown else (2,)):
            def make(x, size=size):
                if not isinstance(x, KerasTensor):
                    return x
                return np.zeros(tuple(size if s is None else s for s in x.shape), dtype=x.dtype)
            a, k = tree.map_structure(make, (args, kwargs))
            runs.append(np.asarray(np_fn(*a, **k)))
        dtype = _result_float(runs[0].dtype, args, kwargs)
        if len(runs) == 1:
            return KerasTensor(runs[0].shape, dtype)
        if runs[0].ndim != runs[1].ndim:
            raise ValueError(f"cannot infer the output shape of {np_fn.__name__} for unknown input sizes")
        return KerasTensor(tuple(a if a == b else None for a, b in zip(runs[0].shape, runs[1].shape)), dtype)
    return spec


def _result_float(np_dtype, args, kwargs):
    """numpy widens ints to float64 where Keras uses floatx; keep float64 only if an input was float64."""
    name = np.dtype(np_dtype).name
    if name == "float64" and not any(isinstance(x, KerasTensor) and x.dtype == "float64"
                                     for x in tree.flatten((args, kwargs))):
        return config.floatx()
    return name


def broadcast_shapes(a, b):
    """Numpy broadcasting of two shapes with None (unknown) sizes."""
    a, b = tuple(a), tuple(b)
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + a, (1,) * (n - len(b)) + b
    out = []
    for x, y in zip(a, b):
        if x == 1:
            out.append(y)
        elif y == 1 or x == y:
            out.append(x)
        elif x is None or y is None:
            out.append(x if y is None else y)
        else:
            raise ValueError(f"Cannot broadcast shape, the failure dim has value {x}, which cannot be broadcasted to "
                             f"{y}. Input shapes are: {list(a)} and {list(b)}.")
    return tuple(out)


def _operand_shape_dtype(x):
    if isinstance(x, KerasTensor):
        return x.shape, x.dtype, False
    if isinstance(x, clnet.Tensor):
        return tuple(x.shape), standardize_dtype(x.dtype), False
    arr = np.asarray(x)
    return arr.shape, arr.dtype.name, arr.ndim == 0 and not isinstance(x, np.ndarray)


def result_dtype(*dtypes_and_weak):
    """Keras-like promotion: a Python scalar never widens a tensor; int with float gives the float."""
    strong = [d for d, weak in dtypes_and_weak if not weak]
    if not strong:
        strong = [d for d, _ in dtypes_and_weak]
    floats = [d for d in strong if is_float_dtype(d)]
    if floats:
        return max(floats, key=lambda d: np.dtype(d).itemsize)
    if any(is_float_dtype(d) for d, _ in dtypes_and_weak):
        return config.floatx()
    if all(d == "bool" for d in strong):
        return "bool"
    ints = [d for d in strong if d != "bool"]
    return max(ints, key=lambda d: np.dtype(d).itemsize) if ints else "bool"


def elementwise_spec(*operands, dtype=None):
    """Broadcast shape of the operands; dtype given, or promoted as Keras does."""
    shape, info = (), []
    for x in operands:
        s, d, weak = _operand_shape_dtype(x)
        shape = broadcast_shapes(shape, s)
        info.append((d, weak))
    return KerasTensor(shape, dtype or result_dtype(*info))


def same_spec(x, *args, **kwargs):
    return KerasTensor(x.shape, x.dtype)


# --- keras.ops functions ----------------------------------------------------------------------------
def _camel(name):
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


class FunctionOp(Operation):
    """A keras.ops function called on KerasTensors: replays the function on real tensors in the model."""

    def __init__(self, fn, spec=None, name=None, class_name=None):
        self.fn, self.spec = fn, spec
        self.op_name = fn.__name__
        self.class_name = class_name or _camel(fn.__name__)
        super().__init__(name=name or utils.unique_name(fn.__name__))

    def call(self, *args, **kwargs):
        return self.fn(*args, **kwargs)

    def compute_output_spec(self, *args, **kwargs):
        if self.spec is not None:
            return self.spec(*args, **kwargs)
        return placeholder_spec(self.fn, args, kwargs)

    def __repr__(self):
        return f"<Operation {self.class_name} name={self.name}>"


def keras_op(spec=None, class_name=None):
    """Make `fn` (written for clnet tensors) a keras.ops function: on KerasTensors it records a FunctionOp.

    `spec(*args, **kwargs)` gives the output KerasTensor(s); without one a placeholder run finds them.
    """
    def wrap(fn):
        @functools.wraps(fn)
        def op(*args, **kwargs):
            if any_symbolic(args, kwargs):
                return FunctionOp(fn, spec, class_name=class_name)(*args, **kwargs)
            return fn(*args, **kwargs)
        op.eager, op.spec, op.class_name = fn, spec, class_name or _camel(fn.__name__)
        register_builtin("ops", op.class_name, op)  # so a saved functional model can name it
        return op
    return wrap


def as_tensor(x, dtype=None):
    """A clnet tensor from a tensor, numpy array or Python value (Python floats become floatx)."""
    if isinstance(x, clnet.Tensor):
        if dtype is not None and standardize_dtype(x.dtype) != standardize_dtype(dtype):
            return x.to(dtype=_dt.as_dtype(standardize_dtype(dtype)))
        return x
    if isinstance(x, KerasTensor):
        raise x._no_value("use it where a concrete tensor is needed")
    arr = np.asarray(x)
    if dtype is not None:
        arr = arr.astype(standardize_dtype(dtype))
    elif arr.dtype == np.float64 and not isinstance(x, np.ndarray):
        arr = arr.astype(config.floatx())
    elif arr.dtype.kind in "iu" and not isinstance(x, np.ndarray) and arr.dtype != np.int32:
        arr = arr.astype(np.int32)  # Keras makes Python ints int32
    return clnet.tensor(arr)


def _operand(x):
    """Binary-op operand: tensors and Python scalars pass through (clnet broadcasts scalars), arrays convert."""
    if isinstance(x, (clnet.Tensor, bool, int, float)):
        return x
    return as_tensor(x)


def _binary(clnet_fn):
    def run(x1, x2):
        a, b = _operand(x1), _operand(x2)
        if not isinstance(a, clnet.Tensor) and not isinstance(b, clnet.Tensor):
            a = as_tensor(a)
        return clnet_fn(a, b)
    return run


def _elementwise_op(name, clnet_fn, dtype=None):
    fn = _binary(clnet_fn)
    fn.__name__ = fn.__qualname__ = name
    return keras_op(spec=lambda x1, x2: elementwise_spec(x1, x2, dtype=dtype))(fn)


add = _elementwise_op("add", clnet.add)
subtract = _elementwise_op("subtract", clnet.sub)
multiply = _elementwise_op("multiply", clnet.mul)
floor_divide = _elementwise_op("floor_divide", clnet.floor_divide)
mod = _elementwise_op("mod", clnet.remainder)
power = _elementwise_op("power", clnet.pow)
less = _elementwise_op("less", clnet.lt, "bool")
less_equal = _elementwise_op("less_equal", clnet.le, "bool")
greater = _elementwise_op("greater", clnet.gt, "bool")
greater_equal = _elementwise_op("greater_equal", clnet.ge, "bool")
equal = _elementwise_op("equal", clnet.eq, "bool")
not_equal = _elementwise_op("not_equal", clnet.ne, "bool")
logical_and = _elementwise_op("logical_and", clnet.logical_and, "bool")
logical_or = _elementwise_op("logical_or", clnet.logical_or, "bool")
logical_xor = _elementwise_op("logical_xor", clnet.logical_xor, "bool")


def _true_divide_spec(x1, x2):
    out = elementwise_spec(x1, x2)
    return out if is_float_dtype(out.dtype) else KerasTensor(out.shape, config.floatx())


@keras_op(spec=_true_divide_spec)
def true_divide(x1, x2):
    return _binary(clnet.div)(x1, x2)


divide = true_divide
register_builtin("ops", "Divide", true_divide)


def _matmul_spec(x1, x2):
    a, da, _ = _operand_shape_dtype(x1)
    b, db, _ = _operand_shape_dtype(x2)
    if len(a) == 0 or len(b) == 0:
        raise ValueError("matmul: the inputs must have at least one dimension")
    a2, b2 = (1,) + a if len(a) == 1 else a, b + (1,) if len(b) == 1 else b
    if a2[-1] is not None and b2[-2] is not None and a2[-1] != b2[-2]:
        raise ValueError(f"Inner dimensions (`x1.shape[-1]` and `x2.shape[-2]`) must be equal, but received "
                         f"`x1.shape={a}` and `x2.shape={b}`.")
    batch = broadcast_shapes(a2[:-2], b2[:-2])
    shape = batch + ((a2[-2],) if len(a) > 1 else ()) + ((b2[-1],) if len(b) > 1 else ())
    return KerasTensor(shape, result_dtype((da, False), (db, False)))


@keras_op(spec=_matmul_spec)
def matmul(x1, x2):
    return clnet.matmul(as_tensor(x1), as_tensor(x2))


@keras_op(spec=same_spec)
def negative(x):
    return clnet.neg(as_tensor(x))


@keras_op(spec=same_spec)
def absolute(x):
    return clnet.abs(as_tensor(x))


@keras_op(spec=lambda x: KerasTensor(x.shape, "bool"))
def logical_not(x):
    return clnet.logical_not(as_tensor(x))


def _key_spec(x, key):
    """numpy indexing on zeros gives the result's shape (unknown sizes tried at 2 and 3)."""
    return numpy_spec(lambda a, k: a[k])(x, key)


@keras_op(spec=_key_spec, class_name="GetItem")
def get_item(x, key):
    return as_tensor(x)[key]


@keras_op(spec=lambda x, newshape: numpy_spec(np.reshape)(x, tuple(-1 if s is None else s for s in newshape)))
def reshape(x, newshape):
    """x with a new shape (one -1 allowed); on a symbolic tensor a None in newshape means "unknown" as -1."""
    shape = (newshape,) if isinstance(newshape, int) else tuple(-1 if s is None else int(s) for s in newshape)
    return as_tensor(x).reshape(shape)


@keras_op(spec=lambda x, axis=None: numpy_spec(np.squeeze)(x, axis))
def squeeze(x, axis=None):
    t = as_tensor(x)
    if axis is None:
        return t.squeeze()
    axes = sorted((a % t.ndim for a in ((axis,) if isinstance(axis, int) else axis)), reverse=True)
    for a in axes:
        if t.shape[a] != 1:
            raise ValueError(f"squeeze: axis {a} of shape {tuple(t.shape)} has size {t.shape[a]}, not 1")
        t = t.squeeze(a)
    return t


@keras_op(spec=lambda x, axes=None: numpy_spec(np.transpose)(x, axes))
def transpose(x, axes=None):
    t = as_tensor(x)
    if axes is None:
        axes = tuple(reversed(range(t.ndim)))
    return t.permute(*[int(a) % t.ndim for a in axes])

"""What every ONNX op of the importer shares: the node record, the run context, and host/device values.

A value flowing through an imported graph is either a clnet Tensor (on the device, recorded by autograd) or
a numpy array on the host. Host arrays are what ONNX computes about shapes (Shape -> Gather -> Concat ->
Reshape) and the graph's integer constants: ops whose inputs are all host arrays compute on the host
with numpy (no kernel launches, no device round trips), and a host array meets the device only when an op
combines it with a tensor (`Context.tensor`, which caches the upload of the graph's constants).
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np

from ...errors import ClnetError
from ...ops.creation import tensor as _make_tensor
from ...tensor import Tensor


class UnsupportedOperatorError(ClnetError, NotImplementedError):
    """An ONNX operator (or one of its attribute values) that clnet cannot run, or a clnet layer or op that
    ONNX export cannot write; the message names it."""


@dataclass(frozen=True)
class Node:
    """One ONNX node: its operator, its value names (an empty name is an absent optional input or output)
    and its attributes as Python values (ints, floats, str, lists, numpy arrays)."""
    op_type: str
    name: str
    inputs: tuple
    outputs: tuple
    attrs: dict = field(default_factory=dict)

    def where(self) -> str:
        return f"ONNX node {self.name!r} ({self.op_type})" if self.name else f"ONNX {self.op_type} node"

    def unsupported(self, what: str) -> UnsupportedOperatorError:
        return UnsupportedOperatorError(f"{self.where()}: {what} is not supported by clnet")

    def wants(self, k: int) -> bool:
        """Whether output k is used (present and named)."""
        return len(self.outputs) > k and bool(self.outputs[k])


class Context:
    """What an op needs besides its inputs: the model's opset, train/eval mode, its device, and the uploads
    of host constants (kept per device, so a module moved with .to() uploads again)."""

    def __init__(self, opset: int, training: bool, device, uploads: dict, static_ids: set):
        self.opset = opset
        self.training = training
        self.device = device
        self._uploads = uploads
        self._static_ids = static_ids

    def tensor(self, value, dtype=None) -> Tensor:
        """`value` as a Tensor on the device (a Tensor is returned as it is, cast when `dtype` is given)."""
        if isinstance(value, Tensor):
            return value if dtype is None or value.dtype == np.dtype(dtype) else value.to(dtype)
        arr = np.asarray(value) if dtype is None else np.asarray(value, dtype=dtype)
        if id(value) in self._static_ids and dtype is None:
            key = (id(value), self.device)
            if key not in self._uploads:
                self._uploads[key] = (value, _make_tensor(arr, device=self.device))
            return self._uploads[key][1]
        return _make_tensor(arr, device=self.device)


# --- helpers for ops ------------------------------------------------------------------------------------------
def all_host(*values) -> bool:
    return all(v is None or isinstance(v, np.ndarray) for v in values)


def host(v) -> np.ndarray:
    """A value as a host array (a device tensor is read back: a synchronisation, used only for shape inputs)."""
    return v if isinstance(v, np.ndarray) else v.detach().numpy()


def ints(v) -> list:
    """A shape-like input (a host array or tensor of integers) as a list of Python ints."""
    return [int(i) for i in host(v).reshape(-1)]


def operand(ctx: Context, v, partner=None):
    """An operand for a clnet op combining it with tensors: a 0-d host value becomes a Python number (a kernel
    argument, no upload) when its dtype matches what the tensor partner would compute in; anything else a
    Tensor."""
    if isinstance(v, np.ndarray) and v.ndim == 0 and isinstance(partner, Tensor) and v.dtype == partner.dtype:
        return v.item()
    if isinstance(v, numbers.Number):
        return v
    return ctx.tensor(v)


def axis(a: int, ndim: int, node: Node, what: str = "axis") -> int:
    """A possibly negative axis of an ndim-dimensional value, checked."""
    if not -ndim <= a < max(ndim, 1):
        raise ValueError(f"{node.where()}: {what} {a} is out of range for a {ndim}-dimensional input")
    return a % ndim if ndim else 0


def axes_input(ctx: Context, node: Node, inputs, k: int, attr: str = "axes"):
    """An axes list given as input k (newer opsets) or as an attribute (older ones); None when absent."""
    v = inputs[k] if len(inputs) > k else None
    if v is not None:
        return ints(v)
    if attr in node.attrs:
        return [int(a) for a in node.attrs[attr]]
    return None

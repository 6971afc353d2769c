"""Nested elements of a tf.data-style pipeline: tuples, dicts and namedtuples of arrays, kept as TF keeps them.

Inside a pipeline an element's leaves are host values (numpy arrays and scalars, Python numbers and
strings) or clnet tensors that a map function made; `stack` makes a batch of elements, `unstack` takes
one apart, and `marked_for_device` tags the numeric host arrays a consumer turns into clnet tensors.
"""
from __future__ import annotations

import collections.abc
from dataclasses import dataclass

import numpy as np

from ..ops.movement import stack as _stack_tensors
from ..tensor import Tensor
from ..utils.data.collate import HostArray


@dataclass(frozen=True)
class TensorSpec:
    """The shape (None for unknown sizes) and dtype of one component of an element (tf.TensorSpec)."""

    shape: tuple
    dtype: object = np.dtype(np.float32)
    name: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(self.shape) if self.shape is not None else None)


def _is_namedtuple(x) -> bool:
    return isinstance(x, tuple) and hasattr(x, "_fields")


def map_structure(fn, *elements):
    """fn applied leaf by leaf over elements of the same structure (tuples, namedtuples and dicts)."""
    first = elements[0]
    if isinstance(first, collections.abc.Mapping):
        items = {k: map_structure(fn, *(e[k] for e in elements)) for k in first}
        return items if type(first) is dict else type(first)(items)
    if _is_namedtuple(first):
        return type(first)(*(map_structure(fn, *parts) for parts in zip(*elements)))
    if isinstance(first, tuple):
        return tuple(map_structure(fn, *parts) for parts in zip(*elements))
    return fn(*elements)


def flatten(element) -> list:
    leaves = []
    map_structure(leaves.append, element)
    return leaves


def as_host_leaf(x):
    """A source component as a host array: clnet tensors are read, lists become arrays (TF treats a
    list as one tensor)."""
    if isinstance(x, Tensor):
        return x.numpy()
    if isinstance(x, np.ndarray):
        return x
    return np.asarray(x)


def normalize_source(tensors):
    """The structure given to from_tensor_slices / from_tensors with every component a host array."""
    if isinstance(tensors, list):
        tensors = np.asarray([as_host_leaf(t) for t in tensors]) if tensors and isinstance(tensors[0], Tensor) \
            else np.asarray(tensors)
    return map_structure(as_host_leaf, tensors)


def _leaf_stack(*leaves):
    first = leaves[0]
    if isinstance(first, Tensor):
        return _stack_tensors(list(leaves), 0)
    if any(isinstance(x, Tensor) for x in leaves):
        return _stack_tensors([x if isinstance(x, Tensor) else _device_copy(x, first) for x in leaves], 0)
    for i, x in enumerate(leaves):
        if np.shape(x) != np.shape(first):
            raise ValueError(f"Cannot batch tensors with different shapes: the first element has shape "
                             f"{np.shape(first)} and element {i} has shape {np.shape(x)} (use padded_batch, or make "
                             "them equal in map())")
    return np.stack([np.asarray(x) for x in leaves])


def _device_copy(x, like):
    from ..ops.creation import tensor
    return tensor(np.asarray(x), device=like.device)


def stack(elements):
    """A batch: the elements' leaves stacked along a new first axis, the structure kept."""
    return map_structure(_leaf_stack, *elements)


def unstack(batch) -> list:
    """The elements of a batch (the inverse of stack)."""
    leaves = flatten(batch)
    n = len(leaves[0]) if leaves else 0
    return [map_structure(lambda x, i=i: x[i], batch) for i in range(n)]


def marked_for_device(element):
    """Numeric host arrays and scalars tagged as HostArrays (they become clnet tensors); the rest as is."""
    def mark(x):
        if isinstance(x, (np.ndarray, np.generic)) and x.dtype.kind in "fiub":
            return np.asarray(x).view(HostArray)
        return x
    return _map_containers(mark, element)


def _map_containers(fn, element):
    """map_structure that also walks lists (what a map function may return)."""
    if isinstance(element, list):
        return [_map_containers(fn, e) for e in element]
    if isinstance(element, (tuple, collections.abc.Mapping)):
        return map_structure(lambda x: _map_containers(fn, x), element)
    return fn(element)


def to_numpy(element):
    """The element with clnet tensors read back to numpy (as_numpy_iterator)."""
    return _map_containers(lambda x: x.numpy() if isinstance(x, Tensor) else x, element)


def spec_of(element, batched_unknown=False):
    """The TensorSpec structure describing an element."""
    def spec(x):
        shape = tuple(np.shape(x)) if not isinstance(x, Tensor) else tuple(x.shape)
        if batched_unknown and shape:
            shape = (None,) + shape[1:]
        dtype = x.dtype if isinstance(x, (Tensor, np.ndarray, np.generic)) else np.asarray(x).dtype
        return TensorSpec(shape, dtype)
    return map_structure(spec, element)

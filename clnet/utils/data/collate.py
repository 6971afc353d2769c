"""default_collate / default_convert: samples -> a batch, with PyTorch's rules.

Collation happens in two halves so that DataLoader worker processes never touch an OpenCL device:
`collate_host` stacks numpy arrays and numbers on the host into `HostArray`s (numpy arrays marked
"becomes a clnet tensor"), and `to_tensors` turns those into device tensors in the main process (the
DataLoader does it with non-blocking copies). `default_collate` is both halves; inside a worker it is
only the first, and the main process finishes the batch when it arrives. clnet tensors in samples are
stacked on their device directly.
"""
from __future__ import annotations

import collections.abc
import re

import numpy as np

from ...ops.creation import tensor as _make_tensor
from ...ops.movement import stack as _stack
from ...tensor import Tensor
from .worker_info import get_worker_info


class HostArray(np.ndarray):
    """A host array that becomes a clnet tensor when its batch reaches the main process."""


_ERROR = ("default_collate: batch must contain clnet tensors, numpy arrays, numbers, dicts or lists; found {}")
_STRING_DTYPE = re.compile(r"[SaUO]")


def _is_namedtuple(x) -> bool:
    return isinstance(x, tuple) and hasattr(x, "_fields")


def _rebuild(elem, items):
    """A container of elem's type holding items (dict, namedtuple, list, tuple; else a list)."""
    if isinstance(elem, collections.abc.Mapping):
        try:
            out = type(elem)({})
            out.update(items)
            return out
        except TypeError:  # a mapping type that cannot be made empty
            return dict(items)
    if _is_namedtuple(elem):
        return type(elem)(*items)
    if isinstance(elem, tuple):
        return tuple(items)
    try:
        return type(elem)(items)
    except TypeError:
        return list(items)


def collate_host(batch):
    """The host half of default_collate: arrays and numbers stacked into HostArrays, containers kept."""
    elem = batch[0]
    if isinstance(elem, Tensor):
        return _stack(list(batch), 0)
    if isinstance(elem, np.ndarray) and not isinstance(elem, np.generic):
        if _STRING_DTYPE.search(elem.dtype.str):
            raise TypeError(_ERROR.format(elem.dtype))
        shapes = {b.shape for b in batch}
        if len(shapes) > 1:
            raise RuntimeError(f"stack expects each array to be equal size, but got shapes {sorted(shapes)} "
                               "in one batch: pad them in the dataset or pass a collate_fn")
        return np.stack(batch).view(HostArray)
    if isinstance(elem, np.generic) and not isinstance(elem, (np.str_, np.bytes_)):
        if _STRING_DTYPE.search(elem.dtype.str):
            raise TypeError(_ERROR.format(elem.dtype))
        return np.asarray(batch).view(HostArray)
    if isinstance(elem, bool):
        return np.asarray(batch, dtype=np.bool_).view(HostArray)
    if isinstance(elem, int):
        return np.asarray(batch, dtype=np.int64).view(HostArray)
    if isinstance(elem, float):
        return np.asarray(batch, dtype=np.float64).view(HostArray)
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, collections.abc.Mapping):
        return _rebuild(elem, [(key, collate_host([d[key] for d in batch])) for key in elem])
    if _is_namedtuple(elem):
        return type(elem)(*(collate_host(list(s)) for s in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        size = len(elem)
        if any(len(e) != size for e in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        columns = [collate_host(list(s)) for s in zip(*batch)]
        if isinstance(elem, tuple):
            return columns  # PyTorch returns tuples of samples collated as a list
        return _rebuild(elem, columns)
    raise TypeError(_ERROR.format(type(elem)))


def map_leaves(fn, data):
    """Apply fn to every leaf of nested dicts/lists/tuples/namedtuples, keeping the containers."""
    if isinstance(data, collections.abc.Mapping):
        return _rebuild(data, [(k, map_leaves(fn, v)) for k, v in data.items()])
    if isinstance(data, (list, tuple)):
        return _rebuild(data, [map_leaves(fn, v) for v in data])
    return fn(data)


def _upload(x, device=None):
    """A HostArray -> a clnet tensor (blocking copy); everything else unchanged."""
    if isinstance(x, HostArray):
        return _make_tensor(x.view(np.ndarray), device=device)
    return x


def to_tensors(data, device=None):
    """Finish a host batch: every HostArray becomes a clnet tensor on `device` (default device if None)."""
    return map_leaves(lambda x: _upload(x, device), data)


def default_collate(batch):
    """Stack a list of samples into a batch: arrays and tensors gain a leading batch dimension, Python
    floats become float64 and ints int64 tensors, strings stay lists, and dicts, namedtuples and
    sequences are collated field by field (tuples come back as lists, as in PyTorch)."""
    out = collate_host(batch)
    return out if get_worker_info() is not None else to_tensors(out)


def convert_host(data):
    """The host half of default_convert: numpy arrays and numpy scalars marked to become tensors."""
    if isinstance(data, np.ndarray) and not isinstance(data, HostArray):
        if _STRING_DTYPE.search(data.dtype.str):
            return data
        return np.asarray(data).view(HostArray)
    if isinstance(data, np.generic) and not isinstance(data, (np.str_, np.bytes_)):
        return np.asarray(data).view(HostArray)
    if isinstance(data, (str, bytes)):
        return data
    if isinstance(data, (collections.abc.Mapping, list, tuple)):
        return map_leaves(convert_host, data)
    return data


def default_convert(data):
    """What DataLoader(batch_size=None) does to each sample: numpy arrays become clnet tensors, containers
    are walked, Python numbers stay numbers."""
    out = convert_host(data)
    return out if get_worker_info() is not None else to_tensors(out)

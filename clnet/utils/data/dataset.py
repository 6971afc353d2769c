"""Datasets with PyTorch's meaning: map-style (`__getitem__` + `__len__`) and iterable-style (`__iter__`).

TensorDataset also knows how to hand the DataLoader a whole batch at once (`_fetch_batch`): rows of
its arrays picked by one fancy index instead of one `__getitem__` per sample. Its clnet tensors stay
where they are; a DataLoader worker process, which must not touch an OpenCL device, reads host copies
made in the main process before the workers start (`_cache_host`).
"""
from __future__ import annotations

import bisect
import itertools
import math
import warnings

import numpy as np

from ...tensor import Tensor
from ... import generator as _generator
from .collate import HostArray
from .worker_info import get_worker_info


class Dataset:
    """A map from keys (usually 0..len-1) to samples: subclasses define __getitem__ (and __len__)."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__ (a Dataset subclass)")

    def __add__(self, other) -> "ConcatDataset":
        return ConcatDataset([self, other])


class IterableDataset(Dataset):
    """A stream of samples: subclasses define __iter__. In DataLoader workers every worker iterates its
    own copy; use get_worker_info() inside __iter__ to give each worker its share."""

    def __iter__(self):
        raise NotImplementedError(f"{type(self).__name__} must implement __iter__ (an IterableDataset subclass)")

    def __add__(self, other) -> "ChainDataset":
        return ChainDataset([self, other])


def _length(x) -> int:
    return x.shape[0] if isinstance(x, (Tensor, np.ndarray)) else len(x)


def _host_copy(x):
    """x as a host array for worker processes: clnet tensors are read once, marked to come back as tensors."""
    if isinstance(x, Tensor):
        return x.numpy().view(HostArray)
    return x


class TensorDataset(Dataset):
    """Samples are the i-th rows of equally long tensors (or numpy arrays): ds[i] == (x[i], y[i], ...)."""

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset needs at least one tensor")
        sizes = [_length(t) for t in tensors]
        if any(s != sizes[0] for s in sizes):
            raise ValueError(f"Size mismatch between tensors: TensorDataset needs tensors of the same first "
                             f"dimension, got {sizes}")
        self.tensors = tuple(tensors)
        self._host = None

    def __len__(self):
        return _length(self.tensors[0])

    def _cache_host(self):
        """Host copies of the clnet tensors (made in the main process, read by worker processes)."""
        if self._host is None:
            self._host = tuple(_host_copy(t) for t in self.tensors)
        return self._host

    def __getitem__(self, index):
        source = self._cache_host() if get_worker_info() is not None else self.tensors
        return tuple(t[index] for t in source)

    def _fetch_batch(self, indices, on_host: bool):
        """What default_collate makes of [self[i] for i in indices], in one gather per tensor: on the
        device for clnet tensors (unless on_host), as host arrays marked to become tensors otherwise."""
        idx = np.asarray(indices, dtype=np.int64)
        if on_host:
            return [np.asarray(t[idx]).view(HostArray) for t in self._cache_host()]
        return [t[idx] if isinstance(t, Tensor) else np.asarray(t[idx]).view(HostArray) for t in self.tensors]

    def __getstate__(self):
        """Pickled for spawned workers: host copies only (clnet tensors live on a device)."""
        state = dict(self.__dict__)
        state["tensors"] = self._cache_host()
        state["_host"] = None
        return state


class StackDataset(Dataset):
    """Samples combined from datasets of equal length: StackDataset(a, b)[i] == (a[i], b[i]); with keywords,
    StackDataset(image=a, label=b)[i] == {"image": a[i], "label": b[i]}."""

    def __init__(self, *args, **kwargs):
        if args and kwargs:
            raise ValueError("StackDataset takes datasets as positional or as keyword arguments, not both")
        parts = list(args) if args else list(kwargs.values())
        if not parts:
            raise ValueError("StackDataset needs at least one dataset")
        n = len(parts[0])
        if any(len(p) != n for p in parts):
            raise ValueError(f"Size mismatch between datasets: {[len(p) for p in parts]}")
        self.datasets = tuple(args) if args else dict(kwargs)
        self._length = n

    def __len__(self):
        return self._length

    def __getitem__(self, index):
        if isinstance(self.datasets, dict):
            return {k: d[index] for k, d in self.datasets.items()}
        return tuple(d[index] for d in self.datasets)

    def _cache_host(self):
        for d in (self.datasets.values() if isinstance(self.datasets, dict) else self.datasets):
            _prepare(d)


class ConcatDataset(Dataset):
    """Datasets one after another: index i goes to the dataset whose range holds it."""

    def __init__(self, datasets):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("datasets should not be an empty iterable")
        for d in self.datasets:
            if isinstance(d, IterableDataset):
                raise TypeError("ConcatDataset does not support IterableDataset (use ChainDataset)")
        self.cumulative_sizes = list(itertools.accumulate(len(d) for d in self.datasets))

    def __len__(self):
        return self.cumulative_sizes[-1]

    def __getitem__(self, idx):
        if idx < 0:
            if -idx > len(self):
                raise ValueError("absolute value of index should not exceed dataset length")
            idx = len(self) + idx
        which = bisect.bisect_right(self.cumulative_sizes, idx)
        start = self.cumulative_sizes[which - 1] if which else 0
        return self.datasets[which][idx - start]

    def _cache_host(self):
        for d in self.datasets:
            _prepare(d)


class ChainDataset(IterableDataset):
    """Iterable datasets chained: iterates the first to its end, then the second, ..."""

    def __init__(self, datasets):
        self.datasets = list(datasets)

    def __iter__(self):
        for d in self.datasets:
            if not isinstance(d, IterableDataset):
                raise TypeError("ChainDataset only supports IterableDataset")
            yield from d

    def __len__(self):
        return sum(len(d) for d in self.datasets)

    def _cache_host(self):
        for d in self.datasets:
            _prepare(d)


class Subset(Dataset):
    """The samples of `dataset` at `indices`, in that order."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = indices

    def __getitem__(self, idx):
        if isinstance(idx, list):
            return self.dataset[[self.indices[i] for i in idx]]
        return self.dataset[self.indices[idx]]

    def __getitems__(self, indices):
        inner = getattr(self.dataset, "__getitems__", None)
        mapped = [self.indices[i] for i in indices]
        return inner(mapped) if inner is not None else [self.dataset[i] for i in mapped]

    def __len__(self):
        return len(self.indices)

    def _fetch_batch(self, indices, on_host: bool):
        return self.dataset._fetch_batch(np.asarray(self.indices)[np.asarray(indices, dtype=np.int64)], on_host)

    def _cache_host(self):
        _prepare(self.dataset)


def _prepare(dataset) -> None:
    """Make the host copies worker processes will read (call in the main process, before workers start)."""
    cache = getattr(dataset, "_cache_host", None)
    if cache is not None:
        cache()


def can_fetch_batches(dataset) -> bool:
    """Does `dataset` gather whole batches itself (TensorDataset, or Subsets of one)?"""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return isinstance(dataset, TensorDataset)


def random_split(dataset, lengths, generator=None) -> list:
    """Split `dataset` into non-overlapping random Subsets of the given lengths, or fractions summing to 1
    (the rows left over by rounding go one each to the first splits, as PyTorch does)."""
    n = len(dataset)
    lengths = list(lengths)
    if lengths and math.isclose(sum(lengths), 1.0) and sum(lengths) <= 1.0 and \
            any(isinstance(x, float) for x in lengths):
        for i, frac in enumerate(lengths):
            if frac < 0 or frac > 1:
                raise ValueError(f"Fraction at index {i} is not between 0 and 1: {frac}")
        counts = [int(math.floor(n * frac)) for frac in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        for i, c in enumerate(counts):
            if c == 0:
                warnings.warn(f"Length of split at index {i} is 0. This might result in an empty dataset.")
        lengths = counts
    if any(isinstance(x, bool) or int(x) != x or x < 0 for x in lengths):
        raise ValueError(f"random_split lengths must be non-negative ints or fractions summing to 1, got {lengths}")
    if sum(lengths) != n:
        raise ValueError(f"Sum of input lengths ({sum(lengths)}) does not equal the length of the input dataset "
                         f"({n})!")
    order = _generator.resolve(generator).permutation(n).tolist()
    out, start = [], 0
    for length in lengths:
        out.append(Subset(dataset, order[start:start + int(length)]))
        start += int(length)
    return out

"""The one place where Keras' fit / evaluate / predict turn their inputs into batches.

get_data_adapter(x, y, sample_weight, batch_size, steps_per_epoch, shuffle, class_weight) picks the
adapter for what it was given, as Keras 3 does:
  - arrays: numpy arrays, clnet tensors, array-likes, and lists / tuples / dicts of them (multi-input
    models) -> ArrayDataAdapter, which slices batches itself (clnet tensors are gathered on their device;
    host arrays are sliced on the host, floats as float32 and ints as int64, as Keras' floatx rule);
  - keras.utils.PyDataset -> PyDatasetAdapter (workers threads, or processes with use_multiprocessing);
  - clnet.data.Dataset (tf.data style, already batched) -> TFDatasetAdapter;
  - clnet.utils.data.DataLoader (and other re-iterable loaders) -> DataLoaderAdapter;
  - a Python generator or iterator -> GeneratorDataAdapter (one stream, continued across epochs).
Every adapter has `num_batches` (None when unknown), `batches()` (one epoch of (x, y, sample_weight)
batches whose leaves are host arrays or clnet tensors), `on_epoch_begin()` / `on_epoch_end()`.
EpochIterator walks an adapter with Keras' steps_per_epoch rule and hands out batches already on the
device (non-blocking copies, clnet.utils.data.transfer).
"""
from __future__ import annotations

import collections.abc
import concurrent.futures
import itertools
import math
import warnings

import numpy as np

from clnet.data.dataset import Dataset as _TFDataset
from clnet.generator import seed_from_global
from clnet.ops.creation import tensor as _make_tensor
from clnet.tensor import Tensor
from clnet.utils.data import DataLoader
from clnet.utils.data.collate import HostArray
from clnet.utils.data.transfer import DeviceFeeder

from .py_dataset import PyDataset


# --- batches: Keras' packing rules ------------------------------------------------------------------------
def unpack_x_y_sample_weight(data):
    """A batch as (x, y, sample_weight): x, (x,), (x, y) or (x, y, sample_weight) (lists as tuples)."""
    if isinstance(data, list):
        data = tuple(data)
    if not isinstance(data, tuple):
        return data, None, None
    if len(data) == 1:
        return data[0], None, None
    if len(data) == 2:
        return data[0], data[1], None
    if len(data) == 3:
        return data
    raise ValueError(f"Data is expected to be in format `x`, `(x,)`, `(x, y)`, or `(x, y, sample_weight)`, found: "
                     f"a tuple of {len(data)} items")


def pack_x_y_sample_weight(x, y=None, sample_weight=None):
    """The inverse of unpack_x_y_sample_weight."""
    if y is None:
        return x if not isinstance(x, (list, tuple)) else (x,)
    if sample_weight is None:
        return (x, y)
    return (x, y, sample_weight)


def _is_nested(x) -> bool:
    return isinstance(x, (list, tuple, collections.abc.Mapping))


def _map(fn, struct):
    """fn over the leaves of nested lists / tuples / dicts (None stays None)."""
    if struct is None:
        return None
    if isinstance(struct, collections.abc.Mapping):
        return {k: _map(fn, v) for k, v in struct.items()}
    if isinstance(struct, tuple) and hasattr(struct, "_fields"):
        return type(struct)(*(_map(fn, v) for v in struct))
    if isinstance(struct, (list, tuple)):
        return type(struct)(_map(fn, v) for v in struct)
    return fn(struct)


def _leaves(struct) -> list:
    out = []
    _map(out.append, struct)
    return out


# --- arrays -------------------------------------------------------------------------------------------------
def _is_array_like(x) -> bool:
    return isinstance(x, (np.ndarray, Tensor)) or (hasattr(x, "__array__") and not hasattr(x, "__next__"))


def is_array_data(x) -> bool:
    """Arrays, or lists/tuples/dicts of arrays or numbers: what ArrayDataAdapter slices."""
    if x is None:
        return True
    if isinstance(x, collections.abc.Mapping):
        return all(is_array_data(v) for v in x.values())
    if isinstance(x, (list, tuple)):
        return all(is_array_data(v) or (isinstance(v, (int, float, np.number)) and not isinstance(v, bool))
                   for v in x)
    return _is_array_like(x)


def _host_array(data, what):
    """A host array with Keras' dtypes (floats float32, ints int64, bools kept), or a clnet tensor as is."""
    if isinstance(data, Tensor):
        if data.ndim == 0:
            raise ValueError(f"{what}: expected an array with a batch dimension, got a scalar tensor")
        return data.detach()
    arr = np.asarray(data)
    if arr.dtype == object:
        raise TypeError(f"{what}: could not convert the data to a numeric array (ragged or mixed types)")
    if arr.ndim == 0:
        raise ValueError(f"{what}: expected an array with a batch dimension, got a scalar")
    if arr.dtype.kind == "f" and arr.dtype != np.float32:
        arr = arr.astype(np.float32)
    elif arr.dtype.kind in "iu" and arr.dtype != np.int64:
        arr = arr.astype(np.int64)
    return arr


def array_structure(x, what):
    """x as a structure of host arrays / clnet tensors (a flat list of numbers is one array, as numpy reads it)."""
    if x is None:
        return None
    if isinstance(x, (list, tuple)) and x and not any(_is_array_like(v) for v in _leaves(x)) and \
            not any(isinstance(v, collections.abc.Mapping) for v in x):
        return _host_array(np.asarray(x), what)  # numbers or nested lists of numbers: one array
    return _map(lambda a: _host_array(a, what), x)


def num_samples(*structures) -> int:
    """The common first dimension of every array, or a ValueError naming each part's sizes (Keras' words)."""
    sizes = {}
    for name, s in zip(("x", "y", "sample_weight"), structures):
        if s is not None:
            sizes[name] = sorted({int(a.shape[0]) for a in _leaves(s)})
    every = set(itertools.chain.from_iterable(sizes.values()))
    if len(every) > 1:
        parts = "".join(f"'{k}' sizes: {', '.join(str(v) for v in vs)}\n" for k, vs in sizes.items())
        raise ValueError("Data cardinality is ambiguous. Make sure all arrays contain the same number of samples.\n"
                         + parts)
    return every.pop() if every else 0


def train_validation_split(arrays, validation_split):
    """(train, validation): the last `validation_split` fraction of every array, before any shuffling (Keras)."""
    unsplittable = [type(a) for a in _leaves(arrays) if a is not None and not _is_array_like(a)]
    if unsplittable:
        raise ValueError("`validation_split` is only supported for Tensors or NumPy arrays, found following types in "
                         f"the input: {unsplittable}")
    leaves = [a for a in _leaves(arrays) if a is not None]
    if not leaves:
        return arrays, arrays
    n = int(leaves[0].shape[0])
    split_at = int(math.floor(n * (1.0 - validation_split)))
    if split_at == 0 or split_at == n:
        raise ValueError(f"Training data contains {n} samples, which is not sufficient to split it into a validation "
                         f"and training set as specified by `validation_split={validation_split}`. Either provide more "
                         "data, or a different value for the `validation_split` argument.")
    return (_map(lambda a: a[:split_at], arrays), _map(lambda a: a[split_at:], arrays))


def class_weight_to_sample_weight(y, class_weight):
    """Per-sample weights class_weight[label] for one output's labels (integers, or one-hot rows)."""
    if y is None or _is_nested(y):
        raise ValueError("`class_weight` is only supported for Models with a single output.")
    labels = y.numpy() if isinstance(y, Tensor) else np.asarray(y)
    if labels.ndim > 1:
        labels = labels.argmax(-1) if labels.shape[-1] > 1 else labels.reshape(labels.shape[:-1])
    labels = np.round(labels).astype(np.int64).reshape(-1)
    size = max(int(labels.max()) + 1 if labels.size else 1, max(int(k) for k in class_weight) + 1)
    table = np.ones(size, dtype=np.float32)
    for k, w in class_weight.items():
        table[int(k)] = float(w)
    return table[labels]


# --- adapters -------------------------------------------------------------------------------------------
class DataAdapter:
    """One kind of input, read one epoch at a time."""

    num_batches = None
    batch_size = None
    has_partial_batch = None
    partial_batch_size = None

    def batches(self):
        raise NotImplementedError

    def on_epoch_begin(self):
        pass

    def on_epoch_end(self):
        pass


class ArrayDataAdapter(DataAdapter):
    """Batches sliced from arrays (shuffle=True: a new order each epoch; "batch": whole batches shuffled)."""

    def __init__(self, x, y=None, sample_weight=None, batch_size=None, shuffle=False, class_weight=None, rng=None):
        xs, ys, sws = array_structure(x, "x"), array_structure(y, "y"), array_structure(sample_weight, "sample_weight")
        if class_weight is not None:
            if sws is not None:
                raise ValueError("You cannot `class_weight` and `sample_weight` at the same time.")
            sws = class_weight_to_sample_weight(ys, class_weight)
        self._data = (xs, ys, sws)
        self.num_samples = num_samples(xs, ys, sws)
        self.batch_size = 32 if batch_size is None else int(batch_size)
        self.num_batches = -(-self.num_samples // self.batch_size)
        self.partial_batch_size = self.num_samples % self.batch_size or None
        self.has_partial_batch = self.partial_batch_size is not None
        self._shuffle = shuffle
        self._rng = rng

    def _generator(self):
        rng = self._rng() if callable(self._rng) else self._rng
        if rng is None:
            rng = self._rng = np.random.default_rng(seed_from_global())
        return rng

    def batches(self):
        n, bs = self.num_samples, self.batch_size
        if not self._shuffle:
            for start in range(0, n, bs):
                idx = slice(start, min(start + bs, n))
                yield tuple(_map(lambda a: a[idx], part) for part in self._data)
            return
        rng = self._generator()
        if self._shuffle == "batch":  # Keras' "batch": the batches in a random order, rows shuffled within each
            for start in rng.permutation(np.arange(0, n, bs)):
                yield self._gather(rng.permutation(np.arange(start, min(start + bs, n))))
            return
        order = rng.permutation(n)
        for start in range(0, n, bs):
            yield self._gather(order[start:start + bs])

    def _gather(self, idx):
        on_device = {}

        def take(a):
            if isinstance(a, Tensor):  # rows gathered on the device, one index upload per device
                if a.device not in on_device:
                    on_device[a.device] = _make_tensor(idx, device=a.device)
                return a[on_device[a.device]]
            return a[idx]
        return tuple(_map(take, part) for part in self._data)


class _PerBatch(DataAdapter):
    """Adapters whose source yields whole batches: unpacks them and applies class_weight per batch."""

    def __init__(self, class_weight=None):
        self._class_weight = class_weight

    def _unpacked(self, source):
        for batch in source:
            x, y, sw = unpack_x_y_sample_weight(batch)
            if self._class_weight is not None and sw is None:
                sw = class_weight_to_sample_weight(y, self._class_weight)
            yield x, y, sw


class GeneratorDataAdapter(_PerBatch):
    """A Python generator or iterator: one stream, continued from epoch to epoch."""

    def __init__(self, generator, class_weight=None):
        super().__init__(class_weight)
        self._stream = self._unpacked(generator)

    def batches(self):
        return self._stream


class PyDatasetAdapter(_PerBatch):
    """keras.utils.PyDataset: batches read ahead by `workers` threads, or processes (use_multiprocessing)."""

    def __init__(self, dataset, shuffle=False, class_weight=None):
        super().__init__(class_weight)
        self._dataset = dataset
        self._shuffle = shuffle
        dataset._warn_if_super_not_called()
        self.num_batches = dataset.num_batches

    def on_epoch_begin(self):
        self._dataset.on_epoch_begin()

    def on_epoch_end(self):
        self._dataset.on_epoch_end()

    def _indices(self):
        if self.num_batches is None:
            return itertools.count()
        if self._shuffle:
            return np.random.default_rng(seed_from_global()).permutation(self.num_batches).tolist()
        return range(self.num_batches)

    def batches(self):
        ds, indices = self._dataset, self._indices()
        workers = max(1, int(ds.workers or 1))
        if workers == 1 and not ds.use_multiprocessing:
            return self._unpacked(ds[i] for i in indices)
        if ds.use_multiprocessing:
            if self.num_batches is None:
                raise ValueError("a PyDataset with use_multiprocessing=True needs a length (__len__ / num_batches)")
            loader = DataLoader(_Indexed(ds, list(indices)), batch_size=None, num_workers=workers,
                                prefetch_factor=max(1, int(ds.max_queue_size) // workers))
            return self._unpacked(loader)
        return self._unpacked(_threaded(ds, indices, workers, max(workers, int(ds.max_queue_size))))


class _Indexed:
    """A PyDataset seen as a map-style dataset over this epoch's batch order (for DataLoader workers)."""

    def __init__(self, dataset, order):
        self.dataset, self.order = dataset, order

    def __len__(self):
        return len(self.order)

    def __getitem__(self, i):
        return self.dataset[self.order[i]]


def _threaded(dataset, indices, workers, depth):
    """dataset[i] for i in indices, read by a thread pool up to `depth` batches ahead, in order."""
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="clnet-pydataset") as pool:
        pending = collections.deque()
        for i in indices:
            pending.append(pool.submit(dataset.__getitem__, i))
            if len(pending) >= depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class DataLoaderAdapter(_PerBatch):
    """clnet.utils.data.DataLoader (or any re-iterable of batches with a length): a new pass every epoch."""

    def __init__(self, loader, class_weight=None):
        super().__init__(class_weight)
        self._loader = loader
        try:
            self.num_batches = len(loader)
        except TypeError:
            self.num_batches = None
        self.batch_size = getattr(loader, "batch_size", None)

    def batches(self):
        return self._unpacked(iter(self._loader))


class TFDatasetAdapter(_PerBatch):
    """clnet.data.Dataset (tf.data style, batched by the user as in Keras): read on the host each epoch."""

    def __init__(self, dataset, class_weight=None):
        super().__init__(class_weight)
        self._dataset = dataset
        n = dataset._cardinality()
        self.num_batches = n if n >= 0 else None

    def batches(self):
        return self._unpacked(self._dataset.host_iterator())


def get_data_adapter(x, y=None, sample_weight=None, batch_size=None, steps_per_epoch=None, shuffle=False,
                     class_weight=None, rng=None) -> DataAdapter:
    """The adapter for x (see the module docstring). rng: the numpy Generator (or a function returning it)
    that shuffles arrays."""
    if is_array_data(x):
        if x is None:
            raise ValueError("Unrecognized data type: x=None (pass numpy arrays, tensors, a generator, a PyDataset, "
                             "a DataLoader or a dataset)")
        return ArrayDataAdapter(x, y, sample_weight, batch_size, shuffle, class_weight, rng)
    kind = type(x).__name__
    if y is not None:
        raise ValueError(f"`y` argument is not supported when using a {kind} as input (its batches hold the targets)")
    if sample_weight is not None:
        raise ValueError(f"`sample_weight` argument is not supported when using a {kind} as input (its batches may "
                         "hold (x, y, sample_weight))")
    if isinstance(x, PyDataset):
        return PyDatasetAdapter(x, shuffle=shuffle, class_weight=class_weight)
    if isinstance(x, _TFDataset):
        return TFDatasetAdapter(x, class_weight)
    if isinstance(x, DataLoader):
        return DataLoaderAdapter(x, class_weight)
    if hasattr(x, "__next__"):
        return GeneratorDataAdapter(x, class_weight)
    if hasattr(x, "__iter__"):
        return DataLoaderAdapter(x, class_weight)
    raise ValueError(f"Unrecognized data type: x={x!r} (of type {kind}): pass numpy arrays, clnet tensors, a "
                     "generator, a keras.utils.PyDataset, a clnet DataLoader or a clnet.data.Dataset")


# --- epochs on the device ---------------------------------------------------------------------------------
def _marked(x):
    """Host arrays tagged for the device (clnet tensors and other values pass through)."""
    if isinstance(x, np.ndarray) and x.dtype.kind in "fiub":
        return x.view(HostArray)
    return x


def _shard_batch(batch, index, count):
    """Part `index` of `count` of a global batch: contiguous rows, the first n % count parts one row longer."""
    leaves = [a for part in batch for a in _leaves(part) if a is not None]
    n = int(leaves[0].shape[0]) if leaves else 0
    lo = index * (n // count) + min(index, n % count)
    hi = lo + n // count + (1 if index < n % count else 0)
    return tuple(_map(lambda a: a[lo:hi], part) for part in batch)


class EpochIterator:
    """Epochs of device batches from an adapter, with Keras' steps_per_epoch rule: given steps_per_epoch, one
    pass over the data is continued across epochs (and restarted when a finite one is used up)."""

    def __init__(self, x, y=None, sample_weight=None, batch_size=None, steps_per_epoch=None, shuffle=False,
                 class_weight=None, device=None, rng=None, shard=(0, 1)):
        self.data_adapter = get_data_adapter(x, y, sample_weight, batch_size, steps_per_epoch, shuffle, class_weight,
                                             rng)
        self._shard = shard  # (index, count): this worker's part of every global batch (distribute strategies)
        self.steps_per_epoch = steps_per_epoch
        self._feeder = DeviceFeeder(device)
        self._source = None
        self._seen = 0
        self.insufficient_data = False

    @property
    def num_batches(self):
        return self.steps_per_epoch if self.steps_per_epoch is not None else self.data_adapter.num_batches

    def _next_pass(self):
        self._source, self._seen = iter(self.data_adapter.batches()), 0

    def enumerate_epoch(self):
        """(step, (x, y, sample_weight)) for one epoch, batches on the device."""
        adapter = self.data_adapter
        adapter.on_epoch_begin()
        if self._source is None or self.steps_per_epoch is None:
            self._next_pass()
        steps = itertools.count() if self.steps_per_epoch is None else range(self.steps_per_epoch)
        for step in steps:
            try:
                batch = next(self._source)
            except StopIteration:
                self._source = None
                if self.steps_per_epoch is not None:
                    warnings.warn("Your input ran out of data; interrupting training. Make sure that your dataset or "
                                  "generator can generate at least `steps_per_epoch * epochs` batches.", stacklevel=2)
                    self.insufficient_data = True
                break
            self._seen += 1
            if self._shard[1] > 1:
                batch = _shard_batch(batch, *self._shard)
            yield step, self._feeder(tuple(_map(_marked, part) for part in batch))
        if self.steps_per_epoch is not None and adapter.num_batches is not None and self._seen >= adapter.num_batches:
            self._source = None  # a finite source used up exactly: the next epoch starts a new pass
        adapter.on_epoch_end()
        self._feeder.finish()

"""tf.data.Dataset's spellings on clnet: a pipeline of host-side steps whose elements reach the device last.

    import clnet as tf
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(1000).batch(64).prefetch(tf.data.AUTOTUNE)
    for xb, yb in ds:          # clnet tensors on the default device
        ...

As in TensorFlow, the pipeline runs on the host: elements are numpy arrays and scalars while they go
through map/shuffle/batch (a map function may also return clnet tensors; batch stacks those on their
device). Iterating the dataset yields the elements as clnet tensors, copied with non-blocking copies
(clnet.utils.data.transfer); `as_numpy_iterator()` yields numpy. `prefetch` runs everything upstream in
a background thread, and `map(num_parallel_calls=n)` maps n elements at a time in threads (numpy and
file reads release the GIL, so both overlap host work with the device's).
Every method returns a new Dataset; iterating one again restarts it (a shuffle draws a new order unless
reshuffle_each_iteration=False).
"""
from __future__ import annotations

import collections
import concurrent.futures
import itertools
import math
import os
import queue
import threading

import numpy as np

from .. import generator as _generator
from ..tensor import Tensor
from ..ops.creation import tensor as _make_tensor
from ..utils.data.transfer import DeviceFeeder
from . import structure
from .options import Options

AUTOTUNE = -1
INFINITE_CARDINALITY = -1
UNKNOWN_CARDINALITY = -2


def _count(value, what) -> int:
    if isinstance(value, Tensor):
        value = value.item()
    if isinstance(value, bool) or int(value) != value:
        raise TypeError(f"{what} must be an int, got {value!r}")
    return int(value)


def _threads(n) -> int:
    return max(1, min(8, os.cpu_count() or 1)) if n in (None, AUTOTUNE) else max(1, int(n))


def _call(fn, element):
    """TF calls a function with a tuple element's components as separate arguments."""
    if isinstance(element, tuple) and not structure._is_namedtuple(element):
        return fn(*element)
    return fn(element)


class Dataset:
    """A sequence of elements built from sources and transformations (tf.data.Dataset)."""

    def __init__(self):
        self._options = Options()

    # --- what subclasses provide -----------------------------------------------------------------------
    def _host_iter(self):
        """The elements, on the host (a fresh iteration each call)."""
        raise NotImplementedError

    def _cardinality(self) -> int:
        return UNKNOWN_CARDINALITY

    # --- sources ----------------------------------------------------------------------------------------
    @staticmethod
    def from_tensor_slices(tensors, name=None) -> "Dataset":
        """One element per row of the given arrays/tensors (all with the same first dimension)."""
        return _Slices(structure.normalize_source(tensors))

    @staticmethod
    def from_tensors(tensors, name=None) -> "Dataset":
        """One element: the given structure itself."""
        return _Elements([structure.normalize_source(tensors)])

    @staticmethod
    def range(*args, dtype=np.int64, name=None) -> "Dataset":
        """range(stop), range(start, stop[, step]) as int64 scalars."""
        return _Range(range(*[_count(a, "range argument") for a in args]), np.dtype(dtype))

    @staticmethod
    def from_generator(generator, output_types=None, output_shapes=None, args=None, output_signature=None,
                       name=None) -> "Dataset":
        """Elements from calling generator(*args) anew at each iteration."""
        if not callable(generator):
            raise TypeError("from_generator expects a callable that returns an iterator (e.g. a generator function), "
                            f"got {type(generator).__name__}")
        return _FromGenerator(generator, tuple(args or ()), output_signature or output_types)

    @staticmethod
    def zip(*datasets, name=None) -> "Dataset":
        """Elements (a_i, b_i, ...) of datasets walked together (as long as the shortest); a dict or tuple of
        datasets as one argument works too."""
        if len(datasets) == 1 and isinstance(datasets[0], (tuple, dict)):
            datasets = datasets[0]
        return _Zip(datasets)

    @staticmethod
    def sample_from_datasets(datasets, weights=None, seed=None, stop_on_empty_dataset=False) -> "Dataset":
        return _Sample(list(datasets), weights, seed, stop_on_empty_dataset)

    # --- transformations ----------------------------------------------------------------------------------
    def map(self, map_func, num_parallel_calls=None, deterministic=None, name=None) -> "Dataset":
        return _Map(self, map_func, num_parallel_calls, deterministic)

    def filter(self, predicate, name=None) -> "Dataset":
        return _Filter(self, predicate)

    def shuffle(self, buffer_size, seed=None, reshuffle_each_iteration=True, name=None) -> "Dataset":
        return _Shuffle(self, _count(buffer_size, "buffer_size"), seed, reshuffle_each_iteration)

    def batch(self, batch_size, drop_remainder=False, num_parallel_calls=None, deterministic=None,
              name=None) -> "Dataset":
        return _Batch(self, _count(batch_size, "batch_size"), drop_remainder)

    def padded_batch(self, batch_size, padded_shapes=None, padding_values=None, drop_remainder=False,
                     name=None) -> "Dataset":
        return _PaddedBatch(self, _count(batch_size, "batch_size"), padded_shapes, padding_values, drop_remainder)

    def unbatch(self, name=None) -> "Dataset":
        return _Unbatch(self)

    def repeat(self, count=None, name=None) -> "Dataset":
        return _Repeat(self, -1 if count is None else _count(count, "count"))

    def take(self, count, name=None) -> "Dataset":
        return _Take(self, _count(count, "count"))

    def skip(self, count, name=None) -> "Dataset":
        return _Skip(self, _count(count, "count"))

    def prefetch(self, buffer_size, name=None) -> "Dataset":
        return _Prefetch(self, _count(buffer_size, "buffer_size"))

    def cache(self, filename="", name=None) -> "Dataset":
        if filename:
            raise NotImplementedError("cache(filename) to a file is not supported; cache() keeps elements in memory")
        return _Cache(self)

    def concatenate(self, dataset, name=None) -> "Dataset":
        return _Concatenate(self, dataset)

    def enumerate(self, start=0, name=None) -> "Dataset":
        return Dataset.zip((Dataset.range(start, np.iinfo(np.int64).max), self))

    def shard(self, num_shards, index, name=None) -> "Dataset":
        """Every num_shards-th element from `index` on (one share per worker)."""
        num_shards, index = _count(num_shards, "num_shards"), _count(index, "index")
        if not 0 <= index < num_shards:
            raise ValueError(f"shard index {index} must be in [0, {num_shards})")
        return _Shard(self, num_shards, index)

    def apply(self, transformation_func) -> "Dataset":
        return transformation_func(self)

    def with_options(self, options, name=None) -> "Dataset":
        out = _Wrapped(self)
        out._options = options
        return out

    def options(self) -> Options:
        return self._options

    # --- reading ------------------------------------------------------------------------------------------
    def cardinality(self) -> Tensor:
        """The number of elements as an int64 tensor: INFINITE_CARDINALITY (-1) or UNKNOWN_CARDINALITY (-2)."""
        return _make_tensor(np.int64(self._cardinality()))

    def __len__(self):
        n = self._cardinality()
        if n == INFINITE_CARDINALITY:
            raise TypeError("The dataset is infinite.")
        if n == UNKNOWN_CARDINALITY:
            raise TypeError("The dataset length is unknown.")
        return n

    def __bool__(self):
        return True

    def __iter__(self):
        """The elements as clnet tensors on the default device."""
        feeder = DeviceFeeder()
        lookahead = isinstance(self, _Prefetch)
        items = self._host_iter()
        if not lookahead:
            for element in items:
                yield feeder(structure.marked_for_device(element))
            return
        staged = None
        for element in items:  # double buffering: the next element's copies start before this one is used
            nxt = feeder.stage(structure.marked_for_device(element))
            if staged is not None:
                yield feeder.hand_over(staged)
            staged = nxt
        if staged is not None:
            yield feeder.hand_over(staged)

    def as_numpy_iterator(self):
        for element in self._host_iter():
            yield structure.to_numpy(element)

    def host_iterator(self):
        """The elements on the host (numpy), without copies to a device: what Keras' fit reads."""
        return self._host_iter()

    @property
    def element_spec(self):
        for element in self._host_iter():
            return structure.spec_of(element, batched_unknown=self._batched())
        raise ValueError("element_spec of an empty dataset is not known")

    def _batched(self) -> bool:
        return False

    def reduce(self, initial_state, reduce_func):
        state = initial_state
        for element in self._host_iter():
            state = reduce_func(state, element)
        return state

    def __repr__(self):
        n = self._cardinality()
        size = {INFINITE_CARDINALITY: "infinite", UNKNOWN_CARDINALITY: "unknown"}.get(n, str(n))
        return f"<{type(self).__name__.lstrip('_')}Dataset cardinality={size}>"


# --- sources ------------------------------------------------------------------------------------------------
class _Slices(Dataset):
    def __init__(self, tensors):
        super().__init__()
        leaves = structure.flatten(tensors)
        if not leaves:
            raise ValueError("from_tensor_slices needs at least one array")
        for leaf in leaves:
            if leaf.ndim == 0:
                raise ValueError("from_tensor_slices: every component needs a first dimension to slice "
                                 f"(got a scalar {leaf!r}); use from_tensors for single elements")
        sizes = [len(leaf) for leaf in leaves]
        if any(s != sizes[0] for s in sizes):
            raise ValueError(f"from_tensor_slices: all components must have the same first dimension, got {sizes}")
        self._tensors, self._n = tensors, sizes[0]

    def _host_iter(self):
        for i in range(self._n):
            yield structure.map_structure(lambda x: x[i], self._tensors)

    def _cardinality(self):
        return self._n


class _Elements(Dataset):
    def __init__(self, elements):
        super().__init__()
        self._elements = elements

    def _host_iter(self):
        return iter(self._elements)

    def _cardinality(self):
        return len(self._elements)


class _Range(Dataset):
    def __init__(self, r, dtype):
        super().__init__()
        self._range, self._dtype = r, dtype

    def _host_iter(self):
        for v in self._range:
            yield self._dtype.type(v)

    def _cardinality(self):
        return len(self._range)


class _FromGenerator(Dataset):
    def __init__(self, fn, args, signature):
        super().__init__()
        self._fn, self._args, self._signature = fn, args, signature

    def _host_iter(self):
        for element in self._fn(*self._args):
            yield self._conform(element)

    def _conform(self, element):
        """Lists become arrays; with an output signature, components get its dtypes."""
        if self._signature is None:
            return structure.map_structure(lambda x: np.asarray(x) if isinstance(x, list) else x, element)

        def cast(x, spec):
            dtype = getattr(spec, "dtype", spec)
            return x if isinstance(x, Tensor) else np.asarray(x, dtype=np.dtype(dtype))
        return structure.map_structure(cast, element, self._signature)


class _Zip(Dataset):
    def __init__(self, datasets):
        super().__init__()
        self._datasets = datasets

    def _members(self):
        return list(self._datasets.values()) if isinstance(self._datasets, dict) else list(self._datasets)

    def _host_iter(self):
        iters = [d._host_iter() for d in self._members()]
        for parts in zip(*iters):
            if isinstance(self._datasets, dict):
                yield dict(zip(self._datasets.keys(), parts))
            else:
                yield tuple(parts)

    def _cardinality(self):
        sizes = [d._cardinality() for d in self._members()]
        finite = [s for s in sizes if s >= 0]
        if finite:
            return min(finite)
        return UNKNOWN_CARDINALITY if UNKNOWN_CARDINALITY in sizes else INFINITE_CARDINALITY


class _Sample(Dataset):
    def __init__(self, datasets, weights, seed, stop_on_empty):
        super().__init__()
        w = np.ones(len(datasets)) if weights is None else np.asarray(weights, dtype=np.float64)
        self._datasets, self._p, self._seed, self._stop = datasets, w / w.sum(), seed, stop_on_empty

    def _host_iter(self):
        gen = _generator.resolve(None if self._seed is None else _generator.Generator().manual_seed(self._seed))
        iters = [d._host_iter() for d in self._datasets]
        alive = list(range(len(iters)))
        while alive:
            p = self._p[alive] / self._p[alive].sum()
            k = alive[int(gen.choice(len(alive), 1, True, p=p)[0])]
            try:
                yield next(iters[k])
            except StopIteration:
                if self._stop:
                    return
                alive.remove(k)


# --- transformations ----------------------------------------------------------------------------------------
class _Unary(Dataset):
    def __init__(self, parent):
        super().__init__()
        self._parent = parent
        self._options = parent._options

    def _cardinality(self):
        return self._parent._cardinality()

    def _batched(self):
        return self._parent._batched()


class _Wrapped(_Unary):
    def _host_iter(self):
        return self._parent._host_iter()


class _Map(_Unary):
    def __init__(self, parent, fn, num_parallel_calls, deterministic):
        super().__init__(parent)
        self._fn, self._parallel = fn, num_parallel_calls
        self._ordered = deterministic is not False

    def _host_iter(self):
        if self._parallel is None:
            for element in self._parent._host_iter():
                yield _call(self._fn, element)
            return
        n = _threads(self._parallel)
        with concurrent.futures.ThreadPoolExecutor(n, thread_name_prefix="clnet-data-map") as pool:
            pending = collections.deque()
            for element in self._parent._host_iter():
                pending.append(pool.submit(_call, self._fn, element))
                if len(pending) >= 2 * n:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()


class _Filter(_Unary):
    def __init__(self, parent, predicate):
        super().__init__(parent)
        self._predicate = predicate

    def _host_iter(self):
        for element in self._parent._host_iter():
            keep = _call(self._predicate, element)
            if bool(keep.item() if isinstance(keep, Tensor) else np.asarray(keep).item()):
                yield element

    def _cardinality(self):
        return UNKNOWN_CARDINALITY


class _Shuffle(_Unary):
    """TF's buffered shuffle: keep buffer_size elements, emit a random one, refill its slot."""

    def __init__(self, parent, buffer_size, seed, reshuffle):
        super().__init__(parent)
        if buffer_size < 1:
            raise ValueError(f"shuffle buffer_size must be positive, got {buffer_size}")
        self._size = buffer_size
        self._seed = int(seed) if seed is not None else _generator.seed_from_global()
        self._reshuffle = reshuffle
        self._epoch = 0

    def _host_iter(self):
        epoch = self._epoch if self._reshuffle else 0
        self._epoch += 1
        gen = _generator.Generator().manual_seed((self._seed * 1_000_003 + epoch) & ((1 << 63) - 1))
        buffer = []
        for element in self._parent._host_iter():
            if len(buffer) < self._size:
                buffer.append(element)
                continue
            i = int(gen.integers(0, len(buffer)))
            yield buffer[i]
            buffer[i] = element
        while buffer:
            i = int(gen.integers(0, len(buffer)))
            buffer[i], buffer[-1] = buffer[-1], buffer[i]
            yield buffer.pop()


class _Batch(_Unary):
    def __init__(self, parent, batch_size, drop_remainder):
        super().__init__(parent)
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self._size, self._drop = batch_size, drop_remainder

    def _host_iter(self):
        it = self._parent._host_iter()
        while True:
            elements = list(itertools.islice(it, self._size))
            if not elements or (self._drop and len(elements) < self._size):
                return
            yield self._make(elements)

    def _make(self, elements):
        return structure.stack(elements)

    def _cardinality(self):
        n = self._parent._cardinality()
        if n < 0:
            return n
        return n // self._size if self._drop else math.ceil(n / self._size)

    def _batched(self):
        return True


class _PaddedBatch(_Batch):
    def __init__(self, parent, batch_size, padded_shapes, padding_values, drop_remainder):
        super().__init__(parent, batch_size, drop_remainder)
        self._shapes, self._values = padded_shapes, padding_values

    def _make(self, elements):
        return _pad_walk(elements, self._shapes, self._values)


def _pick(spec, key):
    """The part of a padded_shapes / padding_values structure for one component (None, or a scalar
    padding value, applies to every component)."""
    if isinstance(spec, dict) or (isinstance(key, int) and isinstance(spec, (tuple, list))):
        return spec[key]
    return spec


def _pad_walk(parts, shape, value):
    """Pad and stack the components of a padded batch, walking the elements' structure."""
    first = parts[0]
    if isinstance(first, dict):
        return {k: _pad_walk([p[k] for p in parts], _pick(shape, k), _pick(value, k)) for k in first}
    if isinstance(first, tuple):
        items = [_pad_walk([p[i] for p in parts], _pick(shape, i), _pick(value, i)) for i in range(len(first))]
        return type(first)(*items) if structure._is_namedtuple(first) else tuple(items)
    arrays = [np.asarray(x.numpy() if isinstance(x, Tensor) else x) for x in parts]
    target = [max(a.shape[d] for a in arrays) for d in range(arrays[0].ndim)]
    if shape is not None:
        shape = list(shape)
        if len(shape) != len(target):
            raise ValueError(f"padded_batch: padded shape {shape} does not match a component of rank {len(target)}")
        for d, (t, s) in enumerate(zip(target, shape)):
            if s not in (None, -1):
                if int(s) < t:
                    raise ValueError(f"padded_batch: a component of size {t} in dimension {d} does not fit the "
                                     f"padded shape {shape}")
                target[d] = int(s)
    out = np.full((len(arrays),) + tuple(target), 0 if value is None else value, dtype=arrays[0].dtype)
    for i, a in enumerate(arrays):
        out[(i,) + tuple(slice(0, n) for n in a.shape)] = a
    return out


class _Unbatch(_Unary):
    def _host_iter(self):
        for batch in self._parent._host_iter():
            yield from structure.unstack(batch)

    def _cardinality(self):
        return UNKNOWN_CARDINALITY

    def _batched(self):
        return False


class _Repeat(_Unary):
    def __init__(self, parent, count):
        super().__init__(parent)
        self._times = count

    def _host_iter(self):
        rounds = itertools.count() if self._times < 0 else range(self._times)
        for _ in rounds:
            empty = True
            for element in self._parent._host_iter():
                empty = False
                yield element
            if empty:
                return

    def _cardinality(self):
        n = self._parent._cardinality()
        if n == 0 or self._times == 0:
            return 0
        if self._times < 0:
            return INFINITE_CARDINALITY if n != UNKNOWN_CARDINALITY else UNKNOWN_CARDINALITY
        return n * self._times if n >= 0 else n


class _Take(_Unary):
    def __init__(self, parent, count):
        super().__init__(parent)
        self._count = count

    def _host_iter(self):
        if self._count < 0:
            yield from self._parent._host_iter()
            return
        yield from itertools.islice(self._parent._host_iter(), self._count)

    def _cardinality(self):
        n = self._parent._cardinality()
        if self._count < 0:
            return n
        if n == INFINITE_CARDINALITY:
            return self._count
        return min(n, self._count) if n >= 0 else UNKNOWN_CARDINALITY


class _Skip(_Unary):
    def __init__(self, parent, count):
        super().__init__(parent)
        self._count = count

    def _host_iter(self):
        if self._count < 0:
            return iter(())
        return itertools.islice(self._parent._host_iter(), self._count, None)

    def _cardinality(self):
        n = self._parent._cardinality()
        if self._count < 0:
            return 0
        return max(0, n - self._count) if n >= 0 else n


class _Shard(_Unary):
    def __init__(self, parent, num_shards, index):
        super().__init__(parent)
        self._num, self._index = num_shards, index

    def _host_iter(self):
        return itertools.islice(self._parent._host_iter(), self._index, None, self._num)

    def _cardinality(self):
        n = self._parent._cardinality()
        return max(0, math.ceil((n - self._index) / self._num)) if n >= 0 else n


class _Cache(_Unary):
    def __init__(self, parent):
        super().__init__(parent)
        self._elements = None

    def _host_iter(self):
        if self._elements is not None:
            yield from self._elements
            return
        seen = []
        for element in self._parent._host_iter():
            seen.append(element)
            yield element
        self._elements = seen  # only a complete pass is kept (as TF: a partial one is discarded)


class _Concatenate(Dataset):
    def __init__(self, first, second):
        super().__init__()
        self._first, self._second = first, second

    def _host_iter(self):
        yield from self._first._host_iter()
        yield from self._second._host_iter()

    def _cardinality(self):
        a, b = self._first._cardinality(), self._second._cardinality()
        if INFINITE_CARDINALITY in (a, b):
            return INFINITE_CARDINALITY
        return a + b if a >= 0 and b >= 0 else UNKNOWN_CARDINALITY


class _Prefetch(_Unary):
    """Runs the upstream pipeline in a background thread, buffer_size elements ahead."""

    def __init__(self, parent, buffer_size):
        super().__init__(parent)
        self._size = 2 if buffer_size in (AUTOTUNE, 0) else buffer_size

    def _host_iter(self):
        q = queue.Queue(self._size)
        stop = threading.Event()

        def produce():
            try:
                for element in self._parent._host_iter():
                    while not stop.is_set():
                        try:
                            q.put(("item", element), timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                q.put(("end", None))
            except BaseException as err:  # handed to the consumer, raised there
                q.put(("error", err))

        thread = threading.Thread(target=produce, name="clnet-data-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                kind, value = q.get()
                if kind == "end":
                    return
                if kind == "error":
                    raise value
                yield value
        finally:
            stop.set()

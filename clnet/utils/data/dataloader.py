"""DataLoader: batches from a dataset, in worker processes if asked, delivered as clnet tensors.

The arguments and their rules are PyTorch's. What is clnet's own:
  - batches arrive on a device (`device=`, default: the default device) through non-blocking copies on
    a transfer queue (clnet.utils.data.transfer), so a copy overlaps the compute already queued; with
    workers, the next batch is staged while the current step runs (double buffering);
  - worker processes only read and collate on the host (numpy); they never touch a device, so the
    same loader works with fork, spawn and forkserver; big arrays come back in shared memory;
  - a TensorDataset (or a Subset of one) is gathered a batch at a time, on the device when its tensors
    are clnet tensors and no workers are used, instead of sample by sample.
Errors in a worker are raised in the main process with the worker's traceback; a worker that dies
(killed, segfault) raises at once instead of hanging; iterators shut their workers down when exhausted,
deleted or broken off (persistent_workers=True keeps them for the next epoch).
"""
from __future__ import annotations

import itertools
import multiprocessing as mp
import numbers
import time
from multiprocessing import connection, resource_tracker
from multiprocessing.reduction import ForkingPickler

from ...backend.devices import get_device
from ... import generator as _generator
from . import shm as _shm
from . import worker as _worker
from .collate import collate_host, convert_host, default_collate, default_convert
from .dataset import IterableDataset, _prepare, can_fetch_batches
from .sampler import BatchSampler, RandomSampler, SequentialSampler
from .transfer import DeviceFeeder

STATUS_CHECK_INTERVAL = 5.0  # seconds the main process waits on workers between liveness checks
_SHUTDOWN_JOIN_TIMEOUT = 5.0


def _host_collate(collate_fn):
    """The host half of a default collate function (the feeder makes the tensors); others as given."""
    if collate_fn is default_collate:
        return collate_host
    if collate_fn is default_convert:
        return convert_host
    return collate_fn


class _InfiniteConstantSampler:
    """The keys of an IterableDataset: none (each fetch just takes the next samples)."""

    def __iter__(self):
        return itertools.repeat(None)


class DataLoader:
    """Iterate a dataset in batches: DataLoader(dataset, batch_size=64, shuffle=True, num_workers=2)."""

    _frozen = ("batch_size", "batch_sampler", "sampler", "drop_last", "dataset", "persistent_workers")

    def __init__(self, dataset, batch_size=1, shuffle=None, sampler=None, batch_sampler=None, num_workers=0,
                 collate_fn=None, pin_memory=False, drop_last=False, timeout=0, worker_init_fn=None,
                 multiprocessing_context=None, generator=None, *, prefetch_factor=None, persistent_workers=False,
                 pin_memory_device="", in_order=True, device=None):
        if not isinstance(num_workers, numbers.Integral) or num_workers < 0:
            raise ValueError("num_workers option should be non-negative; use num_workers=0 to disable "
                             "multiprocessing.")
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError("prefetch_factor option could only be specified in multiprocessing. let num_workers "
                             "> 0 to enable multiprocessing, otherwise set prefetch_factor to None.")
        if num_workers > 0 and prefetch_factor is None:
            prefetch_factor = 2
        if prefetch_factor is not None and prefetch_factor < 1:
            raise ValueError(f"prefetch_factor option should be a positive integer, got {prefetch_factor}")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")
        iterable = isinstance(dataset, IterableDataset)
        if iterable:
            if shuffle not in (False, None):
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified shuffle option, but got "
                                 f"shuffle={shuffle}")
            if sampler is not None:
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified sampler option, but got "
                                 f"sampler={sampler}")
            if batch_sampler is not None:
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified batch_sampler option, "
                                 f"but got batch_sampler={batch_sampler}")
        else:
            shuffle = bool(shuffle)
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler option is mutually exclusive with batch_size, shuffle, sampler, "
                                 "and drop_last")
            batch_size, drop_last = None, False
        elif batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually exclusive with "
                             "drop_last")
        if sampler is None:
            if iterable:
                sampler = _InfiniteConstantSampler()
            elif shuffle:
                sampler = RandomSampler(dataset, generator=generator)
            else:
                sampler = SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last) if not iterable else None
        if collate_fn is None:
            collate_fn = default_collate if (batch_size is not None or batch_sampler is not None) else default_convert
        if isinstance(multiprocessing_context, str):
            multiprocessing_context = mp.get_context(multiprocessing_context)
        self.dataset = dataset
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.num_workers = int(num_workers)
        self.collate_fn = collate_fn
        self.pin_memory = pin_memory
        self.pin_memory_device = pin_memory_device
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.multiprocessing_context = multiprocessing_context
        self.generator = generator
        self.prefetch_factor = prefetch_factor
        self.persistent_workers = persistent_workers
        self.in_order = in_order
        self.device = device
        self._iterable = iterable
        self._iterator = None
        self._initialized = True

    def __setattr__(self, name, value):
        if getattr(self, "_initialized", False) and name in self._frozen:
            raise ValueError(f"{name} attribute should not be set after {type(self).__name__} is initialized")
        super().__setattr__(name, value)

    # --- what an iterator needs -------------------------------------------------------------------
    @property
    def _auto_collation(self) -> bool:
        return self.batch_sampler is not None or (self._iterable and self.batch_size is not None)

    @property
    def _index_sampler(self):
        return self.batch_sampler if self.batch_sampler is not None else self.sampler

    def _fetch_spec(self):
        """What a fetcher needs: (dataset, iterable, auto_collation, collate, batch_size, drop_last, fast)."""
        fast = (self._auto_collation and not self._iterable and self.collate_fn is default_collate
                and can_fetch_batches(self.dataset))
        return (self.dataset, self._iterable, self._auto_collation, _host_collate(self.collate_fn),
                self.batch_size, self.drop_last, fast)

    def _feeder(self):
        return DeviceFeeder(get_device(self.device), pin_memory=self.pin_memory)

    def __iter__(self):
        if self.num_workers == 0:
            return _SingleProcessIter(self)
        if self.persistent_workers:
            if self._iterator is None or self._iterator._closed:
                self._iterator = _MultiProcessIter(self)
            else:
                self._iterator._reset()
            return self._iterator
        return _MultiProcessIter(self)

    def __len__(self):
        if self._iterable:
            n = len(self.dataset)  # TypeError for datasets without a length, as in PyTorch
            if self.batch_size is not None:
                n = n // self.batch_size if self.drop_last else -(-n // self.batch_size)
            return n
        return len(self._index_sampler)


class _BaseIter:
    def __init__(self, loader):
        self._loader = loader
        self._keys = iter(loader._index_sampler)
        self._feeder = loader._feeder()

    def __iter__(self):
        return self

    def __len__(self):
        return len(self._loader)


class _SingleProcessIter(_BaseIter):
    """num_workers=0: each batch is read in the main process when asked for."""

    def __init__(self, loader):
        super().__init__(loader)
        self._fetcher = _worker.make_fetcher(loader._fetch_spec(), on_host=False)

    def __next__(self):
        keys = next(self._keys)
        try:
            data = self._fetcher.fetch(keys)
        except StopIteration:
            self._feeder.finish()
            raise
        return self._feeder(data)


class _Worker:
    __slots__ = ("process", "index_queue", "conn", "active", "freed")

    def __init__(self, process, index_queue, conn):
        self.process, self.index_queue, self.conn, self.active = process, index_queue, conn, True
        self.freed = []  # its shared-memory segments this process is done with (sent with the next task)

    def send(self, task, keys):
        freed, self.freed = self.freed, []
        self.index_queue.put((task, keys, freed))


class _SegmentBack:
    """Gives a worker's segment back once the device copies from it have finished (DeviceFeeder calls it)."""

    __slots__ = ("worker", "name")

    def __init__(self, worker, name):
        self.worker, self.name = worker, name

    def release(self):
        self.worker.freed.append(self.name)


class _MultiProcessIter(_BaseIter):
    """num_workers > 0: workers read batches ahead (prefetch_factor each); results come back in order."""

    def __init__(self, loader):
        super().__init__(loader)
        self._closed = False
        self._workers = []
        self._maps = _shm.SegmentMaps()
        ctx = loader.multiprocessing_context or mp.get_context()
        spec = loader._fetch_spec()
        _prepare(loader.dataset)  # host copies of device tensors, before any worker starts
        resource_tracker.ensure_running()  # one tracker for every worker's shared memory
        base_seed = _generator.resolve(loader.generator).random64()
        forked = ctx.get_start_method() == "fork"
        try:
            for wid in range(loader.num_workers):
                index_queue = ctx.Queue()
                index_queue.cancel_join_thread()
                reader, writer = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_worker.worker_loop, daemon=True,
                                   args=(spec, index_queue, writer, wid, loader.num_workers, base_seed,
                                         loader.worker_init_fn, _shm.available(), forked))
                proc.start()
                writer.close()
                self._workers.append(_Worker(proc, index_queue, reader))
        except BaseException:
            self._shutdown()
            raise
        self._start_epoch()

    # --- epochs -------------------------------------------------------------------------------------
    def _start_epoch(self):
        self._sent = self._rcvd = 0
        self._results = {}  # task -> (kind, body) received out of order
        self._staged = {}  # task -> Staged batch whose copies are enqueued
        self._segment = {}  # task -> the shared-memory segment its batch arrived in
        self._owner = {}  # task -> index of the worker it was sent to
        self._next_worker = itertools.cycle(range(len(self._workers)))
        for w in self._workers:
            w.active = True
        for _ in range(self._loader.prefetch_factor * len(self._workers)):
            self._put_task()

    def _reset(self):
        """persistent_workers: a new epoch on the same workers (results of the old one are dropped)."""
        self._keys = iter(self._loader._index_sampler)
        token = object().__hash__()
        for task, name in self._segment.items():  # batches of the old epoch that arrived but were not used
            self._owner_worker(task).freed.append(name)
        for w in self._workers:
            w.send("resume", token)
        self._results, self._staged, self._segment = {}, {}, {}  # the old epoch's batches are dropped
        waiting = len(self._workers)
        while waiting:
            task, kind, body = self._receive()
            if kind == "resumed" and task == token:
                waiting -= 1
            elif kind == "data" and isinstance(body, _shm._Packed):
                self._owner_worker(task).freed.append(body.name)
        self._feeder.finish()
        self._start_epoch()

    def _owner_worker(self, task):
        return self._workers[self._owner[task]]

    def _put_task(self):
        active = [w for w in self._workers if w.active]
        if not active:
            return
        try:
            keys = next(self._keys)
        except StopIteration:
            return
        for _ in range(len(self._workers)):
            wid = next(self._next_worker)
            if self._workers[wid].active:
                break
        self._workers[wid].send(self._sent, keys)
        self._owner[self._sent] = wid
        self._sent += 1

    # --- receiving ----------------------------------------------------------------------------------
    def _receive(self, timeout=None):
        """One message (task, kind, body) from any worker; raises if a worker died or `timeout` passed."""
        limit = self._loader.timeout
        deadline = time.monotonic() + limit if limit > 0 else None
        while True:
            wait = STATUS_CHECK_INTERVAL if timeout is None else timeout
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - time.monotonic()))
            conns = [w.conn for w in self._workers]
            ready = connection.wait(conns + [w.process.sentinel for w in self._workers], timeout=wait)
            for w in self._workers:
                if w.conn in ready:
                    try:
                        return ForkingPickler.loads(w.conn.recv_bytes())
                    except (EOFError, OSError):
                        self._died([w])
            dead = [w for w in self._workers if w.process.sentinel in ready or not w.process.is_alive()]
            if dead:
                self._died(dead)
            if timeout is not None:
                return None
            if deadline is not None and time.monotonic() >= deadline:
                self._shutdown(graceful=False)
                raise RuntimeError(f"DataLoader timed out after {limit} seconds")

    def _died(self, dead):
        for w in dead:
            w.process.join(timeout=1.0)
        pids = ", ".join(f"{w.process.pid} (exit code {w.process.exitcode})" for w in dead)
        self._shutdown(graceful=False)
        raise RuntimeError(f"DataLoader worker (pid(s) {pids}) exited unexpectedly: it was killed or crashed "
                           "(out of memory? a segfault in a library?); run with num_workers=0 to see the error "
                           "in this process")

    def _store(self, message):
        task, kind, body = message
        if kind == "data":
            body, name = self._maps.unpack(body)
            if name is not None:
                self._segment[task] = name
        self._results[task] = (kind, body)

    def _stage(self, task, body):
        """Enqueue a batch's copies to the device; its segment goes back to the worker when they are done."""
        name = self._segment.pop(task, None)
        keep = _SegmentBack(self._workers[self._owner[task]], name) if name is not None else None
        return self._feeder.stage(body, keep)

    def _poll(self):
        """Take every message that has already arrived (no waiting)."""
        while True:
            message = self._receive(timeout=0)
            if message is None:
                return
            self._store(message)

    # --- iteration ----------------------------------------------------------------------------------
    def __next__(self):
        if self._closed:
            raise StopIteration
        while True:
            if self._rcvd >= self._sent:
                self._end_epoch()
                raise StopIteration
            task = self._rcvd
            if task not in self._results and task not in self._staged:
                self._store(self._receive())
                continue
            self._rcvd += 1
            staged = self._staged.pop(task, None)
            if staged is None:
                kind, body = self._results.pop(task)
                if kind == "end":  # an iterable dataset's worker ran out: send no more tasks to it
                    self._workers[self._owner.pop(task)].active = False
                    self._put_task()
                    continue
                if kind == "error":
                    self._shutdown()
                    body.reraise()
                staged = self._stage(task, body)
            self._owner.pop(task)
            self._put_task()
            self._stage_next()
            return self._feeder.hand_over(staged)

    def _stage_next(self):
        """Double buffering: enqueue the copies of the next batch now if it has already arrived."""
        self._poll()
        task = self._rcvd
        result = self._results.get(task)
        if result is not None and result[0] == "data" and task not in self._staged:
            del self._results[task]
            self._staged[task] = self._stage(task, result[1])

    def _end_epoch(self):
        self._feeder.finish()
        if not self._loader.persistent_workers:
            self._shutdown()

    # --- shutdown -----------------------------------------------------------------------------------
    def _shutdown(self, graceful=True):
        """Stop the workers: ask them to exit (graceful) or terminate them at once (after a timeout or a
        dead worker, when the others may be stuck too)."""
        if self._closed:
            return
        self._closed = True
        for w in self._workers:
            try:
                w.index_queue.put(None)
            except (OSError, ValueError):
                pass
        for w in self._workers:
            w.process.join(timeout=_SHUTDOWN_JOIN_TIMEOUT if graceful else 0.1)
            if w.process.is_alive():
                w.process.terminate()
                w.process.join()
        for w in self._workers:  # (each worker unlinked its own shared-memory segments as it exited)
            w.conn.close()
            w.index_queue.close()
        self._results, self._staged, self._segment = {}, {}, {}
        self._feeder.finish()
        self._maps.close()

    def __del__(self):
        try:
            self._shutdown()
        except Exception:
            pass

"""DataLoader worker processes: the loop each worker runs, and how its batches travel back.

Messages: the main process puts (task, keys, freed) on a worker's index queue (None: exit;
("resume", token, freed): start a new epoch); `freed` names the worker's shared-memory segments the main
process is done with (shm.py). The worker answers on a pipe of its own with one pickled (task, kind,
body): kind "data" (a batch, its big arrays in shared memory), "error" (an ExceptionWrapper with the
worker's traceback), "end" (its iterable dataset is exhausted) or "resumed". The answer is pickled in the
worker, so a batch that cannot be pickled comes back as an error instead of being lost; the main process
waits on all pipes and on the processes' sentinels at once, so a worker that dies is noticed at once
instead of waited for.
"""
from __future__ import annotations

import gc
import itertools
import multiprocessing as mp
import queue
import random
import sys
import traceback
from multiprocessing.reduction import ForkingPickler

import numpy as np

from ...ops import random as _clnet_random
from .shm import SegmentRing
from .worker_info import WorkerInfo, enter_worker

POLL_INTERVAL = 1.0  # seconds between a worker's checks that its parent is still alive


# --- errors -----------------------------------------------------------------------------------------
class _KeyErrorMessage(str):
    """KeyError shows repr(arg); this keeps the worker's multi-line traceback readable."""

    def __repr__(self):
        return self


class ExceptionWrapper:
    """An exception raised in a worker, with its traceback as text, re-raised in the main process."""

    def __init__(self, exc_info, where: str):
        self.exc_type = exc_info[0]
        self.exc_msg = "".join(traceback.format_exception(*exc_info))
        self.where = where

    def reraise(self):
        msg = f"Caught {self.exc_type.__name__} {self.where}.\nOriginal {self.exc_msg}"
        if self.exc_type is KeyError:
            msg = _KeyErrorMessage(msg)
        try:
            exc = self.exc_type(msg)
        except Exception:  # an exception type that needs other arguments
            raise RuntimeError(msg) from None
        raise exc


# --- fetching -----------------------------------------------------------------------------------------
class MapFetcher:
    """Reads the samples of one batch of keys from a map-style dataset and collates them."""

    def __init__(self, dataset, auto_collation, collate, fast_batches, on_host):
        self.dataset, self.auto_collation, self.collate = dataset, auto_collation, collate
        self.fast_batches, self.on_host = fast_batches, on_host

    def fetch(self, keys):
        if not self.auto_collation:
            return self.collate(self.dataset[keys])
        if self.fast_batches:
            return self.dataset._fetch_batch(keys, self.on_host)
        getitems = getattr(self.dataset, "__getitems__", None)
        data = getitems(keys) if getitems is not None else [self.dataset[k] for k in keys]
        return self.collate(data)


class IterFetcher:
    """Reads the next batch_size samples of an iterable dataset (StopIteration when it is exhausted)."""

    def __init__(self, dataset, auto_collation, collate, batch_size, drop_last):
        self.iterator = iter(dataset)
        self.auto_collation, self.collate = auto_collation, collate
        self.batch_size, self.drop_last = batch_size, drop_last
        self.ended = False

    def fetch(self, _keys=None):
        if self.ended:
            raise StopIteration
        if not self.auto_collation:
            return self.collate(next(self.iterator))
        data = list(itertools.islice(self.iterator, self.batch_size))
        if len(data) < self.batch_size:
            self.ended = True
            if not data or self.drop_last:
                raise StopIteration
        return self.collate(data)


def make_fetcher(spec, on_host):
    """spec: (dataset, iterable, auto_collation, collate, batch_size, drop_last, fast_batches)."""
    dataset, iterable, auto_collation, collate, batch_size, drop_last, fast_batches = spec
    if iterable:
        return IterFetcher(dataset, auto_collation, collate, batch_size, drop_last)
    return MapFetcher(dataset, auto_collation, collate, fast_batches, on_host)


# --- the loop -----------------------------------------------------------------------------------------
def _seed_worker(seed: int, worker_id: int, base_seed: int) -> None:
    """Python's, numpy's and clnet's (host) random state per worker, as PyTorch seeds its workers."""
    random.seed(seed)
    np.random.seed(np.random.SeedSequence([worker_id, base_seed]).generate_state(4))
    _clnet_random.manual_seed(seed)


def _send(conn, task, kind, body, ring=None):
    try:
        payload = ForkingPickler.dumps((task, kind, body))
    except Exception:
        if ring is not None:
            ring.give_back(body)
        err = ExceptionWrapper(sys.exc_info(), f"in DataLoader worker process {_worker_id} while sending a batch "
                                               "(it could not be pickled)")
        payload = ForkingPickler.dumps((task, "error", err))
    conn.send_bytes(payload)


_worker_id = -1


def worker_loop(spec, index_queue, conn, worker_id, num_workers, base_seed, init_fn, use_shm, forked):
    """Body of worker process `worker_id`: answer tasks until told to exit or the parent is gone."""
    global _worker_id
    _worker_id = worker_id
    if forked:
        gc.freeze()  # the collector never walks what the parent left here (nor frees its OpenCL objects)
    seed = base_seed + worker_id
    enter_worker(WorkerInfo(id=worker_id, num_workers=num_workers, seed=seed, dataset=spec[0]))
    _seed_worker(seed, worker_id, base_seed)
    parent = mp.parent_process()
    where = f"in DataLoader worker process {worker_id}"
    fetcher = None
    try:
        if init_fn is not None:
            init_fn(worker_id)
        fetcher = make_fetcher(spec, on_host=True)
    except Exception:
        init_error = ExceptionWrapper(sys.exc_info(), where)
    else:
        init_error = None
    ring = SegmentRing() if use_shm else None
    try:
        _serve(spec, index_queue, conn, parent, where, fetcher, init_error, ring)
    except (BrokenPipeError, ConnectionResetError):  # the main process is gone: nobody to answer
        pass
    finally:
        if ring is not None:
            ring.close()
    index_queue.cancel_join_thread()
    conn.close()


def _serve(spec, index_queue, conn, parent, where, fetcher, init_error, ring):
    """Answer tasks until told to exit (None) or the parent process is gone."""
    while True:
        try:
            msg = index_queue.get(timeout=POLL_INTERVAL)
        except queue.Empty:
            if parent is not None and not parent.is_alive():
                return
            continue
        if msg is None:
            return
        task, keys, freed = msg
        if ring is not None and freed:
            ring.release(freed)
        if task == "resume":
            if init_error is None:
                try:
                    fetcher = make_fetcher(spec, on_host=True)
                except Exception:
                    init_error = ExceptionWrapper(sys.exc_info(), where)
            _send(conn, keys, "resumed", None)
            continue
        if init_error is not None:
            _send(conn, task, "error", init_error)
            continue
        try:
            data = fetcher.fetch(keys)
        except StopIteration:
            _send(conn, task, "end", None)
            continue
        except Exception:
            _send(conn, task, "error", ExceptionWrapper(sys.exc_info(), where))
            continue
        _send(conn, task, "data", ring.pack(data) if ring is not None else data, ring)
        del data

"""The Reducer: averages gradients over the ranks in buckets, while backward is still running.

Parameters are grouped into buckets (in reverse registration order, the order backward usually finishes
them; the first bucket small, so communication starts early; then up to bucket_cap_mb each). When the
last gradient of a bucket has been accumulated (a post-accumulate-grad hook on each parameter), the main
thread enqueues non-blocking device->host copies of the bucket's gradients into one flat host buffer and
hands the bucket to a communication thread. That thread waits for the copies (the device keeps running
the rest of backward meanwhile), all-reduces the buffer over MPI with a non-blocking request waited on
with the group's deadline, divides by the world size and enqueues the host->device copies back into the
gradients. Buckets start in the same order on every rank (MPI matches collectives by order). When the
last bucket has started, the hook waits until every bucket's copies back are enqueued, so the optimizer
step that follows reads averaged gradients (one in-order queue per device keeps them ordered).

`bytes_per_step` records the all-reduce volume (what BENCHMARKS.md quotes).
"""
from __future__ import annotations

import queue
import threading

import numpy as np
import pyopencl as cl

from ...distributed import process_group
from ...ops.creation import zeros_like

_STOP = object()


class _Bucket:
    __slots__ = ("index", "params", "offsets", "numel", "host", "pending", "launched")

    def __init__(self, index, params, host_dtype):
        self.index = index
        self.params = params
        sizes = [p.numel() for p in params]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.numel = int(self.offsets[-1])
        self.host = np.empty(self.numel, dtype=host_dtype)
        self.pending = len(params)
        self.launched = False


def _host_dtype(dtype):
    return np.dtype(np.float32) if dtype == np.float16 else np.dtype(dtype)


def assign_buckets(params, cap_bytes, first_cap_bytes):
    """Lists of parameters, in reverse order, split where a bucket would exceed its cap or change
    device or dtype (the first bucket's cap is first_cap_bytes)."""
    buckets, current, size, key = [], [], 0, None
    for p in reversed(params):
        nbytes = p.numel() * _host_dtype(p.dtype).itemsize
        cap = first_cap_bytes if not buckets else cap_bytes
        pkey = (id(p.device), p.dtype)
        if current and (pkey != key or size + nbytes > cap):
            buckets.append(current)
            current, size = [], 0
        current.append(p)
        size += nbytes
        key = pkey
    if current:
        buckets.append(current)
    return buckets


class Reducer:
    """Bucketed, overlapped gradient averaging for DistributedDataParallel (see the module docstring)."""

    def __init__(self, params, bucket_cap_bytes, first_bucket_cap_bytes):
        self.group = process_group.default_group()
        self.buckets = [_Bucket(i, ps, _host_dtype(ps[0].dtype))
                        for i, ps in enumerate(assign_buckets(params, bucket_cap_bytes, first_bucket_cap_bytes))]
        self._where = {}
        for b in self.buckets:
            for i, p in enumerate(b.params):
                self._where[id(p)] = (b, i)
        self.bytes_per_step = sum(b.host.nbytes for b in self.buckets)
        self.active = False
        self._next = 0
        self._jobs = queue.Queue()
        self._done = threading.Semaphore(0)
        self._error = None
        self._thread = None

    # --- per iteration ------------------------------------------------------------------------------
    def prepare(self):
        """Arm the hooks for one backward pass."""
        for b in self.buckets:
            b.pending, b.launched = len(b.params), False
        self._next = 0
        self.active = True

    def unfinished(self) -> bool:
        return self.active and self._next < len(self.buckets)

    def unready_parameters(self):
        return [p for b in self.buckets if not b.launched for p in b.params]

    def mark_ready(self, param):
        """A parameter's gradient is final for this pass (from its post-accumulate-grad hook)."""
        if not self.active:
            return
        where = self._where.get(id(param))
        if where is None:
            return
        bucket, _ = where
        if bucket.launched:
            raise RuntimeError("Expected to mark a variable ready only once. A parameter got its gradient twice in "
                               "one iteration (a second backward through the same forward, or a parameter shared "
                               "with another DistributedDataParallel module)")
        bucket.pending -= 1
        while self._next < len(self.buckets) and self.buckets[self._next].pending <= 0:
            self._launch(self.buckets[self._next])
            self._next += 1
        if self._next == len(self.buckets):
            self._finish()

    # --- main thread ----------------------------------------------------------------------------------
    def _launch(self, bucket):
        """Enqueue the copies of the bucket's gradients to its host buffer; the comm thread does the rest."""
        bucket.launched = True
        events = []
        for p, start, stop in zip(bucket.params, bucket.offsets[:-1], bucket.offsets[1:]):
            if p.grad is None:  # no gradient here (an unused parameter): it contributes zeros, receives the mean
                p.grad = zeros_like(p)
            elif not p.grad.is_contiguous():
                p.grad = p.grad.contiguous()
            g = p.grad
            if g.dtype == np.float16:
                bucket.host[start:stop] = g.numpy().reshape(-1)
                continue
            events.append(cl.enqueue_copy(g.device.queue, bucket.host[start:stop], g._buf,
                                          src_offset=g.offset * g.dtype.itemsize, is_blocking=False))
        bucket.params[0].device.queue.flush()
        self._start_thread()
        self._jobs.put((bucket, events))

    def _finish(self):
        """Wait until every bucket's averaged gradients are enqueued back (then the optimizer may run)."""
        deadline = self.group.timeout_s + 5.0
        for _ in self.buckets:
            if not self._done.acquire(timeout=deadline):
                raise process_group.DistributedTimeoutError(
                    f"DistributedDataParallel: the gradient all-reduce did not finish within {deadline:g} s")
        self.active = False
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    # --- the communication thread ------------------------------------------------------------------------
    def _start_thread(self):
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="clnet-ddp-allreduce", daemon=True)
            self._thread.start()

    def _serve(self):
        MPI = process_group._mpi()
        size = self.group.size
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            bucket, events = job
            try:
                if self._error is None:
                    if events:
                        cl.wait_for_events(events)
                    request = self.group.comm.Iallreduce(MPI.IN_PLACE, bucket.host, op=MPI.SUM)
                    process_group.wait(request, f"DistributedDataParallel gradient all-reduce (bucket {bucket.index})")
                    bucket.host /= size
                    self._write_back(bucket)
            except BaseException as err:  # raised in the main thread by _finish
                self._error = err
            finally:
                self._done.release()

    def _write_back(self, bucket):
        """Enqueue the averaged values back into the gradients (float16 ones converted, with a blocking copy)."""
        for p, start, stop in zip(bucket.params, bucket.offsets[:-1], bucket.offsets[1:]):
            g = p.grad
            values = bucket.host[start:stop]
            blocking = g.dtype != values.dtype
            cl.enqueue_copy(g.device.queue, g._buf, values.astype(g.dtype) if blocking else values,
                            dst_offset=g.offset * g.dtype.itemsize, is_blocking=blocking)
        bucket.params[0].device.queue.flush()

    def close(self):
        if self._thread is not None:
            self._jobs.put(_STOP)
            self._thread.join(timeout=5)
            self._thread = None


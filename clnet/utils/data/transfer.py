"""Host -> device copies of batches that do not make anyone wait.

A DeviceFeeder turns the HostArrays of a collated batch into clnet tensors with non-blocking copies
enqueued on a transfer queue of their own, so a copy can run while the compute queue is still busy
with the previous step (double buffering: the DataLoader stages batch k+1 while step k computes).
Two events keep it correct without a host wait:
  - each copy waits for a marker on the compute queue, so a pool buffer that an earlier step freed is
    not overwritten while that step's kernels may still read it;
  - when the batch is handed out, the compute queue gets a barrier on the copies' events, so the
    step's kernels see the data.
Host arrays (and the shared-memory segments they live in) are kept until their copy has finished.

With pin_memory=True on a device whose memory is not the host's (a discrete GPU), each batch is first
written into a host-visible buffer allocated by the driver (CL_MEM_ALLOC_HOST_PTR, pinned on NVIDIA and
AMD) and copied from there by the device's DMA engine; where device memory is host memory (CPUs,
integrated GPUs) that staging would only add a copy, so it is skipped.
"""
from __future__ import annotations

import numpy as np
import pyopencl as cl

from ... import dtypes as _dt
from ...backend import caches
from ...backend.devices import get_device
from ...tensor import Tensor
from .collate import HostArray, map_leaves

_COMPLETE = cl.command_execution_status.COMPLETE
STAGE_ON_UNIFIED_MEMORY = False  # tests set it to run the pinned path on CPU devices
_MAX_STAGING_BUFFERS = 8
_TRANSFER_QUEUES = caches.new_cache("batch transfer queue per device")


def transfer_queue(device) -> cl.CommandQueue:
    """The device's queue for host->device batch copies (one per device, beside its compute queue)."""
    return _TRANSFER_QUEUES.get_or_make(device, lambda: cl.CommandQueue(device.context))


def _done(event) -> bool:
    return event.command_execution_status == _COMPLETE


def device_array(arr: np.ndarray, device) -> np.ndarray:
    """arr in a dtype clnet stores on `device`: float64 -> float32 without fp64, odd integer widths widened."""
    arr = np.ascontiguousarray(arr.view(np.ndarray) if isinstance(arr, HostArray) else arr)
    dt = _dt.infer_dtype(arr)
    if dt == _dt.float64 and not device.fp64:
        dt = _dt.float32
    return arr if arr.dtype == dt else arr.astype(dt)


class _Staging:
    """Host-visible device buffers reused round-robin for pinned copies."""

    def __init__(self, device, queue):
        self.device, self.queue = device, queue
        self.free = []  # (nbytes, buffer, event of its last copy)

    def copy(self, arr: np.ndarray, dst, wait_for) -> cl.Event:
        nbytes = arr.nbytes
        found = None
        for i, (size, buf, last) in enumerate(self.free):
            if size >= nbytes and (last is None or _done(last)):
                found = self.free.pop(i)
                break
        if found is None:
            flags = cl.mem_flags.READ_ONLY | cl.mem_flags.ALLOC_HOST_PTR
            found = (nbytes, cl.Buffer(self.device.context, flags, nbytes), None)
        size, buf, _ = found
        mapped, _ = cl.enqueue_map_buffer(self.queue, buf, cl.map_flags.WRITE, 0, (nbytes,), np.uint8,
                                          is_blocking=True)
        mapped[:] = arr.reshape(-1).view(np.uint8)
        mapped.base.release(self.queue)
        event = cl.enqueue_copy(self.queue, dst, buf, byte_count=nbytes, wait_for=wait_for)
        self.free.append((size, buf, event))
        del self.free[:-_MAX_STAGING_BUFFERS]
        return event


class Staged:
    """A batch whose copies are enqueued: `batch` holds the tensors, `events` the copies still to wait for."""

    __slots__ = ("batch", "events")

    def __init__(self, batch, events):
        self.batch, self.events = batch, events


class DeviceFeeder:
    """Uploads host batches to `device` with non-blocking copies (see the module docstring)."""

    def __init__(self, device=None, pin_memory: bool = False):
        self.device = get_device(device)
        self.queue = transfer_queue(self.device)
        stage = pin_memory and (not self.device.host_unified_memory or STAGE_ON_UNIFIED_MEMORY)
        self._staging = _Staging(self.device, self.queue) if stage else None
        self._pending = []  # (event, host objects to keep until it completes)

    def stage(self, host_batch, keep=None) -> Staged:
        """Enqueue the copies of every HostArray in host_batch. The host arrays are held until the copies have
        finished; then `keep.release()` is called (a worker's shared-memory segment going back to it)."""
        events, arrays, marker = [], [], []

        def upload(x):
            if not isinstance(x, HostArray):
                return x
            arr = device_array(x, self.device)
            t = Tensor._empty(arr.shape, arr.dtype, self.device)
            if arr.size:
                if not marker:
                    marker.append(cl.enqueue_marker(self.device.queue))
                    self.device.queue.flush()  # another queue may wait on an event only once it is submitted
                if self._staging is not None:
                    events.append(self._staging.copy(arr, t._buf, marker))
                else:
                    events.append(cl.enqueue_copy(self.queue, t._buf, arr, is_blocking=False, wait_for=marker))
                    arrays.append(arr)
            return t

        batch = map_leaves(upload, host_batch)
        del host_batch
        self._prune()
        if events:
            self._pending.append((events, arrays, keep))
        elif keep is not None:
            keep.release()
        return Staged(batch, events)

    def hand_over(self, staged: Staged):
        """The staged batch, with the compute queue ordered after its copies (no host wait)."""
        if staged.events:
            self.queue.flush()
            cl.enqueue_barrier(self.device.queue, wait_for=staged.events)
        return staged.batch

    def __call__(self, host_batch, keep=None):
        return self.hand_over(self.stage(host_batch, keep))

    def _prune(self):
        """Let go of host arrays whose copies have finished."""
        kept = []
        for entry in self._pending:
            if all(_done(e) for e in entry[0]):
                _let_go(entry)
            else:
                kept.append(entry)
        self._pending = kept

    def finish(self):
        """Wait for every copy and let go of every host array."""
        for entry in self._pending:
            cl.wait_for_events(entry[0])
            _let_go(entry)
        self._pending = []


def _let_go(entry):
    events, arrays, keep = entry
    arrays.clear()  # the views of a shared-memory segment go before the segment is given back
    if keep is not None:
        keep.release()

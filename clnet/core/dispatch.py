"""Dispatch: the one path every kernel launch and every host<->device copy takes.

    launch(device, kernel, global_size, local_size, args)   enqueue a built kernel (from backend.programs)
    host_step(fn)                                            host bookkeeping a replayed graph runs again
    upload(device, buf, host)                                copy host memory into a device buffer
    download(device, host, buf, byte_offset)                 copy device memory to the host (waits)
    guard(device, host, buf, byte_offset, check)             a download whose values only a check reads
    @op("name")                                              marks a public op function (see below)

Eagerly (the normal case) `launch` sets the arguments and enqueues at once; nothing waits. A kernel
whose first build is still to come (first use on a machine) is built in a build thread while the
program goes on, its launch deferred in issue order (backend/deferred.py). While a
recorder is active on this thread (clnet.compile traces a step, clnet.jit traces a module), the same
calls are also reported to it: launches with their kernel, sizes and arguments (what replay needs),
ops with their name, arguments and results (what ONNX export and jit.save need), uploads as constants,
downloads as graph breaks, and guards (a download that only a check reads) as checks a replay repeats. Eager code pays one integer test per call for that.

Thread safety (issue 16): a cl.Kernel object holds its arguments, so setting them and enqueueing is one
critical section: the backend's `programs.Kernel` (what get_kernel returns) holds its own lock across
both when called (docs/threads.md), so `launch` only calls it. Recording is per thread.
"""
from __future__ import annotations

import functools
import threading

import pyopencl as cl

from ..backend import deferred
from . import storage
from .storage import TensorBase

_count_lock = threading.Lock()  # guards _recording
_local = threading.local()   # .recorder: the active recorder of this thread, or None; .phase
_recording = 0               # recorders active in any thread: eager code tests only this


# --- launches and copies -----------------------------------------------------------------------------
def launch(device, kernel, global_size, local_size, args, refresh=None, note=None, manages=()):
    """Enqueue `kernel` (a backend.programs.Kernel) over `global_size` work-items in groups of
    `local_size` with `args`.

    `refresh`, when given, is a callable returning {argument position: new value} for the arguments
    drawn from host state at each call (random counters, optimizer step sizes): a replayed graph calls
    it before the launch instead of reusing the traced values (eagerly it is not called).
    `note`, given only while recording (test `dispatch.recording_active()`), tells graph passes what the
    kernel computes (e.g. an elementwise expression and its operands: clnet.ops.elementwise.EwNote).
    """
    if _recording:
        rec = getattr(_local, "recorder", None)
        if rec is not None:
            rec.on_launch(device, kernel, global_size, local_size, args, refresh, note, manages)
    elif device._deferred.entries or (kernel.cl_kernel is None and deferred.enabled()):
        deferred.push(device, kernel, global_size, local_size, args)  # its first build runs meanwhile
        return
    kernel(device.queue, global_size, local_size, *args)


def host_step(fn, manages=()):
    """Run fn() now; a graph replayed by clnet.compile runs it again at this point of every call. For the
    host-side bookkeeping of a step that no kernel does (an optimizer's iteration count, per-step
    hyper-parameters that the launches' refresh callables then read). `manages`: the objects fn changes."""
    fn()
    if _recording:
        rec = getattr(_local, "recorder", None)
        if rec is not None:
            rec.on_host_step(fn, manages)


def upload(device, buf, host, blocking=True):
    """Copy the numpy array `host` into device buffer `buf`; returns the copy's event."""
    if _recording:
        rec = getattr(_local, "recorder", None)
        if rec is not None:
            rec.on_upload(device, buf, host)
    return cl.enqueue_copy(device.queue, buf, host, is_blocking=blocking)


def download(device, host, buf, byte_offset=0, blocking=True):
    """Copy device memory (from `byte_offset` in `buf`) into the numpy array `host`.

    Under a recorder this is a graph break: the host now holds a value the graph cannot replay.
    """
    if _recording:
        rec = getattr(_local, "recorder", None)
        if rec is not None:
            rec.on_download(device, host, buf, byte_offset)
    return cl.enqueue_copy(device.queue, host, buf, src_offset=byte_offset, is_blocking=blocking)


def guard(device, host, buf, check, byte_offset=0):
    """Copy device memory into `host` (as download, waiting) and call check(host), which raises on
    values the launches after it must not see (an index out of bounds): for reads whose values decide
    nothing but that exception. Eagerly it is a download and a call. Under a recorder that can repeat
    the check (clnet.compile, when the buffer is an argument or a captured tensor that nothing in the
    traced call wrote before this point) it is no graph break: a replay reads the buffer again and runs
    check before any of its launches, so a bad value raises before anything is written. Otherwise (and
    for recorders without `on_guard`) it is a download like any other: a graph break."""
    if _recording:
        rec = getattr(_local, "recorder", None)
        if rec is not None:
            on_guard = getattr(rec, "on_guard", None)
            if on_guard is not None:
                on_guard(device, host, buf, byte_offset, check)
            else:
                rec.on_download(device, host, buf, byte_offset)
    cl.enqueue_copy(device.queue, host, buf, src_offset=byte_offset, is_blocking=True)
    check(host)
    return host


def upload_array(host, dtype, device) -> TensorBase:
    """A new tensor on `device` holding the contiguous array `host` (already of `dtype`)."""
    out = TensorBase._empty(host.shape, dtype, device)
    if host.size:
        upload(device, out._buf, host)
    return out


# --- ops ---------------------------------------------------------------------------------------------
OPS: dict = {}  # op name -> the op function (the decorated one): what a saved graph may call by name


def op(name: str):
    """Decorator for a public op function: under a recorder the call is reported as one op row
    (name, arguments, results); eagerly it costs one integer test. Ops called inside an op are the
    outer op's implementation: a recorder keeps them as its children. The function is registered in
    OPS under `name` (names are unique)."""
    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if _recording:
                rec = getattr(_local, "recorder", None)
                if rec is not None:
                    return rec.on_op(name, fn, args, kwargs)
            return fn(*args, **kwargs)
        wrapper.op_name = name
        if OPS.get(name, wrapper).__wrapped__ is not fn:
            raise ValueError(f"two ops are named {name!r}: {OPS[name].__wrapped__} and {fn}")
        OPS[name] = wrapper
        return wrapper
    return decorate


def call_op(name: str, fn, *args, **kwargs):
    """fn(*args, **kwargs) reported as op `name`: for ops whose name is data (elementwise.pointwise,
    which registers itself in OPS as "pointwise": its rows carry the expression as an argument)."""
    if _recording:
        rec = getattr(_local, "recorder", None)
        if rec is not None:
            return rec.on_op(name, fn, args, kwargs)
    return fn(*args, **kwargs)


class phase:
    """`with phase("backward"):` tags what a recorder sees as part of that phase of a step ("forward",
    the default; "backward" while autograd walks the tape; "optimizer" inside Optimizer.step)."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        self._prev = getattr(_local, "phase", "forward")
        _local.phase = self.name
        return self

    def __exit__(self, *exc):
        _local.phase = self._prev
        return False


def current_phase() -> str:
    return getattr(_local, "phase", "forward")


# --- recorders ---------------------------------------------------------------------------------------
def recording_active() -> bool:
    """True when some thread records (a cheap test before building a launch's note)."""
    return _recording > 0


def active_recorder():
    """This thread's recorder, or None."""
    return getattr(_local, "recorder", None) if _recording else None


class recording:
    """`with recording(rec):` reports this thread's launches, copies and ops to `rec` (nests: the inner
    recorder wins until it exits). `rec` has on_launch, on_upload, on_download and on_op methods."""

    def __init__(self, recorder):
        self.recorder = recorder

    def __enter__(self):
        global _recording
        self._prev = getattr(_local, "recorder", None)
        _local.recorder = self.recorder
        with _count_lock:
            _recording += 1
            storage.set_allocation_hook(_on_allocation)
        return self.recorder

    def __exit__(self, *exc):
        global _recording
        _local.recorder = self._prev
        with _count_lock:
            _recording -= 1
            if not _recording:
                storage.set_allocation_hook(None)
        return False


def _on_allocation(tensor):
    """storage's hook while some thread records: this thread's recorder learns of each new tensor."""
    rec = getattr(_local, "recorder", None)
    if rec is not None:
        rec.on_allocate(tensor)


class paused:
    """`with paused():` runs eagerly, reporting nothing, inside a recording (e.g. a graph break's work)."""

    def __enter__(self):
        self._prev = getattr(_local, "recorder", None)
        _local.recorder = None
        return self

    def __exit__(self, *exc):
        _local.recorder = self._prev
        return False

"""Launches that wait for their kernel's first build, so that first builds run side by side (issue 12).

On a machine's first run every kernel variant is built (and, on PoCL, first launched) in a build child
(build_worker.py), and eagerly each op waited for its build before the next op could ask for its own:
the first training step of an MLP built its 14 programs one after another (4.2 s of a cold first step).
Instead, a launch whose kernel is not built yet starts the build in a build thread (one child each,
build_worker.jobs() at a time) and joins the device's queue of deferred launches; the op returns, and
the next ops start their own builds. Every later launch on the device joins that queue too, behind the
earlier ones, so the device runs them in the order the program issued them: nothing reaches the
OpenCL queue out of order.

The deferred launches reach the OpenCL queue
  - as soon as their build is done, whenever another launch is deferred (nothing waits then), and
  - all of them, waiting for their builds, before anything else uses the device's queue: `Device.queue`
    drains first, so copies to and from the host, markers, `synchronize()` and replayed graphs see
    every earlier launch enqueued (`drain`).
A build that fails (a compiler error, a compiler crash in the child) raises where the queue is drained
or the next launch is deferred: the launches behind it are dropped (they would read what it did not
write) and the error names the kernel. Only launches of kernels that are not built yet start this,
and only where builds go to the build child (first use on a machine): a warm process never defers.

CLNET_DEFER_BUILDS=0 turns it off (each op waits for its build, as before).
"""
from __future__ import annotations

import collections
import os
import threading


def enabled() -> bool:
    return os.environ.get("CLNET_DEFER_BUILDS", "1").strip().lower() not in ("0", "no", "off", "false")


class DeferredLaunches:
    """One device's launches waiting for builds, in issue order: (future, kernel, sizes, args)."""

    __slots__ = ("entries", "lock")

    def __init__(self):
        self.entries = collections.deque()
        self.lock = threading.RLock()


def push(device, kernel, global_size, local_size, args) -> None:
    """Defer one launch behind the device's earlier deferred ones, starting its kernel's build if needed;
    launches whose builds are done move on to the OpenCL queue now."""
    future = kernel.start_build(global_size, local_size, args)
    waiting = device._deferred
    with waiting.lock:
        waiting.entries.append((future, kernel, global_size, local_size, args))
        _enqueue(device, waiting, block=False)


def drain(device) -> None:
    """Enqueue every deferred launch of `device`, waiting for the builds they need."""
    waiting = device._deferred
    with waiting.lock:
        _enqueue(device, waiting, block=True)


def _enqueue(device, waiting, block: bool) -> None:
    entries, queue = waiting.entries, device.raw_queue
    while entries:
        future = entries[0][0]
        if not block and not future.done():
            return
        try:
            future.result()
        except BaseException:
            entries.clear()  # what follows would read what the failed kernel did not write
            raise
        _, kernel, global_size, local_size, args = entries.popleft()
        kernel(queue, global_size, local_size, *args)

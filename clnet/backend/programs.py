"""Kernels by name: render a template, build it for a device once, hand out a launchable kernel.

    get_kernel(device, "elementwise.cl.mako", "ew", arg_dtypes=[...], **params) -> Kernel

The jobs around it live in their own modules: render.py (mako -> OpenCL C), binary_cache.py (device
binaries on disk), binary_writer.py (PoCL's binaries written after the process), build_log.py (the
readable build error), cl_private.py (every private pyopencl/mako call), caches.py (the in-memory
caches). Built programs and kernels are memoized per (device, template, params) in registered caches,
each made once however many threads ask at the same moment.

Launching from several threads: a `Kernel` sets its arguments and enqueues under its own lock, because
clSetKernelArg on one cl_kernel is the one OpenCL call that is not thread-safe (another thread's
set-args between ours and our enqueue would launch with its arguments). Call it as pyopencl's kernels
are called: `kern(queue, global_size, local_size, *args)`. See docs/threads.md.
"""
from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pyopencl as cl

from ..errors import KernelBuildError
from . import binary_cache, binary_writer, caches, cl_private
from .build_log import build_failure
from .cache_files import cache_dir, driver_caches  # noqa: F401  (public here too: `clnet cache`)
from .render import ctype, kernel_dir, render  # noqa: F401  (ops import ctype from here)

_PROGRAMS = caches.new_cache("programs")
_KERNELS = caches.new_cache("kernels")


class Kernel:
    """A built kernel that any thread may launch (see the module docstring).

    `kern(queue, global_size, local_size, *args, **kwargs)` is pyopencl's `cl.Kernel.__call__` run
    under this kernel's lock: set-args and enqueue happen together. The lock is uncontended unless two
    threads launch the same kernel at the same moment, and costs well under a microsecond next to
    the call's tens. `cl_kernel` is the pyopencl kernel, for queries only: never set its arguments."""

    __slots__ = ("cl_kernel", "name", "_lock")

    def __init__(self, cl_kernel: cl.Kernel, name: str):
        self.cl_kernel, self.name = cl_kernel, name
        self._lock = threading.Lock()

    def __call__(self, queue, global_size, local_size, *args, **kwargs):
        with self._lock:
            return self.cl_kernel(queue, global_size, local_size, *args, **kwargs)

    def __repr__(self) -> str:
        return f"<clnet Kernel {self.name}>"


def _freeze(params: dict) -> tuple:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in params.items()))


def build(device, source: str, name: str = "<source>", options: tuple = ()) -> cl.Program:
    """Build `source` for `device`; a compiler error becomes a KernelBuildError showing the source.

    A program already in clnet's binary cache is loaded from there (binary_cache.policy says when)."""
    opts = [str(o) for o in list(options) + list(device.profile.build_options)]
    policy = binary_cache.policy(device)
    raw = None
    if policy != "off":
        path = binary_cache.path_for(device, source, opts)
        raw = binary_cache.load(device, path, opts)
    if raw is None:
        try:
            raw = cl_private.program_from_source(device.context, source)
            cl_private.build_program(raw, " ".join(opts), [device.cl_device])
        except cl.RuntimeError as err:
            log = str(err)  # pyopencl puts the compiler's build log in the message
            raise KernelBuildError(build_failure(device, name, source, log)) from None
        if policy == "now":
            binary_cache.store(raw, path)
        elif policy == "later":
            binary_writer.defer(device, source, opts, path)
    return cl_private.wrap_program(raw)


def get_program(device, template: str, **params) -> cl.Program:
    """The built program for (device, template, params); rendered and built once per process."""
    key = (device, template, _freeze(params))
    prg = _PROGRAMS.get(key)
    if prg is None:
        prg = _PROGRAMS.get_or_make(
            key, lambda: build(device, render(template, **params), name=f"{template} {params}"))
    return prg


def get_kernel(device, template: str, kernel_name: str, arg_dtypes=None, **params) -> Kernel:
    """The launchable Kernel for (device, template, params, name); a dict lookup after the first call.

    `arg_dtypes` (None for buffers, a numpy dtype for each scalar) is set once on the new kernel so
    later calls pass plain Python numbers without per-call conversion."""
    key = (device, template, kernel_name, _freeze(params))
    kern = _KERNELS.get(key)
    if kern is None:
        kern = _KERNELS.get_or_make(key, lambda: _make_kernel(device, template, kernel_name, arg_dtypes, params))
    return kern


def _make_kernel(device, template, kernel_name, arg_dtypes, params) -> Kernel:
    raw = cl_private.raw_program(get_program(device, template, **params))
    try:
        kern = cl.Kernel(raw, kernel_name)
    except cl.Error:
        names = raw.get_info(cl.program_info.KERNEL_NAMES)
        raise KernelBuildError(f"{template} has no kernel named {kernel_name!r} (it has: {names})") from None
    if arg_dtypes is not None:
        kern.set_scalar_arg_dtypes(arg_dtypes)
    return Kernel(kern, f"{template}:{kernel_name}")


def clear_cache() -> Path:
    """Delete clnet's built binaries (cache_dir()/binaries) and compiled templates (cache_dir()/mako), and
    forget this process's in-memory caches (programs, kernels, launch plans: caches.clear()).

    Drivers keep their own caches (see `driver_caches()`); those are theirs to manage."""
    path = cache_dir() / "binaries"
    shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(cache_dir() / "mako", ignore_errors=True)  # mako recreates what it needs
    caches.clear()
    return path


def built_count() -> int:
    """How many programs this process holds built (tests use it to prove the caches hit)."""
    return len(_PROGRAMS)

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

import concurrent.futures
import hashlib
import shutil
import threading
from pathlib import Path

import pyopencl as cl

from ..errors import KernelBuildError
from . import binary_cache, binary_writer, build_verdicts, build_worker, caches, cl_private, deferred
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
    the call's tens. `cl_kernel` is the pyopencl kernel, for queries only: never set its arguments.

    On a driver that generates code at the first launch (PoCL), a variant without a verdict on this
    machine is built and first launched in the build child (build_worker.py): such a Kernel is made
    without its program (`cl_kernel` None) and its first call does the child's build and launch, then
    builds here (the driver's cache holds everything by then) and launches."""

    __slots__ = ("cl_kernel", "name", "template", "kernel_name", "params", "arg_dtypes", "_lock", "_pending",
                 "_build")

    def __init__(self, cl_kernel, template: str, kernel_name: str, params: dict, pending=None, arg_dtypes=None):
        self.cl_kernel = cl_kernel
        self.template, self.kernel_name, self.params = template, kernel_name, dict(params)  # what it was made from
        self.arg_dtypes = arg_dtypes  # scalar types of the arguments (clnet.compiler sets them on its clones)
        self.name = f"{template}:{kernel_name}"
        self._lock = threading.Lock()
        self._pending = pending  # (device, arg_dtypes) until first launched, where it is first tried in the child
        self._build = None  # the Future of start_build, once asked

    def __call__(self, queue, global_size, local_size, *args, **kwargs):
        with self._lock:
            if self.cl_kernel is None:
                self._first_launch(global_size, local_size, args, kwargs.get("global_offset"))
            return self.cl_kernel(queue, global_size, local_size, *args, **kwargs)

    def start_build(self, global_size, local_size, args):
        """A Future for this kernel's first build and child launch (what __call__ would do first), run by
        a build thread so that the caller goes on (backend.deferred); done at once for a built kernel."""
        with self._lock:
            if self._build is None:
                if self.cl_kernel is not None:
                    self._build = _done_future()
                else:
                    self._build = _build_pool().submit(self._build_for, global_size, local_size, args)
            return self._build

    def _build_for(self, global_size, local_size, args):
        with self._lock:
            if self.cl_kernel is None:
                self._first_launch(global_size, local_size, args, None)

    def built(self):
        """The pyopencl kernel, built now if it was not yet (the child then only builds: no first launch).
        clnet.compiler clones it for a replay plan, which owns the clones' arguments."""
        with self._lock:
            if self.cl_kernel is None:
                self._first_launch(None, None, None, None)
            return self.cl_kernel

    def _first_launch(self, global_size, local_size, args, offset) -> None:
        (device, arg_dtypes), template, kernel_name, params = self._pending, self.template, self.kernel_name, self.params
        variant = build_verdicts.variant(template, params)
        launch = None
        if args is not None:
            launch = build_worker.describe_launch(kernel_name, global_size, local_size, args, arg_dtypes, offset)
        if launch is not None and sum(a[1] for a in launch["args"] if a[0] == "buffer") > _FIRST_LAUNCH_MAX_BYTES:
            launch = None  # the child would need as much memory again: it only builds
        source = render(template, **params)
        opts = [str(o) for o in device.profile.build_options]
        _vet_in_child(device, source, f"{template} {params}", opts, variant, launch)
        self.cl_kernel = _cl_kernel(device, template, kernel_name, arg_dtypes, params)
        self._pending = None

    def __repr__(self) -> str:
        return f"<clnet Kernel {self.name}>"


_POOL: list = []
_POOL_LOCK = threading.Lock()


def _build_pool():
    """The threads that wait on the build children for deferred first builds (one per child)."""
    if not _POOL:
        with _POOL_LOCK:
            if not _POOL:
                _POOL.append(concurrent.futures.ThreadPoolExecutor(build_worker.jobs(), "clnet-build"))
    return _POOL[0]


def _done_future():
    fut = concurrent.futures.Future()
    fut.set_result(None)
    return fut


IN_PROCESS_FIRST = 1  # builds without a stored binary done here before later ones go to the build children
_BUILT_HERE = [0]     # how many programs this process compiled itself (no stored binary, no child)


# A first launch whose buffers exceed this is not repeated in the child (it would double the memory).
_FIRST_LAUNCH_MAX_BYTES = 256 << 20


def _freeze(params: dict) -> tuple:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in params.items()))


def _vetting(device, variant: str, name: str) -> bool:
    """Whether `variant` is to be built in the build child first (build_worker.policy). A variant that
    crashed the compiler here before is never built again: its fallback should have replaced it."""
    verdict = build_verdicts.verdict(device, variant)
    if verdict == build_verdicts.CRASH:
        raise build_worker.CompilerCrashed(
            f"{name}: variant {variant} crashed the OpenCL compiler of {device.name} [{device.platform_name}, "
            f"driver {device.driver_version}] before, and the fallback parameters still produce it (no fallback "
            "left for it); `clnet cache clear --verdicts` tries it again")
    mode = build_worker.policy(device)
    return mode == "always" or (mode == "auto" and verdict is None)


def build(device, source: str, name: str = "<source>", options: tuple = (), variant: str | None = None) -> cl.Program:
    """Build `source` for `device`; a compiler error becomes a KernelBuildError showing the source.

    A program already in clnet's binary cache is loaded from there (binary_cache.policy says when).
    A variant (build_verdicts.variant) never built on this device and driver is built in the build
    child first (build_worker.py), so a compiler crash raises CompilerCrashed instead of killing the
    process; where the child hands back its binary, that binary is the program."""
    opts = [str(o) for o in list(options) + list(device.profile.build_options)]
    policy = binary_cache.policy(device)
    path = binary_cache.path_for(device, source, opts) if policy != "off" else None
    raw = binary_cache.load(device, path, opts) if path is not None else None
    if raw is None:
        variant = variant or f"{name}#{hashlib.sha256(source.encode()).hexdigest()[:12]}"
        if _vetting(device, variant, name):
            binary = _vet_in_child(device, source, name, opts, variant)
            raw = binary_cache.load_bytes(device, binary, opts) if binary else None
            if raw is not None and path is not None:
                binary_cache.store_bytes(binary, path)
        if raw is None:
            if device.implementation in build_worker.COMPILES_AT_LAUNCH and _side_by_side(device):
                build_worker.prestart(device, " ".join(opts))  # warm children for the builds after IN_PROCESS_FIRST
            raw = _build_here(device, source, name, opts)
            _BUILT_HERE[0] += 1
            if policy == "now":
                binary_cache.store(raw, path)
            elif policy == "later":
                binary_writer.defer(device, source, opts, path)
    return cl_private.wrap_program(raw)


def _build_here(device, source, name, opts):
    try:
        raw = cl_private.program_from_source(device.context, source)
        cl_private.build_program(raw, " ".join(opts), [device.cl_device])
    except cl.RuntimeError as err:
        log = str(err)  # pyopencl puts the compiler's build log in the message
        raise KernelBuildError(build_failure(device, name, source, log)) from None
    return raw


def _vet_in_child(device, source, name, opts, variant, launch=None) -> bytes:
    """Build (and, given `launch`, first-launch) in the build child; record the verdict. Returns the
    child's binary (b"" where the driver compiles at launch: this process then builds from its cache)."""
    try:
        binary, kernels = build_worker.build_in_child(device, source, " ".join(opts), variant, launch=launch)
    except build_worker.BuildRefused as err:
        raise KernelBuildError(build_failure(device, name, source, err.log)) from None
    except build_worker.CompilerCrashed as err:
        raise compiler_crashed(device, name, variant, str(err)) from None
    if "__kernel" in source and not kernels:
        raise compiler_crashed(device, name, variant, "the build succeeded but the program holds no kernels")
    build_verdicts.record(device, variant, build_verdicts.OK)
    return binary


def compiler_crashed(device, name: str, variant: str, detail: str) -> "build_worker.CompilerCrashed":
    """Record that `variant` crashed the compiler, move the device to its fallback parameters (its profile
    is recomputed and every cached launch plan dropped) and return the error that says so."""
    build_verdicts.record(device, variant, build_verdicts.CRASH, detail)
    device.forget_profile()
    caches.clear()
    fallback = "; ".join(q for q in device.profile.quirks if "compiler crashed" in q) or "its fallback profile"
    return build_worker.CompilerCrashed(
        f"the OpenCL compiler crashed building {name} on {device.name} [{device.platform_name}, driver "
        f"{device.driver_version}]\n  variant: {variant}\n  compiler: {detail}\n"
        f"clnet built it in a child process, so only that process died. The device now uses fallback "
        f"parameters ({fallback}), in this process and in later ones: run the operation again.")


def get_program(device, template: str, **params) -> cl.Program:
    """The built program for (device, template, params); rendered and built once per process."""
    key = (device, template, _freeze(params))
    prg = _PROGRAMS.get(key)
    if prg is None:
        prg = _PROGRAMS.get_or_make(key, lambda: build(device, render(template, **params), name=f"{template} {params}",
                                                       variant=build_verdicts.variant(template, params)))
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
    if (device.implementation in build_worker.COMPILES_AT_LAUNCH and _PROGRAMS.get((device, template, _freeze(params)))
            is None and (_vetting(device, build_verdicts.variant(template, params), f"{template}:{kernel_name}")
                         or _compiles_in_child(device, template, params))):
        return Kernel(None, template, kernel_name, params, pending=(device, arg_dtypes), arg_dtypes=arg_dtypes)
    return Kernel(_cl_kernel(device, template, kernel_name, arg_dtypes, params), template, kernel_name, params,
                  arg_dtypes=arg_dtypes)


def _side_by_side(device) -> bool:
    """Whether builds without a stored binary may go to the build children side by side: deferring is on,
    the children are allowed (build_worker policy) and clnet's binary cache is on."""
    return deferred.enabled() and build_worker.policy(device) != "never" and binary_cache.policy(device) != "off"


def _compiles_in_child(device, template, params) -> bool:
    """Whether a program with a verdict is compiled in a build child anyway, so that the first builds of a
    process run side by side (deferred.py): where deferring is on, the child is allowed (build_worker
    policy), clnet's binary cache has no binary for it (after `clnet cache clear` or an upgrade; a
    process whose binaries are stored loads them and never starts a child), and this is not one of the
    first IN_PROCESS_FIRST such builds of the process (a warm process meeting one or two new kernels
    builds them here: a child's start-up, ~0.8 s, would cost more than their build, 0.15-0.5 s).
    PoCL's cache, which the child fills, then makes this process's own build a cache hit."""
    if not _side_by_side(device):
        return False
    if _BUILT_HERE[0] < IN_PROCESS_FIRST and not build_worker.started():
        return False  # (the first of them started the children, warming up in the background)
    opts = [str(o) for o in device.profile.build_options]
    return not binary_cache.path_for(device, render(template, **params), opts).exists()


def _cl_kernel(device, template, kernel_name, arg_dtypes, params) -> cl.Kernel:
    raw = cl_private.raw_program(get_program(device, template, **params))
    try:
        kern = cl.Kernel(raw, kernel_name)
    except cl.Error:
        names = raw.get_info(cl.program_info.KERNEL_NAMES)
        if not names:  # a build that "succeeded" with no kernels at all: a compiler fault, as a crash
            raise compiler_crashed(device, f"{template} {params}", build_verdicts.variant(template, params),
                                   f"the build succeeded but the program holds no kernels (wanted {kernel_name!r})")
        raise KernelBuildError(f"{template} has no kernel named {kernel_name!r} (it has: {names})") from None
    if arg_dtypes is not None:
        kern.set_scalar_arg_dtypes(arg_dtypes)
    return kern


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

"""Builds in a child process, so that no compiler crash can take the user's process down (issue 11).

An OpenCL compiler that aborts (PoCL 3.0's LLVM 14 on a CPU it does not know: "LLVM ERROR: Cannot
select ...") kills whatever process called it, and an abort cannot be caught. So the first time a
template family variant is built for a (device, driver) on a machine (build_verdicts.py), the compiler
runs in a child (build_child.py) first, and only then in this process:
  - the build: the child builds the program. Drivers that generate code at build time (NVIDIA, Intel,
    Mesa) hand back the binary, which this process loads (the child's build *is* the build). PoCL only
    parses and links at build time and would have to compile every kernel a second time to make a
    binary (measured: 3.5 s for the CPU GEMM against 1.3 s for its build), so there the child's build
    fills PoCL's cache and this process's own build of the same source is a cache hit (25-50 ms).
  - the first launch, on drivers that generate code only then (PoCL compiles a work-group function
    specialised to the launch's local size, and that is where LLVM aborted): the child runs the kernel
    once with the same sizes and scalars on zero-filled buffers of the same byte sizes, so its indices
    stay where the parent's do; the compiled function lands in PoCL's cache and this process's launch
    finds it there.
If the child dies, this process raises CompilerCrashed naming the device, the variant and the
compiler's last words; programs.py records the verdict, so the device's profile takes its fallback
parameters (profiles.py) here and in every later run. Verdicts are kept, so only the first run on a
machine (or after a driver update) pays for the child.

Up to `jobs()` children per process (CLNET_BUILD_JOBS, default: the CPU count, at most 4), each
started on first need and kept for later builds (a start-up, about 0.3 s, is paid once per child):
builds asked for from several threads at once (deferred.py's first builds) run side by side, one
request per child at a time. CLNET_BUILD_WORKER=0 never uses it, =1 always (even
for vetted variants), default: for variants without a verdict, on every implementation but Oclgrind
(a simulator: nothing to protect, and a second process would share its log).
"""
from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pyopencl as cl

from ..errors import KernelBuildError
from .binary_cache import identity

CHILD = Path(__file__).with_name("build_child.py")


class CompilerCrashed(KernelBuildError):
    """The OpenCL compiler died while building a kernel (in the build child, so this process lives on)."""


class BuildRefused(KernelBuildError):
    """The compiler reported an error for the source (an ordinary build error, seen in the child)."""

    def __init__(self, log: str):
        super().__init__(log)
        self.log = log


def policy(device) -> str:
    """"auto" (variants without a verdict build in the child), "always" or "never"."""
    flag = os.environ.get("CLNET_BUILD_WORKER", "").strip().lower()
    if flag in ("0", "no", "off", "false"):
        return "never"
    if flag in ("1", "yes", "on", "true", "always"):
        return "always"
    return "never" if device.implementation == "oclgrind" else "auto"


class _Child:
    """One running build child, its pipes, and where its stderr goes."""

    def __init__(self):
        self.stderr = tempfile.TemporaryFile()
        env = dict(os.environ)
        self.proc = subprocess.Popen([sys.executable, str(CHILD)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, env=env, close_fds=True)

    def ask(self, device, source: str, options: str, variant: str, want_binary: bool, launch):
        data = source.encode("utf-8")
        header = dict(device=identity(device), options=options, variant=variant, source_bytes=len(data),
                      want_binary=want_binary, launch=launch)
        try:
            self.proc.stdin.write(json.dumps(header).encode() + b"\n" + data)
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
            answer = json.loads(line) if line else None
            payload = self.proc.stdout.read(answer["binary_bytes"]) if answer and answer.get("ok") else b""
        except (OSError, ValueError):
            answer, payload = None, b""
        if answer is None or (answer.get("ok") and len(payload) != answer["binary_bytes"]):
            return None, self.last_words()
        return answer, payload

    def last_words(self) -> str:
        """The child's exit status and the end of what it wrote to stderr (LLVM prints its error there)."""
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.stderr.seek(0)
        lines = [ln for ln in self.stderr.read().decode("utf-8", "replace").splitlines() if ln.strip()]
        status = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        tail = "\n".join(lines[-8:])
        return status + (f"; it said:\n{tail}" if tail else "")

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.stderr.close()


_IDLE: list = []              # children waiting for a request
_BUSY: list = []              # children answering one
_STARTED: list = []           # whether a child was ever started (the exit handler is registered once)
_CHILD_LOCK = threading.Condition()  # guards both lists; a request waits on it for a free child


# Implementations whose compiler generates machine code at the first launch rather than at build time.
COMPILES_AT_LAUNCH = ("pocl",)


def jobs() -> int:
    """How many build children may run at once: CLNET_BUILD_JOBS, else the CPU count (at most 4)."""
    flag = os.environ.get("CLNET_BUILD_JOBS", "").strip()
    if flag.isdigit() and int(flag) > 0:
        return int(flag)
    return max(1, min(os.cpu_count() or 1, 4))


def wants_binary(device) -> bool:
    """Whether the child should hand back the binary (cheap where code is generated at build time)."""
    return device.implementation not in COMPILES_AT_LAUNCH


def started() -> bool:
    """Whether this process has started build children (they are then at hand for any build)."""
    return bool(_STARTED)


def _take_child() -> "_Child":
    with _CHILD_LOCK:
        while not _IDLE and len(_BUSY) >= jobs():
            _CHILD_LOCK.wait()
        if not _STARTED:
            atexit.register(stop)  # at exit, the children are told to finish (their input closes) and waited for
            _STARTED.append(True)
        if _IDLE:
            child = _IDLE.pop()
            _BUSY.append(child)
            return child
        _BUSY.append(None)  # the place is taken while the new child starts, outside the lock
    return _start_in_place()


def _start_in_place() -> "_Child":
    """Start a child in the place (a None in _BUSY) the caller took; the place is freed if it cannot start."""
    try:
        child = _Child()
    except BaseException:
        with _CHILD_LOCK:
            _BUSY.remove(None)
            _CHILD_LOCK.notify()
        raise
    with _CHILD_LOCK:
        _BUSY[_BUSY.index(None)] = child
    return child


def _give_back(child: "_Child", alive: bool) -> None:
    with _CHILD_LOCK:
        _BUSY.remove(child)
        if alive:
            _IDLE.append(child)
        _CHILD_LOCK.notify()


# A first build in a new child costs ~0.8 s more than later ones (Python, pyopencl, the driver's compiler
# loaded); the other children are started, and made to build and run this, when the first one is.
_WARM_UP = "__kernel void clnet_warm_up(__global float *x) { x[get_global_id(0)] += 1.0f; }\n"


def _warm_up(device, options: str) -> None:
    with _CHILD_LOCK:
        if len(_IDLE) + len(_BUSY) >= jobs():
            return
        _BUSY.append(None)
    try:
        child = _start_in_place()
    except BaseException:  # a child that cannot even start: the requests will say why
        return
    launch = dict(kernel="clnet_warm_up", local=None, offset=None, args=[["buffer", 256]], **{"global": [64]})
    try:
        answer, _ = child.ask(device, _WARM_UP, options, "warm-up", False, launch)
    except BaseException:  # noqa: BLE001  (a child that fails its warm-up is dropped; the requests start anew)
        answer = None
    _give_back(child, answer is not None)


_PRESTARTED: list = []


def prestart(device, options: str, leave: int = 0) -> None:
    """Start build children in the background, each warmed up, all but `leave` of jobs() (once per
    process): when the first request comes (leaving one place for it), or earlier when programs.py sees
    that builds without stored binaries have begun (so that the children are ready for the later ones)."""
    with _CHILD_LOCK:
        if _PRESTARTED:
            return
        _PRESTARTED.append(True)
    for _ in range(jobs() - leave):
        threading.Thread(target=_warm_up, args=(device, options), name="clnet-build-warm-up", daemon=True).start()


def build_in_child(device, source: str, options: str, variant: str, launch=None) -> tuple:
    """(binary or b"", kernel names) from a child, which builds `source` and, given `launch` (see
    build_child.py), runs one kernel once. BuildRefused on a compiler error; CompilerCrashed when the
    child died (its exit status and last words are the message; a new child serves later requests)."""
    prestart(device, options, leave=1)
    child = _take_child()
    answer, payload = None, b""
    try:
        answer, payload = child.ask(device, source, options, variant, launch is None and wants_binary(device),
                                    launch)
    finally:
        _give_back(child, answer is not None)
    if answer is None:
        for stream in (child.proc.stdin, child.proc.stdout, child.stderr):
            try:
                stream.close()
            except OSError:  # the pipe to a dead child
                pass
        raise CompilerCrashed(payload)  # payload holds the child's last words here
    if not answer["ok"]:
        raise BuildRefused(answer["log"])
    return payload, answer["kernels"]


def describe_launch(kernel_name: str, global_size, local_size, args, arg_dtypes, offset=None) -> dict:
    """The `launch` request that repeats a launch in the child: buffers by byte size, scalars by value."""
    spec = []
    for i, arg in enumerate(args):
        if arg is None:
            spec.append(["null"])
        elif isinstance(arg, cl.LocalMemory):
            spec.append(["local", int(arg.size)])
        elif isinstance(arg, cl.MemoryObjectHolder):
            spec.append(["buffer", int(arg.size)])
        else:
            dtype = arg_dtypes[i] if arg_dtypes is not None and arg_dtypes[i] is not None else np.asarray(arg).dtype
            value = np.dtype(dtype).type(arg)
            spec.append(["scalar", np.dtype(dtype).str, value.item()])
    return dict(kernel=kernel_name, **{"global": [int(g) for g in global_size]},
                local=[int(n) for n in local_size] if local_size is not None else None,
                offset=[int(o) for o in offset] if offset is not None else None, args=spec)


def stop() -> None:
    """Stop the idle children (each also stops by itself when this process exits and its stdin closes)."""
    with _CHILD_LOCK:
        children = list(_IDLE)
        _IDLE.clear()
    for child in children:
        child.close()

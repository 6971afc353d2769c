"""clnet's cache of device binaries, cache_dir()/binaries: one raw file per built program.

A file is MAGIC + sha256(binary) + binary, named by a hash of platform, device, driver version, pyopencl
version, build options and source; a truncated or foreign file never reaches the driver (Mesa's rusticl
aborts the whole process on a malformed binary). pyopencl's own binary cache is not used because it
stores pickles.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pyopencl as cl

from . import cl_private
from .cache_files import cache_dir, write_atomically

MAGIC = b"clnet-binary-1\n"


def policy(device) -> str:
    """How builds for `device` use the binary cache: "off", "now" (a program built from source is
    stored at once) or "later" (stored after this process exits by a detached process; see
    binary_writer.py). CLNET_BINARY_CACHE=0/1/later overrides.

    Measured with benchmarks/build_cache.py (10 elementwise kernels, build + first launch in a fresh
    process, empty caches for 'cold'; 2-core Xeon shared with other jobs, 2026-11-26), seconds:
                                       cold      warm
        PoCL 3.1, its cache only       2.0-2.6   0.29-0.52
        PoCL + clnet binary cache      3.0-3.2   0.04-0.05
        clnet binary cache, PoCL's off 2.7-3.8   0.47-1.05
        rusticl, Mesa's cache only     0.21      0.07;  with the binary cache: 0.23 / 0.04
        Oclgrind                       0.06-0.11 either way (it interprets LLVM IR)
    PoCL's cache re-runs its front end on every build (25-50 ms a kernel); loading a binary skips
    that and PoCL's cache then supplies the machine code, so warm starts (every test run and script
    after the first) are 6-10x faster. But PoCL makes a binary by compiling a generic work-group
    function for every kernel of the program, about as costly as the build: the MLP's first training
    step went 9.0 -> 15.7-18.3 s cold when binaries were stored at build time (benchmarks/bench_startup.py).
    So on PoCL the binaries are written later, off the critical path ("later"); on Mesa it is cheap
    ("now"). Not on NVIDIA (its ComputeCache keys on the source already; unmeasured here, and pyopencl
    skips its own cache there for that reason) nor Oclgrind (nothing to gain; source builds keep its
    reports pointing at source lines).
    """
    flag = os.environ.get("CLNET_BINARY_CACHE", "").strip().lower()
    if flag in ("0", "1", "later"):
        return {"0": "off", "1": "now"}.get(flag, flag)
    if device.implementation in ("nvidia", "oclgrind"):
        return "off"
    return "later" if device.implementation == "pocl" else "now"


def identity(device) -> list:
    """What names a device and its driver in the cache (and in the writer's manifests)."""
    return [device.platform_name, device.platform_version, device.name, device.driver_version]


def path_for(device, source: str, opts: list) -> Path:
    ident = "\0".join(identity(device) + [cl.VERSION_TEXT, " ".join(opts), source])
    return cache_dir() / "binaries" / f"{hashlib.sha256(ident.encode()).hexdigest()}.bin"


def load(device, path: Path, opts: list):
    """The built raw program from a cached binary, or None (a missing, damaged or rejected file is a miss)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    head, digest, binary = data[:len(MAGIC)], data[len(MAGIC):len(MAGIC) + 32], data[len(MAGIC) + 32:]
    if head != MAGIC or not binary or hashlib.sha256(binary).digest() != digest:
        path.unlink(missing_ok=True)
        return None
    raw = load_bytes(device, binary, opts)
    if raw is None:
        path.unlink(missing_ok=True)
    return raw


def load_bytes(device, binary: bytes, opts: list):
    """The built raw program from a device binary in memory, or None if the driver rejects it."""
    try:
        raw = cl_private.program_from_binary(device.context, device.cl_device, binary)
        cl_private.build_program(raw, " ".join(opts), [device.cl_device])
        return raw
    except cl.Error:
        return None


def binary_of(raw) -> bytes:
    """The device binary of a built raw program (empty if the driver gives none)."""
    return bytes(raw.get_info(cl.program_info.BINARIES)[0])


def store_bytes(binary: bytes, path: Path) -> None:
    """Write a device binary atomically (concurrent processes may race on the same key)."""
    if not binary:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, MAGIC + hashlib.sha256(binary).digest() + binary)
    except OSError:
        pass  # a cache that cannot be written only costs the next process a rebuild


def store(raw, path: Path) -> None:
    """Store a built raw program's binary (see store_bytes)."""
    try:
        binary = binary_of(raw)
    except cl.Error:
        return
    store_bytes(binary, path)

"""Render kernels/*.cl.mako, build them for a device, and keep the result.

Rendering uses mako with strict_undefined, so a template that names a missing parameter fails at
render time with the parameter's name. Built programs are memoized per (device, template, params)
in memory; across processes a binary cache in cache_dir()/binaries (CLNET_CACHE_DIR) is stacked on
the driver's own cache where that was measured to help (see `_binary_policy`). On PoCL the binaries of
programs built from source are written after the process ends, by a detached low-priority process
(`_spawn_writer`), because asking PoCL for a binary costs about as much as the build itself.
"""
from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from functools import lru_cache
import importlib.util
from pathlib import Path

import numpy as np
import pyopencl as cl
from mako.lookup import TemplateLookup

from ..errors import KernelBuildError

_CTYPES = {
    np.dtype(np.float32): "float", np.dtype(np.float64): "double", np.dtype(np.float16): "half",
    np.dtype(np.int32): "int", np.dtype(np.int64): "long", np.dtype(np.bool_): "uchar",
    np.dtype(np.uint8): "uchar", np.dtype(np.int8): "char", np.dtype(np.uint32): "uint",
    np.dtype(np.int16): "short", np.dtype(np.uint64): "ulong",
}


def ctype(dtype) -> str:
    """The OpenCL C type that stores `dtype` (bool is stored as uchar)."""
    return _CTYPES[np.dtype(dtype)]


def kernel_dir() -> Path:
    """Where the templates are: clnet/kernels/ in an installed wheel, the checkout's top-level kernels/
    (editable install or a plain checkout), else wherever the import system locates clnet.kernels."""
    package = Path(__file__).resolve().parents[1]
    candidates = [package / "kernels", package.parent / "kernels"]
    spec = importlib.util.find_spec("clnet.kernels")
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) for p in spec.submodule_search_locations]
    for path in candidates:
        if (path / "elementwise.cl.mako").exists():
            return path
    raise FileNotFoundError("clnet's kernel templates are missing; looked in "
                            + ", ".join(str(p) for p in candidates) + " (reinstall clnet)")


@lru_cache(maxsize=1)
def _lookup() -> TemplateLookup:
    """Templates compiled by mako once per machine: the compiled modules are kept under
    cache_dir()/mako/<hash of every template's text> (a key by content, since mako itself only compares
    modification times, which pip installs and other checkouts do not keep in order). That saves a fresh
    process about 0.1 s of CPU (0.14 -> 0.03 s for six templates on our Xeon) before its first step."""
    directory = kernel_dir()
    modules = _writable(cache_dir() / "mako" / _templates_hash(directory))
    if modules:
        _drop_unsealed(modules)
    return TemplateLookup(directories=[str(directory)], strict_undefined=True,
                          module_directory=str(modules) if modules else None, module_writer=_write_sealed)


# mako executes a compiled module as Python: each one ends in a line with the SHA-256 of the lines above,
# and a module whose seal is missing or wrong (truncated, scribbled, foreign) is deleted before mako
# looks, so it is recompiled from the template instead of rendering garbled C or raising.
def write_atomically(path, data: bytes) -> None:
    """Write `data` under a temporary name beside `path`, then rename it over `path`: readers and
    concurrent writers (tests run several processes) see the old file or the whole new one, never a
    partial one. The temporary file is removed if the write fails."""
    tmp = f"{os.fspath(path)}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


_SEAL = b"# clnet-sha256: "


def _write_sealed(source: bytes, path: str) -> None:
    """mako's module_writer: the module plus its seal, written under a temporary name and renamed."""
    body = source if source.endswith(b"\n") else source + b"\n"
    write_atomically(path, body + _SEAL + hashlib.sha256(body).hexdigest().encode() + b"\n")


def _drop_unsealed(folder: Path) -> None:
    for path in folder.glob("*.py"):
        try:
            body, mark, seal = path.read_bytes().rpartition(_SEAL)
            if mark and seal.strip() == hashlib.sha256(body).hexdigest().encode():
                continue
            path.unlink()
        except OSError:
            pass


def _templates_hash(directory: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(directory.glob("*.mako")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _writable(path: Path):
    """`path`, created if needed, or None where it cannot be written (read-only home, sandbox)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        return path if os.access(path, os.W_OK) else None
    except OSError:
        return None


def cache_dir() -> Path:
    """CLNET_CACHE_DIR, else ~/.cache/clnet (XDG_CACHE_HOME honoured)."""
    env = os.environ.get("CLNET_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "clnet"


def clear_cache() -> Path:
    """Delete clnet's built binaries (cache_dir()/binaries) and compiled templates (cache_dir()/mako), and
    forget this process's built programs.

    Drivers keep their own caches (see `driver_caches()`); those are theirs to manage."""
    path = cache_dir() / "binaries"
    shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(cache_dir() / "mako", ignore_errors=True)  # mako recreates what it needs
    _PROGRAMS.clear()
    _KERNELS.clear()
    return path


def driver_caches() -> dict:
    """Where the OpenCL implementations on this machine keep their own build caches."""
    home = Path(os.path.expanduser("~"))
    xdg = Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache")
    return {
        "pocl": Path(os.environ.get("POCL_CACHE_DIR") or xdg / "pocl" / "kcache"),
        "mesa": Path(os.environ.get("MESA_SHADER_CACHE_DIR") or xdg / "mesa_shader_cache"),
        "nvidia": Path(os.environ.get("CUDA_CACHE_PATH") or home / ".nv" / "ComputeCache"),
    }


def _pragmas(source: str) -> str:
    head = []
    if re.search(r"\bdouble\d*\b", source):
        head.append("#pragma OPENCL EXTENSION cl_khr_fp64 : enable")
    if re.search(r"\bhalf\d*\b", source):
        head.append("#pragma OPENCL EXTENSION cl_khr_fp16 : enable")
    return "\n".join(head) + ("\n" if head else "")


def render(template: str, **params) -> str:
    """Render one template with the given parameters into OpenCL C source."""
    lookup = _lookup()
    try:
        source = lookup.get_template(template).render(**params)
    except Exception:
        if lookup.module_directory is None:
            raise
        # A damaged compiled module in the cache (truncated, scribbled: mako executes it as Python) must
        # not break clnet: drop it and compile from the template; a genuine template error raises again.
        _discard_compiled(lookup, template)
        source = lookup.get_template(template).render(**params)
    return _pragmas(source) + source


def _discard_compiled(lookup: TemplateLookup, template: str) -> None:
    """Forget `template`'s compiled module, in this process and on disk, so the next use recompiles it."""
    lookup._collection.pop(template, None)
    lookup._collection.pop("/" + template.lstrip("/"), None)
    try:
        (Path(lookup.module_directory) / (template.lstrip("/") + ".py")).unlink(missing_ok=True)
    except OSError:
        pass


def _binary_policy(device) -> str:
    """How builds for `device` use clnet's binary cache: "off", "now" (a program built from source is
    stored at once) or "later" (stored after this process exits by a detached process; see
    `_spawn_writer`). CLNET_BINARY_CACHE=0/1/later overrides.

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
    reports pointing at source lines). pyopencl's own binary cache is not used because it stores
    pickles; clnet's is a raw binary file named by a hash of platform, device, driver version,
    pyopencl version, options and source.
    """
    flag = os.environ.get("CLNET_BINARY_CACHE", "").strip().lower()
    if flag in ("0", "1", "later"):
        return {"0": "off", "1": "now"}.get(flag, flag)
    if device.implementation in ("nvidia", "oclgrind"):
        return "off"
    return "later" if device.implementation == "pocl" else "now"


# Where compilers put the line of an error: clang, NVIDIA, AMD, Intel, Oclgrind write
# "FILE:LINE:COL: error: MESSAGE"; PoCL writes "error: FILE:LINE:COL: MESSAGE".
_LOG_ERRORS = (
    re.compile(r"(?:^|:)(\d+):(?:\d+:)?\s*(?:fatal )?error:\s*(.*)"),
    re.compile(r"^\s*(?:fatal )?error:\s*[^\s:]*:(\d+):(?:\d+:)?\s*(.*)"),
)


def _error_excerpt(source: str, log: str, context: int = 2) -> str:
    """The rendered source around every line the compiler's log calls an error, marked with '>>'."""
    lines = source.splitlines()
    shown, seen = [], set()
    for entry in log.splitlines():
        for pattern in _LOG_ERRORS:
            m = pattern.search(entry)
            if m:
                break
        else:
            continue
        lineno, message = int(m.group(1)), m.group(2).strip()
        if not 1 <= lineno <= len(lines) or (lineno, message) in seen:
            continue
        seen.add((lineno, message))
        lo, hi = max(1, lineno - context), min(len(lines), lineno + context)
        block = [f"{'>>' if i == lineno else '  '} {i:4d} | {lines[i - 1]}" for i in range(lo, hi + 1)]
        shown.append(f"line {lineno}: {message}\n" + "\n".join(block))
    return "\n\n".join(shown)


_PROGRAMS: dict = {}
_KERNELS: dict = {}


def _freeze(params: dict) -> tuple:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in params.items()))


def _binary_path(device, source: str, opts: list) -> Path:
    ident = "\0".join([device.platform_name, device.platform_version, device.name, device.driver_version,
                       cl.VERSION_TEXT, " ".join(opts), source])
    return cache_dir() / "binaries" / f"{hashlib.sha256(ident.encode()).hexdigest()}.bin"


# A cached file is MAGIC + sha256(binary) + binary: a truncated or foreign file never reaches the
# driver (Mesa's rusticl aborts the whole process on a malformed binary).
_MAGIC = b"clnet-binary-1\n"


def _load_binary(device, path: Path, opts: list):
    """The raw program from a cached binary, or None (a missing, damaged or rejected file is a miss)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    head, digest, binary = data[:len(_MAGIC)], data[len(_MAGIC):len(_MAGIC) + 32], data[len(_MAGIC) + 32:]
    if head != _MAGIC or not binary or hashlib.sha256(binary).digest() != digest:
        path.unlink(missing_ok=True)
        return None
    try:
        raw = cl._cl._Program(device.context, [device.cl_device], [binary])
        raw.build(" ".join(opts).encode(), [device.cl_device])
        return raw
    except cl.Error:
        path.unlink(missing_ok=True)
        return None


def _store_binary(raw, path: Path) -> None:
    """Write the device binary atomically (concurrent processes may race on the same key)."""
    try:
        binary = bytes(raw.get_info(cl.program_info.BINARIES)[0])
        if not binary:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, _MAGIC + hashlib.sha256(binary).digest() + binary)
    except (OSError, cl.Error):
        pass  # a cache that cannot be written only costs the next process a rebuild


# --- binaries written later (PoCL) ------------------------------------------------------------------
# Programs built from source whose binary is still missing: (device identity, source, options, path).
# At exit they go into a manifest, cache_dir()/binaries/pending/*.json, and a detached process at low
# priority (`python -m clnet.backend.programs MANIFEST...`) rebuilds each from source (PoCL's own cache
# is warm by then, so only the binary's generic work-group functions are compiled), stores it the usual
# way (temporary name, checksum, atomic rename: concurrent writers and readers never see a partial
# file) and deletes the manifest. Writers take turns through a lock file; a binary already present is
# skipped. A process killed before its exit handlers run simply leaves the binaries to a later run.
_PENDING: list = []
_PENDING_DIR = "pending"


def _identity(device) -> list:
    return [device.platform_name, device.platform_version, device.name, device.driver_version]


def _defer_binary(device, source: str, opts: list, path: Path) -> None:
    if not _PENDING:
        atexit.register(_spawn_writer)
    _PENDING.append((_identity(device), source, " ".join(opts), str(path)))


def pending_binaries(cache: Path | None = None) -> list:
    """Manifests of binaries still to be written under `cache` (default cache_dir()): empty once the
    background writers are done (benchmarks wait for that before timing a warm start)."""
    return sorted(((cache or cache_dir()) / "binaries" / _PENDING_DIR).glob("*.json"))


def _write_manifests() -> list:
    """This process's pending binaries as manifest files (one per cache folder); the list is emptied."""
    groups: dict = {}
    for ident, source, opts, path in _PENDING:
        groups.setdefault(Path(path).parent, []).append(dict(device=ident, source=source, opts=opts, path=path))
    _PENDING.clear()
    written = []
    for folder, entries in groups.items():
        try:
            pending = folder / _PENDING_DIR
            pending.mkdir(parents=True, exist_ok=True)
            final = pending / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
            write_atomically(final, json.dumps(entries).encode())
            written.append(str(final))
        except OSError:
            pass  # an unwritable cache only costs the next process a rebuild
    return written


def _spawn_writer() -> None:
    """atexit: hand this process's pending binaries to a detached writer process."""
    manifests = _write_manifests()
    if not manifests:
        return
    root = str(Path(__file__).resolve().parents[2])  # the folder that holds this clnet package
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    try:
        subprocess.Popen([sys.executable, "-W", "ignore", "-m", "clnet.backend.programs", *manifests], env=env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True, close_fds=True)
    except OSError:
        for m in manifests:
            Path(m).unlink(missing_ok=True)


def _find_cl_device(ident: list):
    for plat in cl.get_platforms():
        if [plat.name.strip(), plat.version.strip()] != ident[:2]:
            continue
        try:
            devs = plat.get_devices()
        except cl.Error:
            continue
        for dev in devs:
            if [dev.name.strip(), dev.driver_version.strip()] == ident[2:]:
                return dev
    return None


def write_pending(manifests) -> int:
    """Build and store the binaries the manifests list (the writer's work; tests call it directly).
    Returns how many binaries were written; each manifest is deleted once handled. Other manifests in the
    same folders are handled too: those of writers that died are adopted (safe, since a manifest is only
    read under the lock and deleted before the lock is released)."""
    queue = [Path(m) for m in manifests]
    queue += [p for folder in {m.parent for m in queue} for p in sorted(folder.glob("*.json")) if p not in queue]
    written = 0
    contexts: dict = {}
    for manifest in queue:
        lock = _writer_lock(manifest.parent / ".lock")
        try:
            try:
                entries = json.loads(manifest.read_text())
            except (OSError, ValueError):
                entries = []
            for e in entries if isinstance(entries, list) else []:
                try:
                    written += _write_one(e, contexts)
                except (KeyError, TypeError, ValueError, cl.Error):
                    continue  # a malformed entry or a device that went away: a later process rebuilds
        finally:
            manifest.unlink(missing_ok=True)
            if lock is not None:
                lock.close()
    return written


def _write_one(entry: dict, contexts: dict) -> bool:
    path = Path(entry["path"])
    if path.exists():
        return False  # another writer (or a later process) stored it already
    key = tuple(entry["device"])
    if key not in contexts:
        dev = _find_cl_device(entry["device"])
        contexts[key] = (dev, cl.Context([dev]) if dev is not None else None)
    dev, ctx = contexts[key]
    if dev is None:
        return False
    raw = cl._cl._Program(ctx, entry["source"])
    raw.build(entry["opts"].encode(), [dev])
    _store_binary(raw, path)
    return path.exists()


def _writer_lock(path: Path):
    """An exclusive lock held until the returned file is closed (None where locks are unavailable)."""
    try:
        import fcntl
        f = open(path, "a")
        fcntl.flock(f, fcntl.LOCK_EX)
        return f
    except (ImportError, OSError):
        return None


def build(device, source: str, name: str = "<source>", options: tuple = ()) -> cl.Program:
    """Build `source` for `device`; a compiler error becomes a KernelBuildError showing the source.

    Programs are built through pyopencl's raw `_Program`: its `Program.build` would consult its own
    (pickling) cache and probe NVIDIA-only device queries, which Oclgrind's API checker reports.
    """
    opts = [str(o) for o in list(options) + list(device.profile.build_options)]
    policy = _binary_policy(device)
    cached = policy != "off"
    raw = None
    if cached:
        path = _binary_path(device, source, opts)
        raw = _load_binary(device, path, opts)
    if raw is None:
        try:
            raw = cl._cl._Program(device.context, source)
            raw.build(" ".join(opts).encode(), [device.cl_device])
        except cl.RuntimeError as err:
            log = str(err)  # pyopencl puts the compiler's build log in the message
            excerpt = _error_excerpt(source, log)
            raise KernelBuildError(
                f"OpenCL build of {name} failed on {device.name} [{device.platform_name}]:\n"
                f"{excerpt or log}\n--- build log ---\n{log.strip()}") from None
        if policy == "now":
            _store_binary(raw, path)
        elif policy == "later":
            _defer_binary(device, source, opts, path)
    return cl.Program(raw)


def get_program(device, template: str, **params) -> cl.Program:
    """The built program for (device, template, params); rendered and built once per process."""
    key = (id(device), template, _freeze(params))
    prg = _PROGRAMS.get(key)
    if prg is None:
        source = render(template, **params)
        prg = build(device, source, name=f"{template} {params}")
        _PROGRAMS[key] = prg
    return prg


def get_kernel(device, template: str, kernel_name: str, arg_dtypes=None, **params) -> cl.Kernel:
    """One cl.Kernel object per (device, template, params, name); looked up in a dict after the first call.

    `arg_dtypes` (None for buffers, a numpy dtype for each scalar) is set once on the new kernel so
    later calls pass plain Python numbers without per-call conversion.
    """
    key = (id(device), template, kernel_name, _freeze(params))
    kern = _KERNELS.get(key)
    if kern is None:
        raw = get_program(device, template, **params)._get_prg()  # the raw program: see build()
        try:
            kern = cl.Kernel(raw, kernel_name)
        except cl.Error:
            names = raw.get_info(cl.program_info.KERNEL_NAMES)
            raise KernelBuildError(f"{template} has no kernel named {kernel_name!r} (it has: {names})") from None
        if arg_dtypes is not None:
            kern.set_scalar_arg_dtypes(arg_dtypes)
        _KERNELS[key] = kern
    return kern


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def built_count() -> int:
    """How many programs this process has built (tests use it to prove the cache hits)."""
    return len(_PROGRAMS)


if __name__ == "__main__":  # the detached writer started by _spawn_writer
    try:
        os.nice(19)  # the lowest priority: it only saves later processes time
    except (AttributeError, OSError):
        pass
    write_pending(sys.argv[1:])

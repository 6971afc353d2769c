"""Binaries written after the process ends (binary_cache.policy "later", i.e. PoCL).

Asking PoCL for a binary costs about as much as the build itself, so programs built from source are
remembered here: (device identity, source, options, path). At exit they go into a manifest,
cache_dir()/binaries/pending/*.json, and a detached process at low priority
(`python -m clnet.backend.binary_writer MANIFEST...`) rebuilds each from source (PoCL's own cache is warm
by then, so only the binary's generic work-group functions are compiled), stores it the usual way
(temporary name, checksum, atomic rename: concurrent writers and readers never see a partial file) and
deletes the manifest. Writers take turns through a lock file; a binary already present is skipped. A
process killed before its exit handlers run simply leaves the binaries to a later run.
"""
from __future__ import annotations

import atexit
import json
import os
import sys
import threading
import uuid
from pathlib import Path

import pyopencl as cl

try:
    import fcntl
except ImportError:  # Windows: writers then do not take turns; each write is still atomic
    fcntl = None

from . import binary_cache, cl_private
from .cache_files import cache_dir, write_atomically

PENDING_DIR = "pending"
_PENDING: list = []
_PENDING_LOCK = threading.Lock()  # defer() may run in several threads; the exit handler is registered once


def defer(device, source: str, opts: list, path: Path) -> None:
    """Remember a program built from source whose binary the writer is to store after this process."""
    with _PENDING_LOCK:
        if not _PENDING:
            atexit.register(_spawn_writer)
        _PENDING.append((binary_cache.identity(device), source, " ".join(opts), str(path)))


def pending_count() -> int:
    return len(_PENDING)


def pending_binaries(cache: Path | None = None) -> list:
    """Manifests of binaries still to be written under `cache` (default cache_dir()): empty once the
    background writers are done (benchmarks wait for that before timing a warm start)."""
    return sorted(((cache or cache_dir()) / "binaries" / PENDING_DIR).glob("*.json"))


def write_manifests() -> list:
    """This process's pending binaries as manifest files (one per cache folder); the list is emptied."""
    with _PENDING_LOCK:
        pending = list(_PENDING)
        _PENDING.clear()
    groups: dict = {}
    for ident, source, opts, path in pending:
        groups.setdefault(Path(path).parent, []).append(dict(device=ident, source=source, opts=opts, path=path))
    written = []
    for folder, entries in groups.items():
        try:
            folder_pending = folder / PENDING_DIR
            folder_pending.mkdir(parents=True, exist_ok=True)
            final = folder_pending / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
            write_atomically(final, json.dumps(entries).encode())
            written.append(str(final))
        except OSError:
            pass  # an unwritable cache only costs the next process a rebuild
    return written


def _spawn_writer() -> None:
    """atexit: hand this process's pending binaries to a detached writer process."""
    manifests = write_manifests()
    if not manifests:
        return
    root = str(Path(__file__).resolve().parents[2])  # the folder that holds this clnet package
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    devnull = os.open(os.devnull, os.O_RDWR)
    try:  # posix_spawn, not Popen: nothing is left to wait for it (a Popen would warn at exit that it runs on)
        os.posix_spawn(sys.executable, [sys.executable, "-W", "ignore", "-m", "clnet.backend.binary_writer", *manifests],
                       env, setsid=True, file_actions=[(os.POSIX_SPAWN_DUP2, devnull, fd) for fd in (0, 1, 2)])
    except (OSError, AttributeError, TypeError):  # no posix_spawn (Windows): the next run rebuilds instead
        for m in manifests:
            Path(m).unlink(missing_ok=True)
    finally:
        os.close(devnull)


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
    raw = cl_private.program_from_source(ctx, entry["source"])
    cl_private.build_program(raw, entry["opts"], [dev])
    binary_cache.store(raw, path)
    return path.exists()


def _writer_lock(path: Path):
    """An exclusive lock held until the returned file is closed (None where locks are unavailable)."""
    if fcntl is None:
        return None
    try:
        f = open(path, "a")
        fcntl.flock(f, fcntl.LOCK_EX)
        return f
    except OSError:
        return None


if __name__ == "__main__":  # the detached writer started by _spawn_writer
    try:
        os.nice(19)  # the lowest priority: it only saves later processes time
    except (AttributeError, OSError):
        pass
    write_pending(sys.argv[1:])

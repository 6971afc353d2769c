"""Where clnet keeps files between runs, and the one way it writes them.

cache_dir() holds the compiled templates (mako/), the device binaries (binaries/), the build verdicts
and the tuning file; all are written with `write_atomically`, so readers and concurrent writers (tests
run several processes) never see a partial file.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path


def cache_dir() -> Path:
    """CLNET_CACHE_DIR, else ~/.cache/clnet (XDG_CACHE_HOME honoured)."""
    env = os.environ.get("CLNET_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "clnet"


def write_atomically(path, data: bytes) -> None:
    """Write `data` under a temporary name beside `path`, then rename it over `path`: readers and
    concurrent writers see the old file or the whole new one, never a partial one. The temporary file
    is removed if the write fails. The temporary name carries the process and thread, so two threads
    writing the same file never share one."""
    tmp = f"{os.fspath(path)}.{os.getpid()}.{threading.get_ident()}.tmp"
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


def writable(path: Path):
    """`path`, created if needed, or None where it cannot be written (read-only home, sandbox)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        return path if os.access(path, os.W_OK) else None
    except OSError:
        return None


def driver_caches() -> dict:
    """Where the OpenCL implementations on this machine keep their own build caches."""
    home = Path(os.path.expanduser("~"))
    xdg = Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache")
    return {
        "pocl": Path(os.environ.get("POCL_CACHE_DIR") or xdg / "pocl" / "kcache"),
        "mesa": Path(os.environ.get("MESA_SHADER_CACHE_DIR") or xdg / "mesa_shader_cache"),
        "nvidia": Path(os.environ.get("CUDA_CACHE_PATH") or home / ".nv" / "ComputeCache"),
    }

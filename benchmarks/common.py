"""Shared pieces of the side-by-side benchmarks: machine header, alternating timer, table, peers' setup.

Every benchmark runs its contenders in one process, in alternation (one repetition of each in turn), so
all of them see the same load on our shared machine, and reports medians. numpy's figures are only
meaningful with OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset (a test environment may set them): run the
scripts as `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/...`.
"""
from __future__ import annotations

import datetime
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from clnet import bench  # noqa: E402
from clnet.bench import max_rel_err, median  # noqa: E402,F401  (re-exported for the scripts)

# set by some test environments; they slow numpy/OpenBLAS down, so numpy's figures need them unset
OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or "unknown CPU"


def header(title: str, device=None, torch=None) -> None:
    """Print what a figure needs to be read: date, machine, load, device, library versions."""
    import numpy as np
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"== {title}")
    print(f"date {datetime.datetime.now().isoformat(timespec='minutes')}; machine {cpu_model()}, "
          f"{os.cpu_count()} cores; load average {load:.1f}")
    if device is not None:
        print(f"clnet device {device.describe()} (driver {device.driver_version})")
    blas = {k: os.environ[k] for k in OPENBLAS_VARS if k in os.environ}
    line = f"python {platform.python_version()}, numpy {np.__version__}"
    if torch is not None:
        line += f", torch {torch.__version__} ({torch.get_num_threads()} threads)"
    print(line + (f"; WARNING numpy slowed by {blas}: unset them for numpy's figures" if blas else ""))


def open_device(spec=None):
    """The device named by --device, or clnet's default device."""
    import clnet
    return clnet.device(spec) if spec else clnet.default_device()


def alternate(contenders: dict, reps: int, warmup: int = 1, torch=None) -> dict:
    """{name: [seconds]} from `reps` rounds that call each contender once, in turn, after `warmup` rounds
    (clnet.bench.alternate, which `clnet bench` uses too).

    A name "torch1" runs with torch.set_num_threads(1) and "torch" with one thread per core: the switch
    happens before the clock starts, so both PyTorch configurations are timed as they run best
    (on a loaded machine PyTorch's multi-threaded runs can be many times slower than its single thread)."""
    if torch is None:
        return bench.alternate(contenders, reps, warmup)

    def before(name):
        if name.startswith("torch"):
            want = 1 if name == "torch1" else (os.cpu_count() or 1)
            if torch.get_num_threads() != want:
                torch.set_num_threads(want)
    times = bench.alternate(contenders, reps, warmup, before=before)
    torch.set_num_threads(os.cpu_count() or 1)
    return times


def repeated(fn, count: int, sync=None):
    """A contender that calls `fn` `count` times, then waits with `sync` (when given): one timed unit."""
    def run():
        for _ in range(count):
            fn()
        if sync is not None:
            sync()
    return run


def synced(fn, device):
    """A contender that calls `fn` once and waits for `device`; the result is dropped after the wait."""
    def run():
        out = fn()
        device.synchronize()
        del out
    return run


def with_torch1(fns: dict) -> dict:
    """Add a "torch1" contender (PyTorch on one thread) running the same callable as "torch"."""
    if "torch" in fns:
        fns = dict(fns, torch1=fns["torch"])
    return fns


def load_torch(enabled: bool = True):
    """torch with one thread per core, or None when absent or not wanted."""
    if not enabled:
        return None
    try:
        import torch
    except ImportError:
        print("(PyTorch not installed: its columns are skipped)")
        return None
    torch.set_num_threads(os.cpu_count() or 1)
    return torch


def restrict_icd(icd: str = "/etc/OpenCL/vendors/pocl.icd") -> str | None:
    """Make this process's OpenCL ICD loader see only `icd` (tinygrad takes the first platform).

    Must run before pyopencl or tinygrad first lists platforms; clnet then sees the same single
    platform, so both frameworks run on the same device. Returns the vendors directory, or None."""
    if os.environ.get("OCL_ICD_VENDORS"):
        return os.environ["OCL_ICD_VENDORS"]
    if not os.path.exists(icd):
        return None
    vendors = tempfile.mkdtemp(prefix="clnet-bench-icd-")
    shutil.copy(icd, vendors)
    os.environ["OCL_ICD_VENDORS"] = vendors
    return vendors


def load_tinygrad(enabled: bool = True):
    """(tinygrad module, None) on its OpenCL backend, or (None, reason) when it cannot run."""
    if not enabled:
        return None, "not requested"
    os.environ.setdefault("DEV", "CL")
    try:
        import tinygrad
        from tinygrad import Device
        Device[Device.DEFAULT]
        if Device.DEFAULT != "CL":
            return None, f"tinygrad picked device {Device.DEFAULT}, not CL"
        return tinygrad, None
    except Exception as err:  # ImportError, or its OpenCL runtime failing on this machine
        return None, f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"


def table(rows: list[dict], columns: list[str], fmt: dict | None = None) -> None:
    """Print rows (dicts) as a fixed-width table with the given column order."""
    fmt = fmt or {}
    cells = [[c for c in columns]]
    for r in rows:
        cells.append([(fmt.get(c, "{}").format(r[c]) if r.get(c) is not None else "-") for c in columns])
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for j, row in enumerate(cells):
        print("  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths))))
        if j == 0:
            print("  ".join("-" * w for w in widths))

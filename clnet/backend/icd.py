"""OpenCL implementations that pip installed into this Python environment, made visible to the ICD loader.

The ICD loader finds implementations through *.icd files in /etc/OpenCL/vendors (or the folder named by
OCL_ICD_VENDORS / OPENCL_VENDOR_PATH). A runtime installed by pip into a virtual environment is not
there: Intel's CPU runtime (`pip install clnet[intel]`: intel-opencl-rt) puts lib/libintelocl.so in
the environment, and its own etc/OpenCL/vendors/intel-cpu.icd holds a placeholder path from Intel's
build machine. So before the loader first lists platforms (devices.py calls `arrange()` right before
that, once per process), clnet writes a vendors folder that lists every ICD the loader would have read
plus one for each runtime found in the environment, and points OCL_ICD_VENDORS at it. Nothing is asked
of the user: no OCL_ICD_VENDORS, no LD_LIBRARY_PATH (libintelocl.so finds its libraries through its
RUNPATH, $ORIGIN). The change is to this process's environment, which child processes (the build child,
the binary writer) inherit.

CLNET_PIP_ICDS=0 turns it off. A user's OCL_ICD_VENDORS naming one ICD file (not a folder) is left
alone: they chose one implementation. Platforms listed before clnet's first discovery (a program that
called pyopencl itself first) stay as the loader listed them.
"""
from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

from .cache_files import cache_dir, writable, write_atomically

# (implementation word, library file in <environment>/lib, the name of the ICD file clnet writes)
PIP_RUNTIMES = (
    ("intel", "libintelocl.so", "clnet-pip-intel-cpu.icd"),
)
_DEFAULT_VENDORS = "/etc/OpenCL/vendors"
_ARRANGED: list = []  # the folder arranged in this process (once)


def environment_runtimes() -> list[tuple[str, Path]]:
    """(implementation, library path) of every OpenCL runtime installed in this Python environment."""
    found, seen = [], set()
    for prefix in dict.fromkeys([sys.prefix, sys.exec_prefix]):
        for word, library, _ in PIP_RUNTIMES:
            path = Path(prefix) / "lib" / library
            if path.is_file() and path.resolve() not in seen:
                seen.add(path.resolve())
                found.append((word, path))
    return found


def _system_vendors() -> Path | None:
    """The folder the loader reads (None when OCL_ICD_VENDORS names a single ICD file)."""
    chosen = os.environ.get("OCL_ICD_VENDORS") or os.environ.get("OPENCL_VENDOR_PATH") or _DEFAULT_VENDORS
    path = Path(chosen)
    if os.environ.get("OCL_ICD_VENDORS") and not path.is_dir():
        return None
    return path


def arrange() -> Path | None:
    """Make this environment's runtimes visible to the loader (see the module docstring). Returns the
    vendors folder now in OCL_ICD_VENDORS, or None where nothing was changed."""
    if _ARRANGED:
        return _ARRANGED[0]
    if os.environ.get("CLNET_PIP_ICDS", "1").strip().lower() in ("0", "no", "off", "false"):
        return None
    runtimes = environment_runtimes()
    vendors = _system_vendors()
    if not runtimes or vendors is None:
        return None
    entries = {}  # file name -> the line it holds
    for icd in sorted(vendors.glob("*.icd")) if vendors.is_dir() else []:
        try:
            entries[icd.name] = icd.read_text(errors="replace").strip()
        except OSError:
            continue
    listed = {os.path.realpath(line) for line in entries.values() if os.path.isabs(line)}
    added = False
    for (_, path), (_, _, icd_name) in zip(runtimes, PIP_RUNTIMES):
        if os.path.realpath(path) not in listed:
            entries[icd_name] = str(path)
            added = True
    if not added:
        return None
    folder = _write_folder(entries)
    if folder is None:
        return None
    os.environ["OCL_ICD_VENDORS"] = str(folder)
    _ARRANGED.append(folder)
    return folder


def _write_folder(entries: dict) -> Path | None:
    """A folder holding exactly `entries` as ICD files: under cache_dir()/icd, named by its contents, so
    every process of this environment shares one; a temporary folder where the cache cannot be written."""
    digest = hashlib.sha256("\n".join(f"{k}={v}" for k, v in sorted(entries.items())).encode()).hexdigest()[:16]
    root = writable(cache_dir() / "icd")
    folder = root / digest if root is not None else Path(tempfile.mkdtemp(prefix="clnet-icd-"))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, line in entries.items():
            target = folder / name
            if not target.exists() or target.read_text(errors="replace").strip() != line:
                write_atomically(target, (line + "\n").encode())
        return folder
    except OSError:
        return None

"""Render kernels/*.cl.mako, build them for a device, and keep the result.

Rendering uses mako with strict_undefined, so a template that names a missing parameter fails at
render time with the parameter's name. Built programs are memoized per (device, template, params)
in memory; across processes the driver's own cache is reused (PoCL, NVIDIA and Mesa all keep one),
and pyopencl's binary cache is stacked on top only where the driver has none (see `_use_pyopencl_cache`).
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
from functools import lru_cache
from importlib import resources
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
    """Where the templates are: inside the installed package, or the checkout's top-level kernels/."""
    try:
        path = Path(str(resources.files("clnet.kernels")))
        if (path / "elementwise.cl.mako").exists():
            return path
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parents[2] / "kernels"


@lru_cache(maxsize=1)
def _lookup() -> TemplateLookup:
    return TemplateLookup(directories=[str(kernel_dir())], strict_undefined=True)


def cache_dir() -> Path:
    """CLNET_CACHE_DIR, else ~/.cache/clnet (XDG_CACHE_HOME honoured)."""
    env = os.environ.get("CLNET_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "clnet"


def clear_cache() -> Path:
    """Delete clnet's on-disk caches (built binaries, tuning results stay unless removed by hand)."""
    path = cache_dir() / "binaries"
    shutil.rmtree(path, ignore_errors=True)
    _PROGRAMS.clear()
    _KERNELS.clear()
    return path


def _pragmas(source: str) -> str:
    head = []
    if re.search(r"\bdouble\d*\b", source):
        head.append("#pragma OPENCL EXTENSION cl_khr_fp64 : enable")
    if re.search(r"\bhalf\d*\b", source):
        head.append("#pragma OPENCL EXTENSION cl_khr_fp16 : enable")
    return "\n".join(head) + ("\n" if head else "")


def render(template: str, **params) -> str:
    """Render one template with the given parameters into OpenCL C source."""
    source = _lookup().get_template(template).render(**params)
    return _pragmas(source) + source


def _use_pyopencl_cache(device) -> bool:
    """Stack pyopencl's binary cache only where the driver keeps none of its own.

    PoCL (POCL_KERNEL_CACHE), NVIDIA (~/.nv/ComputeCache) and Mesa (disk shader cache) already cache
    builds; a second cache there only costs a binary round trip. Oclgrind simulates from source.
    """
    if os.environ.get("CLNET_PYOPENCL_CACHE") in ("0", "1"):
        return os.environ["CLNET_PYOPENCL_CACHE"] == "1"
    return device.implementation not in ("pocl", "nvidia", "rusticl", "clover", "oclgrind")


def _error_excerpt(source: str, log: str, context: int = 2) -> str:
    """The rendered source around every line the compiler's log calls an error."""
    lines = source.splitlines()
    shown = []
    for entry in log.splitlines():
        if "error" not in entry.lower():
            continue
        m = re.search(r":(\d+):(?:(\d+):)?\s*(?:fatal )?(?:error:)?\s*(.*)", entry)
        if not m or int(m.group(1)) > len(lines):
            continue
        lineno = int(m.group(1))
        lo, hi = max(1, lineno - context), min(len(lines), lineno + context)
        block = [f"{'>>' if i == lineno else '  '} {i:4d} | {lines[i - 1]}" for i in range(lo, hi + 1)]
        shown.append(f"line {lineno}: {m.group(3).strip()}\n" + "\n".join(block))
    return "\n\n".join(shown)


_PROGRAMS: dict = {}
_KERNELS: dict = {}


def _freeze(params: dict) -> tuple:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in params.items()))


def build(device, source: str, name: str = "<source>", options: tuple = ()) -> cl.Program:
    """Build `source` for `device`; a compiler error becomes a KernelBuildError showing the source."""
    opts = list(options) + list(device.profile.build_options)
    kwargs = {}
    if _use_pyopencl_cache(device):
        path = cache_dir() / "binaries"
        path.mkdir(parents=True, exist_ok=True)
        kwargs["cache_dir"] = str(path)
    try:
        return cl.Program(device.context, source).build(options=opts, **kwargs)
    except cl.RuntimeError as err:
        log = str(err)  # pyopencl puts the compiler's build log in the message
        excerpt = _error_excerpt(source, log)
        raise KernelBuildError(
            f"OpenCL build of {name} failed on {device.name} [{device.platform_name}]:\n"
            f"{excerpt or log}\n--- build log ---\n{log.strip()}") from None


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
        kern = getattr(get_program(device, template, **params), kernel_name)
        if arg_dtypes is not None:
            kern.set_scalar_arg_dtypes(arg_dtypes)
        _KERNELS[key] = kern
    return kern


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def built_count() -> int:
    """How many programs this process has built (tests use it to prove the cache hits)."""
    return len(_PROGRAMS)

"""Every use of a private pyopencl or mako API in clnet, in one place.

Why private at all:
  - pyopencl's public `Program(ctx, source).build()` first consults pyopencl's own binary cache (which
    stores pickles) and probes NVIDIA-only device queries that Oclgrind's API checker reports as errors;
    clnet keeps its own cache (binary_cache.py), so it builds through the raw `_cl._Program`.
  - mako's `TemplateLookup` has no public way to forget one compiled template; a damaged compiled module
    in clnet's template cache must be dropped and recompiled (render.py).
  - pyopencl asks every device for NVIDIA's compute capability (CL_DEVICE_COMPUTE_CAPABILITY_MAJOR_NV)
    each time it makes a kernel or sets its argument types, without checking that the device has the
    cl_nv_device_attribute_query extension that defines the query; other devices answer CL_INVALID_VALUE,
    which Oclgrind's API checker prints as an error on every kernel. `_nv_compute_capability` asks only
    devices that have the extension (the answer is the same: None elsewhere); it replaces pyopencl's
    when this module is imported.
  - pyopencl warns (CompilerWarning) whenever a build log is not empty, which PoCL's compiler makes
    for notes about clnet's own kernels ("4 warnings generated."): a user's first tensor would print
    it. Warnings attributed to this module (clnet's builds) are ignored unless PYOPENCL_COMPILER_OUTPUT
    asks for them; the log of a failed build is in the KernelBuildError all the same.
When pyopencl or mako change these, this module is the one to mend; tests/test_programs.py exercises
every function here.
"""
from __future__ import annotations

import os
import warnings

import pyopencl as cl
import pyopencl.characterize as _characterize

if not os.environ.get("PYOPENCL_COMPILER_OUTPUT"):
    warnings.filterwarnings("ignore", category=cl.CompilerWarning, module=__name__)


def program_from_source(context, source: str):
    """An unbuilt raw program for `source` (pyopencl's cache bypassed)."""
    return cl._cl._Program(context, source)


def program_from_binary(context, cl_device, binary: bytes):
    """An unbuilt raw program for one device binary."""
    return cl._cl._Program(context, [cl_device], [binary])


def build_program(raw, options: str, cl_devices) -> None:
    """Build a raw program; raises cl.RuntimeError whose text carries the compiler's log."""
    raw.build(options.encode(), list(cl_devices))


def wrap_program(raw) -> cl.Program:
    """The public Program around a built raw program."""
    return cl.Program(raw)


def raw_program(program: cl.Program):
    """The raw program inside a built public Program (kernels are made from it)."""
    return program._get_prg()


def forget_template(lookup, template: str) -> None:
    """Make mako's lookup forget a compiled template, so the next get_template recompiles it."""
    lookup._collection.pop(template, None)
    lookup._collection.pop("/" + template.lstrip("/"), None)


_PYOPENCL_NV_COMPUTE_CAPABILITY = _characterize.nv_compute_capability


def _nv_compute_capability(dev):
    """pyopencl's characterize.nv_compute_capability, asked only of devices that define the query."""
    try:
        if "cl_nv_device_attribute_query" not in dev.extensions:
            return None
    except cl.Error:
        return None
    return _PYOPENCL_NV_COMPUTE_CAPABILITY(dev)


_characterize.nv_compute_capability = _nv_compute_capability

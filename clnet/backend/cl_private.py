"""Every use of a private pyopencl or mako API in clnet, in one place.

Why private at all:
  - pyopencl's public `Program(ctx, source).build()` first consults pyopencl's own binary cache (which
    stores pickles) and probes NVIDIA-only device queries that Oclgrind's API checker reports as errors;
    clnet keeps its own cache (binary_cache.py), so it builds through the raw `_cl._Program`.
  - mako's `TemplateLookup` has no public way to forget one compiled template; a damaged compiled module
    in clnet's template cache must be dropped and recompiled (render.py).
When pyopencl or mako change these, this module is the one to mend; tests/test_programs.py exercises
every function here.
"""
from __future__ import annotations

import pyopencl as cl


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

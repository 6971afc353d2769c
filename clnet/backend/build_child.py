"""The child process of build_worker.py: builds (and first-launches) OpenCL programs for its parent.

It runs as a plain script (`python .../build_child.py`), importing only the standard library, numpy,
pyopencl and clnet's cl_private.py (loaded by path: it builds exactly as the parent does, with the same
options, so the driver's cache entries fit the parent), so it starts in a fraction of a second and shares nothing with the parent but
the environment (the same ICD files, the same driver, the same driver caches on disk). A compiler that
aborts (LLVM's "Cannot select", a segfault in a driver) kills this process only; the parent sees the
pipe close and the exit signal.

Protocol, over stdin/stdout, one request at a time:
    request:  a JSON line {"device": [platform, platform version, device, driver], "options": str,
              "variant": str, "source_bytes": N, "want_binary": bool, "launch": null or {...}}
              followed by N bytes of UTF-8 source
    answer:   a JSON line {"ok": true, "binary_bytes": M, "kernels": [...]} followed by M bytes, or
              {"ok": false, "log": "..."} when the compiler reports an error (an ordinary build error)
"launch" = {"kernel": name, "global": [...], "local": [...] or null, "offset": [...] or null,
"args": [["buffer", nbytes] | ["local", nbytes] | ["scalar", numpy dtype str, value] | ["null"]]}
runs the kernel once on zero-filled buffers of the parent's sizes with the parent's scalars, so the
indices it computes are the parent's: drivers that generate code at the first launch (PoCL compiles
its work-group function then, specialised to the launch's local size) do that here first, and leave
the result in their cache for the parent.

CLNET_BUILD_CHILD_ABORT=TEXT makes the child abort() when a request's variant contains TEXT (only the
first time, when CLNET_BUILD_CHILD_ABORT_ONCE names a file: the child creates it): the tests inject a
compiler crash that way (tests/test_build_worker.py).
"""
import json
import os
import sys

if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)  # this script's folder holds clnet's modules, never to be imported as top-level ones

import importlib.util  # noqa: E402

import numpy as np  # noqa: E402
import pyopencl as cl  # noqa: E402

_SPEC = importlib.util.spec_from_file_location("clnet_cl_private", os.path.join(os.path.dirname(__file__),
                                                                                "cl_private.py"))
cl_private = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(cl_private)


def _find(ident, found):
    key = tuple(ident)
    if key not in found:
        device = None
        for plat in cl.get_platforms():
            if [plat.name.strip(), plat.version.strip()] != list(ident[:2]):
                continue
            try:
                devs = plat.get_devices()
            except cl.Error:
                continue
            for dev in devs:
                if [dev.name.strip(), dev.driver_version.strip()] == list(ident[2:]):
                    device = dev
                    break
        found[key] = (device, cl.Context([device]) if device is not None else None)
    return found[key]


def _launch(ctx, dev, prg, spec) -> None:
    kern = cl.Kernel(prg, spec["kernel"])
    queue = cl.CommandQueue(ctx, dev)
    keep = []
    for i, arg in enumerate(spec["args"]):
        kind = arg[0]
        if kind == "buffer":
            buf = cl.Buffer(ctx, cl.mem_flags.READ_WRITE | cl.mem_flags.COPY_HOST_PTR,
                            hostbuf=np.zeros(max(1, arg[1]), np.uint8))
            keep.append(buf)
            kern.set_arg(i, buf)
        elif kind == "local":
            kern.set_arg(i, cl.LocalMemory(max(1, arg[1])))
        elif kind == "scalar":
            kern.set_arg(i, np.dtype(arg[1]).type(arg[2]))
        else:
            kern.set_arg(i, None)
    cl.enqueue_nd_range_kernel(queue, kern, spec["global"], spec["local"], spec["offset"])
    queue.finish()


def _answer(out, header: dict, payload: bytes = b"") -> None:
    out.write(json.dumps(header).encode() + b"\n" + payload)
    out.flush()


def main() -> int:
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    abort_on = os.environ.get("CLNET_BUILD_CHILD_ABORT", "")
    once = os.environ.get("CLNET_BUILD_CHILD_ABORT_ONCE", "")
    found: dict = {}
    while True:
        line = inp.readline()
        if not line:
            return 0
        req = json.loads(line)
        source = inp.read(req["source_bytes"]).decode("utf-8")
        if abort_on and abort_on in req["variant"] and not (once and os.path.exists(once)):
            if once:
                open(once, "w").close()
            sys.stderr.write(f"clnet build child: aborting as asked for {req['variant']}\n")
            sys.stderr.flush()
            os.abort()
        dev, ctx = _find(req["device"], found)
        if dev is None:
            _answer(out, {"ok": False, "log": f"device {req['device']} not found in the build child"})
            continue
        try:
            prg = cl_private.program_from_source(ctx, source)
            cl_private.build_program(prg, req["options"], [dev])
            names = [n for n in prg.get_info(cl.program_info.KERNEL_NAMES).split(";") if n]
            binary = bytes(prg.get_info(cl.program_info.BINARIES)[0]) if req.get("want_binary") else b""
        except cl.Error as err:
            _answer(out, {"ok": False, "log": str(err)})
            continue
        if req.get("launch"):
            _launch(ctx, dev, prg, req["launch"])
        _answer(out, {"ok": True, "binary_bytes": len(binary), "kernels": names}, binary)


if __name__ == "__main__":
    sys.exit(main())

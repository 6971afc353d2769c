"""Rendering, in-memory memoization, the binary cache, CLNET_CACHE_DIR and the readable build error."""
from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pyopencl as cl
import pytest
from mako import exceptions as mako_exceptions
from mako.lookup import TemplateLookup

import clnet
from clnet.backend import binary_cache, binary_writer, build_log, programs, render

PROBE = """\
## test probe: y[i] = x[i] * ${scale} + b
__kernel void ${name}(const int n, __global const ${t} *x, const ${t} b, __global ${t} *y)
{
    const int i = get_global_id(0);
    if (i < n) y[i] = x[i] * ${scale} + b;
}
"""

BROKEN = """\
__kernel void broken(__global float *y)
{
    const int i = get_global_id(0);
    y[i] = ${value} + no_such_variable;
}
"""


@pytest.fixture
def templates(tmp_path, monkeypatch):
    """A private template directory, so these tests never depend on other families' templates."""
    (tmp_path / "probe.cl.mako").write_text(PROBE)
    (tmp_path / "broken.cl.mako").write_text(BROKEN)
    lookup = TemplateLookup(directories=[str(tmp_path)], strict_undefined=True)
    monkeypatch.setattr(render, "_lookup", lambda: lookup)
    return tmp_path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh CLNET_CACHE_DIR with the binary cache on, binaries stored at build time ("now")."""
    path = tmp_path / "clnet-cache"
    monkeypatch.setenv("CLNET_CACHE_DIR", str(path))
    monkeypatch.setenv("CLNET_BINARY_CACHE", "1")
    return path


def _run_probe(device, kern, x):
    xb = clnet.tensor(x, device=device)
    y = clnet.empty(x.shape, dtype=clnet.float32, device=device)
    kern(device.queue, (x.size,), None, x.size, xb._buf, np.float32(0.5), y._buf)
    return y.numpy()


def test_kernel_dir_holds_every_template():
    """Installed (wheel or editable) or checkout: all of kernels/*.mako are where programs looks."""
    found = {p.name for p in programs.kernel_dir().glob("*.mako")}
    assert "elementwise.cl.mako" in found
    checkout = Path(__file__).resolve().parents[1] / "kernels"
    if checkout.is_dir():
        missing = {p.name for p in checkout.glob("*.mako")} - found
        assert not missing, f"templates missing from {programs.kernel_dir()}: {missing}"


def test_render_fills_parameters(templates):
    src = programs.render("probe.cl.mako", name="probe", t="float", scale="2.0f")
    assert "__kernel void probe(" in src and "x[i] * 2.0f + b" in src
    assert "cl_khr_fp64" not in src
    assert src.startswith("#pragma OPENCL EXTENSION cl_khr_fp64") == ("double" in src)
    dsrc = programs.render("probe.cl.mako", name="probe", t="double", scale="2.0")
    assert dsrc.startswith("#pragma OPENCL EXTENSION cl_khr_fp64 : enable")


def test_render_names_a_missing_parameter(templates):
    with pytest.raises(NameError, match="scale"):
        programs.render("probe.cl.mako", name="probe", t="float")


def test_render_unknown_template():
    with pytest.raises(mako_exceptions.TopLevelLookupException):
        programs.render("no_such_family.cl.mako")


def test_ctype():
    assert programs.ctype(np.float32) == "float" and programs.ctype("float64") == "double"
    assert programs.ctype(np.bool_) == "uchar" and programs.ctype(np.int64) == "long"


def test_second_request_does_not_rebuild(device, templates, rng):
    name = f"probe_{uuid.uuid4().hex[:8]}"  # a source no earlier test has built
    before = programs.built_count()
    k1 = programs.get_kernel(device, "probe.cl.mako", name, arg_dtypes=[np.int32, None, np.float32, None],
                             name=name, t="float", scale="3.0f")
    assert programs.built_count() == before + 1
    k2 = programs.get_kernel(device, "probe.cl.mako", name, arg_dtypes=[np.int32, None, np.float32, None],
                             name=name, t="float", scale="3.0f")
    assert k2 is k1 and programs.built_count() == before + 1
    x = rng.standard_normal(37).astype(np.float32)
    np.testing.assert_allclose(_run_probe(device, k1, x), x * 3 + 0.5, rtol=1e-6)
    # different parameters are a different program
    programs.get_kernel(device, "probe.cl.mako", name, arg_dtypes=[np.int32, None, np.float32, None],
                        name=name, t="float", scale="4.0f")
    assert programs.built_count() == before + 2


def test_build_error_is_readable(device, templates):
    with pytest.raises(clnet.KernelBuildError) as info:
        programs.get_kernel(device, "broken.cl.mako", "broken", value="1.0f")
    msg = str(info.value)
    assert device.name in msg and "broken.cl.mako" in msg
    assert "no_such_variable" in msg
    marked = [line for line in msg.splitlines() if line.startswith(">>")]
    assert marked, f"no '>>' source line in:\n{msg}"
    assert any("y[i] = 1.0f + no_such_variable;" in line and "4 |" in line for line in marked), msg
    assert "--- build log ---" in msg


def test_error_excerpt_marks_each_reported_line():
    source = "\n".join(f"line{i}" for i in range(1, 11))
    log = ("<source>:3:5: error: bad thing\n"
           "/tmp/pocl/tempfile.cl:8:1: error: worse thing\n"
           "<source>:5:1: warning: not an error\n")
    text = build_log.error_excerpt(source, log)
    assert ">>    3 | line3" in text and ">>    8 | line8" in text
    assert "bad thing" in text and "worse thing" in text and ">>    5" not in text


def test_cache_dir_follows_clnet_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CLNET_CACHE_DIR", str(tmp_path / "x"))
    assert programs.cache_dir() == tmp_path / "x"
    monkeypatch.delenv("CLNET_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert programs.cache_dir() == tmp_path / "xdg" / "clnet"


def test_binary_cache_round_trip_and_clear(device, templates, cache, rng):
    name = f"probe_{uuid.uuid4().hex[:8]}"
    src = programs.render("probe.cl.mako", name=name, t="float", scale="5.0f")
    programs.build(device, src, name="probe")
    binaries = list((cache / "binaries").glob("*.bin"))
    assert len(binaries) == 1 and binaries[0].stat().st_size > 0
    # what a fresh process does: the program comes back from the binary, and it computes the same
    opts = list(device.profile.build_options)
    raw = binary_cache.load(device, binaries[0], opts)
    assert raw is not None
    kern = cl.Kernel(raw, name)
    kern.set_scalar_arg_dtypes([np.int32, None, np.float32, None])
    x = rng.standard_normal(19).astype(np.float32)
    np.testing.assert_allclose(_run_probe(device, kern, x), x * 5 + 0.5, rtol=1e-6)
    # clearing removes the binaries and forgets built programs
    path = programs.clear_cache()
    assert path == cache / "binaries" and not path.exists()
    assert programs.built_count() == 0


def test_unusable_cached_binary_is_a_miss(device, templates, cache):
    src = programs.render("probe.cl.mako", name="probe_bad", t="float", scale="6.0f")
    opts = list(device.profile.build_options)
    path = binary_cache.path_for(device, src, opts)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not a program binary")
    prg = programs.build(device, src, name="probe")  # falls back to the source, then rewrites the file
    assert isinstance(prg, cl.Program)
    good = path.read_bytes()
    assert good.startswith(binary_cache.MAGIC)
    # a damaged file (one flipped byte) is rejected by its checksum before any driver sees it
    path.write_bytes(good[:-1] + bytes([good[-1] ^ 0xFF]))
    assert binary_cache.load(device, path, opts) is None and not path.exists()


def test_binary_cache_policy(monkeypatch):
    class Impl:
        def __init__(self, implementation):
            self.implementation = implementation
    monkeypatch.delenv("CLNET_BINARY_CACHE", raising=False)
    policy = binary_cache.policy
    # PoCL: binaries written after exit (making one costs PoCL about a build); Mesa: at build time
    assert policy(Impl("pocl")) == "later" and policy(Impl("rusticl")) == "now"
    assert policy(Impl("nvidia")) == "off" and policy(Impl("oclgrind")) == "off"
    monkeypatch.setenv("CLNET_BINARY_CACHE", "0")
    assert policy(Impl("pocl")) == "off"
    monkeypatch.setenv("CLNET_BINARY_CACHE", "1")
    assert policy(Impl("oclgrind")) == "now" and policy(Impl("pocl")) == "now"
    monkeypatch.setenv("CLNET_BINARY_CACHE", "later")
    assert policy(Impl("rusticl")) == "later"


def test_deferred_binary_is_written_by_the_writer(device, templates, cache, monkeypatch, rng):
    """With the "later" policy a build stores nothing; the writer (run here in-process) builds the listed
    program again, stores its binary atomically and deletes the manifest; the binary computes the same."""
    monkeypatch.setenv("CLNET_BINARY_CACHE", "later")
    monkeypatch.setattr(binary_writer, "_PENDING", [])
    name = f"probe_{uuid.uuid4().hex[:8]}"
    src = programs.render("probe.cl.mako", name=name, t="float", scale="7.0f")
    programs.build(device, src, name="probe")
    opts = list(device.profile.build_options)
    path = binary_cache.path_for(device, src, opts)
    assert not path.exists() and len(binary_writer._PENDING) == 1
    manifests = binary_writer.write_manifests()
    assert binary_writer._PENDING == [] and [Path(m) for m in manifests] == binary_writer.pending_binaries(cache)
    # two writers handed the same work (two processes built the same program): one binary, no temporaries
    twin = Path(manifests[0]).with_name("twin.json")
    twin.write_bytes(Path(manifests[0]).read_bytes())
    assert binary_writer.write_pending(manifests + [str(twin)]) == 1
    assert binary_writer.pending_binaries(cache) == [] and path.exists()
    assert not list(path.parent.glob("*.tmp"))
    raw = binary_cache.load(device, path, opts)
    assert raw is not None
    kern = cl.Kernel(raw, name)
    kern.set_scalar_arg_dtypes([np.int32, None, np.float32, None])
    x = rng.standard_normal(23).astype(np.float32)
    np.testing.assert_allclose(_run_probe(device, kern, x), x * 7 + 0.5, rtol=1e-6)


def test_damaged_manifests_are_dropped(cache):
    pending = cache / "binaries" / "pending"
    pending.mkdir(parents=True)
    (pending / "junk.json").write_bytes(b"\x00{not json")
    (pending / "odd.json").write_text('[{"path": 3}, "x", {"device": ["no", "such", "device", "here"]}]')
    (pending / "dict.json").write_text('{"path": "x"}')
    assert binary_writer.write_pending([str(pending / "junk.json")]) == 0  # the others are adopted, and dropped
    assert binary_writer.pending_binaries(cache) == []


def test_a_dead_writers_manifest_is_adopted(device, templates, cache, monkeypatch):
    monkeypatch.setenv("CLNET_BINARY_CACHE", "later")
    monkeypatch.setattr(binary_writer, "_PENDING", [])
    paths = []
    for scale in ("11.0f", "12.0f"):
        src = programs.render("probe.cl.mako", name=f"probe_{uuid.uuid4().hex[:8]}", t="float", scale=scale)
        programs.build(device, src, name="probe")
        paths.append(binary_cache.path_for(device, src, list(device.profile.build_options)))
        binary_writer.write_manifests()  # one manifest per program, as two processes would leave
    first, second = binary_writer.pending_binaries(cache)
    assert binary_writer.write_pending([str(first)]) == 2  # the second (its writer died) is handled too
    assert binary_writer.pending_binaries(cache) == [] and all(p.exists() for p in paths)


WRITER_JOB = """
import sys, warnings
warnings.simplefilter("ignore")
import clnet
from clnet.backend import binary_writer
from clnet.backend import binary_cache, binary_writer, build_log, programs, render
dev = clnet.device(sys.argv[1])
programs.build(dev, open(sys.argv[2]).read(), name="probe")
from clnet.backend.cache_files import cache_dir
# pending builds, and binaries on disk while this process still runs (none: the writer starts at exit)
print(binary_writer.pending_count(), len(list((cache_dir() / "binaries").glob("*.bin"))))
"""


def test_binaries_are_written_after_the_process_exits(device, templates, tmp_path):
    """End to end: a process that built from source under "later" leaves a manifest at exit and a detached
    writer stores the binary; the next lookup of that source is a binary-cache hit."""
    import os
    import subprocess
    import sys
    import time
    if device.implementation == "oclgrind":
        pytest.skip("another process using Oclgrind would truncate OCLGRIND_LOG")
    cache = tmp_path / "clnet-cache"
    src = programs.render("probe.cl.mako", name=f"probe_{uuid.uuid4().hex[:8]}", t="float", scale="9.0f")
    (tmp_path / "probe.cl").write_text(src)
    root = Path(programs.__file__).resolve().parents[2]
    env = dict(os.environ, CLNET_CACHE_DIR=str(cache), CLNET_BINARY_CACHE="later",
               PYTHONPATH=os.pathsep.join([str(root)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    out = subprocess.run([sys.executable, "-c", WRITER_JOB, device.spec, str(tmp_path / "probe.cl")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    # checked inside the process: after it exits the detached writer may already have stored the binary
    # (a warm PoCL cache makes that a matter of milliseconds)
    assert out.stdout.split() == ["1", "0"], out.stdout
    deadline = time.monotonic() + 240
    while binary_writer.pending_binaries(cache) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert binary_writer.pending_binaries(cache) == [], "the background writer did not finish"
    path = cache / "binaries" / binary_cache.path_for(device, src, list(device.profile.build_options)).name
    assert list((cache / "binaries").glob("*.bin")) == [path]
    assert binary_cache.load(device, path, list(device.profile.build_options)) is not None

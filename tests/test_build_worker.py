"""No kernel build can take the process down (issue 11): builds in a child process, verdicts, fallbacks.

Each test runs clnet in a fresh process with its own CLNET_CACHE_DIR (empty verdicts), because what is
tested is first use on a machine. The compiler crash is injected with CLNET_BUILD_CHILD_ABORT, which
makes the build child abort() on a variant (build_child.py), as PoCL 3.0's LLVM did on Zen 4.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clnet.backend import build_verdicts, build_worker, profiles

ROOT = Path(__file__).resolve().parents[1]
TOUR = ROOT / "tests" / "variant_tour.py"


def _run(code_or_script, *args, env=None, timeout=900):
    env = dict(os.environ, **(env or {}))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    cmd = [sys.executable, "-W", "ignore"] + ([str(code_or_script)] if isinstance(code_or_script, Path)
                                              else ["-c", code_or_script]) + list(args)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def _not_on_simulator(device):
    if device.is_simulator:
        pytest.skip("Oclgrind: the sanitizer stage builds every variant there in-process; a second Oclgrind "
                    "process would share its log")


def test_every_template_family_variant_builds_in_a_child_process(device):
    """The variant tour (every op family x dtype x layout, forward and backward, every optimizer rule) in a
    child that builds in-process: an abort like PoCL 3.0's on Zen 4 fails this test, not the test run."""
    _not_on_simulator(device)
    out = _run(TOUR, device.spec, env={"CLNET_BUILD_WORKER": "0"})
    assert out.returncode == 0, (f"the variant tour died on {device} with exit status {out.returncode} "
                                 f"(negative: killed by that signal):\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    assert "programs built and run" in out.stdout


CRASH_THEN_FALLBACK = r"""
import json, sys
import numpy as np
import clnet
from clnet.errors import KernelBuildError
dev = clnet.device(sys.argv[1])
a = np.random.default_rng(0).standard_normal((33, 47)).astype(np.float32)
ta = clnet.tensor(a, device=dev)
report = {"width_before": dev.profile.max_vector_width}
try:
    (ta @ ta.T).numpy()
    report["raised"] = None
except KernelBuildError as err:
    report["raised"] = type(err).__name__
    report["message"] = str(err)
report["width_after"] = dev.profile.max_vector_width
report["matmul_after"] = dev.profile.matmul_variant
report["quirks"] = list(dev.profile.quirks)
report["retry_ok"] = bool(np.allclose((ta @ ta.T).numpy(), a.astype(np.float64) @ a.T, atol=1e-3))
print(json.dumps(report))
"""

NEXT_RUN = r"""
import json, sys
import numpy as np
import clnet
dev = clnet.device(sys.argv[1])
a = np.arange(12, dtype=np.float32).reshape(3, 4)
ok = bool(np.allclose((clnet.tensor(a, device=dev) @ clnet.tensor(a.T, device=dev)).numpy(), a @ a.T))
print(json.dumps({"width": dev.profile.max_vector_width, "quirks": list(dev.profile.quirks), "ok": ok}))
"""


def test_an_injected_compiler_crash_is_an_error_and_a_working_fallback(device, tmp_path):
    """The build child aborts (as LLVM did) on the CPU GEMM: the op raises CompilerCrashed, a
    KernelBuildError naming the device and the variant; the process lives; the device steps to its
    fallback (narrower vectors); the retry computes the right product; the next process starts there."""
    _not_on_simulator(device)
    if device.profile.matmul_variant != "cpu":
        pytest.skip("the injected crash hits the vector CPU GEMM, which this device's profile does not use")
    env = {"CLNET_CACHE_DIR": str(tmp_path / "cache"), "CLNET_BUILD_WORKER": "auto",
           "CLNET_BUILD_CHILD_ABORT": "kernel=gemm_cpu", "CLNET_BUILD_CHILD_ABORT_ONCE": str(tmp_path / "aborted")}
    out = _run(CRASH_THEN_FALLBACK, device.spec, env=env)
    assert out.returncode == 0, out.stderr[-4000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["raised"] == "CompilerCrashed", report
    msg = report["message"]
    assert device.name in msg and "kernel=gemm_cpu" in msg and "signal 6" in msg, msg
    assert "aborting as asked" in msg  # the child's last words (LLVM prints its error there)
    assert report["width_after"] < report["width_before"] or report["matmul_after"] == "gpu"
    assert any("compiler crashed" in q for q in report["quirks"]), report["quirks"]
    assert report["retry_ok"], "the fallback variant computed a wrong product"
    # the next run goes straight to the fallback, without crashing or retrying anything
    out = _run(NEXT_RUN, device.spec, env=env)
    assert out.returncode == 0, out.stderr[-4000:]
    nxt = json.loads(out.stdout.strip().splitlines()[-1])
    assert nxt["ok"] and nxt["width"] == report["width_after"], nxt
    assert any("compiler crashed" in q for q in nxt["quirks"])


FIRST_USE = r"""
import json, sys
import numpy as np
import clnet
from clnet.backend import build_worker
calls = []
real = build_worker.build_in_child
def counting(*a, **k):
    calls.append("launch" if k.get("launch") else "build")
    return real(*a, **k)
build_worker.build_in_child = counting
dev = clnet.device(sys.argv[1])
a = np.random.default_rng(1).standard_normal((20, 30)).astype(np.float32)
t = clnet.tensor(a, device=dev)
ok = bool(np.allclose(((t * 2).relu() @ t.T).sum(dim=1).numpy(), (np.maximum(2 * a, 0) @ a.T).sum(1), rtol=1e-4))
print(json.dumps({"ok": ok, "calls": calls}))
"""


def test_only_the_first_run_builds_in_the_child(device, tmp_path):
    """First run on a machine: every new variant goes through the child (build, or first launch on PoCL);
    the verdicts are kept, so the second run builds everything in-process."""
    _not_on_simulator(device)
    env = {"CLNET_CACHE_DIR": str(tmp_path / "cache"), "CLNET_BUILD_WORKER": "auto"}
    first = _run(FIRST_USE, device.spec, env=env)
    assert first.returncode == 0, first.stderr[-4000:]
    r1 = json.loads(first.stdout.strip().splitlines()[-1])
    second = _run(FIRST_USE, device.spec, env=env)
    assert second.returncode == 0, second.stderr[-4000:]
    r2 = json.loads(second.stdout.strip().splitlines()[-1])
    assert r1["ok"] and r2["ok"]
    assert len(r1["calls"]) >= 3, r1  # elementwise, matmul, reduce at least
    assert r2["calls"] == [], r2
    verdicts = list((tmp_path / "cache" / "verdicts").rglob("*.json"))
    assert len(verdicts) >= 4  # the variants' verdicts and the device's description


BUILD_ERROR = r"""
import sys
import clnet
from clnet.backend import programs
dev = clnet.device(sys.argv[1])
try:
    programs.build(dev, "__kernel void k(__global float *y) { y[0] = no_such_thing; }", name="broken probe")
except clnet.KernelBuildError as err:
    print(type(err).__name__)
    print(err)
"""


def test_a_compiler_error_seen_by_the_child_is_the_usual_build_error(device, tmp_path):
    _not_on_simulator(device)
    out = _run(BUILD_ERROR, device.spec, env={"CLNET_CACHE_DIR": str(tmp_path / "c"), "CLNET_BUILD_WORKER": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("KernelBuildError") and "no_such_thing" in out.stdout
    assert "broken probe" in out.stdout and ">>" in out.stdout  # the source line, marked


def test_variant_names_shapes_not_expressions():
    v = build_verdicts.variant("elementwise.cl.mako", dict(expr="v0 * v1 + 2.0f", out_t="float", rank=2,
                                                           in_ts=("float", None), grid2=False))
    assert v == "elementwise.cl.mako(grid2=False, in_ts=['float', None], out_t=float, rank=2)"


def test_fallback_ladder():
    """16 -> 8 -> 4 -> 4 with the scalar matmul: each crash changes what the kernels are made of."""
    assert profiles._crash_fallback(1, 16, {}) == dict(max_vector_width=8)
    assert profiles._crash_fallback(2, 16, {}) == dict(max_vector_width=4)
    last = profiles._crash_fallback(3, 16, {})
    assert last["max_vector_width"] == 4 and last["matmul_variant"] == "gpu"
    assert profiles._crash_fallback(9, 16, {}) == last
    assert profiles._crash_fallback(1, 8, {}) == dict(max_vector_width=4)
    assert profiles._crash_fallback(1, 4, {})["matmul_variant"] == "gpu"  # vectors already at 4 (Intel's runtime)


def test_first_crash_narrows_below_a_quirk_cap(monkeypatch):
    """A device whose quirk already caps vectors at 8 (the wheel's PoCL on a CPU its LLVM 14 does not name)
    but which reports 16-wide floats steps to 4 on its first crash, not to the 8 it crashed at (that left
    the same GEMM variant and 'no fallback' on an Intel Xeon's fresh-machine CI stage)."""
    from test_devices import fake_device
    dev = fake_device(1, 0, "pthread-Intel(R) Xeon(R) Processor", "Portable Computing Language", "cpu", "pocl",
                      unified=True, driver="3.0-rc2", vec=16,
                      platform_version="OpenCL 3.0 PoCL 3.0-rc2  Linux, Release, RELOC, LLVM 14.0.6, SLEEF")
    assert profiles.profile_for(dev, tuned=False).max_vector_width == 8          # the quirk
    monkeypatch.setattr(build_verdicts, "crashes", lambda device: [("matmul.cl.mako(VW=8)", "LLVM ERROR")])
    prof = profiles.profile_for(dev, tuned=False)
    assert prof.max_vector_width == 4 and prof.vector_width == 4, prof


def test_wheel_pocl_on_an_unknown_cpu_gets_narrower_vectors():
    """Issue 11: PoCL 3.0 (LLVM 14) from the pip wheel names a Zen 4 'pthread-AMD EPYC' and aborted on
    16-wide mad/fma; Debian's PoCL 3.1 names the same CPU 'pthread-skylake-avx512-AMD EPYC' and is fine."""
    from test_devices import fake_device
    wheel = fake_device(name="pthread-AMD EPYC", platform="Portable Computing Language", type="cpu",
                        vendor="pocl", vec=16, platform_version="OpenCL 3.0 PoCL 3.0-rc2  Linux, Release, "
                        "RELOC, LLVM 14.0.6, SLEEF, DISTRO, POCL_DEBUG")
    debian = fake_device(name="pthread-skylake-avx512-AMD EPYC", platform="Portable Computing Language",
                         type="cpu", vendor="pocl", vec=16, platform_version="OpenCL 3.0 PoCL 3.1+debian  Linux, "
                         "None+Asserts, RELOC, SPIR, LLVM 15.0.6, SLEEF, DISTRO, POCL_DEBUG")
    pw, pd = profiles.profile_for(wheel, tuned=False), profiles.profile_for(debian, tuned=False)
    assert pw.vector_width == 8 and pw.max_vector_width == 8 and any("LLVM" in q for q in pw.quirks)
    assert pd.vector_width == 16 and pd.max_vector_width == 16


def test_policy(monkeypatch):
    class Dev:
        implementation = "pocl"
    monkeypatch.delenv("CLNET_BUILD_WORKER", raising=False)
    assert build_worker.policy(Dev()) == "auto"
    Dev.implementation = "oclgrind"
    assert build_worker.policy(Dev()) == "never"
    monkeypatch.setenv("CLNET_BUILD_WORKER", "1")
    assert build_worker.policy(Dev()) == "always"
    monkeypatch.setenv("CLNET_BUILD_WORKER", "0")
    Dev.implementation = "pocl"
    assert build_worker.policy(Dev()) == "never"

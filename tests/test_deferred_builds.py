"""First builds run side by side while the program goes on (clnet/backend/deferred.py, issue 12 item 7).

Each test runs clnet in a fresh process with empty caches (a machine's first run: every variant is built
in a build child), because that is the only time launches are deferred.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clnet.backend import build_worker

ROOT = Path(__file__).resolve().parents[1]


def _run(code, device, tmp_path, **env):
    full = dict(os.environ, CLNET_CACHE_DIR=str(tmp_path / "clnet"), POCL_CACHE_DIR=str(tmp_path / "pocl"),
                CLNET_BUILD_WORKER="auto", CLNET_CALIBRATE="0", **env)
    full["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code, device.spec], env=full, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _needs_first_launch_builds(device):
    if device.implementation not in build_worker.COMPILES_AT_LAUNCH:
        pytest.skip(f"{device.implementation} builds in the child at build time: launches are not deferred there")


CHAIN = r"""
import json, sys, threading
import numpy as np
import clnet
from clnet.backend import build_worker
dev = clnet.device(sys.argv[1])
busy, most, lock = [0], [0], threading.Lock()
real = build_worker.build_in_child
def counting(*a, **k):
    with lock:
        busy[0] += 1
        most[0] = max(most[0], busy[0])
    try:
        return real(*a, **k)
    finally:
        with lock:
            busy[0] -= 1
build_worker.build_in_child = counting
rng = np.random.default_rng(3)
a = rng.standard_normal((37, 53)).astype(np.float32)
b = rng.standard_normal((53, 29)).astype(np.float32)
ta, tb = clnet.tensor(a, device=dev), clnet.tensor(b, device=dev)
deferred = []
h = (ta * 2.0).relu()                      # each op's kernel is new: its launch waits for its build
deferred.append(len(dev._deferred.entries))
y = (h @ tb).tanh().sum(dim=0)
deferred.append(len(dev._deferred.entries))
ones = clnet.tensor(np.ones_like(a), device=dev)  # a copy from the host: the deferred launches go first
deferred.append(len(dev._deferred.entries))
ta.copy_(ones)                             # overwrites what the launches deferred before it read
want = np.tanh(np.maximum(2.0 * a.astype(np.float64), 0) @ b).sum(0)
print(json.dumps(dict(ok=bool(np.allclose(y.numpy(), want, rtol=1e-4, atol=1e-4)), deferred=deferred,
                      most=most[0], after=float(ta.sum().item()))))
"""


def test_first_builds_are_deferred_in_order_and_overlap(device, tmp_path):
    """On a first run the ops return before their kernels are built, the builds overlap (two children),
    and the results equal numpy's: the deferred launches ran in issue order (an overwrite of their input
    issued after them ran after them), and a copy from the host enqueued them all first."""
    _needs_first_launch_builds(device)
    report = _run(CHAIN, device, tmp_path, CLNET_BUILD_JOBS="2")
    assert report["ok"], report
    assert report["deferred"][0] >= 1 and report["deferred"][1] >= report["deferred"][0], report
    assert report["deferred"][2] == 0, report  # the host copy drained the deferred launches first
    assert report["most"] == 2, report         # builds ran side by side
    assert report["after"] == 37 * 53


def test_deferring_can_be_turned_off(device, tmp_path):
    _needs_first_launch_builds(device)
    report = _run(CHAIN, device, tmp_path, CLNET_BUILD_JOBS="2", CLNET_DEFER_BUILDS="0")
    assert report["ok"] and report["deferred"] == [0, 0, 0] and report["most"] == 1, report


ERROR_LATER = r"""
import json, sys
import numpy as np
import clnet
from clnet.errors import KernelBuildError
dev = clnet.device(sys.argv[1])
a = np.random.default_rng(0).standard_normal((33, 47)).astype(np.float32)
ta = clnet.tensor(a, device=dev)
report = {}
s = (ta @ ta.T)                       # its GEMM's build crashes the child, later
report["returned"] = True
t = s * 3.0                           # deferred behind it
try:
    t.numpy()
except KernelBuildError as err:
    report["raised"] = type(err).__name__
report["left"] = len(dev._deferred.entries)
report["retry_ok"] = bool(np.allclose((ta @ ta.T * 3.0).numpy(), 3.0 * (a.astype(np.float64) @ a.T), atol=1e-3))
print(json.dumps(report))
"""


def test_a_deferred_build_that_crashes_raises_where_the_queue_is_drained(device, tmp_path):
    """The op whose build crashes has returned; the crash is raised where the program next needs the device
    (here .numpy()), the launches behind it are dropped, and the retry on the fallback is right."""
    _needs_first_launch_builds(device)
    if device.profile.matmul_variant != "cpu":
        pytest.skip("the injected crash hits the vector CPU GEMM, which this device's profile does not use")
    report = _run(ERROR_LATER, device, tmp_path, CLNET_BUILD_CHILD_ABORT="kernel=gemm_cpu",
                  CLNET_BUILD_CHILD_ABORT_ONCE=str(tmp_path / "aborted"))
    assert report == {"returned": True, "raised": "CompilerCrashed", "left": 0, "retry_ok": True}, report

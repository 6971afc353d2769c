"""How fast clnet runs on a device: the measurement behind the default device's choice (issue 11 item 3).

When several OpenCL implementations drive the same CPU (Debian's PoCL, the PoCL inside the pip wheel,
Intel's CPU runtime), the fastest for clnet is not the same on every machine (on our AMD EPYC Debian's
PoCL 3.1 ran SGEMM at 216 GFLOP/s, Intel's runtime at 95 and the wheel's PoCL 3.0 about 10x slower), so
clnet times its own kernels on each once and keeps the result (backend/calibration.py). The workload is
clnet's SGEMM (n=1024: small sizes hide a slow GEMM behind launch costs), c = a + b over 4M floats and
the bench's MLP training step (784-512-512-10, Adam, batch 256: the whole stack, host costs included),
each checked against numpy first (clnet.bench). The score is the MLP step's rate: what users run is
whole steps, and the kernel rates alone mislead (issue 11: Intel's runtime moved c = a + b as fast as or
faster than PoCL but ran the MLP step 2x slower); GEMM and c = a + b are kept beside it to explain it. The devices take
turns repetition by repetition, so a busy machine slows them all alike.

    python -m clnet.calibrate SPEC [SPEC...]            (run by backend/calibration.py in a child process)
    python -m clnet.calibrate --store SPEC [SPEC...]    (the same, detached at first use: stores the scores)

prints one JSON line per device: {"spec", "gemm_gflops", "add_gbps", "mlp_steps_s", "score"} or {"spec", "error"}.
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from . import bench
from .backend import calibration
from .backend.devices import get_device

GEMM_N = 1024
ADD_N = 1 << 22


def measure(devices, quick: bool = False, reps: int = 9) -> dict:
    """{device: {"gemm_gflops", "add_gbps", "score"} or {"error"}}. The devices take turns repetition by
    repetition (bench.alternate), so all of them see the same machine load (ours is shared)."""
    n, m = (64, 1 << 14) if quick else (GEMM_N, ADD_N)
    shape = bench.MLPShape((32, 16, 16, 10), batch=8) if quick else bench.MLPShape()
    cases, results = {}, {}
    for dev in devices:
        rng = np.random.default_rng(0)
        try:
            gemm, _ = bench.gemm_case(dev, n, rng)
            add, _ = bench.add_case(dev, m, rng)
            mlp, _ = bench.mlp_case(dev, shape, rng, steps=1)
            cases[(dev, "gemm")], cases[(dev, "add")], cases[(dev, "mlp")] = gemm["clnet"], add["clnet"], mlp["clnet"]
        except Exception as err:  # noqa: BLE001  (a device that fails to run clnet scores nothing)
            results[dev] = {"error": f"{type(err).__name__}: {err}"[:500]}
    times = bench.alternate(cases, reps=reps, warmup=2) if cases else {}
    for dev in devices:
        if dev in results:
            continue
        gflops = 2 * n ** 3 / bench.median(times[(dev, "gemm")]) / 1e9
        gbps = 12 * m / bench.median(times[(dev, "add")]) / 1e9
        steps = 1 / bench.median(times[(dev, "mlp")])
        results[dev] = {"gemm_gflops": round(gflops, 2), "add_gbps": round(gbps, 2), "mlp_steps_s": round(steps, 2),
                        "score": round(steps, 3)}
    return results


def _yield_to(pid) -> None:
    """The background measurement at first use leaves the machine to the process that started it: it waits
    until that process has exited (at most calibration.PARENT_WAIT_S) and runs at the lowest priority. Priority
    alone is not enough: on a 2-core VM (whose cores may be one physical core's two threads) a niced
    measurement still slowed the first training step of its parent from 2.3 to 3.8-4.0 s."""
    if hasattr(os, "nice"):
        try:
            os.nice(19)
        except OSError:
            pass
    if pid is None:
        return
    deadline = time.monotonic() + calibration.PARENT_WAIT_S
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        except OSError:  # it exists but is not ours to signal: keep waiting
            pass
        time.sleep(0.25)


def main(argv) -> int:
    """Print one JSON line per device; with --store (the background measurement at first use), store the
    results in the calibration file instead and remove its pending marker, even when measuring failed."""
    quick, store = "--quick" in argv, "--store" in argv
    after = [int(a.split("=", 1)[1]) for a in argv if a.startswith("--after=")]
    if store:
        _yield_to(after[0] if after else None)
    try:
        devices = [get_device(spec) for spec in argv if not spec.startswith("--")]
        results = measure(devices, quick=quick)
    except BaseException:
        if store:
            calibration.pending_path().unlink(missing_ok=True)
        raise
    if store:
        calibration.store_results(results)
        return 0
    for dev, result in results.items():
        print(json.dumps(dict(spec=dev.spec, **result)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

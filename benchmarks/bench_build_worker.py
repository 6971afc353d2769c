"""What the build child costs a cold start (issue 11): the same first use with and without it, one run.

    python benchmarks/bench_build_worker.py [--device pocl] [--rounds 3] [--workload selftest|mlp]

Each round runs the workload in fresh processes with empty caches (clnet's and the driver's: a new
CLNET_CACHE_DIR and POCL_CACHE_DIR each), once with CLNET_BUILD_WORKER=0 (every build in the process)
and once with the build child on (every variant new, so every one goes through the child), then the
second run of the child case (verdicts kept, driver cache warm: what every later run pays). The cases
alternate round by round, so machine load hits them alike; medians of wall seconds are printed.
Workloads: `selftest` (clnet selftest: 7 kernel families), `mlp` (the first training step of the MLP
784-512-512-10 with Adam, as a new user's first script does).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MLP = r"""
import sys, numpy as np, clnet
from clnet import bench
dev = clnet.device(sys.argv[1])
fns, err = bench.mlp_case(dev, bench.MLPShape(), np.random.default_rng(0), 1)
fns["clnet"]()
"""


def run_once(workload: str, device: str, env: dict) -> float:
    cmd = ([sys.executable, "-W", "ignore", "-m", "clnet", "selftest", "--device", device] if workload == "selftest"
           else [sys.executable, "-W", "ignore", "-c", MLP, device])
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"the workload failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return took


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="pocl")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workload", choices=("selftest", "mlp"), default="selftest")
    args = ap.parse_args(argv)
    base = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")]
                                                                      if p]), CLNET_CALIBRATE="0")
    times = {"in-process, cold": [], "build child, cold": [], "build child, second run": []}
    for r in range(args.rounds):
        for case in ("in-process, cold", "build child, cold"):
            with tempfile.TemporaryDirectory() as tmp:
                env = dict(base, CLNET_CACHE_DIR=f"{tmp}/clnet", POCL_CACHE_DIR=f"{tmp}/pocl",
                           CLNET_BUILD_WORKER="0" if case.startswith("in-process") else "auto")
                times[case].append(run_once(args.workload, args.device, env))
                if case.startswith("build child"):
                    times["build child, second run"].append(run_once(args.workload, args.device, env))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items()), flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n{args.workload} on {args.device}, medians of {args.rounds} rounds (load average now {load:.1f}):")
    ref = statistics.median(times["in-process, cold"])
    for case, values in times.items():
        med = statistics.median(values)
        print(f"  {case:26s} {med:7.1f} s   {med / ref:5.2f}x the cold in-process start")
    return 0


if __name__ == "__main__":
    sys.exit(main())

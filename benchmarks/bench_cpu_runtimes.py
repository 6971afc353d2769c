"""The OpenCL CPU implementations side by side, with numpy beside them: which one should clnet use here?

    python benchmarks/bench_cpu_runtimes.py [--devices pocl,intel,opencl:3:0] [--reps 7] [--quick]

For every CPU implementation present (default: all but Mesa's llvmpipe and simulators) and numpy: SGEMM
at n=256/1024 (GFLOP/s), c = a + b over 16M floats (GB/s), the MLP 784-512-512-10 Adam step of
`clnet bench` (ms). Each clnet workload is checked against numpy first (clnet.bench); then all
contenders take turns repetition by repetition, so they see the same machine load, and medians are
printed with each contender's ratio to numpy. Unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for numpy's
own speed (BENCHMARKS.md gives the command).
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

import clnet
from clnet import bench
from clnet.backend import devices as D


def _devices(spec: str | None) -> list:
    if spec:
        return [clnet.device(s) for s in spec.split(",")]
    return [d for d in D.all_devices() if d.type == "cpu" and not d.is_simulator
            and d.implementation not in ("rusticl", "clover")]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", default=None, help="comma-separated device specs (default: every CPU implementation)")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks that it runs")
    args = ap.parse_args(argv)
    devs = _devices(args.devices)
    sizes = (32, 64) if args.quick else (256, 1024)
    n_add = 4096 if args.quick else 16 * 2 ** 20
    mlp = bench.MLPShape((32, 16, 16, 10), batch=8) if args.quick else bench.MLPShape()
    names = {d: f"{d.implementation} {d.driver_version} ({d.spec})" for d in devs}
    print("devices: " + "; ".join(f"{names[d]}: {d.name} [{d.platform_name}]" for d in devs))
    rows = []
    for label, unit, make, work in (
            [(f"SGEMM n={n}", "GFLOP/s", lambda d, rng, n=n: bench.gemm_case(d, n, rng), 2.0 * n ** 3) for n in sizes]
            + [(f"c = a + b, {n_add} floats", "GB/s", lambda d, rng: bench.add_case(d, n_add, rng), 12.0 * n_add),
               (f"{mlp} step", "ms", lambda d, rng: bench.mlp_case(d, mlp, rng, 1), None)]):
        contenders = {}
        for d in devs:
            fns, _ = make(d, np.random.default_rng(0))
            contenders[names[d]] = fns["clnet"]
            contenders.setdefault("numpy", fns["numpy"])
        times = bench.alternate(contenders, reps=args.reps, warmup=2)
        med = {k: bench.median(v) for k, v in times.items()}
        figure = (lambda t: work / t / 1e9) if work else (lambda t: t * 1e3)
        rows.append((label, unit, {k: figure(t) for k, t in med.items()}, med["numpy"]))
    for label, unit, figures, numpy_time in rows:
        print(f"\n{label} ({unit}; " + ("higher" if unit != "ms" else "lower") + " is better)")
        for name, value in figures.items():
            ratio = figures[name] / figures["numpy"] if unit != "ms" else figures["numpy"] / figures[name]
            print(f"  {name:55s} {value:10.2f}   {ratio:5.2f}x numpy's speed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

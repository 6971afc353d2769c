"""SGEMM GFLOP/s: clnet (one OpenCL device) beside numpy (OpenBLAS) and PyTorch CPU, in one run.

For each size the frameworks run in alternation, repetition by repetition, so they see the same machine
load; the median (and best) time per product is reported as GFLOP/s (2 n^3 / t) with the ratio to numpy.
clnet's time includes everything a user waits for: operand packing, the GEMM and the final synchronize.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_matmul.py
    python benchmarks/bench_matmul.py --device pocl --sizes 256,512,1024,2048 --reps 7
    python benchmarks/bench_matmul.py --layout nt        # a @ b.T (nn.Linear's forward), tn: a.T @ b
    python benchmarks/bench_matmul.py --variant gpu      # force the GPU (local-memory tiled) variant

(The OPENBLAS_* variables, where a test environment sets them, slow numpy down; unset them for its
figures, never in tests.)

Each timed run starts after --settle seconds of idle (default 0.2): OpenBLAS's worker threads keep
spinning after every call (measured: numpy's process burns CPU through the next 0.1 s of idle, PoCL's
threads burn none), so in back-to-back alternation the contender timed right after numpy shared the
2 cores with a spinning thread; a product shorter than the spin (n=1024: ~8 ms) then ran on one core.

On a machine shared with other jobs, wall-clock GFLOP/s follow the load; --cpu-time adds GFLOP per
CPU-second of this process (all its threads), which shows each implementation's efficiency per core
(OpenBLAS and PyTorch threads spin while they wait, which counts against them there).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import clnet  # noqa: E402
from clnet.backend import profiles  # noqa: E402


def _operands(rng, n, layout):
    """Host arrays a, b (float32) stored so that the product in `layout` is n x n x n."""
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    return a, b


def _views(layout, a, b):
    """The two operands of the product as views of the stored arrays (numpy or clnet)."""
    if layout == "nt":
        return a, b.T
    if layout == "tn":
        return a.T, b
    if layout == "tt":
        return a.T, b.T
    return a, b


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default=None, help="clnet device selection (default: clnet's default)")
    ap.add_argument("--sizes", default="256,512,1024,2048")
    ap.add_argument("--reps", type=int, default=7, help="timed repetitions per framework and size")
    ap.add_argument("--layout", default="nn", choices=["nn", "nt", "tn", "tt"])
    ap.add_argument("--variant", default=None, choices=["cpu", "gpu"], help="force a matmul kernel variant")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--cpu-time", action="store_true", help="also print GFLOP per CPU-second (process time)")
    ap.add_argument("--settle", type=float, default=0.2,
                    help="seconds of idle before each timed run, so no contender's worker threads are still "
                         "spinning from the previous one (OpenBLAS's spin for about 0.1 s after a call and "
                         "took a core from the next contender); 0 to alternate back to back")
    args = ap.parse_args(argv)

    dev = clnet.device(args.device) if args.device else clnet.default_device()
    if args.variant:
        dev._profile = profiles.clamp(replace(dev.profile, matmul_variant=args.variant), dev)
    torch = None
    if not args.no_torch:
        try:
            import torch
            torch.set_num_threads(os.cpu_count() or 1)
        except ImportError:
            torch = None
    p = dev.profile
    print(f"clnet device: {dev.describe()}  ({dev.driver_version})")
    print(f"matmul variant {p.matmul_variant}: tile {p.matmul_tile_m}x{p.matmul_tile_n}x{p.matmul_tile_k}, "
          f"block {p.matmul_wpt_m}x{p.matmul_wpt_n}; layout {args.layout}; median of {args.reps}")
    print(f"numpy {np.__version__}" + (f", torch {torch.__version__} ({torch.get_num_threads()} threads)"
                                       if torch else "")
          + f"; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '<unset>')}")
    head = f"{'n':>5} {'clnet':>9} {'numpy':>9}" + (f" {'torch':>9}" if torch else "") \
        + f" {'clnet/numpy':>12}" + (f" {'clnet/torch':>12}" if torch else "") + f" {'max rel err':>12}"
    print(head + "\n" + "-" * len(head))
    rng = np.random.default_rng(0)
    for n in (int(s) for s in args.sizes.split(",")):
        a, b = _operands(rng, n, args.layout)
        na, nb = _views(args.layout, a, b)
        ta, tb = _views(args.layout, clnet.tensor(a, device=dev), clnet.tensor(b, device=dev))
        if torch:
            pa, pb = _views(args.layout, torch.from_numpy(a), torch.from_numpy(b))
        # warm-up: kernel builds, pool blocks, BLAS threads
        ref = na.astype(np.float64) @ nb
        got = (ta @ tb).numpy()
        err = float(np.abs(got - ref).max() / np.abs(ref).max())
        na @ nb
        if torch:
            pa @ pb
        def run_clnet():
            y = ta @ tb
            dev.synchronize()
            return y
        runs = {"clnet": run_clnet, "numpy": lambda: na @ nb}
        if torch:
            runs["torch"] = lambda: pa @ pb
        times = {k: [] for k in runs}
        cpu = {k: [] for k in runs}
        for _ in range(args.reps):
            for name, fn in runs.items():
                if args.settle:
                    time.sleep(args.settle)
                c0, t0 = time.process_time(), time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
        flops = 2.0 * n ** 3
        g = {k: flops / statistics.median(v) / 1e9 for k, v in times.items()}
        line = f"{n:>5} {g['clnet']:>9.1f} {g['numpy']:>9.1f}" + (f" {g['torch']:>9.1f}" if torch else "")
        line += f" {g['clnet'] / g['numpy']:>12.2f}" + (f" {g['clnet'] / g['torch']:>12.2f}" if torch else "")
        line += f" {err:>12.1e}"
        if args.cpu_time:
            line += "   per CPU-s: " + ", ".join(f"{k} {flops / statistics.median(v) / 1e9:.0f}"
                                                for k, v in cpu.items())
        print(line, flush=True)
    print("(GFLOP/s from median times; ratios > 1 mean clnet is faster)")


if __name__ == "__main__":
    main()

"""Sum reductions in GB/s: clnet vs numpy and PyTorch CPU, side by side in one run.

Each round times every contestant once (`--reps` calls each, clnet synchronised at the end), in
alternation, so they share the machine's state; the table shows medians over rounds and ratios.
Cases: the 1-D sum of 16M float32 (issue 6's anchor), row sums and column sums (bias gradients) of a
4096 x 4096 matrix, and argmax along rows.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_reduce.py --device pocl
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import clnet
from clnet.ops import reduce as R


def _timed(fn, reps, sync=None):
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    if sync is not None:
        sync()
    return (time.perf_counter() - t0) / reps


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--n", type=int, default=16 * 2**20, help="elements of the 1-D case")
    args = ap.parse_args(argv)
    dev = clnet.device(args.device)
    try:
        import torch
    except ImportError:
        torch = None
    print(f"device: {dev}  reduce_wg={dev.profile.reduce_wg}  compute units={dev.compute_units}  "
          f"load average {os.getloadavg()[0]:.1f} (other processes share the cores and memory bus)")
    if torch is not None:
        print(f"torch {torch.__version__} threads={torch.get_num_threads()}")
    rng = np.random.default_rng(0)
    side = 4096
    cases = []
    a = rng.standard_normal(args.n).astype(np.float32)
    cases.append((f"sum of {args.n / 2**20:.0f}M", a, lambda t: R.sum(t), lambda x: x.sum(),
                  lambda x: x.sum()))
    m = rng.standard_normal((side, side)).astype(np.float32)
    cases.append((f"sum({side}x{side}, 1)", m, lambda t: R.sum(t, 1), lambda x: x.sum(1),
                  lambda x: x.sum(1)))
    cases.append((f"sum({side}x{side}, 0)", m, lambda t: R.sum(t, 0), lambda x: x.sum(0),
                  lambda x: x.sum(0)))
    cases.append((f"argmax({side}x{side}, 1)", m, lambda t: R.argmax(t, 1), lambda x: x.argmax(1),
                  lambda x: x.argmax(1)))
    print(f"{'case':>22} {'clnet GB/s':>11} {'numpy GB/s':>11} {'torch GB/s':>11} "
          f"{'x numpy':>8} {'x torch':>8}  passes")
    for name, host, f_cl, f_np, f_torch in cases:
        t = clnet.tensor(host, device=dev)
        tt = torch.from_numpy(host) if torch is not None else None
        got = f_cl(t).numpy()
        want = f_np(host.astype(np.float64)) if "argmax" not in name else f_np(host)
        assert np.allclose(got, want, rtol=1e-4, atol=1e-2), name
        f_cl(t)
        dev.synchronize()
        times = {"clnet": [], "numpy": [], "torch": []}
        for _ in range(args.rounds):
            times["clnet"].append(_timed(lambda: f_cl(t), args.reps, dev.synchronize))
            times["numpy"].append(_timed(lambda: f_np(host), args.reps))
            if tt is not None:
                times["torch"].append(_timed(lambda: f_torch(tt), args.reps))
        gbs = {k: host.nbytes / statistics.median(v) / 1e9 for k, v in times.items() if v}
        passes = R.plan(t.shape, t.strides, (0,) if name.endswith(", 0)") else
                        ((1,) if t.ndim == 2 else (0,)), dev, is_arg="argmax" in name)
        desc = " + ".join(f"{p.layout}[{p.nchunks}]" for p in passes)
        tg = gbs.get("torch")
        print(f"{name:>22} {gbs['clnet']:11.1f} {gbs['numpy']:11.1f} {tg if tg else float('nan'):11.1f} "
              f"{gbs['clnet'] / gbs['numpy']:8.2f} {gbs['clnet'] / tg if tg else float('nan'):8.2f}  {desc}")


if __name__ == "__main__":
    main()

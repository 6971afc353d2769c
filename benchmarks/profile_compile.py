"""Where a compiled training step's time goes: each launch of the replay plan timed in isolation
(enqueue + finish, median of --reps), beside the whole step (every launch enqueued, one finish).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/profile_compile.py --only two-layer
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from common import open_device
from bench_training_steps import build


def _describe(fn, args):
    if fn.__name__ != "enqueue_nd_range_kernel":
        return "upload", ""
    clone = args[1]
    name = clone.function_name
    return name, f"g={tuple(args[2])} l={None if args[3] is None else tuple(args[3])}"


def profile(plan, queue, reps):
    """[(name, sizes, median ms)] per step, and the median ms of the whole plan."""
    for clone, refresh, dtypes in plan.refreshers:   # the values a replay would set (step counts)
        if clone is None:
            continue
    rows = []
    for fn, args in plan.steps:
        ts = []
        for _ in range(reps):
            queue.finish()
            t0 = time.perf_counter()
            fn(*args)
            queue.finish()
            ts.append(time.perf_counter() - t0)
        rows.append((*_describe(fn, args), float(np.median(ts)) * 1e3))
    whole = []
    for _ in range(reps):
        queue.finish()
        t0 = time.perf_counter()
        for fn, args in plan.steps:
            fn(*args)
        queue.finish()
        whole.append(time.perf_counter() - t0)
    return rows, float(np.median(whole)) * 1e3


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--only", default="two-layer,mlp")
    args = ap.parse_args(argv)
    import clnet
    dev = open_device(args.device)
    for workload in args.only.split(","):
        contenders = build(workload, dev, None, None, jit_modes=())
        step, _, sync = contenders["clnet"][:3]
        cstep = clnet.compile(step)
        for _ in range(3):
            cstep()
        sync()
        entry = next(e for e in cstep._entries.values() if e.plan is not None)
        plan = entry.plan
        rows, whole = profile(plan, dev.queue, args.reps)
        print(f"\n{workload}: {plan.launch_count} launches; whole plan {whole:.3f} ms, "
              f"sum of isolated launches {sum(r[2] for r in rows):.3f} ms")
        for i, (name, sizes, ms) in enumerate(rows):
            print(f"  {i:2d} {name:10s} {ms:8.3f} ms  {sizes}")


if __name__ == "__main__":
    main()

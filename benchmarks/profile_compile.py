"""Where a compiled training step's time goes: each launch of the replay plan timed in isolation
(enqueue + finish, median of --reps), beside the whole step (every launch enqueued, one finish).
With --compare: the step compiled without the GEMM-group pass (fusion.fuse_gemm_groups) and with it,
alternated with PyTorch in one process (ms per step, medians; the machine's load hits all alike).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/profile_compile.py --only two-layer
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/profile_compile.py --compare --reps 9
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from common import alternate, load_torch, median, open_device, repeated, with_torch1
from bench_training_steps import STEPS, build


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
    ap.add_argument("--compare", action="store_true", help="compiled without/with GEMM groups beside PyTorch")
    args = ap.parse_args(argv)
    import clnet
    dev = open_device(args.device)
    if args.compare:
        return compare(dev, args)
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


def _compiled(step, sync, gemm_groups: bool):
    """step compiled (traced now) with or without the GEMM-group pass."""
    import clnet
    from clnet.compiler import fusion
    keep = fusion.fuse_gemm_groups
    if not gemm_groups:
        fusion.fuse_gemm_groups = lambda rows, internal: rows
    try:
        cstep = clnet.compile(step)
        for _ in range(3):
            cstep()
        sync()
    finally:
        fusion.fuse_gemm_groups = keep
    return cstep


def compare(dev, args):
    torch = load_torch()
    for workload in args.only.split(","):
        contenders = build(workload, dev, torch, None, jit_modes=())
        step, _, sync = contenders["clnet"][:3]
        old = _compiled(step, sync, False)
        new = _compiled(step, sync, True)
        n = STEPS[workload]
        fns = {"compiled-before": repeated(old, n, sync), "compiled-after": repeated(new, n, sync)}
        if torch is not None:
            fns["torch"] = repeated(contenders["torch"][0], n, contenders["torch"][2])
            fns = with_torch1(fns)
        times = alternate(fns, args.reps, warmup=2, torch=torch)
        ms = {k: median(v) / n * 1e3 for k, v in times.items()}
        best = min((v for k, v in ms.items() if k.startswith("torch")), default=None)
        print(f"{workload}: launches {old.stats.launches_replayed} -> {new.stats.launches_replayed}; " +
              ", ".join(f"{k} {v:.3f} ms" + (f" ({v / best:.2f}x torch)" if best and not k.startswith("torch") else "")
                        for k, v in ms.items()))


if __name__ == "__main__":
    main()

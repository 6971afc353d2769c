"""What the per-kernel launch lock costs (issue 16): `c = a + b` on tiny tensors, host time per op.

    python benchmarks/bench_launch_lock.py [--device pocl] [--reps 9] [--ops 2000]

Issue 16's launches hold the kernel's lock across set-args and enqueue (backend/programs.Kernel). This
times the same small op (64 floats, so the host side is all there is) with that lock and with the lock
bypassed (pyopencl's kernel called directly, which is not thread-safe), the two alternating rounds, and
prints the medians of microseconds per op and their difference.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

import clnet
from clnet.backend import programs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="pocl")
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--ops", type=int, default=2000)
    args = ap.parse_args(argv)
    dev = clnet.device(args.device)
    a = clnet.tensor(np.ones(64, np.float32), device=dev)
    b = clnet.tensor(np.ones(64, np.float32), device=dev)
    (a + b).numpy()
    locked = programs.Kernel.__call__

    def unlocked(self, queue, global_size, local_size, *args, **kwargs):
        return self.cl_kernel(queue, global_size, local_size, *args, **kwargs)

    times = {"with the lock": [], "lock bypassed": []}
    for _ in range(args.reps):
        for name, call in ((("with the lock", locked), ("lock bypassed", unlocked)) if _ % 2 else (("lock bypassed", unlocked), ("with the lock", locked))):
            programs.Kernel.__call__ = call
            dev.synchronize()
            t0 = time.perf_counter()
            for _ in range(args.ops):
                c = a + b
            dev.synchronize()
            times[name].append((time.perf_counter() - t0) / args.ops * 1e6)
            del c
    programs.Kernel.__call__ = locked
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"c = a + b, 64 floats on {dev.describe()}: median of {args.reps} rounds of {args.ops} ops")
    for k, v in med.items():
        print(f"  {k:15s} {v:7.2f} us per op")
    print(f"  the lock costs {med['with the lock'] - med['lock bypassed']:.2f} us per op "
          f"({(med['with the lock'] / med['lock bypassed'] - 1) * 100:+.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

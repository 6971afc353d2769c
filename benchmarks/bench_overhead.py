"""Host cost per op: the main thread's CPU microseconds to issue one op on small tensors (clnet vs PyTorch).

Small shapes make the device work negligible, so what is left is Python + enqueueing. CPU time of the
calling thread (time.thread_time) is used instead of wall time: on our shared 2-core machine wall time
mostly measures waiting for a core. The device is synchronised only between batches, never per op.
The floor is a prepared kernel enqueued through pyopencl with no clnet code around it.

    python benchmarks/bench_overhead.py
    python benchmarks/bench_overhead.py --device pocl --ops 2000
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from common import header, load_torch, median, open_device, table

import clnet  # noqa: E402


def host_us(fn, dev_sync, ops: int, rounds: int = 5) -> float:
    """Median main-thread CPU µs per call over `rounds` batches of `ops` calls."""
    for _ in range(20):
        fn()
    dev_sync()
    per = []
    for _ in range(rounds):
        t0 = time.thread_time()
        for _ in range(ops):
            fn()
        per.append((time.thread_time() - t0) / ops * 1e6)
        dev_sync()
    return median(per)


def cases(dev, torch):
    from clnet.ops import elementwise as E
    rng = np.random.default_rng(0)
    a_np, b_np = rng.standard_normal((64, 100), dtype=np.float32), rng.standard_normal((64, 100), dtype=np.float32)
    w_np = rng.standard_normal((100, 10), dtype=np.float32)
    a, b, w = (clnet.tensor(x, device=dev) for x in (a_np, b_np, w_np))
    g = clnet.tensor(a_np, device=dev, requires_grad=True)
    c = a + b
    plan = next(p for k, p in E._PLANS.items() if k[1] == "v0 + v1" and k[0] is dev)
    kern, q = plan.kern, dev.queue

    def floor():
        kern(q, plan.gsize, plan.lsize, plan.n, c._buf, 0, a._buf, 0, b._buf, 0)

    def backward_two_nodes():
        (g * b).sum().backward()
    out = {
        "pyopencl enqueue (floor)": (floor, None),
        "a + b": (lambda: a + b, "add"),
        "a * 2.0": (lambda: a * 2.0, "mul_scalar"),
        "a.relu()": (lambda: a.relu(), "relu"),
        "a += b": (lambda: a.add_(b), "add_"),
        "a @ w (64x100x10)": (lambda: a @ w, "mm"),
        "a.sum()": (lambda: a.sum(), "sum"),
        "a.sum(dim=0)": (lambda: a.sum(dim=0), "sum0"),
        "g * b (records a node)": (lambda: g * b, "mul_grad"),
        "(g * b).sum().backward()": (backward_two_nodes, "backward"),
    }
    if torch is None:
        return out, {}
    ta, tb, tw = (torch.from_numpy(x) for x in (a_np, b_np, w_np))
    tg = torch.tensor(a_np, requires_grad=True)

    def t_backward():
        (tg * tb).sum().backward()
    peers = {"add": lambda: ta + tb, "mul_scalar": lambda: ta * 2.0, "relu": lambda: ta.relu(),
             "add_": lambda: ta.add_(tb), "mm": lambda: ta @ tw, "sum": lambda: ta.sum(),
             "sum0": lambda: ta.sum(dim=0), "mul_grad": lambda: tg * tb, "backward": t_backward}
    return out, peers


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None)
    ap.add_argument("--ops", type=int, default=1000, help="calls per timed batch")
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args(argv)
    dev = open_device(args.device)
    torch = load_torch(not args.no_torch)
    if torch is not None:
        torch.set_num_threads(1)
    header("host cost per op, main-thread CPU µs (small tensors: 64x100 float32)", dev, torch)
    ours, peers = cases(dev, torch)
    rows = []
    for name, (fn, key) in ours.items():
        row = {"op": name, "clnet µs": host_us(fn, dev.synchronize, args.ops)}
        if key in peers:
            row["torch µs"] = host_us(peers[key], lambda: None, args.ops)
        rows.append(row)
    table(rows, ["op", "clnet µs"] + (["torch µs"] if peers else []), {"clnet µs": "{:.1f}", "torch µs": "{:.1f}"})


if __name__ == "__main__":
    main()

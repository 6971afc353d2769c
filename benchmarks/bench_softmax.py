"""Softmax and fused cross-entropy: one work-item per row vs one work-group per row, and vs PyTorch CPU.

Times the kernels of kernels/softmax.cl.mako for each row shape with both variants forced, so the
choice in clnet.ops.nn.row_group_size can be checked against measurement on a device; also times
the fused cross-entropy forward + backward against log_softmax + nll composed, and PyTorch CPU.

    python benchmarks/bench_softmax.py --device pocl
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import clnet
import clnet.nn.functional as F
from clnet.ops import nn as ops_nn


def _time(fn, device, repeat=20):
    fn()
    device.synchronize()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(repeat):
            fn()
        device.synchronize()
        best = min(best, (time.perf_counter() - t0) / repeat)
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None)
    args = ap.parse_args(argv)
    dev = clnet.device(args.device)
    print(f"device: {dev}  reduce_wg={dev.profile.reduce_wg}  compute units={dev.compute_units}")
    shapes = [(4096, 10), (256, 1000), (64, 1000), (16, 4000), (4, 10000), (2, 50000), (1, 200000)]
    original = ops_nn.row_group_size
    print(f"{'rows x n':>14} {'per-row ms':>11} {'per-group ms':>13} {'chosen':>7} {'torch ms':>9}")
    try:
        import torch
    except ImportError:
        torch = None
    for rows, n in shapes:
        x = clnet.randn(rows, n, device=dev)
        times = {}
        for label, wg in (("row", 1), ("group", dev.profile.reduce_wg)):
            ops_nn.row_group_size = lambda device, r, nn, wg=wg: wg
            times[label] = _time(lambda: F.softmax(x, 1), dev)
        ops_nn.row_group_size = original
        chosen = "group" if original(dev, rows, n) > 1 else "row"
        tt = ""
        if torch is not None:
            tx = torch.randn(rows, n)
            t0 = time.perf_counter()
            for _ in range(20):
                torch.softmax(tx, 1)
            tt = f"{(time.perf_counter() - t0) / 20 * 1e3:9.3f}"
        print(f"{rows:>6} x {n:<6} {times['row'] * 1e3:11.3f} {times['group'] * 1e3:13.3f} {chosen:>7} {tt}")

    print("\ncross-entropy forward + backward (batch x classes)")
    for rows, n in [(64, 10), (256, 1000), (4096, 10)]:
        xs = np.random.default_rng(0).standard_normal((rows, n)).astype(np.float32)
        t = clnet.tensor(np.random.default_rng(1).integers(0, n, rows), device=dev)
        x = clnet.tensor(xs, device=dev, requires_grad=True)

        def fused():
            F.cross_entropy(x, t).backward()

        def composed():
            F.nll_loss(F.log_softmax(x, 1), t).backward()
        line = (f"{rows:>6} x {n:<6} fused {_time(fused, dev) * 1e3:8.3f} ms   "
                f"log_softmax+nll {_time(composed, dev) * 1e3:8.3f} ms")
        if torch is not None:
            tx = torch.tensor(xs, requires_grad=True)
            tt = torch.tensor(t.numpy())
            t0 = time.perf_counter()
            for _ in range(20):
                torch.nn.functional.cross_entropy(tx, tt).backward()
            line += f"   torch {(time.perf_counter() - t0) / 20 * 1e3:8.3f} ms"
        print(line)


if __name__ == "__main__":
    main()

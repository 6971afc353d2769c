"""Softmax, log_softmax, their backward and the fused cross-entropy: clnet vs PyTorch CPU, side by side.

For each shape, clnet and PyTorch (one thread per core, "torch", and one thread, "torch1") run in
alternation (median of --reps rounds, each round a batch of calls sized to about 10 ms); GB/s counts
the bytes the op must move once (softmax: read x, write y; backward: read g and y, write dx;
cross-entropy forward + backward: read x twice, write dx). clnet/torch > 1: clnet faster, taken
against the faster of the two PyTorch configurations. With --variants, clnet's kernels also run
with both row variants forced (one work-item per row, one work-group per row), to check the choice in
clnet.ops.nn.row_group_size on a device.

    python benchmarks/bench_softmax.py --device pocl
    python benchmarks/bench_softmax.py --device pocl --variants --only softmax
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from common import alternate, header, load_torch, median, open_device, table, with_torch1

import clnet  # noqa: E402
import clnet.nn.functional as F  # noqa: E402
from clnet.ops import nn as ops_nn  # noqa: E402

# (rows, n, dim): short rows as in training steps (latency), long rows, few very long rows, and the
# softmax over dim 0 (strided rows, inner > 1)
SHAPES = [(64, 10, 1), (256, 1000, 1), (4096, 10, 1), (16384, 1024, 1), (1024, 32768, 1), (16, 4000, 1),
          (2, 50000, 1), (1, 200000, 1), (4096, 1024, 0)]


def _count(fn, sync, budget=0.01):
    """How many calls of fn make about `budget` seconds (at least 1)."""
    fn()
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return max(1, min(1000, int(budget / max(time.perf_counter() - t0, 1e-7))))


def _contenders(kind, dev, x, g, t, torch):
    """{name: one call} for one op kind on the clnet tensors (and their PyTorch copies)."""
    rows, n = x.shape
    dim = 1
    if kind in ("softmax", "log_softmax"):
        fn = F.softmax if kind == "softmax" else F.log_softmax
        xt = clnet.tensor(x, device=dev)
        fns = {"clnet": lambda: fn(xt, dim)}
        if torch is not None:
            tf = torch.softmax if kind == "softmax" else torch.log_softmax
            px = torch.from_numpy(x)
            fns["torch"] = lambda: tf(px, dim)
        return fns, 8 * x.size
    if kind == "softmax_bwd":
        xt = clnet.tensor(x, device=dev)
        y = F.softmax(xt, dim)
        gt = clnet.tensor(g, device=dev)
        fns = {"clnet": lambda: ops_nn._softmax_backward(gt, y, dim, False)}
        if torch is not None:
            py = torch.softmax(torch.from_numpy(x), dim)
            pg = torch.from_numpy(g)
            fns["torch"] = lambda: torch._softmax_backward_data(pg, py, dim, torch.float32)
        return fns, 12 * x.size
    if kind == "cross_entropy":
        xt = clnet.tensor(x, device=dev, requires_grad=True)
        tt = clnet.tensor(t, device=dev)

        def run():
            F.cross_entropy(xt, tt).backward()
            xt.grad = None
        fns = {"clnet": run}
        if torch is not None:
            px = torch.from_numpy(x.copy()).requires_grad_(True)
            pt = torch.from_numpy(t)

            def run_torch():
                torch.nn.functional.cross_entropy(px, pt).backward()
                px.grad = None
            fns["torch"] = run_torch
        return fns, 12 * x.size
    raise ValueError(kind)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--only", default="softmax,log_softmax,softmax_bwd,cross_entropy",
                    help="comma-separated kinds: softmax, log_softmax, softmax_bwd, cross_entropy")
    ap.add_argument("--shapes", default=None, help="e.g. 64x10,16384x1024 (rows x n, softmax over dim 1)")
    ap.add_argument("--variants", action="store_true", help="also time both clnet row variants forced")
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args(argv)
    dev = open_device(args.device)
    torch = load_torch(not args.no_torch)
    header("softmax family: clnet vs PyTorch CPU", dev, torch)
    print(f"reduce_wg={dev.profile.reduce_wg}  vector_width={dev.profile.vector_width}  "
          f"compute units={dev.compute_units}; median of {args.reps} alternating rounds")
    shapes = SHAPES
    if args.shapes:
        shapes = [tuple(int(v) for v in s.split("x")) + (1,) for s in args.shapes.split(",")]
    rng = np.random.default_rng(0)
    original = ops_nn.row_group_size
    rows_out = []
    for kind in args.only.split(","):
        for rows, n, dim in shapes:
            if dim != 1 and kind != "softmax":
                continue
            if kind == "cross_entropy" and rows * n > 4 * 2**20:
                continue
            shape = (rows, n) if dim == 1 else (n, rows)
            x = (rng.standard_normal(shape, dtype=np.float32) * 3)
            g = rng.standard_normal(shape, dtype=np.float32)
            t = rng.integers(0, n, rows)
            if dim != 1:  # the softmax over dim 0 of an (n, rows) tensor: strided rows
                xt = clnet.tensor(x, device=dev)
                fns = {"clnet": lambda xt=xt: F.softmax(xt, 0)}
                if torch is not None:
                    px = torch.from_numpy(x)
                    fns["torch"] = lambda px=px: torch.softmax(px, 0)
                nbytes = 8 * x.size
            else:
                fns, nbytes = _contenders(kind, dev, x, g, t, torch)
            if args.variants and kind != "cross_entropy":
                for label, wg in (("row", 1), ("group", dev.profile.reduce_wg)):
                    def forced(fn=fns["clnet"], wg=wg):
                        ops_nn.row_group_size = lambda *a, **k: wg
                        try:
                            fn()
                        finally:
                            ops_nn.row_group_size = original
                    fns[f"clnet-{label}"] = forced
            if torch is not None:
                fns = with_torch1(fns)
            timed = {}
            for name, fn in fns.items():
                sync = dev.synchronize if name.startswith("clnet") else (lambda: None)
                count = _count(fn, sync)

                def batch(fn=fn, count=count, sync=sync):
                    for _ in range(count):
                        fn()
                    sync()
                timed[name] = (batch, count)
            times = alternate({k: v[0] for k, v in timed.items()}, args.reps, torch=torch)
            row = {"op": kind, "shape": f"{shape[0]}x{shape[1]}" + ("" if dim == 1 else " dim0")}
            per_call = {k: median(v) / timed[k][1] for k, v in times.items()}
            for k, s in per_call.items():
                row[f"{k} us"] = s * 1e6
            row["clnet GB/s"] = nbytes / per_call["clnet"] / 1e9
            if torch is not None:
                best = min(per_call["torch"], per_call["torch1"])
                row["torch GB/s"] = nbytes / best / 1e9
                row["clnet/torch"] = best / per_call["clnet"]
            rows_out.append(row)
            print("  " + "  ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                  flush=True)
    cols = ["op", "shape", "clnet us"]
    if args.variants:
        cols += ["clnet-row us", "clnet-group us"]
    if torch is not None:
        cols += ["torch us", "torch1 us"]
    cols += ["clnet GB/s"] + (["torch GB/s", "clnet/torch"] if torch is not None else [])
    fmt = {c: "{:.1f}" for c in cols if c.endswith("us") or c.endswith("GB/s")}
    fmt["clnet/torch"] = "{:.2f}"
    table(rows_out, cols, fmt)


if __name__ == "__main__":
    main()

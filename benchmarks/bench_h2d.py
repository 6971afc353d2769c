"""Host->device batch copies: pageable vs pinned (pin_memory=True), and copies hidden behind compute.

  copy       one batch of --mb MB through DeviceFeeder, waited for: pageable host memory, then a
             driver-allocated host-visible (pinned on NVIDIA/AMD) staging buffer; MB/s
  step       the same batch copied, then a compute-heavy step on it (--matmuls 1024^2 products), in turn:
               serial   copy batch k, then compute on it
               ahead    copy batch k+1 on the transfer queue while batch k computes (what DataLoader does
                        with workers); ideal: max(copy, compute) instead of their sum
On a CPU device (host_unified_memory) the pinned path is forced for the figure only; DataLoader skips it
there. This is the script to run on a discrete GPU:

    python benchmarks/bench_h2d.py --device nvidia --mb 64
    python benchmarks/bench_h2d.py                      # default device
"""
from __future__ import annotations

import argparse

import numpy as np

from common import alternate, header, median, open_device, table


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None)
    ap.add_argument("--mb", type=float, default=16.0, help="batch size in MB")
    ap.add_argument("--matmuls", type=int, default=2, help="1024x1024 products per step")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args(argv)
    import clnet
    from clnet.utils.data import transfer
    from clnet.utils.data.collate import HostArray

    dev = open_device(args.device)
    header(f"host->device batch copies ({args.mb:g} MB) and their overlap with compute", dev)
    n = int(args.mb * 1e6 / 4)
    batches = [np.random.default_rng(i).standard_normal(n, dtype=np.float32).view(HostArray) for i in range(2)]
    transfer.STAGE_ON_UNIFIED_MEMORY = True
    feeders = {"pageable": transfer.DeviceFeeder(dev), "pinned": transfer.DeviceFeeder(dev, pin_memory=True)}
    w = clnet.randn(1024, 1024, device=dev) * 0.03

    def copy(feeder):
        def run():
            t = feeder(batches[0])
            dev.synchronize()
            del t
        return run

    def compute(x):
        y = x[:1024 * 1024].reshape(1024, 1024)
        for _ in range(args.matmuls):
            y = y @ w
        return y.sum()

    def serial(feeder):
        def run():
            for k in range(args.steps):
                compute(feeder(batches[k % 2])).item()
        return run

    def ahead(feeder):
        def run():
            staged = feeder.stage(batches[0])
            for k in range(args.steps):
                current = feeder.hand_over(staged)
                if k + 1 < args.steps:
                    staged = feeder.stage(batches[(k + 1) % 2])
                compute(current).item()
        return run

    def compute_only():
        x = feeders["pageable"](batches[0])
        for _ in range(args.steps):
            compute(x).item()

    contenders = {}
    for name, f in feeders.items():
        contenders[f"copy {name}"] = copy(f)
        contenders[f"serial {name}"] = serial(f)
        contenders[f"ahead {name}"] = ahead(f)
    contenders["compute alone"] = compute_only
    times = alternate(contenders, args.reps, warmup=1)
    mb = n * 4 / 1e6
    c = median(times["compute alone"]) / args.steps
    rows = []
    for name, f in feeders.items():
        cp = median(times[f"copy {name}"])
        rows.append({"memory": name, "copy MB/s": mb / cp, "copy ms": cp * 1e3, "compute ms": c * 1e3,
                     "serial ms/step": median(times[f"serial {name}"]) / args.steps * 1e3,
                     "ahead ms/step": median(times[f"ahead {name}"]) / args.steps * 1e3})
    print(f"unified host/device memory: {dev.host_unified_memory}")
    table(rows, ["memory", "copy MB/s", "copy ms", "compute ms", "serial ms/step", "ahead ms/step"],
          {"copy MB/s": "{:.0f}", "copy ms": "{:.2f}", "compute ms": "{:.2f}", "serial ms/step": "{:.2f}",
           "ahead ms/step": "{:.2f}"})


if __name__ == "__main__":
    main()

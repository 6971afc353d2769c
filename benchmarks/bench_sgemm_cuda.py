"""SGEMM on an NVIDIA GPU: clnet through NVIDIA's OpenCL beside PyTorch's cuBLAS FP32 (TF32 off), one run.

    python benchmarks/bench_sgemm_cuda.py [--device nvidia] [--sizes 1024,2048,4096,64x100x1000] [--reps 10]

A size is N (an N x N x N product) or MxNxK (A[M, K] @ B[K, N]: 64x100x1000 is the lecture's thin one).
Both are checked against a float64 product on the host before timing; each figure is the median of
`reps` timed products after warm-up, each product waited for (queue.finish / cuda.synchronize).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="nvidia")
    ap.add_argument("--sizes", default="1024,2048,4096")
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args(argv)
    import clnet
    dev = clnet.device(args.device)
    try:
        import torch
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    print(f"clnet device: {dev.name} ({dev.driver_version if hasattr(dev, 'driver_version') else ''})")
    if has_cuda:
        print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}, TF32 off")
    rng = np.random.default_rng(0)
    print(f"{'M x N x K':>16} {'clnet GFLOP/s':>14} {'cuBLAS GFLOP/s':>15} {'clnet/cuBLAS':>13} {'rel err':>9}")
    for size in args.sizes.split(","):
        dims = [int(d) for d in size.lower().split("x")]
        m, n, k = dims * 3 if len(dims) == 1 else dims
        flops = 2.0 * m * n * k
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        ta, tb = clnet.tensor(a, device=dev), clnet.tensor(b, device=dev)
        ref = a[:256].astype(np.float64) @ b
        got = (ta @ tb).numpy()[:256]
        err = float(np.abs(got - ref).max() / np.abs(ref).max())
        times = []
        for i in range(args.reps + 2):
            t0 = time.perf_counter()
            y = ta @ tb
            dev.synchronize()
            if i >= 2:
                times.append(time.perf_counter() - t0)
            del y
        cl_gf = flops / statistics.median(times) / 1e9
        cu_gf = float("nan")
        if has_cuda:
            ca, cb = torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda()
            times = []
            for i in range(args.reps + 2):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                y = ca @ cb
                torch.cuda.synchronize()
                if i >= 2:
                    times.append(time.perf_counter() - t0)
            cu_gf = flops / statistics.median(times) / 1e9
        print(f"{f'{m}x{n}x{k}':>16} {cl_gf:>14.0f} {cu_gf:>15.0f} {cl_gf / cu_gf:>13.2f} {err:>9.1e}", flush=True)


if __name__ == "__main__":
    main()

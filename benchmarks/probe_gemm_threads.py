"""The training steps' GEMMs on the CPU device with 1 and with 2 of PoCL's worker threads, beside PyTorch's
same product on 2 threads: what the small GEMMs of the lecture's two-layer step gain from the second core.

PoCL's thread count is fixed when the driver loads, so each count runs in a child process
(POCL_MAX_PTHREAD_COUNT); each child times `--launches` back-to-back products between waits, `--rounds`
times, and prints the median. PyTorch runs in this process. Ratios of runs in different processes are
only as good as the machine is quiet: repeat the script to see the spread.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/probe_gemm_threads.py
    python benchmarks/probe_gemm_threads.py --idle-spinner   # a SCHED_IDLE busy loop beside the children

Below the products, a synthetic kernel (64 work-groups of 8 items, each a dependent multiply-add loop, so
its time is pure compute) at several lengths shows from what kernel time on the second worker helps.
--idle-spinner runs a busy loop at SCHED_IDLE priority (it only gets a CPU nothing else wants) while the
children run: it keeps idle virtual CPUs from halting, to tell the VM's wake-up apart from PoCL's
scheduling.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from common import header, load_torch, median, open_device, table

# name -> (A's stored shape, B's shape, A transposed): the products of the steps in bench_compile.py
SHAPES = {
    "two-layer x @ w1 (64x100, K 1000)": ((64, 1000), (1000, 100), False),
    "two-layer x.T @ g (1000x100, K 64)": ((64, 1000), (64, 100), True),
    "MLP x @ W1.T-packed (256x512, K 784)": ((256, 784), (784, 512), False),
    "MLP g.T @ h (512x512, K 256)": ((256, 512), (256, 512), True),
}


def _operands(shape, rng):
    sa, sb, ta = shape
    return rng.standard_normal(sa).astype(np.float32), rng.standard_normal(sb).astype(np.float32), ta


SPIN_LENGTHS = (200, 400, 800, 1600, 3200)   # inner steps of the synthetic kernel
SPIN_SOURCE = """__kernel void spin(__global float *a, const int n) {
    const int i = get_global_id(0);
    float x = a[i];
    for (int k = 0; k < n; ++k) x = x * 0.9999f + 0.0001f;
    a[i] = x;
}"""


def _spin_times(dev, rounds):
    """Median µs of the synthetic kernel (64 groups x 8 items) at each length, 5 launches between waits."""
    import pyopencl as cl
    prg = cl.Program(dev.context, SPIN_SOURCE).build()
    kern = cl.Kernel(prg, "spin")
    buf = cl.Buffer(dev.context, cl.mem_flags.READ_WRITE, 4 * 512)
    cl.enqueue_fill_buffer(dev.queue, buf, np.float32(0.5), 0, 4 * 512)
    out = {}
    for n in SPIN_LENGTHS:
        times = []
        for _ in range(rounds):
            dev.queue.finish()
            t0 = time.perf_counter()
            for _ in range(5):
                kern(dev.queue, (512,), (8,), buf, np.int32(n))
            dev.queue.finish()
            times.append((time.perf_counter() - t0) / 5)
        out[str(n)] = median(times[2:]) * 1e6
    return out


def child(args):
    """Time each product on clnet's device (this process's PoCL thread count); print JSON {name: ms}."""
    import clnet
    dev = open_device(args.device)
    rng = np.random.default_rng(0)
    out = {}
    for name, shape in SHAPES.items():
        a, b, ta = _operands(shape, rng)
        A = clnet.tensor(a, device=dev)
        A = A.T if ta else A
        B = clnet.tensor(b, device=dev)
        ref = (a.T if ta else a).astype(np.float64) @ b
        y = A @ B
        err = float(np.abs(y.numpy() - ref).max() / np.abs(ref).max())
        assert err < 1e-4, f"{name}: relative error {err}"
        times = []
        for _ in range(args.rounds):
            dev.synchronize()
            t0 = time.perf_counter()
            for _ in range(args.launches):
                A @ B
            dev.synchronize()
            times.append((time.perf_counter() - t0) / args.launches)
        out[name] = median(times[2:]) * 1e3
    out["spin"] = _spin_times(dev, args.rounds)
    print(json.dumps(out))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None)
    ap.add_argument("--rounds", type=int, default=25)
    ap.add_argument("--launches", type=int, default=10)
    ap.add_argument("--idle-spinner", action="store_true", help="a SCHED_IDLE busy loop beside the children")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args)
    torch = load_torch()
    header("GEMMs of the training steps with 1 and 2 PoCL threads", open_device(args.device), torch)
    ms = {}
    spinner = None
    if args.idle_spinner:
        spinner = subprocess.Popen([sys.executable, "-c", "import os\nos.sched_setscheduler(0, os.SCHED_IDLE, "
                                    "os.sched_param(0))\nwhile True: pass"])
        print("with a SCHED_IDLE busy loop beside the children")
    try:
        ms = _children(args)
    finally:
        if spinner is not None:
            spinner.kill()
    _report(args, ms, torch)


def _children(args):
    ms = {}
    for threads in (1, 2):
        env = dict(os.environ, POCL_MAX_PTHREAD_COUNT=str(threads))
        cmd = [sys.executable, __file__, "--child", "--rounds", str(args.rounds), "--launches", str(args.launches)]
        if args.device:
            cmd += ["--device", args.device]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        ms[threads] = json.loads(res.stdout.strip().splitlines()[-1])
    return ms


def _report(args, ms, torch):
    rows = []
    rng = np.random.default_rng(0)
    for name, shape in SHAPES.items():
        a, b, ta = _operands(shape, rng)
        flop = 2 * (a.shape[1] if ta else a.shape[0]) * b.shape[1] * b.shape[0]
        row = {"product": name, "1 thread ms": ms[1][name], "2 threads ms": ms[2][name],
               "2-thread speed-up": ms[1][name] / ms[2][name], "GFLOP/s (2 thr)": flop / ms[2][name] / 1e6}
        if torch is not None:
            ta_, tb_ = torch.from_numpy(a), torch.from_numpy(b)
            ta_ = ta_.T if ta else ta_
            times = []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                for _ in range(args.launches):
                    ta_ @ tb_
                times.append((time.perf_counter() - t0) / args.launches)
            row["torch ms"] = median(times[2:]) * 1e3
            row["clnet / torch"] = ms[2][name] / row["torch ms"]
        rows.append(row)
    table(rows, list(rows[0]), {"1 thread ms": "{:.3f}", "2 threads ms": "{:.3f}", "2-thread speed-up": "{:.2f}x",
                                "GFLOP/s (2 thr)": "{:.0f}", "torch ms": "{:.3f}", "clnet / torch": "{:.2f}x"})
    print()
    rows = [{"synthetic kernel, inner steps": n, "1 thread us": ms[1]["spin"][n], "2 threads us": ms[2]["spin"][n],
             "2-thread speed-up": ms[1]["spin"][n] / ms[2]["spin"][n]} for n in ms[1]["spin"]]
    table(rows, list(rows[0]), {"1 thread us": "{:.0f}", "2 threads us": "{:.0f}", "2-thread speed-up": "{:.2f}x"})


if __name__ == "__main__":
    main()

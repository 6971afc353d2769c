"""Data-parallel scaling over MPI: 2 ranks of one core each against 1 rank on the same global batch.

Each configuration is an MPI job started by this script (mpiexec, one PoCL thread per rank with
POCL_MAX_PTHREAD_COUNT=1, each rank bound to its own core): DistributedDataParallel training of
  mlp   784-512-512-10, ReLU, cross-entropy, Adam, global batch 256 (669,706 parameters)
  cnn   the digits CNN of examples/train_digits_cnn.py on 8x8 digits, Adam, global batch 64 (5,994 parameters)
for --steps timed steps after warm-up; a step ends with loss.item(). Reported: ms per step, samples per
second, scaling efficiency = throughput(2 ranks) / (2 x throughput(1 rank)), the gradient bytes each rank
all-reduces per step (the buckets, = 4 bytes x parameters), how long one all-reduce of that volume takes
alone (host buffers, the same two ranks), and the "tail": how long the main thread waited after its
backward walk for the last bucket's averaged gradients (the device finishing backward's queued kernels,
the copies, and whatever all-reduce backward did not hide).
The "1 rank, 2 cores" row is context: the same machine used by one process's thread pool instead.

    python benchmarks/bench_ddp_scaling.py                   # both models, 3 configurations
    python benchmarks/bench_ddp_scaling.py --only mlp --steps 30
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GLOBAL_BATCH = {"mlp": 256, "cnn": 64}


# --- inside one rank ---------------------------------------------------------------------------------------
def _model(kind, nn):
    if kind == "mlp":
        return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(32 * 2 * 2, 10))


def worker(kind, steps, warmup):
    import clnet
    import clnet.distributed as dist
    from clnet import nn
    from clnet.nn.parallel import DistributedDataParallel as DDP

    dist.init_process_group("mpi")
    rank, world = dist.get_rank(), dist.get_world_size()
    clnet.manual_seed(0)
    model = DDP(_model(kind, nn))
    opt = clnet.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    per_rank = GLOBAL_BATCH[kind] // world
    rng = np.random.default_rng(rank)
    shape = (per_rank, 784) if kind == "mlp" else (per_rank, 1, 8, 8)
    batches = [(clnet.tensor(rng.standard_normal(shape, dtype=np.float32)), clnet.tensor(rng.integers(0, 10, per_rank)))
               for _ in range(4)]
    reducer = model.reducer
    waited = [0.0]
    finish = reducer._finish

    def timed_finish():
        t = time.perf_counter()
        finish()
        waited[0] += time.perf_counter() - t
    reducer._finish = timed_finish

    def step(i):
        x, y = batches[i % len(batches)]
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()
    for i in range(warmup):
        step(i)
    dist.barrier()
    waited[0] = 0.0
    t = time.perf_counter()
    for i in range(steps):
        step(i)
    dist.barrier()
    elapsed = time.perf_counter() - t
    allreduce = _allreduce_alone(dist, reducer.bytes_per_step // 4)
    if rank == 0:
        print(json.dumps({"ms_per_step": elapsed / steps * 1e3, "samples_per_s": steps * GLOBAL_BATCH[kind] / elapsed,
                          "bytes_per_step": reducer.bytes_per_step, "buckets": len(reducer.buckets),
                          "wait_ms_per_step": waited[0] / steps * 1e3, "allreduce_ms": allreduce * 1e3}))
    dist.destroy_process_group()


def _allreduce_alone(dist, n, reps=10):
    """Median seconds of one host all-reduce of n float32 (the step's gradient volume, without the model)."""
    from clnet.distributed import process_group
    group = process_group.default_group()
    MPI = process_group._mpi()
    buf = np.ones(n, np.float32)
    times = []
    for _ in range(reps):
        dist.barrier()
        t = time.perf_counter()
        group.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


# --- the driver ----------------------------------------------------------------------------------------------
def run_job(kind, ranks, threads, steps, warmup, mpiexec):
    env = dict(os.environ, POCL_MAX_PTHREAD_COUNT=str(threads), PYTHONPATH=str(ROOT))
    cmd = [mpiexec, "-n", str(ranks), "--allow-run-as-root", "--oversubscribe"]
    cmd += ["--bind-to", "core", "--map-by", "core"] if threads == 1 else ["--bind-to", "none"]
    cmd += [sys.executable, __file__, "--worker", kind, "--steps", str(steps), "--warmup", str(warmup)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode or not lines:
        raise RuntimeError(f"job failed ({' '.join(cmd)}):\n{out.stderr[-3000:]}")
    return json.loads(lines[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("mlp", "cnn"), default=None)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--reps", type=int, default=3, help="jobs per configuration (median)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.steps, args.warmup)
        return
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from common import header, table
    from clnet.distributed.launch import find_mpiexec
    mpiexec = find_mpiexec()
    header("DistributedDataParallel scaling: 2 ranks x 1 core vs 1 rank, same global batch")
    configs = [("1 rank, 1 core", 1, 1), ("2 ranks, 1 core each", 2, 1), ("1 rank, 2 cores", 1, 2)]
    for kind in ([args.only] if args.only else ["mlp", "cnn"]):
        results = {}
        for _ in range(args.reps):  # configurations in alternation, so each sees the same load
            for name, ranks, threads in configs:
                results.setdefault(name, []).append(run_job(kind, ranks, threads, args.steps, args.warmup, mpiexec))
        base = np.median([r["samples_per_s"] for r in results["1 rank, 1 core"]])
        rows = []
        for name, ranks, _ in configs:
            rs = results[name]
            sps = float(np.median([r["samples_per_s"] for r in rs]))
            rows.append({"config": name, "ms/step": float(np.median([r["ms_per_step"] for r in rs])),
                         "samples/s": sps, "speed-up": sps / base, "efficiency": sps / base / ranks,
                         "allreduce KiB/step": rs[0]["bytes_per_step"] / 1024 if ranks > 1 else None,
                         "allreduce alone ms": float(np.median([r["allreduce_ms"] for r in rs])) if ranks > 1 else None,
                         "tail ms/step": float(np.median([r["wait_ms_per_step"] for r in rs])) if ranks > 1 else None})
        print(f"\n{kind}: global batch {GLOBAL_BATCH[kind]}, {args.steps} steps per job, median of {args.reps} jobs, "
              f"load average {os.getloadavg()[0]:.1f}")
        table(rows, ["config", "ms/step", "samples/s", "speed-up", "efficiency", "allreduce KiB/step",
                     "allreduce alone ms", "tail ms/step"],
              {"ms/step": "{:.1f}", "samples/s": "{:.0f}", "speed-up": "{:.2f}", "efficiency": "{:.2f}",
               "allreduce KiB/step": "{:.0f}", "allreduce alone ms": "{:.2f}", "tail ms/step": "{:.1f}"})


if __name__ == "__main__":
    main()

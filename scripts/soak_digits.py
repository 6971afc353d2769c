"""Long-run soak: train the digits CNN for many steps and show that memory stays flat.

The model is examples/train_digits_cnn.py's (two Conv2d-ReLU-MaxPool blocks and a Linear, Adam,
cross-entropy, NCHW 1x8x8 scans from scikit-learn). Every `--report-every` steps it prints the
device memory clnet holds (device.pool: bytes in live buffers and bytes the driver sees, live +
cached) and the process's resident set size (VmRSS from /proc/self/status). At the end it compares
the last report with the first one after warm-up and exits 1 if either grew by more than the
tolerance, so a leak (tape nodes, buffers, kernel caches, Python objects) shows as a failure.

    python scripts/soak_digits.py                       # 10,000 steps, a report every 1,000
    python scripts/soak_digits.py --steps 2000 --report-every 200 --device pocl

Not a unit test: it runs for minutes to hours. Record a run in docs/soak.md.
"""
from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))   # run from a checkout without installing clnet

import clnet  # noqa: E402
from clnet.nn import functional as F  # noqa: E402


def _example():
    """examples/train_digits_cnn.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("train_digits_cnn", ROOT / "examples" / "train_digits_cnn.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def rss_bytes() -> int:
    """Current resident set size of this process (Linux /proc; falls back to the peak from getrusage)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _malloc_trim():
    import ctypes
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        sys.exit("--malloc-trim needs glibc (Linux)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--report-every", type=int, default=1_000)
    ap.add_argument("--warmup", type=int, default=None,
                    help="steps before the baseline report (default: one report interval)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--device", default=None, help="clnet device spec (default: clnet's default device)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sync-every", type=int, default=50,
                    help="read the loss every N steps so the host never runs far ahead of the device")
    ap.add_argument("--rss-tolerance-mib", type=float, default=8.0,
                    help="allowed RSS growth from the baseline to the end")
    ap.add_argument("--device-tolerance-mib", type=float, default=0.0,
                    help="allowed growth of device memory held (pool) from the baseline to the end")
    ap.add_argument("--malloc-trim", action="store_true",
                    help="call glibc's malloc_trim(0) before each RSS reading, so memory the C allocator keeps "
                         "after frees (fragmentation) is not mistaken for a leak")
    args = ap.parse_args(argv)

    ex = _example()
    device = clnet.device(args.device) if args.device else clnet.default_device()
    clnet.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    x_train, y_train, _, _ = ex.load_digits_nchw(args.seed)
    model = ex.make_model(device)
    opt = clnet.optim.Adam(model.parameters(), lr=args.lr)
    model.train()
    pool = device.pool
    trim = _malloc_trim() if args.malloc_trim else None
    warmup = args.report_every if args.warmup is None else args.warmup
    print(f"soak: {args.steps} steps of the digits CNN (batch {args.batch_size}, Adam lr {args.lr}) on {device}")
    print(f"python {sys.version.split()[0]}, clnet {clnet.__version__}, pid {os.getpid()}"
          + (", malloc_trim(0) before each RSS reading" if trim else ""))
    print(f"{'step':>7} {'loss':>9} {'pool live (B)':>14} {'pool held (B)':>14} {'host RSS (KiB)':>15} {'s/step':>8}",
          flush=True)

    order, pos = rng.permutation(len(x_train)), 0
    rows, loss_sum, loss_n = [], 0.0, 0
    t_last, step_last = time.perf_counter(), 0
    for step in range(1, args.steps + 1):
        if pos + args.batch_size > len(order):       # a new epoch: reshuffle, never a ragged batch
            order, pos = rng.permutation(len(x_train)), 0
        idx = order[pos:pos + args.batch_size]
        pos += args.batch_size
        xb = clnet.tensor(x_train[idx], device=device)
        yb = clnet.tensor(y_train[idx], device=device)
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % args.sync_every == 0 or step % args.report_every == 0 or step == 1:
            loss_sum += loss.item()                  # waits for the device
            loss_n += 1
        del xb, yb, loss
        if step == 1 or step % args.report_every == 0 or step == warmup:
            device.synchronize()
            if trim is not None:
                trim(0)
            now = time.perf_counter()
            per_step = (now - t_last) / max(step - step_last, 1)
            t_last, step_last = now, step
            row = {"step": step, "loss": loss_sum / max(loss_n, 1), "live": pool.active_bytes,
                   "held": pool.bytes_in_use, "rss": rss_bytes()}
            loss_sum, loss_n = 0.0, 0
            rows.append(row)
            print(f"{step:7d} {row['loss']:9.2e} {row['live']:14d} {row['held']:14d} {row['rss'] // 1024:15d} "
                  f"{per_step:8.4f}", flush=True)

    base = next((r for r in rows if r["step"] >= warmup), rows[0])
    last = rows[-1]
    gc_found = gc.collect()   # after the last report: objects a cycle kept alive would show up here
    grow_live, grow_held, grow_rss = (last[k] - base[k] for k in ("live", "held", "rss"))
    print(f"from step {base['step']} to {last['step']}: pool live {grow_live:+d} B, pool held {grow_held:+d} B, "
          f"host RSS {grow_rss / 2**20:+.2f} MiB; gc.collect() afterwards found {gc_found} objects")
    ok = (grow_held <= args.device_tolerance_mib * 2**20 and grow_live <= args.device_tolerance_mib * 2**20
          and grow_rss <= args.rss_tolerance_mib * 2**20)
    print("FLAT" if ok else "GREW", f"(tolerances: device {args.device_tolerance_mib} MiB, "
          f"RSS {args.rss_tolerance_mib} MiB)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

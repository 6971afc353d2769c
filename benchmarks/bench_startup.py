"""Start-up to the first finished training step, in fresh processes: cold (empty caches) and warm.

Each run is a new Python process that imports clnet, opens the device, builds the MLP 784-512-512-10
with clnet.nn defaults, Adam and a random batch of 256, runs one training step (cross-entropy, backward,
Adam) and waits for its loss; it reports when each phase ended. "cold" points CLNET_CACHE_DIR and
POCL_CACHE_DIR at new empty directories (every kernel is compiled); "warm" runs again on the caches the
cold run filled, once clnet's background writer has stored the binaries (on PoCL it does so after the cold
process exits; its time is printed) and the cold run's background measurement of the CPU implementations
(which starts when it exits) has finished, so that no run shares the machine with either. PyTorch CPU runs the same program as a reference (it has no kernel cache).
"cleared" runs once more after emptying the kernel caches (clnet's binaries and compiled templates,
PoCL's cache) but keeping what the cold run learnt about the machine (build verdicts, the calibration of
its OpenCL implementations): a new process after `clnet cache clear` or a clnet upgrade, on a machine
clnet has run on before. Cold, warm, cleared and torch runs alternate. Targets: the first step under 3 s
cold and under 0.3 s warm.

    python benchmarks/bench_startup.py --reps 3
    python benchmarks/bench_startup.py --device pocl --keep     # keep the cache directories
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, header, median, table

# The timed part, the same for both frameworks: one step, its loss read back (the wait), a second step.
# Each child's prologue defines model, opt, x, y, F, t0, t_import, t_device, t_setup, c_setup, built().
CHILD_STEPS = r"""
def step():
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()
l1 = step()
t_first = time.perf_counter()
c_first = time.process_time()
l2 = step()
t_second = time.perf_counter()
print(json.dumps(dict(imp=t_import - t0, device=t_device - t_import, setup=t_setup - t_device,
                      first=t_first - t_setup, second=t_second - t_first, to_first=t_first - t0,
                      cpu_first=c_first - c_setup, cpu_to_first=c_first,
                      programs=built(), loss=l1, dev=DEV)))
"""

CHILD_CLNET = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import clnet
from clnet import nn
from clnet.nn import functional as F
from clnet.backend.programs import built_count as built
t_import = time.perf_counter()
dev = clnet.device(sys.argv[1]) if sys.argv[1] else clnet.default_device()
dev.queue
DEV = dev.describe()
t_device = time.perf_counter()
model = nn.Sequential(nn.Linear(784, 512, device=dev), nn.ReLU(), nn.Linear(512, 512, device=dev), nn.ReLU(),
                      nn.Linear(512, 10, device=dev))
opt = clnet.optim.Adam(model.parameters(), lr=1e-3)
rng = np.random.default_rng(0)
x = clnet.tensor(rng.standard_normal((256, 784), dtype=np.float32), device=dev)
y = clnet.tensor(rng.integers(0, 10, 256), device=dev)
dev.synchronize()
t_setup = time.perf_counter()
c_setup = time.process_time()
""" + CHILD_STEPS

CHILD_TORCH = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
built = lambda: 0  # noqa: E731  (no kernel cache to count)
DEV = "cpu"
t_import = time.perf_counter()
t_device = time.perf_counter()
model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
rng = np.random.default_rng(0)
x = torch.from_numpy(rng.standard_normal((256, 784), dtype=np.float32))
y = torch.from_numpy(rng.integers(0, 10, 256))
t_setup = time.perf_counter()
c_setup = time.process_time()
""" + CHILD_STEPS

KEYS = ("imp", "device", "setup", "first", "second", "to_first", "wall", "cpu_first", "cpu_to_first")


def run_child(code: str, device: str, env: dict) -> dict:
    """Run one fresh process; its report plus `wall`: process start to exit, seen from here."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, device], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=600)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    report["wall"] = wall
    return report


def wait_for_writer(cache: str, timeout: float = 600.0) -> float:
    """Seconds until the binaries a cold run left to clnet's background writer are on disk
    (clnet.backend.programs: on PoCL they are written after the process exits); "warm" means after that."""
    from clnet.backend import binary_writer
    t0 = time.perf_counter()
    while binary_writer.pending_binaries(Path(cache)) and time.perf_counter() - t0 < timeout:
        time.sleep(0.05)
    return time.perf_counter() - t0


def wait_for_calibration(cache: str, timeout: float = 900.0) -> float:
    """Seconds until the background measurement of the CPU implementations that a cold run started (it
    begins once that run has exited: clnet/calibrate.py) has stored its scores, so that no later run of
    this benchmark shares the machine with it."""
    from clnet.backend import calibration
    marker = Path(cache) / calibration.pending_path().name
    t0 = time.perf_counter()
    while marker.exists() and time.perf_counter() - t0 < timeout:
        time.sleep(0.1)
    return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="", help="clnet device (default: clnet's default)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the temporary cache directories")
    args = ap.parse_args(argv)

    import clnet
    dev = clnet.device(args.device) if args.device else clnet.default_device()
    header("start-up to the first finished MLP training step (fresh processes)", dev)
    base = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    runs = {"clnet cold": [], "clnet warm": [], "clnet cleared": []}
    have_torch = not args.no_torch
    if have_torch:
        try:
            import torch  # noqa: F401
            runs["torch"] = []
        except ImportError:
            have_torch = False
    dirs, writers = [], []
    for _ in range(args.reps):
        tmp = tempfile.mkdtemp(prefix="clnet-startup-")
        dirs.append(tmp)
        env = dict(base, CLNET_CACHE_DIR=os.path.join(tmp, "clnet"), POCL_CACHE_DIR=os.path.join(tmp, "pocl"))
        runs["clnet cold"].append(run_child(CHILD_CLNET, args.device, env))
        writer = wait_for_writer(os.path.join(tmp, "clnet"))
        calib = wait_for_calibration(os.path.join(tmp, "clnet"))
        runs["clnet warm"].append(run_child(CHILD_CLNET, args.device, env))
        writers.append(writer)
        for sub in ("clnet/binaries", "clnet/mako", "pocl"):   # kernel caches; verdicts and calibration stay
            shutil.rmtree(os.path.join(tmp, sub), ignore_errors=True)
        runs["clnet cleared"].append(run_child(CHILD_CLNET, args.device, env))
        wait_for_writer(os.path.join(tmp, "clnet"))
        if have_torch:
            runs["torch"].append(run_child(CHILD_TORCH, "", base))
        print(f"  cold {runs['clnet cold'][-1]['first']:.2f} s, warm {runs['clnet warm'][-1]['first']:.3f} s, "
              f"cleared {runs['clnet cleared'][-1]['first']:.2f} s (first step); the cold run's binaries were written {writer:.1f} s "
              f"after it exited, its calibration done {writer + calib:.1f} s after; warm device {runs['clnet warm'][-1]['dev']}", flush=True)
    if not args.keep:
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
    rows = []
    for name, reports in runs.items():
        row = {"run": name}
        for key in KEYS:
            row[key] = median([r[key] for r in reports])
        row["programs"] = reports[-1]["programs"]
        rows.append(row)
    print(f"seconds, medians of {args.reps}: imp = import clnet/torch + numpy; device = open the context; "
          "setup = model, optimizer, data;\nfirst / second = the first / second training step to its loss; "
          "to_first = interpreter start to the first loss; wall = the whole process seen from outside;\n"
          "cpu_first / cpu_to_first = CPU seconds (all threads) of the first step / from process start to its "
          "loss: on a loaded machine they show the work while wall times show the wait")
    table(rows, ["run"] + list(KEYS) + ["programs"], {k: "{:.3f}" for k in KEYS})
    print(f"binaries written by the background writer after the cold run: median {median(writers):.1f} s "
          "(the warm runs start after it; with CLNET_BINARY_CACHE=1 the cold run writes them itself)")
    cold, warm, cleared = rows[0], rows[1], rows[2]
    for row, limit in ((cold, 3.0), (cleared, 3.0), (warm, 0.3)):
        print(f"target first step {row['run'].split()[1]} < {limit} s: got {row['first']:.3f} s wall, "
              f"{row['cpu_first']:.3f} s CPU ({'met' if row['first'] < limit else 'MISSED'}); "
              f"from interpreter start {row['to_first']:.2f} s wall, {row['cpu_to_first']:.2f} s CPU")


if __name__ == "__main__":
    main()

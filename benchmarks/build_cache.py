"""Does a binary cache (clnet.backend.programs) help on top of the driver's own cache? (issue 2, programs.py)

Each configuration runs the same child process twice with fresh, empty cache directories:
'cold' (nothing cached) then 'warm' (whatever the first run cached). The child builds N distinct
elementwise kernels through clnet.backend.programs and launches each once; its time is printed.

    python benchmarks/build_cache.py                 # PoCL
    python benchmarks/build_cache.py --device rusticl   (RUSTICL_ENABLE=llvmpipe set for you)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, sys, time
import numpy as np
t0 = time.perf_counter()
import clnet
from clnet.backend import programs
from clnet.ops.elementwise import launch
dev = clnet.device(sys.argv[1])
x = clnet.tensor(np.arange(1000, dtype=np.float32), device=dev)
dev.synchronize()
t1 = time.perf_counter()
for i in range(int(sys.argv[2])):
    launch(f"v0 * {i + 2}.0f + {i}.0f", [x], x.dtype, x.dtype)   # one distinct kernel source each
dev.synchronize()
t2 = time.perf_counter()
print(json.dumps({"kernels_s": t2 - t1, "process_s": t2 - t0, "built": programs.built_count()}))
"""

CONFIGS = {
    # name: environment on top of the fresh cache directories
    "driver cache only": {"CLNET_BINARY_CACHE": "0"},
    "binary cache, driver cache off": {"CLNET_BINARY_CACHE": "1", "POCL_KERNEL_CACHE": "0",
                                         "MESA_SHADER_CACHE_DISABLE": "true"},
    "binary + driver cache, stored at build": {"CLNET_BINARY_CACHE": "1"},
    "binary + driver cache, stored after exit (PoCL default)": {"CLNET_BINARY_CACHE": "later"},
    "no cache": {"CLNET_BINARY_CACHE": "0", "POCL_KERNEL_CACHE": "0", "MESA_SHADER_CACHE_DISABLE": "true"},
}


def run_child(device: str, n: int, env: dict) -> dict:
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", CHILD, device, str(n)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def wait_for_writer(cache: str, timeout: float = 600.0) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from clnet.backend import binary_writer
    t0 = time.perf_counter()
    while binary_writer.pending_binaries(Path(cache)) and time.perf_counter() - t0 < timeout:
        time.sleep(0.05)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="pocl")
    ap.add_argument("--kernels", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=2, help="repetitions per configuration (best is shown)")
    args = ap.parse_args(argv)
    root = str(Path(__file__).resolve().parents[1])  # this checkout's clnet, wherever the script runs from
    base = dict(os.environ, PYTHONPATH=os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    if "rusticl" in args.device or "llvmpipe" in args.device:
        base.setdefault("RUSTICL_ENABLE", "llvmpipe")
    print(f"{args.kernels} elementwise kernels on {args.device}: build + first launch, seconds (best of "
          f"{args.repeat})")
    print(f"{'configuration':56s} {'cold':>8s} {'warm':>8s}")
    for name, extra in CONFIGS.items():
        cold, warm = [], []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                env = dict(base, XDG_CACHE_HOME=tmp, POCL_CACHE_DIR=os.path.join(tmp, "pocl"),
                           CLNET_CACHE_DIR=os.path.join(tmp, "clnet"),
                           MESA_SHADER_CACHE_DIR=os.path.join(tmp, "mesa"), **extra)
                cold.append(run_child(args.device, args.kernels, env)["kernels_s"])
                wait_for_writer(os.path.join(tmp, "clnet"))  # "later": binaries are written after exit
                warm.append(run_child(args.device, args.kernels, env)["kernels_s"])
        print(f"{name:56s} {min(cold):8.2f} {min(warm):8.2f}")


if __name__ == "__main__":
    t = time.perf_counter()
    main()
    print(f"(total {time.perf_counter() - t:.0f} s)")

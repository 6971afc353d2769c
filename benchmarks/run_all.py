"""Run every side-by-side benchmark, one after another, and keep the whole output in one log.

Each script runs in its own process (clnet, numpy, PyTorch, tinygrad and CLBlast alternating inside it);
numpy's figures need OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset, so this runner drops them from the
scripts' environment (and only there). BENCHMARKS.md is written from such a log.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/run_all.py
    python benchmarks/run_all.py --quick                 # small sizes, a few minutes: checks that all run
    python benchmarks/run_all.py --only training_steps,startup --log /tmp/bench.txt
"""
from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import time
from pathlib import Path

from common import OPENBLAS_VARS

HERE = Path(__file__).resolve().parent

# name -> (script, full arguments, quick arguments, takes --device)
SUITE = {
    "elementwise": ("bench_elementwise.py", [], ["--n", "1048576", "--reps", "3"], True),
    "overhead": ("bench_overhead.py", [], ["--ops", "200"], True),
    "training_steps": ("bench_training_steps.py", [], ["--reps", "3"], True),
    "startup": ("bench_startup.py", ["--reps", "3"], ["--reps", "1"], True),
    "matmul": ("bench_matmul.py", ["--sizes", "256,512,1024,2048,4096", "--reps", "5"],
               ["--sizes", "256,512", "--reps", "3"], True),
    "sgemm_peers": ("bench_sgemm_peers.py", ["--sizes", "256,512,1024,2048"], ["--sizes", "256,512", "--reps", "3"],
                    True),
    "reduce": ("bench_reduce.py", [], ["--rounds", "3", "--reps", "3", "--n", "1048576"], True),
    "softmax": ("bench_softmax.py", [], [], True),
    "digits_cnn": ("bench_digits_cnn.py", ["--epochs", "5"], ["--epochs", "1"], True),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default=",".join(SUITE))
    ap.add_argument("--log", default=None, help="where to write the output (default: benchmarks/results/DATE.txt)")
    args = ap.parse_args(argv)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H%M")
    log = Path(args.log) if args.log else HERE / "results" / f"{stamp}{'_quick' if args.quick else ''}.txt"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    dropped = [k for k in OPENBLAS_VARS if env.pop(k, None) is not None]
    # the checkout's clnet, also for scripts that expect an installed one
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    failed = []
    with open(log, "w") as out:
        def emit(text):
            sys.stdout.write(text)
            sys.stdout.flush()
            out.write(text)
            out.flush()
        if dropped:
            emit(f"(dropped {', '.join(dropped)} from the benchmarks' environment: they slow numpy down)\n")
        for name in args.only.split(","):
            script, full, quick, takes_device = SUITE[name]
            cmd = [sys.executable, str(HERE / script)] + (quick if args.quick else full)
            if takes_device and args.device:
                cmd += ["--device", args.device]
            emit(f"\n$ {' '.join(['python', 'benchmarks/' + script] + cmd[2:])}\n")
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                    cwd=HERE.parent)
            for line in proc.stdout:
                if "PlatformSkippedWarning" in line or line.strip() == "devs = all_devices()":
                    continue  # the platform-skipped warning repeats in every script
                emit(line)
            code = proc.wait()
            emit(f"[{name}: exit {code}, {time.perf_counter() - t0:.0f} s]\n")
            if code:
                failed.append(name)
    print(f"\nlog: {log}" + (f"\nFAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

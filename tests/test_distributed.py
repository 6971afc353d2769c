"""clnet.distributed without a running job: the launcher, the per-rank environment, and whole 2-rank jobs
started with mpiexec (a rank that raises fails the job fast; a stuck rank times out; `clnet launch`)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

import clnet.distributed as dist
from clnet.distributed import launch, run

try:
    MPIEXEC = launch.find_mpiexec()
except FileNotFoundError:
    MPIEXEC = None
try:
    import mpi4py  # noqa: F401
    HAVE_MPI4PY = True
except ImportError:
    HAVE_MPI4PY = False

# whole jobs (8-15 s each on a loaded 2-core machine): the PoCL stage runs them, rusticl's skips them
needs_mpi = pytest.mark.skipif(MPIEXEC is None or not HAVE_MPI4PY,
                               reason="needs mpi4py and an mpiexec: pip install 'clnet[mpi]'")


def test_build_command():
    cmd = launch.build_command(2, "train.py", ["--lr", "0.1"], mpiexec="mpiexec", open_mpi=True, python="py")
    assert cmd[:3] == ["mpiexec", "-n", "2"] and "--oversubscribe" in cmd
    assert cmd[cmd.index("py"):] == ["py", "-m", "clnet.distributed.run", "train.py", "--lr", "0.1"]
    multi = launch.build_command(8, "t.py", hostfile="hosts", mpiexec="mpiexec", open_mpi=True, python="py")
    assert "--oversubscribe" not in multi and multi[multi.index("--hostfile") + 1] == "hosts"
    mpich = launch.build_command(2, "t.py", mpiexec="mpiexec", open_mpi=False, python="py")
    assert "--oversubscribe" not in mpich and "--allow-run-as-root" not in mpich
    with pytest.raises(ValueError, match="at least 1"):
        launch.build_command(0, "t.py")


def test_rank_environment_from_each_launcher():
    assert run.rank_environment({"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "8",
                                 "OMPI_COMM_WORLD_LOCAL_RANK": "1", "OMPI_COMM_WORLD_LOCAL_SIZE": "2"}) == \
        {"RANK": 3, "WORLD_SIZE": 8, "LOCAL_RANK": 1, "LOCAL_WORLD_SIZE": 2}
    assert run.rank_environment({"PMI_RANK": "1", "PMI_SIZE": "2", "MPI_LOCALRANKID": "1",
                                 "MPI_LOCALNRANKS": "2"})["LOCAL_RANK"] == 1
    slurm = run.rank_environment({"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1",
                                  "SLURM_NTASKS_PER_NODE": "4(x2)"})
    assert slurm == {"RANK": 5, "WORLD_SIZE": 8, "LOCAL_RANK": 1, "LOCAL_WORLD_SIZE": 4}
    assert run.rank_environment({}) == {"RANK": 0, "WORLD_SIZE": 1, "LOCAL_RANK": 0, "LOCAL_WORLD_SIZE": 1}
    assert run.device_for_local_rank(1, {"CLNET_DEVICE": "pocl"}) is None  # an explicit choice wins


def test_group_functions_before_init():
    assert not dist.is_initialized() and dist.is_available()
    with pytest.raises(ValueError, match="has not been initialized"):
        dist.get_rank()
    with pytest.raises(ValueError, match="unknown backend"):
        dist.init_process_group(backend="ucc")


def test_cli_dry_run(capsys):
    from clnet.cli import main
    assert main(["launch"]) == 2 and "give the number of ranks" in capsys.readouterr().err
    if MPIEXEC is None:
        pytest.skip("no mpiexec")
    assert main(["launch", "-n", "3", "--dry-run", "train.py", "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert " -n 3 " in out and out.strip().endswith("clnet.distributed.run train.py --epochs 2")


def _job(tmp_path, body, nprocs=2, timeout=120, via_cli=False):
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(body))
    env = dict(os.environ, CLNET_DIST_TIMEOUT="20")
    if via_cli:
        cmd = [sys.executable, "-m", "clnet", "launch", "-n", str(nprocs), str(script)]
    else:
        cmd = launch.build_command(nprocs, str(script), mpiexec=MPIEXEC, open_mpi=launch.is_open_mpi(MPIEXEC))
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                          errors="replace")
    return proc, time.monotonic() - start


@needs_mpi
@pytest.mark.slow
def test_a_rank_that_raises_fails_the_job_fast(tmp_path):
    proc, took = _job(tmp_path, """
        import clnet, clnet.distributed as dist
        dist.init_process_group("mpi")
        if dist.get_rank() == 1:
            raise ValueError("rank 1 could not read its shard")
        t = clnet.ones(4)
        dist.all_reduce(t)   # rank 0 waits here: the abort must end it
        print("rank 0 finished?!")
    """)
    assert proc.returncode != 0
    assert "rank 1 could not read its shard" in proc.stderr and "finished?!" not in proc.stdout
    assert took < 60


@needs_mpi
@pytest.mark.slow
def test_a_stuck_rank_times_out(tmp_path):
    proc, took = _job(tmp_path, """
        import time, clnet, clnet.distributed as dist
        dist.init_process_group("mpi", timeout=2)
        if dist.get_rank() == 1:
            time.sleep(60)
        dist.all_reduce(clnet.ones(2))
    """)
    assert proc.returncode != 0 and "DistributedTimeoutError" in proc.stderr and took < 55


@needs_mpi
@pytest.mark.slow
def test_clnet_launch_runs_a_job(tmp_path):
    proc, _ = _job(tmp_path, """
        import os, clnet, clnet.distributed as dist
        dist.init_process_group("gloo")   # PyTorch programs name gloo or nccl: both run over MPI
        t = clnet.ones(3) * (dist.get_rank() + 1)
        dist.all_reduce(t)
        print("rank", os.environ["RANK"], "of", os.environ["WORLD_SIZE"], "local", os.environ["LOCAL_RANK"],
              "sum", t.numpy().tolist())
        dist.destroy_process_group()
    """, via_cli=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = sorted(line for line in proc.stdout.splitlines() if line.startswith("rank"))
    assert lines == ["rank 0 of 2 local 0 sum [3.0, 3.0, 3.0]", "rank 1 of 2 local 1 sum [3.0, 3.0, 3.0]"]

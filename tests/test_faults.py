"""Device faults end in a clear error or a rebuild, never a crash, and the process keeps working.

- Out of memory: a buffer beyond CL_DEVICE_MAX_MEM_ALLOC_SIZE fails at once (before any kernel), a failed
  driver allocation releases the pool's cached blocks and retries once, and what still fails raises
  clnet.OutOfMemoryError naming the size asked and the limit. A later small computation succeeds.
- A kernel the compiler rejects raises KernelBuildError; nothing is cached and later work succeeds.
- A damaged on-disk cache (clnet's kernel binaries, mako's compiled templates) is rebuilt, in a fresh
  process with CLNET_CACHE_DIR in a temporary folder.
- No OpenCL driver at all (OCL_ICD_VENDORS naming an empty folder, or an .icd naming a missing library):
  `clnet devices` says how to get one and exits 0; clnet.zeros(1) raises DeviceNotFoundError.

The driver-allocation faults are simulated by a pool allocator that fails on purpose: a real device
cannot be driven out of memory safely on a shared machine.
"""
from __future__ import annotations

import contextlib
import ctypes.util
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyopencl as cl
import pyopencl._cl as _cl
import pytest

import clnet
from clnet import nn
from clnet.backend import binary_cache, programs
from clnet.errors import KernelBuildError, OutOfMemoryError
from clnet.ops.elementwise import launch


ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def kernel_launches():
    """Counts kernels enqueued inside the block (every clnet kernel goes through enqueue_nd_range_kernel)."""
    count = [0]
    original = _cl.enqueue_nd_range_kernel

    def counting(*args, **kwargs):
        count[0] += 1
        return original(*args, **kwargs)
    _cl.enqueue_nd_range_kernel = counting
    try:
        yield count
    finally:
        _cl.enqueue_nd_range_kernel = original


def _data(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _still_works(device, rng):
    """A small computation after a fault gives the right numbers."""
    x = _data(rng, 5, 7)
    w = _data(rng, 7, 3)
    got = (clnet.tensor(x, device=device) @ clnet.tensor(w, device=device) + 1).sum(dim=0).numpy()
    np.testing.assert_allclose(got, (x.astype(np.float64) @ w + 1).sum(axis=0), rtol=1e-4, atol=1e-4)


# --- out of memory --------------------------------------------------------------------------------------
def test_a_buffer_beyond_max_alloc_fails_before_any_kernel(device, rng):
    a_host = _data(rng, 3, 4)
    a = clnet.tensor(a_host, device=device)
    n = device.max_alloc // 4 + 1
    with kernel_launches() as launches, pytest.raises(OutOfMemoryError) as info:
        clnet.empty(n, device=device)
    message = str(info.value)
    assert f"({4 * n} bytes)" in message and f"({device.max_alloc} bytes" in message, message
    assert "CL_DEVICE_MAX_MEM_ALLOC_SIZE" in message and device.name in message
    assert launches[0] == 0
    assert isinstance(info.value, MemoryError) and isinstance(info.value, clnet.ClnetError)
    np.testing.assert_array_equal(a.numpy(), a_host)
    _still_works(device, rng)


def test_ops_whose_result_exceeds_max_alloc_fail_cleanly(device, rng):
    """Small inputs, a result past the single-buffer limit: broadcasting and an outer product."""
    m = math.isqrt(device.max_alloc // 4) + 1          # m * m float32 > max_alloc
    col_host, row_host = np.ones((m, 1), np.float32), np.ones((1, m), np.float32)
    col, row = clnet.tensor(col_host, device=device), clnet.tensor(row_host, device=device)
    with kernel_launches() as launches, pytest.raises(OutOfMemoryError, match=f"{m * m * 4} bytes"):
        col + row
    assert launches[0] == 0
    with pytest.raises(OutOfMemoryError, match=f"{m * m * 4} bytes"):
        col @ row
    np.testing.assert_array_equal(col.numpy(), col_host)
    np.testing.assert_array_equal(row.numpy(), row_host)
    _still_works(device, rng)


def test_max_alloc_limit_is_the_devices_own(device, monkeypatch, rng):
    """With a (pretend) 1 MiB limit, 1 MiB + 4 bytes fails and 1 MiB works: the check reads the device."""
    monkeypatch.setattr(device, "max_alloc", 2**20)
    with pytest.raises(OutOfMemoryError, match=r"1\.0 MiB \(1048580 bytes\).*at most 1\.0 MiB \(1048576 bytes"):
        clnet.zeros(2**18 + 1, device=device)
    assert clnet.zeros(2**18, device=device).shape == (2**18,)
    monkeypatch.undo()
    _still_works(device, rng)


class FailingAllocator:
    """Stands in for pyopencl's MemoryPool inside clnet's pool: raises the driver's out-of-memory error.

    mode "until_freed": fails until free_held() has released the cached blocks (the retry succeeds);
    mode "always": every allocation fails (memory really is exhausted);
    mode "after N": the first N allocations succeed, then every one fails.
    """

    def __init__(self, real, mode):
        self.real, self.mode = real, mode
        self.failures = self.freed = self.calls = 0

    def allocate(self, nbytes):
        self.calls += 1
        fail = (self.mode == "always" or (self.mode == "until_freed" and not self.freed)
                or (self.mode.startswith("after ") and self.calls > int(self.mode.split()[1])))
        if fail:
            self.failures += 1
            raise cl.MemoryError(_cl._ErrorRecord(msg="simulated", routine="clCreateBuffer",
                                                  code=cl.status_code.MEM_OBJECT_ALLOCATION_FAILURE))
        return self.real.allocate(nbytes)

    def free_held(self):
        self.freed += 1
        self.real.free_held()

    @property
    def managed_bytes(self):
        return self.real.managed_bytes

    @property
    def active_bytes(self):
        return self.real.active_bytes


@pytest.fixture
def failing_pool(device, monkeypatch):
    """Install a FailingAllocator(mode) in the device's pool; undone after the test."""
    pool = device.pool

    def install(mode):
        fake = FailingAllocator(pool._pool, mode)
        monkeypatch.setattr(pool, "_pool", fake)
        return fake
    yield install
    monkeypatch.undo()


def test_failed_allocation_frees_cached_blocks_and_retries(device, failing_pool, rng):
    a_host = _data(rng, 64, 33)
    a = clnet.tensor(a_host, device=device)
    cached = [clnet.empty(1000, device=device) for _ in range(4)]
    del cached                                              # their blocks stay cached in the pool
    fake = failing_pool("until_freed")
    y = a * 2 + 1
    assert (fake.failures, fake.freed) == (1, 1)
    np.testing.assert_allclose(y.numpy(), a_host * 2 + 1, rtol=1e-6)


def test_allocation_that_keeps_failing_raises_out_of_memory(device, failing_pool, rng):
    a_host, b_host = _data(rng, 6, 5), _data(rng, 6, 5)
    a, b = clnet.tensor(a_host, device=device), clnet.tensor(b_host, device=device)
    device.synchronize()
    fake = failing_pool("always")
    with kernel_launches() as launches, pytest.raises(OutOfMemoryError) as info:
        a + b
    message = str(info.value)
    assert "(120 bytes)" in message, message                      # the size asked
    assert "device memory" in message and "held by clnet" in message and device.name in message
    assert fake.freed == 1 and fake.failures == 2                 # released the cache, retried once
    assert launches[0] == 0
    fake.mode = "until_freed"                                     # memory is available again
    np.testing.assert_array_equal(a.numpy(), a_host)
    np.testing.assert_array_equal(b.numpy(), b_host)
    _still_works(device, rng)


def test_training_survives_running_out_of_memory_mid_step(device, failing_pool, rng):
    """OOM inside backward(): the error surfaces, and after memory returns the same step runs."""
    clnet.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8, device=device), nn.ReLU(), nn.Linear(8, 3, device=device))
    opt = clnet.optim.Adam(model.parameters(), lr=1e-2)
    x = clnet.tensor(_data(rng, 16, 6), device=device)
    y = clnet.tensor(rng.integers(0, 3, 16), device=device)
    loss = nn.functional.cross_entropy(model(x), y)
    fake = failing_pool("after 2")
    with pytest.raises(OutOfMemoryError):
        loss.backward()
    fake.mode = "until_freed"
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    after = nn.functional.cross_entropy(model(x), y).item()
    assert np.isfinite(after) and all(np.isfinite(p.numpy()).all() for p in model.parameters())


# --- kernel build failure -------------------------------------------------------------------------------
def test_kernel_build_failure_is_a_clear_error_and_nothing_breaks(device, rng):
    a_host = _data(rng, 4, 5)
    a = clnet.tensor(a_host, device=device)
    built = programs.built_count()
    with pytest.raises(KernelBuildError) as info:
        launch("v0 +* undefined_name_q", [a], np.float32, np.float32)
    message = str(info.value)
    assert device.name in message and "undefined_name_q" in message and "line" in message, message
    assert programs.built_count() == built                      # a failed build is not remembered
    with pytest.raises(KernelBuildError):                      # ...so it fails the same way again
        launch("v0 +* undefined_name_q", [a], np.float32, np.float32)
    np.testing.assert_array_equal(a.numpy(), a_host)
    _still_works(device, rng)


# --- damaged on-disk caches -----------------------------------------------------------------------------
JOB = r"""
import json, sys, warnings
warnings.simplefilter("ignore")
import numpy as np
import clnet
from clnet.backend import programs
dev = clnet.device(sys.argv[1])
x = np.linspace(-2, 3, 35, dtype=np.float32).reshape(5, 7)
a = clnet.tensor(x, device=dev)
out = {"add": (a * 2 + 1).numpy(), "sum": a.sum(dim=1).numpy(), "mm": (a @ a.T).numpy(),
       "amax": a.amax(dim=0).numpy()}
print(json.dumps({k: v.tobytes().hex() for k, v in out.items()} | {"built": programs.built_count()}))
"""


def _run_job(device, cache, extra_env=None):
    env = dict(os.environ, CLNET_CACHE_DIR=str(cache), CLNET_BINARY_CACHE="1", PYTHONPATH=str(ROOT))
    env.update(extra_env or {})
    proc = subprocess.run([sys.executable, "-c", JOB, device.spec], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"exit {proc.returncode} (negative: killed by a signal)\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def pristine_cache(tmp_path_factory):
    """Per device: a cache folder filled by one run of JOB, and that run's results."""
    made = {}

    def get(device):
        if device.spec not in made:
            cache = tmp_path_factory.mktemp(f"cache-{device.implementation}")
            made[device.spec] = (cache, _run_job(device, cache))
        return made[device.spec]
    return get


def _binaries(cache):
    return sorted((cache / "binaries").glob("*.bin"))


def _compiled_templates(cache):
    return sorted((cache / "mako").glob("*/*.py"))


def _scribble(path, offset_fraction=0.5):
    data = bytearray(path.read_bytes())
    at = int(len(data) * offset_fraction)
    data[at:at + 64] = bytes(b ^ 0x5A for b in data[at:at + 64])
    path.write_bytes(bytes(data))


def _forge(path):
    """A well-formed cache file (right header, matching checksum) around bytes that are no binary."""
    junk = os.urandom(4096)
    path.write_bytes(binary_cache.MAGIC + hashlib.sha256(junk).digest() + junk)


DAMAGE = {
    "binaries_truncated": lambda c: [p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]) for p in _binaries(c)],
    "binaries_header_only": lambda c: [p.write_bytes(p.read_bytes()[:20]) for p in _binaries(c)],
    "binaries_empty": lambda c: [p.write_bytes(b"") for p in _binaries(c)],
    "binaries_scribbled": lambda c: [_scribble(p) for p in _binaries(c)],
    "binaries_random": lambda c: [p.write_bytes(os.urandom(p.stat().st_size)) for p in _binaries(c)],
    "binaries_forged": lambda c: [_forge(p) for p in _binaries(c)],
    "binaries_are_folders": lambda c: [(p.unlink(), p.mkdir()) for p in _binaries(c)],
    "templates_truncated": lambda c: [p.write_bytes(p.read_bytes()[:300]) for p in _compiled_templates(c)],
    "templates_scribbled": lambda c: [_scribble(p, 0.3) for p in _compiled_templates(c)],
    "templates_empty": lambda c: [p.write_bytes(b"") for p in _compiled_templates(c)],
    "templates_nul_bytes": lambda c: [p.write_bytes(b"\0" * 512) for p in _compiled_templates(c)],
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_cache_is_rebuilt_in_a_fresh_process(device, pristine_cache, tmp_path, damage):
    if damage == "binaries_forged" and device.implementation == "rusticl":
        pytest.skip("Mesa's rusticl aborts the process on a malformed binary; a forged file needs a matching "
                    "SHA-256, which damage cannot produce (binary_cache.load)")
    source, expected = pristine_cache(device)
    cache = tmp_path / "cache"
    shutil.copytree(source, cache)
    kind = "binaries" if damage.startswith("binaries") else "mako"
    if kind == "binaries" and not _binaries(cache):
        pytest.skip(f"no binary cache is kept for {device.implementation}")
    assert _binaries(cache) and _compiled_templates(cache), "the first run filled the cache"
    DAMAGE[damage](cache)
    got = _run_job(device, cache)
    assert {k: v for k, v in got.items() if k != "built"} == {k: v for k, v in expected.items() if k != "built"}
    if damage == "binaries_are_folders":
        return  # nothing can be written where a folder is; rebuilding each time is the best there is
    if kind == "binaries":  # the damaged files were replaced by good ones, so a third run loads them
        for path in _binaries(cache):
            data = path.read_bytes()
            assert data.startswith(binary_cache.MAGIC), path
            body = data[len(binary_cache.MAGIC) + 32:]
            assert hashlib.sha256(body).digest() == data[len(binary_cache.MAGIC):len(binary_cache.MAGIC) + 32]
    else:
        for path in _compiled_templates(cache):
            compile(path.read_text(), str(path), "exec")   # valid Python again
    assert _run_job(device, cache) == got


def test_cache_folder_that_cannot_be_used(device, tmp_path, rng):
    """CLNET_CACHE_DIR names a file: nothing can be cached, everything still works."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    got = _run_job(device, blocker)
    assert set(got) >= {"add", "sum", "mm", "amax"}
    assert blocker.read_text() == "x"


# --- no OpenCL driver -----------------------------------------------------------------------------------
NO_DEVICE_JOB = r"""
import warnings
warnings.simplefilter("ignore")
import clnet
print("devices:", len(clnet.devices()))
try:
    clnet.zeros(1)
except clnet.DeviceNotFoundError as err:
    print("DeviceNotFoundError:", err)
"""


def _icd_dirs(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = tmp_path / "missing"
    missing.mkdir()
    (missing / "gone.icd").write_text("/nonexistent/lib/libOpenCL-vendor-removed.so\n")
    cases = {"no_icd_files": empty, "icd_names_a_missing_library": missing}
    libm = ctypes.util.find_library("m")
    if libm:
        not_icd = tmp_path / "not_an_icd"
        not_icd.mkdir()
        (not_icd / "libm.icd").write_text(libm + "\n")
        cases["icd_names_a_library_that_is_no_driver"] = not_icd
    return cases


@pytest.mark.parametrize("case", ["no_icd_files", "icd_names_a_missing_library",
                                  "icd_names_a_library_that_is_no_driver"])
def test_no_opencl_driver_is_a_clear_message_not_a_crash(tmp_path, case):
    dirs = _icd_dirs(tmp_path)
    if case not in dirs:
        pytest.skip("no libm to point an .icd at")
    env = {k: v for k, v in os.environ.items() if k not in ("OCL_ICD_FILENAMES", "CLNET_DEVICE")}
    env.update(OCL_ICD_VENDORS=str(dirs[case]), PYTHONPATH=str(ROOT))
    cli = subprocess.run([sys.executable, "-m", "clnet", "devices"], env=env, capture_output=True, text=True,
                         timeout=300)
    if "opencl:" in cli.stdout:
        pytest.skip("this machine's ICD loader ignores OCL_ICD_VENDORS")
    assert cli.returncode == 0, f"exit {cli.returncode}\n{cli.stdout}\n{cli.stderr}"
    assert "No OpenCL device found" in cli.stdout and "pip install" in cli.stdout
    job = subprocess.run([sys.executable, "-c", NO_DEVICE_JOB], env=env, capture_output=True, text=True,
                         timeout=300)
    assert job.returncode == 0, f"exit {job.returncode}\n{job.stdout}\n{job.stderr}"
    assert "devices: 0" in job.stdout
    assert "DeviceNotFoundError: no default OpenCL device" in job.stdout, job.stdout
    assert "install your GPU vendor's OpenCL driver" in job.stdout

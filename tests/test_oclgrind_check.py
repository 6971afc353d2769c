"""CI fails on any Oclgrind message, stderr included (issue 11 item 5), and clnet causes none.

Oclgrind writes kernel errors to OCLGRIND_LOG but OpenCL API misuse (OCLGRIND_CHECK_API=1) to the
process's stderr; .ci/oclgrind_pytest.py scans both. clnet used to make Oclgrind print
"clGetDeviceInfo ... CL_INVALID_VALUE" on every kernel (pyopencl asking NVIDIA's compute capability of
every device; device queries beyond the device's OpenCL version).
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clnet.backend import devices as D

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("oclgrind_pytest", ROOT / ".ci" / "oclgrind_pytest.py")
oclgrind_pytest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(oclgrind_pytest)

INVALID_VALUE = ("Oclgrind - OpenCL runtime error detected\n\tFunction: clGetDeviceInfo\n\tError:    "
                 "CL_INVALID_VALUE\n\tFor argument 'param_name'\n")


def test_an_api_error_on_stderr_fails_the_check(tmp_path, capsys):
    log = tmp_path / "oclgrind.log"
    log.write_text("")
    assert oclgrind_pytest.check(log, "pytest output\n" + INVALID_VALUE) == 1
    assert "clGetDeviceInfo" in capsys.readouterr().out
    assert oclgrind_pytest.check(log, "pytest output only\n") == 0


def test_a_kernel_error_in_the_log_fails_the_check(tmp_path):
    log = tmp_path / "oclgrind.log"
    log.write_text("Invalid read of size 4 at global memory address 0x1000000000040\n\tKernel: ew\n")
    assert oclgrind_pytest.check(log) == 1


SESSION = r"""
import numpy as np
import clnet
dev = clnet.device("oclgrind")
a = clnet.tensor(np.arange(6, dtype=np.float32).reshape(2, 3), device=dev)
print(float(((a * 2 + 1) @ a.T).sum(dim=1).sum().item()))
"""


def test_clnet_makes_oclgrind_print_nothing(tmp_path):
    """Discovery, a kernel of each kind, a reduction and a copy back, with Oclgrind's API checker on."""
    if not any(d.is_simulator for d in D.all_devices()):
        pytest.skip("Oclgrind is not installed")
    env = dict(os.environ, OCLGRIND_CHECK_API="1", OCLGRIND_LOG=str(tmp_path / "oclgrind.log"),
               CLNET_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", SESSION], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert oclgrind_pytest.messages(out.stderr, oclgrind_only=True) == [], out.stderr[-3000:]
    assert oclgrind_pytest.check(tmp_path / "oclgrind.log", out.stderr) == 0

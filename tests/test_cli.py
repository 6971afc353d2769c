"""The `clnet` command: devices (table and --json), selftest, cache, and `python -m clnet`."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from clnet import cli
from clnet.backend import devices as D
from clnet.backend import programs


def run_cli(capsys, *argv) -> tuple[int, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.fixture
def no_devices(monkeypatch):
    monkeypatch.setattr(D, "all_devices", lambda refresh=False: [])
    monkeypatch.setattr(D, "skipped_platforms", lambda: [])
    monkeypatch.setattr(D, "_DEFAULT", None)
    monkeypatch.delenv("CLNET_DEVICE", raising=False)


def _present():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return D.all_devices()


def test_devices_table_lists_every_device_and_marks_the_default(capsys):
    code, out = run_cli(capsys, "devices")
    assert code == 0
    for dev in _present():
        assert dev.spec in out and dev.name in out
        assert f"Platform {dev.platform_index}: {dev.platform_name}" in out
    for skipped in D.skipped_platforms():
        assert skipped.name in out and "skipped" in out
    default = D.would_be_default()
    if default is not None:
        assert f"{default.spec}  <- default" in out
        assert out.count("<- default") == 1
    for fact in ("compute units", "global memory", "max allocation", "local memory", "max work-group",
                 "fp16 / fp64", "OpenCL C", "driver", "profile"):
        assert fact in out or not _present()


def test_devices_json_is_valid_and_complete(capsys):
    code, out = run_cli(capsys, "devices", "--json")
    assert code == 0
    data = json.loads(out)
    listed = [d for p in data["platforms"] for d in p["devices"]]
    assert sorted(d["spec"] for d in listed) == sorted(d.spec for d in _present())
    default = D.would_be_default()
    assert data["default"] == (default.spec if default else None)
    assert sum(d["default"] for d in listed) == (1 if default else 0)
    for d in listed:
        for key in ("name", "platform", "platform_version", "vendor", "type", "compute_units", "global_mem",
                    "max_alloc", "local_mem", "max_work_group_size", "fp16", "fp64", "opencl_c_version",
                    "driver_version"):
            assert key in d, key
        assert d["profile"]["elementwise_wg"] <= d["max_work_group_size"]
    assert {s.name for s in D.skipped_platforms()} <= {p["name"] for p in data["platforms"] if p["skipped"]}


def test_devices_with_no_device_still_exits_0_and_says_how_to_get_one(capsys, no_devices):
    code, out = run_cli(capsys, "devices")
    assert code == 0
    assert "pip install 'clnet[pocl]'" in out and "driver" in out
    code, out = run_cli(capsys, "devices", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["default"] is None and data["platforms"] == [] and "clnet[pocl]" in data["message"]


def test_selftest_passes_on_the_device(capsys, device):
    code, out = run_cli(capsys, "selftest", "--device", device.spec)
    assert code == 0, out
    for family in ("elementwise", "reduce", "matmul"):
        assert f"PASS  {family}" in out
    assert "FAIL" not in out and "selftest passed" in out
    assert device.spec in out


def test_selftest_reports_a_failure_with_exit_code_1(capsys, device, monkeypatch):
    def wrong(dev, rng):
        cli._close([1.0, 2.0], [1.0, 2.5], "deliberately wrong")

    def absent(dev, rng):
        cli._find("clnet.no_such_module:thing")
    monkeypatch.setattr(cli, "SELFTESTS", [("elementwise", cli._check_elementwise), ("miscompiled", wrong),
                                           ("future", absent)])
    code, out = run_cli(capsys, "selftest", "--device", device.spec)
    assert code == 1
    assert "PASS  elementwise" in out and "FAIL  miscompiled" in out and "deliberately wrong" in out
    assert "SKIP  future" in out and "FAILED: 1 family" in out


def test_selftest_unknown_device_exits_1_listing_devices(capsys):
    code, out = run_cli(capsys, "selftest", "--device", "opencl:99:0")
    assert code == 1
    assert "opencl:99:0" in out
    for dev in _present():
        assert dev.spec in out


def test_cache_info_and_clear(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("CLNET_CACHE_DIR", str(tmp_path))
    (tmp_path / "binaries").mkdir()
    (tmp_path / "binaries" / "x.bin").write_bytes(b"1234")
    code, out = run_cli(capsys, "cache", "info")
    assert code == 0 and str(tmp_path) in out and "1 files" in out and "pocl" in out
    code, out = run_cli(capsys, "cache", "clear")
    assert code == 0 and "removed 1 cached binaries" in out
    assert not (tmp_path / "binaries").exists()
    assert programs.built_count() == 0


def test_no_subcommand_prints_help(capsys):
    code, out = run_cli(capsys)
    assert code == 0 and "devices" in out and "selftest" in out and "cache" in out


def test_command_table_is_the_single_registry():
    names = [c.name for c in cli.COMMANDS]
    assert len(names) == len(set(names)) and {"devices", "selftest", "cache"} <= set(names)
    parser = cli.build_parser()
    for name in names:
        assert parser.parse_args([name]).run is next(c.run for c in cli.COMMANDS if c.name == name)


def test_python_dash_m_clnet():
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    out = subprocess.run([sys.executable, "-m", "clnet", "devices", "--json"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    json.loads(out.stdout)


def test_console_script():
    exe = shutil.which("clnet", path=os.path.dirname(sys.executable)) or shutil.which("clnet")
    if exe is None:
        pytest.skip("the clnet console script is not installed (pip install -e .)")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "clnet" in out.stdout

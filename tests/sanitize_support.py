"""Support for the kernel sanitizer run (tests/test_sanitize.py): vendor limit sets, Oclgrind's log,
profile variants, and a driver that runs the sanitizer once per limit set.

    python tests/sanitize_support.py                    every limit set, one process each
    python tests/sanitize_support.py nvidia amd         only these
    python tests/sanitize_support.py intel -- -x -k matmul     pytest arguments after --

Oclgrind reads OCLGRIND_MAX_WGSIZE / OCLGRIND_LOCAL_MEM_SIZE / OCLGRIND_COMPUTE_UNITS when its
platform loads, so each limit set needs its own process. The numbers come from tox.ini's setenv
(the one table of vendor classes, with their sources); "default" is Oclgrind with its own limits and
clnet's own Oclgrind profile. Each process turns the checkers on; the test module fails a test on any
Oclgrind error logged during it, and this driver fails on Oclgrind API errors on stderr outside tests.
CLNET_SANITIZE_LOGS names the folder for the logs (default /tmp/clnet-sanitize).
"""
from __future__ import annotations

import configparser
import dataclasses
import importlib.util
import os
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENDORS = ("nvidia", "amd", "intel")
LIMIT_VARS = ("OCLGRIND_MAX_WGSIZE", "OCLGRIND_LOCAL_MEM_SIZE", "OCLGRIND_COMPUTE_UNITS")
CHECKS = {"OCLGRIND_DATA_RACES": "1", "OCLGRIND_UNINITIALIZED": "1", "OCLGRIND_CHECK_API": "1"}


# --- limit sets ------------------------------------------------------------------------------------
def limit_sets(tox_ini: Path = ROOT / "tox.ini") -> dict:
    """{"default": {}, "nvidia": {CLNET_PROFILE_VENDOR: ..., OCLGRIND_*: ...}, ...} from tox.ini's setenv."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(tox_ini)
    setenv = parser.get("testenv", "setenv", fallback="")
    sets: dict = {"default": {}}
    for line in setenv.splitlines():
        m = re.match(r"\s*(\w+)\s*:\s*(\w+)\s*=\s*(\S+)\s*$", line)
        if m and m.group(1) in VENDORS:
            sets.setdefault(m.group(1), {})[m.group(2)] = m.group(3)
    for vendor in VENDORS:
        got = sets.get(vendor, {})
        missing = [v for v in LIMIT_VARS + ("CLNET_PROFILE_VENDOR",) if v not in got]
        if missing:
            raise RuntimeError(f"{tox_ini}: the {vendor} limit set lacks {', '.join(missing)} in [testenv] setenv")
    return sets


def current_limit_set() -> str:
    """The limit set this process runs under ("default" when no vendor is emulated)."""
    return os.environ.get("CLNET_PROFILE_VENDOR", "").strip().lower() or "default"


def checks_missing() -> list:
    """The Oclgrind checker variables that are not switched on in this process."""
    return [k for k, v in CHECKS.items() if os.environ.get(k, "").strip() != v]


# --- Oclgrind's messages ---------------------------------------------------------------------------
def _runner():
    """.ci/oclgrind_pytest.py as a module: its message splitter and its list of tolerated messages."""
    spec = importlib.util.spec_from_file_location("clnet_oclgrind_pytest", ROOT / ".ci" / "oclgrind_pytest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


RUNNER = _runner()


def errors_in(text: str, oclgrind_only: bool = False) -> list:
    """Oclgrind's error messages in `text` (a log excerpt, or stderr with oclgrind_only), less the tolerated."""
    found = RUNNER.messages(text, oclgrind_only=oclgrind_only)
    return [m for m in found if not any(t.search(m) for t in RUNNER.TOLERATED)]


class LogCursor:
    """Reads what Oclgrind appended to OCLGRIND_LOG since the last call (Oclgrind flushes each message)."""

    def __init__(self, path):
        self.path = Path(path) if path else None
        self.pos = self._size()

    def _size(self) -> int:
        try:
            return self.path.stat().st_size if self.path else 0
        except OSError:
            return 0

    def new_text(self) -> str:
        if self.path is None:
            return ""
        size = self._size()
        if size < self.pos:  # truncated (a new Oclgrind context): read it all
            self.pos = 0
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except OSError:
            return ""
        self.pos += len(data)
        return data.decode(errors="replace")


# --- profile variants ------------------------------------------------------------------------------
@contextmanager
def profile_as(device, **changes):
    """Run with device.profile's fields replaced (e.g. another matmul variant or tile configuration)."""
    old = device.profile
    device._profile = dataclasses.replace(old, **changes)
    try:
        yield device._profile
    finally:
        device._profile = old


@contextmanager
def device_as(device, **facts):
    """Run with some of the device's facts replaced (e.g. type="cpu" for the CPU tunings of reductions)."""
    old = {k: getattr(device, k) for k in facts}
    for k, v in facts.items():
        setattr(device, k, v)
    try:
        yield device
    finally:
        for k, v in old.items():
            setattr(device, k, v)


class _Facts:
    """A device as profiles.profile_for sees it: vendor, type and limits only."""

    def __init__(self, vendor, type_, max_wg, local_mem, vector_width=1, implementation=None):
        self.vendor, self.type = vendor, type_
        self.implementation = implementation or vendor
        self.max_work_group_size = max_wg
        self.max_work_item_sizes = (max_wg, max_wg, max_wg)
        self.local_mem = local_mem
        self.preferred_vector_width_float = vector_width
        self.fp16 = self.fp64 = True
        self.is_simulator = vendor == "oclgrind"
        # what names a device and its driver (build verdicts and the binary cache key on it)
        self.name = f"fake {vendor} {type_}"
        self.platform_name = self.platform_version = self.driver_version = "fake"


def matmul_configs(device) -> list:
    """Every matmul (variant, tile_m, tile_n, tile_k, wpt_m, wpt_n) clnet's profiles choose for the vendor
    classes of tox.ini (as GPUs, CPUs and accelerators), for Oclgrind itself and for the device under
    test, keeping those whose work-group and local memory fit the device under test."""
    from clnet.backend import profiles
    saved = os.environ.pop("CLNET_PROFILE_VENDOR", None)  # profile_for must see each fake device as itself
    try:
        facts = [_Facts("oclgrind", t, device.max_work_group_size, device.local_mem) for t in ("gpu", "cpu")]
        for vendor, env in limit_sets().items():
            if vendor == "default":
                continue
            wg, lm = int(env["OCLGRIND_MAX_WGSIZE"]), int(env["OCLGRIND_LOCAL_MEM_SIZE"])
            facts += [_Facts(vendor, t, wg, lm) for t in ("gpu", "cpu", "accelerator")]
        profs = [profiles.profile_for(f) for f in facts]
    finally:
        if saved is not None:
            os.environ["CLNET_PROFILE_VENDOR"] = saved
    profs.append(device.profile)
    configs = []
    for p in profs:
        c = (p.matmul_variant, p.matmul_tile_m, p.matmul_tile_n, p.matmul_tile_k, p.matmul_wpt_m, p.matmul_wpt_n)
        if c in configs:
            continue
        wg_x, wg_y = profiles.matmul_work_group(p)
        if (c[0] == "gpu" and (wg_x * wg_y > device.max_work_group_size
                               or profiles.matmul_local_bytes(p) > device.local_mem)):
            continue
        configs.append(c)
    return configs


# --- the driver ------------------------------------------------------------------------------------
def run_one(name: str, env_vars: dict, pytest_args, log_dir: Path) -> int:
    """One limit set in its own process. tests/test_sanitize.py checks Oclgrind's log itself, test by test
    (it knows the one checker message it must tolerate, see TUNINGS there); this process adds the
    Oclgrind messages on stderr outside any test (API misuse while collecting or tearing down)."""
    env = dict(os.environ, CLNET_TEST_DEVICES="oclgrind", **CHECKS, **env_vars)
    for var in LIMIT_VARS + ("CLNET_PROFILE_VENDOR",):
        if var not in env_vars:
            env.pop(var, None)
    log = log_dir / f"oclgrind-{name}.log"
    log.unlink(missing_ok=True)
    env["OCLGRIND_LOG"] = str(log)
    if importlib.util.find_spec("clnet") is None:  # a plain checkout: test the sources in it
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "pytest", "--capture=sys", "-p", "no:cacheprovider", "-m", "sanitize",
           str(ROOT / "tests" / "test_sanitize.py")] + list(pytest_args or ["-q"])
    limits = " ".join(f"{k}={env_vars[k]}" for k in sorted(env_vars)) or "Oclgrind's own limits"
    print(f"\n=== sanitizer, limit set {name}: {limits}\n+ {' '.join(cmd)}", flush=True)
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True, errors="replace")
    captured = []
    for line in proc.stderr:
        sys.stderr.write(line)
        captured.append(line)
    code = proc.wait()
    stray = errors_in("".join(captured), oclgrind_only=True)
    if stray:
        print(f"Oclgrind reported {len(stray)} API error(s) on stderr outside the tests:\n\n" + "\n\n".join(stray[:5]))
    if code == 5:
        print("pytest ran no test: counted as a failure")
    return code or (1 if stray else 0)


def run(names, pytest_args) -> int:
    """Run tests/test_sanitize.py under each named limit set; print a table of times and verdicts."""
    sets = limit_sets()
    unknown = [n for n in names if n not in sets]
    if unknown:
        print(f"unknown limit set(s) {unknown}; known: {sorted(sets)}")
        return 2
    log_dir = Path(os.environ.get("CLNET_SANITIZE_LOGS", "/tmp/clnet-sanitize"))
    log_dir.mkdir(parents=True, exist_ok=True)
    rows, failed = [], []
    for name in names:
        start = time.monotonic()
        rc = run_one(name, sets[name], pytest_args, log_dir)
        took = time.monotonic() - start
        rows.append(f"{took:7.1f}s  {'ok' if rc == 0 else f'FAILED (exit {rc})':<16} {name}")
        if rc:
            failed.append(name)
    print(f"\n=== sanitizer summary (Oclgrind logs in {log_dir})")
    print("\n".join(rows))
    return 1 if failed else 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    pytest_args = []
    if "--" in argv:
        cut = argv.index("--")
        argv, pytest_args = argv[:cut], argv[cut + 1:]
    names = argv or list(limit_sets())
    return run(names, pytest_args)


if __name__ == "__main__":
    sys.exit(main())

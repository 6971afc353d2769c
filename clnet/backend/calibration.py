"""Measured speed of the CPU implementations on this machine, kept for choosing the default device.

Several OpenCL implementations can drive the one CPU (Debian's PoCL, the pip wheel's PoCL, Intel's CPU
runtime). Which is fastest for clnet depends on the machine, so instead of a fixed vendor rule, the first
time clnet must choose among two or more of them it times clnet's own kernels on each (clnet/calibrate.py,
in a child process: a driver that crashes or hangs costs that child only, and the build child's
protection is not needed there; at first use the child runs detached, in the background, and the first
process takes the fixed rule) and keeps the scores in cache_dir()/calibration.json, keyed like the
tuning file (device, driver, platform). Later runs read the file. `clnet tune` on a device drops that
device's score (its kernels changed); `clnet devices --calibrate` measures again.

CLNET_CALIBRATE=0 never measures (the fixed rule of devices._rank decides; the test suite runs so).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import tuning_file
from .cache_files import cache_dir, write_atomically

FORMAT, SCHEMA = "clnet-calibration", 1
TIMEOUT_S = 600  # a child that takes longer is stopped; what it measured so far is kept
PARENT_WAIT_S = 600  # the background measurement waits this long at most for its parent to exit
_LOCK = threading.Lock()


def enabled() -> bool:
    return os.environ.get("CLNET_CALIBRATE", "1").strip().lower() not in ("0", "no", "off", "false")


def path() -> Path:
    return cache_dir() / "calibration.json"


_READ: dict = {}  # path -> (modification time, contents): ranking asks often, the file rarely changes


def _read() -> dict:
    file = path()
    try:
        stamp = file.stat().st_mtime_ns
    except OSError:
        return {"format": FORMAT, "schema": SCHEMA, "devices": {}}
    hit = _READ.get(str(file))
    if hit is not None and hit[0] == stamp:
        return json.loads(json.dumps(hit[1]))  # a copy: callers may change it
    data = {"format": FORMAT, "schema": SCHEMA, "devices": {}}
    try:
        loaded = json.loads(file.read_text(encoding="utf-8"))
        if loaded.get("format") == FORMAT and loaded.get("schema") == SCHEMA and isinstance(loaded.get("devices"), dict):
            data = loaded
    except (OSError, ValueError, AttributeError):
        pass
    _READ[str(file)] = (stamp, data)
    return json.loads(json.dumps(data))


def cached(device) -> dict | None:
    """The stored measurement of `device` ({"score", "gemm_gflops", "add_gbps"} or {"error"}), or None."""
    entry = _read()["devices"].get(tuning_file.device_key(device))
    return entry if isinstance(entry, dict) else None


def score(device) -> float | None:
    """The stored score (higher is faster; 0 for a device that failed to run clnet), or None."""
    entry = cached(device)
    if entry is None:
        return None
    return float(entry.get("score", 0.0)) if "error" not in entry else 0.0


def measure(devices, quick: bool = False, announce: bool = True) -> dict:
    """Time `devices` in a child process and store the results; {device: entry}."""
    if not devices:
        return {}
    if announce:
        print(f"clnet: timing {len(devices)} OpenCL implementations of this CPU once, to choose the fastest as "
              f"the default device (kept in {path()}; CLNET_DEVICE chooses one yourself)", file=sys.stderr)
    env = dict(os.environ, CLNET_CALIBRATE="0", CLNET_TUNING=os.environ.get("CLNET_TUNING", "1"))
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    cmd = [sys.executable, "-W", "ignore", "-m", "clnet.calibrate"] + [d.spec for d in devices]
    cmd += ["--quick"] if quick else []
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S).stdout
    except subprocess.TimeoutExpired as err:
        out = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
    by_spec = {}
    for line in out.splitlines():
        try:
            entry = json.loads(line)
            by_spec[entry.pop("spec")] = entry
        except (ValueError, KeyError, AttributeError):
            continue
    results = {d: by_spec.get(d.spec, {"error": "no measurement (the child died or ran out of time)"})
               for d in devices}
    for dev, entry in results.items():
        _store(dev, entry)
    return results


def _store(device, entry: dict) -> None:
    """Keep one device's measurement in the file (an unwritable cache only means measuring again)."""
    with _LOCK:
        data = _read()
        data["devices"][tuning_file.device_key(device)] = dict(entry, device=device.name, platform=device.platform_name,
                                                               driver=device.driver_version, load=_load())
        try:
            path().parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path(), (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
        except OSError:
            pass


def _load() -> float | None:
    """The machine's load per core while measuring (kept beside the figures, to judge them by)."""
    try:
        return round(os.getloadavg()[0] / (os.cpu_count() or 1), 2)
    except (AttributeError, OSError):
        return None


def pending_path() -> Path:
    return cache_dir() / "calibration.pending"


def start_in_background(devices) -> bool:
    """Measure `devices` in a detached child process that stores the scores itself, so the first process on a
    machine does not wait for it (timing three implementations builds clnet's kernels on each: 20-40 s). This
    process goes on with the fixed rule; the next ones read the measured ranking. The child measures once
    this process has exited (or after PARENT_WAIT_S), at the lowest priority: run
    beside it, it made this process's first training step 1.6x slower. A marker file keeps other
    processes from starting a second measurement while one waits or runs (for PARENT_WAIT_S + TIMEOUT_S at most)."""
    marker = pending_path()
    try:
        if time.time() - marker.stat().st_mtime < TIMEOUT_S + PARENT_WAIT_S:
            return False
    except OSError:
        pass
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(os.getpid()))
    except OSError:
        return False  # an unwritable cache: measuring would be repeated by every process, so never measure
    env = dict(os.environ, CLNET_CALIBRATE="0", CLNET_TUNING=os.environ.get("CLNET_TUNING", "1"))
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    cmd = [sys.executable, "-W", "ignore", "-m", "clnet.calibrate", "--store", f"--after={os.getpid()}"]
    cmd += [d.spec for d in devices]
    devnull = os.open(os.devnull, os.O_RDWR)
    try:  # posix_spawn, not Popen: nothing is left to wait for it (a Popen would warn at exit that it runs on)
        os.posix_spawn(sys.executable, cmd, env, setsid=True,
                       file_actions=[(os.POSIX_SPAWN_DUP2, devnull, fd) for fd in (0, 1, 2)])
    except (OSError, AttributeError, TypeError):  # no posix_spawn (Windows): measure here, once
        marker.unlink(missing_ok=True)
        measure(devices)
        return True
    finally:
        os.close(devnull)
    print(f"clnet: timing {len(devices)} OpenCL implementations of this CPU in the background, to choose the "
          f"fastest as the default device from the next run on (kept in {path()}; CLNET_DEVICE chooses one "
          "yourself)", file=sys.stderr)
    return True


def store_results(results: dict) -> None:
    """What a background measurement found ({device: entry}), stored; its marker removed."""
    for dev, entry in results.items():
        _store(dev, entry)
    pending_path().unlink(missing_ok=True)


def ensure(devices) -> None:
    """Start measuring the devices among `devices` that have no stored score (when measuring is enabled)."""
    if enabled():
        missing = [d for d in devices if score(d) is None]
        if missing:
            start_in_background(missing)


def forget(device) -> None:
    """Drop `device`'s score (its kernels changed: `clnet tune` stored new parameters)."""
    with _LOCK:
        data = _read()
        if data["devices"].pop(tuning_file.device_key(device), None) is not None:
            try:
                write_atomically(path(), (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
            except OSError:
                pass

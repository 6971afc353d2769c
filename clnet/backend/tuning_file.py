"""The user's tuned matmul parameters and conv2d choices: one JSON file, cache_dir()/tuning.json, written by
`clnet tune` (conv entries per shape class and pass: store_conv / tuned_conv, with their own template hash).

Why a file of its own: tuning costs minutes of measurement, so `clnet cache clear` (which drops rebuildable
binaries) keeps it. Entries are keyed by device name + driver version + platform, and stamped with a hash
of the matmul template and of this schema, so a driver update or a template change makes them stale
(ignored) instead of wrong. profiles.profile_for reads it; CLNET_TUNING=0 turns that off (the tests do,
so they run with the shipped defaults). A damaged or foreign file is ignored with a warning, never fatal.
No pickle: plain JSON, written to a temporary file and renamed (atomic on POSIX and Windows).
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import warnings
from pathlib import Path

from .cache_files import cache_dir, write_atomically
from .render import kernel_dir

SCHEMA = 1
FORMAT = "clnet-tuning"
# Only these profile fields may come from the file (nothing that reaches build options or limits).
TUNABLE = ("matmul_variant", "matmul_tile_m", "matmul_tile_n", "matmul_tile_k", "matmul_wpt_m", "matmul_wpt_n")
_VARIANTS = ("cpu", "gpu")


class TuningFileWarning(RuntimeWarning):
    """The tuning file could not be used (damaged, foreign, wrong values); the shipped defaults apply."""


def path() -> Path:
    return cache_dir() / "tuning.json"


def enabled() -> bool:
    return os.environ.get("CLNET_TUNING", "1").strip().lower() not in ("0", "no", "off", "false")


def device_key(device) -> str:
    return f"{device.name} | {device.driver_version} | {device.platform_name}"


def template_hash() -> str:
    """What the stored parameters mean depends on the kernels and on how matmul.py launches them."""
    h = hashlib.sha256(f"{FORMAT}/{SCHEMA}".encode())
    h.update((kernel_dir() / "matmul.cl.mako").read_bytes())
    ops = Path(__file__).resolve().parents[1] / "ops" / "matmul.py"
    if ops.exists():
        h.update(ops.read_bytes())
    return h.hexdigest()[:16]


# Convolution entries (`clnet tune --conv`): per shape class (clnet.ops.conv_select.shape_class) and pass,
# the algorithm and its register block; stamped with a hash of the conv kernels and modules.
CONV_PASSES = ("forward", "grad_input", "grad_weight")
CONV_ALGOS = ("direct", "im2col", "gemm", "winograd2", "winograd4")
CONV_FIELDS = {"MR": 32, "NV": 8, "MO": 8, "MK": 8, "panels": 1}   # field: largest value


def conv_template_hash() -> str:
    """What conv entries mean depends on the conv kernels and on how the conv modules launch them."""
    h = hashlib.sha256(f"{FORMAT}/{SCHEMA}/conv".encode())
    for name in ("conv.cl.mako", "conv_gemm.cl.mako", "conv_winograd.cl.mako"):
        h.update((kernel_dir() / name).read_bytes())
    ops = Path(__file__).resolve().parents[1] / "ops"
    for name in ("conv.py", "conv_gemm.py", "conv_select.py", "conv_winograd.py"):
        if (ops / name).exists():
            h.update((ops / name).read_bytes())
    return h.hexdigest()[:16]


def check_conv(entries) -> dict:
    """{shape class: {pass: {"algo": name, block fields}}} type-checked; ValueError names what is wrong."""
    if not isinstance(entries, dict):
        raise ValueError(f"'conv' must be an object, got {type(entries).__name__}")
    out = {}
    for cls, passes in entries.items():
        if not isinstance(passes, dict):
            raise ValueError(f"conv entry {cls!r} is not an object")
        out[str(cls)] = {}
        for pass_, params in passes.items():
            if pass_ not in CONV_PASSES:
                raise ValueError(f"conv entry {cls!r}: unknown pass {pass_!r}")
            if not isinstance(params, dict) or params.get("algo") not in CONV_ALGOS:
                raise ValueError(f"conv entry {cls!r} {pass_}: 'algo' must be one of {CONV_ALGOS}")
            for key, value in params.items():
                if key == "algo":
                    continue
                top = CONV_FIELDS.get(key)
                if top is None:
                    raise ValueError(f"conv entry {cls!r} {pass_}: unknown parameter {key!r}")
                if not (isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= top
                        and (value >= 1 or key == "panels")):
                    raise ValueError(f"conv entry {cls!r} {pass_}: {key} must be an integer in "
                                     f"{0 if key == 'panels' else 1}..{top}, got {value!r}")
            out[str(cls)][pass_] = dict(params)
    return out


_CONV_CACHE: dict = {}   # (device, CLNET_CACHE_DIR) -> (checked at, file signature, entries)
RECHECK_S = 1.0          # how often conv2d's lookups look at the file again (stat) for another process's writes


def tuned_conv(device) -> dict:
    """The device's conv entries ({} if none, stale, disabled or unusable; warns on damage). conv2d asks on
    every pass, so the answer is kept and the file looked at again (stat) at most every RECHECK_S seconds;
    this process's own writes (store_conv, forget) drop it at once."""
    if not enabled():
        return {}
    now = time.monotonic()
    key = (id(device), os.environ.get("CLNET_CACHE_DIR"))
    hit = _CONV_CACHE.get(key)
    if hit is not None and now - hit[0] < RECHECK_S:
        return hit[2]
    file = path()
    try:
        st = file.stat()
        sig = (str(file), st.st_mtime_ns, st.st_size)
    except OSError:
        sig = None
    if hit is not None and hit[1] == sig:
        _CONV_CACHE[key] = (now, sig, hit[2])
        return hit[2]
    out = {}
    if sig is not None:
        try:
            entry = read(file)["devices"].get(device_key(device))
            if isinstance(entry, dict) and entry.get("conv_template") == conv_template_hash():
                out = check_conv(entry.get("conv") or {})
        except ValueError as err:
            _warn(f"ignoring the tuning file {file}: {err}; shipped defaults apply "
                  "(run `clnet tune` again, or delete the file)")
    _CONV_CACHE[key] = (now, sig, out)
    return out


def store_conv(device, entries: dict, extra: dict | None = None) -> Path:
    """Merge conv `entries` ({shape class: {pass: params}}) into `device`'s entry (other classes, the matmul
    parameters and other devices stay); `extra`: measurements per class, kept beside them."""
    with _WRITE_LOCK:
        file = path()
        try:
            data = read(file)
        except ValueError as err:
            _warn(f"replacing the unusable tuning file {file}: {err}")
            data = {"format": FORMAT, "schema": SCHEMA, "devices": {}}
        entry = data["devices"].get(device_key(device))
        if not isinstance(entry, dict):
            entry = dict(device=device.name, driver=device.driver_version, platform=device.platform_name,
                         template=template_hash(), params={})
        conv = entry.get("conv") if entry.get("conv_template") == conv_template_hash() else None
        conv = dict(conv) if isinstance(conv, dict) else {}
        conv.update(check_conv(entries))
        entry["conv"] = conv
        entry["conv_template"] = conv_template_hash()
        measured = entry.get("conv_measured") if isinstance(entry.get("conv_measured"), dict) else {}
        measured.update(extra or {})
        entry["conv_measured"] = {k: v for k, v in measured.items() if k in conv}
        data["devices"][device_key(device)] = entry
        file.parent.mkdir(parents=True, exist_ok=True)
        _write(file, data)
        _CONV_CACHE.clear()
        return file


def check_params(params) -> dict:
    """The tunable fields of `params`, type-checked; ValueError names what is wrong."""
    if not isinstance(params, dict):
        raise ValueError(f"params must be an object, got {type(params).__name__}")
    out = {}
    for key, value in params.items():
        if key not in TUNABLE:
            raise ValueError(f"unknown parameter {key!r}")
        if key == "matmul_variant":
            if value not in _VARIANTS:
                raise ValueError(f"matmul_variant must be one of {_VARIANTS}, got {value!r}")
        elif not (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 1024):
            raise ValueError(f"{key} must be an integer in 1..1024, got {value!r}")
        out[key] = value
    return out


def read(file: Path | None = None) -> dict:
    """The whole file as {"format", "schema", "devices": {key: entry}}; ValueError if it is not ours."""
    file = file or path()
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"format": FORMAT, "schema": SCHEMA, "devices": {}}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"unreadable ({err})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError("not a clnet tuning file")
    if data.get("schema") != SCHEMA:
        raise ValueError(f"schema {data.get('schema')!r}, this clnet reads {SCHEMA}")
    if not isinstance(data.get("devices"), dict):
        raise ValueError("'devices' must be an object")
    return data


_WARNED: set = set()
_WRITE_LOCK = threading.Lock()  # store/forget read, change and rewrite the file: one thread at a time


def _warn(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        warnings.warn(message, TuningFileWarning, stacklevel=3)


def tuned_params(device) -> dict:
    """The stored parameters for `device` ({} if none, stale, disabled or unusable; warns on damage)."""
    if not enabled():
        return {}
    file = path()
    try:
        entry = read(file)["devices"].get(device_key(device))
        if entry is None:
            return {}
        if not isinstance(entry, dict):
            raise ValueError("an entry is not an object")
        if entry.get("template") != template_hash():
            return {}  # tuned for another version of the matmul kernels: stale, silently ignored
        return check_params(entry.get("params"))
    except ValueError as err:
        _warn(f"ignoring the tuning file {file}: {err}; shipped defaults apply "
              "(run `clnet tune` again, or delete the file)")
        return {}


def tuned_classes(device) -> dict:
    """{shape class: parameters} stored beside the device's parameters, for the classes of matmul shapes
    where others won (profiles.matmul_shape_class); {} if none, stale, disabled or unusable."""
    if not enabled():
        return {}
    try:
        entry = read(path())["devices"].get(device_key(device))
        if not isinstance(entry, dict) or entry.get("template") != template_hash():
            return {}
        classes = entry.get("classes") or {}
        if not isinstance(classes, dict):
            raise ValueError("'classes' is not an object")
        return {str(name): check_params(p) for name, p in classes.items()}
    except ValueError as err:
        _warn(f"ignoring the tuning file {path()}: {err}; shipped defaults apply "
              "(run `clnet tune` again, or delete the file)")
        return {}


def store(device, params: dict, extra: dict | None = None, classes: dict | None = None) -> Path:
    """Write `params` (plus measurements in `extra`, and per-shape-class parameters) as `device`'s entry;
    other devices' entries stay. A file that is not ours is replaced (with a warning) rather than merged
    into."""
    with _WRITE_LOCK:
        return _store(device, params, extra, classes or {})


def _store(device, params: dict, extra: dict | None, classes: dict) -> Path:
    file = path()
    try:
        data = read(file)
    except ValueError as err:
        _warn(f"replacing the unusable tuning file {file}: {err}")
        data = {"format": FORMAT, "schema": SCHEMA, "devices": {}}
    old = data["devices"].get(device_key(device))
    keep = {k: old[k] for k in ("conv", "conv_template", "conv_measured")
            if isinstance(old, dict) and k in old}   # the conv entries outlive a matmul re-tune
    data["devices"][device_key(device)] = dict(
        extra or {}, **keep, device=device.name, driver=device.driver_version, platform=device.platform_name,
        template=template_hash(), params=check_params(params),
        **({"classes": {name: check_params(p) for name, p in classes.items()}} if classes else {}))
    file.parent.mkdir(parents=True, exist_ok=True)
    _write(file, data)
    return file


def forget(device=None) -> bool:
    """Drop `device`'s entry (every entry when None); True if something was removed."""
    with _WRITE_LOCK:
        return _forget(device)


def _forget(device) -> bool:
    _CONV_CACHE.clear()
    file = path()
    if device is None:
        try:
            file.unlink()
            return True
        except FileNotFoundError:
            return False
    try:
        data = read(file)
    except ValueError:
        return False
    if data["devices"].pop(device_key(device), None) is None:
        return False
    _write(file, data)
    return True


def _write(file: Path, data: dict) -> None:
    _CONV_CACHE.clear()
    write_atomically(file, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8"))

"""What this machine has learnt about its OpenCL compilers: which template family variants built, and
which crashed the compiler, per (device, driver version).

A variant is a template plus the parameters that shape its code (types, rank, vector width, tiles,
kernel choice), without the free text some templates take (an elementwise expression): `variant()`.
Until a variant has a verdict on a (device, driver), programs.py builds it in a child process
(build_worker.py), where a compiler abort kills only the child. Verdicts live in
cache_dir()/verdicts/<device hash>/: one small JSON file per variant, created atomically, so concurrent
processes never lose one another's verdicts and a driver update (another hash) starts afresh.
`clnet cache clear` keeps them (they are measurements, like the tuning file); CLNET_BUILD_WORKER=0
turns the child builds off.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import threading
from pathlib import Path

from .binary_cache import identity
from .cache_files import cache_dir, write_atomically

OK, CRASH = "ok", "crash"
_CODE_TEXT = re.compile(r"[^A-Za-z0-9_.]")  # a string parameter holding C code (an expression), not a shape


def variant(template: str, params: dict) -> str:
    """'matmul.cl.mako(MR=8, NR=32, VW=16, a_mode=rows, ...)': the template and its code-shaping parameters."""
    shown = []
    for key in sorted(params):
        value = params[key]
        if isinstance(value, str) and _CODE_TEXT.search(value):
            continue
        shown.append(f"{key}={list(value) if isinstance(value, tuple) else value}")
    return f"{template}({', '.join(shown)})"


def _device_dir(device) -> Path:
    key = "\0".join(identity(device))
    return cache_dir() / "verdicts" / hashlib.sha256(key.encode()).hexdigest()[:16]


def _file(device, name: str) -> Path:
    return _device_dir(device) / f"{hashlib.sha256(name.encode()).hexdigest()[:24]}.json"


_KNOWN: dict = {}     # (cache folder, device identity) -> {variant: (verdict, detail)}
_LOCK = threading.Lock()


def _known(device) -> dict:
    key = (str(cache_dir()), tuple(identity(device)))
    table = _KNOWN.get(key)
    if table is None:
        with _LOCK:
            table = _KNOWN.get(key)
            if table is None:
                table = {}
                for path in sorted(_device_dir(device).glob("*.json")):
                    try:
                        entry = json.loads(path.read_text(encoding="utf-8"))
                        table[entry["variant"]] = (entry["verdict"], entry.get("detail", ""))
                    except (OSError, ValueError, KeyError, TypeError):
                        continue  # a damaged verdict is no verdict: the variant is vetted again
                _KNOWN[key] = table
    return table


def verdict(device, name: str):
    """OK, CRASH, or None when `name` was never built on this device and driver."""
    entry = _known(device).get(name)
    return entry[0] if entry else None


def record(device, name: str, outcome: str, detail: str = "") -> None:
    """Remember a verdict, in this process and on disk (an unwritable cache only costs a re-vetting)."""
    _known(device)[name] = (outcome, detail)
    try:
        folder = _device_dir(device)
        folder.mkdir(parents=True, exist_ok=True)
        about = folder / "device.json"
        if not about.exists():
            write_atomically(about, json.dumps(dict(zip(("platform", "platform_version", "device", "driver"),
                                                        identity(device)))).encode())
        write_atomically(_file(device, name), json.dumps(dict(variant=name, verdict=outcome,
                                                              detail=detail)).encode())
    except OSError:
        pass


def crashes(device) -> list:
    """[(variant, detail)] of the variants that crashed the compiler of this device and driver."""
    return sorted((name, detail) for name, (outcome, detail) in _known(device).items() if outcome == CRASH)


def counts(device) -> dict:
    """{"ok": n, "crash": m} for `clnet devices`."""
    table = _known(device)
    return {OK: sum(v == OK for v, _ in table.values()), CRASH: sum(v == CRASH for v, _ in table.values())}


def forget() -> None:
    """Forget what this process read (tests that change CLNET_CACHE_DIR or delete verdict files)."""
    with _LOCK:
        _KNOWN.clear()


def folder() -> Path:
    return cache_dir() / "verdicts"


def clear() -> int:
    """Delete every verdict on this machine (`clnet cache clear --verdicts`): variants are vetted again and
    fallbacks taken after crashes are undone. Returns how many verdicts were removed."""
    n = sum(1 for p in folder().rglob("*.json") if p.name != "device.json")
    shutil.rmtree(folder(), ignore_errors=True)
    forget()
    return n

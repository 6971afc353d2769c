"""Turn a compiler's build log into an error a person can act on: the rendered source around each line
the log calls an error, marked with '>>', plus the device and the whole log."""
from __future__ import annotations

import re

# Where compilers put the line of an error: clang, NVIDIA, AMD, Intel, Oclgrind write
# "FILE:LINE:COL: error: MESSAGE"; PoCL writes "error: FILE:LINE:COL: MESSAGE".
_LOG_ERRORS = (
    re.compile(r"(?:^|:)(\d+):(?:\d+:)?\s*(?:fatal )?error:\s*(.*)"),
    re.compile(r"^\s*(?:fatal )?error:\s*[^\s:]*:(\d+):(?:\d+:)?\s*(.*)"),
)


def error_excerpt(source: str, log: str, context: int = 2) -> str:
    """The rendered source around every line the compiler's log calls an error, marked with '>>'."""
    lines = source.splitlines()
    shown, seen = [], set()
    for entry in log.splitlines():
        for pattern in _LOG_ERRORS:
            m = pattern.search(entry)
            if m:
                break
        else:
            continue
        lineno, message = int(m.group(1)), m.group(2).strip()
        if not 1 <= lineno <= len(lines) or (lineno, message) in seen:
            continue
        seen.add((lineno, message))
        lo, hi = max(1, lineno - context), min(len(lines), lineno + context)
        block = [f"{'>>' if i == lineno else '  '} {i:4d} | {lines[i - 1]}" for i in range(lo, hi + 1)]
        shown.append(f"line {lineno}: {message}\n" + "\n".join(block))
    return "\n\n".join(shown)


def build_failure(device, name: str, source: str, log: str) -> str:
    """The message of a KernelBuildError for a compiler error in `source`."""
    excerpt = error_excerpt(source, log)
    return (f"OpenCL build of {name} failed on {device.name} [{device.platform_name}]:\n"
            f"{excerpt or log}\n--- build log ---\n{log.strip()}")

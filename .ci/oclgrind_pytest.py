"""Run pytest on Oclgrind with its checkers on, and fail when Oclgrind reports any error.

    python .ci/oclgrind_pytest.py [pytest arguments]      (used by tox.ini and .ci/run)
    python .ci/oclgrind_pytest.py --check LOG [STDERR]    (only inspect earlier output)

Sets, unless already set: CLNET_TEST_DEVICES=oclgrind, OCLGRIND_DATA_RACES=1, OCLGRIND_UNINITIALIZED=1,
OCLGRIND_CHECK_API=1 and OCLGRIND_LOG (a temporary file). Oclgrind writes kernel errors (invalid reads
and writes, data races, uninitialized values, divergence, fatal errors) to OCLGRIND_LOG, but OpenCL API
misuse to the process's stderr, so pytest runs with --capture=sys (C-level stderr passes through) and
its stderr is scanned too. Every Oclgrind message is an error except the one clnet's suite causes on
purpose: clBuildProgram CL_BUILD_PROGRAM_FAILURE, from tests that build a deliberately broken kernel (a
real build failure fails its own test through KernelBuildError anyway). (clGetDeviceInfo
CL_INVALID_VALUE is an error too: clnet asks a device only what its OpenCL version defines, and keeps
pyopencl from asking NVIDIA's compute capability of other devices: backend/cl_private.py.)
pytest's exit code 5 (no test ran) counts as a failure. Creating an Oclgrind context truncates
OCLGRIND_LOG, so tests must not start another process that uses Oclgrind.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TOLERATED = (
    re.compile(r"Function:\s*clBuildProgram\s+Error:\s*CL_BUILD_PROGRAM_FAILURE", re.S),
)
CHECKS = {"CLNET_TEST_DEVICES": "oclgrind", "OCLGRIND_DATA_RACES": "1", "OCLGRIND_UNINITIALIZED": "1",
          "OCLGRIND_CHECK_API": "1"}


def messages(text: str, oclgrind_only: bool = False) -> list[str]:
    """Split output into messages: a headline at column 0 followed by indented or blank lines.
    With oclgrind_only (for stderr), keep only messages whose headline is Oclgrind's."""
    out: list[list[str]] = []
    for line in text.splitlines():
        if line.strip() and not line[0].isspace():
            out.append([line])
        elif out:
            out[-1].append(line)
    found = ["\n".join(m).strip() for m in out]
    if oclgrind_only:
        found = [m for m in found if m.lower().startswith("oclgrind")]
    return found


def check(log: Path, stderr_text: str = "") -> int:
    """Print a summary of Oclgrind's messages; 1 if any is an error."""
    found = messages(log.read_text(errors="replace")) if log.exists() else []
    found += messages(stderr_text, oclgrind_only=True)
    errors = [m for m in found if not any(t.search(m) for t in TOLERATED)]
    print(f"oclgrind: {len(found)} messages ({log}{' + stderr' if stderr_text else ''}), "
          f"{len(found) - len(errors)} tolerated, {len(errors)} errors")
    kinds: dict[str, int] = {}
    for m in errors:
        head = re.sub(r"0x[0-9a-f]+", "0x...", m.splitlines()[0])
        if "runtime error detected" in head:  # name the API call and its error
            head += ": " + " ".join(line.split(":", 1)[1].strip() for line in m.splitlines()[1:3] if ":" in line)
        kinds[head] = kinds.get(head, 0) + 1
    for head, count in sorted(kinds.items(), key=lambda kv: -kv[1])[:20]:
        print(f"  {count:6d} x {head}")
    for m in errors[:5]:
        print("\n" + m)
    return 1 if errors else 0


def run(pytest_args: list[str]) -> int:
    env = dict(os.environ)
    for key, value in CHECKS.items():
        env.setdefault(key, value)
    tmp = None
    if not env.get("OCLGRIND_LOG"):
        tmp = tempfile.mkdtemp(prefix="oclgrind-")
        env["OCLGRIND_LOG"] = os.path.join(tmp, "oclgrind.log")
    log = Path(env["OCLGRIND_LOG"])
    log.unlink(missing_ok=True)
    pytest = shutil.which("pytest", path=os.path.dirname(sys.executable)) or shutil.which("pytest")
    cmd = [pytest, "--capture=sys", *pytest_args]
    print("+ " + " ".join(f"{k}={env[k]}" for k in (*CHECKS, "OCLGRIND_LOG")) + " " + " ".join(cmd), flush=True)
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True, errors="replace")
    captured = []
    block: list[str] = []  # an Oclgrind message being read from stderr

    def flush_block():
        text = "".join(block)
        if not any(t.search(text) for t in TOLERATED):  # tolerated messages are counted, not echoed
            sys.stderr.write(text)
        block.clear()

    for line in proc.stderr:  # pass stderr through while keeping it for the check
        captured.append(line)
        if line.lower().startswith("oclgrind"):
            flush_block()
            block.append(line)
        elif block and (not line.strip() or line[0].isspace()):
            block.append(line)
        else:
            if block:
                flush_block()
            sys.stderr.write(line)
    if block:
        flush_block()
    code = proc.wait()
    status = check(log, "".join(captured))
    if tmp and not status:
        shutil.rmtree(tmp, ignore_errors=True)
    if code == 5:
        print("pytest ran no test: counted as a failure")
        return 1
    return code or status


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--check"]:
        stderr = Path(argv[2]).read_text(errors="replace") if len(argv) > 2 else ""
        return check(Path(argv[1]), stderr)
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())

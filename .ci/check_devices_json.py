"""Check `clnet devices --json` output: valid JSON listing every expected implementation.

    python .ci/check_devices_json.py devices.json pocl rusticl oclgrind

Also checks that a default exists, that it is not a simulator, and that every device's profile fits
the limits the device reports.
"""
from __future__ import annotations

import json
import sys


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    path, expected = argv[0], set(argv[1:])
    with open(path) as f:
        data = json.load(f)
    devices = [d for p in data["platforms"] for d in p["devices"]]
    found = {d["implementation"] for d in devices}
    problems = []
    if expected - found:
        problems.append(f"not listed: {sorted(expected - found)} (listed: {[d['name'] for d in devices]})")
    default = [d for d in devices if d["default"]]
    if len(default) != 1 or default[0]["spec"] != data["default"] or default[0]["simulator"]:
        problems.append(f"default should be one real device, got {data['default']}")
    for d in devices:
        prof = d["profile"]
        if max(prof["elementwise_wg"], prof["reduce_wg"], prof["max_wg"]) > d["max_work_group_size"]:
            problems.append(f"{d['spec']}: profile work-group above the device's {d['max_work_group_size']}")
        if prof["local_mem"] > d["local_mem"]:
            problems.append(f"{d['spec']}: profile local memory above the device's {d['local_mem']}")
    for p in problems:
        print("clnet devices --json:", p)
    if not problems:
        print(f"clnet devices --json: lists {sorted(found)}; default {data['default']}; profiles within limits")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

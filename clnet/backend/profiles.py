"""Device facts -> kernel parameters.

One table by vendor and device type gives defaults; every value is then clamped to what the device
reports (work-group size, local memory), so a profile never asks for more than the device has.
All known device quirks live in QUIRKS below, one line of reason each.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

# (vendor or implementation, type) -> parameter overrides; looked up most specific first.
TABLE = {
    ("default", "gpu"): dict(elementwise_wg=256, reduce_wg=256, matmul_variant="gpu",
                             matmul_tile_m=64, matmul_tile_n=64, matmul_tile_k=16,
                             matmul_wpt_m=4, matmul_wpt_n=4),
    ("default", "cpu"): dict(elementwise_wg=64, reduce_wg=64, matmul_variant="cpu",
                             matmul_tile_m=32, matmul_tile_n=32, matmul_tile_k=8,
                             matmul_wpt_m=4, matmul_wpt_n=16),
    ("default", "accelerator"): dict(elementwise_wg=64, reduce_wg=64, matmul_variant="gpu",
                                     matmul_tile_m=32, matmul_tile_n=32, matmul_tile_k=8,
                                     matmul_wpt_m=2, matmul_wpt_n=2),
    ("nvidia", "gpu"): dict(elementwise_wg=256, reduce_wg=256),
    ("amd", "gpu"): dict(elementwise_wg=256, reduce_wg=256),
    ("intel", "gpu"): dict(elementwise_wg=128, reduce_wg=128),
    # Oclgrind simulates a generic device: small groups keep the race checker fast.
    ("oclgrind", "accelerator"): dict(elementwise_wg=64, reduce_wg=64, matmul_variant="gpu",
                                      matmul_tile_m=16, matmul_tile_n=16, matmul_tile_k=8,
                                      matmul_wpt_m=2, matmul_wpt_n=2),
    ("oclgrind", "cpu"): dict(matmul_variant="gpu", matmul_tile_m=16, matmul_tile_n=16,
                              matmul_tile_k=8, matmul_wpt_m=2, matmul_wpt_n=2),
    ("oclgrind", "gpu"): dict(matmul_tile_m=16, matmul_tile_n=16, matmul_tile_k=8,
                              matmul_wpt_m=2, matmul_wpt_n=2),
}

# Quirks: (predicate on Device, overrides, reason). Applied after TABLE, before clamping.
QUIRKS = [
    (lambda d: d.vendor == "nvidia", dict(fp16=False),
     "NVIDIA's OpenCL advertises no usable cl_khr_fp16 arithmetic"),
    (lambda d: d.implementation == "rusticl", dict(elementwise_wg=64, reduce_wg=64),
     "llvmpipe runs work-groups on CPU threads; large groups only add barrier cost"),
]


@dataclass(frozen=True)
class Profile:
    """Kernel parameters chosen for one device; every field has a default that compiles anywhere."""

    elementwise_wg: int = 64
    reduce_wg: int = 64
    matmul_variant: str = "gpu"
    matmul_tile_m: int = 16
    matmul_tile_n: int = 16
    matmul_tile_k: int = 8
    matmul_wpt_m: int = 2
    matmul_wpt_n: int = 2
    fp16: bool = True
    fp64: bool = True
    max_wg: int = 1
    local_mem: int = 0
    build_options: tuple = field(default_factory=tuple)
    quirks: tuple = field(default_factory=tuple)


def _pow2_floor(n: int) -> int:
    p = 1
    while p * 2 <= n:
        p *= 2
    return p


def profile_for(device) -> Profile:
    """Build the profile for `device` from TABLE and QUIRKS, clamped to its reported limits."""
    params: dict = {}
    for key in (("default", device.type), (device.vendor, device.type),
                (device.implementation, device.type)):
        params.update(TABLE.get(key, {}))
    if device.type not in ("gpu", "cpu", "accelerator"):
        params.update(TABLE[("default", "accelerator")])
    reasons = []
    for predicate, overrides, reason in QUIRKS:
        if predicate(device):
            params.update(overrides)
            reasons.append(reason)
    prof = Profile(**params, max_wg=device.max_work_group_size, local_mem=device.local_mem,
                   quirks=tuple(reasons))
    return clamp(prof, device)


def clamp(prof: Profile, device) -> Profile:
    """Never exceed the device: work-groups within CL_DEVICE_MAX_WORK_GROUP_SIZE and item sizes."""
    max_wg = min(device.max_work_group_size, device.max_work_item_sizes[0])
    ew = _pow2_floor(min(prof.elementwise_wg, max_wg))
    # a reduction keeps one accumulator (up to 8 bytes) and one index per work-item in local memory
    rw = _pow2_floor(max(1, min(prof.reduce_wg, max_wg, device.local_mem // 16 or 1)))
    mm = dict(matmul_tile_m=prof.matmul_tile_m, matmul_tile_n=prof.matmul_tile_n,
              matmul_tile_k=prof.matmul_tile_k, matmul_wpt_m=prof.matmul_wpt_m, matmul_wpt_n=prof.matmul_wpt_n)
    if prof.matmul_variant == "gpu":
        # shrink tiles until one work-group and its two local tiles fit the device
        while True:
            wg = (mm["matmul_tile_m"] // mm["matmul_wpt_m"]) * (mm["matmul_tile_n"] // mm["matmul_wpt_n"])
            lmem = 4 * mm["matmul_tile_k"] * (mm["matmul_tile_m"] + mm["matmul_tile_n"]) * 2
            if wg <= max_wg and lmem <= device.local_mem and all(
                    s <= device.max_work_item_sizes[min(i, len(device.max_work_item_sizes) - 1)]
                    for i, s in enumerate((mm["matmul_tile_n"] // mm["matmul_wpt_n"],
                                           mm["matmul_tile_m"] // mm["matmul_wpt_m"]))):
                break
            if mm["matmul_tile_m"] > mm["matmul_wpt_m"] * 2 and mm["matmul_tile_m"] >= mm["matmul_tile_n"]:
                mm["matmul_tile_m"] //= 2
            elif mm["matmul_tile_n"] > mm["matmul_wpt_n"] * 2:
                mm["matmul_tile_n"] //= 2
            elif mm["matmul_tile_k"] > 1:
                mm["matmul_tile_k"] //= 2
            else:
                break
    return replace(prof, elementwise_wg=ew, reduce_wg=rw, fp16=prof.fp16 and device.fp16,
                   fp64=prof.fp64 and device.fp64, **mm)

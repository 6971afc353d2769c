"""Device facts -> kernel parameters.

One table by vendor and device type gives defaults (CLBlast-style: default -> vendor -> implementation);
QUIRKS then apply what is known to be wrong or slow on particular drivers; finally every value is
clamped to what the device reports (work-group size, work-item sizes, local memory), so a profile
never asks for more than the device has. Each quirk carries a one-line reason, shown by `clnet devices`.
Parameters that `clnet tune` measured on the very device (tuning_file) override TABLE before QUIRKS.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields, replace

from . import build_verdicts, tuning_file

# (vendor or implementation, type) -> parameter overrides; looked up most specific last:
# ("default", type), then (vendor, type), then (implementation, type).
TABLE = {
    ("default", "gpu"): dict(elementwise_wg=256, reduce_wg=256, matmul_variant="gpu",
                             matmul_tile_m=64, matmul_tile_n=64, matmul_tile_k=16,
                             matmul_wpt_m=4, matmul_wpt_n=4),
    # CPU matmul (gemm_cpu): a work-item holds an 8 x 32 block of C in vector registers (16 float16
    # accumulators); a work-group walks 64 rows so its 8 items share the packed B panel in cache.
    # tile_k is unused there. Measured on PoCL 3.1 / Xeon (AVX-512): 8x32 beat 4x16, 4x32 and 16x16.
    ("default", "cpu"): dict(elementwise_wg=64, reduce_wg=64, matmul_variant="cpu",
                             matmul_tile_m=64, matmul_tile_n=32, matmul_tile_k=256,
                             matmul_wpt_m=8, matmul_wpt_n=32),
    ("default", "accelerator"): dict(elementwise_wg=64, reduce_wg=64, matmul_variant="gpu",
                                     matmul_tile_m=32, matmul_tile_n=32, matmul_tile_k=8,
                                     matmul_wpt_m=2, matmul_wpt_n=2),
    # GPUs: a multiple of the SIMD width (NVIDIA warp 32, AMD wavefront 64, Intel SIMD 8-32, Apple 32).
    ("nvidia", "gpu"): dict(elementwise_wg=256, reduce_wg=256),
    ("amd", "gpu"): dict(elementwise_wg=256, reduce_wg=256),
    ("intel", "gpu"): dict(elementwise_wg=128, reduce_wg=128),
    ("apple", "gpu"): dict(elementwise_wg=256, reduce_wg=256),
    # Mali/Immortalis: small register files; 64 is ARM's recommended work-group size.
    ("arm", "gpu"): dict(elementwise_wg=64, reduce_wg=64),
    # CPUs run a work-group as a loop on one core: groups big enough to vectorise across work-items.
    ("pocl", "cpu"): dict(elementwise_wg=64, reduce_wg=64),
    ("intel", "cpu"): dict(elementwise_wg=128, reduce_wg=128),
    # Oclgrind simulates a generic device: small groups keep the race checker fast.
    ("oclgrind", "accelerator"): dict(elementwise_wg=64, reduce_wg=64, matmul_variant="gpu",
                                      matmul_tile_m=16, matmul_tile_n=16, matmul_tile_k=8,
                                      matmul_wpt_m=2, matmul_wpt_n=2),
    ("oclgrind", "cpu"): dict(matmul_variant="gpu", matmul_tile_m=16, matmul_tile_n=16,
                              matmul_tile_k=8, matmul_wpt_m=2, matmul_wpt_n=2),
    ("oclgrind", "gpu"): dict(elementwise_wg=64, reduce_wg=64,
                              matmul_tile_m=16, matmul_tile_n=16, matmul_tile_k=8,
                              matmul_wpt_m=2, matmul_wpt_n=2),
    # Mesa's llvmpipe runs work-items in SIMD lanes like a GPU, and its NIR compiler spends tens of
    # minutes scalarising gemm_cpu's 8 x 32 vector register block: the tiled variant suits it.
    ("rusticl", "cpu"): dict(matmul_variant="gpu", matmul_tile_m=32, matmul_tile_n=32, matmul_tile_k=8,
                             matmul_wpt_m=4, matmul_wpt_n=4),
    ("clover", "cpu"): dict(matmul_variant="gpu", matmul_tile_m=32, matmul_tile_n=32, matmul_tile_k=8,
                            matmul_wpt_m=4, matmul_wpt_n=4),
}

def _llvm_major(platform_version: str) -> int:
    """PoCL names its LLVM in the platform version ('... LLVM 14.0.6, SLEEF, DISTRO ...'); 0 if it does not."""
    m = re.search(r"\bLLVM (\d+)", platform_version)
    return int(m.group(1)) if m else 0


def _names_no_llvm_cpu(name: str) -> bool:
    """PoCL's CPU device is 'pthread-<llvm cpu>-<model>' ('pthread-skylake-avx512-AMD EPYC'); a distro build
    whose LLVM does not know the CPU says only 'pthread-AMD EPYC'."""
    m = re.match(r"(?:pthread|cpu|basic)-(.*)", name)
    return bool(m) and not re.match(r"[a-z][a-z0-9_]*(?:-[a-z0-9_]+)*-", m.group(1))


# Quirks: (predicate on Device, overrides, reason). Applied after TABLE, before clamping.
# `max_wg` here is a cap on top of what the device reports.
QUIRKS = [
    (lambda d: d.vendor == "nvidia", dict(fp16=False),
     "NVIDIA's OpenCL advertises no usable cl_khr_fp16 arithmetic"),
    (lambda d: d.vendor == "amd" and d.type == "gpu", dict(max_wg=256),
     "AMD's OpenCL guarantees only 256 work-items per group without reqd_work_group_size "
     "(ROCm issue 330), even where the device reports 1024"),
    (lambda d: d.implementation in ("rusticl", "clover"), dict(elementwise_wg=64, reduce_wg=64),
     "Mesa runs work-groups as CPU threads (llvmpipe) or without tuning; large groups only add barrier cost"),
    (lambda d: d.implementation == "pocl" and d.type == "cpu" and 0 < _llvm_major(d.platform_version) <= 14
     and _names_no_llvm_cpu(d.name), dict(max_vector_width=8),
     "PoCL on LLVM <= 14 (pip wheel) on a CPU its LLVM does not name (Zen 4) aborted on 16-wide mad/fma: "
     "vectors of 8"),
    (lambda d: d.is_simulator, dict(vector_width=1),
     "Oclgrind checks each work-item separately; vector loads only slow the simulation"),
    (lambda d: d.is_simulator and os.environ.get("OCLGRIND_UNINITIALIZED", "0") not in ("", "0"),
     dict(build_options=("-cl-opt-disable",)),
     "Oclgrind 21.10's uninitialized-value checker aborts on LLVM's freeze instruction, which the "
     "optimiser emits for a/b + a%b pairs"),
]


@dataclass(frozen=True)
class Profile:
    """Kernel parameters chosen for one device; every field has a default that compiles anywhere."""

    elementwise_wg: int = 64     # work-items per group for elementwise kernels
    reduce_wg: int = 64          # work-items per group for reductions (one accumulator each in local memory)
    vector_width: int = 1        # floats one work-item may handle as a vector (the device's preferred width)
    max_vector_width: int = 16   # the widest vector any clnet kernel may use on this device (quirks lower it)
    matmul_variant: str = "gpu"
    matmul_tile_m: int = 16
    matmul_tile_n: int = 16
    matmul_tile_k: int = 8
    matmul_wpt_m: int = 2
    matmul_wpt_n: int = 2
    fp16: bool = True
    fp64: bool = True
    max_wg: int = 1              # the largest work-group any clnet kernel may launch on this device
    local_mem: int = 0           # bytes of local memory a work-group may use
    build_options: tuple = field(default_factory=tuple)
    quirks: tuple = field(default_factory=tuple)
    # ((shape class, Profile), ...): matmul parameters `clnet tune` found best for a class of products
    # (matmul_shape_class) where they beat the ones above; for_matmul picks them
    matmul_classes: tuple = field(default_factory=tuple)

    def as_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "matmul_classes"}
        out["matmul_classes"] = {name: {k: getattr(p, k) for k in tuning_file.TUNABLE}
                                 for name, p in self.matmul_classes}
        return out

    def for_matmul(self, m: int, n: int, k: int) -> "Profile":
        """The profile a [m, k] @ [k, n] product runs with: this one, or its shape class's tuned one."""
        if self.matmul_classes:
            cls = matmul_shape_class(m, n, k)
            for name, prof in self.matmul_classes:
                if name == cls:
                    return prof
        return self


MATMUL_SHAPE_CLASSES = ("large", "thin")


def matmul_shape_class(m: int, n: int, k: int) -> str:
    """'large' when both output sides are at least 256 (big tiles fill the device), else 'thin' (a
    two-layer net's 64x100x1000, a tall-skinny 4096x64x256: small tiles keep every compute unit busy).
    On NVIDIA's H200 128x128 tiles ran n=4096 at 29 TFLOP/s but lost the thin product, so one set of
    parameters could not serve both (the GPU probe, 2026-12-04)."""
    return "large" if min(m, n) >= 256 else "thin"


# Bytes of local memory per reduction work-item: one accumulator (up to 8 bytes) and one index.
REDUCE_LOCAL_BYTES_PER_ITEM = 16


def matmul_work_group(prof: Profile) -> tuple:
    """The (x, y) work-group of the tiled matmul: one work-item per wpt_n x wpt_m block of a tile."""
    return (prof.matmul_tile_n // prof.matmul_wpt_n, prof.matmul_tile_m // prof.matmul_wpt_m)


def matmul_local_bytes(prof: Profile) -> int:
    """Local memory of the GPU matmul variant: A[TK][TM+1] and B[TK][TN+1] tiles, of float64 at worst."""
    if prof.matmul_variant != "gpu":
        return 0
    return 8 * prof.matmul_tile_k * (prof.matmul_tile_m + prof.matmul_tile_n + 2)


def _pow2_floor(n: int) -> int:
    p = 1
    while p * 2 <= n:
        p *= 2
    return p


class _SeenAs:
    """A device looked at as another vendor's GPU (CLNET_PROFILE_VENDOR), limits unchanged."""

    def __init__(self, device, vendor: str):
        self._device, self.vendor, self.implementation, self.type = device, vendor, vendor, "gpu"

    def __getattr__(self, name):
        return getattr(self._device, name)


def profile_for(device, tuned: bool = True) -> Profile:
    """Build the profile for `device` from TABLE and QUIRKS, clamped to its reported limits.

    CLNET_PROFILE_VENDOR=nvidia|amd|intel|... picks parameters as for that vendor's GPU while still
    clamping to the real device's limits; the tox envs oclgrind-nvidia/-amd/-intel use it so Oclgrind,
    set to those GPU classes' limits, runs the kernels with the parameters such a GPU would get.
    tuned=False gives the shipped defaults even where `clnet tune` stored parameters for the device.
    """
    emulate = os.environ.get("CLNET_PROFILE_VENDOR", "").strip().lower()
    seen = _SeenAs(device, emulate) if emulate else device
    kind = seen.type if seen.type in ("gpu", "cpu", "accelerator") else "accelerator"
    params: dict = {}
    for key in (("default", kind), (seen.vendor, kind), (seen.implementation, kind)):
        params.update(TABLE.get(key, {}))
    params["vector_width"] = device.preferred_vector_width_float if kind == "cpu" else 1
    reasons = [f"CLNET_PROFILE_VENDOR={emulate}: parameters as for a {emulate} GPU"] if emulate else []
    tuned_params = tuning_file.tuned_params(device) if tuned and not emulate else {}
    if tuned_params:  # measured on this very device by `clnet tune` (CLNET_TUNING=0 ignores them)
        params.update(tuned_params)
        reasons.append("matmul parameters tuned by `clnet tune`: " + ", ".join(
            f"{k[len('matmul_'):]}={v}" for k, v in sorted(tuned_params.items())))
    cap = device.max_work_group_size
    for predicate, overrides, reason in QUIRKS:
        if predicate(seen):
            overrides = dict(overrides)
            cap = min(cap, overrides.pop("max_wg", cap))
            params.update(overrides)
            reasons.append(reason)
    crashed = build_verdicts.crashes(device)
    if crashed:  # the compiler died building these variants here (build_worker.py): step down the ladder
        # the widest vectors the kernels use here: a quirk's cap (the wheel's PoCL on a CPU its LLVM does not
        # name: 8) counts, or the first level would "fall back" to the width the crash happened at
        widest = min(16, params.get("max_vector_width", 16),
                     max(4, params["vector_width"], device.preferred_vector_width_float))
        params.update(_crash_fallback(len(crashed), widest, params))
        first, detail = crashed[0]
        said = detail.strip().splitlines()[-1][:160] if detail.strip() else "no message"
        reasons.append(f"the compiler crashed on {len(crashed)} kernel variant(s) with this driver (first "
                       f"{first}: {said}): fallback level {len(crashed)}; `clnet cache clear --verdicts` forgets it")
    prof = clamp(Profile(**params, max_wg=cap, local_mem=device.local_mem, quirks=tuple(reasons)), device)
    classes = tuning_file.tuned_classes(device) if tuned and not emulate and not crashed else {}
    if classes:
        prof = replace(prof, matmul_classes=tuple((name, clamp(replace(prof, **cp), device))
                                                  for name, cp in sorted(classes.items())))
    return prof


def _crash_fallback(crashes: int, widest: int, params: dict) -> dict:
    """Parameters after `crashes` compiler crashes on a device whose kernels use vectors up to `widest`: each
    level halves the vectors, down to 4 (the narrowest the vector kernels take); the last level also
    replaces the vector CPU matmul with the scalar tiled one. 16 -> 8 -> 4 -> 4 + scalar matmul."""
    ladder, width = [], widest
    while width > 4:
        width //= 2
        ladder.append(dict(max_vector_width=width))
    ladder.append(dict(max_vector_width=4, matmul_variant="gpu", matmul_tile_m=32, matmul_tile_n=32,
                       matmul_tile_k=8, matmul_wpt_m=4, matmul_wpt_n=4))
    out = dict(ladder[min(crashes, len(ladder)) - 1])
    out["max_vector_width"] = min(params.get("max_vector_width", 16), out["max_vector_width"])
    return out


def clamp(prof: Profile, device) -> Profile:
    """Never exceed the device: work-groups within max_wg and CL_DEVICE_MAX_WORK_ITEM_SIZES, local
    memory within CL_DEVICE_LOCAL_MEM_SIZE; sizes stay powers of two."""
    sizes = tuple(device.max_work_item_sizes) or (device.max_work_group_size,)
    max_wg = max(1, min(prof.max_wg, device.max_work_group_size, sizes[0]))
    ew = _pow2_floor(max(1, min(prof.elementwise_wg, max_wg)))
    rw = _pow2_floor(max(1, min(prof.reduce_wg, max_wg, device.local_mem // REDUCE_LOCAL_BYTES_PER_ITEM or 1)))
    mvw = _pow2_floor(max(1, min(prof.max_vector_width, 16)))
    vw = _pow2_floor(max(1, min(prof.vector_width, mvw)))
    mm = replace(prof)
    # shrink matmul tiles until one work-group (and, for the GPU variant, its local tiles) fits the device
    while True:
        wg_x, wg_y = matmul_work_group(mm)
        fits = (wg_x * wg_y <= max_wg and wg_x <= sizes[0] and wg_y <= sizes[min(1, len(sizes) - 1)]
                and matmul_local_bytes(mm) <= device.local_mem)
        if fits:
            break
        if mm.matmul_tile_m > mm.matmul_wpt_m and mm.matmul_tile_m >= mm.matmul_tile_n:
            mm = replace(mm, matmul_tile_m=mm.matmul_tile_m // 2)
        elif mm.matmul_tile_n > mm.matmul_wpt_n:
            mm = replace(mm, matmul_tile_n=mm.matmul_tile_n // 2)
        elif mm.matmul_tile_k > 1:
            mm = replace(mm, matmul_tile_k=mm.matmul_tile_k // 2)
        elif mm.matmul_wpt_m > 1 or mm.matmul_wpt_n > 1:
            mm = replace(mm, matmul_wpt_m=max(1, mm.matmul_wpt_m // 2), matmul_wpt_n=max(1, mm.matmul_wpt_n // 2))
        else:
            break
    # tiles stay whole multiples of the per-work-item blocks (the kernels assume it)
    mm = replace(mm, matmul_tile_m=max(mm.matmul_wpt_m, mm.matmul_tile_m // mm.matmul_wpt_m * mm.matmul_wpt_m),
                 matmul_tile_n=max(mm.matmul_wpt_n, mm.matmul_tile_n // mm.matmul_wpt_n * mm.matmul_wpt_n))
    return replace(mm, max_wg=max_wg, elementwise_wg=ew, reduce_wg=rw, vector_width=vw, max_vector_width=mvw,
                   fp16=prof.fp16 and device.fp16, fp64=prof.fp64 and device.fp64)

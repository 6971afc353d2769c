"""Matmul and conv2d autotuning: search the kernel parameters for one device, verify each candidate, keep the
winner (the conv part, tune_conv, is at the end: per shape class and pass, algorithm and register block).

Why: the shipped defaults (profiles.TABLE) are one guess per vendor class; the fastest register block,
work-group shape or tile differs between CPUs and GPUs of one class. `clnet tune` times candidates on a
few representative shapes (square, a two-layer-net step's thin product, a tall-skinny one) and stores
the winner in the user's tuning file (backend/tuning_file.py), which profiles read from then on.

Every candidate is first checked against numpy in float64 on random operands, on each timed shape and
on an odd-sized shape in three layouts (plain, B transposed as in nn.Linear, A transposed), each with
the bias/ReLU epilogue; a candidate that fails to build, exceeds a device limit or gives a wrong answer
is rejected, so tuning changes speed only, never results beyond float32 rounding.

The search is two-stage (a coordinate search: builds are the expensive part): first the register
block (CPU: MR x NR; GPU: square tiles x per-item blocks) at the default launch shape, then the launch
shape (CPU: work-group rows; GPU: tile_k) of the three best blocks; finally the best few and the default
are timed again, interleaved, so the winner is not an accident of a noisy moment (and it must beat the
default by MARGIN there, or the default stays). A time budget stops the search early (the default
is always measured).
"""
from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass, replace

import numpy as np

from .backend import calibration, tuning_file
from .backend.profiles import MATMUL_SHAPE_CLASSES, clamp, matmul_shape_class, profile_for

EPS32 = 2.0 ** -24


@dataclass(frozen=True)
class Shape:
    """One product C[m, n] = A[m, k] @ B[k, n]."""

    m: int
    n: int
    k: int
    label: str = ""

    @property
    def flops(self) -> float:
        return 2.0 * self.m * self.n * self.k

    def __str__(self) -> str:
        return f"{self.m}x{self.n}x{self.k}"

    @classmethod
    def parse(cls, text: str) -> "Shape":
        """'1024' (square) or 'MxNxK'."""
        parts = [int(p) for p in text.lower().replace("*", "x").split("x")]
        if len(parts) == 1:
            parts *= 3
        if len(parts) != 3 or min(parts) < 1:
            raise ValueError(f"a shape is N or MxNxK with positive sizes, got {text!r}")
        return cls(*parts, label="square" if len(set(parts)) == 1 else "")


# Representative products: square GEMMs, the lecture's two-layer step (x[64,1000] @ w1[1000,100]),
# a tall-skinny one (a batch of im2col rows times few filters).
SHAPES = (Shape(256, 256, 256, "square"), Shape(512, 512, 512, "square"), Shape(1024, 1024, 1024, "square"),
          Shape(2048, 2048, 2048, "square"), Shape(64, 100, 1000, "thin"), Shape(4096, 64, 256, "tall"))
QUICK_SHAPES = (Shape(64, 64, 64, "square"), Shape(48, 40, 56, "edges"))
CHECK_SHAPE = Shape(37, 29, 53, "edges")     # odd sizes: edge blocks in every direction
DEFAULT_BUDGET = {"fast": 180.0, "slow": 600.0}
QUICK_BUDGET = 30.0
MARGIN = 1.05      # a candidate must beat the default by 5% in the confirmation round to replace it


class Rejected(Exception):
    """A candidate that cannot be used: build failure, device limit, wrong result."""


@dataclass
class Trial:
    """One candidate's outcome: GFLOP/s per shape (empty when rejected) and its score."""

    params: dict
    gflops: list
    rejected: str = ""

    @property
    def score(self) -> float:
        """Geometric mean of GFLOP/s over the shapes (no shape dominates the choice)."""
        if self.rejected or not self.gflops:
            return 0.0
        return math.exp(sum(math.log(max(g, 1e-9)) for g in self.gflops) / len(self.gflops))


@dataclass
class Result:
    device: object
    shapes: tuple
    default: Trial
    winner: Trial
    trials: list
    stored: object = None      # path of the tuning file, once written
    elapsed: float = 0.0
    classes: dict = None       # {shape class: Trial} where another candidate beat the winner on that class


def _geomean(values) -> float:
    values = [max(v, 1e-9) for v in values]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else 0.0


def class_winners(shapes, winner: Trial, trials, margin: float = None) -> dict:
    """{shape class: Trial} for each class of the timed shapes (profiles.matmul_shape_class) where some
    candidate's geomean over that class's shapes beats the overall winner's by `margin`: big square
    products and thin ones want different tiles on GPUs (on the H200, 128x128 tiles won n=4096 and lost
    64x100x1000), and the profile then picks per product (Profile.for_matmul)."""
    margin = MARGIN if margin is None else margin
    out = {}
    for cls in MATMUL_SHAPE_CLASSES:
        idx = [i for i, s in enumerate(shapes) if matmul_shape_class(s.m, s.n, s.k) == cls]
        if not idx or len(idx) == len(shapes) or winner.rejected:
            continue
        best = max((t for t in trials if not t.rejected and t.gflops),
                   key=lambda t: _geomean([t.gflops[i] for i in idx]), default=None)
        if best is not None and best.params != winner.params and \
                _geomean([best.gflops[i] for i in idx]) > margin * _geomean([winner.gflops[i] for i in idx]):
            out[cls] = best
    return out


# --- parameters -------------------------------------------------------------------------------------
def _params(prof) -> dict:
    return {k: getattr(prof, k) for k in tuning_file.TUNABLE}


def describe(params: dict) -> str:
    """Short text for a candidate, in the kernel's own terms."""
    if params["matmul_variant"] == "cpu":
        return (f"cpu block {params['matmul_wpt_m']}x{params['matmul_wpt_n']} "
                f"rows/group {params['matmul_tile_m'] // params['matmul_wpt_m']}")
    return (f"gpu tile {params['matmul_tile_m']}x{params['matmul_tile_n']}x{params['matmul_tile_k']} "
            f"per item {params['matmul_wpt_m']}x{params['matmul_wpt_n']}")


def _cpu(mr, nvec, rows) -> dict:
    """gemm_cpu: an MR x (16*nvec) block (nvec vectors of the profile's width per row, see
    ops.matmul._cpu_block), `rows` work-items per group along M; tile_k is unused there."""
    return dict(matmul_variant="cpu", matmul_wpt_m=mr, matmul_wpt_n=16 * nvec, matmul_tile_m=mr * rows,
                matmul_tile_n=16 * nvec, matmul_tile_k=256)


def _blocks(prof, quick: bool) -> list:
    """Register blocks for gemm_cpu that fit the vector register file (32 with AVX-512, else 16):
    MR*nvec accumulators + nvec B vectors + one broadcast A value."""
    regs = 32 if prof.vector_width >= 16 else 16
    out = [(mr, nv) for mr in (2, 4, 6, 8, 12, 16) for nv in (1, 2, 3, 4)
           if mr * nv + nv + 1 <= regs and mr * nv >= 4]
    out.sort(key=lambda b: (-b[0] * b[1], b[0]))   # more accumulators (more FMAs per load) first
    return out[:3] if quick else out


# CPU implementations whose compiler vectorizes across work-items, where the tiled kernel may win too.
BOTH_VARIANTS = ("intel",)


def stage1(prof, device, quick: bool) -> list:
    """Register blocks / tiles, at the default launch shape. On a CPU whose compiler vectorizes across
    work-items (Intel's CPU runtime; not PoCL, whose work-group loops suit the vector CPU kernel), both
    kernels compete: the vector CPU one and the tiled one the compiler may vectorize itself."""
    out = []
    both = device.type == "cpu" and device.implementation in BOTH_VARIANTS
    if prof.matmul_variant == "cpu" or both:
        rows = max(1, prof.matmul_tile_m // max(1, prof.matmul_wpt_m)) if prof.matmul_variant == "cpu" else 8
        out += [_cpu(mr, nv, rows) for mr, nv in _blocks(prof, quick)]
    if prof.matmul_variant == "gpu" or both:
        tk = prof.matmul_tile_k if prof.matmul_variant == "gpu" else 8
        for t in ((16, 32) if quick else (16, 32, 64, 128)):
            for w in (1, 2, 4, 8):
                out.append(dict(matmul_variant="gpu", matmul_tile_m=t, matmul_tile_n=t, matmul_wpt_m=w,
                                matmul_wpt_n=w, matmul_tile_k=tk))
    return [p for p in out if p["matmul_variant"] == "cpu" or _gpu_fits(p, prof, device)]


def stage2(best: dict, prof, device, quick: bool) -> list:
    """Launch shapes around one of the best blocks."""
    if best["matmul_variant"] == "cpu":
        mr, nv = best["matmul_wpt_m"], best["matmul_wpt_n"] // 16
        return [_cpu(mr, nv, r) for r in ((2, 16) if quick else (1, 2, 4, 8, 16, 32))]
    return [p for p in (dict(best, matmul_tile_k=tk) for tk in ((4, 16) if quick else (4, 8, 16, 32)))
            if _gpu_fits(p, prof, device)]


def _gpu_fits(p, prof, device) -> bool:
    """A GPU-variant candidate the device can run as given (clamping would change it into another one)."""
    t, w = p["matmul_tile_m"], p["matmul_wpt_m"]
    items = (t // w) * (p["matmul_tile_n"] // p["matmul_wpt_n"])
    local = 8 * p["matmul_tile_k"] * (p["matmul_tile_m"] + p["matmul_tile_n"] + 2)
    return w <= t and 4 <= items <= prof.max_wg and local <= device.local_mem and w * p["matmul_wpt_n"] <= 64


# --- measuring ----------------------------------------------------------------------------------------
class _Operands:
    """Random operands of one shape on the device, with the float64 reference and its error scale."""

    def __init__(self, device, shape: Shape, rng, layout: str = "nn"):
        import clnet
        self.shape, self.layout = shape, layout
        a = rng.standard_normal((shape.m, shape.k)).astype(np.float32)
        b = rng.standard_normal((shape.k, shape.n)).astype(np.float32)
        self.bias = rng.standard_normal(shape.n).astype(np.float32) if layout != "nn" else None
        ref = a.astype(np.float64) @ b.astype(np.float64)
        scale = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)
        if self.bias is not None:   # the epilogue: relu(A @ B + bias)
            ref = np.maximum(ref + self.bias, 0.0)
            scale = scale + np.abs(self.bias)
        self.ref, self.scale = ref, scale
        # stored as the layout says: "nt" keeps B as [n, k] (nn.Linear's weight), "tn" keeps A as [k, m]
        self.a = clnet.tensor(np.ascontiguousarray(a.T) if layout == "tn" else a, device=device)
        self.b = clnet.tensor(np.ascontiguousarray(b.T) if layout == "nt" else b, device=device)
        self.tbias = clnet.tensor(self.bias, device=device) if self.bias is not None else None

    def product(self):
        from .ops.matmul import matmul_ex, mm
        if self.layout == "nn":
            return mm(self.a, self.b)
        return matmul_ex(self.a, self.b, trans_a=self.layout == "tn", trans_b=self.layout == "nt",
                         bias=self.tbias, activation="relu")


def bound(k: int) -> float:
    """Largest accepted |C - ref| / (|A| @ |B|) per element: float32 rounding of a k-term dot product
    in any summation order grows like sqrt(k) * eps for random operands; 8x margin. A dropped or
    doubled term costs about 1/k of the scale, far above this for any k a device can hold."""
    return 8.0 * math.sqrt(k) * EPS32 + 4 * EPS32


def error(got, ops: _Operands) -> float:
    got = np.asarray(got, dtype=np.float64)
    if got.shape != ops.ref.shape:
        return math.inf
    if not np.all(np.isfinite(got)):
        return math.inf
    return float(np.max(np.abs(got - ops.ref) / np.maximum(ops.scale, 1e-30)))


def _product(ops: _Operands):
    """The candidate's result (the seam tests use to inject a wrong one)."""
    return ops.product()


def verify(device, ops: _Operands) -> None:
    """Raise Rejected unless the current profile's product matches numpy within float32 rounding."""
    err = error(_product(ops).numpy(), ops)
    if not err <= bound(ops.shape.k):
        raise Rejected(f"wrong result on {ops.shape} ({ops.layout}): error {err:.2g} "
                       f"> bound {bound(ops.shape.k):.2g}")


def _time(device, ops: _Operands, reps: int) -> float:
    """GFLOP/s from the median of `reps` timed runs (packing and the final synchronize included)."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        _product(ops)
        device.synchronize()
        times.append(time.perf_counter() - t0)
    return ops.shape.flops / statistics.median(times) / 1e9


def _errors():
    import pyopencl as cl
    from .errors import ClnetError
    return (ClnetError, cl.Error, ValueError, MemoryError)


def measure(device, params: dict, base, operands: list, checks: list, reps: int) -> Trial:
    """Verify `params` on every check and shape, then time it on each shape. The device's profile is
    switched for the duration and always restored."""
    prof = clamp(replace(base, **params), device)
    if _params(prof) != params:
        return Trial(params, [], rejected="does not fit the device's limits")
    saved = device._profile
    device._profile = prof
    try:
        for ops in checks + operands:
            verify(device, ops)            # also builds every kernel the timed runs need
        return Trial(params, [_time(device, ops, reps) for ops in operands])
    except Rejected as err:
        return Trial(params, [], rejected=str(err))
    except _errors() as err:
        text = str(err).strip().splitlines()
        return Trial(params, [], rejected=f"{type(err).__name__}: {text[0] if text else ''}")
    finally:
        device._profile = saved


# --- the search -------------------------------------------------------------------------------------
def is_slow(device) -> bool:
    return device.is_simulator or device.implementation in ("rusticl", "clover")


def tune(device, shapes=None, quick: bool = False, budget: float | None = None, reps: int | None = None,
         store: bool = True, log=print, seed: int = 0) -> Result:
    """Search, verify, time; store the winner for `device` (unless store=False) and return the Result."""
    t_start = time.perf_counter()
    shapes = tuple(shapes or (QUICK_SHAPES if quick else SHAPES))
    if budget is None:
        budget = QUICK_BUDGET if quick else DEFAULT_BUDGET["slow" if is_slow(device) else "fast"]
    reps = reps or (3 if quick or is_slow(device) else 5)
    base = profile_for(device, tuned=False)
    rng = np.random.default_rng(seed)
    operands = [_Operands(device, s, rng) for s in shapes]
    checks = [_Operands(device, CHECK_SHAPE, rng, layout) for layout in ("nn", "nt", "tn")]
    log(f"clnet tune on {device.describe()}  ({device.driver_version}); budget {budget:.0f} s; median of {reps}")
    log("shapes (M x N x K): " + ", ".join(f"{s}{' ' + s.label if s.label else ''}" for s in shapes))
    log(f"every candidate is checked against numpy (float64) on {CHECK_SHAPE} in 3 layouts and on each shape")
    _say_load(device, log)

    trials: dict = {}

    def run(params) -> Trial:
        key = tuple(sorted(params.items()))
        if key not in trials:
            trials[key] = trial = measure(device, params, base, operands, checks, reps)
            figures = ("  ".join(f"{g:8.1f}" for g in trial.gflops) + f"  | {trial.score:8.1f}"
                       if not trial.rejected else f"REJECTED: {trial.rejected}")
            log(f"  {describe(params):40s} {figures}")
        return trials[key]

    def out_of_time() -> bool:
        return time.perf_counter() - t_start > budget

    log(f"  {'candidate':40s} " + "  ".join(f"{str(s):>8s}" for s in shapes) + "  | geomean  (GFLOP/s)")
    default = run(_params(base))
    for stage in (lambda: stage1(base, device, quick), None):
        if stage is None:   # stage 2 around the three best so far
            ranked = sorted((t for t in trials.values() if not t.rejected), key=lambda t: -t.score)[:3]
            todo = [p for t in ranked for p in stage2(t.params, base, device, quick)]
        else:
            todo = stage()
        for params in todo:
            if out_of_time():
                break
            run(params)
    if out_of_time():
        log(f"  (time budget of {budget:.0f} s reached: search stopped)")

    # confirm: the best few and the default again, interleaved, more repetitions
    ranked = sorted((t for t in trials.values() if not t.rejected), key=lambda t: -t.score)[:3]
    finalists = ranked + ([default] if default not in ranked and not default.rejected else [])
    if len(finalists) > 1:
        confirm = {id(t): [] for t in finalists}
        for _ in range(2):
            for t in finalists:
                again = measure(device, t.params, base, operands, [], reps)
                confirm[id(t)].append(again.score if not again.rejected else 0.0)
        log("confirmation (interleaved, geomean GFLOP/s): " + ", ".join(
            f"{describe(t.params)}: {max(confirm[id(t)]):.1f}" for t in finalists))
        winner = max(finalists, key=lambda t: max(confirm[id(t)]))
        w_score = max(confirm[id(winner)])
        d_score = max(confirm[id(default)]) if id(default) in confirm else default.score
        if not default.rejected and w_score < MARGIN * d_score:   # within noise of the default: keep it
            log(f"no candidate beat the default by {MARGIN - 1:.0%} in the confirmation: the default stays")
            winner, w_score = default, d_score
    else:
        winner = finalists[0] if finalists else default
        w_score = d_score = winner.score
    if winner.rejected:
        raise RuntimeError(f"clnet tune: no candidate gave correct results on {device.describe()}; "
                           f"the default failed with: {default.rejected}")
    result = Result(device, shapes, default, winner, list(trials.values()))
    result.classes = class_winners(shapes, winner, result.trials)
    for cls, trial in result.classes.items():
        idx = [i for i, s in enumerate(shapes) if matmul_shape_class(s.m, s.n, s.k) == cls]
        log(f"{cls} products (" + ", ".join(str(shapes[i]) for i in idx) + f"): {describe(trial.params)} "
            f"{_geomean([trial.gflops[i] for i in idx]):.1f} GFLOP/s beats the winner's "
            f"{_geomean([winner.gflops[i] for i in idx]):.1f}: stored for that class")
    log(f"winner: {describe(winner.params)}  {w_score:.1f} GFLOP/s (geomean) vs the default "
        f"{describe(default.params)} {d_score:.1f}" + (f": {w_score / d_score:.2f}x" if d_score else ""))
    if default.gflops and winner.gflops:
        log("  per shape, winner / default GFLOP/s (search pass): " + ", ".join(
            f"{s} {w:.1f}/{d:.1f}" for s, w, d in zip(shapes, winner.gflops, default.gflops)))
    if store:
        try:
            result.stored = tuning_file.store(device, winner.params, extra=dict(
                date=time.strftime("%Y-%m-%d %H:%M"), quick=quick, shapes=[str(s) for s in shapes],
                gflops=[round(g, 1) for g in winner.gflops],
                default=dict(params=default.params, gflops=[round(g, 1) for g in default.gflops])),
                classes={cls: t.params for cls, t in result.classes.items()})
        except OSError as err:
            raise RuntimeError(f"could not write {tuning_file.path()}: {err} (set CLNET_CACHE_DIR to a "
                               "writable directory)") from None
        device.forget_profile()  # the next use rebuilds the profile, now with the tuned values
        calibration.forget(device)  # its speed changed: the default device is chosen again on measurement
        log(f"stored in {result.stored}" + ("" if tuning_file.enabled() else
                                            "  (CLNET_TUNING=0 is set: profiles ignore it here)"))
    _say_load(device, log)
    result.elapsed = time.perf_counter() - t_start
    return result


def _say_load(device, log) -> None:
    """Timings on a CPU device follow the machine's load: say it, and warn when other work competes."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return
    cores = os.cpu_count() or 1
    busy = device.type == "cpu" and load > 0.5 * cores + 1
    log(f"load average {load:.2f} on {cores} cores" + (
        ": other work competes for the cores the device runs on, so these timings are noisy; "
        "tune again on a quiet machine for a reliable winner" if busy else ""))


class _NoMatmul(Exception):
    pass


def show(log=print) -> int:
    """Print the stored entries; returns how many there are."""
    file = tuning_file.path()
    try:
        data = tuning_file.read(file)
    except ValueError as err:
        log(f"{file}: unusable ({err})")
        return 0
    if not data["devices"]:
        log(f"no tuned parameters ({file} " + ("is empty)" if file.exists() else "does not exist)"))
        return 0
    current = tuning_file.template_hash()
    log(f"tuned parameters in {file}:")
    for key, entry in sorted(data["devices"].items()):
        stale = "" if isinstance(entry, dict) and entry.get("template") == current else \
            "  (stale: tuned for other matmul kernels, ignored)"
        log(f"  {key}{stale}")
        if not isinstance(entry, dict):
            continue
        params = entry.get("params") or {}
        try:
            checked = tuning_file.check_params(params)
            if not checked:     # an entry `clnet tune --conv` made: conv choices only
                raise _NoMatmul
            text = describe(checked) if set(checked) == set(tuning_file.TUNABLE) else str(checked)
            log(f"    {text}  measured {entry.get('date', '?')}"
                + ("  (--quick: tiny shapes, a smoke test; run `clnet tune` for real figures)"
                   if entry.get("quick") else ""))
        except _NoMatmul:
            log("    matmul: not tuned (shipped defaults)")
        except ValueError as err:
            log(f"    unusable parameters: {err}")
        conv = entry.get("conv") or {}
        if conv:
            stale = "" if entry.get("conv_template") == tuning_file.conv_template_hash() else \
                "  (stale: tuned for other conv kernels, ignored)"
            log(f"    conv2d, per shape class{stale}:")
            for cls, passes in sorted(conv.items()):
                text = ", ".join(f"{p} {describe_conv(v.get('algo', '?'), {k: x for k, x in v.items() if k != 'algo'})}"
                                 for p, v in sorted(passes.items()) if isinstance(v, dict))
                log(f"      {cls}: {text}")
        for cls, cp in sorted((entry.get("classes") or {}).items()):
            try:
                log(f"    for {cls} products: {describe(tuning_file.check_params(cp))}")
            except (ValueError, KeyError):
                log(f"    for {cls} products: unusable parameters")
        if entry.get("shapes"):
            default = entry.get("default") or {}
            for what, figures in (("tuned:  ", entry.get("gflops", [])), ("default:", default.get("gflops", []))):
                log(f"    GFLOP/s {what} " + ", ".join(f"{s} {g}" for s, g in zip(entry["shapes"], figures)))
    return len(data["devices"])


# --- convolutions -------------------------------------------------------------------------------------
# `clnet tune` also measures conv2d: per shape class (clnet.ops.conv_select.shape_class) and per pass
# (forward, grad_input, grad_weight), every algorithm that applies and, for the implicit GEMM, its register
# blocks (forward / input gradient: MR output channels x NV vectors of positions; weight gradient: MO output
# channels x MK taps of conv_wgrad_q, or conv_wgrad over gradient panels). Each candidate is checked against
# numpy float64 first; the fastest is confirmed against the rule's choice, interleaved, and stored only if it
# beats it by MARGIN. conv_select.plan then uses the entry for every convolution of that class
# (conv_transpose2d and conv1d included: they run conv2d's passes).
@dataclass(frozen=True)
class ConvShape:
    """One conv2d: input (n, c, h, w), k output channels, a kh x kw kernel, stride and padding."""

    n: int
    c: int
    h: int
    w: int
    k: int
    kh: int = 3
    kw: int = 3
    stride: int = 1
    pad: int = 1

    def __str__(self) -> str:
        return ",".join(str(v) for v in (self.n, self.c, self.h, self.w, self.k, self.kh, self.kw, self.stride,
                                         self.pad))

    @classmethod
    def parse(cls, text: str) -> "ConvShape":
        """'N,C,H,W,K[,kh,kw,stride,pad]' (defaults 3, 3, 1, 1)."""
        try:
            parts = [int(p) for p in text.replace(" ", "").split(",")]
        except ValueError:
            parts = []
        if not 5 <= len(parts) <= 9 or min(parts[:7]) < 1 or (len(parts) > 7 and parts[7] < 1) or \
                (len(parts) > 8 and parts[8] < 0):
            raise ValueError(f"a conv shape is N,C,H,W,K[,kh,kw,stride,pad] with positive sizes, got {text!r}")
        return cls(*parts)

    def geom(self):
        from .ops.conv import _Geom
        return _Geom((self.n, self.c, self.h, self.w), (self.k, self.c, self.kh, self.kw), (self.stride,) * 2,
                     (self.pad,) * 2, (1, 1))


# issue 17's three layers, a ResNet downsampling 3x3 and 1x1 shortcut, a deep narrow-image layer
CONV_SHAPES = (ConvShape(64, 3, 32, 32, 32), ConvShape(32, 64, 32, 32, 64), ConvShape(16, 128, 16, 16, 128),
               ConvShape(32, 64, 32, 32, 128, 3, 3, 2, 1), ConvShape(32, 64, 32, 32, 128, 1, 1, 2, 0),
               ConvShape(32, 256, 8, 8, 256))
QUICK_CONV_SHAPES = (ConvShape(4, 3, 10, 10, 8), ConvShape(2, 8, 9, 9, 8, 3, 3, 2, 1))
CONV_BUDGET = {"fast": 300.0, "slow": 900.0}
CONV_TOL = 2e-4     # |got - ref| / max|ref|: float32 rounding (Winograd F(4x4) ~1e-6); a dropped term ~1e-2


def _ref_conv(x, w, s, p):
    """float64 forward of a conv2d (dilation 1) by im2col in numpy."""
    n, c, h, wd = x.shape
    k, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    oh, ow = (h + 2 * p - kh) // s + 1, (wd + 2 * p - kw) // s + 1
    cols = np.empty((n, c, kh, kw, oh, ow))
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[:, :, i:i + s * oh:s, j:j + s * ow:s]
    return np.einsum("nckloh,mckl->nmoh", cols.reshape(n, c, kh, kw, oh, ow), w, optimize=True), cols


class _ConvOperands:
    """Random x, w, gy of one shape on the device, with float64 references of the three passes."""

    def __init__(self, device, shape: ConvShape, rng):
        import clnet
        self.shape, self.g = shape, shape.geom()
        g = self.g
        x = rng.standard_normal((g.N, g.C, g.H, g.W))
        w = rng.standard_normal((g.OC, g.C, g.KH, g.KW)) / math.sqrt(g.K)
        gy = rng.standard_normal((g.N, g.OC, g.OH, g.OW))
        x, w, gy = (a.astype(np.float32) for a in (x, w, gy))
        y, cols = _ref_conv(x.astype(np.float64), w.astype(np.float64), g.SH, g.PH)
        gw = np.einsum("nmoh,nckloh->mckl", gy.astype(np.float64), cols, optimize=True)
        # grad input: scatter the column gradient back (col2im) in float64
        gcols = np.einsum("nmoh,mckl->nckloh", gy.astype(np.float64), w.astype(np.float64), optimize=True)
        gxp = np.zeros((g.N, g.C, g.H + 2 * g.PH, g.W + 2 * g.PW))
        for i in range(g.KH):
            for j in range(g.KW):
                gxp[:, :, i:i + g.SH * g.OH:g.SH, j:j + g.SW * g.OW:g.SW] += gcols[:, :, i, j]
        gx = gxp[:, :, g.PH:g.PH + g.H, g.PW:g.PW + g.W]
        self.ref = {"forward": y, "grad_input": gx, "grad_weight": gw}
        self.x, self.w, self.gy = (clnet.tensor(a, device=device).detach() for a in (x, w, gy))

    def run(self, pass_: str, algo: str, params):
        from .ops import conv, conv_gemm
        g = self.g
        if pass_ == "forward":
            if algo == "gemm":
                return conv_gemm.forward(self.x, self.w, None, g, blk=params)
            return conv._FORWARD[algo](self.x, self.w, None, g)
        if pass_ == "grad_input":
            if algo == "gemm":
                return conv_gemm.grad_input(self.gy, self.w, g, blk=params)
            return conv._GRAD_INPUT[algo](self.gy, self.w, g)
        if algo == "gemm":
            return conv_gemm.grad_weight(self.x, self.gy, g, blk=params)
        return conv._GRAD_WEIGHT[algo](self.x, self.gy, g)


def _conv_run(ops: _ConvOperands, pass_, algo, params):
    """A candidate's result (the seam tests use to inject a wrong one)."""
    return ops.run(pass_, algo, params)


def conv_candidates(device, g, pass_: str, quick: bool = False) -> list:
    """(algorithm, parameters or None) for every algorithm that applies to this pass, the implicit GEMM with
    its default block (None) and the register blocks that fit the vector registers."""
    from .ops import conv_select
    regs = 32 if device.profile.vector_width >= 16 else 16
    out = []
    for algo in conv_select.ALGOS:
        if not conv_select.applies(algo, g, pass_):
            continue
        out.append((algo, None))
        if algo != "gemm":
            continue
        if pass_ == "grad_weight" and (g.SH, g.SW) == (1, 1):
            blocks = [dict(MO=mo, MK=mk) for mo in (2, 3, 4, 6, 8) for mk in (2, 3, 4, 6)
                      if mo * mk + mo + 1 <= regs and mo * mk >= 6]
            blocks = blocks[:2] if quick else blocks
            out += [(algo, b) for b in blocks] + [(algo, dict(panels=1))]
        elif pass_ != "grad_weight":
            blocks = [dict(MR=mr, NV=nv) for mr in (2, 3, 4, 6, 8) for nv in (1, 2, 3, 4)
                      if mr * nv + nv + 1 <= regs and mr * nv >= 4]
            out += [(algo, b) for b in (blocks[:2] if quick else blocks)]
    return out


def describe_conv(algo: str, params) -> str:
    if not params:
        return algo
    if params.get("panels"):
        return f"{algo} (gradient panels)"
    return f"{algo} " + " ".join(f"{k}={v}" for k, v in sorted(params.items()))


def measure_conv(device, ops: _ConvOperands, pass_: str, algo: str, params, reps: int):
    """Milliseconds (median of reps) of one candidate, after checking it against numpy float64; raises
    Rejected for a wrong result, a build failure or a device limit."""
    try:
        got = _conv_run(ops, pass_, algo, params).numpy().astype(np.float64)
        ref = ops.ref[pass_]
        if got.shape != ref.shape or not np.all(np.isfinite(got)):
            raise Rejected(f"wrong shape or non-finite values on {ops.shape} {pass_}")
        err = float(np.max(np.abs(got - ref))) / max(float(np.max(np.abs(ref))), 1e-30)
        if not err <= CONV_TOL:
            raise Rejected(f"wrong result on {ops.shape} {pass_}: error {err:.2g} > {CONV_TOL:g}")
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            _conv_run(ops, pass_, algo, params)
            device.synchronize()
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1e3
    except Rejected:
        raise
    except _errors() as err:
        text = str(err).strip().splitlines()
        raise Rejected(f"{type(err).__name__}: {text[0] if text else ''}") from None


def tune_conv(device, shapes=None, quick: bool = False, budget: float | None = None, reps: int | None = None,
              store: bool = True, log=print, seed: int = 0) -> dict:
    """Measure every applicable algorithm and block per pass of each shape; store the winners per shape
    class (unless store=False). Returns {shape class: {pass: {"algo", params...}}} of the winners."""
    from .ops import conv_select
    t_start = time.perf_counter()
    shapes = tuple(shapes or (QUICK_CONV_SHAPES if quick else CONV_SHAPES))
    if budget is None:
        budget = QUICK_BUDGET if quick else CONV_BUDGET["slow" if is_slow(device) else "fast"]
    reps = reps or (3 if quick or is_slow(device) else 5)
    rng = np.random.default_rng(seed)
    log(f"clnet tune (conv2d) on {device.describe()}; budget {budget:.0f} s; median of {reps} (ms per pass)")
    log("every candidate is checked against numpy (float64) first")
    entries, measured = {}, {}
    for shape in shapes:
        ops = _ConvOperands(device, shape, rng)
        g = ops.g
        cls = conv_select.shape_class(g)
        log(f"{shape} (N,C,H,W,K,kh,kw,stride,pad)  class '{cls}'")
        for pass_ in conv_select.PASSES:
            default = (conv_select._rule(device, g, pass_), None)
            results = {}
            for algo, params in conv_candidates(device, g, pass_, quick):
                if time.perf_counter() - t_start > budget and (algo, params) != default:
                    continue
                key = describe_conv(algo, params)
                try:
                    results[key] = ((algo, params), measure_conv(device, ops, pass_, algo, params, reps))
                    log(f"  {pass_:12s} {key:32s} {results[key][1]:9.2f} ms")
                except Rejected as err:
                    log(f"  {pass_:12s} {key:32s} REJECTED: {err}")
            dkey = describe_conv(*default)
            if not results or dkey not in results:
                continue
            best = min(results, key=lambda k: results[k][1])
            if best != dkey:   # confirm, interleaved with the default, so a noisy moment does not decide
                again = {best: [], dkey: []}
                for _ in range(2):
                    for k in again:
                        again[k].append(measure_conv(device, ops, pass_, *results[k][0], reps))
                if min(again[best]) * MARGIN > min(again[dkey]):
                    log(f"  {pass_}: {best} did not beat the rule's {dkey} by {MARGIN - 1:.0%} again: "
                        "the rule stays")
                    best = dkey
            (algo, params), ms = results[best]
            log(f"  {pass_}: {best} {results[best][1]:.2f} ms (rule: {dkey} {results[dkey][1]:.2f} ms)")
            entries.setdefault(cls, {})[pass_] = dict(params or {}, algo=algo)
            measured.setdefault(cls, {})[pass_] = dict(ms=round(ms, 3), rule=dkey,
                                                       rule_ms=round(results[dkey][1], 3), shape=str(shape))
    if time.perf_counter() - t_start > budget:
        log(f"  (time budget of {budget:.0f} s reached: only the rule's choice was measured after that)")
    if store and entries:
        try:
            file = tuning_file.store_conv(device, entries, extra=measured)
        except OSError as err:
            raise RuntimeError(f"could not write {tuning_file.path()}: {err} (set CLNET_CACHE_DIR to a "
                               "writable directory)") from None
        log(f"stored conv entries for {len(entries)} shape classes in {file}" + (
            "" if tuning_file.enabled() else "  (CLNET_TUNING=0 is set: conv2d ignores them here)"))
    return entries

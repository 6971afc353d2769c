"""Which convolution algorithm runs each pass (forward, input gradient, weight gradient) of a conv2d.

The passes are chosen separately, by shape and device, because their best algorithms differ (the input
gradient of a 3-channel first layer is a convolution producing 3 channels; the weight gradient reduces
over the whole batch). The algorithms:

    direct     clnet.ops.conv's direct kernel (kernels/conv.cl.mako): vectors of output channels per pixel
               block; best for tiny problems (the digits model) and the fallback for everything
    im2col     column matrix + the tuned GEMM (kernels/conv.cl.mako im2col/col2im)
    gemm       implicit GEMM over zero-padded pitched planes (clnet.ops.conv_gemm): the GEMM's register
               micro-kernel without a column matrix; stride 1, any kernel size and dilation
    winograd2  Winograd F(2x2, 3x3) (clnet.ops.conv_winograd): 2.25x fewer multiplications
    winograd4  Winograd F(4x4, 3x3): 4x fewer multiplications, transforms with larger constants
               (relative error ~1e-6 in float32 on random data, against ~1e-7 for the others)

`plan(device, geom, pass_)` gives (algorithm, register block): CLNET_CONV_ALGO=<name> (or conv2d(...,
algo=<name>)) forces one algorithm wherever it applies, falling back to `direct` where it does not (e.g.
winograd for a 5x5 kernel); else the entry `clnet tune` stored for the convolution's shape class
(shape_class; clnet.tune.tune_conv, backend/tuning_file.py; ignored with CLNET_TUNING=0); else the rules
below (measured on PoCL CPUs, see BENCHMARKS.md "Convolution") with the kernels' default blocks.
`choose` is plan's algorithm. conv1d and the transposed convolutions run conv2d's passes, so all of this
applies to them too.
"""
from __future__ import annotations

import functools
import os

from ..backend import tuning_file
from . import conv_gemm

ALGOS = ("direct", "im2col", "gemm", "winograd2", "winograd4")
PASSES = ("forward", "grad_input", "grad_weight")


def applies(algo: str, g, pass_: str) -> bool:
    """Whether `algo` can run `pass_` of the convolution with geometry g (clnet.ops.conv._Geom)."""
    stride1 = (g.SH, g.SW) == (1, 1)
    if algo in ("direct", "im2col"):
        return True
    if algo == "gemm":
        return conv_gemm.applies(g, pass_)
    if algo in ("winograd2", "winograd4"):
        return (stride1 and (g.KH, g.KW) == (3, 3) and (g.DH, g.DW) == (1, 1)
                and 0 <= g.PH <= 2 and 0 <= g.PW <= 2)
    raise ValueError(f"conv2d: unknown algorithm {algo!r}; choose from {ALGOS}")


def _rule(device, g, pass_: str) -> str:
    """The measured defaults (PoCL CPUs; GPUs take the same shapes-based rules for now)."""
    # channels summed over by this pass and channels it produces
    k_in, k_out = {"forward": (g.C, g.OC), "grad_input": (g.OC, g.C), "grad_weight": (g.N, g.OC)}[pass_]
    pixels = g.OH * g.OW
    small = g.N * g.C * g.OC * pixels * g.KH * g.KW < 2_000_000   # the digits model's layers are below
    if small:
        return "direct"
    wino = applies("winograd4", g, pass_)
    if wino and min(g.C, g.OC) >= 16:
        return "winograd4"
    if applies("gemm", g, pass_) and (pass_ != "grad_weight" or k_out >= 4):
        return "gemm"
    return "direct"


def shape_class(g) -> str:
    return _shape_class(g.N, g.C, g.OC, g.OH * g.OW, g.KH, g.KW, g.SH, g.SW, g.PH, g.PW, g.DH, g.DW)


@functools.lru_cache(maxsize=1024)
def _shape_class(N, C, OC, pixels, KH, KW, SH, SW, PH, PW, DH, DW) -> str:
    """The tuning file's key for g's convolution: kernel, stride, dilation, padding kind and, rounded up to
    powers of two, the batch, channels in and out and output pixels (what decides between the algorithms and
    their blocks). `clnet tune --conv` measures classes; conv2d looks its shape's class up."""
    def up(v):
        return 1 << max(0, int(v) - 1).bit_length()
    same = "same" if (2 * PH, 2 * PW) == (DH * (KH - 1), DW * (KW - 1)) else f"p{PH}x{PW}"
    return f"k{KH}x{KW} s{SH}x{SW} d{DH}x{DW} {same} n{up(N)} c{up(C)} oc{up(OC)} px{up(pixels)}"


def lookup(device, g, pass_: str, dtype=None):
    """(algorithm, parameters) stored by `clnet tune` for g's shape class and this pass, or None (no entry,
    a stale one, or CLNET_TUNING=0)."""
    tuned = tuning_file.tuned_conv(device)
    if not tuned:
        return None
    entry = tuned.get(shape_class(g), {}).get(pass_)
    if not entry:
        return None
    params = {k: v for k, v in entry.items() if k != "algo"}
    return entry["algo"], (params or None)


def choose(device, g, pass_: str, algo: str | None = None, dtype=None) -> str:
    """The algorithm for `pass_` of the convolution g on `device`: `algo` or CLNET_CONV_ALGO when given and
    applicable, else a tuned entry for g's shape class (`clnet tune`), else the measured rule."""
    return plan(device, g, pass_, algo, dtype)[0]


def plan(device, g, pass_: str, algo: str | None = None, dtype=None):
    """(algorithm, kernel parameters or None) for `pass_`: as choose, plus the tuned register block of the
    algorithm when the tuning file has one for g's shape class (None: the kernels' own defaults)."""
    forced = algo or os.environ.get("CLNET_CONV_ALGO") or None
    if forced is not None:
        if forced not in ALGOS:
            raise ValueError(f"conv2d: algo must be one of {ALGOS}, got {forced!r}")
        if not applies(forced, g, pass_):
            return "direct", None
        tuned = lookup(device, g, pass_, dtype)
        return forced, (tuned[1] if tuned and tuned[0] == forced else None)
    tuned = lookup(device, g, pass_, dtype)
    if tuned is not None and applies(tuned[0], g, pass_):
        return tuned
    return _rule(device, g, pass_), None

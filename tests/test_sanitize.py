"""Kernel sanitizer run: every template family and parameter variant on Oclgrind with its checkers.

Runs only when Oclgrind is the device under test (CLNET_TEST_DEVICES=oclgrind) and needs
OCLGRIND_DATA_RACES=1 OCLGRIND_UNINITIALIZED=1 OCLGRIND_CHECK_API=1 and OCLGRIND_LOG set when the
platform loads; `python tests/sanitize_support.py` runs it once per vendor limit set of tox.ini
(docs/sanitizer.md). After every test the new part of Oclgrind's log (invalid reads and writes, data
races, uninitialized values, barrier divergence) and Oclgrind's stderr messages (API misuse) are read:
any error fails that test. Every result is also compared with numpy in float64, so a kernel that does
nothing fails too. Variants other devices would choose (CPU tunings, the CPU matmul, the tile
configurations of other vendors, 64-bit indexing) are forced through the profile or small patches of
the launchers' thresholds, so the same kernel source runs here with small sizes. The last test checks
that every template in kernels/ and each listed variant were built during the run.
"""
from __future__ import annotations

import math
import os
import re
import subprocess
import sys

import numpy as np
import pyopencl as cl
import pytest

import clnet
import clnet.nn.functional as F
from clnet.backend import programs
from clnet.ops import attention as att_ops
from clnet.ops import batchnorm as bn_ops
from clnet.ops import conv as conv_ops
from clnet.ops import elementwise as ew
from clnet.ops import indexing, matmul as mm_ops, nn as nn_ops, random as rnd_ops, reduce as red
from conftest import DEVICES, assert_close
from sanitize_support import LogCursor, checks_missing, current_limit_set, device_as, errors_in, \
    matmul_configs, profile_as

pytestmark = pytest.mark.sanitize

OCL = next((d for d in DEVICES if d.is_simulator), None)
if OCL is None:
    pytest.skip("the sanitizer run needs Oclgrind as the device under test (CLNET_TEST_DEVICES=oclgrind); "
                "deselect it elsewhere with -m 'not sanitize'", allow_module_level=True)

BUILT: dict = {}        # template -> list of parameter dicts built during this run
_LOG: list = []         # the module's LogCursor, made on first use


# --- fixtures: the device, and Oclgrind's verdict after every test -------------------------------------
@pytest.fixture(scope="module")
def dev():
    # OCLGRIND_UNINITIALIZED=0, said explicitly, is a choice (the 16-wide child; CI's GPU-class stages, which
    # check races, bounds and the API on optimised code: docs/sanitizer.md); unset is a forgotten checker
    uninit_off = WIDE_CHILD or os.environ.get("OCLGRIND_UNINITIALIZED", "").strip() == "0"
    missing = [m for m in checks_missing() if not (uninit_off and m == "OCLGRIND_UNINITIALIZED")]
    missing += [] if _log_path() else ["OCLGRIND_LOG"]
    if missing:
        pytest.fail(f"the sanitizer run needs {', '.join(missing)} set when Oclgrind loads; run it with "
                    "python tests/sanitize_support.py (docs/sanitizer.md)")
    clnet.set_default_device(OCL)
    yield OCL
    clnet.set_default_device(None)
    OCL.synchronize()
    if _LOG:  # anything Oclgrind logged after the last test's check
        errors = errors_in(_LOG[0].new_text())
        if errors:
            pytest.fail(f"Oclgrind reported {len(errors)} error(s) after the last test:\n" + summarize(errors),
                        pytrace=False)


def _log_path():
    return os.environ.get("OCLGRIND_LOG", "").strip()


def _record_built():
    for (_, template, frozen) in list(programs._PROGRAMS):
        params = dict(frozen)
        seen = BUILT.setdefault(template, [])
        if params not in seen:
            seen.append(params)


# Launch plans the ops cache per device and shape; tests that change the profile or the device's facts
# (device_as / profile_as) must not reuse plans made under other settings, nor leave theirs behind.
_PLAN_CACHES = ((ew, "_PLANS"), (red, "_STEPS"), (mm_ops, "_MM_KERNELS"))


_HELD: list = []  # every buffer the run allocated (see _exact_allocate)


def _exact_allocate(nbytes):
    """A fresh buffer of exactly the bytes asked, instead of the pool's binned, recycled blocks: a read or
    write past a tensor's end is then outside its buffer, which Oclgrind reports, and no buffer inherits
    another's contents. No buffer is released before the run ends: Oclgrind 21.10 keeps a released
    buffer's size in the shadow memory of the next buffer created with its handle, so a new, bigger
    buffer, fully written by a kernel, reads as uninitialized past the old size (release 100 floats,
    create 300, fill them: 200 "uninitialized" reads)."""
    buf = cl.Buffer(OCL.context, cl.mem_flags.READ_WRITE, max(int(nbytes), 1))
    _HELD.append(buf)
    return buf


@pytest.fixture(autouse=True)
def oclgrind_clean(dev, capfd, request, monkeypatch):
    for module, name in _PLAN_CACHES:
        if isinstance(getattr(module, name, None), dict):
            monkeypatch.setattr(module, name, {})
    monkeypatch.setattr(dev.pool, "allocate", _exact_allocate)
    for attr in ("_matmul_dummy",):  # buffers an op keeps on the device must come from this test's allocator
        if hasattr(dev, attr):
            monkeypatch.delattr(dev, attr)
    if not _LOG:
        _LOG.append(LogCursor(_log_path()))  # from here on (earlier modules' messages are their own)
    cursor = _LOG[0]
    dev.synchronize()
    before = errors_in(cursor.new_text())  # logged between the previous test's check and this test
    if before:
        pytest.fail(f"Oclgrind reported {len(before)} error(s) before this test started:\n" + summarize(before),
                    pytrace=False)
    yield
    dev.synchronize()
    _record_built()
    errors = errors_in(cursor.new_text()) + errors_in(capfd.readouterr().err, oclgrind_only=True)
    if errors:
        pytest.fail(f"Oclgrind reported {len(errors)} error(s) (limit set {current_limit_set()}):\n"
                    + summarize(errors) + "\n\nfirst messages:\n\n" + "\n\n".join(errors[:3]), pytrace=False)


def summarize(errors) -> str:
    """One line per kind of message: count, headline, kernel, source line."""
    kinds: dict = {}
    for e in errors:
        lines = [x.strip() for x in e.splitlines()]
        head = re.sub(r"0x[0-9a-f]+", "0x...", lines[0])
        kernel = next((x.split(":", 1)[1].strip() for x in lines if x.startswith("Kernel:")), "")
        at = next((lines[i + 1] for i, x in enumerate(lines[:-1]) if x.startswith("At line")), "")
        kinds[(head, kernel, at)] = kinds.get((head, kernel, at), 0) + 1
    return "\n".join(f"  {n:5d} x {h} [{k}] {a}" for (h, k, a), n in sorted(kinds.items(), key=lambda kv: -kv[1]))


# --- data ------------------------------------------------------------------------------------------------
RNG = np.random.default_rng(20261127)


def data(*shape, dtype=np.float32, lo=0.5, hi=2.0, positive=False):
    """Random values with lo <= |v| < hi (never zero), random signs unless positive."""
    v = RNG.uniform(lo, hi, size=shape)
    if not positive:
        v *= RNG.choice([-1.0, 1.0], size=shape)
    return v.astype(dtype)


def ints(*shape, lo=1, hi=20, dtype=np.int64, positive=False):
    v = RNG.integers(lo, hi, size=shape)
    if not positive:
        v *= RNG.choice([-1, 1], size=shape)
    return v.astype(dtype)


def T(a, **kw):
    return clnet.tensor(a, device=OCL, **kw)


def close(actual, expected, rtol=2e-5, atol=2e-6, what=""):
    assert_close(actual, np.asarray(expected), rtol=rtol, atol=atol, what=what)


# --- elementwise ------------------------------------------------------------------------------------------
_UNARY_REF = {
    "neg": np.negative, "abs": np.abs, "sign": np.sign, "exp": np.exp, "log": np.log, "sqrt": np.sqrt,
    "rsqrt": lambda x: 1 / np.sqrt(x), "sin": np.sin, "cos": np.cos, "tanh": np.tanh,
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)), "relu": lambda x: np.maximum(x, 0), "reciprocal": np.reciprocal,
    "square": np.square, "log1p": np.log1p, "expm1": np.expm1, "floor": np.floor, "ceil": np.ceil,
    "round": np.rint, "logical_not": np.logical_not, "isnan": np.isnan, "isinf": np.isinf,
    "tan": np.tan, "asin": np.arcsin, "acos": np.arccos, "atan": np.arctan, "sinh": np.sinh, "cosh": np.cosh,
    "asinh": np.arcsinh, "acosh": np.arccosh, "atanh": np.arctanh, "log2": np.log2, "log10": np.log10,
    "exp2": np.exp2, "erf": np.vectorize(math.erf), "erfc": np.vectorize(math.erfc), "trunc": np.trunc,
    "frac": lambda x: x - np.trunc(x), "isfinite": np.isfinite,
}
_POSITIVE = {"log", "sqrt", "rsqrt", "log1p", "log2", "log10"}
_DOMAIN = {"asin": lambda x: x / 2.5, "acos": lambda x: x / 2.5, "atanh": lambda x: x / 2.5,
           "acosh": lambda x: np.abs(x) + 1, "floor": lambda x: x * 2.5, "ceil": lambda x: x * 2.5,
           "round": lambda x: x * 2.5, "trunc": lambda x: x * 2.5, "frac": lambda x: x * 2.5}


@pytest.mark.parametrize("name", sorted(ew.UNARY))
def test_elementwise_unary(dev, name):
    """Every unary expression, contiguous (rank 0) over a size that is not a multiple of the group."""
    x = _DOMAIN.get(name, lambda v: v)(data(3, 37, positive=name in _POSITIVE)).astype(np.float32)
    close(ew.unary(name, T(x)), _UNARY_REF[name](x.astype(np.float64)), what=name)


_BINARY_REF = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide, "pow": np.power,
    "maximum": np.maximum, "minimum": np.minimum, "eq": np.equal, "ne": np.not_equal, "lt": np.less,
    "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal, "logical_and": np.logical_and,
    "logical_or": np.logical_or, "logical_xor": np.logical_xor, "floor_divide": lambda a, b: np.floor(a / b),
    "remainder": np.remainder, "atan2": np.arctan2, "hypot": np.hypot, "fmod": np.fmod,
}


@pytest.mark.parametrize("name", sorted(ew.BINARY))
def test_elementwise_binary_broadcast(dev, name):
    """Every binary expression over broadcast operands (rank > 0, zero strides)."""
    a = data(5, 1, 7, positive=name == "pow")
    b = data(3, 7)
    b[0, :3] = a[0, 0, :3]  # some ties for the comparisons
    close(ew.binary(name, T(a), T(b)), _BINARY_REF[name](a.astype(np.float64), b.astype(np.float64)),
          rtol=1e-4, what=name)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
@pytest.mark.parametrize("name", ["add", "sub", "mul", "floor_divide", "remainder", "pow", "maximum", "lt"])
def test_elementwise_integer(dev, name, dtype):
    """Integer storage and compute types, the integer forms of //, % and ** (clnet_ipow)."""
    a = ints(4, 9, dtype=dtype)
    b = ints(4, 9, lo=0, hi=4, dtype=dtype, positive=True) if name == "pow" else ints(4, 9, dtype=dtype)
    ref = {"floor_divide": np.floor_divide, "remainder": np.remainder, "pow": np.power}.get(name)
    ref = ref or _BINARY_REF[name]
    y = ew.binary(name, T(a), T(b)[:, ::-1] if name == "add" else T(b))
    expected = ref(a.astype(np.int64), (b[:, ::-1] if name == "add" else b).astype(np.int64))
    assert y.dtype == (np.bool_ if name == "lt" else dtype)
    np.testing.assert_array_equal(y.numpy(), expected)


def test_elementwise_strided_views_and_scalars(dev):
    """Transposed and sliced operands (rank 2 after collapsing), scalar operands, float64, bool operands."""
    a = data(6, 10)
    b = data(10, 6)
    av = T(a)[::2, 1:]          # (3, 9), strides (20, 1) with an offset
    bv = T(b).T[1::2, 1:]       # transposed view
    close(av * 2.5 + bv - 1, a[::2, 1:] * 2.5 + b.T[1::2, 1:] - 1)
    x64 = data(4, 5, dtype=np.float64)
    close(T(x64).T * 3.0 + 0.25, x64.T * 3.0 + 0.25, rtol=1e-12, atol=1e-12)
    cond = RNG.random((4, 5)) > 0.5
    close(clnet.where(T(cond), T(x64), -1.0), np.where(cond, x64, -1.0))
    c2 = T(cond).T
    np.testing.assert_array_equal((c2 & T(~cond).T).numpy(), cond.T & ~cond.T)
    np.testing.assert_array_equal((~c2).numpy(), ~cond.T)


def test_elementwise_rank4_and_inplace_into_views(dev):
    """A permuted 4-D operand that no dims of which merge, and outputs written through strided views."""
    x = data(2, 3, 4, 5)
    xp = T(x).permute(2, 0, 3, 1)                     # 4 dims, none contiguous with another
    close(xp.exp(), np.exp(x.transpose(2, 0, 3, 1)))
    y = T(x).clone()
    y.permute(3, 1, 0, 2)[1:4] += 1.5                  # strided output (out= with rank > 0)
    ref = x.copy()
    ref.transpose(3, 1, 0, 2)[1:4] += 1.5
    close(y, ref)
    z = T(data(5, 5))
    zr = z.numpy()
    z += z.T                                           # overlapping in-place: through a temporary
    close(z, zr + zr.T)
    e = T(np.zeros((0, 3), np.float32)) + 1            # an empty result launches nothing
    assert e.shape == (0, 3)


def test_elementwise_cpu_2d_range(dev, monkeypatch):
    """The CPU layout of strided/broadcast operands: a 2-D range over (inner dim, the rest), inner dims past
    the work-group size; int and long indices."""
    w = OCL.profile.elementwise_wg + 5
    a, row, col = data(3, w + 4), data(w), data(3, 1)
    with device_as(OCL, type="cpu"):
        for limit in (None, 8):
            if limit:
                monkeypatch.setattr(ew, "_INT_MAX", limit)
                monkeypatch.setattr(ew, "_PLANS", {})
            close(T(a)[:, 2:w + 2] + T(row), a[:, 2:w + 2] + row, what="sliced + row")
            close(T(col) * T(a)[:, :w], col * a[:, :w], what="column * sliced")
            close(T(a.T.copy()).T[:, 1:w + 1].exp(), np.exp(a[:, 1:w + 1]), what="transposed")


@pytest.fixture
def long_indices(monkeypatch):
    """Make the launchers pick their 64-bit index variants for small tensors (same kernels, idx=long)."""
    monkeypatch.setattr(ew, "_INT_MAX", 8)
    monkeypatch.setattr(red, "_INDEX_LIMIT", 8)
    monkeypatch.setattr(indexing, "_INT_MAX", 8)
    monkeypatch.setattr(nn_ops, "_idx", lambda *ts: ("long", np.dtype(np.int64)))


def test_long_index_variants(dev, long_indices):
    """idx=long for elementwise (contiguous and strided), reduce (both layouts), index and softmax kernels."""
    a, b = data(3, 37), data(37)
    close(T(a) * 3, a * 3)
    close(T(a) + T(b), a + b)
    close(T(a).T * 2, a.T * 2)
    close(T(a).sum(1), a.astype(np.float64).sum(1), rtol=1e-5)
    close(T(a).sum(0), a.astype(np.float64).sum(0), rtol=1e-5)
    close(T(a).argmax(1), a.argmax(1))
    idx = np.array([2, 0, 2, 1])
    close(T(a)[idx], a[idx])
    close(T(a)[:, idx], a[:, idx])
    close(F.softmax(T(a), 1), np.exp(a) / np.exp(a).sum(1, keepdims=True), rtol=1e-5)
    _record_built()
    longs = {t for t, ps in BUILT.items() for p in ps if p.get("idx") == "long"}
    assert {"elementwise.cl.mako", "reduce.cl.mako", "index.cl.mako", "softmax.cl.mako"} <= longs, longs


def test_random_long_index_variant(dev):
    """random.cl.mako with idx=long, launched directly (its launcher only picks it past 2**31 elements)."""
    out = clnet.empty(37, device=OCL)
    kern = programs.get_kernel(OCL, "random.cl.mako", "philox_uniform",
                               arg_dtypes=[np.int64, None, np.int64] + [np.uint32] * 4 + [np.float32] * 2,
                               dist="uniform", out_t="float", ct="float", idx="long")
    wg = OCL.profile.elementwise_wg
    kern(OCL.queue, (wg,), (wg,), 37, out._buf, 0, 1, 2, 0, 0, -1.0, 1.0)
    v = out.numpy()
    assert ((v >= -1) & (v < 1)).all() and len(np.unique(v)) == 37


# --- reductions ---------------------------------------------------------------------------------------------
# (name, input shape, view, op, dim): views "" (contiguous), "T" (transposed), "step" (sliced with a step),
# "expand" (a broadcast view with a zero stride).
REDUCE_CASES = [
    ("all-multipass", (3000,), "", "sum", None),
    ("rows-inner", (6, 50), "", "sum", 1),
    ("cols-outer", (50, 6), "", "sum", 0),
    ("cols-outer-multipass", (2500, 3), "", "sum", 0),
    ("cols-outer-wide", (40, 20), "", "sum", 0),
    ("cols-outer-very-wide", (40, 136), "", "sum", 0),
    ("middle-axis", (3, 40, 5), "", "sum", 1),
    ("axes-0-2-stages", (4, 5, 6), "", "sum", (0, 2)),
    ("axes-1-2-run", (3, 5, 8), "", "mean", (1, 2)),
    ("transposed", (7, 45), "T", "mean", 0),
    ("sliced", (9, 60), "step", "sum", 1),
    ("expanded", (1, 40), "expand", "sum", 0),
    ("kept-rank-5", (2, 2, 3, 2, 3, 4), "perm", "sum", 2),
    ("prod-rows", (5, 33), "", "prod", 1),
    ("prod-cols", (33, 5), "", "prod", 0),
    ("amax-rows", (7, 45), "", "amax", 1),
    ("amax-cols", (45, 7), "", "amax", 0),
    ("amin-rows", (7, 45), "", "amin", 1),
    ("amin-cols", (45, 7), "", "amin", 0),
    ("argmax-multipass", (3000,), "", "argmax", None),
    ("argmax-cols-multipass", (2500, 3), "", "argmax", 0),
    ("argmin-rows", (5, 50), "", "argmin", 1),
    ("argmin-cols", (40, 6), "", "argmin", 0),
    ("max-dim-values-inner", (6, 40), "T", "max", 0),
    ("min-dim-values-outer", (40, 6), "", "min", 0),
]
_NP_REDUCE = {"sum": np.sum, "mean": np.mean, "prod": np.prod, "amax": np.amax, "amin": np.amin,
              "argmax": np.argmax, "argmin": np.argmin}
# (type, preferred float vector width): the GPU tuning (this device) and the CPU tuning with 4-wide vectors
# under every checker. CPUs with AVX-512 get 16-wide vectors, but Oclgrind 21.10's uninitialized-value
# checker marks the .hi half of a float16 as uninitialized even when all 16 lanes were loaded from written
# memory (a 4-line kernel shows it; .lo and float8 halves are fine). So the 16-wide runs happen in a child
# process with that one checker off (test_reduce_16_wide_vectors): bounds and races are still checked, and
# the same template code runs at width 4 under every checker here.
WIDE_CHILD = os.environ.get("CLNET_SANITIZE_WIDE") == "1"
TUNINGS = [("cpu", 16)] if WIDE_CHILD else [("gpu", 1), ("cpu", 4)]


def _reduce_view(x: np.ndarray, view: str):
    if view == "T":
        return x.T, T(x).T
    if view == "perm":
        dims = tuple(reversed(range(x.ndim)))
        return x.transpose(dims), T(x).permute(*dims)
    if view == "step":
        return x[::2, ::3], T(x)[::2, ::3]
    if view == "expand":
        return np.broadcast_to(x, (30,) + x.shape[1:]), T(x).expand(30, *x.shape[1:])
    return x, T(x)


def _multipass_shape(shape, dim, op):
    axis = 0 if dim is None else dim
    shape = list(shape)
    while True:
        dims = tuple(range(len(shape))) if dim is None else (dim,)
        strides = [math.prod(shape[i + 1:]) for i in range(len(shape))]
        if len(red.plan(tuple(shape), strides, dims, OCL, is_arg=op.startswith("arg"))) > 1:
            return tuple(shape)
        assert shape[axis] < 200_000, f"no multi-pass plan for {shape}"
        shape[axis] *= 2


@pytest.mark.parametrize("tuning", TUNINGS, ids=[f"{t}{w}" for t, w in TUNINGS])
@pytest.mark.parametrize("case", REDUCE_CASES, ids=[c[0] for c in REDUCE_CASES])
def test_reduce(dev, case, tuning):
    """Each axis case, inner and outer layouts, one and several passes, under GPU and CPU tunings."""
    name, shape, view, op, dim = case
    with device_as(OCL, type=tuning[0], preferred_vector_width_float=tuning[1]):
        if "multipass" in name:  # grow the reduced dim until this tuning needs more than one pass
            shape = _multipass_shape(shape, dim, op)
        # products of many values stay near 1
        x = data(*shape, lo=0.8, hi=1.25) if op == "prod" else data(*shape)
        xn, xt = _reduce_view(x, view)
        if op in ("max", "min"):
            vals, idx = getattr(xt, op)(dim)
            ref = getattr(np, "a" + op)(xn, dim)
            close(vals, ref)
            close(idx, getattr(np, "arg" + op)(xn, dim))
            return
        y = getattr(red, op)(xt, dim) if op in ("amax", "amin", "argmax", "argmin", "prod") else \
            getattr(xt, op)(dim)
        expected = _NP_REDUCE[op](xn.astype(np.float64), axis=dim)
    if op.startswith("arg"):
        np.testing.assert_array_equal(y.numpy(), expected)
    else:
        close(y, expected, rtol=1e-5, atol=1e-5, what=name)


@pytest.mark.parametrize("tuning", TUNINGS, ids=[f"{t}{w}" for t, w in TUNINGS])
def test_reduce_dtypes(dev, tuning):
    """float64 and integer accumulators, bool any/all, keepdim, logsumexp, var."""
    x64 = data(5, 70, dtype=np.float64)
    xi = ints(70, 5, dtype=np.int32)
    xl = ints(6, 40, dtype=np.int64)
    mask = RNG.random((8, 50)) > 0.7
    with device_as(OCL, type=tuning[0], preferred_vector_width_float=tuning[1]):
        close(T(x64).sum(1, keepdim=True), x64.sum(1, keepdims=True), rtol=1e-12, atol=1e-12)
        close(T(x64).amax(0), x64.max(0), rtol=0, atol=0)
        y = T(xi).sum(0)
        assert y.dtype == np.int64
        np.testing.assert_array_equal(y.numpy(), xi.astype(np.int64).sum(0))
        np.testing.assert_array_equal(T(xl).amax(1).numpy(), xl.max(1))
        np.testing.assert_array_equal(T(xl).argmin(0).numpy(), xl.argmin(0))
        np.testing.assert_array_equal(clnet.any(T(mask), 1).numpy(), mask.any(1))
        np.testing.assert_array_equal(clnet.all(T(mask), 0).numpy(), mask.all(0))
        x = data(4, 60)
        close(clnet.logsumexp(T(x), 1), np.log(np.exp(x.astype(np.float64)).sum(1)), rtol=1e-5)
        close(T(x).var(1), x.astype(np.float64).var(1, ddof=1), rtol=1e-4)


def test_reduce_16_wide_vectors(dev, tmp_path):
    """The reductions above and conv2d with the 16-wide CPU tuning, in a child process under the same limits
    with Oclgrind's uninitialized-value checker off (see TUNINGS); its own log is checked test by test."""
    if WIDE_CHILD:
        pytest.skip("this is the child process")
    env = dict(os.environ, CLNET_SANITIZE_WIDE="1", OCLGRIND_UNINITIALIZED="0",
               OCLGRIND_LOG=str(tmp_path / "oclgrind-wide.log"))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--capture=sys", "-m", "sanitize",
           "-k", "cpu16 or test_zz", __file__]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, errors="replace", timeout=1200)
    tail = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, f"16-wide reductions failed (exit {proc.returncode}):\n{tail}"
    assert re.search(r"\b\d+ passed", proc.stdout) and " skipped" not in proc.stdout.splitlines()[-1], tail


# --- matmul -------------------------------------------------------------------------------------------------
MATMUL_CONFIGS = matmul_configs(OCL)
_CFG_IDS = ["%s-%dx%dx%d-%dx%d" % c for c in MATMUL_CONFIGS]


def _profile_fields(cfg):
    variant, tm, tn, tk, wm, wn = cfg
    return dict(matmul_variant=variant, matmul_tile_m=tm, matmul_tile_n=tn, matmul_tile_k=tk,
                matmul_wpt_m=wm, matmul_wpt_n=wn)


def _mm_ref(a, b):
    return a.astype(np.float64) @ b.astype(np.float64)


@pytest.mark.parametrize("cfg", MATMUL_CONFIGS, ids=_CFG_IDS)
def test_matmul_edges_and_transposes(dev, cfg):
    """Each tile configuration: a partial last tile in m, n and k; transposed operands (a_kc / b_nc off);
    1-wide results."""
    _, tm, tn, tk, _, _ = cfg
    with profile_as(OCL, **_profile_fields(cfg)):
        # a second tile along m for small tiles; one partial tile for big ones (simulating 256-item
        # groups is slow, and the group offset is the same code at every tile size)
        M, N, K = (tm + 3 if tm <= 32 else tm - 5), max(1, tn - 5), tk + 3
        a, b = data(M, K), data(K, N)
        close(T(a) @ T(b), _mm_ref(a, b), rtol=1e-4, atol=1e-4, what="edges")
        a2, b2 = data(9, 5), data(7, 9)          # op(a) = a.T (5 x 9), op(b) = b.T (9 x 7)
        close(T(a2).T @ T(b2).T, _mm_ref(a2.T, b2.T), rtol=1e-4, atol=1e-4, what="transposed")
        close(T(a2).T @ T(b2.T.copy()), _mm_ref(a2.T, b2.T), rtol=1e-4, atol=1e-4, what="a transposed")
        v, w = data(K), data(K, 3)
        close(T(v) @ T(w), _mm_ref(v[None], w)[0], rtol=1e-4, atol=1e-4, what="vector @ matrix")
        close(T(w).T @ T(v), _mm_ref(w.T, v[:, None])[:, 0], rtol=1e-4, atol=1e-4, what="matrix @ vector")


@pytest.mark.parametrize("cfg", MATMUL_CONFIGS, ids=_CFG_IDS)
def test_matmul_epilogue_batched_float64(dev, cfg):
    """The fused epilogue (alpha, beta * out, bias, relu), batched and broadcast batches, float64."""
    with profile_as(OCL, **_profile_fields(cfg)):
        x, wt, bias = data(6, 11), data(5, 11), data(5)
        y = mm_ops.matmul_ex(T(x), T(wt), trans_b=True, bias=T(bias), activation="relu", alpha=0.5)
        close(y, np.maximum(0.5 * _mm_ref(x, wt.T) + bias, 0), rtol=1e-4, atol=1e-4, what="bias+relu")
        c0 = data(6, 5)
        out = T(c0)
        mm_ops.matmul_ex(T(x), T(wt), trans_b=True, beta=2.0, out=out)
        close(out, _mm_ref(x, wt.T) + 2 * c0, rtol=1e-4, atol=1e-4, what="beta * out")
        a3, b3 = data(2, 4, 6), data(6, 3)
        close(clnet.matmul(T(a3), T(b3).expand(2, 6, 3)), np.einsum("bmk,kn->bmn", a3, b3),
              rtol=1e-4, atol=1e-4, what="broadcast batch")
        a4, b4 = data(2, 3, 5, dtype=np.float64), data(2, 4, 5, dtype=np.float64)
        close(clnet.matmul(T(a4), T(b4).transpose(1, 2)), a4 @ b4.transpose(0, 2, 1), rtol=1e-12,
              atol=1e-12, what="float64 bmm")


@pytest.fixture
def cpu_panels(monkeypatch):
    """Make the CPU GEMM pack both operands even when they are small (the thresholds are for speed only)."""
    monkeypatch.setattr(mm_ops, "_DIRECT_B_BYTES", 0)
    monkeypatch.setattr(mm_ops, "_DIRECT_ANY_ELEMS", 0)
    monkeypatch.setattr(mm_ops, "_DIRECT_A_ELEMS", 0)


CPU_CFGS = [c for c in MATMUL_CONFIGS if c[0] == "cpu"]


# the CPU GEMM's vector width follows the profile's (4, 8 with AVX2, 16 with AVX-512: in the child process)
CPU_WIDTHS = [16] if WIDE_CHILD else [4, 8]


@pytest.mark.parametrize("width", CPU_WIDTHS, ids=[f"cpu{w}" for w in CPU_WIDTHS])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cfg", CPU_CFGS, ids=["%s-%dx%dx%d-%dx%d" % c for c in CPU_CFGS])
def test_matmul_cpu_variant_packed(dev, cfg, cpu_panels, dtype, width):
    """The CPU GEMM with both operands packed into panels (pack kernel, unit and strided sources),
    an M below the register block, N at and past the vector width, edge blocks."""
    with profile_as(OCL, vector_width=width, **_profile_fields(cfg)):
        for M, N, K in [(3, 16, 5), (10, 37, 6)]:
            a, b = data(M, K, dtype=dtype), data(K, N, dtype=dtype)
            close(T(a) @ T(b), _mm_ref(a, b), rtol=1e-4, atol=1e-4, what=f"{M}x{N}x{K}")
            close(T(a.T.copy()).T @ T(b.T.copy()).T, _mm_ref(a, b), rtol=1e-4, atol=1e-4,
                  what=f"{M}x{N}x{K} transposed")
        xb, wb = data(2, 9, 4, dtype=dtype), data(2, 4, 20, dtype=dtype)
        close(clnet.matmul(T(xb), T(wb)), xb @ wb, rtol=1e-4, atol=1e-4, what="batched panels")


# --- convolution and pooling --------------------------------------------------------------------------------
def _cols(x, kh, kw, s, p, d):
    """numpy im2col in float64: (N, C*kh*kw, OH*OW) and the output size."""
    N, C, H, W = x.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
    OH = (H + 2 * p[0] - d[0] * (kh - 1) - 1) // s[0] + 1
    OW = (W + 2 * p[1] - d[1] * (kw - 1) - 1) // s[1] + 1
    cols = np.empty((N, C, kh, kw, OH, OW))
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[:, :, i * d[0]:i * d[0] + s[0] * OH:s[0], j * d[1]:j * d[1] + s[1] * OW:s[1]]
    return cols.reshape(N, C * kh * kw, OH * OW), OH, OW


def _conv_ref(x, w, b, s, p, d, gy=None):
    """Forward output and, with gy, the gradients of sum(y * gy) for x, w and b (float64)."""
    OC, C, kh, kw = w.shape
    cols, OH, OW = _cols(x, kh, kw, s, p, d)
    wm = w.reshape(OC, -1).astype(np.float64)
    y = np.einsum("ok,nkp->nop", wm, cols).reshape(x.shape[0], OC, OH, OW) + (0 if b is None else b[:, None, None])
    if gy is None:
        return y
    g = gy.reshape(x.shape[0], OC, -1)
    gw = np.einsum("nop,nkp->ok", g, cols).reshape(w.shape)
    gcols = np.einsum("ok,nop->nkp", wm, g).reshape(x.shape[0], C, kh, kw, OH, OW)
    N, _, H, W = x.shape
    gxp = np.zeros((N, C, H + 2 * p[0], W + 2 * p[1]))
    for i in range(kh):
        for j in range(kw):
            gxp[:, :, i * d[0]:i * d[0] + s[0] * OH:s[0], j * d[1]:j * d[1] + s[1] * OW:s[1]] += gcols[:, :, i, j]
    gx = gxp[:, :, p[0]:p[0] + H, p[1]:p[1] + W]
    return y, gx, gw, g.sum((0, 2))


# (x shape, w shape, stride, padding, dilation, bias): OC > 4 and <= 4 (vector widths 8 and 4), stride 1
# (input gradient as a flipped convolution) and 2 (its own kernel), dilation, a 5x5 kernel (weight-gradient
# blocks of 2), one input channel (no channel splits), an unbatched input, padding wider than the kernel
# (the input gradient's flipped convolution then has negative padding: the masked kernel).
CONV_CASES = [
    ((2, 3, 6, 5), (5, 3, 3, 3), (1, 1), (1, 1), (1, 1), True),
    ((2, 2, 7, 7), (3, 2, 3, 2), (2, 2), (1, 0), (1, 1), False),
    ((1, 2, 9, 8), (6, 2, 2, 3), (1, 2), (0, 1), (2, 2), True),
    ((2, 1, 7, 6), (4, 1, 5, 5), (1, 1), (2, 2), (1, 1), True),
    ((3, 5, 5), (2, 3, 3, 3), (1, 1), (0, 0), (1, 1), False),
    ((1, 2, 5, 4), (9, 2, 2, 2), (1, 1), (2, 2), (1, 1), True),
]


# the direct kernels run every case; the im2col path (im2col, col2im and batched matmuls, slow to simulate
# with large GPU tiles) runs the stride-1 and the strided, dilated case
CONV_RUNS = [(i, "direct") for i in range(len(CONV_CASES))] + [(0, "im2col"), (2, "im2col")]


@pytest.mark.parametrize("index,algo", CONV_RUNS, ids=[f"conv{i}-{a}" for i, a in CONV_RUNS])
def test_conv2d_forward_backward(dev, index, algo):
    _conv_case(CONV_CASES[index], algo)


if WIDE_CHILD:
    @pytest.mark.parametrize("tuning", TUNINGS, ids=[f"{t}{w}" for t, w in TUNINGS])
    def test_conv2d_wide_vectors(dev, tuning):
        """conv2d's 16-channel vectors (CPUs with 16-float vectors, more than 8 output channels)."""
        with device_as(OCL, type=tuning[0], preferred_vector_width_float=tuning[1]):
            _conv_case(((2, 3, 5, 6), (12, 3, 3, 2), (1, 1), (1, 0), (1, 1), True), "direct")


def _conv_case(case, algo):
    xs, ws, s, p, d, with_bias = case
    x, w = data(*xs), data(*ws)
    b = data(ws[0]) if with_bias else None
    xt, wt = T(x, requires_grad=True), T(w, requires_grad=True)
    bt = T(b, requires_grad=True) if with_bias else None
    y = conv_ops.conv2d(xt, wt, bt, stride=s, padding=p, dilation=d, algo=algo)
    x4 = x if x.ndim == 4 else x[None]
    gy = data(*((x4.shape[0],) + tuple(y.shape[-3:])))
    y_ref, gx, gw, gb = _conv_ref(x4, w, b, s, p, d, gy)
    close(y, y_ref if x.ndim == 4 else y_ref[0], rtol=1e-4, atol=1e-4, what="forward")
    (y * T(gy if x.ndim == 4 else gy[0])).sum().backward()
    close(xt.grad, gx if x.ndim == 4 else gx[0], rtol=1e-4, atol=1e-4, what="grad input")
    close(wt.grad, gw, rtol=1e-4, atol=1e-4, what="grad weight")
    if with_bias:
        close(bt.grad, gb, rtol=1e-4, atol=1e-4, what="grad bias")



# the GEMM-speed algorithms (clnet.ops.conv_select) on the cases above: stride 1, stride 2 (phase split of
# the implicit GEMM), dilation, a 5x5 kernel, 3 input channels (vectors of 4), an unbatched input; passes an
# algorithm does not apply to run `direct`. Winograd runs case 0 only: its transforms and batched GEMMs are
# the same kernel variants on every stride-1 3x3 case (an unbatched input is case 0's kernels on a batch of
# one), and at GPU-class tiles each further case cost the simulator 1-2 minutes (CI's time budget)
FAST_RUNS = ([(i, "gemm") for i in (0, 1, 4, 2, 3)] + [(0, "winograd2"), (0, "winograd4")]
             + [(1, "winograd2")])  # stride 2: winograd does not apply, the passes fall back to direct


@pytest.mark.parametrize("index,algo", FAST_RUNS, ids=[f"conv{i}-{a}" for i, a in FAST_RUNS])
def test_conv2d_fast_algorithms(dev, index, algo):
    _conv_case(CONV_CASES[index], algo)


@pytest.mark.parametrize("algo", ["gemm", "winograd2", "winograd4"])
def test_conv2d_fast_algorithms_cpu_layouts(dev, algo):
    """What CPUs run: vectors of 4 (tiles or channels per work-item), the transforms writing the CPU GEMM's
    packed panels straight away, row-tiled and flat-tiled implicit GEMM, the weight gradient's vector dots."""
    with device_as(OCL, type="cpu", preferred_vector_width_float=4), \
            profile_as(OCL, vector_width=4, **_profile_fields(("cpu", 64, 32, 256, 8, 32))):
        for case in (((2, 3, 5, 9), (6, 3, 3, 3), (1, 1), (1, 1), (1, 1), True),   # OW >= 8: row tiles
                     ((1, 2, 6, 5), (5, 2, 3, 3), (2, 2), (1, 1), (1, 1), False)):  # strided, flat tiles
            _conv_case(case, algo)


# --- convolution: the tuned register blocks (`clnet tune` conv entries; clnet.ops.conv_gemm) -----------------
# (x shape, w shape, stride, padding, forward/input-gradient block, weight-gradient block): MR = 3 rows for 3
# channels, flat and row tiles, conv_wgrad_q with the output gradient pitched by the input-gradient pass
# (shared) and by itself (padding 0: other pitch), the gradient panels of a strided convolution
TUNED_CONV = [((2, 3, 5, 9), (5, 3, 3, 3), (1, 1), (1, 1), dict(MR=3, NV=1), dict(MO=2, MK=3)),
              ((2, 2, 4, 7), (3, 2, 1, 3), (1, 1), (0, 1), dict(MR=5, NV=2), dict(MO=3, MK=2)),
              ((1, 2, 6, 5), (4, 2, 3, 3), (1, 1), (0, 0), dict(MR=2, NV=1), dict(MO=1, MK=4)),
              ((1, 2, 6, 5), (4, 2, 3, 3), (2, 2), (1, 1), dict(MR=2, NV=2), dict(panels=1))]


@pytest.mark.parametrize("case", TUNED_CONV, ids=[f"tuned{i}" for i in range(len(TUNED_CONV))])
def test_conv_tuned_blocks(dev, case):
    from clnet.ops import conv_gemm
    xs, ws, s, p, fblk, wblk = case
    x, w = data(*xs), data(*ws)
    g = conv_ops._Geom(xs, ws, s, p, (1, 1))
    gy = data(g.N, g.OC, g.OH, g.OW)
    y_ref, gx, gw, _ = _conv_ref(x, w, None, s, p, (1, 1), gy)
    close(conv_gemm.forward(T(x), T(w), None, g, blk=fblk), y_ref, rtol=1e-4, atol=1e-4, what="forward")
    share = {}
    if conv_gemm.applies(g, "grad_input"):
        close(conv_gemm.grad_input(T(gy), T(w), g, blk=fblk, share=share), gx, rtol=1e-4, atol=1e-4,
              what="grad input")
    close(conv_gemm.grad_weight(T(x), T(gy), g, blk=wblk, share=share), gw, rtol=1e-4, atol=1e-4,
          what="grad weight")
    # the output gradient read in place through a stride-0 view (what y.sum().backward() hands conv2d)
    row = data(1, g.OC, 1, g.OW)
    gyb = np.broadcast_to(row, gy.shape)
    gw_b = _conv_ref(x, w, None, s, p, (1, 1), np.ascontiguousarray(gyb))[2]
    close(conv_gemm.grad_weight(T(x), T(row).expand(*gy.shape), g, blk=wblk), gw_b, rtol=1e-4, atol=1e-4,
          what="grad weight, expanded gy")


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("training,affine,shape", [(True, True, (3, 4, 5, 3)), (False, True, (4, 3, 7)),
                                                   (True, False, (6, 5)), (False, False, (2, 3, 2, 3))])
def test_batch_norm(dev, training, affine, shape, relu):
    """Every batchnorm kernel: statistics (vectors and the scalar tail), finalize with running statistics,
    eval params, apply and both backward kernels, with and without the fused ReLU and the affine."""
    C = shape[1]
    x, gy = data(*shape), data(*shape)
    w, b, rm, rv = data(C), data(C), data(C), data(C, positive=True)
    xt, wt, bt = T(x, requires_grad=True), T(w, requires_grad=True), T(b, requires_grad=True)
    rmt, rvt = T(rm), T(rv)
    y = bn_ops.batch_norm(xt, rmt, rvt, wt if affine else None, bt if affine else None, training, 0.1, 1e-5, relu)
    axes = (0,) + tuple(range(2, x.ndim))
    cs = (1, C) + (1,) * (x.ndim - 2)
    xd = x.astype(np.float64)
    mean, var = (xd.mean(axes), xd.var(axes)) if training else (rm.astype(np.float64), rv.astype(np.float64))
    xh = (xd - mean.reshape(cs)) / np.sqrt(var.reshape(cs) + 1e-5)
    z = xh * w.reshape(cs) + b.reshape(cs) if affine else xh
    close(y, np.maximum(z, 0) if relu else z, rtol=1e-4, atol=1e-4, what="forward")
    (y * T(gy)).sum().backward()
    g = gy.astype(np.float64) * ((z > 0) if relu else 1)
    scale = (w if affine else np.ones(C)).reshape(cs) / np.sqrt(var.reshape(cs) + 1e-5)
    if training:
        gx = scale * (g - g.mean(axes, keepdims=True) - xh * (g * xh).mean(axes, keepdims=True))
    else:
        gx = scale * g
    close(xt.grad, gx, rtol=1e-4, atol=1e-4, what="grad input")
    if affine:
        close(wt.grad, (g * xh).sum(axes), rtol=1e-4, atol=1e-4, what="grad weight")
        close(bt.grad, g.sum(axes), rtol=1e-4, atol=1e-4, what="grad bias")


def test_batch_norm_vectors(dev):
    """The statistics' vector accumulators (CPUs: vectors of 4 here) with a scalar tail (planes of 15)."""
    with profile_as(OCL, vector_width=4):
        test_batch_norm(dev, True, True, (3, 4, 5, 3), True)


def _pool_ref(x, k, s, p, op):
    N, C, H, W = x.shape
    OH, OW = (H + 2 * p[0] - k[0]) // s[0] + 1, (W + 2 * p[1] - k[1]) // s[1] + 1
    fill = -np.inf if op == "max" else 0.0
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])), constant_values=fill)
    win = np.stack([xp[:, :, i:i + s[0] * OH:s[0], j:j + s[1] * OW:s[1]]
                    for i in range(k[0]) for j in range(k[1])], -1)
    return win.max(-1) if op == "max" else win.mean(-1)


@pytest.mark.parametrize("op", ["max", "avg"])
@pytest.mark.parametrize("k,s,p", [((2, 2), (2, 2), (0, 0)), ((3, 2), (2, 1), (1, 1)), ((5, 4), (2, 3), (2, 0))])
def test_pool2d_forward_backward(dev, op, k, s, p):
    x = data(2, 3, 7, 6)
    xt = T(x, requires_grad=True)
    y = conv_ops.max_pool2d(xt, k, s, p) if op == "max" else conv_ops.avg_pool2d(xt, k, s, p)
    close(y, _pool_ref(x, k, s, p, op), what="forward")
    gy = data(*y.shape)
    (y * T(gy)).sum().backward()
    # the gradient of sum(pool(x) * gy): each window sends gy to its maximum, or gy / (kh kw) to every
    # position (padding counts in the average and takes nothing)
    H, W = x.shape[2:]
    gx = np.zeros((2, 3, H + 2 * p[0], W + 2 * p[1]))
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])), constant_values=-np.inf)
    for n, c, i, j in np.ndindex(*gy.shape):
        win = (n, c, slice(i * s[0], i * s[0] + k[0]), slice(j * s[1], j * s[1] + k[1]))
        if op == "max":
            a, b = np.unravel_index(np.argmax(xp[win]), k)
            gx[n, c, i * s[0] + a, j * s[1] + b] += gy[n, c, i, j]
        else:
            gx[win] += gy[n, c, i, j] / (k[0] * k[1])
    close(xt.grad, gx[:, :, p[0]:p[0] + H, p[1]:p[1] + W], rtol=1e-5, atol=1e-6, what="grad input")
    if op == "max":
        _, idx = conv_ops.max_pool2d(T(x), k, s, p, return_indices=True)
        assert idx.dtype == np.int32 and 0 <= int(idx.numpy().min()) and int(idx.numpy().max()) < H * W


# --- pooling layouts (klayout): channels-last and strided views, scatter backward -----------------------------
def _pool_view(x, layout):
    if layout == "nchw":
        return T(x)
    if layout == "nhwc":
        return T(np.ascontiguousarray(x.transpose(0, 2, 3, 1))).permute(0, 3, 1, 2)
    return T(np.ascontiguousarray(x.transpose(0, 1, 3, 2))).transpose(2, 3)  # unit stride along h


@pytest.mark.parametrize("layout", ["nhwc", "any"])
@pytest.mark.parametrize("op", ["max", "avg"])
@pytest.mark.parametrize("k,s,p", [((2, 2), (2, 2), (1, 1)), ((2, 2), (5, 5), (0, 0)), ((3, 2), (2, 1), (1, 1))])
def test_pool2d_layouts(dev, op, k, s, p, layout):
    """Views read through strides (no copy) and the scatter backward's blocks (padded, stride > kernel, sizes that
    leave rows in no window; stride 5 x 5 is a looped block) write every input pixel once, in bounds."""
    x = data(2, 3, 7, 6)
    xt = _pool_view(x, layout).requires_grad_(True)
    fn = conv_ops.max_pool2d if op == "max" else conv_ops.avg_pool2d
    y = fn(xt, k, s, p)
    close(y, _pool_ref(x, k, s, p, op), what="forward")
    gy = data(*y.shape)
    (gx,) = clnet.autograd.grad([y], [xt], [_pool_view(gy, "nhwc")])
    H, W = x.shape[2:]
    gx_ref = np.zeros((2, 3, H + 2 * p[0], W + 2 * p[1]))
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])), constant_values=-np.inf)
    for n, c, i, j in np.ndindex(*gy.shape):
        win = (n, c, slice(i * s[0], i * s[0] + k[0]), slice(j * s[1], j * s[1] + k[1]))
        if op == "max":
            a, b = np.unravel_index(np.argmax(xp[win]), k)
            gx_ref[n, c, i * s[0] + a, j * s[1] + b] += gy[n, c, i, j]
        else:
            gx_ref[win] += gy[n, c, i, j] / (k[0] * k[1])
    close(gx, gx_ref[:, :, p[0]:p[0] + H, p[1]:p[1] + W], rtol=1e-5, atol=1e-6, what="grad input")


# --- softmax, cross-entropy, pointwise losses ---------------------------------------------------------------
def _softmax_ref(x, axis, log):
    x = x.astype(np.float64)
    m = x.max(axis, keepdims=True)
    lse = np.log(np.exp(x - m).sum(axis, keepdims=True)) + m
    return x - lse if log else np.exp(x - lse)


# (shape, dim): short rows (one work-item each), long contiguous rows (a work-group each on GPUs),
# a non-last dim (inner > 1), and a long non-last dim (a work-group per row through the stride)
SOFTMAX_CASES = [((4, 10), 1), ((2, 300), 1), ((10, 3, 4), 0), ((700, 3), 0)]


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("shape,dim", SOFTMAX_CASES, ids=[f"{s}-dim{d}" for s, d in SOFTMAX_CASES])
def test_softmax_forward_backward(dev, shape, dim, log):
    x = data(*shape)
    xt = T(x, requires_grad=True)
    y = (F.log_softmax if log else F.softmax)(xt, dim)
    yr = _softmax_ref(x, dim, log)
    close(y, yr, rtol=1e-5, atol=1e-6)
    g = data(*shape)
    (y * T(g)).sum().backward()
    sm = _softmax_ref(x, dim, False)
    gx = g - sm * g.sum(dim, keepdims=True) if log else sm * (g - (g * sm).sum(dim, keepdims=True))
    close(xt.grad, gx, rtol=1e-4, atol=1e-5)


def _ce_ref(x, t, w, ignore, eps, reduction, nll):
    """PyTorch's cross_entropy / nll_loss over (N, C, ...) in float64; returns the loss."""
    C = x.shape[1]
    logp = x.astype(np.float64) if nll else _softmax_ref(x, 1, True)
    lp = np.moveaxis(logp, 1, -1).reshape(-1, C)
    tt = t.reshape(-1)
    wc = np.ones(C) if w is None else w.astype(np.float64)
    keep = tt != ignore
    ts = np.where(keep, tt, 0)
    picked = -lp[np.arange(len(tt)), ts] * wc[ts]
    smooth = -(lp * wc).sum(1) / C
    loss = np.where(keep, (1 - eps) * picked + eps * smooth, 0.0)
    if reduction == "none":
        return loss.reshape(t.shape)
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / np.where(keep, wc[ts], 0).sum()


# (x shape, target dtype, weighted, ignore, label smoothing, reduction, nll)
CE_CASES = [
    ((8, 10), np.int64, False, -100, 0.0, "mean", False),
    ((6, 300), np.int64, True, 2, 0.1, "sum", False),
    ((4, 5, 3), np.int32, True, -100, 0.2, "none", False),
    ((7, 6), np.int64, True, 1, 0.0, "mean", True),
    ((3, 4, 2), np.int32, False, -100, 0.0, "none", True),
]


@pytest.mark.parametrize("case", CE_CASES, ids=[f"ce{i}" for i in range(len(CE_CASES))])
def test_cross_entropy_forward_backward(dev, case):
    shape, tdt, weighted, ignore, eps, reduction, nll = case
    C = shape[1]
    x = data(*shape)
    t = RNG.integers(0, C, size=(shape[0],) + shape[2:]).astype(tdt)
    if ignore >= 0:
        t.reshape(-1)[::3] = ignore
    w = data(C, positive=True) if weighted else None
    xt = T(x, requires_grad=True)
    kw = dict(weight=T(w) if weighted else None, ignore_index=ignore, reduction=reduction)
    loss = F.nll_loss(xt, T(t), **kw) if nll else F.cross_entropy(xt, T(t), label_smoothing=eps, **kw)
    ref = _ce_ref(x, t, w, ignore, eps, reduction, nll)
    close(loss, ref, rtol=1e-5, atol=1e-5, what="loss")
    g = data(*np.shape(ref)) if reduction == "none" else np.float32(1.5)
    (loss * T(g)).sum().backward()
    # finite differences of the float64 reference
    num, h = np.zeros(x.shape), 1e-4
    xf = x.astype(np.float64)
    for i in np.ndindex(*x.shape):
        xp, xm = xf.copy(), xf.copy()
        xp[i] += h
        xm[i] -= h
        num[i] = ((_ce_ref(xp, t, w, ignore, eps, reduction, nll) - _ce_ref(xm, t, w, ignore, eps, reduction, nll))
                  * g).sum() / (2 * h)
    close(xt.grad, num, rtol=1e-3, atol=1e-4, what="grad")


def test_pointwise_losses(dev):
    """MSE, L1, BCE and BCE-with-logits (fused elementwise kernels) forward and backward."""
    x, y = data(5, 6), data(5, 6)
    p, q = data(5, 6, lo=0.1, hi=0.9, positive=True), data(5, 6, lo=0.05, hi=0.95, positive=True)
    cases = [
        (F.mse_loss, x, y, lambda a: ((a - y) ** 2).mean()),
        (F.l1_loss, x, y, lambda a: np.abs(a - y).mean()),
        (F.binary_cross_entropy, p, q, lambda a: -(q * np.log(a) + (1 - q) * np.log(1 - a)).mean()),
        (F.binary_cross_entropy_with_logits, x, q,
         lambda a: (np.maximum(a, 0) - a * q + np.log1p(np.exp(-np.abs(a)))).mean()),
    ]
    for fn, a, b, ref in cases:
        at = T(a, requires_grad=True)
        loss = fn(at, T(b))
        close(loss, ref(a.astype(np.float64)), rtol=1e-5, what=fn.__name__)
        loss.backward()
        h, af, num = 1e-6, a.astype(np.float64), np.zeros(a.shape)
        for i in np.ndindex(*a.shape):
            ap, am = af.copy(), af.copy()
            ap[i] += h
            am[i] -= h
            num[i] = (ref(ap) - ref(am)) / (2 * h)
        close(at.grad, num, rtol=1e-3, atol=1e-5, what=fn.__name__ + " grad")


# --- optimizers ---------------------------------------------------------------------------------------------
def _opt_ref(name, opts, p, grads):
    """numpy float64 reference of torch.optim's single-tensor algorithms over successive gradients."""
    p = p.astype(np.float64).copy()
    st: dict = {}
    lr = opts.get("lr", 1e-2)
    for t, g in enumerate(grads, 1):
        g = g.astype(np.float64) * (-1 if opts.get("maximize") else 1)
        wd = opts.get("weight_decay", 0.0)
        if name == "SGD":
            d = g + wd * p
            mom = opts.get("momentum", 0.0)
            if mom:
                buf = d.copy() if t == 1 else mom * st["buf"] + (1 - opts.get("dampening", 0.0)) * d
                st["buf"] = buf
                d = d + mom * buf if opts.get("nesterov") else buf
            p -= lr * d
        elif name in ("Adam", "AdamW"):
            b1, b2 = opts.get("betas", (0.9, 0.999))
            eps = opts.get("eps", 1e-8)
            if name == "AdamW":
                wd = opts.get("weight_decay", 1e-2)
                p *= 1 - lr * wd
            else:
                g = g + wd * p
            st["m"] = b1 * st.get("m", 0) + (1 - b1) * g
            st["v"] = b2 * st.get("v", 0) + (1 - b2) * g * g
            v = st["v"]
            if opts.get("amsgrad"):
                st["vmax"] = np.maximum(st.get("vmax", 0), v)
                v = st["vmax"]
            p -= lr / (1 - b1 ** t) * st["m"] / (np.sqrt(v) / np.sqrt(1 - b2 ** t) + eps)
        elif name == "RMSprop":
            a, eps, mom = opts.get("alpha", 0.99), opts.get("eps", 1e-8), opts.get("momentum", 0.0)
            g = g + wd * p
            st["s"] = a * st.get("s", 0) + (1 - a) * g * g
            avg = st["s"]
            if opts.get("centered"):
                st["ga"] = a * st.get("ga", 0) + (1 - a) * g
                avg = avg - st["ga"] ** 2
            avg = np.sqrt(avg) + eps
            if mom:
                st["b"] = mom * st.get("b", 0) + g / avg
                p -= lr * st["b"]
            else:
                p -= lr * g / avg
        elif name == "Adagrad":
            g = g + wd * p
            clr = lr / (1 + (t - 1) * opts.get("lr_decay", 0.0))
            st["sum"] = st.get("sum", opts.get("initial_accumulator_value", 0.0)) + g * g
            p -= clr * g / (np.sqrt(st["sum"]) + opts.get("eps", 1e-10))
    return p


OPT_CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01, maximize=True)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, weight_decay=0.1, amsgrad=True, maximize=True)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True, weight_decay=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.1)),
]


@pytest.mark.parametrize("name,opts", OPT_CASES, ids=[f"{n}{i}" for i, (n, _) in enumerate(OPT_CASES)])
def test_optimizers(dev, name, opts):
    """Two steps over 10 parameters (two launches of 8 slots), one of them a strided view, one float64 group."""
    shapes = [(3, 4), (5,), (2, 3, 2), (7,), (1,), (4, 4), (3,), (6,), (2, 5), (9,)]
    params = [data(*s) for s in shapes]
    grads = [[data(*s) for s in shapes] for _ in range(2)]
    ts = [T(p, requires_grad=True) for p in params]
    strided = T(data(4, 6))[:, ::2]  # a parameter that is a non-contiguous view: updated through a copy
    strided_np = strided.numpy()
    strided.requires_grad_(True)
    p64 = data(3, 3, dtype=np.float64)
    t64 = T(p64, requires_grad=True)
    opt = getattr(clnet.optim, name)([{"params": ts + [strided]}, {"params": [t64]}], **opts)
    sgrads = [data(4, 3) for _ in range(2)]
    g64 = [data(3, 3, dtype=np.float64) for _ in range(2)]
    for step in range(2):
        for t, gs in zip(ts, grads[step]):
            t.grad = T(gs)
        strided.grad = T(sgrads[step])
        t64.grad = T(g64[step])
        opt.step()
    for t, p, i in zip(ts, params, range(len(ts))):
        close(t, _opt_ref(name, opts, p, [grads[0][i], grads[1][i]]), rtol=1e-4, atol=1e-5, what=f"param {i}")
    close(strided, _opt_ref(name, opts, strided_np, sgrads), rtol=1e-4, atol=1e-5, what="strided param")
    close(t64, _opt_ref(name, opts, p64, g64), rtol=1e-10, atol=1e-12, what="float64 param")


# --- optimizers of issue 13 (torch-nn): numpy float64 references of torch.optim's algebra ---------------------
def _opt2_ref(name, o, p, grads):
    p = p.astype(np.float64).copy()
    st = {}
    lr, wd = o.get("lr"), o.get("weight_decay", 0.0)
    b1, b2 = o.get("betas", (0.9, 0.999))
    for t, g in enumerate(grads, 1):
        g = np.asarray(g, np.float64)
        g = -g if o.get("maximize") else g
        if o.get("decoupled_weight_decay"):
            p *= 1 - lr * wd
        else:
            g = g + wd * p
        if name == "Adadelta":
            rho, eps = o.get("rho", 0.9), o.get("eps", 1e-6)
            st["s"] = rho * st.get("s", 0) + (1 - rho) * g * g
            d = np.sqrt(st.get("a", 0) + eps) / np.sqrt(st["s"] + eps) * g
            st["a"] = rho * st.get("a", 0) + (1 - rho) * d * d
            p -= lr * d
            continue
        st["m"] = b1 * st.get("m", 0) + (1 - b1) * g
        eps = o.get("eps", 1e-8)
        if name == "Adamax":
            st["u"] = np.maximum(b2 * st.get("u", 0), np.abs(g) + eps)
            p -= lr / (1 - b1 ** t) * st["m"] / st["u"]
            continue
        st["v"] = b2 * st.get("v", 0) + (1 - b2) * g * g
        if name == "NAdam":
            mu = lambda k: b1 * (1 - 0.5 * 0.96 ** (k * o.get("momentum_decay", 4e-3)))  # noqa: E731
            st["mp"] = st.get("mp", 1.0) * mu(t)
            d = np.sqrt(st["v"] / (1 - b2 ** t)) + eps
            p -= lr * (1 - mu(t)) / (1 - st["mp"]) * g / d + lr * mu(t + 1) / (1 - st["mp"] * mu(t + 1)) * st["m"] / d
        else:  # RAdam
            rho_inf = 2 / (1 - b2) - 1
            rho = rho_inf - 2 * t * b2 ** t / (1 - b2 ** t)
            step = st["m"] / (1 - b1 ** t) * lr
            if rho > 5:
                r = np.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
                step = step * np.sqrt(1 - b2 ** t) / (np.sqrt(st["v"]) + eps) * r
            p -= step
    return p


OPT2_CASES = [("Adadelta", dict(lr=0.5, weight_decay=0.1)), ("Adamax", dict(lr=0.02, maximize=True, weight_decay=0.1)),
              ("NAdam", dict(lr=0.02, weight_decay=0.1)), ("NAdam", dict(lr=0.02, weight_decay=0.1,
                                                                         decoupled_weight_decay=True)),
              ("RAdam", dict(lr=0.02, betas=(0.9, 0.9), weight_decay=0.1)),
              ("RAdam", dict(lr=0.02, weight_decay=0.1, decoupled_weight_decay=True))]


@pytest.mark.parametrize("name,opts", OPT2_CASES, ids=[f"{n}{i}" for i, (n, _) in enumerate(OPT2_CASES)])
def test_optimizers_issue13(dev, name, opts):
    """Six steps (RAdam with beta2 = 0.9 rectifies from step 6) over five parameters and a float64 one."""
    shapes = [(3, 4), (5,), (2, 3), (7,), (1,)]
    params = [data(*s) for s in shapes]
    steps = 6
    grads = [[data(*s) for s in shapes] for _ in range(steps)]
    ts = [T(p, requires_grad=True) for p in params]
    p64 = data(3, 3, dtype=np.float64)
    t64 = T(p64, requires_grad=True)
    g64 = [data(3, 3, dtype=np.float64) for _ in range(steps)]
    opt = getattr(clnet.optim, name)([{"params": ts}, {"params": [t64]}], **opts)
    for step in range(steps):
        for t, gs in zip(ts, grads[step]):
            t.grad = T(gs)
        t64.grad = T(g64[step])
        opt.step()
    for i, (t, p) in enumerate(zip(ts, params)):
        close(t, _opt2_ref(name, opts, p, [g[i] for g in grads]), rtol=1e-4, atol=1e-5, what=f"param {i}")
    close(t64, _opt2_ref(name, opts, p64, g64), rtol=1e-10, atol=1e-12, what="float64 param")


# --- random -------------------------------------------------------------------------------------------------
def test_random_kernels(dev):
    """Every distribution, float32 and float64, sizes that are not a multiple of the values per block."""
    clnet.manual_seed(1234)
    bits = rnd_ops._bits(10, device=OCL).numpy().view(np.uint32)
    key = (1234 & 0xFFFFFFFF, 1234 >> 32)
    ref = [w for c in range(3) for w in rnd_ops.philox4x32_10((c, 0, 0, 0), key)][:10]
    np.testing.assert_array_equal(bits, np.array(ref, np.uint32))
    for dt in (clnet.float32, clnet.float64):
        u = clnet.rand(5, 7, dtype=dt, device=OCL).numpy()
        assert u.dtype == dt and ((u >= 0) & (u < 1)).all() and len(np.unique(u)) == u.size
        z = clnet.randn(203, dtype=dt, device=OCL).numpy()
        assert np.isfinite(z).all() and abs(z.mean()) < 0.4 and 0.6 < z.std() < 1.4
    m = rnd_ops.bernoulli_mask((9, 9), 0.3, device=OCL, dtype=clnet.bool).numpy()
    assert m.dtype == np.bool_ and 0 < m.sum() < 81
    dm = rnd_ops.dropout_mask(50, 0.5, device=OCL).numpy()
    assert set(np.unique(dm)) <= {0.0, 2.0} and 0 < (dm == 2).sum() < 50
    for dt in (clnet.int64, clnet.int32):
        r = clnet.randint(-5, 7, (31,), dtype=dt, device=OCL).numpy()
        assert ((r >= -5) & (r < 7)).all() and len(np.unique(r)) > 5
    x = T(np.ones((4, 6), np.float32))
    rnd_ops.uniform_(x[:, ::2], -2.0, -1.0)  # a strided target: filled through a temporary
    v = x.numpy()
    assert ((v[:, ::2] >= -2) & (v[:, ::2] < -1)).all() and (v[:, 1::2] == 1).all()


# --- indexing -----------------------------------------------------------------------------------------------
def test_index_gather_kernels(dev):
    """adv_gather with the index entries on the slow and on the fast range dim, several arrays, int32
    index tensors, a mask (nonzero: count, scan, write over several blocks), take, index_select, gather."""
    x = data(6, 5, 4)
    i1 = np.array([4, 0, 2, 2, -1])
    close(T(x)[i1], x[i1])                                         # j on the slow dim
    close(T(x)[:, [1, 3, 3]], x[:, [1, 3, 3]])                     # j on the fast dim
    close(T(x)[[0, 5, 1], :, T(np.array([3, 0, 1], np.int32))], x[[0, 5, 1], :, [3, 0, 1]])
    close(T(x)[1:, [2, 0]][::2], x[1:, [2, 0]][::2])
    big = data(3, 200)
    mask = RNG.random(big.shape) > 0.6                             # 600 elements: 3 mask blocks
    close(T(big)[T(mask)], big[mask])
    np.testing.assert_array_equal(clnet.nonzero(T(mask)).numpy(), np.argwhere(mask))
    m3 = RNG.random((2, 3, 4)) > 0.5
    np.testing.assert_array_equal(clnet.nonzero(T(m3)).numpy(), np.argwhere(m3))
    close(clnet.masked_select(T(big), T(mask)), big[mask])
    close(clnet.take(T(x), T(np.array([[0, 119], [7, 33]]))), np.take(x, [[0, 119], [7, 33]]))
    close(clnet.index_select(T(x), 2, T(np.array([3, 1]))), x[:, :, [3, 1]])
    gi = RNG.integers(0, 4, size=(6, 5, 3))
    close(clnet.gather(T(x), 2, T(gi)), np.take_along_axis(x, gi, 2))
    gi0 = RNG.integers(0, 6, size=(2, 5, 4)).astype(np.int32)
    close(clnet.gather(T(x), 0, T(gi0)), np.take_along_axis(x, gi0.astype(np.int64), 0))


def test_index_scatter_kernels(dev):
    """adv_scatter put/add, with and without duplicate targets (segmented), dim_scatter (scatter_add and
    gather's gradient), masked_fill and index assignment."""
    x = data(6, 5)
    xt = T(x, requires_grad=True)
    i_dup, i_uni = np.array([1, 4, 1, 1, 0]), np.array([3, 0, 5])
    g1, g2 = data(5, 5), data(6, 3)
    ((xt[i_dup] * T(g1)).sum() + (xt[:, [2, 0, 4]] * T(g2)).sum() + (xt[i_uni] * 2).sum()).backward()
    gx = np.zeros((6, 5))
    np.add.at(gx, i_dup, g1)
    gx[:, [2, 0, 4]] += g2
    gx[i_uni] += 2
    close(xt.grad, gx, rtol=1e-5)
    y = T(x)
    vals = np.arange(1, 4, dtype=np.float32)[:, None] * np.ones(5, np.float32)
    y[np.array([2, 0, 2])] = T(vals)                                                          # put, last wins
    ref = x.copy()
    ref[[2, 0, 2]] = vals
    close(y, ref)
    z = T(x)
    z[:, [4, 1]] = 7.0                                                                        # put, unique
    ref = x.copy()
    ref[:, [4, 1]] = 7.0
    close(z, ref)
    mask = RNG.random((6, 5)) > 0.5
    close(clnet.masked_fill(T(x), T(mask), -3.0), np.where(mask, -3.0, x))
    w = T(x)
    w[T(mask)] = 0.5
    close(w, np.where(mask, 0.5, x))
    idx = RNG.integers(0, 5, size=(4, 3))
    src = data(4, 3)
    out = clnet.scatter_add(T(x[:4]), 1, T(idx), T(src))
    ref = x[:4].astype(np.float64).copy()
    np.add.at(ref, (np.arange(4)[:, None], idx), src)
    close(out, ref, rtol=1e-5)
    xg = T(x, requires_grad=True)
    gi = RNG.integers(0, 6, size=(8, 5))
    gg = data(8, 5)
    (clnet.gather(xg, 0, T(gi)) * T(gg)).sum().backward()
    ref = np.zeros((6, 5))
    np.add.at(ref, (gi, np.arange(5)[None, :]), gg)
    close(xg.grad, ref, rtol=1e-5)


# --- indexing: the device scatter plan of index tensors (scatter_plan.cl.mako, issue 17) ----------------------
def test_scatter_plan_kernels(dev):
    """plan_keys (int64 and int32 arrays, two arrays, out-of-bounds entries), the block rank sort and the
    merge over two blocks, plan_scatter add (entries on the slow and the fast range dim) and put, and
    plan_winner: the gradient of x[idx] and x[idx] = v with index tensors."""
    from clnet.ops import scatter_plan
    n = 150                                                        # two sort blocks of 128
    vals = RNG.integers(-9, 9, n)                                  # [-9, -7) and [7, 9) are out of bounds
    plan = scatter_plan.DevicePlan([(T(vals), 0, 1)], [7], n, OCL)
    wrapped = np.where(vals < 0, vals + 7, vals)
    target = np.where((wrapped >= 0) & (wrapped < 7), wrapped, 7)
    np.testing.assert_array_equal(plan.keys.numpy(), np.sort(target * n + np.arange(n)))
    won = np.zeros(n, bool)
    for t in range(7):
        won[np.nonzero(target == t)[0][-1:]] = True
    np.testing.assert_array_equal(plan.winners(OCL).numpy(), won)
    x = data(6, 5)
    i1 = RNG.integers(-6, 6, 40)
    i2 = RNG.integers(0, 5, 9).astype(np.int32)
    ia, ib = RNG.integers(0, 6, 12), RNG.integers(-5, 5, 12).astype(np.int32)
    g1, g2, g3 = data(40, 5), data(6, 9), data(12)
    xt = T(x, requires_grad=True)
    ((xt[T(i1)] * T(g1)).sum() + (xt[:, T(i2)] * T(g2)).sum() + (xt[T(ia), T(ib)] * T(g3)).sum()).backward()
    gx = np.zeros((6, 5))
    np.add.at(gx, i1, g1)
    np.add.at(gx, (slice(None), i2), g2)
    np.add.at(gx, (ia, ib), g3)
    close(xt.grad, gx, rtol=1e-5)
    y = T(x)
    v = data(40, 5)
    y[T(i1)] = T(v)                                                # put: the last duplicate wins
    ref = x.copy()
    for j, i in enumerate(i1):
        ref[i] = v[j]
    close(y, ref)
    z = T(x)
    w = data(6, 9)
    z[:, T(i2)] = T(w)                                             # put, entries on the fast range dim
    ref = x.copy()
    for j, i in enumerate(i2):
        ref[:, i] = w[:, j]
    close(z, ref)


def test_scatter_plan_long_index_variant(dev, long_indices):
    """plan_scatter with idx=long (its launcher picks it past 2**31 elements)."""
    x = data(5, 3)
    idx = RNG.integers(0, 5, 11)
    g = data(11, 3)
    xt = T(x, requires_grad=True)
    (xt[T(idx)] * T(g)).sum().backward()
    gx = np.zeros((5, 3))
    np.add.at(gx, idx, g)
    close(xt.grad, gx, rtol=1e-5)
    _record_built()
    assert _any("scatter_plan.cl.mako", kind="plan_scatter", idx="long")


# --- creation and movement ----------------------------------------------------------------------------------
def test_creation_and_movement(dev):
    """iota (arange, eye, linspace), fills, and the copies behind cat/stack/flip/repeat/pad/contiguous."""
    np.testing.assert_array_equal(clnet.arange(37, device=OCL).numpy(), np.arange(37))
    close(clnet.arange(-1.5, 2.0, 0.25, device=OCL), np.arange(-1.5, 2.0, 0.25))
    close(clnet.eye(5, 7, device=OCL), np.eye(5, 7))
    close(clnet.linspace(-1, 1, 9, device=OCL), np.linspace(-1, 1, 9))
    np.testing.assert_array_equal(clnet.full((3, 4), True, device=OCL).numpy(), np.full((3, 4), True))
    np.testing.assert_array_equal(clnet.ones(5, dtype=clnet.int32, device=OCL).numpy(), np.ones(5, np.int32))
    a, b = data(2, 3, 4), data(2, 5, 4)
    close(clnet.cat([T(a), T(b)], 1), np.concatenate([a, b], 1))
    close(clnet.stack([T(a), T(a) * 2], 2), np.stack([a, a * 2], 2))
    close(clnet.flip(T(a), (0, 2)), a[::-1, :, ::-1])
    close(T(a).repeat(2, 1, 3), np.tile(a, (2, 1, 3)))
    close(F.pad(T(a), (1, 2, 0, 1)), np.pad(a, ((0, 0), (0, 1), (1, 2))))
    close(T(a).permute(2, 0, 1).contiguous(), a.transpose(2, 0, 1))


# --- float16 storage ---------------------------------------------------------------------------------------
# Oclgrind has no cl_khr_fp16, so clnet offers no float16 tensors there; but every half path in the templates
# is storage only (vload_half / vstore_half, float arithmetic), which OpenCL 1.2 has without the extension.
# GPUs that report fp16 (AMD, Intel) get these variants, so they run here with the profile's fp16 switched on.
# conv.cl.mako and optim.cl.mako compute with `half` values directly (legal only with cl_khr_fp16, which
# clnet requires for float16 tensors): Oclgrind cannot run those ("Unsupported float size: 2 bytes").
def _half(x):
    return clnet.tensor(np.asarray(x, np.float16), dtype=clnet.float16, device=OCL)


def _close16(actual, expected, what=""):
    close(actual, expected, rtol=4e-3, atol=4e-3, what=what)


HALF_FAMILIES = ["elementwise", "reduce", "softmax", "random", "index"]


@pytest.mark.parametrize("family", HALF_FAMILIES)
def test_float16_storage(dev, family):
    with profile_as(OCL, fp16=True):
        a = data(5, 37, dtype=np.float16)
        af = a.astype(np.float64)
        if family == "elementwise":
            b = data(37, dtype=np.float16)
            _close16(_half(a) * _half(b) + 1.5, af * b + 1.5)
            _close16(_half(a).T.exp().T, np.exp(af))
            np.testing.assert_array_equal((_half(a) < _half(b)).numpy(), a < b)
            _close16(_half(a).float(), af)
            _close16(T(af.astype(np.float32)).half(), af)
        elif family == "reduce":
            _close16(_half(a).sum(1), af.sum(1))
            _close16(_half(a).mean(0), af.mean(0))
            _close16(_half(a.T.copy()).sum(0), af.sum(1))
            _close16(_half(a).amax(1), af.max(1))
            np.testing.assert_array_equal(_half(a).argmin(0).numpy(), a.argmin(0))
            with device_as(OCL, type="cpu", preferred_vector_width_float=4):
                red._STEPS.clear() if isinstance(getattr(red, "_STEPS", None), dict) else None
                _close16(_half(a).sum(1), af.sum(1))
                _close16(_half(a).sum(0), af.sum(0))
        elif family == "softmax":
            xt = _half(a).requires_grad_(True)
            y = F.log_softmax(xt, 1)
            _close16(y, _softmax_ref(af, 1, True))
            y.sum().backward()
            _close16(xt.grad, 1 - 37 * _softmax_ref(af, 1, False))
            t = RNG.integers(0, 37, size=5)
            xt = _half(data(2, 300, dtype=np.float16)).requires_grad_(True)
            loss = F.cross_entropy(xt, T(t[:2]))
            _close16(loss, _ce_ref(xt.numpy(), t[:2], None, -100, 0.0, "mean", False))
            loss.backward()
            assert np.isfinite(xt.grad.numpy()).all()
        elif family == "random":
            u = clnet.rand(37, dtype=clnet.float16, device=OCL).numpy()
            assert u.dtype == np.float16 and ((u >= 0) & (u < 1)).all() and len(np.unique(u)) > 20
            z = clnet.randn(37, dtype=clnet.float16, device=OCL).numpy()
            assert np.isfinite(z).all() and z.std() > 0.3
        elif family == "index":
            _close16(_half(a)[[4, 0, 4]], af[[4, 0, 4]])
            xt = _half(a).requires_grad_(True)
            xt[np.array([1, 1, 3])].sum().backward()
            gx = np.zeros(a.shape)
            np.add.at(gx, [1, 1, 3], 1.0)
            _close16(xt.grad, gx)


@pytest.mark.parametrize("cfg", MATMUL_CONFIGS, ids=_CFG_IDS)
def test_float16_storage_matmul(dev, cfg):
    with profile_as(OCL, fp16=True, **_profile_fields(cfg)):
        a, b, bias = data(9, 11, dtype=np.float16), data(11, 7, dtype=np.float16), data(7, dtype=np.float16)
        y = mm_ops.matmul_ex(_half(a), _half(b.T.copy()), trans_b=True, bias=_half(bias), activation="relu")
        close(y, np.maximum(_mm_ref(a, b) + bias, 0), rtol=1e-2, atol=2e-2)
        close(_half(a).T.T @ _half(b), _mm_ref(a, b), rtol=1e-2, atol=2e-2)


# --- nn kernels: row norm, recurrent cells, attention (torch-nn) --------------------------------------------
def _ln_ref(x, w=None, b=None, eps=1e-5):
    x = x.astype(np.float64)
    m = x.mean(-1, keepdims=True)
    y = (x - m) / np.sqrt(((x - m) ** 2).mean(-1, keepdims=True) + eps)
    return y * (1 if w is None else w) + (0 if b is None else b)


# (shape, affine): short rows (one work-item each) and long rows (a work-group each on GPUs), with and
# without the elementwise scale and shift
NORM_CASES = [((4, 10), "both"), ((2, 300), "both"), ((3, 7), "none"), ((2, 130), "weight")]


def _check_layer_norm(shape, affine):
    """F.layer_norm forward and all three gradients against the float64 formulas."""
    n = shape[-1]
    x, g = data(*shape) * 3 + 1, data(*shape)
    w = data(n) if affine != "none" else None
    b = data(n) if affine == "both" else None
    xt = T(x, requires_grad=True)
    wt = T(w, requires_grad=True) if w is not None else None
    bt = T(b, requires_grad=True) if b is not None else None
    y = F.layer_norm(xt, (n,), wt, bt)
    close(y, _ln_ref(x, w, b), rtol=1e-4, atol=1e-5)
    (y * T(g)).sum().backward()
    x64 = x.astype(np.float64)
    m = x64.mean(-1, keepdims=True)
    rstd = 1 / np.sqrt(((x64 - m) ** 2).mean(-1, keepdims=True) + 1e-5)
    xhat = (x64 - m) * rstd
    gw = g * (1 if w is None else w)
    close(xt.grad, rstd * (gw - gw.mean(-1, keepdims=True) - xhat * (gw * xhat).mean(-1, keepdims=True)),
          rtol=1e-4, atol=1e-4)
    if wt is not None:
        close(wt.grad, (g * xhat).sum(0), rtol=1e-4, atol=1e-4)
    if bt is not None:
        close(bt.grad, g.sum(0), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape,affine", NORM_CASES, ids=[f"{s}-{a}" for s, a in NORM_CASES])
def test_layer_norm_forward_backward(dev, shape, affine):
    _check_layer_norm(shape, affine)


def test_layer_norm_cpu_vector_rows(dev):
    """The CPU variant: one work-item streams its row in vectors (vw = 4 here), the tail one by one; the
    parameter gradients take 4 neighbouring columns per work-item when the row length allows it."""
    with device_as(OCL, type="cpu"), profile_as(OCL, vector_width=4):
        for n in (13, 8):
            _check_layer_norm((3, n), "both")


def _sig(v):
    return 1 / (1 + np.exp(-v))


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
def test_rnn_cell_kernels(dev, mode):
    from clnet.ops import rnn as rnn_ops
    G = rnn_ops.GATES[mode]
    T_, B, I, H = 2, 2, 2, 3  # small: every step is a matmul, which the vendor limit sets simulate slowly
    x, h0, c0 = data(T_, B, I), data(B, H), data(B, H)
    w_ih, w_hh, b_ih, b_hh = data(G * H, I) * 0.3, data(G * H, H) * 0.3, data(G * H), data(G * H)
    xt = T(x, requires_grad=True)
    wt = [T(a) for a in (w_ih, w_hh, b_ih, b_hh)]
    hx = (T(h0), T(c0)) if mode == "lstm" else T(h0)
    res = rnn_ops.rnn_layer(mode, xt, hx, *wt)
    h, c = h0.astype(np.float64), c0.astype(np.float64)
    outs = []
    for t in range(T_):  # the reference recurrence in float64
        gi, gh = x[t] @ w_ih.T + b_ih, h @ w_hh.T + b_hh
        if mode == "lstm":
            i, f, gg, o = np.split(gi + gh, 4, axis=1)
            c = _sig(f) * c + _sig(i) * np.tanh(gg)
            h = _sig(o) * np.tanh(c)
        elif mode == "gru":
            r, z = _sig(gi[:, :H] + gh[:, :H]), _sig(gi[:, H:2 * H] + gh[:, H:2 * H])
            h = (1 - z) * np.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:]) + z * h
        else:
            h = np.tanh(gi + gh) if mode == "rnn_tanh" else np.maximum(gi + gh, 0)
        outs.append(h)
    close(res[0], np.stack(outs), rtol=1e-4, atol=1e-5)
    loss = res[0].sum() + res[1].sum() + (res[2].sum() if mode == "lstm" else 0)
    loss.backward()  # the cell-backward kernel (the gradients themselves: tests/test_ops_rnn.py)
    assert np.isfinite(xt.grad.numpy()).all() and xt.grad.shape == x.shape
    # a packed batch: the second sequence stops after the first step, so its final state is its first one
    xp = T(x, requires_grad=True)
    res = rnn_ops.rnn_layer(mode, xp, hx, *wt, batch_sizes=[2, 1])
    close(res[0][0], outs[0], rtol=1e-4, atol=1e-5)
    close(res[1][1], outs[0][1], rtol=1e-4, atol=1e-5)
    res[1].sum().backward()
    assert np.isfinite(xp.grad.numpy()).all()


# (L, S, E, EV, causal, mask): plain, causal, a bool mask with a fully masked row, a float mask broadcast
# over the heads
ATTN_CASES = [(3, 4, 2, 3, False, None), (4, 3, 3, 2, True, None), (3, 5, 2, 2, False, "bool"),
              (2, 3, 2, 2, False, "float")]


@pytest.mark.parametrize("case", ATTN_CASES, ids=[f"attn{i}" for i in range(len(ATTN_CASES))])
def test_attention_forward_backward(dev, case):
    L, S, E, EV, causal, kind = case
    q, k, v = data(2, 2, L, E), data(2, 2, S, E), data(2, 2, S, EV)
    mask = None
    if kind == "bool":
        mask = RNG.random((L, S)) > 0.4
        mask[0] = False
    elif kind == "float":
        mask = data(2, 1, L, S)
    qt, kt, vt = (T(a, requires_grad=True) for a in (q, k, v))
    y = att_ops.fused_attention(qt, kt, vt, attn_mask=T(mask) if mask is not None else None, is_causal=causal)
    s = q.astype(np.float64) @ np.swapaxes(k, -1, -2) / np.sqrt(E)
    if causal:
        s = np.where(np.tril(np.ones((L, S), bool)), s, -np.inf)
    if mask is not None:
        s = s + (np.where(mask, 0, -np.inf) if mask.dtype == bool else mask)
    mx = s.max(-1, keepdims=True)
    e = np.exp(s - np.where(np.isfinite(mx), mx, 0))
    tot = e.sum(-1, keepdims=True)
    p = np.where(tot > 0, e / np.where(tot > 0, tot, 1), 0)
    close(y, p @ v, rtol=1e-4, atol=1e-5)
    g = data(*y.shape)
    (y * T(g)).sum().backward()
    close(vt.grad, np.swapaxes(p, -1, -2) @ g, rtol=1e-4, atol=1e-5)
    dp = g @ np.swapaxes(v, -1, -2)
    ds = p * (dp - (dp * p).sum(-1, keepdims=True))
    close(qt.grad, ds @ k / np.sqrt(E), rtol=1e-4, atol=1e-5)
    close(kt.grad, np.swapaxes(ds, -1, -2) @ q / np.sqrt(E), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("family", ["norm", "rnn", "attention"])
def test_float16_storage_nn(dev, family):
    with profile_as(OCL, fp16=True):
        if family == "norm":
            x = data(3, 20, dtype=np.float16)
            xt = _half(x).requires_grad_(True)
            y = F.layer_norm(xt, (20,), _half(data(20)), _half(data(20)))
            y.sum().backward()
            assert np.isfinite(xt.grad.numpy().astype(np.float32)).all()
            _close16(F.layer_norm(_half(x), (20,)), _ln_ref(x))
        elif family == "rnn":
            from clnet.ops import rnn as rnn_ops
            xt = _half(data(2, 1, 2)).requires_grad_(True)
            res = rnn_ops.rnn_layer("lstm", xt, (_half(data(1, 3)), _half(data(1, 3))), _half(data(12, 2) * 0.3),
                                    _half(data(12, 3) * 0.3))
            res[0].sum().backward()
            assert np.isfinite(xt.grad.numpy().astype(np.float32)).all()
        else:
            q = data(1, 3, 4, dtype=np.float16)
            qt = _half(q).requires_grad_(True)
            y = att_ops.fused_attention(qt, qt, qt, is_causal=True)
            y.sum().backward()
            assert np.isfinite(qt.grad.numpy().astype(np.float32)).all()


# --- scans, sorts, scatter (torch-api's kernels) -------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_scan_kernels(dev, dtype):
    """cumsum/cumprod along the first, middle and last dim of a (3, 5, 4) tensor, their gradients (the
    reversed scan, the cumprod_grad kernel, exact with a zero), and a view with an offset."""
    from clnet.ops import scan
    x = (ints(3, 5, 4, hi=4) if dtype == np.int32 else data(3, 5, 4)).astype(dtype)
    for d in (0, 1, 2):
        close(scan.cumsum(T(x), d), np.cumsum(x.astype(np.float64), d), what=f"cumsum dim {d}")
        close(scan.cumprod(T(x), d), np.cumprod(x.astype(np.float64), d), rtol=1e-4, what=f"cumprod dim {d}")
    if dtype == np.int32:
        return
    x[1, 2, 3] = 0
    w = data(3, 5, 4).astype(np.float64)
    for d in (0, 1):
        t = T(x, requires_grad=True)
        (scan.cumsum(t, d) * T(w.astype(dtype))).sum().backward()
        close(t.grad, np.flip(np.cumsum(np.flip(w, d), d), d), rtol=1e-4, what=f"cumsum grad {d}")
        t = T(x, requires_grad=True)
        (scan.cumprod(t, d) * T(w.astype(dtype))).sum().backward()
        xd = x.astype(np.float64)
        expect = np.zeros_like(xd)
        for idx in np.ndindex(*xd.shape):
            for k in range(idx[d], xd.shape[d]):
                sl = list(idx)
                prod = 1.0
                for j in range(k + 1):
                    if j != idx[d]:
                        sl[d] = j
                        prod *= xd[tuple(sl)]
                sl[d] = k
                expect[idx] += w[tuple(sl)] * prod
        close(t.grad, expect, rtol=1e-4, atol=1e-5, what=f"cumprod grad {d}")
    close(scan.cumsum(T(x)[1:, 1:], 1), np.cumsum(x[1:, 1:].astype(np.float64), 1), what="offset view")


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_sort_kernels(dev, dtype, monkeypatch):
    """Both sort kernels (rank counting and the per-line merge sort, forced on a short line), ascending and
    descending, with ties and NaN, along the first and last dim; topk's gradient (a scatter)."""
    from clnet.ops import sort as sort_ops
    x = (ints(4, 9, hi=5) if dtype == np.int64 else np.round(data(4, 9) * 2) / 2).astype(dtype)
    if dtype != np.int64:
        x[1, 3] = np.nan
    for merge in (False, True):
        monkeypatch.setattr(sort_ops, "RANK_SORT_MAX", 2 if merge else 256)
        for d in (0, 1):
            for desc in (False, True):
                v, i = sort_ops.sort(T(x), d, desc)
                key = -x.astype(np.float64) if desc else x.astype(np.float64)
                if dtype != np.int64:
                    key = np.where(np.isnan(x), -np.inf if desc else np.inf, key)
                order = np.argsort(key, axis=d, kind="stable")
                np.testing.assert_array_equal(i.numpy(), order, err_msg=f"merge={merge} dim={d} desc={desc}")
                np.testing.assert_array_equal(v.numpy(), np.take_along_axis(x, order, d))
    if dtype == np.int64:
        return
    y = data(3, 6).astype(dtype)
    t = T(y, requires_grad=True)
    vals, idx = sort_ops.topk(t, 2, 1)
    vals.sum().backward()
    expect = np.zeros_like(y)
    np.put_along_axis(expect, idx.numpy(), 1.0, 1)
    close(t.grad, expect, what="topk gradient")


def test_dim_scatter_put(dev):
    """scatter (reduce none): the last duplicate wins, untouched elements keep x's values."""
    x = data(3, 5)
    idx = np.array([[0, 1, 2, 0, 0], [2, 0, 0, 1, 0]])
    src = data(2, 5)
    expect = x.astype(np.float64).copy()
    for j in range(2):
        for c in range(5):
            expect[idx[j, c], c] = src[j, c]
    close(indexing.scatter(T(x), 0, T(idx), T(src)), expect, what="scatter")


# --- the run's own coverage ---------------------------------------------------------------------------------
def _any(template, **want):
    """Whether some build of `template` had every wanted parameter (a value, or a predicate on it)."""
    def ok(p, k, v):
        return v(p.get(k)) if callable(v) else p.get(k) == v
    return any(all(ok(p, k, v) for k, v in want.items()) for p in BUILT.get(template, []))


def _required():
    """(what, template, parameters) that at least one build of the run must match."""
    req = []
    for rank_zero in (True, False):
        for idx in ("int", "long"):
            req.append(("elementwise", "elementwise.cl.mako", dict(idx=idx, **({"rank": 0} if rank_zero else {}))))
    req += [(f"elementwise {ct} compute", "elementwise.cl.mako", dict(ct=ct)) for ct in ("int", "long", "double")]
    req.append(("elementwise bool output", "elementwise.cl.mako", dict(outs=lambda o: bool(o) and any(b for _, b in o))))
    req.append(("elementwise fused group (clnet.compile)", "elementwise.cl.mako",
                dict(native=True, outs=lambda o: bool(o) and len(o) > 1)))
    for kern in ("gemm_cpu", "gemm_gpu"):
        req.append((f"{kern} with a fused epilogue (clnet.compile)", "matmul.cl.mako", dict(kernel=kern, ext=bool)))
        req.append((f"{kern} with a fused elementwise group (clnet.compile)", "matmul.cl.mako",
                    dict(kernel=kern, ext=lambda e: bool(e) and e[0] == "multi")))
    if any("grid2" in p for p in BUILT.get("elementwise.cl.mako", [])):  # the CPU 2-D range layout
        req += [(f"elementwise grid2 idx={i}", "elementwise.cl.mako", dict(grid2=True, idx=i)) for i in ("int", "long")]
    for layout in ("inner", "outer"):
        for op in ("sum", "prod", "max", "min", "argmax", "argmin"):
            req.append((f"reduce {layout} {op}", "reduce.cl.mako", dict(layout=layout, op=op)))
        for blocked in (False, True):
            for vec in (1, 4):  # blocked with vec=16: test_reduce_16_wide_vectors
                req.append((f"reduce {layout} vec={vec} blocked={blocked}", "reduce.cl.mako",
                            dict(layout=layout, vec=vec, blocked=blocked)))
        req += [(f"reduce {layout} idx=long", "reduce.cl.mako", dict(layout=layout, idx="long")),
                (f"reduce {layout} arg partials", "reduce.cl.mako", dict(layout=layout, idx_in=True)),
                (f"reduce {layout} values+indices", "reduce.cl.mako",
                 dict(layout=layout, write_val=True, write_idx=True))]
    for cfg in MATMUL_CONFIGS:
        v, tm, tn, tk, wm, wn = cfg
        if v == "gpu":
            for a_kc in (True, False):
                for b_nc in (True, False):
                    req.append((f"gemm_gpu {cfg} a_kc={a_kc} b_nc={b_nc}", "matmul.cl.mako",
                                dict(kernel="gemm_gpu", TM=tm, TN=tn, TK=tk, WM=wm, WN=wn, a_kc=a_kc, b_nc=b_nc)))
            req.append((f"gemm_gpu {cfg} double", "matmul.cl.mako", dict(kernel="gemm_gpu", TM=tm, t="double")))
    if CPU_CFGS:
        for a_mode in ("rows", "panels"):
            req.append((f"gemm_cpu a_mode={a_mode}", "matmul.cl.mako", dict(kernel="gemm_cpu", a_mode=a_mode)))
        for b_mode, b_nc in (("direct", True), ("direct", False), ("panels", False)):
            req.append((f"gemm_cpu b_mode={b_mode} b_nc={b_nc}", "matmul.cl.mako",
                        dict(kernel="gemm_cpu", b_mode=b_mode, b_nc=b_nc)))
        req += [(f"gemm_cpu VW={w}", "matmul.cl.mako", dict(kernel="gemm_cpu", VW=w)) for w in (4, 8)]
        req += [("matmul pack unit", "matmul.cl.mako", dict(kernel="pack", unit=True)),
                ("matmul pack strided", "matmul.cl.mako", dict(kernel="pack", unit=False)),
                ("gemm_cpu double", "matmul.cl.mako", dict(kernel="gemm_cpu", t="double"))]
    for k in ("pack_weights", "conv2d_forward", "conv2d_grad_input", "conv2d_grad_bias",
              "sum_splits", "im2col", "col2im", "max_pool2d_forward", "max_pool2d_backward",
              "avg_pool2d_forward", "avg_pool2d_backward"):
        req.append((f"conv {k}", "conv.cl.mako", dict(kernel=k)))
    conv_kinds = {p.get("kernel") for p in BUILT.get("conv.cl.mako", [])}
    if "pad_input" in conv_kinds or _any("conv.cl.mako", kernel="conv2d_forward", masked=False):
        req += [("conv pad_input", "conv.cl.mako", dict(kernel="pad_input"))]
        req += [(f"conv2d_forward masked={m}", "conv.cl.mako", dict(kernel="conv2d_forward", masked=m))
                for m in (True, False)]
    if any("window" in p for p in BUILT.get("conv.cl.mako", [])):  # unrolled small pooling windows
        for k in ("max_pool2d_forward", "avg_pool2d_forward"):
            req += [(f"{k} window=None", "conv.cl.mako", dict(kernel=k, window=None)),
                    (f"{k} unrolled window", "conv.cl.mako", dict(kernel=k, window=lambda w: w is not None)),
                    (f"{k} unrolled padded window", "conv.cl.mako",
                     dict(kernel=k, window=lambda w: bool(w) and w[-1]))]
            req += [(f"{k} order={o}", "conv.cl.mako", dict(kernel=k, order=o)) for o in ("nchw", "nhwc", "any")]
        for k in ("max_pool2d_backward", "avg_pool2d_backward"):  # gather (overlapping) and scatter windows
            req += [(f"{k} gather", "conv.cl.mako", dict(kernel=k, scatter=False)),
                    (f"{k} scatter unrolled", "conv.cl.mako", dict(kernel=k, scatter=True, window=bool)),
                    (f"{k} scatter unrolled padded", "conv.cl.mako",
                     dict(kernel=k, scatter=True, window=lambda w: bool(w) and w[-1])),
                    (f"{k} scatter loop", "conv.cl.mako", dict(kernel=k, scatter=True, window=None)),
                    (f"{k} order=nhwc", "conv.cl.mako", dict(kernel=k, order="nhwc"))]
    req += [(f"conv2d_forward vw={vw}", "conv.cl.mako", dict(kernel="conv2d_forward", vw=vw)) for vw in (4, 8)]
    req.append(("conv2d_forward with bias", "conv.cl.mako", dict(kernel="conv2d_forward", has_bias=True)))
    if any("cv" in p for p in BUILT.get("reduce.cl.mako", [])):  # column vectors per item (outer layout)
        req += [(f"reduce outer cv={cv}", "reduce.cl.mako", dict(layout="outer", cv=cv)) for cv in (1, 8)]
    for k in ("softmax", "softmax_backward", "cross_entropy"):
        req.append((f"{k} one item per row", "softmax.cl.mako", dict(kernel=k, wg=1)))
        req.append((f"{k} one group per row", "softmax.cl.mako", dict(kernel=k, wg=OCL.profile.reduce_wg)))
    req += [("log_softmax", "softmax.cl.mako", dict(kernel="softmax", log=True)),
            ("nll", "softmax.cl.mako", dict(kernel="cross_entropy", nll=True)),
            ("weighted CE", "softmax.cl.mako", dict(kernel="cross_entropy", weighted=True)),
            ("CE int32 targets", "softmax.cl.mako", dict(kernel="cross_entropy", tt="int")),
            ("class_loss_reduce mean", "softmax.cl.mako", dict(kernel="class_loss_reduce", mean=True)),
            ("class_loss_reduce sum", "softmax.cl.mako", dict(kernel="class_loss_reduce", mean=False)),
            ("CE backward scaled", "softmax.cl.mako", dict(kernel="cross_entropy_backward", scaled=True)),
            ("CE backward unscaled", "softmax.cl.mako", dict(kernel="cross_entropy_backward", scaled=False))]
    for rule, flags in (("sgd", ("momentum", "nesterov", "weight_decay", "maximize")),
                        ("adam", ("amsgrad", "weight_decay", "decoupled", "maximize")),
                        ("rmsprop", ("momentum", "centered", "weight_decay")), ("adagrad", ("weight_decay",)),
                        ("adadelta", ("weight_decay",)), ("adamax", ("weight_decay", "maximize")),
                        ("nadam", ("weight_decay", "decoupled")), ("radam", ("weight_decay", "decoupled"))):
        req.append((f"optim {rule}", "optim.cl.mako", dict(rule=rule)))
        req += [(f"optim {rule} {f}", "optim.cl.mako", dict(rule=rule, **{f: True})) for f in flags]
        req.append((f"optim {rule} double", "optim.cl.mako", dict(rule=rule, t="double")))
    for dist in ("bits", "uniform", "normal", "threshold", "randint"):
        req.append((f"random {dist}", "random.cl.mako", dict(dist=dist)))
    req += [(f"random {d} double", "random.cl.mako", dict(dist=d, ct="double")) for d in ("uniform", "normal")]
    for kind in ("adv_gather", "adv_scatter", "dim_gather", "dim_scatter", "mask_count", "mask_scan", "mask_write"):
        req.append((f"index {kind}", "index.cl.mako", dict(kind=kind)))
    req += [(f"adv_gather j_fast={j}", "index.cl.mako", dict(kind="adv_gather", j_fast=j)) for j in (True, False)]
    req += [(f"adv_scatter {m} segmented={s}", "index.cl.mako", dict(kind="adv_scatter", mode=m, segmented=s))
            for m in ("put", "add") for s in (True, False)]
    req.append(("creation iota", "creation.cl.mako", {}))
    for kind in ("plan_keys", "plan_block_sort", "plan_merge", "plan_winner"):
        req.append((f"scatter_plan {kind}", "scatter_plan.cl.mako", dict(kind=kind)))
    req += [(f"plan_scatter {m} j_fast={j}", "scatter_plan.cl.mako", dict(kind="plan_scatter", mode=m, j_fast=j))
            for m in ("put", "add") for j in (True, False)]
    for template in ("elementwise.cl.mako", "reduce.cl.mako", "matmul.cl.mako", "softmax.cl.mako"):
        req.append((f"{template} half storage", template, dict(t="half") if template != "elementwise.cl.mako"
                    else dict(outs=lambda outs: any(t == "half" for t, _ in outs))))
    req.append(("random.cl.mako half output", "random.cl.mako", dict(out_t="half")))
    for kernel in ("forward", "backward"):
        req.append((f"norm {kernel} one item per row", "norm.cl.mako", dict(kernel=kernel, wg=1)))
        req.append((f"norm {kernel} one group per row", "norm.cl.mako", dict(kernel=kernel, wg=lambda w: w > 1)))
    req += [(f"norm {k} vw=4", "norm.cl.mako", dict(kernel=k, vw=4)) for k in ("forward", "backward")]
    req += [("norm forward no affine", "norm.cl.mako", dict(kernel="forward", has_weight=False, has_bias=False)),
            ("norm forward weight only", "norm.cl.mako", dict(kernel="forward", has_weight=True, has_bias=False)),
            ("norm grad_params dw+db", "norm.cl.mako", dict(kernel="grad_params", has_weight=True, has_bias=True)),
            ("norm grad_params dw", "norm.cl.mako", dict(kernel="grad_params", has_weight=True, has_bias=False))]
    req.append(("norm grad_params vw=4", "norm.cl.mako", dict(kernel="grad_params", vw=4)))
    for cell in ("lstm", "gru", "rnn_tanh", "rnn_relu"):
        req += [(f"rnn {cell} {k} packed={p}", "rnn.cl.mako", dict(cell=cell, kernel=k, packed=p))
                for k in ("forward", "backward") for p in (False, True)]
    for kernel in ("forward", "backward_dq", "backward_dkv"):
        req += [(f"attention {kernel} causal", "attention.cl.mako", dict(kernel=kernel, causal=True)),
                (f"attention {kernel} masked", "attention.cl.mako", dict(kernel=kernel, masked=True)),
                (f"attention {kernel} plain", "attention.cl.mako", dict(kernel=kernel, causal=False, masked=False))]
    req += [(f"{t} half storage", t, dict(t="half")) for t in ("norm.cl.mako", "rnn.cl.mako", "attention.cl.mako")]
    for kernel in ("pad_pitched", "pack_panels", "conv_gemm", "conv_wgrad"):
        req.append((f"conv_gemm {kernel}", "conv_gemm.cl.mako", dict(kernel=kernel)))
    req += [(f"conv_gemm KWU={k}", "conv_gemm.cl.mako", dict(kernel="conv_gemm", KWU=k)) for k in (0, 1, 3)]
    req += [("conv_gemm vectors of 4", "conv_gemm.cl.mako", dict(kernel="conv_gemm", VW=4))]
    req += [(f"conv_gemm conv_wgrad_q {mo}x{mk}", "conv_gemm.cl.mako", dict(kernel="conv_wgrad_q", MO=mo, MK=mk))
            for mo, mk in ((2, 3), (3, 2), (1, 4))]
    req += [(f"conv_gemm MR={mr}", "conv_gemm.cl.mako", dict(kernel="conv_gemm", MR=mr)) for mr in (3, 5)]
    for m in (2, 4):
        for kernel in ("wino_input", "wino_grad_out", "wino_filter", "wino_output", "wino_wgrad"):
            req.append((f"winograd m={m} {kernel}", "conv_winograd.cl.mako", dict(kernel=kernel, m=m)))
        req += [(f"winograd m={m} input panels", "conv_winograd.cl.mako",
                 dict(kernel="wino_input", m=m, NT=lambda v: v > 1, VW=4)),
                (f"winograd m={m} grad_out panels", "conv_winograd.cl.mako",
                 dict(kernel="wino_grad_out", m=m, NC=lambda v: v > 1, VW=4)),
                (f"winograd m={m} output vectors", "conv_winograd.cl.mako", dict(kernel="wino_output", m=m, VW=4))]
    for kernel in ("bn_stats", "bn_finalize", "bn_eval", "bn_grad_params", "bn_apply", "bn_grad_input"):
        req.append((f"batchnorm {kernel}", "batchnorm.cl.mako", dict(kernel=kernel)))
    req += [("batchnorm stats relu", "batchnorm.cl.mako", dict(kernel="bn_stats", relu=True)),
            ("batchnorm stats vectors", "batchnorm.cl.mako", dict(kernel="bn_stats", VW=4)),
            ("batchnorm apply relu", "batchnorm.cl.mako", dict(kernel="bn_apply", relu=True)),
            ("batchnorm grad_input relu", "batchnorm.cl.mako", dict(kernel="bn_grad_input", relu=True)),
            ("batchnorm finalize running", "batchnorm.cl.mako", dict(kernel="bn_finalize", has_running=True)),
            ("batchnorm finalize no affine", "batchnorm.cl.mako", dict(kernel="bn_finalize", has_weight=False))]
    for op in ("sum", "prod"):  # integers scan in int64
        req += [(f"scan {op} {t}", "scan.cl.mako", dict(kind="scan", op=op, t=t)) for t in ("float", "double", "long")]
    req += [("scan reversed", "scan.cl.mako", dict(kind="scan", reverse=True)),
            ("cumprod_grad", "scan.cl.mako", dict(kind="cumprod_grad"))]
    for kind in ("rank_sort", "merge_sort"):
        req += [(f"{kind} {t} descending={d}", "sort.cl.mako", dict(kind=kind, t=t, descending=d))
                for t in ("float", "double", "long") for d in (False, True)]
    req.append(("index dim_scatter put", "index.cl.mako", dict(kind="dim_scatter", reduce="none")))
    return req


# --- compiled graphs (clnet.compile): fused elementwise groups and GEMM epilogues -----------------------------
@pytest.mark.parametrize("variant", ["cpu", "gpu"])
def test_compiled_fusion_kernels(dev, variant):
    """A traced step replayed through fused kernels: a multi-output elementwise group (scalars, a bool
    intermediate, broadcasting) and GEMMs with ReLU and gradient-mask epilogues, equal to eager."""
    rng = np.random.default_rng(3)
    data = [rng.standard_normal(s).astype(np.float32) for s in ((5, 7), (7, 6), (6, 3), (3,))]

    def make():
        x, w1, w2, b = (T(a, requires_grad=i in (1, 2)) for i, a in enumerate(data))

        def step():
            h = x.mm(w1).clamp(min=0)
            d = h.mm(w2) + b - 0.5
            loss = clnet.where(d > 0, d * d, -d).sum()
            loss.backward()
            with clnet.no_grad():
                w1.sub_(0.01 * w1.grad)
                w2.sub_(0.01 * w2.grad)
                w1.grad.zero_()
                w2.grad.zero_()
            return loss
        return step
    with profile_as(dev, matmul_variant=variant):
        eager_step = make()
        eager = [eager_step().numpy() for _ in range(3)]   # warm-up, trace, one replay
        compiled = clnet.compile(make())
        got = [compiled().numpy() for _ in range(3)]
    assert compiled.stats.replays == 1 and compiled.stats.launches_replayed < compiled.stats.launches_traced
    for a, e in zip(got, eager):
        close(a, e, rtol=1e-4, what="compiled step")


# --- GEMM groups (clnet.compile's fuse_gemm_groups, the "multi" epilogue): fusedopt's section ---------------
@pytest.mark.parametrize("variant", ["cpu", "gpu"])
def test_compiled_gemm_group_epilogues(dev, variant):
    """The lecture's step at odd sizes (edge blocks): SGD updates and .grad zeroing in the gradient GEMMs'
    epilogues (e and o pointers on the same buffers), the forward ReLU stored beside its input, the loss
    gradient with C not stored; weights equal numpy float64's."""
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((5, 9)), rng.standard_normal((5, 3))
    w1, w2 = rng.standard_normal((9, 7)) * 0.3, rng.standard_normal((7, 3)) * 0.3
    lr = 0.01
    with profile_as(dev, matmul_variant=variant):
        tx, ty = T(x.astype(np.float32)), T(y.astype(np.float32))
        t1, t2 = T(w1.astype(np.float32), requires_grad=True), T(w2.astype(np.float32), requires_grad=True)

        def step():
            loss = (tx.mm(t1).clamp(min=0).mm(t2) - ty).pow(2).sum()
            loss.backward()
            with clnet.no_grad():
                t1.sub_(lr * t1.grad)
                t2.sub_(lr * t2.grad)
                t1.grad.zero_()
                t2.grad.zero_()
            return loss
        compiled = clnet.compile(step)
        losses = [compiled().numpy() for _ in range(3)]
        got1, got2 = t1.numpy(), t2.numpy()
    assert compiled.stats.replays == 1 and compiled.stats.launches_replayed <= 6
    for i in range(3):
        h = x @ w1
        d = np.maximum(h, 0) @ w2 - y
        close(losses[i], (d * d).sum(), rtol=1e-4, what=f"loss {i}")
        g2 = np.maximum(h, 0).T @ (2 * d)
        g1 = x.T @ ((2 * d) @ w2.T * (h >= 0))
        w1, w2 = w1 - lr * g1, w2 - lr * g2
    close(got1, w1, rtol=1e-4, atol=1e-5, what="w1")
    close(got2, w2, rtol=1e-4, atol=1e-5, what="w2")


@pytest.mark.parametrize("variant", ["cpu", "gpu"])
def test_compiled_gemm_adam_epilogue(dev, variant, monkeypatch):
    """Adam (AdamW flags) in the epilogue of the GEMM making the weight's gradient, odd sizes: weight,
    gradient and both moments stored from the epilogue; equal to numpy float64's over 3 steps."""
    monkeypatch.setattr(clnet.optim.Adam, "LARGE", 16)
    rng = np.random.default_rng(6)
    x, y, w = rng.standard_normal((5, 9)), rng.standard_normal((5, 3)), rng.standard_normal((3, 9)) * 0.3
    lr, wd = 0.01, 0.1
    with profile_as(dev, matmul_variant=variant):
        lin = clnet.nn.Linear(9, 3, bias=False).to(dev)
        with clnet.no_grad():
            lin.weight.copy_(T(w.astype(np.float32)))
        opt = clnet.optim.AdamW(lin.parameters(), lr=lr, weight_decay=wd)
        tx, ty = T(x.astype(np.float32)), T(y.astype(np.float32))

        def step():
            opt.zero_grad()
            loss = ((lin(tx) - ty) ** 2).sum()
            loss.backward()
            opt.step()
            return loss
        compiled = clnet.compile(step)
        for _ in range(3):
            compiled()
        got = lin.weight.numpy()
    assert compiled.stats.replays == 1 and compiled.stats.launches_replayed < compiled.stats.launches_traced
    m, v = np.zeros_like(w), np.zeros_like(w)
    for t in range(1, 4):
        g = 2 * (x @ w.T - y).T @ x
        w = w * (1 - lr * wd)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        w = w - lr / (1 - 0.9 ** t) * m / (np.sqrt(v) / np.sqrt(1 - 0.999 ** t) + 1e-8)
    close(got, w, rtol=1e-4, atol=1e-5, what="AdamW weight")


def test_zz_every_template_and_variant_ran(dev, request):
    """Every template in kernels/ was built, and each variant listed in _required() at least once."""
    _record_built()
    if WIDE_CHILD:  # the child of test_reduce_16_wide_vectors: its own variants only
        lacking = [f"reduce {layout} vec=16 blocked=True" for layout in ("inner", "outer")
                   if not _any("reduce.cl.mako", layout=layout, vec=16, blocked=True)]
        lacking += [] if _any("conv.cl.mako", kernel="conv2d_forward", vw=16) else ["conv2d_forward vw=16"]
        lacking += [] if _any("matmul.cl.mako", kernel="gemm_cpu", VW=16) else ["gemm_cpu VW=16"]
        assert not lacking, f"variants never built: {lacking}"
        return
    if request.config.getoption("keyword") or getattr(request.config.option, "lf", False):
        pytest.skip("only part of the sanitizer run was selected (-k / --lf)")
    print(f"{len(_HELD)} buffers, {sum(b.size for b in _HELD) / 2**20:.1f} MiB held by the run")
    templates = sorted(p.name for p in programs.kernel_dir().glob("*.cl.mako"))
    missing = [t for t in templates if t not in BUILT]
    lacking = [what for what, template, want in _required() if not _any(template, **want)]
    seen = sorted({(p.get("layout"), p.get("vec"), p.get("blocked"), p.get("cv"))
                   for p in BUILT.get("reduce.cl.mako", [])}, key=str)
    assert not missing and not lacking, (
        f"templates never built by the sanitizer run: {missing}\n"
        "variants never built by the sanitizer run:\n  " + "\n  ".join(lacking)
        + f"\n(reduce layout, vec, blocked, cv seen: {seen})")

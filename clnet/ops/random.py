"""Random tensors made on the device by a counter-based generator (Philox4x32-10, kernels/random.cl.mako).

The generator's whole state is (seed, offset): the seed is the Philox key and the offset the next
unused 128-bit counter block. Each call takes the blocks it needs and advances the offset, so
successive calls differ, and `manual_seed(s)` replays the same sequence (bit-identical raw words on
every device; uniforms too, normals up to the device's log/sin/cos rounding). Like PyTorch, the state
starts from a fixed seed, so unseeded programs are reproducible as well; `seed()` picks a random one.
One block gives 4 float32/float16 values or 2 float64/int64 values.
"""
from __future__ import annotations

import numbers
import os
import threading

import numpy as np

from .. import dtypes as _dt
from ..backend.devices import get_device
from ..backend.programs import ctype, get_kernel
from ..core import dispatch
from ..core.dispatch import op
from ..core.storage import TensorBase, normalise_shape as _normalise_shape
from ..core.tape import is_grad_enabled
from .creation import empty, like, tensor, to_numpy
from .elementwise import copy_into

DEFAULT_SEED = 67280421310721  # PyTorch's default, for the habit of it (the streams differ)
_MASK64 = (1 << 64) - 1
_state = {"seed": DEFAULT_SEED, "offset": 0}
_state_lock = threading.Lock()


# --- state ------------------------------------------------------------------------------------------
def manual_seed(seed: int) -> None:
    """Make every later random call reproducible: same seed and call sequence, same numbers."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"manual_seed expects an int, got {type(seed).__name__}")
    _state["seed"] = int(seed) & _MASK64
    _state["offset"] = 0


def seed() -> int:
    """Seed from the operating system's entropy; returns the seed chosen."""
    s = int.from_bytes(os.urandom(8), "little")
    manual_seed(s)
    return s


def initial_seed() -> int:
    return _state["seed"]


def get_rng_state() -> tuple:
    """(seed, offset): pass it to set_rng_state to replay from here."""
    return (_state["seed"], _state["offset"])


def set_rng_state(state) -> None:
    s, off = state
    _state["seed"], _state["offset"] = int(s) & _MASK64, int(off) & _MASK64


def _take(blocks: int):
    """Reserve `blocks` counter blocks; returns (key0, key1, ctr_lo, ctr_hi) of the first (atomic across
    threads: two threads never draw the same counters)."""
    with _state_lock:
        s, off = _state["seed"], _state["offset"]
        _state["offset"] = (off + blocks) & _MASK64
    return s & 0xFFFFFFFF, s >> 32, off & 0xFFFFFFFF, off >> 32


# --- the one launcher -------------------------------------------------------------------------------
def _per_block(dist, dtype) -> int:
    if dist == "randint" or (dist in ("uniform", "normal") and dtype == _dt.float64):
        return 2
    return 4


def _fill(out: TensorBase, dist: str, extra_dtypes, extra_args) -> TensorBase:
    """Fill contiguous `out` with `dist` values drawn from the global (seed, offset) state."""
    n = out.numel()
    if n == 0:
        return out
    device = out.device
    ct = _dt.float64 if out.dtype == _dt.float64 else _dt.float32
    per = _per_block(dist, out.dtype)
    blocks = -(-n // per)
    idx = "int" if out.offset + n + per < 2**31 - 1 else "long"
    idt = np.dtype(np.int32 if idx == "int" else np.int64)
    kern = get_kernel(device, "random.cl.mako", f"philox_{dist}",
                      arg_dtypes=[idt, None, idt, np.uint32, np.uint32, np.uint32, np.uint32] + extra_dtypes,
                      dist=dist, out_t=ctype(out.dtype), ct=ctype(ct), idx=idx)
    wg = device.profile.elementwise_wg
    dispatch.launch(device, kern, (-(-blocks // wg) * wg,), (wg,), [n, out._buf, out.offset, *_take(blocks), *extra_args],
                    refresh=lambda: dict(zip((3, 4, 5, 6), _take(blocks))))  # a replay draws new numbers, as eagerly
    return out


def _compute_np(dtype):
    return np.dtype(np.float64) if dtype == _dt.float64 else np.dtype(np.float32)


def _float_dtype(dtype, what):
    dt = _dt.as_dtype(dtype) if dtype is not None else _dt.DEFAULT_FLOAT
    if not _dt.is_floating(dt):
        raise TypeError(f"{what} makes floating-point tensors; got dtype={dt.name} (use randint for integers)")
    return dt


def _new(shape, dtype, device) -> TensorBase:
    return TensorBase._empty(_normalise_shape(shape), dtype, get_device(device))


def _finish(t: TensorBase, requires_grad: bool) -> TensorBase:
    if requires_grad:
        t.requires_grad_(True)
    return t


def _uniform_into(out, low, high):
    c = _compute_np(out.dtype)
    return _fill(out, "uniform", [c, c], [c.type(low), c.type(high)])


def _normal_into(out, mean, std):
    c = _compute_np(out.dtype)
    return _fill(out, "normal", [c, c], [c.type(mean), c.type(std)])


def _threshold_into(out, p_true, value_true, value_false):
    """out = value_true with probability p_true, else value_false."""
    c = _compute_np(out.dtype if _dt.is_floating(out.dtype) else _dt.float32)
    thr = min(1 << 32, max(0, int(round(float(p_true) * 2.0**32))))
    return _fill(out, "threshold", [np.uint64, c, c], [thr, c.type(value_true), c.type(value_false)])


# --- public functions -------------------------------------------------------------------------------
@op("rand")
def rand(*shape, dtype=None, device=None, requires_grad=False) -> TensorBase:
    """Uniform values in [0, 1); shape as varargs or one tuple."""
    out = _new(shape, _float_dtype(dtype, "rand"), device)
    return _finish(_uniform_into(out, 0.0, 1.0), requires_grad)


@op("randn")
def randn(*shape, dtype=None, device=None, requires_grad=False) -> TensorBase:
    """Standard normal values (Box-Muller); shape as varargs or one tuple."""
    out = _new(shape, _float_dtype(dtype, "randn"), device)
    return _finish(_normal_into(out, 0.0, 1.0), requires_grad)


def _check_inplace(t, what):
    if not isinstance(t, TensorBase):
        raise TypeError(f"{what} expects a clnet Tensor, got {type(t).__name__}")
    if not _dt.is_floating(t.dtype):
        raise TypeError(f"{what} fills floating-point tensors; this one is {t.dtype.name}")
    if is_grad_enabled() and t.requires_grad and t._node is None:
        raise RuntimeError(f"{what}: a leaf tensor that requires grad is being used in an in-place operation; "
                           "wrap it in `with clnet.no_grad():`")


def _inplace(t: TensorBase, fill) -> TensorBase:
    """Run fill(contiguous target); non-contiguous tensors are filled through a temporary."""
    if t.is_contiguous():
        fill(t)
    else:
        tmp = TensorBase._empty(t.shape, t.dtype, t.device)
        copy_into(t, fill(tmp))
    t._bump_version()
    return t


@op("uniform_")
def uniform_(t: TensorBase, low: float = 0.0, high: float = 1.0) -> TensorBase:
    """Fill t in place with U(low, high) (values stay below high); used by nn.init."""
    _check_inplace(t, "uniform_")
    if not high >= low:
        raise ValueError(f"uniform_ expects low <= high, got low={low}, high={high}")
    return _inplace(t, lambda out: _uniform_into(out, low, high))


@op("normal_")
def normal_(t: TensorBase, mean: float = 0.0, std: float = 1.0) -> TensorBase:
    """Fill t in place with N(mean, std**2); used by nn.init."""
    _check_inplace(t, "normal_")
    if std < 0:
        raise ValueError(f"normal_ expects std >= 0, got {std}")
    return _inplace(t, lambda out: _normal_into(out, mean, std))


def _check_p(p, what):
    if isinstance(p, TensorBase) or not isinstance(p, numbers.Real) or not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"{what} probability must be a number in [0, 1], got {p!r}")


@op("bernoulli_mask")
def bernoulli_mask(shape, p: float, device=None, dtype=None) -> TensorBase:
    """1 with probability p, else 0 (float32 by default; dtype=clnet.bool gives a bool mask)."""
    _check_p(p, "bernoulli_mask")
    dt = _dt.as_dtype(dtype) if dtype is not None else _dt.DEFAULT_FLOAT
    out = _new(shape if isinstance(shape, (tuple, list)) else (shape,), dt, device)
    return _threshold_into(out, p, 1.0, 0.0)


@op("dropout_mask")
def dropout_mask(shape, p: float, device=None, dtype=None) -> TensorBase:
    """The inverted-dropout multiplier: 1/(1-p) with probability 1-p, else 0 (all 0 when p == 1)."""
    _check_p(p, "dropout_mask")
    dt = _float_dtype(dtype, "dropout_mask")
    out = _new(shape if isinstance(shape, (tuple, list)) else (shape,), dt, device)
    keep = 1.0 - float(p)
    return _threshold_into(out, keep, 1.0 / keep if keep > 0 else 0.0, 0.0)


@op("randint")
def randint(low, high=None, size=None, *, dtype=None, device=None, requires_grad=False) -> TensorBase:
    """Integers uniform in [low, high): randint(high, size) or randint(low, high, size), as PyTorch."""
    if size is None:
        if isinstance(high, (tuple, list)):
            low, high, size = 0, low, high
        else:
            raise TypeError("randint needs a size: randint(high, size) or randint(low, high, size)")
    if high is None:
        low, high = 0, low
    if requires_grad:
        raise RuntimeError("integer tensors cannot require gradients")
    for name, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"randint {name} must be an int, got {v!r}")
    low, high = int(low), int(high)
    if high <= low:
        raise ValueError(f"randint expects low < high, got low={low}, high={high}")
    dt = _dt.as_dtype(dtype) if dtype is not None else _dt.int64
    if dt.kind not in "iu":
        raise TypeError(f"randint makes integer tensors; got dtype={dt.name}")
    info = np.iinfo(dt)
    if low < info.min or high - 1 > info.max:
        raise ValueError(f"randint range [{low}, {high}) does not fit {dt.name}")
    out = _new(size if isinstance(size, (tuple, list)) else (size,), dt, device)
    return _fill(out, "randint", [np.int64, np.uint64], [low, high - low])


def randperm(n: int, *, dtype=None, device=None) -> TensorBase:
    """A random permutation of 0..n-1: random 64-bit keys made on the device, sorted on the host
    (so this call waits for the device)."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise ValueError(f"randperm expects a non-negative int, got {n!r}")
    dt = _dt.as_dtype(dtype) if dtype is not None else _dt.int64
    dev = get_device(device)
    if n == 0:
        return tensor(np.zeros(0, dtype=dt), device=dev)
    keys = to_numpy(randint(-(2**63), 2**63 - 1, (int(n),), device=dev))
    return tensor(np.argsort(keys, kind="stable").astype(dt), device=dev)


def rand_like(x, dtype=None, device=None, requires_grad=False) -> TensorBase:
    return rand(x.shape, requires_grad=requires_grad, **like(x, dtype, device))


def randn_like(x, dtype=None, device=None, requires_grad=False) -> TensorBase:
    return randn(x.shape, requires_grad=requires_grad, **like(x, dtype, device))


def uniform(shape, minval=0.0, maxval=1.0, dtype=None, seed=None, device=None) -> TensorBase:
    """tf.random.uniform: values in [minval, maxval) (float32 unless dtype says otherwise)."""
    if seed is not None:
        manual_seed(seed)
    out = empty(_normalise_shape((shape,) if not isinstance(shape, (tuple, list)) else (tuple(shape),)),
                dtype=_dt.DEFAULT_FLOAT if dtype is None else dtype, device=device)
    return uniform_(out, minval, maxval)


def normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None, device=None) -> TensorBase:
    """tf.random.normal: Gaussian values with the given mean and standard deviation."""
    if seed is not None:
        manual_seed(seed)
    out = empty(_normalise_shape((shape,) if not isinstance(shape, (tuple, list)) else (tuple(shape),)),
                dtype=_dt.DEFAULT_FLOAT if dtype is None else dtype, device=device)
    return normal_(out, mean, stddev)


def _bits(n: int, device=None) -> TensorBase:
    """n raw Philox words, stored as int32 bits (view as uint32; tests check Random123's known answers)."""
    out = TensorBase._empty((n,), _dt.int32, get_device(device))
    return _fill(out, "bits", [], [])


def philox4x32_10(counter, key) -> tuple:
    """Host reference of one Philox4x32-10 block (pure Python; tests compare the kernel with it)."""
    m0, m1, w0, w1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
    c0, c1, c2, c3 = (int(c) & 0xFFFFFFFF for c in counter)
    k0, k1 = (int(k) & 0xFFFFFFFF for k in key)
    for r in range(10):
        if r:
            k0, k1 = (k0 + w0) & 0xFFFFFFFF, (k1 + w1) & 0xFFFFFFFF
        p0, p1 = m0 * c0, m1 * c2
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0, p1 & 0xFFFFFFFF, (p0 >> 32) ^ c3 ^ k1, p0 & 0xFFFFFFFF)
    return c0, c1, c2, c3


__all__ = ["manual_seed", "seed", "initial_seed", "get_rng_state", "set_rng_state", "rand", "randn",
           "rand_like", "randn_like", "uniform", "normal", "uniform_", "normal_", "bernoulli_mask", "dropout_mask",
           "randint", "randperm"]

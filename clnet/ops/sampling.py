"""Sampling from distributions, on the device, from the one counter-based generator (ops/random.py):
normal with tensor mean/std, bernoulli, multinomial, randint_like; and logspace.

multinomial draws with replacement by inverting the cumulative weights (a comparison count per sample)
and without replacement by the Gumbel-top-k trick (the k largest of log(w) + Gumbel noise are an exact
sample of k distinct categories), so neither needs a loop over draws.
"""
from __future__ import annotations

import numbers

from .. import dtypes as _dt
from ..backend.devices import get_device
from ..core.dispatch import op
from ..core.storage import TensorBase
from .creation import linspace
from .elementwise import add, cast, clamp, div, le, log, lt, mul, neg, pow as _pow
from .movement import squeeze, unsqueeze
from .random import normal_, rand, randint, randn
from .reduce import sum as _sum
from .scan import cumsum
from .shapes import broadcast_shapes
from .sort import topk


@op("normal")
def normal(mean, std=1.0, size=None, *, dtype=None, device=None, requires_grad=False, generator=None,
           out=None) -> TensorBase:
    """torch.normal: N(mean, std**2) samples; mean and std may be tensors (broadcast, and the result is
    differentiable in them) or numbers with `size`."""
    if isinstance(mean, TensorBase) or isinstance(std, TensorBase):
        like = mean if isinstance(mean, TensorBase) else std
        shape = _broadcast(mean, std)
        z = randn(shape, dtype=like.dtype if _dt.is_floating(like.dtype) else None, device=like.device)
        return add(mean, mul(std, z))
    if size is None:
        raise TypeError("normal(mean, std, size): with number mean and std, give the size")
    if std < 0:
        raise ValueError(f"normal expects std >= 0, got {std}")
    dt = _dt.as_dtype(dtype) if dtype is not None else _dt.DEFAULT_FLOAT
    shape = tuple(size) if isinstance(size, (tuple, list)) else (size,)
    t = TensorBase._empty(shape, dt, get_device(device))
    normal_(t, float(mean), float(std))
    if requires_grad:
        t.requires_grad_(True)
    return t


def _broadcast(a, b):
    sa = a.shape if isinstance(a, TensorBase) else ()
    sb = b.shape if isinstance(b, TensorBase) else ()
    return broadcast_shapes(sa, sb)


@op("bernoulli")
def bernoulli(input: TensorBase, p=None, *, generator=None) -> TensorBase:
    """1 with probability input (elementwise; or the number p for every element), else 0, in input's dtype."""
    if not isinstance(input, TensorBase):
        raise TypeError(f"bernoulli: expected a Tensor of probabilities, got {type(input).__name__}")
    dt = input.dtype if _dt.is_floating(input.dtype) else _dt.DEFAULT_FLOAT
    u = rand(input.shape, dtype=dt, device=input.device)
    probs = input if p is None else float(p)
    if p is not None and not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"bernoulli: p must be in [0, 1], got {p}")
    return cast(lt(u, probs), input.dtype)


@op("multinomial")
def multinomial(input: TensorBase, num_samples, replacement=False, *, generator=None) -> TensorBase:
    """Indices drawn from the categories of each row of `input` (non-negative weights, need not sum to 1):
    int64 of shape (rows, num_samples), or (num_samples,) for 1-D input."""
    if not isinstance(input, TensorBase):
        raise TypeError(f"multinomial: expected a Tensor of weights, got {type(input).__name__}")
    if input.ndim not in (1, 2):
        raise ValueError(f"multinomial: input must be 1-D or 2-D, got shape {tuple(input.shape)}")
    if not _dt.is_floating(input.dtype):
        raise TypeError(f"multinomial: expected floating-point weights, got {input.dtype.name}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, numbers.Integral) or num_samples <= 0:
        raise ValueError(f"multinomial: num_samples must be a positive int, got {num_samples!r}")
    n = input.shape[-1]
    if not replacement and num_samples > n:
        raise ValueError(f"multinomial: cannot draw {num_samples} samples without replacement from {n} categories")
    w = input if input.ndim == 2 else unsqueeze(input, 0)
    rows = w.shape[0]
    if replacement:
        cdf = cumsum(div(w, _sum(w, 1, True)), 1)                            # (rows, n)
        u = rand((rows, num_samples), dtype=w.dtype, device=w.device)          # (rows, k)
        below = le(unsqueeze(cdf, 1), unsqueeze(u, 2))                         # (rows, k, n): cdf_j <= u
        idx = clamp(_sum(below, 2, dtype=_dt.int64), None, n - 1)  # u past the last cdf value (rounding)
    else:
        u = rand((rows, n), dtype=w.dtype, device=w.device)
        gumbel = neg(log(neg(log(u))))
        idx = topk(add(log(w), gumbel), num_samples, 1).indices
    return idx if input.ndim == 2 else squeeze(idx, 0)


@op("randint_like")
def randint_like(input: TensorBase, low=0, high=None, *, dtype=None, device=None) -> TensorBase:
    """randint with input's shape (and dtype and device unless given)."""
    if high is None:
        low, high = 0, low
    return randint(low, high, tuple(input.shape), dtype=dtype if dtype is not None else input.dtype,
                   device=device if device is not None else input.device)


@op("logspace")
def logspace(start, end, steps, base=10.0, *, dtype=None, device=None, requires_grad=False) -> TensorBase:
    """base ** linspace(start, end, steps)."""
    dt = _dt.as_dtype(dtype) if dtype is not None else _dt.DEFAULT_FLOAT
    exps = linspace(start, end, steps, dtype=dt if _dt.is_floating(dt) else _dt.DEFAULT_FLOAT, device=device)
    out = _pow(float(base), exps)
    if out.dtype != dt:
        out = cast(out, dt)
    if requires_grad:
        out.requires_grad_(True)
    return out


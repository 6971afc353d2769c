"""keras.random: random tensors drawn on the device by clnet's counter-based generator (clnet.ops.random).

`seed` is what Keras takes: None draws from the global stream (keras.utils.set_random_seed and
clnet.manual_seed set it), an int gives the same numbers at every call, and a SeedGenerator gives a new,
reproducible draw at each call. A seeded draw runs on its own (seed, offset) stream and leaves the global
stream where it was.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np

import clnet
from clnet import dtypes as _dt
from clnet.nn import functional as F
from clnet.ops import random as _random

from . import config, utils
from .ops.symbolic import as_tensor, standardize_dtype


class SeedGenerator:
    """A reproducible source of seeds for the random functions: each draw advances its own stream."""

    def __init__(self, seed=None, name=None, **kwargs):
        if seed is None:
            seed = int(utils.host_rng().integers(2**31))
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"Argument `seed` must be an integer. Received: seed={seed!r}")
        self.name = name or utils.unique_name("seed_generator")
        self._initial_seed = int(seed)
        self._offset = 0

    @property
    def state(self):
        return np.array([self._initial_seed, self._offset], dtype=np.int64)

    def next(self, ordered=True):
        """(seed, offset) of the next draw."""
        return self._initial_seed, self._offset

    def get_config(self):
        return {"seed": self._initial_seed}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@contextlib.contextmanager
def _stream(seed):
    """Draw from the stream `seed` names (see the module docstring)."""
    if seed is None:
        yield
        return
    if isinstance(seed, SeedGenerator):
        key, offset = seed.next()
    elif isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        key, offset = int(seed), 0
    else:
        raise ValueError(f"Argument `seed` must be either an integer or an instance of `SeedGenerator`. Received: "
                         f"seed={seed!r} (of type {type(seed)})")
    saved = _random.get_rng_state()
    _random.set_rng_state((key, offset))
    try:
        yield
    finally:
        if isinstance(seed, SeedGenerator):
            seed._offset = _random.get_rng_state()[1]
        _random.set_rng_state(saved)


def _shape(shape):
    return (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)


def _float_dtype(dtype):
    name = standardize_dtype(dtype or config.floatx())
    if not name.startswith("float"):
        raise ValueError(f"this random function makes floats; got dtype={name}")
    return _dt.as_dtype(name)


def normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
    with _stream(seed):
        out = _random.randn(*_shape(shape), dtype=_float_dtype(dtype))
    return out * float(stddev) + float(mean) if (stddev != 1.0 or mean != 0.0) else out


def uniform(shape, minval=0.0, maxval=1.0, dtype=None, seed=None):
    if standardize_dtype(dtype or config.floatx()).startswith(("int", "uint")):
        return randint(shape, minval, maxval, dtype, seed)
    with _stream(seed):
        out = _random.uniform_(clnet.empty(_shape(shape), dtype=_float_dtype(dtype)), float(minval), float(maxval))
    return out


def randint(shape, minval, maxval, dtype="int32", seed=None):
    with _stream(seed):
        return _random.randint(int(minval), int(maxval), _shape(shape), dtype=_dt.as_dtype(standardize_dtype(dtype)))


def truncated_normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
    """Normal values within two standard deviations (values outside are drawn again, as Keras)."""
    with _stream(seed):
        z = _random.randn(*_shape(shape), dtype=_float_dtype(dtype))
        for _ in range(6):  # 4.6% redrawn each round: after six, < 1e-8 of the values are left to clamp
            outside = clnet.abs(z) > 2.0
            z = clnet.where(outside, _random.randn(*_shape(shape), dtype=z.dtype), z)
        z = clnet.clamp(z, -2.0, 2.0)
    return z * float(stddev) + float(mean)


def dropout(inputs, rate, noise_shape=None, seed=None):
    """Zero each entry with probability `rate` and scale the rest by 1 / (1 - rate) (always: no training flag)."""
    x = as_tensor(inputs)
    with _stream(seed):
        if noise_shape is None:
            return F.dropout(x, float(rate), training=True)
        shape = tuple(x.shape[i] if s is None else int(s) for i, s in enumerate(noise_shape))
        mask = _random.dropout_mask(shape, float(rate), device=x.device, dtype=x.dtype)
    return x * mask


def shuffle(x, axis=0, seed=None):
    """x with its entries along `axis` in a random order."""
    t = as_tensor(x)
    with _stream(seed):
        perm = _random.randperm(t.shape[axis], device=t.device)
    return clnet.index_select(t, int(axis) % t.ndim, perm)


def categorical(logits, num_samples, dtype="int32", seed=None):
    """num_samples class indices per row of `logits`, drawn with the Gumbel-max trick on the device."""
    lg = as_tensor(logits)
    if lg.ndim != 2:
        raise ValueError(f"`logits` should be a 2-D tensor with shape [batch_size, num_classes]. Received: "
                         f"logits.shape={tuple(lg.shape)}")
    with _stream(seed):
        u = _random.uniform_(clnet.empty((lg.shape[0], int(num_samples), lg.shape[1]), dtype=lg.dtype), 1e-20, 1.0)
    gumbel = -clnet.log(-clnet.log(u))
    return clnet.argmax(lg.unsqueeze(1) + gumbel, -1).to(dtype=_dt.as_dtype(standardize_dtype(dtype)))


def binomial(shape, counts, probabilities, dtype=None, seed=None):
    """Sum of `counts` Bernoulli(probabilities) draws per entry (counts must be a Python int)."""
    n = int(counts)
    with _stream(seed):
        draws = _random.uniform_(clnet.empty(_shape(shape) + (n,), dtype=_float_dtype(dtype)), 0.0, 1.0)
    p = probabilities if isinstance(probabilities, (int, float)) else as_tensor(probabilities).unsqueeze(-1)
    return clnet.sum((draws < p).to(dtype=draws.dtype), -1)


def gamma(shape, alpha, dtype=None, seed=None):
    """Gamma(alpha, 1) by Marsaglia and Tsang's method, run on the device (alpha a Python number)."""
    a = float(alpha)
    boost = a < 1.0
    d = (a + 1.0 if boost else a) - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    with _stream(seed):
        out = None
        for _ in range(8):  # each round accepts > 95% of what is left
            z = _random.randn(*_shape(shape), dtype=_float_dtype(dtype))
            u = _random.uniform_(clnet.empty(_shape(shape), dtype=z.dtype), 1e-20, 1.0)
            v = clnet.pow(1.0 + c * z, 3.0)
            ok = clnet.logical_and(v > 0, clnet.log(u) < 0.5 * z * z + d - d * v + d * clnet.log(clnet.clamp(v, 1e-20)))
            value = d * v
            out = clnet.where(ok, value, clnet.full(_shape(shape), math.nan, dtype=z.dtype)) if out is None else \
                clnet.where(clnet.isnan(out), clnet.where(ok, value, out), out)
        out = clnet.where(clnet.isnan(out), d, out)
        if boost:
            u = _random.uniform_(clnet.empty(_shape(shape), dtype=out.dtype), 1e-20, 1.0)
            out = out * clnet.pow(u, 1.0 / a)
    return out


def beta(shape, alpha, beta, dtype=None, seed=None):  # noqa: F811  (Keras's argument name)
    gen = SeedGenerator(seed) if isinstance(seed, (int, np.integer)) else seed
    x = gamma(shape, alpha, dtype, gen)
    y = gamma(shape, beta, dtype, gen)
    return x / (x + y)

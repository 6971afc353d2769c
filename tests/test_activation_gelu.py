"""F.gelu's float32 path (erfc through a fitted polynomial and one exp, clnet/nn/functions/activation.py)
against the exact GELU and its derivative in float64; float64 keeps the erf formula."""
from __future__ import annotations

import math

import numpy as np

import clnet
import clnet.nn.functional as F
from conftest import assert_close, small

_ERFC = np.vectorize(math.erfc)


def _exact(x):
    x = x.astype(np.float64)
    phi = 0.5 * _ERFC(-x / math.sqrt(2))
    return x * phi, phi + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def test_gelu_float32_matches_exact(device, rng):
    n = small(device, 200001, 2001)
    x = np.concatenate([np.linspace(-16, 16, n), rng.standard_normal(n) * 3]).astype(np.float32)
    g = rng.uniform(0.5, 2.0, x.shape).astype(np.float32)
    t = clnet.tensor(x, device=device, requires_grad=True)
    y = F.gelu(t)
    (y * clnet.tensor(g, device=device)).sum().backward()
    want, dwant = _exact(x)
    got = y.numpy().astype(np.float64)
    assert np.abs(got - want).max() <= 1e-6
    big = np.abs(want) > 1e-6
    assert (np.abs(got - want)[big] / np.abs(want[big])).max() <= 5e-6
    assert_close(t.grad, dwant * g, rtol=1e-5, atol=2e-6, what="gelu gradient")


def test_gelu_float64_keeps_erf(device, rng):
    if not device.fp64:
        return
    x = rng.standard_normal(1000) * 4
    t = clnet.tensor(x, dtype=clnet.float64, device=device, requires_grad=True)
    y = F.gelu(t)
    y.sum().backward()
    want, dwant = _exact(x)
    assert_close(y, want, rtol=1e-12, atol=1e-14)
    assert_close(t.grad, dwant, rtol=1e-12, atol=1e-14)

"""Random tensors. (Placeholder using numpy's generator on the host; replaced by device Philox.)"""
from __future__ import annotations

import numpy as np

from .. import dtypes as _dt
from ..tensor import _normalise_shape

_rng = np.random.default_rng()


def manual_seed(seed: int):
    global _rng
    _rng = np.random.default_rng(seed)


def rand(*shape, dtype=None, device=None, requires_grad=False):
    from .creation import tensor
    dt = _dt.as_dtype(dtype) if dtype is not None else _dt.float32
    return tensor(_rng.random(_normalise_shape(shape)).astype(dt), device=device, requires_grad=requires_grad)


def randn(*shape, dtype=None, device=None, requires_grad=False):
    from .creation import tensor
    dt = _dt.as_dtype(dtype) if dtype is not None else _dt.float32
    return tensor(_rng.standard_normal(_normalise_shape(shape)).astype(dt), device=device,
                  requires_grad=requires_grad)

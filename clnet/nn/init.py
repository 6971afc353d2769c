"""Weight initialisation in place, with PyTorch's names, formulas and defaults.

    clnet.nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5))
    clnet.nn.init.zeros_(layer.bias)

Random values come from clnet.ops.random (seeded by clnet.manual_seed); every function runs under
no_grad, returns the tensor it filled, and never changes its identity, so optimizers keep working.
"""
from __future__ import annotations

import math

import numpy as np

from .. import dtypes as _dt
from ..autograd import no_grad
from ..ops import elementwise as _ew
from ..ops import random as _random
from ..ops.creation import tensor as _tensor
from ..tensor import Tensor


def _check(tensor, name):
    if not isinstance(tensor, Tensor):
        raise TypeError(f"init.{name} expects a clnet Tensor, got {type(tensor).__name__}")
    if not _dt.is_floating(tensor.dtype):
        raise TypeError(f"init.{name} fills floating-point tensors, got {tensor.dtype.name}")


def calculate_gain(nonlinearity: str, param=None) -> float:
    """The recommended gain for a nonlinearity (PyTorch's table)."""
    linear = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
              "conv_transpose3d", "sigmoid")
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = param
        else:
            raise ValueError(f"negative_slope {param!r} is not a valid number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


def _calculate_fan_in_and_fan_out(tensor) -> tuple:
    """fan_in = size(1) * receptive field, fan_out = size(0) * receptive field (weights are (out, in, ...))."""
    if tensor.ndim < 2:
        raise ValueError(f"fan in and fan out can not be computed for a tensor with fewer than 2 dimensions "
                         f"(shape {tuple(tensor.shape)})")
    receptive = math.prod(tensor.shape[2:])
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def _calculate_correct_fan(tensor, mode: str) -> int:
    mode = mode.lower()
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode {mode!r} not supported, please use one of fan_in, fan_out")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def _no_generator(generator, name):
    if generator is not None:
        raise NotImplementedError(f"init.{name}: generator= is not supported; seed with clnet.manual_seed")


def uniform_(tensor, a: float = 0.0, b: float = 1.0, generator=None):
    """Fill with U(a, b) (device Philox)."""
    _check(tensor, "uniform_")
    _no_generator(generator, "uniform_")
    with no_grad():
        _random.uniform_(tensor, a, b)
    return tensor


def normal_(tensor, mean: float = 0.0, std: float = 1.0, generator=None):
    """Fill with N(mean, std**2) (device Philox)."""
    _check(tensor, "normal_")
    _no_generator(generator, "normal_")
    with no_grad():
        _random.normal_(tensor, mean, std)
    return tensor


def constant_(tensor, val: float):
    _check(tensor, "constant_")
    with no_grad():
        tensor.fill_(val)
    return tensor


def zeros_(tensor):
    return constant_(tensor, 0.0)


def ones_(tensor):
    return constant_(tensor, 1.0)


def eye_(tensor):
    """The identity matrix in a 2-D tensor."""
    _check(tensor, "eye_")
    if tensor.ndim != 2:
        raise ValueError(f"eye_ needs a 2-D tensor, got shape {tuple(tensor.shape)}")
    from ..ops.creation import eye
    with no_grad():
        tensor.copy_(eye(tensor.shape[0], tensor.shape[1], dtype=tensor.dtype, device=tensor.device))
    return tensor


def xavier_uniform_(tensor, gain: float = 1.0, generator=None):
    """U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio, 2010)."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    bound = gain * math.sqrt(6.0 / float(fan_in + fan_out))
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(tensor, gain: float = 1.0, generator=None):
    """N(0, std**2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / float(fan_in + fan_out)), generator)


def kaiming_uniform_(tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", generator=None):
    """U(-bound, bound) with bound = gain * sqrt(3 / fan) (He et al., 2015); Linear and Conv2d use a=sqrt(5)."""
    _check(tensor, "kaiming_uniform_")
    if 0 in tensor.shape:
        return tensor
    fan = _calculate_correct_fan(tensor, mode)
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / fan)
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", generator=None):
    """N(0, std**2) with std = gain / sqrt(fan)."""
    _check(tensor, "kaiming_normal_")
    if 0 in tensor.shape:
        return tensor
    fan = _calculate_correct_fan(tensor, mode)
    return normal_(tensor, 0.0, calculate_gain(nonlinearity, a) / math.sqrt(fan), generator)


def trunc_normal_(tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0, generator=None):
    """N(mean, std**2) truncated to [a, b]: values outside are drawn again (on the device) until none is left,
    which is exactly the truncated distribution."""
    _check(tensor, "trunc_normal_")
    _no_generator(generator, "trunc_normal_")
    if not a < b:
        raise ValueError(f"trunc_normal_: a ({a}) must be less than b ({b})")
    with no_grad():
        _random.normal_(tensor, mean, std)
        for _ in range(1000):
            outside = _ew.logical_or(_ew.lt(tensor, a), _ew.gt(tensor, b))
            if not bool(outside.any().item()):
                return tensor
            fresh = _random.randn(*tensor.shape, dtype=tensor.dtype, device=tensor.device) * std + mean
            tensor.copy_(_ew.where(outside, fresh, tensor))
    raise RuntimeError(f"trunc_normal_: [a, b] = [{a}, {b}] holds almost none of N({mean}, {std}**2)")


def _host_normal(shape, dtype, device):
    """Standard normal values drawn on the device (seeded as everything else) and read back."""
    return _random.randn(*shape, dtype=dtype, device=device).numpy().astype(np.float64)


def orthogonal_(tensor, gain: float = 1.0, generator=None):
    """A (semi-)orthogonal matrix (Saxe et al., 2013) from the QR decomposition of a normal matrix, signs
    fixed by R's diagonal, scaled by gain; dims past the first are flattened. The decomposition runs on
    the host (once, at initialisation)."""
    _check(tensor, "orthogonal_")
    _no_generator(generator, "orthogonal_")
    if tensor.ndim < 2:
        raise ValueError("Only tensors with 2 or more dimensions are supported")
    if tensor.numel() == 0:
        return tensor
    rows = tensor.shape[0]
    cols = tensor.numel() // rows
    flat = _host_normal((rows, cols), tensor.dtype, tensor.device)
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    q = q * np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    with no_grad():
        tensor.copy_(_tensor((gain * q).reshape(tensor.shape).astype(tensor.dtype), device=tensor.device))
    return tensor


def sparse_(tensor, sparsity: float, std: float = 0.01, generator=None):
    """A 2-D matrix of N(0, std**2) values with ceil(sparsity * rows) zeros in every column (Martens, 2010)."""
    _check(tensor, "sparse_")
    _no_generator(generator, "sparse_")
    if tensor.ndim != 2:
        raise ValueError("Only tensors with 2 dimensions are supported")
    rows, cols = tensor.shape
    zeros = int(math.ceil(sparsity * rows))
    with no_grad():
        _random.normal_(tensor, 0.0, std)
        if zeros:
            order = np.argsort(_random.rand(rows, cols, device=tensor.device).numpy(), axis=0)[:zeros]
            keep = np.ones((rows, cols), bool)
            keep[order, np.arange(cols)[None, :]] = False
            tensor.copy_(_ew.where(_tensor(keep, device=tensor.device), tensor, 0.0))
    return tensor


def dirac_(tensor, groups: int = 1):
    """The identity convolution kernel: a 1 at the centre of each (out, in) slice with out == in (per group),
    for 3-, 4- and 5-D weights."""
    _check(tensor, "dirac_")
    if tensor.ndim not in (3, 4, 5):
        raise ValueError("Only tensors with 3, 4, or 5 dimensions are supported")
    out_per_group = tensor.shape[0] // groups
    if tensor.shape[0] % groups:
        raise ValueError("dim 0 must be divisible by groups")
    w = np.zeros(tensor.shape, np.dtype(tensor.dtype))
    centre = tuple(s // 2 for s in tensor.shape[2:])
    for g in range(groups):
        for d in range(min(out_per_group, tensor.shape[1])):
            w[(g * out_per_group + d, d) + centre] = 1
    with no_grad():
        tensor.copy_(_tensor(w, device=tensor.device))
    return tensor


# PyTorch's deprecated spellings without the trailing underscore
uniform, normal, constant = uniform_, normal_, constant_
xavier_uniform, xavier_normal, kaiming_uniform, kaiming_normal = (xavier_uniform_, xavier_normal_,
                                                                  kaiming_uniform_, kaiming_normal_)

"""Normalisation functions: layer, group and instance norm (the fused kernels of clnet.ops.norm),
F.normalize, cosine similarity and pairwise distance (compositions of recorded ops)."""
from __future__ import annotations

from ... import dtypes as _dt
from ...autograd import no_grad
from ...core.dispatch import op
from ...ops import elementwise as _ew
from ...ops import movement as _mv
from ...ops import reduce as _red
from ...ops.norm import channel_affine, group_norm, layer_norm
from ...tensor import Tensor


@op("running_average_")
def running_average_(running, value, momentum: float, scale: float = 1.0) -> None:
    """running = (1 - momentum) * running + momentum * scale * value, in place (BatchNorm's and InstanceNorm's
    running statistics; `value` is reshaped to running's shape). One kernel, an op row of its own so traced
    graphs replay it."""
    m = float(momentum)
    value = _mv.reshape(value.detach(), running.shape)
    _ew.launch("v0 * v2 + v1 * v3", [running, value, 1 - m, m * scale], running.dtype, running.dtype, out=running)
    running._bump_version()


@op("instance_norm")
def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                  momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalise every (sample, channel) of (N, C, *) input over its positions (use_input_stats), updating
    running statistics when given (the batch mean of the per-instance means and unbiased variances); else
    normalise by the running statistics. Then weight[c] * x + bias[c]."""
    if not isinstance(input, Tensor) or not _dt.is_floating(input.dtype):
        raise TypeError("instance_norm: input must be a floating-point clnet Tensor")
    if input.ndim < 3:
        raise ValueError(f"instance_norm: expected (N, C, L...) input, got {tuple(input.shape)}")
    N, C = input.shape[:2]
    if not use_input_stats:
        if running_mean is None or running_var is None:
            raise ValueError("instance_norm: running_mean and running_var are needed when use_input_stats=False")
        from ..functional import batch_norm
        return batch_norm(input, running_mean, running_var, weight, bias, False, momentum, eps)
    if running_mean is not None or running_var is not None:
        with no_grad():
            axes = tuple(range(2, input.ndim))
            count = input.numel() // max(N * C, 1)
            x = input.detach()
            m = _red.mean(x, axes)                           # (N, C)
            v = _red.var(x, axes, unbiased=count > 1)        # (N, C), unbiased as PyTorch's running_var
            for run, stat in ((running_mean, m), (running_var, v)):
                if run is not None:
                    running_average_(run, _red.mean(stat, 0), momentum)
    y = group_norm(input, C, None, None, eps)
    return channel_affine(y, weight, bias)


@op("normalize")
def normalize(input, p: float = 2.0, dim: int = 1, eps: float = 1e-12, out=None) -> Tensor:
    """input / max(||input||_p along dim, eps)."""
    if out is not None:
        raise NotImplementedError("normalize: out= is not supported")
    if not isinstance(input, Tensor) or not _dt.is_floating(input.dtype):
        raise TypeError("normalize: input must be a floating-point clnet Tensor")
    norm = _norm(input, p, dim, keepdim=True)
    return input / _ew.clamp(norm, min=eps)


def _norm(x, p, dim, keepdim=False):
    if p == 2:
        return _ew.sqrt(_red.sum(x * x, dim, keepdim=keepdim))
    if p == 1:
        return _red.sum(_ew.abs(x), dim, keepdim=keepdim)
    if p == float("inf"):
        return _red.amax(_ew.abs(x), dim, keepdim=keepdim)
    return _red.sum(_ew.abs(x) ** p, dim, keepdim=keepdim) ** (1.0 / p)


def cosine_similarity(x1, x2, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """sum(x1 * x2) / (max(||x1||, eps) * max(||x2||, eps)) along dim (inputs broadcast)."""
    n1 = _ew.clamp(_norm(x1, 2, dim), min=eps)
    n2 = _ew.clamp(_norm(x2, 2, dim), min=eps)
    return _red.sum(x1 * x2, dim) / (n1 * n2)


def pairwise_distance(x1, x2, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False) -> Tensor:
    """||x1 - x2 + eps||_p along the last dimension."""
    return _norm(x1 - x2 + eps, p, -1, keepdim)


@op("local_response_norm")
def local_response_norm(input, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> Tensor:
    """x / (k + alpha / size * sum of x^2 over `size` neighbouring channels) ^ beta (AlexNet's LRN)."""
    if input.ndim < 3:
        raise ValueError(f"local_response_norm: expected 3-D or more input, got {tuple(input.shape)}")
    sq = input * input
    C = input.shape[1]
    lo, hi = size // 2, (size - 1) // 2
    padded = _mv.pad(sq, (0, 0) * (input.ndim - 2) + (lo, hi))
    acc = None
    for i in range(size):
        part = _mv.narrow(padded, 1, i, C)
        acc = part if acc is None else acc + part
    return input / (acc * (alpha / size) + k) ** beta


__all__ = ["layer_norm", "group_norm", "instance_norm", "running_average_", "normalize", "cosine_similarity", "pairwise_distance",
           "local_response_norm"]

"""Losses beyond clnet.ops.nn's fused ones: smooth L1, Huber, KL divergence (one elementwise kernel each
way, like the other pointwise losses), and compositions for the margin and probabilistic losses."""
from __future__ import annotations

import math
import warnings

from ... import dtypes as _dt
from ...ops import elementwise as _ew
from ...ops import reduce as _red
from ...ops.elementwise import pointwise as _pointwise
from ...ops.nn import _check_target_shape, _loss_operand, check_reduction, reduce_loss
from ...tensor import Tensor


def _check(x, fn):
    if not isinstance(x, Tensor):
        raise TypeError(f"{fn}: input must be a clnet Tensor, got {type(x).__name__}")
    if not _dt.is_floating(x.dtype):
        raise TypeError(f"{fn}: input must be a floating-point tensor, got {x.dtype.name}")


def _pair_loss(fn, input, target, reduction):
    _check(input, fn)
    check_reduction(reduction, fn)
    target = _loss_operand(target, input, fn, "target")
    _check_target_shape(input, target, fn)
    return target


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction: str = "mean", beta: float = 1.0):
    """0.5 d^2 / beta where |d| < beta, |d| - 0.5 beta elsewhere (d = input - target); beta = 0 is L1."""
    reduction = _legacy(size_average, reduce, reduction)
    target = _pair_loss("smooth_l1_loss", input, target, reduction)
    if beta < 0:
        raise ValueError(f"smooth_l1_loss: beta must be non-negative, got {beta}")
    if beta == 0:
        from ...ops.nn import l1_loss
        return l1_loss(input, target, reduction)
    d = "(v0 - v1)"
    # v0 = input, v1 = target, v2 = beta, v3 = incoming gradient
    grad = f"(fabs({d}) < v2 ? {d} / v2 : (({d} > 0) - ({d} < 0)))"
    loss = _pointwise("smooth_l1_loss", f"(fabs({d}) < v2 ? 0.5f * {d} * {d} / v2 : fabs({d}) - 0.5f * v2)",
                      [input, target, float(beta)], {0: f"v3 * {grad}", 1: f"-v3 * {grad}"}, input.dtype)
    return reduce_loss(loss, reduction)


def huber_loss(input, target, reduction: str = "mean", delta: float = 1.0, weight=None):
    """0.5 d^2 where |d| <= delta, delta (|d| - 0.5 delta) elsewhere."""
    target = _pair_loss("huber_loss", input, target, reduction)
    if delta <= 0:
        raise ValueError(f"huber_loss: delta must be positive, got {delta}")
    d = "(v0 - v1)"
    grad = f"(fabs({d}) <= v2 ? {d} : v2 * (({d} > 0) - ({d} < 0)))"
    loss = _pointwise("huber_loss", f"(fabs({d}) <= v2 ? 0.5f * {d} * {d} : v2 * (fabs({d}) - 0.5f * v2))",
                      [input, target, float(delta)], {0: f"v3 * {grad}", 1: f"-v3 * {grad}"}, input.dtype)
    if weight is not None:
        loss = loss * weight
    return reduce_loss(loss, reduction)


def kl_div(input, target, size_average=None, reduce=None, reduction: str = "mean", log_target: bool = False):
    """Pointwise KL divergence with input = log q: target (log target - input), 0 where target is 0
    (log_target=True: exp(target) (target - input)). reduction 'batchmean' divides the sum by input.shape[0],
    the mathematically correct KL; 'mean' divides by every element, as PyTorch (with its warning)."""
    reduction = _legacy(size_average, reduce, reduction)
    _check(input, "kl_div")
    if reduction not in ("mean", "sum", "none", "batchmean"):
        raise ValueError(f"kl_div: reduction must be one of mean, sum, none, batchmean, got {reduction!r}")
    target = _loss_operand(target, input, "kl_div", "target")
    if log_target:
        # v0 = input, v1 = target (log), v2 = incoming gradient
        loss = _pointwise("kl_div", "exp(v1) * (v1 - v0)", [input, target],
                          {0: "-v2 * exp(v1)", 1: "v2 * exp(v1) * (v1 - v0 + 1)"}, input.dtype)
    else:
        loss = _pointwise("kl_div", "(v1 > 0 ? v1 * (log(v1) - v0) : 0)", [input, target],
                          {0: "-v2 * v1", 1: "(v1 > 0 ? v2 * (log(v1) - v0 + 1) : 0)"}, input.dtype)
    if reduction == "batchmean":
        return _red.sum(loss) / (input.shape[0] if input.ndim else 1)
    if reduction == "mean":
        warnings.warn("reduction: 'mean' divides the total loss by both the batch size and the support size. "
                      "'batchmean' divides only by the batch size, and aligns with the KL div math definition. "
                      "'mean' will be changed to behave the same as 'batchmean' in the next major release.",
                      UserWarning, stacklevel=2)
    return reduce_loss(loss, reduction)


def soft_margin_loss(input, target, reduction: str = "mean"):
    """log(1 + exp(-y x)) for labels y in {-1, 1}."""
    target = _pair_loss("soft_margin_loss", input, target, reduction)
    # v0 = x, v1 = y, v2 = incoming gradient; log1p(exp(z)) computed stably
    z = "(-v1 * v0)"
    return reduce_loss(_pointwise("soft_margin_loss", f"(fmax({z}, 0) + log1p(exp(-fabs({z}))))", [input, target],
                                  {0: f"-v2 * v1 / (1 + exp(-{z}))", 1: f"-v2 * v0 / (1 + exp(-{z}))"}, input.dtype),
                       reduction)


def margin_ranking_loss(input1, input2, target, margin: float = 0.0, reduction: str = "mean"):
    """max(0, -y (x1 - x2) + margin)."""
    _check(input1, "margin_ranking_loss")
    check_reduction(reduction, "margin_ranking_loss")
    return reduce_loss(_ew.relu(-target * (input1 - input2) + margin), reduction)


def hinge_embedding_loss(input, target, margin: float = 1.0, reduction: str = "mean"):
    """x where y = 1, max(0, margin - x) where y = -1."""
    _check(input, "hinge_embedding_loss")
    check_reduction(reduction, "hinge_embedding_loss")
    pos = _ew.where(target == 1, input, 0.0)
    neg = _ew.where(target == -1, _ew.relu(margin - input), 0.0)
    return reduce_loss(pos + neg, reduction)


def cosine_embedding_loss(input1, input2, target, margin: float = 0.0, reduction: str = "mean"):
    """1 - cos(x1, x2) where y = 1, max(0, cos(x1, x2) - margin) where y = -1 (cosine along dim 1)."""
    from .normalization import cosine_similarity
    _check(input1, "cosine_embedding_loss")
    check_reduction(reduction, "cosine_embedding_loss")
    cos = cosine_similarity(input1, input2, dim=-1, eps=1e-12)
    loss = _ew.where(target == 1, 1 - cos, 0.0) + _ew.where(target == -1, _ew.relu(cos - margin), 0.0)
    return reduce_loss(loss, reduction)


def triplet_margin_loss(anchor, positive, negative, margin: float = 1.0, p: float = 2.0, eps: float = 1e-6,
                        swap: bool = False, reduction: str = "mean"):
    """max(d(a, p) - d(a, n) + margin, 0) with d the pairwise p-norm distance."""
    from .normalization import pairwise_distance
    _check(anchor, "triplet_margin_loss")
    check_reduction(reduction, "triplet_margin_loss")
    d_pos = pairwise_distance(anchor, positive, p, eps)
    d_neg = pairwise_distance(anchor, negative, p, eps)
    if swap:
        d_neg = _ew.minimum(d_neg, pairwise_distance(positive, negative, p, eps))
    return reduce_loss(_ew.relu(d_pos - d_neg + margin), reduction)


def poisson_nll_loss(input, target, log_input: bool = True, full: bool = False, size_average=None, eps=1e-8,
                     reduce=None, reduction: str = "mean"):
    """exp(x) - y x (log_input) or x - y log(x + eps); full adds Stirling's term for y > 1."""
    reduction = _legacy(size_average, reduce, reduction)
    _check(input, "poisson_nll_loss")
    check_reduction(reduction, "poisson_nll_loss")
    loss = _ew.exp(input) - target * input if log_input else input - target * _ew.log(input + eps)
    if full:
        y = target
        stirling = y * _ew.log(_ew.clamp(y, min=1.0)) - y + 0.5 * _ew.log(2 * math.pi * _ew.clamp(y, min=1.0))
        loss = loss + _ew.where(y > 1, stirling, 0.0)
    return reduce_loss(loss, reduction)


def gaussian_nll_loss(input, target, var, full: bool = False, eps: float = 1e-6, reduction: str = "mean"):
    """0.5 (log(max(var, eps)) + (input - target)^2 / max(var, eps)) (+ 0.5 log(2 pi) when full)."""
    _check(input, "gaussian_nll_loss")
    check_reduction(reduction, "gaussian_nll_loss")
    if isinstance(var, Tensor) and var.ndim == input.ndim - 1 and tuple(var.shape) == tuple(input.shape[:-1]):
        var = var.unsqueeze(-1)
    v = _ew.clamp(var, min=eps)
    loss = 0.5 * (_ew.log(v) + (input - target) ** 2 / v)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return reduce_loss(loss, reduction)


def multilabel_soft_margin_loss(input, target, weight=None, reduction: str = "mean"):
    """-mean over classes of y log sigmoid(x) + (1 - y) log sigmoid(-x), per sample."""
    from .activation import logsigmoid
    _check(input, "multilabel_soft_margin_loss")
    check_reduction(reduction, "multilabel_soft_margin_loss")
    loss = -(target * logsigmoid(input) + (1 - target) * logsigmoid(-input))
    if weight is not None:
        loss = loss * weight
    return reduce_loss(_red.mean(loss, -1), reduction)


def _legacy(size_average, reduce, reduction):
    """PyTorch's deprecated size_average / reduce arguments mapped to `reduction`."""
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    return "none" if not reduce else ("mean" if size_average else "sum")


__all__ = ["smooth_l1_loss", "huber_loss", "kl_div", "soft_margin_loss", "margin_ranking_loss",
           "hinge_embedding_loss", "cosine_embedding_loss", "triplet_margin_loss", "poisson_nll_loss",
           "gaussian_nll_loss", "multilabel_soft_margin_loss"]

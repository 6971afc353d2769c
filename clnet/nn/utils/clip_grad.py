"""Gradient clipping, PyTorch's semantics: the total norm stays on the device (no host round trip unless
error_if_nonfinite asks to check it), and the scale is applied to every gradient in place."""
from __future__ import annotations

import math
import warnings

from ...autograd import no_grad
from ...ops import elementwise as _ew
from ...ops import movement as _mv
from ...ops import reduce as _red
from ...tensor import Tensor


def _tensors(tensors):
    if isinstance(tensors, Tensor):
        return [tensors]
    return list(tensors)


def _norm(t, norm_type):
    t = t.detach()
    if norm_type == math.inf:
        return _red.amax(_ew.abs(t))
    if norm_type == -math.inf:
        return _red.amin(_ew.abs(t))
    if norm_type == 2:
        return _ew.sqrt(_red.sum(t * t))
    if norm_type == 1:
        return _red.sum(_ew.abs(t))
    if norm_type == 0:
        return _red.sum((t != 0).to(dtype=t.dtype))
    return _red.sum(_ew.abs(t) ** norm_type) ** (1.0 / norm_type)


def get_total_norm(tensors, norm_type: float = 2.0, error_if_nonfinite: bool = False, foreach=None) -> Tensor:
    """The norm of the norms of `tensors` (as if they were one vector)."""
    tensors = [t for t in _tensors(tensors) if t is not None]
    norm_type = float(norm_type)
    if not tensors:
        from ...ops.creation import tensor
        return tensor(0.0)
    with no_grad():
        norms = _mv.stack([_norm(t, norm_type).to(dtype=tensors[0].dtype) for t in tensors])
        total = _norm(norms, norm_type)
    if error_if_nonfinite and not math.isfinite(float(total.item())):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, so "
                           "it cannot be clipped. To disable this error and scale the gradients by the non-finite "
                           "norm anyway, set `error_if_nonfinite=False`")
    return total


def clip_grads_with_norm_(parameters, max_norm: float, total_norm: Tensor, foreach=None) -> None:
    """Scale every .grad by min(1, max_norm / (total_norm + 1e-6)) in place."""
    grads = [p.grad for p in _tensors(parameters) if p.grad is not None]
    if not grads:
        return
    with no_grad():
        coef = _ew.clamp(float(max_norm) / (total_norm + 1e-6), max=1.0)
        for g in grads:
            g.mul_(coef.to(dtype=g.dtype, device=g.device))


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False,
                    foreach=None) -> Tensor:
    """Rescale the gradients of `parameters` so that their total norm is at most max_norm; returns the total
    norm before clipping (a 0-d tensor)."""
    params = _tensors(parameters)
    grads = [p.grad for p in params if p.grad is not None]
    total = get_total_norm(grads, norm_type, error_if_nonfinite, foreach)
    clip_grads_with_norm_(params, max_norm, total, foreach)
    return total


def clip_grad_norm(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """Deprecated spelling of clip_grad_norm_ (as in PyTorch)."""
    warnings.warn("torch.nn.utils.clip_grad_norm is now deprecated in favor of torch.nn.utils.clip_grad_norm_.",
                  FutureWarning, stacklevel=2)
    return clip_grad_norm_(parameters, max_norm, norm_type, error_if_nonfinite, foreach)


def clip_grad_value_(parameters, clip_value: float, foreach=None) -> None:
    """Clamp every gradient to [-clip_value, clip_value] in place."""
    v = float(clip_value)
    with no_grad():
        for p in _tensors(parameters):
            if p.grad is not None:
                p.grad.clamp_(-v, v)

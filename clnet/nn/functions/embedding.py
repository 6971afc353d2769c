"""F.embedding, F.one_hot's partner: rows of a weight table picked by integer indices (an indexed
gather whose gradient is a scatter-add into the table), and the channel dropouts."""
from __future__ import annotations

import numbers

import numpy as np

from ...autograd import no_grad
from ...core.dispatch import op
from ...ops import broadcast as _bc
from ...ops import indexing as _ix
from ...ops import movement as _mv
from ...ops.elementwise import pointwise as _pointwise
from ...tensor import Tensor


@op("embedding")
def embedding(input, weight, padding_idx=None, max_norm=None, norm_type: float = 2.0,
              scale_grad_by_freq: bool = False, sparse: bool = False) -> Tensor:
    """weight[input]: (*) integer indices -> (*, embedding_dim). padding_idx's row gets no gradient;
    max_norm renormalises (in place) the rows looked up whose norm exceeds it, as PyTorch."""
    if not isinstance(input, Tensor):
        raise TypeError(f"embedding: input must be a clnet Tensor of indices, got {type(input).__name__}")
    if input.dtype.kind not in "iu":
        raise TypeError(f"embedding: indices must be an integer tensor (int64 or int32), got {input.dtype.name}")
    if not isinstance(weight, Tensor) or weight.ndim != 2:
        raise ValueError(f"embedding: weight must be a 2-D tensor (num_embeddings, embedding_dim), got "
                         f"{getattr(weight, 'shape', type(weight).__name__)}")
    if input.device is not weight.device:
        raise ValueError(f"embedding: indices are on {input.device}, the weight on {weight.device}; "
                         "move them with .to(device)")
    if sparse:
        raise NotImplementedError("embedding: sparse gradients are not supported (sparse=False)")
    if scale_grad_by_freq:
        raise NotImplementedError("embedding: scale_grad_by_freq=True is not supported")
    n = weight.shape[0]
    if padding_idx is not None:
        if not isinstance(padding_idx, numbers.Integral) or not -n <= padding_idx < n:
            raise ValueError(f"embedding: padding_idx must be within num_embeddings ({n}), got {padding_idx!r}")
        padding_idx = int(padding_idx) % n
    if max_norm is not None:
        _renorm_rows(weight, input, float(max_norm), float(norm_type))
    out = _ix.getitem(weight, (input,))
    if padding_idx is not None and out.requires_grad:
        # an identity whose gradient is zero where the index is padding_idx (v0 = x, v1 = keep, v2 = g)
        keep = _mv.unsqueeze(input != padding_idx, -1)
        out = _pointwise("embedding_padding", "v0", [out, keep], {0: "(v1 ? v2 : 0)"}, out.dtype)
    return out


def _renorm_rows(weight, input, max_norm, norm_type):
    """Scale the looked-up rows whose norm exceeds max_norm to norm max_norm (in place, no gradient)."""
    rows = np.unique(input.numpy().reshape(-1))
    if rows.size == 0:
        return
    with no_grad():
        idx = (rows % weight.shape[0]).astype(np.int64)
        w = _ix.getitem(weight, (idx,))
        if norm_type == 2:
            norms = (w * w).sum(-1, keepdim=True).sqrt()
        else:
            norms = (w.abs() ** norm_type).sum(-1, keepdim=True) ** (1.0 / norm_type)
        scale = _bc.expand(_pointwise("renorm", "(v0 > v1 ? v1 / (v0 + 1e-7f) : 1)", [norms, max_norm], {},
                                      w.dtype), w.shape)
        weight[idx] = w * scale


def _channel_dropout(fn, input, p, training, inplace, batched_rank):
    from ...ops.random import dropout_mask
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{fn}: dropout probability has to be between 0 and 1, but got {p}")
    if not isinstance(input, Tensor):
        raise TypeError(f"{fn}: input must be a clnet Tensor, got {type(input).__name__}")
    if input.ndim not in (batched_rank - 1, batched_rank):
        raise ValueError(f"{fn}: expected {batched_rank - 1}-D or {batched_rank}-D input, got {tuple(input.shape)}")
    if not training or p == 0.0:
        return input
    lead = 2 if input.ndim == batched_rank else 1
    mshape = tuple(input.shape[:lead]) + (1,) * (input.ndim - lead)
    mask = dropout_mask(mshape, float(p), device=input.device, dtype=input.dtype)
    y = input * mask
    if inplace:
        with no_grad():
            input.copy_(y)
        return input
    return y


def dropout1d(input, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero whole channels of (N, C, L) input with probability p (scaling the rest by 1 / (1 - p))."""
    return _channel_dropout("dropout1d", input, p, training, inplace, 3)


def dropout2d(input, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero whole channels of (N, C, H, W) input with probability p."""
    return _channel_dropout("dropout2d", input, p, training, inplace, 4)


def dropout3d(input, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    return _channel_dropout("dropout3d", input, p, training, inplace, 5)


__all__ = ["embedding", "dropout1d", "dropout2d", "dropout3d"]

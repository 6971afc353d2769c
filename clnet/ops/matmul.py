"""Matrix products: mm, bmm and matmul (numpy/PyTorch broadcasting rules), with gradients.

Operands are passed with their strides, so `x.T @ g` reads x transposed in the kernel: no copy.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes as _dt
from ..autograd import needs_grad, record
from ..backend.programs import ctype, get_kernel
from ..tensor import Tensor
from .movement import expand, reshape, transpose, unsqueeze, squeeze


def _check(a, b, name):
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise TypeError(f"{name} expects tensors, got {type(a).__name__} and {type(b).__name__}")
    if a.device is not b.device:
        raise ValueError(f"{name}: tensors are on different devices ({a.device} and {b.device})")
    if a.dtype != b.dtype:
        raise TypeError(f"{name}: dtypes differ ({a.dtype.name} and {b.dtype.name}); convert one with .to()")
    if not _dt.is_floating(a.dtype):
        raise TypeError(f"{name} needs floating-point tensors, got {a.dtype.name}")


def _launch_bmm(a: Tensor, b: Tensor) -> Tensor:
    """a: [B, M, K], b: [B, K, N] (any strides) -> new contiguous [B, M, N]."""
    B, M, K = a.shape
    N = b.shape[2]
    out = Tensor._empty((B, M, N), a.dtype, a.device)
    if out.numel() == 0:
        return out
    if K == 0:
        from .elementwise import copy_into
        return copy_into(out, 0)
    acc = _dt.float32 if a.dtype == _dt.float16 else a.dtype
    i32 = np.int32
    kern = get_kernel(a.device, "matmul.cl.mako", "matmul", arg_dtypes=[i32] * 3 + [None] + [i32] * 4
                      + [None] + [i32] * 4 + [None] + [i32] * 4, t=ctype(a.dtype), acc=ctype(acc))
    kern(a.device.queue, (N, M, B), None, M, N, K,
         a._buf, a.offset, a.strides[0], a.strides[1], a.strides[2],
         b._buf, b.offset, b.strides[0], b.strides[1], b.strides[2],
         out._buf, out.offset, out.strides[0], out.strides[1], out.strides[2])
    return out


def mm(a: Tensor, b: Tensor) -> Tensor:
    """[M, K] @ [K, N] -> [M, N]."""
    _check(a, b, "mm")
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"mm expects 2-D tensors, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"mm: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be multiplied "
                         f"({a.shape[1]} != {b.shape[0]})")
    y = reshape(_launch_bmm(unsqueeze(a.detach(), 0), unsqueeze(b.detach(), 0)), (a.shape[0], b.shape[1]))
    if needs_grad(a, b):
        record("mm", y, (a, b), lambda g: (mm(g, transpose(b, 0, 1)) if a.requires_grad else None,
                                           mm(transpose(a, 0, 1), g) if b.requires_grad else None),
               saved=(a, b))
    return y


def bmm(a: Tensor, b: Tensor) -> Tensor:
    """[B, M, K] @ [B, K, N] -> [B, M, N]."""
    _check(a, b, "bmm")
    if a.ndim != 3 or b.ndim != 3 or a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]:
        raise ValueError(f"bmm: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be multiplied")
    y = _launch_bmm(a.detach(), b.detach())
    if needs_grad(a, b):
        record("bmm", y, (a, b), lambda g: (bmm(g, transpose(b, 1, 2)) if a.requires_grad else None,
                                            bmm(transpose(a, 1, 2), g) if b.requires_grad else None),
               saved=(a, b))
    return y


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """numpy matmul semantics: 1-D operands are promoted and squeezed, batch dims broadcast."""
    if not isinstance(b, Tensor) and isinstance(a, Tensor):
        from .creation import tensor
        b = tensor(b, dtype=a.dtype, device=a.device)
    if not isinstance(a, Tensor) and isinstance(b, Tensor):
        from .creation import tensor
        a = tensor(a, dtype=b.dtype, device=b.device)
    _check(a, b, "matmul")
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("matmul does not accept 0-d tensors; use *")
    if a.ndim == 2 and b.ndim == 2:
        return mm(a, b)
    a2 = unsqueeze(a, 0) if a.ndim == 1 else a
    b2 = unsqueeze(b, 1) if b.ndim == 1 else b
    if a2.shape[-1] != b2.shape[-2]:
        raise ValueError(f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be multiplied "
                         f"({a2.shape[-1]} != {b2.shape[-2]})")
    from .elementwise import broadcast_shapes
    batch = broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    a3 = reshape(expand(a2, batch + a2.shape[-2:]), (-1,) + a2.shape[-2:])
    b3 = reshape(expand(b2, batch + b2.shape[-2:]), (-1,) + b2.shape[-2:])
    y = reshape(bmm(a3, b3), batch + (a2.shape[-2], b2.shape[-1]))
    if a.ndim == 1:
        y = squeeze(y, -2)
    if b.ndim == 1:
        y = squeeze(y, -1)
    return y

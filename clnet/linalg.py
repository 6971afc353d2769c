"""torch.linalg: the vector and matrix norms, the cross product, vecdot (clnet.ops.linalg has them)."""
from __future__ import annotations

from .ops.linalg import cross, linalg_norm as norm, matrix_norm, vector_norm  # noqa: F401
from .ops.elementwise import mul
from .ops.reduce import sum as _sum


def vecdot(x, y, *, dim=-1):
    """The dot product of x and y along dim (broadcast)."""
    return _sum(mul(x, y), dim)


__all__ = ["norm", "vector_norm", "matrix_norm", "cross", "vecdot"]

"""keras.ops.linalg: norm as clnet ops; the factorisations call clnet's linalg ops when clnet has them."""
from __future__ import annotations

import numpy as np

import clnet

from .numpy import _float, clnet_op
from .symbolic import keras_op, numpy_spec


def _norm_spec(x, ord=None, axis=None, keepdims=False):  # noqa: A002
    out = numpy_spec(lambda a: np.linalg.norm(a, axis=axis, keepdims=keepdims))(x)
    out.dtype = x.dtype if x.dtype.startswith("float") else out.dtype
    return out


@keras_op(spec=_norm_spec)
def norm(x, ord=None, axis=None, keepdims=False):  # noqa: A002
    """Vector norms (ord None/2, 1, inf, -inf, 0, p) and the Frobenius / 1 / inf matrix norms, as numpy."""
    t = _float(x)
    if axis is None:
        if ord in (None, "fro", "f") or (t.ndim == 1 and ord == 2):
            return clnet.sqrt(clnet.sum(clnet.square(t), None, keepdims))
        axis = tuple(range(t.ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    if len(axes) == 2:
        r, c = axes
        if ord in (None, "fro", "f"):
            return clnet.sqrt(clnet.sum(clnet.square(t), axes, keepdims))
        if ord == 1:
            return clnet.amax(clnet.sum(clnet.abs(t), r, True), c, True).reshape(_kept(t, axes, keepdims))
        if ord == float("inf"):
            return clnet.amax(clnet.sum(clnet.abs(t), c, True), r, True).reshape(_kept(t, axes, keepdims))
        raise NotImplementedError(f"norm: matrix ord={ord!r} needs singular values (clnet.linalg.svd)")
    a = axes[0]
    if ord in (None, 2):
        return clnet.sqrt(clnet.sum(clnet.square(t), a, keepdims))
    if ord == float("inf"):
        return clnet.amax(clnet.abs(t), a, keepdims)
    if ord == float("-inf"):
        return clnet.amin(clnet.abs(t), a, keepdims)
    if ord == 0:
        return clnet.sum((t != 0).to(dtype=t.dtype), a, keepdims)
    return clnet.pow(clnet.sum(clnet.pow(clnet.abs(t), float(ord)), a, keepdims), 1.0 / ord)


def _kept(t, axes, keepdims):
    axes = {a % t.ndim for a in axes}
    return tuple(1 if i in axes else n for i, n in enumerate(t.shape) if keepdims or i not in axes)


inv = clnet_op("inverse", "inv")
det = clnet_op("det")
solve = clnet_op("solve")
cholesky = clnet_op("cholesky")
qr = clnet_op("qr")
svd = clnet_op("svd")
eig = clnet_op("eig")
eigh = clnet_op("eigh")
lstsq = clnet_op("lstsq")
pinv = clnet_op("pinv")
slogdet = clnet_op("slogdet")
solve_triangular = clnet_op("solve_triangular")

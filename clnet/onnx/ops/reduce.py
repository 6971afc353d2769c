"""ONNX reductions (ReduceSum, ReduceMean, ... and ArgMax/ArgMin) onto clnet's reduce ops.

The axes are an attribute before the opset that made them an input (13 for ReduceSum, 18 for the others);
`axes_input` reads either. With no axes, every axis is reduced, unless noop_with_empty_axes says the
input passes through.
"""
from __future__ import annotations

import numpy as np

from ... import abs as _abs, amax as _amax, amin as _amin, argmax as _argmax, argmin as _argmin
from ... import logsumexp as _logsumexp, mean as _mean, prod as _prod, sqrt as _sqrt, sum as _sum
from ... import log as _log
from .common import all_host, axes_input, axis


def _reduction(np_fn, cl_fn):
    def run(ctx, node, x, axes=None):
        r = len(x.shape)
        dims = axes_input(ctx, node, (x, axes), 1)
        if not dims:
            if node.attrs.get("noop_with_empty_axes", 0):
                return x
            dims = list(range(r))
        dims = tuple(sorted({axis(a, r, node) for a in dims}))
        keep = bool(node.attrs.get("keepdims", 1))
        if all_host(x):
            return np.asarray(np_fn(x, dims, keep)).astype(x.dtype)
        return cl_fn(x, dims, keep)
    return run


def _arg(np_fn, cl_fn):
    def run(ctx, node, x):
        if node.attrs.get("select_last_index", 0):
            raise node.unsupported("select_last_index=1")
        a = axis(node.attrs.get("axis", 0), len(x.shape), node)
        keep = bool(node.attrs.get("keepdims", 1))
        if all_host(x):
            out = np_fn(x, axis=a)
            return np.expand_dims(out, a).astype(np.int64) if keep else out.astype(np.int64)
        out = cl_fn(x, a, keepdim=keep)
        return out if out.dtype == np.int64 else out.to(np.int64)
    return run


OPS = {
    "ReduceSum": _reduction(lambda v, d, k: v.sum(d, keepdims=k), lambda v, d, k: _sum(v, d, keepdim=k)),
    "ReduceMean": _reduction(lambda v, d, k: v.mean(d, keepdims=k), lambda v, d, k: _mean(v, d, keepdim=k)),
    "ReduceMax": _reduction(lambda v, d, k: v.max(d, keepdims=k), lambda v, d, k: _amax(v, d, keepdim=k)),
    "ReduceMin": _reduction(lambda v, d, k: v.min(d, keepdims=k), lambda v, d, k: _amin(v, d, keepdim=k)),
    "ReduceProd": _reduction(lambda v, d, k: v.prod(d, keepdims=k), lambda v, d, k: _prod(v, d, keepdim=k)),
    "ReduceL1": _reduction(lambda v, d, k: np.abs(v).sum(d, keepdims=k),
                           lambda v, d, k: _sum(_abs(v), d, keepdim=k)),
    "ReduceL2": _reduction(lambda v, d, k: np.sqrt((v * v).sum(d, keepdims=k)),
                           lambda v, d, k: _sqrt(_sum(v * v, d, keepdim=k))),
    "ReduceSumSquare": _reduction(lambda v, d, k: (v * v).sum(d, keepdims=k),
                                  lambda v, d, k: _sum(v * v, d, keepdim=k)),
    "ReduceLogSum": _reduction(lambda v, d, k: np.log(v.sum(d, keepdims=k)),
                               lambda v, d, k: _log(_sum(v, d, keepdim=k))),
    "ReduceLogSumExp": _reduction(lambda v, d, k: np.log(np.exp(v).sum(d, keepdims=k)),
                                  lambda v, d, k: _logsumexp(v, d, keepdim=k)),
    "ArgMax": _arg(np.argmax, _argmax),
    "ArgMin": _arg(np.argmin, _argmin),
}

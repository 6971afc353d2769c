"""Sorting along a dimension and what is built on it: sort, argsort, msort, topk, kthvalue, unique.

kernels/sort.cl.mako sorts each line stably (equal values keep their order; NaN sorts above every
number, as in PyTorch): by counting ranks for short lines, by a merge sort per line for long ones.
Values are differentiable: the gradient goes back to where each value came from (a scatter of the
incoming gradient by the sorted indices). unique's output size depends on the data, so it reads the
sorted values back to the host (PyTorch synchronises there too).
"""
from __future__ import annotations

import math
from collections import namedtuple

import numpy as np

from .. import dtypes as _dt
from ..backend.programs import ctype, get_kernel
from ..core import dispatch
from ..core.dispatch import op
from ..core.storage import TensorBase
from ..core.tape import needs_grad, record
from .creation import tensor as _tensor, to_numpy, zeros
from .indexing import scatter_add
from .movement import contiguous, narrow, squeeze
from .shapes import axis

_INT_MAX = 2**31 - 1
RANK_SORT_MAX = 256  # lines up to this long sort by counting ranks (O(L) per element, all in parallel)

SortResult = namedtuple("sort", ["values", "indices"])
TopkResult = namedtuple("topk", ["values", "indices"])
KthvalueResult = namedtuple("kthvalue", ["values", "indices"])


def _compare_type(dtype) -> str:
    if dtype == _dt.float64:
        return "double"
    if _dt.is_floating(dtype):
        return "float"
    return "long"


def _sort_lines(x: TensorBase, d: int, descending: bool):
    """(values, int64 indices) of contiguous x sorted along d (both contiguous, x's shape)."""
    x = contiguous(x)
    shape = x.shape or (1,)
    outer, L, inner = math.prod(shape[:d]), shape[d], math.prod(shape[d + 1:])
    values = TensorBase._empty(x.shape, x.dtype, x.device)
    indices = TensorBase._empty(x.shape, _dt.int64, x.device)
    n = outer * L * inner
    if n == 0:
        return values, indices
    idx = "int" if x._storage_size <= _INT_MAX else "long"
    it = np.dtype(np.int32 if idx == "int" else np.int64)
    params = dict(t=ctype(x.dtype), ct=_compare_type(x.dtype), floating=_dt.is_floating(x.dtype),
                  descending=bool(descending), idx=idx)
    wg = x.device.profile.elementwise_wg
    if L <= RANK_SORT_MAX:
        kern = get_kernel(x.device, "sort.cl.mako", "rank_sort", arg_dtypes=[it, it, it, None, it, None, None],
                          kind="rank_sort", **params)
        dispatch.launch(x.device, kern, (-(-n // wg) * wg,), (wg,),
                        [n, L, inner, x._buf, x.offset, values._buf, indices._buf])
    else:
        lines = outer * inner
        scratch = TensorBase._empty(x.shape, x.dtype, x.device)
        scratch_ix = TensorBase._empty(x.shape, _dt.int64, x.device)
        kern = get_kernel(x.device, "sort.cl.mako", "merge_sort",
                          arg_dtypes=[it, it, it, None, it, None, None, None, None], kind="merge_sort", **params)
        dispatch.launch(x.device, kern, (-(-lines // wg) * wg,), (wg,),
                        [lines, L, inner, x._buf, x.offset, values._buf, indices._buf, scratch._buf,
                         scratch_ix._buf])
    return values, indices


def _check(x, name):
    if not isinstance(x, TensorBase):
        raise TypeError(f"{name}: expected a Tensor, got {type(x).__name__}")


def _record_take(name, values, x, d, indices):
    """values = x taken at `indices` along d: the gradient scatters back to those places."""
    if needs_grad(x) and _dt.is_floating(x.dtype):
        record(name, values, (x,), lambda g: scatter_add(zeros(x.shape, dtype=g.dtype, device=g.device), d,
                                                         indices, g), saved=(indices,))


@op("sort")
def sort(input: TensorBase, dim=-1, descending=False, stable=False) -> SortResult:
    """(values, indices) of input sorted along dim; always stable (equal values keep their order)."""
    _check(input, "sort")
    d = axis(dim, input.ndim)
    values, indices = _sort_lines(input, d, descending)
    _record_take("sort", values, input, d, indices)
    return SortResult(values, indices)


@op("argsort")
def argsort(input: TensorBase, dim=-1, descending=False, stable=False) -> TensorBase:
    """The int64 indices that sort input along dim."""
    _check(input, "argsort")
    return _sort_lines(input, axis(dim, input.ndim), descending)[1]


@op("msort")
def msort(input: TensorBase) -> TensorBase:
    """input sorted along its first dimension."""
    return sort(input, 0).values


@op("topk")
def topk(input: TensorBase, k, dim=-1, largest=True, sorted=True) -> TopkResult:
    """The k largest (or smallest) elements along dim and their indices, largest first."""
    _check(input, "topk")
    d = axis(dim, input.ndim)
    size = input.shape[d] if input.ndim else 1
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= size:
        raise ValueError(f"topk: k ({k!r}) must be an int between 0 and the size of dimension {d} ({size})")
    values, indices = _sort_lines(input, d, descending=largest)
    values, indices = contiguous(narrow(values, d, 0, k)), contiguous(narrow(indices, d, 0, k))
    _record_take("topk", values, input, d, indices)
    return TopkResult(values, indices)


@op("kthvalue")
def kthvalue(input: TensorBase, k, dim=-1, keepdim=False) -> KthvalueResult:
    """The k-th smallest element along dim (k from 1) and its index."""
    _check(input, "kthvalue")
    d = axis(dim, input.ndim)
    size = input.shape[d] if input.ndim else 1
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= size:
        raise ValueError(f"kthvalue: k ({k!r}) must be an int between 1 and the size of dimension {d} ({size})")
    values, indices = _sort_lines(input, d, descending=False)
    values, indices = contiguous(narrow(values, d, k - 1, 1)), contiguous(narrow(indices, d, k - 1, 1))
    _record_take("kthvalue", values, input, d, indices)
    if not keepdim and input.ndim:
        values, indices = squeeze(values, d), squeeze(indices, d)
    return KthvalueResult(values, indices)


@op("unique")
def unique(input: TensorBase, sorted=True, return_inverse=False, return_counts=False, dim=None):
    """The distinct values of input, ascending (and, on request, where each element went and how many
    times each value occurs). With dim, the distinct slices along dim."""
    _check(input, "unique")
    host = to_numpy(input)
    if dim is None:
        vals, inverse, counts = np.unique(host.reshape(-1), return_inverse=True, return_counts=True)
        inverse = inverse.reshape(host.shape)
    else:
        d = axis(dim, input.ndim)
        vals, inverse, counts = np.unique(host, axis=d, return_inverse=True, return_counts=True)
        inverse = inverse.reshape(-1)
    out = [_tensor(vals.astype(host.dtype), device=input.device)]
    if return_inverse:
        out.append(_tensor(inverse.astype(np.int64), device=input.device))
    if return_counts:
        out.append(_tensor(counts.astype(np.int64), device=input.device))
    return out[0] if len(out) == 1 else tuple(out)

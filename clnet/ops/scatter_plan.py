"""Index tensors that stay on the device: a bounds check that a compiled graph repeats, and the plan of a
deterministic scatter built by device kernels (kernels/scatter_plan.cl.mako).

Why: x[idx] with an index *tensor* (an embedding lookup) used to read the index back to the host twice
over: (a) to check its bounds before any kernel runs, (b) to plan the gradient's scatter-add (OpenCL 1.2
has no float atomics, so the targets hit more than once are grouped and each work-item sums one group in
a fixed order). Both were graph breaks for clnet.compile, so a training step with an embedding ran eagerly.

(a) `read_checked` reads the index through dispatch.guard: eagerly a download and the check (a clear
    IndexError before any kernel runs, as before). Under clnet.compile, when the index is an argument or a
    captured tensor that the step has not written before (the token batch), the check becomes a Guard row
    of the graph: every replay reads the index again and runs the check before enqueueing any of its
    launches, so a bad token raises before the forward, the backward or the optimizer touch anything
    (weights unchanged). An index computed inside the step cannot be checked before the launches that make
    it, so it stays a download (a graph break), as before.
(b) `DevicePlan` sorts the keys (target * J + j) on the device: within a target the entries come in
    increasing j, the order the host plan sums them in, so results are the host path's bit for bit and the
    same from run to run. One work-item per (sorted position, rest position) that starts a target's run
    sums the run; the others return. The host values read for (a) decide nothing here, so a replay that
    skipped them is still right.
"""
from __future__ import annotations

import math

import numpy as np

from .. import dtypes as _dt
from ..backend.programs import ctype, get_kernel
from ..core import dispatch
from ..core.storage import TensorBase
from .creation import to_numpy

_BLOCK = 128          # keys per block of the rank sort (O(B) work per key, then O(J / B * log B) to merge)
_KEY_MAX = 2**62      # (A + 1) * J must stay below this for the keys to fit in a long


def read_checked(t: TensorBase, check) -> np.ndarray:
    """t's values on the host (a new array of t's shape and dtype) after check(values) passed; see (a)
    in the module docstring. Reads the span of t's storage its view covers, no kernel."""
    out_shape, item = tuple(t.shape), t.dtype.itemsize
    if t.numel() == 0:
        values = np.empty(out_shape, t.dtype)
        check(values)
        return values
    if any(s < 0 for s in t.strides):
        values = to_numpy(t)
        check(values)
        return values
    span = 1 + sum((n - 1) * s for n, s in zip(t.shape, t.strides))
    strides = tuple(s * item for s in t.strides)

    def view(raw):
        return np.lib.stride_tricks.as_strided(raw, out_shape, strides, writeable=False)

    raw = np.empty(span, t.dtype)
    dispatch.guard(t.device, raw, t._buf, lambda r: check(view(r)), byte_offset=t.offset * item)
    return np.array(view(raw))


def _kernel(device, kind, arg_dtypes, **params):
    defaults = dict(t="uint", acc="float", idx="int", rank=0, na=0, ix_ts=(), mode="add", j_fast=False)
    return get_kernel(device, "scatter_plan.cl.mako", kind, arg_dtypes=arg_dtypes,
                      **dict(defaults, kind=kind, **params))


def _run1(device, kern, n, args):
    wg = device.profile.elementwise_wg
    dispatch.launch(device, kern, (-(-n // wg) * wg,), (wg,), args)


def fits(sizes, J) -> bool:
    """Whether the keys (target * J + j, target up to prod(sizes)) fit in a long."""
    return (math.prod(sizes) + 1) * max(J, 1) < _KEY_MAX


class DevicePlan:
    """The sorted keys of J index entries over the indexed dims' `sizes` (see the module docstring).

    arrays: per indexed dim, (tensor, offset, stride) walking its J index values in order."""

    def __init__(self, arrays, sizes, J, device):
        self.J, self.sizes, self.A = J, tuple(sizes), math.prod(sizes)
        L = np.dtype(np.int64)
        keys = TensorBase._empty((J,), _dt.int64, device)
        if J:
            mult = [math.prod(sizes[i + 1:]) for i in range(len(sizes))]
            args, types, ix_ts = [J, self.A, keys._buf], [L, L, None], []
            for (ix, off, st), size, m in zip(arrays, sizes, mult):
                args += [ix._buf, off, st, size, m]
                types += [None, L, L, L, L]
                ix_ts.append(ctype(ix.dtype))
            _run1(device, _kernel(device, "plan_keys", types, ix_ts=tuple(ix_ts)), J, args)
            if J > 1:
                keys = self._sort(keys, device)
        self.keys = keys

    def _sort(self, keys, device):
        L = np.dtype(np.int64)
        B = min(_BLOCK, self.J)
        blocks = TensorBase._empty((self.J,), _dt.int64, device)
        _run1(device, _kernel(device, "plan_block_sort", [L, L, None, None]), self.J,
              [self.J, B, keys._buf, blocks._buf])
        if B == self.J:
            return blocks
        _run1(device, _kernel(device, "plan_merge", [L, L, None, None]), self.J, [self.J, B, blocks._buf, keys._buf])
        return keys

    def winners(self, device) -> TensorBase:
        """A bool tensor (J,): entry j is the last one aimed at its target (the value x[idx] = v keeps)."""
        won = TensorBase._empty((self.J,), _dt.bool_, device)
        if self.J:
            L = np.dtype(np.int64)
            _run1(device, _kernel(device, "plan_winner", [L, L, None, None]), self.J,
                  [self.J, self.A, self.keys._buf, won._buf])
        return won

    def scatter(self, dst: TensorBase, src: TensorBase, *, rest, ast, jst, j_fast, idx, run2, t, acc, mode):
        """Launch plan_scatter: rest = [(size, dst stride, src stride)] of the rest dims, ast = dst's
        stride at each indexed dim, jst = src's stride between entries; run2 launches the 2-D range."""
        R = math.prod(s for s, _, _ in rest)
        if R * self.J == 0:
            return dst
        idt = np.dtype(np.int32 if idx == "int" else np.int64)
        L = np.dtype(np.int64)
        args = [self.J, R, dst._buf, dst.offset, src._buf, src.offset, jst, self.keys._buf, self.A]
        types = [L, idt, None, idt, None, idt, idt, None, L]
        for size, dst_st, src_st in rest:
            args += [size, dst_st, src_st]
            types += [idt] * 3
        for size, st in zip(self.sizes, ast):
            args += [size, st]
            types += [L, idt]
        kern = _kernel(dst.device, "plan_scatter", types, t=t, acc=acc, idx=idx, rank=len(rest), na=len(ast),
                       mode=mode, j_fast=j_fast)
        run2(dst.device, kern, R, self.J, j_fast, args)
        return dst

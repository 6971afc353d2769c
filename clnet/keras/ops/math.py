"""keras.ops' math extras: top_k, in_top_k, segment reductions, erf and friends."""
from __future__ import annotations

import numpy as np

import clnet
from clnet import dtypes as _dt

from .nn import erf  # noqa: F401  (keras.ops.erf)
from .numpy import _float, clnet_op
from .symbolic import KerasTensor, as_tensor, keras_op


def _top_k_spec(x, k, sorted=True):  # noqa: A002
    shape = tuple(x.shape[:-1]) + (int(k),)
    return KerasTensor(shape, x.dtype), KerasTensor(shape, "int32")


@keras_op(spec=_top_k_spec)
def top_k(x, k, sorted=True):  # noqa: A002
    """(values, indices) of the k largest entries along the last axis, largest first."""
    t = as_tensor(x)
    fn = getattr(clnet, "topk", None)
    if fn is not None:
        values, indices = fn(t, int(k), -1, True, bool(sorted))
        return values, indices.to(dtype=_dt.int32)
    # k rounds of argmax while clnet has no sort: fine for the small k metrics and samplers use
    work = t if _dt.is_floating(t.dtype) else t.to(dtype=_dt.float32)
    values, indices = [], []
    for _ in range(int(k)):
        i = clnet.argmax(work, -1, keepdim=True)
        values.append(clnet.gather(t, -1, i))
        indices.append(i)
        work = clnet.scatter_add(work, -1, i, clnet.full(tuple(i.shape), -np.inf, dtype=work.dtype,
                                                         device=work.device))
    return clnet.concat(values, -1), clnet.concat(indices, -1).to(dtype=_dt.int32)


@keras_op(spec=lambda targets, predictions, k: KerasTensor(targets.shape, "bool"))
def in_top_k(targets, predictions, k):
    """Whether each target's score is among the k largest of its row (ties count in, as TensorFlow)."""
    p = _float(predictions)
    labels = as_tensor(targets).to(dtype=_dt.int64).reshape(-1, 1)
    target_score = clnet.gather(p, -1, labels)
    better = clnet.sum((p > target_score).to(dtype=_dt.int32), -1)
    return better < int(k)


def _segment(name, reduce):
    def run(data, segment_ids, num_segments=None, sorted=False):  # noqa: A002
        d = as_tensor(data)
        ids = as_tensor(segment_ids).to(dtype=_dt.int64)
        n = int(num_segments) if num_segments is not None else int(clnet.amax(ids).item()) + 1
        inner = int(np.prod(d.shape[1:]))
        flat = d.reshape(d.shape[0], inner)
        index = ids.reshape(-1, 1).expand(d.shape[0], inner)
        if reduce == "sum":
            out = clnet.scatter_add(clnet.zeros((n, inner), dtype=d.dtype, device=d.device), 0, index, flat)
        else:  # max: one masked reduction per segment (segment counts in models are small)
            rows = []
            for s in range(n):
                mask = (ids == s).reshape(-1, 1)
                rows.append(clnet.amax(clnet.where(mask, flat, -np.inf if _dt.is_floating(d.dtype) else
                                                   np.iinfo(np.dtype(d.dtype)).min), 0, keepdim=True))
            out = clnet.concat(rows, 0)
        return out.reshape((n,) + tuple(d.shape[1:]))
    run.__name__ = run.__qualname__ = name
    return run


segment_sum = _segment("segment_sum", "sum")
segment_max = _segment("segment_max", "max")


def erfinv(x):
    return clnet_op("erfinv")(_float(x))


def erfc(x):
    return 1.0 - erf(x)


def logdet(x):
    return clnet_op("logdet")(_float(x))


def extract_sequences(x, sequence_length, sequence_stride):
    """Frames of `sequence_length` samples every `sequence_stride` along the last axis."""
    t = as_tensor(x)
    n = (t.shape[-1] - sequence_length) // sequence_stride + 1
    idx = (np.arange(n)[:, None] * sequence_stride + np.arange(sequence_length)[None, :]).reshape(-1)
    frames = clnet.index_select(t, t.ndim - 1, clnet.tensor(idx.astype(np.int64), device=t.device))
    return frames.reshape(tuple(t.shape[:-1]) + (n, sequence_length))

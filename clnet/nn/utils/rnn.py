"""Variable-length sequences: pad_sequence, and PackedSequence with pack_padded_sequence /
pad_packed_sequence / pack_sequence / unpack_sequence, as PyTorch defines them.

A PackedSequence holds the time steps of a batch sorted by decreasing length, step after step:
data[(sum of batch_sizes[:t]) + b] is step t of the b-th longest sequence, and batch_sizes[t] counts the
sequences still running at step t. Packing and unpacking are gathers (index_select, differentiable);
nn.RNN/LSTM/GRU run a PackedSequence with the running batch size of every step (clnet.ops.rnn).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ... import dtypes as _dt
from ...ops import indexing as _ix
from ...ops import movement as _mv
from ...ops.creation import full, tensor
from ...tensor import Tensor


def pad_sequence(sequences, batch_first: bool = False, padding_value: float = 0.0, padding_side: str = "right"):
    """Stack tensors of shape (L_i, *) into (L_max, B, *) (batch_first: (B, L_max, *)), padding each with
    padding_value on the right (or the left). Differentiable in the sequences."""
    seqs = list(sequences)
    if not seqs:
        raise ValueError("pad_sequence: received an empty list of sequences")
    if padding_side not in ("left", "right"):
        raise ValueError(f"pad_sequence: padding_side must be 'left' or 'right', got {padding_side!r}")
    for s in seqs:
        if not isinstance(s, Tensor):
            raise TypeError(f"pad_sequence: sequences must be clnet Tensors, got {type(s).__name__}")
    trailing = tuple(seqs[0].shape[1:])
    longest = max(s.shape[0] for s in seqs)
    rows = []
    for s in seqs:
        if tuple(s.shape[1:]) != trailing:
            raise ValueError(f"pad_sequence: every sequence must have trailing shape {trailing}, got "
                             f"{tuple(s.shape)}")
        extra = longest - s.shape[0]
        if extra:
            pad = full((extra,) + trailing, padding_value, dtype=s.dtype, device=s.device)
            s = _mv.concat([s, pad] if padding_side == "right" else [pad, s], 0)
        rows.append(s)
    return _mv.stack(rows, 0 if batch_first else 1)


class PackedSequence(NamedTuple):
    """data (sum(lengths), *), batch_sizes (T,) int64, and the permutation from the caller's batch order
    to the sorted one (sorted_indices) and back (unsorted_indices; None when the input was sorted)."""

    data: Tensor
    batch_sizes: Tensor
    sorted_indices: Tensor = None
    unsorted_indices: Tensor = None

    def to(self, *args, **kwargs) -> "PackedSequence":
        return self._replace(data=self.data.to(*args, **kwargs))

    @property
    def is_cuda(self) -> bool:
        return False


def _host_ints(values, what):
    arr = values.numpy() if isinstance(values, Tensor) else np.asarray(values)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise ValueError(f"{what} must be a 1-D sequence of integers, got {arr!r}")
    return arr.astype(np.int64)


def _int64(host, device):
    return tensor(np.ascontiguousarray(host, np.int64), dtype=_dt.int64, device=device)


def pack_padded_sequence(input, lengths, batch_first: bool = False, enforce_sorted: bool = True) -> PackedSequence:
    """Pack a padded batch (T, B, *) (batch_first: (B, T, *)) of sequences of the given lengths."""
    if not isinstance(input, Tensor):
        raise TypeError(f"pack_padded_sequence: input must be a clnet Tensor, got {type(input).__name__}")
    lengths = _host_ints(lengths, "pack_padded_sequence: lengths")
    x = _mv.transpose(input, 0, 1) if batch_first else input
    T, B = x.shape[:2]
    if len(lengths) != B:
        raise ValueError(f"pack_padded_sequence: got {len(lengths)} lengths for a batch of {B}")
    if lengths.min(initial=1) <= 0 or lengths.max(initial=0) > T:
        raise ValueError(f"pack_padded_sequence: every length must be in [1, {T}], got {lengths.tolist()}")
    if enforce_sorted:
        if np.any(lengths[:-1] < lengths[1:]):
            raise RuntimeError("`lengths` array must be sorted in decreasing order when `enforce_sorted` is True. "
                               "You can pass `enforce_sorted=False` to pack_padded_sequence and/or pack_sequence "
                               "to sidestep this requirement if you do not need ONNX exportability.")
        order = np.arange(B)
    else:
        order = np.argsort(-lengths, kind="stable")
    sorted_len = lengths[order]
    steps = int(sorted_len[0])
    batch_sizes = np.array([(sorted_len > t).sum() for t in range(steps)], np.int64)
    rows = np.concatenate([t * B + order[:batch_sizes[t]] for t in range(steps)])
    flat = _mv.reshape(x, (T * B,) + tuple(x.shape[2:]))
    data = _ix.index_select(flat, 0, _int64(rows, x.device))
    if enforce_sorted:
        return PackedSequence(data, _int64(batch_sizes, x.device))
    return PackedSequence(data, _int64(batch_sizes, x.device), _int64(order, x.device),
                          _int64(np.argsort(order), x.device))


def pad_packed_sequence(sequence: PackedSequence, batch_first: bool = False, padding_value: float = 0.0,
                        total_length=None):
    """The inverse of pack_padded_sequence: (padded (T, B, *) or (B, T, *), lengths (B,) int64), in the
    caller's batch order."""
    data = sequence.data
    batch_sizes = _host_ints(sequence.batch_sizes, "batch_sizes")
    steps, B = len(batch_sizes), int(batch_sizes[0])
    T = steps if total_length is None else int(total_length)
    if T < steps:
        raise ValueError(f"pad_packed_sequence: total_length {total_length} is less than the longest sequence "
                         f"({steps})")
    pad_row = full((1,) + tuple(data.shape[1:]), padding_value, dtype=data.dtype, device=data.device)
    source = _mv.concat([data, pad_row], 0)
    n = data.shape[0]
    idx = np.full((T, B), n, np.int64)  # the padding row, where a sequence has ended
    starts = np.concatenate([[0], np.cumsum(batch_sizes)[:-1]])
    for t in range(steps):
        idx[t, :batch_sizes[t]] = starts[t] + np.arange(batch_sizes[t])
    lengths = (idx[:steps] < n).sum(0)
    if sequence.unsorted_indices is not None:
        unsorted = _host_ints(sequence.unsorted_indices, "unsorted_indices")
        idx, lengths = idx[:, unsorted], lengths[unsorted]
    padded = _mv.reshape(_ix.index_select(source, 0, _int64(idx.reshape(-1), data.device)),
                         (T, B) + tuple(data.shape[1:]))
    if batch_first:
        padded = _mv.transpose(padded, 0, 1)
    return padded, _int64(lengths, data.device)


def pack_sequence(sequences, enforce_sorted: bool = True) -> PackedSequence:
    """Pack a list of tensors (L_i, *)."""
    lengths = [s.shape[0] for s in sequences]
    return pack_padded_sequence(pad_sequence(sequences), lengths, enforce_sorted=enforce_sorted)


def unpad_sequence(padded_sequences, lengths, batch_first: bool = False):
    """The list of sequences (L_i, *) in a padded batch."""
    lengths = _host_ints(lengths, "unpad_sequence: lengths")
    x = padded_sequences if batch_first else _mv.transpose(padded_sequences, 0, 1)
    return [_mv.narrow(x[i], 0, 0, int(n)) for i, n in enumerate(lengths)]


def unpack_sequence(packed_sequences: PackedSequence):
    """The list of sequences of a PackedSequence, in the caller's order."""
    padded, lengths = pad_packed_sequence(packed_sequences, batch_first=True)
    return unpad_sequence(padded, lengths, batch_first=True)


__all__ = ["pad_sequence", "PackedSequence", "pack_padded_sequence", "pad_packed_sequence", "pack_sequence",
           "unpad_sequence", "unpack_sequence"]

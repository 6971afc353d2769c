"""Sequence batching helpers: pad_sequence (a list of variable-length tensors -> one padded tensor)."""
from __future__ import annotations

from ...ops import movement as _mv
from ...ops.creation import full
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


__all__ = ["pad_sequence"]

"""keras.utils' data helpers for sequences: pad_sequences and timeseries_dataset_from_array (host-side numpy,
as Keras does them, before the data reaches the device)."""
from __future__ import annotations

import numpy as np

from clnet.data.dataset import Dataset


def pad_sequences(sequences, maxlen=None, dtype="int32", padding="pre", truncating="pre", value=0.0):
    """A (len(sequences), maxlen) array: each sequence cut to maxlen and padded with `value` ("pre" or "post")."""
    if padding not in ("pre", "post"):
        raise ValueError(f'`padding` must be "pre" or "post". Received: padding={padding}')
    if truncating not in ("pre", "post"):
        raise ValueError(f'`truncating` must be "pre" or "post". Received: truncating={truncating}')
    if not hasattr(sequences, "__len__"):
        raise ValueError("`sequences` must be iterable.")
    lengths, sample_shape = [], ()
    for s in sequences:
        try:
            lengths.append(len(s))
        except TypeError as err:
            raise ValueError(f"`sequences` must be a list of iterables. Found non-iterable: {s}") from err
        if len(s) and not sample_shape:
            sample_shape = np.asarray(s).shape[1:]
    maxlen = int(np.max(lengths)) if maxlen is None and lengths else (maxlen or 0)
    out = np.full((len(sequences), maxlen) + tuple(sample_shape), value, dtype=dtype)
    for i, s in enumerate(sequences):
        if not len(s):
            continue
        s = np.asarray(s, dtype=dtype)
        trunc = s[-maxlen:] if truncating == "pre" else s[:maxlen]
        if padding == "post":
            out[i, :len(trunc)] = trunc
        else:
            out[i, maxlen - len(trunc):] = trunc
    return out


def timeseries_dataset_from_array(data, targets, sequence_length, sequence_stride=1, sampling_rate=1,
                                  batch_size=128, shuffle=False, seed=None, start_index=None, end_index=None):
    """Windows of `sequence_length` steps (every `sampling_rate`-th step, one window every `sequence_stride`
    steps) as a clnet.data.Dataset of batches; window i's target is targets[start + i * sequence_stride]."""
    data = np.asarray(data)
    start = 0 if start_index is None else int(start_index)
    end = len(data) if end_index is None else int(end_index)
    span = (sequence_length - 1) * sampling_rate + 1
    starts = np.arange(start, end - span + 1, sequence_stride)
    if targets is not None:
        targets = np.asarray(targets)
        starts = starts[starts < len(targets)]
    if shuffle:
        np.random.default_rng(seed).shuffle(starts)
    offsets = np.arange(sequence_length) * sampling_rate
    windows = data[starts[:, None] + offsets[None, :]]
    parts = windows if targets is None else (windows, targets[starts])
    dataset = Dataset.from_tensor_slices(parts)
    return dataset.batch(batch_size) if batch_size is not None else dataset

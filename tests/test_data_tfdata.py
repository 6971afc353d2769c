"""clnet.data: tf.data.Dataset's spellings (import clnet as tf; tf.data.Dataset...)."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import clnet
import clnet as tf
from clnet.data import AUTOTUNE, Dataset, TensorSpec


def _np(ds):
    return list(ds.as_numpy_iterator())


def test_namespace_and_iteration_yields_tensors(device):
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    ds = tf.data.Dataset.from_tensor_slices((x, np.arange(6)))
    assert len(ds) == 6 and int(ds.cardinality()) == 6
    first = next(iter(ds))
    assert isinstance(first, tuple) and isinstance(first[0], clnet.Tensor) and first[0].device is device
    np.testing.assert_array_equal(first[0].numpy(), x[0])
    assert first[1].item() == 0 and first[1].dtype == clnet.int64
    assert tf.data.AUTOTUNE == tf.data.experimental.AUTOTUNE == AUTOTUNE


def test_from_tensor_slices_structures():
    x, y = np.arange(6).reshape(3, 2), np.array([10, 20, 30])
    assert [(a.tolist(), int(b)) for a, b in _np(Dataset.from_tensor_slices((x, y)))] == \
        [([0, 1], 10), ([2, 3], 20), ([4, 5], 30)]
    named = _np(Dataset.from_tensor_slices({"img": x, "label": y}))
    assert named[1]["label"] == 20 and named[1]["img"].tolist() == [2, 3]
    # a list is one tensor (TF's rule), not a tuple of components
    assert [a.tolist() for a in _np(Dataset.from_tensor_slices([[1, 2], [3, 4], [5, 6]]))] == [[1, 2], [3, 4], [5, 6]]
    on_device = _np(Dataset.from_tensor_slices(clnet.tensor(x.astype(np.float32))))
    assert on_device[2].tolist() == [4.0, 5.0]
    with pytest.raises(ValueError, match="same first dimension"):
        Dataset.from_tensor_slices((x, y[:2]))
    with pytest.raises(ValueError, match="scalar"):
        Dataset.from_tensor_slices(np.float32(3))
    assert [e.tolist() for e in _np(Dataset.from_tensors(x))] == [x.tolist()]


def test_map_filter_batch_repeat_take_skip():
    ds = Dataset.range(10).map(lambda v: v * 2).filter(lambda v: v % 3 != 0)
    assert [int(v) for v in _np(ds)] == [2, 4, 8, 10, 14, 16]
    pairs = Dataset.from_tensor_slices((np.arange(5), np.arange(5) * 10)).map(lambda a, b: a + b)  # tuple unpacked
    assert [int(v) for v in _np(pairs)] == [0, 11, 22, 33, 44]
    batched = Dataset.range(7).batch(3)
    assert [b.tolist() for b in _np(batched)] == [[0, 1, 2], [3, 4, 5], [6]] and len(batched) == 3
    assert len(Dataset.range(7).batch(3, drop_remainder=True)) == 2
    assert [int(v) for v in _np(Dataset.range(3).repeat(2))] == [0, 1, 2, 0, 1, 2]
    endless = Dataset.range(3).repeat()
    assert int(endless.cardinality()) == tf.data.INFINITE_CARDINALITY
    with pytest.raises(TypeError, match="infinite"):
        len(endless)
    with pytest.raises(TypeError, match="unknown"):
        len(Dataset.range(3).filter(lambda v: v > 0))
    assert [int(v) for v in _np(endless.take(7))] == [0, 1, 2, 0, 1, 2, 0] and len(endless.take(7)) == 7
    assert [int(v) for v in _np(Dataset.range(6).skip(4))] == [4, 5] and len(Dataset.range(6).skip(4)) == 2
    assert [int(v) for v in _np(Dataset.range(10).shard(3, 1))] == [1, 4, 7] and len(Dataset.range(10).shard(3, 1)) == 3


def test_parallel_map_keeps_order():
    def slow(v):
        time.sleep(0.002 * (5 - int(v) % 5))
        return v * v
    assert [int(v) for v in _np(Dataset.range(20).map(slow, num_parallel_calls=4))] == [i * i for i in range(20)]


def test_shuffle_buffer_seed_and_reshuffle():
    ds = Dataset.range(20).shuffle(20, seed=4)
    e1, e2 = [int(v) for v in _np(ds)], [int(v) for v in _np(ds)]
    assert sorted(e1) == list(range(20)) and e1 != e2  # reshuffled each iteration
    again = Dataset.range(20).shuffle(20, seed=4)
    assert [int(v) for v in _np(again)] == e1
    fixed = Dataset.range(20).shuffle(20, seed=4, reshuffle_each_iteration=False)
    assert _np(fixed) == _np(fixed)
    assert [int(v) for v in _np(Dataset.range(8).shuffle(1))] == list(range(8))  # a 1-element buffer keeps order
    # TF's buffer: the first element out is one of the first buffer_size elements
    firsts = {int(next(Dataset.range(100).shuffle(5).as_numpy_iterator())) for _ in range(30)}
    assert firsts <= set(range(5)) and len(firsts) > 1
    tf.random.set_seed(9)
    a = [int(v) for v in _np(Dataset.range(10).shuffle(10))]
    tf.random.set_seed(9)
    assert [int(v) for v in _np(Dataset.range(10).shuffle(10))] == a  # the global seed fixes unseeded shuffles


def test_zip_concatenate_enumerate_unbatch_padded():
    z = Dataset.zip((Dataset.range(3), Dataset.range(10, 20)))
    assert [(int(a), int(b)) for a, b in _np(z)] == [(0, 10), (1, 11), (2, 12)] and len(z) == 3
    assert [int(v) for v in _np(Dataset.range(2).concatenate(Dataset.range(5, 7)))] == [0, 1, 5, 6]
    assert [(int(i), int(v)) for i, v in _np(Dataset.range(3, 6).enumerate())] == [(0, 3), (1, 4), (2, 5)]
    assert [int(v) for v in _np(Dataset.range(7).batch(3).unbatch())] == list(range(7))

    def ragged():
        for n in (1, 3, 2):
            yield np.arange(n) + 1, n
    ds = Dataset.from_generator(ragged, output_signature=(TensorSpec((None,), np.int32), TensorSpec((), np.int64)))
    (seqs, lens), = _np(ds.padded_batch(3))
    assert seqs.tolist() == [[1, 0, 0], [1, 2, 3], [1, 2, 0]] and seqs.dtype == np.int32 and lens.tolist() == [1, 3, 2]
    (seqs, _), = _np(ds.padded_batch(3, padded_shapes=([4], []), padding_values=(-1, 0)))
    assert seqs.tolist() == [[1, -1, -1, -1], [1, 2, 3, -1], [1, 2, -1, -1]]


def test_cache_reads_the_source_once():
    calls = []
    ds = Dataset.range(5).map(lambda v: calls.append(int(v)) or v).cache()
    assert _np(ds) == _np(ds) and calls == [0, 1, 2, 3, 4]


def test_prefetch_runs_ahead_and_passes_errors():
    produced = []
    ds = Dataset.range(50).map(lambda v: produced.append(int(v)) or v).prefetch(4)
    it = iter(ds.as_numpy_iterator())
    assert int(next(it)) == 0
    time.sleep(0.2)
    assert len(produced) >= 3  # the background thread filled the buffer ahead of the consumer
    del it

    def boom(v):
        if int(v) == 3:
            raise ValueError("bad element 3")
        return v
    with pytest.raises(ValueError, match="bad element 3"):
        _np(Dataset.range(6).map(boom).prefetch(2))
    before = threading.active_count()
    for i, _ in enumerate(Dataset.range(1000).prefetch(2)):
        if i == 2:
            break
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= before  # a loop broken off stops the prefetch thread


def test_batched_pipeline_on_device(device, rng):
    x = rng.standard_normal((37, 4)).astype(np.float32)
    y = rng.integers(0, 3, 37)
    ds = Dataset.from_tensor_slices((x, y)).shuffle(37, seed=1).map(lambda a, b: (a * 2.0, b)).batch(8)\
        .prefetch(AUTOTUNE)
    seen_x, seen_y = [], []
    for xb, yb in ds:
        assert isinstance(xb, clnet.Tensor) and xb.device is device
        seen_x.append(xb.numpy())
        seen_y.append(yb.numpy())
    got = np.concatenate(seen_x)
    order = np.argsort(got[:, 0])
    np.testing.assert_allclose(got[order], (2 * x)[np.argsort(2 * x[:, 0])])
    assert [len(b) for b in seen_y] == [8, 8, 8, 8, 5]
    spec = ds.element_spec
    assert spec[0].shape == (None, 4) and spec[0].dtype == np.float32


def test_map_may_return_clnet_tensors(device):
    ds = Dataset.from_tensor_slices(np.arange(6, dtype=np.float32)).map(lambda v: clnet.tensor([v, v + 1])).batch(4)
    batches = [b.numpy().tolist() for b in ds]
    assert batches == [[[0, 1], [1, 2], [2, 3], [3, 4]], [[4, 5], [5, 6]]]

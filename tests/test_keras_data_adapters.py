"""clnet/keras/data_adapters.py and keras.utils.PyDataset: every kind of input Keras' fit takes, as batches."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import clnet
from clnet import keras
from clnet.data import Dataset
from clnet.keras import data_adapters as da
from clnet.utils.data import DataLoader, TensorDataset


class Batches(keras.utils.PyDataset):
    """Batch i: x filled with i, y = [i, i]."""

    def __init__(self, n=5, **kwargs):
        super().__init__(**kwargs)
        self.n, self.epochs_ended = n, 0

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i >= self.n:
            raise IndexError(i)
        return np.full((2, 3), i, np.float32), np.array([i, i])

    def on_epoch_end(self):
        self.epochs_ended += 1


class NoSuper(keras.utils.PyDataset):
    def __init__(self, n=1):
        self.n = n  # forgets super().__init__()

    def __len__(self):
        return 1

    def __getitem__(self, i):
        return np.zeros((1, 1)), np.zeros(1)


def _ids(epoch):
    return [int(np.asarray(b[1].numpy() if hasattr(b[1], "numpy") else b[1])[0]) for _, b in epoch]


def test_unpack_pack_and_split():
    assert da.unpack_x_y_sample_weight((1, 2)) == (1, 2, None)
    assert da.unpack_x_y_sample_weight([1, 2, 3]) == (1, 2, 3)
    assert da.unpack_x_y_sample_weight(7) == (7, None, None)
    with pytest.raises(ValueError, match="Data is expected to be in format"):
        da.unpack_x_y_sample_weight((1, 2, 3, 4))
    assert da.pack_x_y_sample_weight(1) == 1 and da.pack_x_y_sample_weight(1, 2) == (1, 2)
    assert keras.utils.unpack_x_y_sample_weight((5,)) == (5, None, None)
    x, y = np.arange(10).reshape(10, 1), np.arange(10)
    (xt, yt), (xv, yv) = da.train_validation_split((x, y), 0.2)
    assert len(xt) == 8 and yv.tolist() == [8, 9]
    with pytest.raises(ValueError, match="not sufficient to split"):
        da.train_validation_split((x[:1], y[:1]), 0.5)
    with pytest.raises(ValueError, match="only supported for Tensors or NumPy arrays"):
        da.train_validation_split((iter([1]),), 0.5)


def test_class_weight_to_sample_weight():
    w = da.class_weight_to_sample_weight(np.array([0, 2, 1, 2]), {0: 1.0, 1: 5.0, 2: 0.5})
    assert w.tolist() == [1.0, 0.5, 5.0, 0.5]
    onehot = np.eye(3)[[2, 0]]
    assert da.class_weight_to_sample_weight(onehot, {2: 3.0}).tolist() == [3.0, 1.0]
    with pytest.raises(ValueError, match="single output"):
        da.class_weight_to_sample_weight([np.zeros(2), np.zeros(2)], {0: 1.0})


def test_array_adapter_structures_dtypes_and_shuffle(device):
    x = {"a": np.arange(20, dtype=np.float64).reshape(10, 2), "b": clnet.tensor(np.arange(10, dtype=np.float32))}
    y = list(range(10))
    adapter = da.get_data_adapter(x, y, batch_size=4, shuffle=True, rng=np.random.default_rng(0))
    assert isinstance(adapter, da.ArrayDataAdapter) and adapter.num_batches == 3
    assert adapter.has_partial_batch and adapter.partial_batch_size == 2
    seen = []
    for xb, yb, sw in adapter.batches():
        assert xb["a"].dtype == np.float32 and yb.dtype == np.int64 and sw is None
        assert isinstance(xb["b"], clnet.Tensor)  # tensors are gathered on their device
        np.testing.assert_array_equal(xb["b"].numpy(), xb["a"][:, 0] / 2)
        seen += yb.tolist()
    assert sorted(seen) == list(range(10)) and seen != list(range(10))
    ordered = [yb.tolist() for _, yb, _ in da.get_data_adapter(x, y, batch_size=4).batches()]
    assert ordered == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    by_batch = [yb.tolist() for _, yb, _ in da.get_data_adapter(x, y, batch_size=4, shuffle="batch").batches()]
    assert sorted(sorted(b) for b in by_batch) == sorted(ordered)  # whole batches move; rows only within one
    with pytest.raises(ValueError, match="Data cardinality is ambiguous"):
        da.get_data_adapter(np.zeros((4, 2)), np.zeros(3))
    weighted = da.get_data_adapter(np.zeros((4, 1)), np.array([0, 1, 1, 0]), class_weight={1: 4.0}, batch_size=4)
    assert next(iter(weighted.batches()))[2].tolist() == [1.0, 4.0, 4.0, 1.0]


@pytest.mark.parametrize("kwargs", [{}, {"workers": 3}, {"workers": 2, "use_multiprocessing": True}])
def test_py_dataset_workers(kwargs):
    ds = Batches(**kwargs)
    it = da.EpochIterator(ds)
    assert it.num_batches == 5
    for epoch in range(2):
        assert _ids(it.enumerate_epoch()) == [0, 1, 2, 3, 4]
    assert ds.epochs_ended == 2
    shuffled = _ids(da.EpochIterator(Batches(**kwargs), shuffle=True).enumerate_epoch())
    assert sorted(shuffled) == [0, 1, 2, 3, 4]


def test_py_dataset_without_super_init_warns():
    with pytest.warns(UserWarning, match=r"should call `super\(\)\.__init__"):
        da.get_data_adapter(NoSuper())


def test_steps_per_epoch_continues_a_pass_as_keras():
    it = da.EpochIterator(Batches(n=3), steps_per_epoch=2)
    assert _ids(it.enumerate_epoch()) == [0, 1]
    with pytest.warns(UserWarning, match="ran out of data"):
        assert _ids(it.enumerate_epoch()) == [2]
    assert _ids(it.enumerate_epoch()) == [0, 1]

    def gen():
        for i in range(5):
            yield np.zeros((1, 1)), np.array([i])
    stream = da.EpochIterator(gen(), steps_per_epoch=2)
    assert [_ids(stream.enumerate_epoch()) for _ in range(2)] == [[0, 1], [2, 3]]


def test_generators_loaders_and_datasets(device):
    def gen():
        for i in range(3):
            yield np.full((2, 2), i, np.float32), np.array([i, i])
    g = da.get_data_adapter(gen())
    assert isinstance(g, da.GeneratorDataAdapter) and g.num_batches is None
    with pytest.raises(ValueError, match="`y` argument is not supported"):
        da.get_data_adapter(gen(), np.zeros(3))
    x, y = np.random.rand(10, 3).astype(np.float32), np.arange(10)
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    la = da.get_data_adapter(loader)
    assert isinstance(la, da.DataLoaderAdapter) and la.num_batches == 3
    assert [b[1].numpy().tolist() for b in la.batches()] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    ds = Dataset.from_tensor_slices((x, y)).batch(4)
    ta = da.get_data_adapter(ds, class_weight={0: 9.0})
    assert isinstance(ta, da.TFDatasetAdapter) and ta.num_batches == 3
    first = next(iter(ta.batches()))
    assert first[2].tolist() == [9.0, 1.0, 1.0, 1.0]
    it = da.EpochIterator(ds)
    batches = [b for _, b in it.enumerate_epoch()]
    assert isinstance(batches[0][0], clnet.Tensor) and batches[0][0].device is device
    np.testing.assert_array_equal(np.concatenate([b[0].numpy() for b in batches]), x)
    with pytest.raises(ValueError, match="Unrecognized data type"):
        da.get_data_adapter(object())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert da.get_data_adapter(Dataset.range(3).repeat()).num_batches is None

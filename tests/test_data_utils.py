"""clnet.utils.data datasets, samplers, default_collate and clnet.Generator, against PyTorch's behaviour."""
from __future__ import annotations

import collections

import numpy as np
import pytest

import clnet
from clnet.utils.data import (BatchSampler, ChainDataset, ConcatDataset, Dataset, DistributedSampler,
                              IterableDataset, RandomSampler, SequentialSampler, StackDataset, Subset,
                              SubsetRandomSampler, TensorDataset, WeightedRandomSampler, default_collate,
                              default_convert, random_split)


# --- Generator ----------------------------------------------------------------------------------------
def test_generator_seeds_and_replays():
    g = clnet.Generator()
    assert g.manual_seed(3) is g and g.initial_seed() == 3
    a = g.permutation(50)
    state = g.get_state()
    b = g.permutation(50)
    assert sorted(a.tolist()) == list(range(50)) and not np.array_equal(a, b)
    g.set_state(state)
    np.testing.assert_array_equal(g.permutation(50), b)
    np.testing.assert_array_equal(clnet.Generator().manual_seed(3).permutation(50), a)
    assert not np.array_equal(clnet.Generator().manual_seed(4).permutation(50), a)
    with pytest.raises(TypeError, match="int"):
        g.manual_seed(1.5)
    with pytest.raises(ValueError, match="bytes"):
        g.set_state(np.zeros(5, np.uint8))


def test_global_seed_fixes_unseeded_shuffling():
    clnet.manual_seed(11)
    a = list(RandomSampler(range(40)))
    b = list(RandomSampler(range(40)))
    clnet.manual_seed(11)
    assert list(RandomSampler(range(40))) == a
    assert a != b and sorted(a) == list(range(40))


# --- datasets -----------------------------------------------------------------------------------------
class Squares(Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return i * i


def test_tensor_dataset_rows(device, rng):
    x, y = rng.standard_normal((7, 3)).astype(np.float32), rng.integers(0, 5, 7)
    ds = TensorDataset(clnet.tensor(x), clnet.tensor(y))
    assert len(ds) == 7
    xi, yi = ds[4]
    np.testing.assert_array_equal(xi.numpy(), x[4])
    assert yi.item() == y[4] and isinstance(xi, clnet.Tensor)
    np.testing.assert_array_equal(TensorDataset(x, y)[2][0], x[2])  # numpy arrays work as well
    with pytest.raises(ValueError, match="Size mismatch"):
        TensorDataset(clnet.tensor(x), clnet.tensor(y[:5]))


def test_concat_subset_stack_chain():
    a, b = Squares(3), Squares(4)
    cat = a + b
    assert isinstance(cat, ConcatDataset) and len(cat) == 7 and cat.cumulative_sizes == [3, 7]
    assert [cat[i] for i in range(7)] == [0, 1, 4, 0, 1, 4, 9] and cat[-1] == 9 and cat[-7] == 0
    with pytest.raises(ValueError, match="exceed"):
        cat[-8]
    with pytest.raises(ValueError, match="empty"):
        ConcatDataset([])
    sub = Subset(b, [3, 1])
    assert len(sub) == 2 and sub[0] == 9 and sub[1] == 1 and sub.__getitems__([1, 0]) == [1, 9]
    st = StackDataset(a, Squares(3))
    assert st[2] == (4, 4) and StackDataset(p=a, q=a)[1] == {"p": 1, "q": 1}
    with pytest.raises(ValueError, match="Size mismatch"):
        StackDataset(a, b)

    class Count(IterableDataset):
        def __init__(self, n):
            self.n = n

        def __iter__(self):
            return iter(range(self.n))
    chained = Count(2) + Count(3)
    assert isinstance(chained, ChainDataset) and list(chained) == [0, 1, 0, 1, 2]
    with pytest.raises(TypeError, match="IterableDataset"):
        ConcatDataset([Count(2)])


def test_random_split_lengths_fractions_and_seed():
    ds = Squares(10)
    parts = random_split(ds, [3, 7], generator=clnet.Generator().manual_seed(0))
    assert [len(p) for p in parts] == [3, 7]
    assert sorted(parts[0].indices + parts[1].indices) == list(range(10))
    again = random_split(ds, [3, 7], generator=clnet.Generator().manual_seed(0))
    assert again[0].indices == parts[0].indices
    # fractions: floor, then the remainder one each to the first splits (PyTorch's rule: 10*0.33 -> 3,3,3 + 1)
    assert [len(p) for p in random_split(ds, [0.33, 0.33, 0.34])] == [4, 3, 3]
    with pytest.raises(ValueError, match="Sum of input lengths"):
        random_split(ds, [3, 3])


def test_random_split_fraction_rule_matches_torch():
    torch = pytest.importorskip("torch")
    for n, fracs in ((10, [0.33, 0.33, 0.34]), (17, [0.5, 0.5]), (101, [0.8, 0.1, 0.1]), (7, [0.25, 0.75])):
        ours = [len(p) for p in random_split(Squares(n), fracs)]
        theirs = [len(p) for p in torch.utils.data.random_split(range(n), fracs)]
        assert ours == theirs, (n, fracs)


# --- samplers -----------------------------------------------------------------------------------------
def test_sequential_and_random_samplers():
    assert list(SequentialSampler(range(5))) == [0, 1, 2, 3, 4]
    g = clnet.Generator().manual_seed(5)
    s = RandomSampler(range(20), generator=g)
    e1, e2 = list(s), list(s)
    assert sorted(e1) == list(range(20)) and e1 != e2  # the generator's stream goes on across epochs
    assert len(s) == 20
    long = list(RandomSampler(range(6), num_samples=15))
    assert len(long) == 15 and sorted(long[:6]) == list(range(6)) and sorted(long[6:12]) == list(range(6))
    rep = list(RandomSampler(range(4), replacement=True, num_samples=200))
    assert len(rep) == 200 and set(rep) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="num_samples"):
        RandomSampler(range(4), num_samples=0)
    with pytest.raises(TypeError, match="replacement"):
        RandomSampler(range(4), replacement=1)


def test_subset_and_weighted_samplers():
    idx = [10, 20, 30, 40]
    out = list(SubsetRandomSampler(idx))
    assert sorted(out) == idx
    w = [0.0, 1.0, 3.0, 0.0]
    draws = np.array(list(WeightedRandomSampler(w, 4000, generator=clnet.Generator().manual_seed(1))))
    counts = np.bincount(draws, minlength=4)
    assert counts[0] == 0 and counts[3] == 0 and 0.68 < counts[2] / 4000 < 0.82
    no_rep = list(WeightedRandomSampler([1, 1, 1, 0], 3, replacement=False))
    assert sorted(no_rep) == [0, 1, 2]
    with pytest.raises(RuntimeError, match="without replacement"):
        WeightedRandomSampler([1, 0], 2, replacement=False)
    with pytest.raises(ValueError, match="1d"):
        WeightedRandomSampler([[1.0, 2.0]], 2)


def test_batch_sampler():
    assert list(BatchSampler(SequentialSampler(range(7)), 3, False)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(BatchSampler(SequentialSampler(range(7)), 3, True)) == [[0, 1, 2], [3, 4, 5]]
    assert len(BatchSampler(range(7), 3, False)) == 3 and len(BatchSampler(range(7), 3, True)) == 2
    with pytest.raises(ValueError, match="batch_size"):
        BatchSampler(range(7), 0, False)


@pytest.mark.parametrize("n,replicas,drop_last", [(10, 3, False), (10, 3, True), (2, 4, False), (12, 4, False)])
def test_distributed_sampler_partitions(n, replicas, drop_last):
    ds = Squares(n)
    parts = [list(DistributedSampler(ds, num_replicas=replicas, rank=r, shuffle=True, seed=7, drop_last=drop_last))
             for r in range(replicas)]
    lens = {len(p) for p in parts}
    assert len(lens) == 1  # every rank takes the same number of steps
    flat = sum(parts, [])
    if drop_last:
        assert len(set(flat)) == len(flat) == (n // replicas) * replicas
    else:
        assert set(flat) == set(range(n)) and len(flat) == -(-n // replicas) * replicas
    s = DistributedSampler(ds, num_replicas=replicas, rank=0, seed=7, drop_last=drop_last)
    assert list(s) == parts[0] and len(s) == len(parts[0])


def test_distributed_sampler_epochs_and_torch_partition():
    ds = Squares(50)
    s = DistributedSampler(ds, num_replicas=2, rank=1)
    e0 = list(s)
    s.set_epoch(1)
    assert list(s) != e0 and sorted(list(s)) != list(s)
    unshuffled = [list(DistributedSampler(ds, num_replicas=3, rank=r, shuffle=False)) for r in range(3)]
    torch = pytest.importorskip("torch")
    theirs = [list(torch.utils.data.DistributedSampler(range(50), num_replicas=3, rank=r, shuffle=False))
              for r in range(3)]
    assert unshuffled == theirs
    with pytest.raises(ValueError, match="Invalid rank"):
        DistributedSampler(ds, num_replicas=2, rank=2)
    if not clnet.distributed.is_initialized():
        with pytest.raises(RuntimeError, match="init_process_group"):
            DistributedSampler(ds)


# --- collate ------------------------------------------------------------------------------------------
Point = collections.namedtuple("Point", "x y")


def _describe(batch):
    """A comparable description of a batch: containers, leaf kinds, dtypes and values."""
    if isinstance(batch, dict):
        return {k: _describe(v) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return (type(batch).__name__, tuple(_describe(v) for v in batch))
    if isinstance(batch, (list, tuple)):
        return (type(batch).__name__, [_describe(v) for v in batch])
    if hasattr(batch, "numpy"):
        arr = batch.numpy()
        return ("tensor", str(arr.dtype), arr.tolist())
    return ("leaf", batch)


SAMPLES = {
    "floats": [1.5, 2.5, 3.0],
    "ints": [1, 2, 3],
    "bools": [True, False, True],
    "arrays": [np.full((2, 2), i, np.float32) for i in range(3)],
    "np_scalars": [np.int32(i) for i in range(3)],
    "strings": ["a", "b", "c"],
    "tuples": [(np.ones(2, np.float32) * i, i) for i in range(3)],
    "lists": [[i, float(i)] for i in range(3)],
    "dicts": [{"img": np.zeros(3, np.float64) + i, "label": i, "name": f"s{i}"} for i in range(3)],
    "namedtuples": [Point(np.float32(i), i) for i in range(3)],
}


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_default_collate_matches_torch(kind, device):
    torch = pytest.importorskip("torch")
    samples = SAMPLES[kind]
    ours = _describe(default_collate(samples))
    theirs = _describe(torch.utils.data.default_collate(samples))
    if not device.fp64:  # float64 batches come out as float32 on devices without fp64
        theirs = _describe(torch.utils.data.default_collate(samples)).__repr__().replace("float64", "float32")
        ours = ours.__repr__()
    assert ours == theirs


def test_default_collate_stacks_clnet_tensors_and_rejects_bad(device):
    batch = default_collate([clnet.tensor([1.0, 2.0]), clnet.tensor([3.0, 4.0])])
    np.testing.assert_array_equal(batch.numpy(), [[1, 2], [3, 4]])
    with pytest.raises(TypeError, match="default_collate"):
        default_collate([object(), object()])
    with pytest.raises(RuntimeError, match="equal size"):
        default_collate([[1, 2], [3]])
    with pytest.raises(RuntimeError, match="equal size"):
        default_collate([np.zeros(2), np.zeros(3)])


def test_default_convert(device):
    out = default_convert({"a": np.arange(3), "b": 5, "c": [np.float32(2.0)]})
    assert isinstance(out["a"], clnet.Tensor) and out["a"].numpy().tolist() == [0, 1, 2]
    assert out["b"] == 5 and isinstance(out["c"][0], clnet.Tensor)

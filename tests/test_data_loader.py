"""clnet.utils.data.DataLoader: PyTorch's batching rules, worker processes, errors, shutdown, device copies."""
from __future__ import annotations

import glob
import os
import signal
import time

import numpy as np
import pytest

import clnet
from clnet.utils.data import (BatchSampler, DataLoader, Dataset, IterableDataset, SequentialSampler, TensorDataset,
                              get_worker_info)
from clnet.utils.data import transfer
from conftest import small


class Rows(Dataset):
    """Sample i: a dict with a float row, an int label and a name (host data, as real datasets return)."""

    def __init__(self, n=23, width=5):
        self.x = np.arange(n * width, dtype=np.float32).reshape(n, width)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": int(i) % 3, "name": f"r{i}"}


class Stream(IterableDataset):
    """0..n-1, split between workers by get_worker_info() (PyTorch's documented pattern)."""

    def __init__(self, n):
        self.n = n

    def __iter__(self):
        info = get_worker_info()
        start, step = (0, 1) if info is None else (info.id, info.num_workers)
        return iter(range(start, self.n, step))

    def __len__(self):
        return self.n


class Failing(Dataset):
    def __len__(self):
        return 12

    def __getitem__(self, i):
        if i == 5:
            raise_from_dataset(i)
        return np.float32(i)


def raise_from_dataset(i):
    raise KeyError(f"sample {i} is missing")


class Killing(Dataset):
    def __len__(self):
        return 12

    def __getitem__(self, i):
        if i == 5:
            os.kill(os.getpid(), signal.SIGKILL)
        return np.float32(i)


class Sleepy(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        if i == 2:
            time.sleep(30)
        return np.float32(i)


class OnDevice(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return clnet.ones(2) * i


class Noisy(Dataset):
    """Random values drawn in the worker (numpy's global generator): workers must be seeded apart."""

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return np.random.rand(1).astype(np.float32)


def _values(batches):
    return [{k: (v.numpy().tolist() if isinstance(v, clnet.Tensor) else v) for k, v in b.items()} for b in batches]


def _workers_of(it):
    return [w.process for w in it._workers]


# --- arguments ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,match", [
    (dict(num_workers=-1), "num_workers option should be non-negative"),
    (dict(timeout=-1), "timeout option should be non-negative"),
    (dict(prefetch_factor=2), "prefetch_factor option could only be specified in multiprocessing"),
    (dict(persistent_workers=True), "persistent_workers option needs num_workers > 0"),
    (dict(sampler=SequentialSampler(range(23)), shuffle=True), "sampler option is mutually exclusive with shuffle"),
    (dict(batch_sampler=BatchSampler(range(23), 2, False), batch_size=4), "batch_sampler option is mutually"),
    (dict(batch_size=None, drop_last=True), "batch_size=None option disables auto-batching"),
])
def test_argument_errors_match_torch(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DataLoader(Rows(), **kwargs)
    torch = pytest.importorskip("torch")
    if "sampler" in kwargs:
        kwargs["sampler"] = torch.utils.data.SequentialSampler(range(23))
    if "batch_sampler" in kwargs:
        kwargs["batch_sampler"] = torch.utils.data.BatchSampler(range(23), 2, False)
    with pytest.raises(ValueError, match=match):
        torch.utils.data.DataLoader(Rows(), **kwargs)


def test_iterable_dataset_argument_errors_and_frozen_attributes():
    with pytest.raises(ValueError, match="expected unspecified shuffle"):
        DataLoader(Stream(5), shuffle=True)
    with pytest.raises(ValueError, match="expected unspecified sampler"):
        DataLoader(Stream(5), sampler=[0, 1])
    loader = DataLoader(Rows())
    with pytest.raises(ValueError, match="batch_size attribute should not be set"):
        loader.batch_size = 3


# --- batches ------------------------------------------------------------------------------------------
def test_batches_match_torch_in_order(device):
    torch = pytest.importorskip("torch")
    ours = DataLoader(Rows(), batch_size=4)
    theirs = torch.utils.data.DataLoader(Rows(), batch_size=4)
    assert len(ours) == len(theirs) == 6
    got = list(ours)
    for a, b in zip(got, theirs):
        assert a["x"].device is device
        np.testing.assert_array_equal(a["x"].numpy(), b["x"].numpy())
        np.testing.assert_array_equal(a["y"].numpy(), b["y"].numpy())
        assert a["name"] == b["name"] and a["y"].dtype == clnet.int64
    assert len(list(DataLoader(Rows(), batch_size=4, drop_last=True))) == len(DataLoader(Rows(), 4, drop_last=True))


def test_shuffle_is_reproducible_and_covers_the_dataset():
    def epoch(loader):
        return np.concatenate([b["x"].numpy()[:, 0] for b in loader])

    loader = DataLoader(Rows(), batch_size=5, shuffle=True, generator=clnet.Generator().manual_seed(3))
    e1, e2 = epoch(loader), epoch(loader)
    assert sorted(e1.tolist()) == sorted(Rows().x[:, 0].tolist()) and not np.array_equal(e1, e2)
    again = DataLoader(Rows(), batch_size=5, shuffle=True, generator=clnet.Generator().manual_seed(3))
    np.testing.assert_array_equal(epoch(again), e1)


def test_no_auto_batching_and_batch_sampler():
    single = list(DataLoader(Rows(4), batch_size=None))
    assert len(single) == 4 and single[2]["y"] == 2 and isinstance(single[2]["x"], clnet.Tensor)
    custom = DataLoader(Rows(7), batch_sampler=[[6, 0], [3], [1, 2, 4]])
    assert [b["x"].numpy()[:, 0].tolist() for b in custom] == [[30.0, 0.0], [15.0], [5.0, 10.0, 20.0]]


def test_tensor_dataset_on_device_and_from_numpy(device, rng):
    x = rng.standard_normal((50, 3)).astype(np.float32)
    y = rng.integers(0, 4, 50)
    for ds in (TensorDataset(clnet.tensor(x), clnet.tensor(y)), TensorDataset(x, y)):
        loader = DataLoader(ds, batch_size=16, shuffle=True, generator=clnet.Generator().manual_seed(0))
        batches = list(loader)
        xs, ys = [xb.numpy() for xb, _ in batches], [yb.numpy() for _, yb in batches]
        xb, yb = batches[-1]
        assert [len(b) for b in xs] == [16, 16, 16, 2]
        order = np.argsort(np.concatenate(xs)[:, 0])
        np.testing.assert_array_equal(np.concatenate(xs)[order], x[np.argsort(x[:, 0])])
        assert xb.device is device and yb.dtype == clnet.int64
        pairs = {tuple(r): int(lbl) for r, lbl in zip(np.concatenate(xs), np.concatenate(ys))}
        assert all(pairs[tuple(r)] == lbl for r, lbl in zip(x, y))


def test_custom_collate_fn_output_is_kept():
    loader = DataLoader(Rows(6), batch_size=3, collate_fn=lambda b: np.stack([s["x"] for s in b]))
    out = list(loader)
    assert isinstance(out[0], np.ndarray) and out[1].shape == (3, 5)


# --- worker processes ---------------------------------------------------------------------------------
def test_workers_give_the_same_batches_in_order():
    plain = _values(DataLoader(Rows(), batch_size=4))
    loader = DataLoader(Rows(), batch_size=4, num_workers=2)
    assert _values(loader) == plain
    it = iter(DataLoader(Rows(), batch_size=4, num_workers=2, prefetch_factor=1))
    assert _values(it) == plain
    assert all(not p.is_alive() for p in _workers_of(it))  # exhausted: workers shut down


def test_iterable_dataset_with_workers():
    batches = [b.numpy().tolist() for b in DataLoader(Stream(23), batch_size=4, num_workers=3)]
    flat = sum(batches, [])
    assert sorted(flat) == list(range(23)) and batches[0] == [0, 3, 6, 9] and batches[1] == [1, 4, 7, 10]
    dropped = [b.numpy().tolist() for b in DataLoader(Stream(23), batch_size=4, num_workers=2, drop_last=True)]
    assert all(len(b) == 4 for b in dropped)
    assert len(DataLoader(Stream(23), batch_size=4)) == 6


def test_worker_error_is_raised_with_the_workers_traceback():
    with pytest.raises(KeyError) as info:
        list(DataLoader(Failing(), batch_size=2, num_workers=2))
    text = str(info.value)
    assert "in DataLoader worker process" in text and "raise_from_dataset" in text and "sample 5 is missing" in text


def test_dead_worker_raises_instead_of_hanging():
    start = time.monotonic()
    loader = DataLoader(Killing(), batch_size=2, num_workers=2)
    with pytest.raises(RuntimeError, match="exited unexpectedly"):
        list(loader)
    assert time.monotonic() - start < 20


def test_timeout():
    with pytest.raises(RuntimeError, match="timed out after 1 seconds"):
        list(DataLoader(Sleepy(), batch_size=2, num_workers=2, timeout=1))


def test_device_use_in_a_worker_says_why():
    with pytest.raises(RuntimeError, match="cannot use OpenCL devices"):
        list(DataLoader(OnDevice(), batch_size=2, num_workers=1))
    batch = next(iter(DataLoader(OnDevice(), batch_size=2)))  # without workers it works
    np.testing.assert_array_equal(batch.numpy(), [[0, 0], [1, 1]])


def test_breaking_off_shuts_workers_down():
    loader = DataLoader(Rows(), batch_size=2, num_workers=2)
    it = iter(loader)
    next(it)
    procs = _workers_of(it)
    del it
    deadline = time.monotonic() + 15
    while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(p.is_alive() for p in procs)


def test_persistent_workers_serve_several_epochs():
    loader = DataLoader(Rows(), batch_size=4, num_workers=2, persistent_workers=True)
    first = _values(loader)
    pids = [p.pid for p in _workers_of(loader._iterator)]
    it = iter(loader)
    next(it)  # an epoch broken off after one batch
    assert _values(loader) == first
    assert [p.pid for p in _workers_of(loader._iterator)] == pids
    streams = DataLoader(Stream(10), batch_size=3, num_workers=2, persistent_workers=True)
    assert [sorted(sum((b.numpy().tolist() for b in streams), [])) for _ in range(2)] == [list(range(10))] * 2
    loader._iterator._shutdown()
    streams._iterator._shutdown()


def test_worker_seeds_and_init_fn():
    seen = []
    loader = DataLoader(Noisy(), batch_size=1, num_workers=2, generator=clnet.Generator().manual_seed(1),
                        worker_init_fn=seen.append)
    a = [b.item() for b in loader]
    assert a[0] != a[1]  # the two workers draw different numbers
    again = DataLoader(Noisy(), batch_size=1, num_workers=2, generator=clnet.Generator().manual_seed(1))
    assert [b.item() for b in again] == a


def test_big_arrays_travel_in_shared_memory_without_leaks(device, rng):
    x = rng.standard_normal((64, 40, 40)).astype(np.float32)  # 400 KiB per 64-row batch... 100 KiB at 16 rows
    before = set(glob.glob("/dev/shm/psm_*"))
    loader = DataLoader(TensorDataset(x), batch_size=16, num_workers=2)
    got = np.concatenate([xb.numpy() for (xb,) in loader])
    np.testing.assert_array_equal(got, x)
    it = iter(DataLoader(TensorDataset(x), batch_size=16, num_workers=2))
    next(it)
    it._shutdown()  # batches sent but never read: their segments are freed too (each worker unlinks its own)
    assert set(glob.glob("/dev/shm/psm_*")) <= before
    persistent = DataLoader(TensorDataset(x), batch_size=8, num_workers=1, persistent_workers=True, prefetch_factor=2)
    for _ in range(3):  # segments are reused epoch after epoch: a few per worker, not one per batch
        got = np.concatenate([xb.numpy() for (xb,) in persistent])
        np.testing.assert_array_equal(got, x)
    assert len(set(glob.glob("/dev/shm/psm_*")) - before) <= 5
    persistent._iterator._shutdown()
    assert set(glob.glob("/dev/shm/psm_*")) <= before


@pytest.mark.slow
def test_spawn_context():
    loader = DataLoader(Rows(), batch_size=4, num_workers=2, multiprocessing_context="spawn")
    assert _values(loader) == _values(DataLoader(Rows(), batch_size=4))


# --- device copies ------------------------------------------------------------------------------------
def test_pinned_staging_path(device, rng, monkeypatch):
    monkeypatch.setattr(transfer, "STAGE_ON_UNIFIED_MEMORY", True)
    x = rng.standard_normal((40, 7)).astype(np.float32)
    loader = DataLoader(TensorDataset(x, np.arange(40)), batch_size=8, pin_memory=True, num_workers=1)
    assert loader._feeder()._staging is not None
    got = [(xb.numpy(), yb.numpy()) for xb, yb in loader]
    np.testing.assert_array_equal(np.concatenate([g[0] for g in got]), x)
    np.testing.assert_array_equal(np.concatenate([g[1] for g in got]), np.arange(40))


def test_feeder_orders_copies_before_compute(device, rng):
    """Batches staged ahead while the device still works must be complete when a step reads them."""
    feeder = transfer.DeviceFeeder(device)
    n = small(device, 256, 32)
    big = clnet.randn(n, n)
    expected = []
    outs = []
    for i in range(6):
        host = rng.standard_normal((64, 33)).astype(np.float32)
        expected.append(host.sum())
        staged = feeder.stage(transfer.HostArray.__new__(transfer.HostArray, host.shape, host.dtype, host))
        big = big @ big * 0.001  # keep the compute queue busy while the copy is pending
        outs.append(feeder.hand_over(staged).sum())
    feeder.finish()
    np.testing.assert_allclose([o.item() for o in outs], expected, rtol=1e-4, atol=1e-3)

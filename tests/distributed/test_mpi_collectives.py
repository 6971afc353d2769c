"""2-rank collectives on clnet tensors: every op, odd sizes, every dtype, against numpy references."""
from __future__ import annotations

import numpy as np
import pytest

import clnet
import clnet.distributed as dist
from clnet.utils.data import DistributedSampler

from mpi_support import group, needs_ranks, rank_array

pytestmark = needs_ranks

SIZES = [1, 7, 1031]
OPS = {dist.ReduceOp.SUM: lambda a: np.sum(a, 0), dist.ReduceOp.MAX: lambda a: np.max(a, 0),
       dist.ReduceOp.MIN: lambda a: np.min(a, 0), dist.ReduceOp.PRODUCT: lambda a: np.prod(a, 0)}


def _dtypes(device):
    out = [np.float32, np.int32, np.int64, np.uint8]
    if device.fp64:
        out.append(np.float64)
    return out


@pytest.mark.parametrize("n", SIZES)
def test_all_reduce_every_op_and_dtype(device, n):
    rank, world = group()
    for dtype in _dtypes(device):
        for op, ref in OPS.items():
            if dtype == np.uint8 and op is dist.ReduceOp.PRODUCT:
                continue
            mine = rank_array(rank, (n,), dtype, salt=n)
            t = clnet.tensor(mine, device=device)
            dist.all_reduce(t, op=op)
            expected = ref(np.stack([rank_array(r, (n,), dtype, salt=n) for r in range(world)])).astype(dtype)
            np.testing.assert_allclose(t.numpy(), expected, rtol=1e-6, err_msg=f"{op} {np.dtype(dtype).name}")
    avg = clnet.tensor(rank_array(rank, (n, 3), np.float32), device=device)
    dist.all_reduce(avg, op=dist.ReduceOp.AVG)
    expected = np.mean([rank_array(r, (n, 3), np.float32) for r in range(world)], 0)
    np.testing.assert_allclose(avg.numpy(), expected, rtol=1e-6)


def test_bool_and_non_contiguous_and_async(device):
    rank, world = group()
    flags = clnet.tensor(np.array([rank == 0, False, True]), device=device)
    dist.all_reduce(flags)  # SUM on bool is logical or
    assert flags.numpy().tolist() == [True, False, True]
    base = clnet.tensor(rank_array(rank, (4, 6), np.float32), device=device)
    view = base.t()  # a non-contiguous view is reduced in place through its base
    dist.all_reduce(view)
    expected = np.sum([rank_array(r, (4, 6), np.float32) for r in range(world)], 0)
    np.testing.assert_allclose(base.numpy(), expected, rtol=1e-6)
    t = clnet.tensor(np.full(5, rank + 1.0, np.float32), device=device)
    work = dist.all_reduce(t, async_op=True)
    assert work.wait() and work.is_completed()
    assert t.numpy().tolist() == [sum(range(1, world + 1))] * 5
    with pytest.raises(TypeError, match="AVG needs a floating-point"):
        dist.all_reduce(clnet.tensor([1, 2], device=device), op=dist.ReduceOp.AVG)


@pytest.mark.parametrize("n", SIZES)
def test_broadcast_gather_scatter(device, n):
    rank, world = group()
    for src in range(world):
        t = clnet.tensor(rank_array(rank, (n,), np.float32), device=device)
        dist.broadcast(t, src=src)
        np.testing.assert_array_equal(t.numpy(), rank_array(src, (n,), np.float32))
    outs = [clnet.zeros(n, 2, dtype=clnet.int64, device=device) for _ in range(world)]
    dist.all_gather(outs, clnet.tensor(rank_array(rank, (n, 2), np.int64), device=device))
    for r, o in enumerate(outs):
        np.testing.assert_array_equal(o.numpy(), rank_array(r, (n, 2), np.int64))
    flat = clnet.zeros(world * n, device=device)
    dist.all_gather_into_tensor(flat, clnet.tensor(rank_array(rank, (n,), np.float32), device=device))
    np.testing.assert_array_equal(flat.numpy(), np.concatenate([rank_array(r, (n,), np.float32) for r in range(world)]))
    out = clnet.zeros(n, device=device)
    inputs = [clnet.tensor(rank_array(rank, (n,), np.float32, salt=i), device=device) for i in range(world)]
    dist.reduce_scatter(out, inputs)
    expected = np.sum([rank_array(r, (n,), np.float32, salt=rank) for r in range(world)], 0)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6)
    out2 = clnet.zeros(n, device=device)
    dist.reduce_scatter_tensor(out2, clnet.concat(inputs), op=dist.ReduceOp.MAX)
    expected = np.max([rank_array(r, (n,), np.float32, salt=rank) for r in range(world)], 0)
    np.testing.assert_array_equal(out2.numpy(), expected)
    red = clnet.tensor(rank_array(rank, (n,), np.float32), device=device)
    dist.reduce(red, dst=1)
    if rank == 1:
        np.testing.assert_allclose(red.numpy(), np.sum([rank_array(r, (n,), np.float32) for r in range(world)], 0),
                                   rtol=1e-6)
    else:
        np.testing.assert_array_equal(red.numpy(), rank_array(rank, (n,), np.float32))
    got = clnet.zeros(n, device=device)
    pieces = [clnet.tensor(rank_array(i, (n,), np.float32, salt=7), device=device) for i in range(world)] \
        if rank == 0 else None
    dist.scatter(got, pieces, src=0)
    np.testing.assert_array_equal(got.numpy(), rank_array(rank, (n,), np.float32, salt=7))
    dist.barrier()


def test_bad_arguments_fail_before_communicating(device):
    rank, world = group()
    with pytest.raises(ValueError, match="world_size"):
        dist.all_gather([clnet.zeros(2)], clnet.zeros(2))
    with pytest.raises(ValueError, match="not a rank"):
        dist.broadcast(clnet.zeros(2), src=world)
    with pytest.raises(TypeError, match="clnet tensors"):
        dist.all_reduce(np.zeros(3))
    assert dist.get_backend() == "mpi" and dist.is_initialized()


def test_distributed_sampler_reads_the_group():
    rank, world = group()
    sampler = DistributedSampler(range(11), shuffle=True, seed=3)
    assert sampler.rank == rank and sampler.num_replicas == world
    mine = np.array(list(sampler), dtype=np.int64)
    every = [clnet.zeros(len(mine), dtype=clnet.int64) for _ in range(world)]
    dist.all_gather(every, clnet.tensor(mine))
    assert sorted(set(np.concatenate([e.numpy() for e in every]).tolist())) == list(range(11))

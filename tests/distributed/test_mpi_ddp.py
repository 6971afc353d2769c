"""2-rank DistributedDataParallel: the same weights as one process on the global batch, rank 0's state
everywhere, no_sync, unused parameters, BatchNorm buffers from rank 0."""
from __future__ import annotations

import numpy as np
import pytest

import clnet
import clnet.distributed as dist
from clnet import nn
from clnet.nn.parallel import DistributedDataParallel as DDP

from mpi_support import group, needs_ranks

pytestmark = [needs_ranks, pytest.mark.skipif(not hasattr(clnet.Tensor, "register_post_accumulate_grad_hook"),
                                             reason="needs Tensor.register_post_accumulate_grad_hook (issue 13)")]


def _mlp():
    return nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 4))


class _CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(self.pool(self.conv(x).relu()).flatten(1))


def _gathered(t):
    """Every rank's copy of t (to check they agree)."""
    _, world = group()
    out = [clnet.zeros_like(t) for _ in range(world)]
    dist.all_gather(out, t.detach().contiguous())
    return [o.numpy() for o in out]


def _train(make, x, y, steps, optimizer, bucket_cap_mb=None):
    """DDP on this rank's half of each global batch beside one model trained on the whole batch."""
    rank, world = group()
    clnet.manual_seed(1234 + 17 * rank)  # different seeds per rank: construction must broadcast rank 0's
    model = make()
    ddp = DDP(model, bucket_cap_mb=bucket_cap_mb)
    reference = make()
    reference.load_state_dict(model.state_dict())
    opt = optimizer(ddp.parameters())
    ref_opt = optimizer(reference.parameters())
    loss_fn = nn.CrossEntropyLoss()
    for step in range(steps):
        xs, ys = x[step], y[step]
        loss = loss_fn(ddp(clnet.tensor(xs[rank::world])), clnet.tensor(ys[rank::world]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        ref_loss = loss_fn(reference(clnet.tensor(xs)), clnet.tensor(ys))
        ref_opt.zero_grad()
        ref_loss.backward()
        ref_opt.step()
    return model, reference, ddp


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_ddp_matches_single_process_on_the_global_batch(device, kind):
    rng = np.random.default_rng(5)  # the same global batches on every rank
    steps = 4
    if kind == "mlp":
        make, x = _mlp, rng.standard_normal((steps, 16, 12)).astype(np.float32)
        y = rng.integers(0, 4, (steps, 16))
    else:
        make, x = _CNN, rng.standard_normal((steps, 8, 1, 8, 8)).astype(np.float32)
        y = rng.integers(0, 3, (steps, 8))
    model, reference, ddp = _train(make, x, y, steps, lambda ps: clnet.optim.SGD(ps, lr=0.2, momentum=0.9),
                                   bucket_cap_mb=0.0004)
    assert len(ddp.bucket_bytes) > 1  # several buckets, started one after another during backward
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        np.testing.assert_allclose(p.numpy(), q.numpy(), rtol=2e-5, atol=2e-6, err_msg=name)
        copies = _gathered(p)
        for c in copies[1:]:
            np.testing.assert_array_equal(c, copies[0], err_msg=f"{name} differs between ranks")


def test_construction_broadcasts_rank0_state_and_checks_shapes(device):
    rank, world = group()
    clnet.manual_seed(99 + rank)
    model = _mlp()
    before = _gathered(next(model.parameters()))
    assert not np.array_equal(before[0], before[1])  # the ranks really started apart
    DDP(model)
    after = _gathered(next(model.parameters()))
    np.testing.assert_array_equal(after[1], after[0])
    np.testing.assert_array_equal(after[0], before[0])
    wrong = nn.Linear(3, 3 + rank)  # rank 1 builds another shape
    with pytest.raises(RuntimeError, match="ranks built different models"):
        DDP(wrong)


def test_no_sync_accumulates_locally(device):
    rank, world = group()
    rng = np.random.default_rng(8)
    xs = rng.standard_normal((3, 8, 12)).astype(np.float32)
    ys = rng.integers(0, 4, (3, 8))
    clnet.manual_seed(0)
    model = _mlp()
    ddp = DDP(model)
    loss_fn = nn.CrossEntropyLoss()
    with ddp.no_sync():
        for i in range(2):
            loss_fn(ddp(clnet.tensor(xs[i][rank::world])), clnet.tensor(ys[i][rank::world])).backward()
    local = [p.grad.numpy().copy() for p in model.parameters()]
    copies = _gathered(next(model.parameters()).grad)
    assert not np.allclose(copies[0], copies[1])  # not averaged inside no_sync
    loss_fn(ddp(clnet.tensor(xs[2][rank::world])), clnet.tensor(ys[2][rank::world])).backward()
    reference = _mlp()
    reference.load_state_dict(model.state_dict())
    for i in range(3):
        loss_fn(reference(clnet.tensor(xs[i])), clnet.tensor(ys[i])).backward()
    for p, q in zip(model.parameters(), reference.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-4, atol=1e-6)
    assert local  # (the local sums were kept until the synced backward)


class _Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.used = nn.Linear(4, 2)
        self.unused = nn.Linear(4, 2)

    def forward(self, x):
        return self.used(x)


def test_unused_parameters(device):
    rank, world = group()
    x = clnet.tensor(np.ones((2, 4), np.float32))
    strict = DDP(_Branchy())
    strict(x).sum().backward()
    with pytest.raises(RuntimeError, match="find_unused_parameters=True"):
        strict(x)
    strict.reducer.active = False  # (leave it usable for the rest of the run)
    loose = DDP(_Branchy(), find_unused_parameters=True)
    for _ in range(2):
        out = loose(x)
        out.sum().backward()
    assert loose.module.unused.weight.grad is not None
    np.testing.assert_array_equal(loose.module.unused.weight.grad.numpy(), 0)


def test_batchnorm_buffers_come_from_rank0(device):
    rank, world = group()
    clnet.manual_seed(3)
    model = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2))
    ddp = DDP(model)
    opt = clnet.optim.SGD(ddp.parameters(), lr=0.1)
    rng = np.random.default_rng(20 + rank)  # each rank sees its own data
    for _ in range(3):
        loss = ddp(clnet.tensor(rng.standard_normal((8, 6)).astype(np.float32) + rank)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    means = _gathered(model[1].running_mean)
    assert not np.allclose(means[0], means[1])  # each rank updated its own statistics last step
    model.eval()
    with clnet.no_grad():
        ddp(clnet.tensor(np.zeros((2, 6), np.float32)))  # the forward broadcasts rank 0's buffers first
    means = _gathered(model[1].running_mean)
    np.testing.assert_array_equal(means[1], means[0])

"""The memory pool makes steady-state training allocation free: after the first steps, further steps take
every buffer from the pool's cached blocks and none from the driver."""
from __future__ import annotations

import numpy as np

from clnet import bench

from conftest import small


def test_training_steps_reach_a_steady_state_with_no_new_driver_allocations(device):
    shape = small(device, bench.MLPShape((64, 48, 32, 10), batch=16), bench.MLPShape((12, 8, 8, 4), batch=4))
    layers, x, y = bench.mlp_init(shape, np.random.default_rng(0))
    model = bench.ClnetMLP(device, layers, x, y)
    pool = device.pool._pool
    first = model.step().item()
    for _ in range(2):  # warm-up: the pool grows to what one step needs
        loss = model.step()
    device.synchronize()
    managed, blocks = pool.managed_bytes, pool.held_blocks + pool.active_blocks
    for _ in range(5):
        loss = model.step()
    device.synchronize()
    assert pool.managed_bytes == managed
    assert pool.held_blocks + pool.active_blocks == blocks
    assert np.isfinite(loss.item()) and loss.item() < first  # it did train

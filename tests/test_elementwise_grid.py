"""Strided and broadcast elementwise layouts, including the 2-D range CPUs get (inner dimension x the rest):
results against numpy in float64 at edges (inner sizes that are not a multiple of the work-group),
ranks 2-4, transposed views, in-place writes into views and bool outputs."""
from __future__ import annotations

import numpy as np
import pytest

import clnet
from clnet.ops import elementwise as E

from conftest import assert_close, small


def _plan_dims(expr_fragment):
    """Work-group ranks of the plans whose expression contains `expr_fragment` (latest launches)."""
    return {len(p.lsize) for k, p in E._PLANS.items() if expr_fragment in k[1] and p.kern is not None}


@pytest.mark.parametrize("shape, other", [
    ((7, 130), (130,)),          # rank 2 after collapsing, inner 130: two groups, the last one partial
    ((3, 5, 65), (5, 1)),        # rank 3: outer coordinates split over two dimensions
    ((2, 3, 4, 70), (3, 1, 70)),  # rank 4
])
def test_broadcast_layouts_match_numpy(device, rng, shape, other):
    if small(device, False, True):
        shape = shape[:-1] + (min(shape[-1], 66),)
        other = other[:-1] + ((min(other[-1], 66),) if other[-1] != 1 else (1,))
    x = rng.standard_normal(shape)
    y = rng.standard_normal(other)
    tx, ty = clnet.tensor(x, dtype="float32", device=device), clnet.tensor(y, dtype="float32", device=device)
    E._PLANS.clear()
    assert_close((tx * ty + 0.5).numpy(), x.astype(np.float32).astype(np.float64) * y.astype(np.float32) + 0.5,
                 rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal((tx > ty).numpy(), x.astype(np.float32) > y.astype(np.float32))
    if device.type == "cpu" and shape[-1] >= device.profile.elementwise_wg:  # an inner dimension that fills a group
        assert 2 in _plan_dims("v0 > v1"), "a CPU should run this layout on the 2-D range"


def test_transposed_view_and_inplace_into_a_view(device, rng):
    x = rng.standard_normal((67, 129)).astype(np.float32)
    tx = clnet.tensor(x, device=device)
    assert_close(clnet.exp(tx.T).numpy(), np.exp(x.T.astype(np.float64)), rtol=1e-5, atol=1e-6)
    assert_close(tx.T.contiguous().numpy(), x.T, rtol=0, atol=0)

    a = rng.standard_normal((66, 140)).astype(np.float32)
    b = rng.standard_normal((66, 137)).astype(np.float32)
    ta, tb = clnet.tensor(a, device=device), clnet.tensor(b, device=device)
    ta[:, 3:] += tb  # a strided view of a: rows of 137 inside rows of 140
    expect = a.copy()
    expect[:, 3:] += b
    assert_close(ta.numpy(), expect, rtol=1e-6, atol=1e-6)


def test_outer_count_past_the_grid_limit_falls_back_to_one_dimension(device, rng):
    if small(device, False, True):
        pytest.skip("70000 x 64 elements: too slow on a simulator")
    x = rng.standard_normal((70000, 64)).astype(np.float32)
    row = rng.standard_normal(64).astype(np.float32)
    tx, tr = clnet.tensor(x, device=device), clnet.tensor(row, device=device)
    E._PLANS.clear()
    assert_close((tx - tr).numpy(), x.astype(np.float64) - row, rtol=1e-6, atol=1e-6)
    assert _plan_dims("v0 - v1") == {1}


def test_two_dimensional_range_is_correct_on_any_device(device, rng, monkeypatch):
    """The 2-D kernel forced on every device (GPUs and simulators normally take the 1-D one), so Oclgrind's
    bounds and race checks see it too."""
    monkeypatch.setattr(E, "_use_grid2", lambda dev, sizes, rank, wg: rank >= 2 and sizes[-1] >= wg)
    E._PLANS.clear()
    wg = device.profile.elementwise_wg
    x = rng.standard_normal((3, 4, wg + 3)).astype(np.float32)
    y = rng.standard_normal((4, 1)).astype(np.float32)
    tx, ty = clnet.tensor(x, device=device), clnet.tensor(y, device=device)
    assert_close((tx + ty).numpy(), x.astype(np.float64) + y, rtol=1e-6, atol=1e-6)
    assert_close(tx.permute(2, 0, 1).contiguous().numpy(), x.transpose(2, 0, 1), rtol=0, atol=0)
    assert _plan_dims("v0 + v1") == {2}
    E._PLANS.clear()

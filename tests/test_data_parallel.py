"""nn.DataParallel over two OpenCL devices in one process, against the same module on one device."""
from __future__ import annotations

import numpy as np
import pytest

import clnet
from clnet import nn
from clnet.backend.devices import all_devices
from clnet.nn.parallel import gather, replicate, scatter

REAL = [d for d in all_devices() if not d.is_simulator and d.implementation not in ("rusticl", "clover")]
needs_two = pytest.mark.skipif(len(REAL) < 2, reason="needs two OpenCL devices (e.g. Debian's PoCL and the "
                                                     "pocl-binary-distribution wheel's)")


def _model(device):
    clnet.manual_seed(4)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)).to(device)


@needs_two
@pytest.mark.slow  # builds every kernel of a small MLP on a second PoCL (about 50 s cold)
def test_data_parallel_matches_one_device():
    first, second = REAL[0], REAL[1]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((10, 6)).astype(np.float32)
    y = rng.standard_normal((10, 3)).astype(np.float32)
    single = _model(first)
    parallel_module = _model(first)
    dp = nn.DataParallel(parallel_module, device_ids=[first, second])
    out = dp(clnet.tensor(x, device=first))
    assert out.device is first and out.shape == (10, 3)
    ref = single(clnet.tensor(x, device=first))
    np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-5, atol=1e-6)
    target = clnet.tensor(y, device=first)
    nn.functional.mse_loss(out, target).backward()  # gradients come back from the second device, summed
    nn.functional.mse_loss(ref, target).backward()
    for (name, p), q in zip(parallel_module.named_parameters(), single.parameters()):
        assert p.grad is not None and p.grad.device is first, name
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-4, atol=1e-5, err_msg=name)


@needs_two
def test_scatter_gather_replicate_pieces():
    first, second = REAL[0], REAL[1]
    x = clnet.tensor(np.arange(12, dtype=np.float32).reshape(6, 2), device=first)
    parts = scatter((x, {"k": x}, 3), [first, second])
    assert len(parts) == 2 and parts[1][0].device is second and parts[1][2] == 3
    np.testing.assert_array_equal(parts[1][1]["k"].numpy(), x.numpy()[3:])
    joined = gather([parts[0][0], parts[1][0]], first)
    np.testing.assert_array_equal(joined.numpy(), x.numpy())
    lin = nn.Linear(2, 2).to(first)
    copies = replicate(lin, [first, second])
    assert copies[0] is lin and copies[1].weight.device is second and not copies[1].weight.is_leaf


def test_one_device_is_the_module_itself(device):
    model = nn.Linear(3, 2).to(device)
    dp = nn.DataParallel(model, device_ids=[device])
    x = clnet.randn(4, 3, device=device)
    np.testing.assert_array_equal(dp(x).numpy(), model(x).numpy())
    assert list(dp.state_dict()) == ["module.weight", "module.bias"]
    if len(REAL) > 1:
        other = next(d for d in REAL if d is not device)
        with pytest.raises(RuntimeError, match="module must have its parameters and buffers on device"):
            nn.DataParallel(model, device_ids=[other, device])

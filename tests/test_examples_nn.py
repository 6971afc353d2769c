"""The nn lecture examples run in their small mode and learn (the loss falls)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import clnet
from conftest import simulator_subset

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# On Oclgrind one example trains (its Linear, ReLU, loss and optimizer kernels are the other two's; the
# three took 6 of the nn stage's 13 simulated minutes); all three run on every other device.
@pytest.mark.parametrize("name,drop", simulator_subset(
    [("nn_sequential", 0.8), ("nn_module", 0.9), ("parallel_block", 0.3)], keep=(0,), unpack=True))
def test_example_learns(device, name, drop, capsys):
    example = _load(name)
    losses = example.main(["--small", "--device", device.spec])
    assert len(losses) == 60 and np.all(np.isfinite(losses))
    assert losses[-1] < drop * losses[0], f"{name}: loss went from {losses[0]} to {losses[-1]}"
    assert "loss" in capsys.readouterr().out


def test_parallel_block_is_registered_inside_sequential(device):
    example = _load("parallel_block")
    model = clnet.nn.Sequential(example.ParallelBlock(4, 3), example.ParallelBlock(3, 3), clnet.nn.Linear(3, 2))
    names = [n for n, _ in model.named_parameters()]
    assert names[:4] == ["0.linear1.weight", "0.linear1.bias", "0.linear2.weight", "0.linear2.bias"]
    assert len(names) == 10


def test_two_layer_net_forward_is_the_lectures(device, rng):
    example = _load("nn_module")
    net = example.TwoLayerNet(5, 4, 2)
    x = rng.standard_normal((3, 5)).astype(np.float32)
    w1, b1 = net.linear1.weight.numpy(), net.linear1.bias.numpy()
    w2, b2 = net.linear2.weight.numpy(), net.linear2.bias.numpy()
    expected = np.maximum(x @ w1.T + b1, 0) @ w2.T + b2
    np.testing.assert_allclose(net(clnet.tensor(x)).numpy(), expected, rtol=1e-5, atol=1e-6)

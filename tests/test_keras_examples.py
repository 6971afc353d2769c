"""The Keras examples run in their small mode: the lecture's snippets learn, and fit equals the tape loop."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from keras_test_support import only_small_models_on_simulators  # noqa: F401  (autouse: small models on Oclgrind)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lecture_snippets_learn_and_agree(device, capsys):
    fit_losses = _load("keras_dense").main(["--small", "--device", device.spec, "--verbose", "2"])
    tape_losses = _load("keras_gradient_tape").main(["--small", "--device", device.spec])
    assert len(fit_losses) == len(tape_losses) == 50
    assert fit_losses[-1] < 0.8 * fit_losses[0]
    # the same seed, data and updates: compile/fit and the GradientTape loop take identical steps
    np.testing.assert_allclose(fit_losses, tape_losses, rtol=1e-5)
    out = capsys.readouterr().out
    assert "Epoch 50/50" in out and "after 50 steps" in out


@pytest.mark.slow
def test_mnist_convnet_small_run(device, tmp_path, capsys):
    pytest.importorskip("sklearn")
    result = _load("keras_mnist_convnet").main(["--small", "--device", device.spec, "--verbose", "0",
                                                "--plot", str(tmp_path / "history.png")])
    assert sorted(result["history"]) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert result["history"]["loss"][-1] < result["history"]["loss"][0]
    assert result["test_accuracy"] > 0.25  # 2 epochs on 256 images (chance is 0.1); the full run reaches ~98%
    out = capsys.readouterr().out
    assert "Total params: 34,826" in out and "Test accuracy:" in out
    try:
        import matplotlib  # noqa: F401
        assert (tmp_path / "history.png").stat().st_size > 0
    except ImportError:
        pass

"""The digits CNN example runs end to end on a small slice and its training loss goes down."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from conftest import small

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "train_digits_cnn.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("train_digits_cnn", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.big(reason="the example scores the whole test split (360 images, 16/32-channel convs): over 8 "
                    "minutes on Oclgrind; there tests/test_nn_layers.py's small CNN and "
                    "tests/test_keras_small_model.py train a CNN end to end")
def test_digits_cnn_example_trains(device, tmp_path, capsys):
    pytest.importorskip("sklearn")
    example = _load_example()
    limit, epochs = small(device, (512, 3), (64, 2))
    result = example.main(["--device", device.spec, "--epochs", str(epochs), "--limit", str(limit),
                           "--batch-size", "32", "--plot", str(tmp_path / "loss.png")])
    history = result["history"]
    out = capsys.readouterr().out
    assert len(history) == epochs and all(np.isfinite(history))
    assert "epoch   1  loss" in out and "test accuracy" in out
    assert history[-1] < history[0], f"training loss did not decrease: {history}"
    if not small(device, False, True):
        # 3 epochs on 512 images already classify far above chance (10%)
        assert result["test_accuracy"] > 0.5, result["test_accuracy"]
    try:
        import matplotlib  # noqa: F401
        assert (tmp_path / "loss.png").stat().st_size > 1000
    except ImportError:
        assert "no loss plot" in out

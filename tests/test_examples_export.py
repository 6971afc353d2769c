"""The lecture's static-graph slides, ported in examples/ with only the import changed, run as scripts:
the ONNX slide's model.proto is checked in onnxruntime, the TorchScript slide prints its graph, and the
@tf.function slides train and time the compiled function."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import clnet

ROOT = Path(__file__).resolve().parents[1]


def run_example(name, cwd, device, timeout=600):
    env = dict(os.environ, PYTHONPATH=str(ROOT), CLNET_DEVICE=device.spec)
    done = subprocess.run([sys.executable, str(ROOT / "examples" / name)], cwd=str(cwd), env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_onnx_slide_writes_a_file_onnxruntime_runs(device, tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    out = run_example("onnx_export.py", tmp_path, device)
    assert "Gemm" in out and "Relu" in out  # verbose=True prints the graph, as the slide shows
    proto = tmp_path / "model.proto"
    session = ort.InferenceSession(str(proto), providers=["CPUExecutionProvider"])
    assert [n.op_type for n in __import__("onnx").load(str(proto)).graph.node] == ["Gemm", "Relu", "Gemm"]
    x = np.random.default_rng(0).standard_normal((64, 1000)).astype(np.float32)
    expected = clnet.onnx.load(proto, device=device)(clnet.tensor(x, device=device)).numpy()
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert got.shape == (64, 10)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_torchscript_slide_prints_the_traced_graph(device, tmp_path):
    out = run_example("torchscript_trace.py", tmp_path, device)
    lines = out.strip().splitlines()
    assert lines[0] == "graph(%x : float32[3, 4], %h : float32[3, 4]):"
    assert "linear(%x, %self.linear.weight, %self.linear.bias)" in out and "tanh(" in out
    assert lines[-1] == "  return (%2, %2)"


@pytest.mark.slow
def test_tf_function_slides_train_and_time(device):
    """The @tf.function slides run in this process (on the test device): the compiled function gives what the
    eager model gives, and the slide's training step keeps lowering the loss."""
    import runpy
    np.random.seed(0)
    clnet.manual_seed(0)
    ns = runpy.run_path(str(ROOT / "examples" / "tf_function.py"), run_name="tf_function_slide")
    x, y, model = ns["x"], ns["y"], ns["model"]
    y_static, loss_static = ns["model_static"](x, y)
    y_eager = model(x)
    loss_eager = clnet.keras.losses.MeanSquaredError()(y_eager, y)
    np.testing.assert_allclose(y_static.numpy(), y_eager.numpy(), rtol=1e-4, atol=1e-5)
    assert float(loss_static) == pytest.approx(float(loss_eager), rel=1e-4)
    losses = []
    for _ in range(5):  # the slide's training step, continued: the loss keeps falling
        with clnet.GradientTape() as tape:
            _, loss = ns["model_func"](x, y)
        grads = tape.gradient(loss, model.trainable_variables)
        ns["optimizer"].apply_gradients(zip(grads, model.trainable_variables))
        losses.append(float(loss))
    assert losses[-1] < losses[0] <= float(ns["loss"]) + 1e-6, losses

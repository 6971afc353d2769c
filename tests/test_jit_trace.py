"""clnet.jit.trace / save / load: the lecture's TorchScript slide, traced graphs equal to eager, and a saved
graph that runs in a fresh process where the code that defined the model cannot be imported."""
import json
import os
import subprocess
import sys
import textwrap
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

import clnet
import clnet.jit

from conftest import assert_close

ROOT = Path(__file__).resolve().parents[1]


class MyCell(clnet.nn.Module):
    """The lecture's "Static PyTorch: TorchScript" cell."""

    def __init__(self):
        super().__init__()
        self.linear = clnet.nn.Linear(4, 4)

    def forward(self, x, h):
        new_h = clnet.tanh(self.linear(x) + h)
        return new_h, new_h


def test_lecture_cell_traces_prints_and_shares_parameters(device):
    clnet.manual_seed(0)
    my_cell = MyCell()
    x, h = clnet.rand(3, 4), clnet.rand(3, 4)
    traced_cell = clnet.jit.trace(my_cell, (x, h))
    text = str(traced_cell.graph)
    assert text.splitlines()[0] == "graph(%x : float32[3, 4], %h : float32[3, 4]):"
    assert "linear(%x, %self.linear.weight, %self.linear.bias)" in text and "tanh(" in text
    out = traced_cell(x, h)
    expected = my_cell(x, h)
    assert isinstance(out, tuple) and len(out) == 2
    assert_close(out[0], expected[0].numpy())
    assert traced_cell.linear.weight is my_cell.linear.weight
    out[0].sum().backward()
    assert my_cell.linear.weight.grad is not None


class Net(clnet.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = clnet.nn.Conv2d(3, 4, 3, padding=1), clnet.nn.BatchNorm2d(4)
        self.drop, self.fc = clnet.nn.Dropout(0.5), clnet.nn.Linear(16, 5)

    def forward(self, x):
        x = clnet.nn.functional.max_pool2d(clnet.relu(self.bn(self.conv(x))), 2)
        x = x.view(x.size(0), -1)
        scale = clnet.ones(x.shape[1], device=x.device) * 0.5       # made inside: a row with a device argument
        return clnet.nn.functional.softmax(clnet.nn.functional.leaky_relu(self.fc(self.drop(x * scale)), 0.1), 1)


def test_traced_net_equals_eager_and_round_trips(device, rng, tmp_path):
    clnet.manual_seed(0)
    net = Net().eval()
    x = clnet.tensor(rng.standard_normal((2, 3, 4, 4)).astype(np.float32))
    traced = clnet.jit.trace(net, x)
    assert_close(traced(x), net(x).numpy(), rtol=1e-5, atol=1e-6)
    traced.save(tmp_path / "net.pt")
    loaded = clnet.jit.load(tmp_path / "net.pt", map_location=device)
    assert list(loaded.state_dict()) == list(net.state_dict())
    assert not loaded.training and loaded.original_name == "Net"
    assert_close(loaded(x), net(x).numpy(), rtol=1e-5, atol=1e-6)
    ops = [n.op for n in loaded.graph.nodes]
    assert "conv2d" in ops and "pointwise" in ops and "full" in ops  # batch_norm/leaky_relu rows, ones(...)
    loss = loaded(x).sum() * 0 + (loaded(x) ** 2).mean()
    loss.backward()
    assert loaded.conv.weight.grad is not None and loaded.fc.bias.grad is not None


def test_trace_warnings(device):
    net = clnet.nn.Sequential(clnet.nn.Linear(8, 8), clnet.nn.Dropout(0.5)).train()
    with pytest.warns(clnet.jit.TracerWarning, match="different results"):
        clnet.jit.trace(net, clnet.randn(4, 8))  # dropout in train mode: a new mask on every call

    def reads_back(x):
        return x * float(x.sum().item())
    with pytest.warns(clnet.jit.TracerWarning, match="read tensor values on the host"):
        clnet.jit.trace(reads_back, clnet.ones(3), check_trace=False)


def test_trace_a_function_with_a_captured_tensor(device, tmp_path):
    w = clnet.tensor(np.arange(6, dtype=np.float32).reshape(2, 3))

    def f(a, b):
        return clnet.matmul(a, w) + b, a.sum()
    a, b = clnet.ones(4, 2), clnet.ones(4, 3)
    traced = clnet.jit.trace(f, (a, b))
    assert [r.kind for r in traced.graph.refs_in(traced.graph.nodes[0].args)] == ["input", "const"]
    traced.save(tmp_path / "f.pt")
    y, s = clnet.jit.load(tmp_path / "f.pt")(a, b)
    assert_close(y, np.ones((4, 2)) @ np.arange(6).reshape(2, 3) + 1)
    assert float(s.item()) == 8.0


def test_script_traces_on_first_call(device, tmp_path):
    cell = clnet.jit.script(MyCell())
    with pytest.raises(RuntimeError, match="first call"):
        cell.save(tmp_path / "cell.pt")
    x, h = clnet.rand(3, 4), clnet.rand(3, 4)
    cell(x, h)
    assert "tanh" in str(cell.graph)
    cell.save(tmp_path / "cell.pt")
    assert_close(clnet.jit.load(tmp_path / "cell.pt")(x, h)[0], cell(x, h)[0].numpy())


def test_save_and_load_through_file_objects(device):
    import io
    cell = MyCell()
    x, h = clnet.rand(3, 4), clnet.rand(3, 4)
    buf = io.BytesIO()
    clnet.jit.save(clnet.jit.trace(cell, (x, h)), buf)
    buf.seek(0)
    assert_close(clnet.jit.load(buf)(x, h)[0], cell(x, h)[0].numpy())


def test_input_checks_and_save_type(device, tmp_path):
    traced = clnet.jit.trace(MyCell(), (clnet.rand(3, 4), clnet.rand(3, 4)))
    with pytest.raises(TypeError, match="traced with 2 input"):
        traced(clnet.rand(3, 4))
    with pytest.raises(TypeError, match="traced as float32"):
        traced(clnet.rand(3, 4, dtype=clnet.float64) if device.fp64 else clnet.rand(3), clnet.rand(3, 4))
    with pytest.raises(TypeError, match="saves a traced module"):
        clnet.jit.save(MyCell(), tmp_path / "m.pt")


def test_tampered_pointwise_expression_is_refused(device, tmp_path):
    traced = clnet.jit.trace(Net().eval(), clnet.randn(2, 3, 4, 4))
    traced.save(tmp_path / "net.pt")
    with zipfile.ZipFile(tmp_path / "net.pt") as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    head = json.loads(members["graph.json"])
    row = next(n for n in head["nodes"] if n["op"] == "pointwise")
    row["args"]["tuple"][1] = {"str": "v0[100000]"}
    members["graph.json"] = json.dumps(head).encode()
    with zipfile.ZipFile(tmp_path / "bad.pt", "w") as zf:
        for n, data in members.items():
            zf.writestr(n, data)
    with pytest.raises(clnet.FileFormatError, match="holds an expression clnet refuses"):
        clnet.jit.load(tmp_path / "bad.pt")


MODEL_SOURCE = textwrap.dedent('''
    import clnet
    import clnet.nn.functional as F

    class GoneNet(clnet.nn.Module):
        """Defined in a module that is deleted before the saved graph is loaded."""

        def __init__(self):
            super().__init__()
            self.conv = clnet.nn.Conv2d(1, 3, 3)
            self.fc = clnet.nn.Linear(12, 4)

        def forward(self, x):
            x = F.max_pool2d(clnet.relu(self.conv(x)), 2)
            return F.log_softmax(self.fc(x.flatten(1)), dim=1)
''')

LOADER = textwrap.dedent('''
    import importlib.util, sys
    import numpy as np
    import clnet, clnet.jit
    assert importlib.util.find_spec("gone_model") is None, "the model's code must not be importable"
    model = clnet.jit.load(sys.argv[1])
    x = clnet.tensor(np.load(sys.argv[2]))
    np.save(sys.argv[3], model(x).numpy())
    print(model.original_name, len(model.graph.nodes))
''')


def test_saved_graph_runs_in_a_fresh_process_without_the_model_code(device, rng, tmp_path):
    import importlib.util
    src = tmp_path / "gone_model.py"
    src.write_text(MODEL_SOURCE)
    spec = importlib.util.spec_from_file_location("gone_model", src)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.GoneNet()
    x = rng.standard_normal((2, 1, 6, 6)).astype(np.float32)
    clnet.jit.trace(model, clnet.tensor(x)).save(tmp_path / "gone.pt")
    expected = model(clnet.tensor(x)).numpy()
    src.unlink()
    del module, model
    np.save(tmp_path / "x.npy", x)
    env = dict(os.environ, PYTHONPATH=str(ROOT), CLNET_DEVICE=device.spec if hasattr(device, "spec") else "")
    done = subprocess.run([sys.executable, "-c", LOADER, str(tmp_path / "gone.pt"), str(tmp_path / "x.npy"),
                           str(tmp_path / "y.npy")], cwd=str(ROOT), env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["GoneNet", "6"]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-5, atol=1e-6)


def test_warnings_module_is_quiet_for_a_plain_trace(device):
    with warnings.catch_warnings():
        warnings.simplefilter("error", clnet.jit.TracerWarning)
        clnet.jit.trace(MyCell(), (clnet.rand(3, 4), clnet.rand(3, 4)))


class Tagger(clnet.nn.Module):
    """Embedding -> bidirectional LSTM -> Linear: rows with tuples of tensors as arguments and results."""

    def __init__(self):
        super().__init__()
        self.emb, self.lstm = clnet.nn.Embedding(12, 5), clnet.nn.LSTM(5, 4, bidirectional=True)
        self.out = clnet.nn.Linear(8, 3)

    def forward(self, tokens):
        y, (h, c) = self.lstm(self.emb(tokens))
        return self.out(y), h


def test_recurrent_model_round_trips(device, rng, tmp_path):
    clnet.manual_seed(0)
    model = Tagger().eval()
    tokens = clnet.tensor(rng.integers(0, 12, (5, 2)))
    clnet.jit.trace(model, tokens).save(tmp_path / "tagger.pt")
    loaded = clnet.jit.load(tmp_path / "tagger.pt")
    for got, want in zip(loaded(tokens), model(tokens)):
        assert_close(got, want.numpy(), rtol=1e-5, atol=1e-6)
    assert "rnn_layer" in {n.op for n in loaded.graph.nodes}

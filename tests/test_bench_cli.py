"""`clnet bench`: runs on every device with tiny sizes (--quick), prints each figure, refuses wrong results.

Speed itself is measured in benchmarks/, never asserted here; these tests check that the command works,
that its numpy reference is right (against PyTorch), and that a wrong result withholds the timings.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import clnet
from clnet import bench, cli


def run_cli(capsys, *argv) -> tuple[int, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


def _figure(out: str, label: str, unit: str, who: str = "clnet") -> float:
    m = re.search(rf"{re.escape(label)}\s.*?{who}\s+([0-9.e+-]+) {re.escape(unit)}", out)
    assert m, f"no {who} figure in {unit} for {label!r} in:\n{out}"
    return float(m.group(1))


def test_quick_bench_prints_every_figure(capsys, device):
    code, out = run_cli(capsys, "bench", "--quick", "--device", device.spec)
    assert code == 0, out
    assert f"clnet bench on {device.describe()}" in out
    for n in bench.QUICK["sizes"]:
        assert _figure(out, f"n={n}", "GFLOP/s") > 0
    assert _figure(out, f"n={bench.QUICK['n']}", "GB/s") > 0
    assert _figure(out, "step", "ms") > 0
    errors = [float(e) for e in re.findall(r"max rel err ([0-9.e+-]+)\)", out)]
    assert len(errors) == len(bench.QUICK["sizes"]) + 2
    assert max(errors) < 1e-2
    if device.type == "cpu":  # numpy's figure beside each one
        assert out.count("clnet/numpy") == len(errors)
        assert _figure(out, "step", "ms", who="numpy") > 0


def test_no_numpy_flag_drops_the_numpy_column(capsys, device):
    if device.type != "cpu":
        pytest.skip("numpy's column is shown on CPU devices only")
    code, out = run_cli(capsys, "bench", "--quick", "--reps", "1", "--no-numpy", "--device", device.spec)
    assert code == 0, out
    assert "numpy" not in out.replace("max rel err", "")


def test_wrong_result_withholds_timings(capsys, device, monkeypatch):
    real = clnet.Tensor.__matmul__
    monkeypatch.setattr(clnet.Tensor, "__matmul__", lambda a, b: real(a, b) * 1.01)
    code, out = run_cli(capsys, "bench", "--quick", "--device", device.spec)
    assert code == 1
    assert "wrong result" in out and "GEMM n=16" in out
    assert not re.search(r"clnet\s+[0-9.e+-]+ GFLOP/s", out)


def test_unknown_device_is_a_clear_error(capsys):
    code, out = run_cli(capsys, "bench", "--quick", "--device", "no-such-device-xyz")
    assert code == 1
    assert "bench:" in out and "no-such-device-xyz" in out


def test_numpy_mlp_step_matches_pytorch():
    """The hand-written numpy step is the reference clnet is checked against: check it against PyTorch."""
    torch = pytest.importorskip("torch")
    shape = bench.MLPShape((12, 9, 7, 5), batch=6, lr=1e-2)
    layers, x, y = bench.mlp_init(shape, np.random.default_rng(3))
    ref = bench.NumpyMLP(layers, x, y, shape.lr)
    lins = [torch.nn.Linear(w.shape[1], w.shape[0]) for w, _ in layers]
    with torch.no_grad():
        for lin, (w, b) in zip(lins, layers):
            lin.weight.copy_(torch.from_numpy(w))
            lin.bias.copy_(torch.from_numpy(b))
    model = torch.nn.Sequential(lins[0], torch.nn.ReLU(), lins[1], torch.nn.ReLU(), lins[2])
    opt = torch.optim.Adam(model.parameters(), lr=shape.lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(model(xt), yt)
        ref_loss, _ = ref.loss_and_grads()
        np.testing.assert_allclose(ref_loss, loss.item(), rtol=1e-5)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ref.step()
    for got, want in zip(ref.params, model.parameters()):
        np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-4, atol=1e-5)

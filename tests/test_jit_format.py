"""clnet.jit's file: a graph of op rows + arrays, round-tripped exactly, and refused with a clear
FileFormatError when damaged or tampered with (nothing is imported, evaluated or run by name)."""
import io
import json
import zipfile

import numpy as np
import pytest

import clnet
from clnet.jit.format import load_graph
from clnet.jit.graph import Graph, Node, Ref, TensorSpec
from clnet.jit.module import TracedModule, load_module
from clnet.nn import functional as F

from conftest import assert_close

CALLS = []


def _logged(fn):
    def run(*args, **kwargs):
        CALLS.append(fn.__name__)
        return fn(*args, **kwargs)
    run.__name__ = fn.__name__
    return run


OPS = {"linear": _logged(F.linear), "add": _logged(clnet.add), "tanh": _logged(clnet.tanh),
       "getitem": _logged(lambda x, key: x[key]), "split": _logged(clnet.split), "mul": _logged(clnet.mul)}


def cell_graph():
    """The lecture's MyCell (tanh(linear(x) + h), returned twice) plus a slice, a split and a constant."""
    x, h = TensorSpec("x", np.dtype(np.float32), (3, 4)), TensorSpec("h", np.dtype(np.float32), (3, 4))
    v = lambda k: Ref("value", k)  # noqa: E731
    nodes = [
        Node("linear", (Ref("input", 0), Ref("param", "linear.weight"), Ref("param", "linear.bias")), {}, v(0)),
        Node("add", (v(0), Ref("input", 1)), {}, v(1)),
        Node("tanh", (v(1),), {}, v(2)),
        Node("getitem", (v(2), (slice(None), slice(1, None, 2), Ellipsis)), {}, v(3)),
        Node("split", (v(2), [1, 3]), {"dim": 1}, (v(4), v(5))),
        Node("mul", (v(5), Ref("const", 0)), {}, v(6)),
    ]
    values = {k: TensorSpec("", np.dtype(np.float32), s) for k, s in
              enumerate([(3, 4), (3, 4), (3, 4), (3, 2), (3, 1), (3, 3), (3, 3)])}
    consts = [np.array([0.5, -1.0, 2.0], np.float32)]
    return Graph([x, h], nodes, (v(2), v(2), v(3), v(6)), consts, values)


def make_cell(device):
    rng = np.random.default_rng(0)
    params = {"linear.weight": clnet.tensor(rng.standard_normal((4, 4)).astype(np.float32), device=device),
              "linear.bias": clnet.tensor(rng.standard_normal(4).astype(np.float32), device=device)}
    buffers = {"steps": clnet.tensor(np.array([3], np.int64), device=device)}
    return TracedModule(cell_graph(), params, buffers, OPS, "MyCell")


def reference(x, h, w, b):
    y = np.tanh(x @ w.T + b + h)
    return y, y, y[:, 1::2], y[:, 1:] * np.array([0.5, -1.0, 2.0], np.float32)


def test_round_trip_runs_and_trains(device, rng, tmp_path):
    cell = make_cell(device)
    x, h = (rng.standard_normal((3, 4)).astype(np.float32) for _ in range(2))
    w, b = cell.linear.weight.numpy(), cell.linear.bias.numpy()
    cell.save(tmp_path / "cell.pt")
    loaded = load_module(tmp_path / "cell.pt", OPS, device=device)
    assert loaded.original_name == "MyCell" and not loaded.training
    assert sorted(loaded.state_dict()) == ["linear.bias", "linear.weight", "steps"]
    assert_close(loaded.steps, np.array([3]))
    outs = loaded(clnet.tensor(x, device=device), clnet.tensor(h, device=device))
    for got, want in zip(outs, reference(x, h, w, b)):
        assert_close(got, want, rtol=1e-5, atol=1e-6)
    outs[0].sum().backward()
    assert loaded.linear.weight.grad is not None and loaded.linear.weight.requires_grad
    text = str(loaded.graph)
    assert "linear(%x, %self.linear.weight, %self.linear.bias)" in text and "%2 : float32[3, 4] = tanh(%1)" in text
    assert "getitem(%2, (:, 1::2, ...))" in text and "split(%2, [1, 3], dim=1)" in text


def _members(path):
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _write(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for n, data in members.items():
            zf.writestr(n, data)


def _tampered(tmp_path, good, edit):
    members = _members(good)
    head = json.loads(members["graph.json"])
    edit(head, members)
    members["graph.json"] = json.dumps(head).encode()
    bad = tmp_path / "bad.pt"
    _write(bad, members)
    return bad


TAMPERINGS = {
    "unknown op": (lambda h, m: h["nodes"][2].update(op="os.system"), "the op 'os.system', which this clnet"),
    "value used before it is made": (lambda h, m: h["nodes"][0]["args"]["tuple"].__setitem__(0, {"ref": ["value", 5]}),
                                     "refers to value 5"),
    "unknown parameter": (lambda h, m: h["nodes"][0]["args"]["tuple"].__setitem__(1, {"ref": ["param", "evil"]}),
                          "refers to param 'evil'"),
    "input out of range": (lambda h, m: h["nodes"][1]["args"]["tuple"].__setitem__(1, {"ref": ["input", 7]}),
                           "refers to input"),
    "code as an argument": (lambda h, m: h["nodes"][3]["args"]["tuple"].__setitem__(1, {"eval": "__import__('os')"}),
                            "malformed argument"),
    "result numbering": (lambda h, m: h["nodes"][1].update(out={"ref": ["value", 9]}), "is not the next value"),
    "wrong format": (lambda h, m: h.update(format="pickle/1"), "unknown format"),
    "missing nodes": (lambda h, m: h.pop("nodes"), "lacks its 'nodes'"),
    "array not listed": (lambda h, m: m.update({"arrays/000099.npy": m["arrays/000000.npy"]}),
                         "do not match the ones the graph lists"),
    "array missing": (lambda h, m: m.pop("arrays/000001.npy"), "do not match"),
    "shape mismatch": (lambda h, m: h["params"][0].update(shape=[2, 8]), "but the manifest says"),
    "non-numeric dtype": (lambda h, m: h["params"][1].update(dtype="|O"), "declares dtype object"),
    "bad input spec": (lambda h, m: h["inputs"][0].update(shape=[-3, 4]), "malformed input"),
    "repeated parameter name": (lambda h, m: h["params"][1].update(name="linear.weight"), "repeated name"),
}


@pytest.mark.parametrize("case", sorted(TAMPERINGS))
def test_tampered_files_are_refused_before_anything_runs(device, tmp_path, case):
    good = tmp_path / "good.pt"
    make_cell(device).save(good)
    edit, message = TAMPERINGS[case]
    bad = _tampered(tmp_path, good, edit)
    CALLS.clear()
    with pytest.raises(clnet.FileFormatError, match=message):
        load_module(bad, OPS, device=device)
    assert CALLS == []


def test_damaged_files(device, tmp_path):
    good = tmp_path / "good.pt"
    make_cell(device).save(good)
    data = good.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[:len(data) // 2])
    with pytest.raises(clnet.FileFormatError, match="not a valid zip"):
        load_module(tmp_path / "trunc.pt", OPS)
    members = _members(good)
    members["graph.json"] = b"{not json"
    _write(tmp_path / "json.pt", members)
    with pytest.raises(clnet.FileFormatError, match="not valid JSON"):
        load_module(tmp_path / "json.pt", OPS)
    members = _members(good)
    buf = io.BytesIO()
    np.save(buf, np.array([object()], dtype=object), allow_pickle=True)
    members["arrays/000000.npy"] = buf.getvalue()
    _write(tmp_path / "pickle.pt", members)
    with pytest.raises(clnet.FileFormatError):
        load_module(tmp_path / "pickle.pt", OPS)
    with pytest.raises(FileNotFoundError):
        load_module(tmp_path / "nothing.pt", OPS)


def test_saving_refuses_what_a_file_cannot_hold(device, tmp_path):
    cell = make_cell(device)
    cell.graph.nodes[3].args = (cell.graph.nodes[3].args[0], object())
    with pytest.raises(TypeError, match="the arguments of getitem"):
        cell.save(tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_graph_reads_without_running(tmp_path, device):
    make_cell(device).save(tmp_path / "cell.pt")
    graph, params, buffers, meta = load_graph(tmp_path / "cell.pt", OPS)
    assert meta == {"name": "MyCell", "training": False}
    assert [n.op for n in graph.nodes] == ["linear", "add", "tanh", "getitem", "split", "mul"]
    assert params["linear.weight"][1] is True and buffers["steps"].dtype == np.int64

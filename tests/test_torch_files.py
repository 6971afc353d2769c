"""PyTorch's weight files, read as data only (clnet.torch_files through clnet.load): real torch.save output
(zip and legacy layouts, state_dicts, optimizer states, views, dtypes), file objects, safetensors, and the
refusals (pickled modules, arbitrary globals, damaged files) with nothing executed."""
from __future__ import annotations

import io
import os
import pickle
import warnings
import zipfile

import numpy as np
import pytest

import clnet
from clnet import serialization, torch_files
from conftest import assert_close

torch = pytest.importorskip("torch")


def _model():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3), torch.nn.Flatten(),
                            torch.nn.Linear(12, 4))
    m(torch.randn(5, 2, 4, 4)).sum().backward()
    return m


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_real_torch_checkpoints_load(device, tmp_path, legacy):
    m = _model()
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    opt.step()
    x = torch.arange(12.0).reshape(3, 4)
    obj = {"model": m.state_dict(), "optim": opt.state_dict(), "epoch": 7, "name": "run-1", "best": 0.25,
           "view": x[:, 1:3], "t": x.t(), "ints": torch.tensor([3, -1]), "flags": torch.tensor([True, False]),
           "bf16": torch.tensor([1.5, -2.25], dtype=torch.bfloat16), "param": torch.nn.Parameter(torch.ones(2)),
           "nested": [(1, 2.5), {"a": None}], "np": np.float64(2.5), "arr": np.arange(3.0)}
    path = tmp_path / "ckpt.pt"
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    got = clnet.load(path)
    for k, v in m.state_dict().items():
        assert isinstance(got["model"][k], clnet.Tensor)
        assert_close(got["model"][k], v.numpy(), rtol=0, atol=0, what=k)
    assert list(got["model"].keys()) == list(m.state_dict().keys())
    assert got["epoch"] == 7 and got["name"] == "run-1" and got["best"] == 0.25
    assert_close(got["view"], x[:, 1:3].numpy())
    assert_close(got["t"], x.t().numpy())
    assert got["ints"].numpy().tolist() == [3, -1] and got["flags"].numpy().tolist() == [True, False]
    assert_close(got["bf16"], [1.5, -2.25])
    assert got["param"].requires_grad and got["nested"] == [(1, 2.5), {"a": None}]
    assert got["np"] == 2.5 and np.array_equal(got["arr"], np.arange(3.0))
    # the optimizer state continues in clnet
    params = [clnet.tensor(p.detach().numpy(), requires_grad=True) for p in m.parameters()]
    copt = clnet.optim.Adam(params, lr=1.0)
    copt.load_state_dict(got["optim"])
    assert copt.param_groups[0]["lr"] == 0.01 and copt.state[params[0]]["step"] == 1
    # and the model
    cm = clnet.nn.Sequential(clnet.nn.Conv2d(2, 3, 3), clnet.nn.BatchNorm2d(3), clnet.nn.Flatten(),
                             clnet.nn.Linear(12, 4)).eval()
    cm.load_state_dict(got["model"])
    xin = np.random.default_rng(0).standard_normal((2, 2, 4, 4)).astype(np.float32)
    assert_close(cm(clnet.tensor(xin)), m.eval()(torch.tensor(xin)).detach().numpy(), rtol=1e-5, atol=1e-5)


def test_file_objects_and_map_location(device, tmp_path):
    buf = io.BytesIO()
    torch.save({"w": torch.arange(4.0)}, buf)
    buf.seek(0)
    got = clnet.load(buf, map_location="cpu", weights_only=True)
    assert_close(got["w"], [0, 1, 2, 3])
    assert got["w"].device.type == "cpu"
    out = io.BytesIO()
    clnet.save({"a": clnet.ones(2), "b": [1, "x"]}, out)
    out.seek(0)
    back = clnet.load(out)
    assert_close(back["a"], [1, 1])
    assert back["b"] == [1, "x"]
    with open(tmp_path / "f.pt", "wb") as f:
        clnet.save(clnet.arange(3), f)
    with open(tmp_path / "f.pt", "rb") as f:
        assert clnet.load(f).numpy().tolist() == [0, 1, 2]
    # a file saved on a GPU loads on this machine's default device
    saved = io.BytesIO()
    torch.save({"w": torch.ones(2)}, saved)
    assert_close(clnet.load(_rewritten(saved, {b"X\x03\x00\x00\x00cpu": b"X\x06\x00\x00\x00cuda:0"}))["w"],
                 [1, 1])


def _rewritten(source, replacements: dict) -> io.BytesIO:
    """A copy of a PyTorch zip file with data.pkl's bytes replaced (to make files torch.save cannot)."""
    source.seek(0)
    out = io.BytesIO()
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(out, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if name.endswith("data.pkl"):
                for old, new in replacements.items():
                    assert old in data
                    data = data.replace(old, new)
            zout.writestr(name, data)
    out.seek(0)
    return out


def test_saving_a_module_is_refused_with_the_way_out(device, tmp_path):
    with pytest.raises(TypeError, match=r"Save its weights instead.*torch\.save\(model\.state_dict\(\), f\)"):
        clnet.save(clnet.nn.Linear(2, 3), tmp_path / "m.pt")
    with pytest.raises(TypeError, match="state_dict"):
        clnet.save({"model": clnet.nn.Linear(2, 3)}, io.BytesIO())


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > " + _Evil.target,))


def test_pickled_objects_and_code_are_refused(device, tmp_path):
    torch.save(torch.nn.Linear(2, 3), tmp_path / "module.pt")
    with pytest.raises(clnet.FileFormatError, match=r"torch\.nn\.modules\.linear\.Linear.*state_dict"):
        clnet.load(tmp_path / "module.pt")
    marker = tmp_path / "pwned"
    _Evil.target = str(marker)
    torch.save({"x": torch.ones(1), "evil": _Evil()}, tmp_path / "evil.pt")
    with pytest.raises(clnet.FileFormatError, match=r"(posix|os|nt)\.system"):
        clnet.load(tmp_path / "evil.pt")
    assert not marker.exists()
    raw = pickle.dumps(_Evil(), protocol=2)
    with pytest.raises(clnet.FileFormatError, match="system"):
        torch_files.unpickle(raw, lambda pid: None, "payload")
    assert not marker.exists()
    inst = b"(cos\nsystem\nS'echo hi'\ni."  # protocol 0 INST opcode
    with pytest.raises(clnet.FileFormatError):
        torch_files.unpickle(inst, lambda pid: None, "payload")


def test_safe_globals_allow_a_trusted_class(device, tmp_path):
    class Config:
        pass
    Config.__module__, Config.__qualname__ = __name__, "Config"
    globals()["Config"] = Config
    c = Config()
    c.depth = 3
    torch.save({"cfg": c, "w": torch.ones(1)}, tmp_path / "cfg.pt")
    with pytest.raises(clnet.FileFormatError, match="Config"):
        clnet.load(tmp_path / "cfg.pt")
    with serialization.safe_globals([Config]):
        got = clnet.load(tmp_path / "cfg.pt")
    assert isinstance(got["cfg"], Config) and got["cfg"].depth == 3
    with pytest.raises(clnet.FileFormatError):
        clnet.load(tmp_path / "cfg.pt")


def test_damaged_files_are_refused(device, tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"w": torch.arange(6.0).reshape(2, 3)}, path)
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    storage = next(n for n in members if n.endswith("/data/0"))
    short = dict(members)
    short[storage] = members[storage][:8]
    bad = tmp_path / "short.pt"
    with zipfile.ZipFile(bad, "w") as zf:
        for n, d in short.items():
            zf.writestr(n, d)
    with pytest.raises(clnet.FileFormatError, match="should hold 24 bytes"):
        clnet.load(bad)
    with open(path, "rb") as f:
        stretched = _rewritten(io.BytesIO(f.read()), {b"K\x02K\x03\x86": b"K\x04K\x03\x86"})  # (2, 3) -> (4, 3)
    with pytest.raises(clnet.FileFormatError, match="reaches element"):
        clnet.load(stretched)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(clnet.FileFormatError, match="not a valid zip.*nor is it a PyTorch or safetensors file"):
        clnet.load(tmp_path / "junk.pt")


def test_safetensors_round_trip(device, tmp_path):
    pytest.importorskip("safetensors")
    from clnet.safetensors import load, load_file, save, save_file
    state = {"w": clnet.tensor(np.arange(6, dtype=np.float32).reshape(2, 3)), "i": clnet.tensor([1, 2, 3])}
    save_file(state, tmp_path / "m.safetensors", metadata={"format": "pt"})
    back = load_file(tmp_path / "m.safetensors")
    assert_close(back["w"], state["w"].numpy())
    assert back["i"].numpy().tolist() == [1, 2, 3]
    assert_close(clnet.load(tmp_path / "m.safetensors")["w"], state["w"].numpy())
    assert_close(load(save(state))["w"], state["w"].numpy())
    from safetensors.torch import save_file as torch_save_file
    torch_save_file({"b": torch.tensor([1.5, -3.0], dtype=torch.bfloat16), "f": torch.ones(2)},
                    str(tmp_path / "bf.safetensors"))
    got = load_file(tmp_path / "bf.safetensors")
    assert_close(got["b"], [1.5, -3.0])
    assert_close(got["f"], [1, 1])


def test_float16_on_a_device_without_it(device, tmp_path):
    torch.save({"h": torch.tensor([0.5, 2.0], dtype=torch.float16)}, tmp_path / "h.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = clnet.load(tmp_path / "h.pt")
    assert_close(got["h"], [0.5, 2.0])

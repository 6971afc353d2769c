"""Module machinery: registration, iteration, modes, gradients, state_dict, to(), repr, containers."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

import clnet
import clnet.nn as nn
from conftest import assert_close


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 3)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(3, 2)
        self.scale = nn.Parameter(clnet.ones(2))
        self.register_buffer("steps", clnet.zeros(1))
        self.register_buffer("scratch", clnet.zeros(2), persistent=False)
        self.note = "plain attribute"

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x))) * self.scale


def test_import_spellings():
    import clnet.nn as direct
    assert clnet.nn is direct
    assert clnet.nn.functional.relu is direct.functional.relu


def test_registration_and_iteration(device):
    m = TwoLayer()
    assert [n for n, _ in m.named_parameters()] == ["scale", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert len(list(m.parameters())) == 5
    assert [n for n, _ in m.named_parameters(recurse=False)] == ["scale"]
    assert [n for n, _ in m.named_children()] == ["fc1", "act", "fc2"]
    assert list(m.children()) == [m.fc1, m.act, m.fc2]
    assert [n for n, _ in m.named_modules()] == ["", "fc1", "act", "fc2"]
    assert list(m.modules())[0] is m
    assert [n for n, _ in m.named_buffers()] == ["steps", "scratch"]
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in m.parameters())
    assert m.note == "plain attribute" and "note" not in m._parameters
    assert m.get_submodule("fc2") is m.fc2 and m.get_parameter("fc1.bias") is m.fc1.bias
    assert "fc1" in dir(m)


def test_shared_parameters_are_listed_once(device):
    shared = nn.Linear(3, 3)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    assert len(list(model.parameters())) == 2
    assert len(list(model.modules())) == 3  # Sequential, Linear (once), ReLU


def test_reassign_and_delete(device):
    m = TwoLayer()
    m.fc1 = nn.Linear(4, 3, bias=False)
    assert m.fc1.bias is None and [n for n, _ in m.fc1.named_parameters()] == ["weight"]
    m.scale = None
    assert "scale" not in [n for n, _ in m.named_parameters()]
    with pytest.raises(TypeError, match="Parameter or None"):
        m.scale = clnet.ones(2)
    with pytest.raises(TypeError, match="Module or None"):
        m.fc2 = "not a module"
    del m.act
    assert "act" not in dict(m.named_children())
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        m.nope  # noqa: B018


def test_assignment_before_init_is_explained():
    class Broken(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(1, 1)
    with pytest.raises(AttributeError, match="super\\(\\).__init__"):
        Broken()


def test_register_checks(device):
    m = nn.Module()
    with pytest.raises(TypeError, match="wrap it in clnet.nn.Parameter"):
        m.register_parameter("w", clnet.ones(2))
    with pytest.raises(KeyError, match="contain '.'"):
        m.register_buffer("a.b", clnet.ones(1))
    with pytest.raises(TypeError, match="not a Module"):
        m.add_module("x", 3)
    with pytest.raises(NotImplementedError, match="forward"):
        m(1)


def test_parameter_wraps_without_copy_and_reprs(device):
    data = clnet.tensor([1.0, 2.0])
    p = nn.Parameter(data)
    assert p.requires_grad and p.is_leaf and isinstance(p, clnet.Tensor)
    assert repr(p).startswith("Parameter containing:\ntensor(")
    with clnet.no_grad():
        p.mul_(3)
    assert_close(data, [3.0, 6.0])  # shares the buffer, as torch.nn.Parameter
    assert not nn.Parameter(clnet.ones(1), requires_grad=False).requires_grad
    assert (p * 2).__class__ is clnet.Tensor  # results of ops are plain tensors


def test_call_runs_forward_and_hooks(device, rng):
    m = nn.Linear(3, 2)
    seen = []
    h1 = m.register_forward_pre_hook(lambda mod, args: seen.append(("pre", args[0].shape)))
    h2 = m.register_forward_hook(lambda mod, args, out: out * 0)
    out = m(clnet.tensor(rng.standard_normal((4, 3)).astype(np.float32)))
    assert seen == [("pre", (4, 3))] and np.all(out.numpy() == 0)
    h1.remove()
    h2.remove()
    assert np.any(m(clnet.ones(1, 3)).numpy() != 0) and len(seen) == 1


def test_train_eval_propagate(device):
    model = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.Dropout(), nn.BatchNorm1d(2)))
    assert model.training and all(m.training for m in model.modules())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    with pytest.raises(ValueError, match="bool"):
        model.train("yes")


def test_zero_grad(device, rng):
    m = TwoLayer()
    m(clnet.tensor(rng.standard_normal((5, 4)).astype(np.float32))).sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not np.any(p.grad.numpy()) for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())


def test_requires_grad_(device):
    m = nn.Linear(2, 2).requires_grad_(False)
    assert not any(p.requires_grad for p in m.parameters())


def test_state_dict_round_trip(device, rng):
    a, b = TwoLayer(), TwoLayer()
    sd = a.state_dict()
    assert list(sd) == ["scale", "steps", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]  # no "scratch"
    assert all(not v.requires_grad for v in sd.values())
    x = clnet.tensor(rng.standard_normal((3, 4)).astype(np.float32))
    assert not np.allclose(a(x).numpy(), b(x).numpy())
    params_before = list(b.parameters())
    result = b.load_state_dict(sd)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert_close(b(x), a(x).numpy())
    assert all(p is q for p, q in zip(params_before, b.parameters()))  # copied in place: optimizers keep working
    # the state dict shares memory with the model (as PyTorch): it is a view, not a snapshot
    with clnet.no_grad():
        a.fc1.bias.fill_(7.0)
    assert_close(sd["fc1.bias"], [7.0, 7.0, 7.0])


def test_load_state_dict_accepts_numpy(device, rng):
    m = nn.Linear(3, 2)
    w = rng.standard_normal((2, 3)).astype(np.float64)   # converted to the parameter's dtype
    m.load_state_dict({"weight": w, "bias": np.array([1.0, -1.0])})
    assert m.weight.dtype == np.float32
    assert_close(m.weight, w, rtol=1e-6)
    assert_close(m.bias, [1.0, -1.0])


def test_load_state_dict_reports_wrong_shapes_by_name(device):
    m = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    sd = {k: v.numpy() for k, v in m.state_dict().items()}
    sd["1.weight"] = np.zeros((3, 2), np.float32)
    sd["0.bias"] = np.zeros((4,), np.float32)
    before = m[0].weight.numpy()
    sd["0.weight"] = np.zeros((3, 4), np.float32)
    with pytest.raises(RuntimeError) as err:
        m.load_state_dict(sd)
    msg = str(err.value)
    assert "size mismatch for 1.weight" in msg and "(3, 2)" in msg and "(2, 3)" in msg
    assert "size mismatch for 0.bias" in msg and "(4,)" in msg and "(3,)" in msg
    assert_close(m[0].weight, before)  # nothing was copied
    with pytest.raises(RuntimeError, match="size mismatch for 1.weight"):
        m.load_state_dict(sd, strict=False)  # shape errors are never silenced


def test_load_state_dict_missing_and_unexpected_keys(device):
    m = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    sd = m.state_dict()
    del sd["1.running_var"]
    sd["2.weight"] = clnet.ones(2)
    with pytest.raises(RuntimeError) as err:
        m.load_state_dict(sd)
    msg = str(err.value)
    assert 'Missing key(s) in state_dict: "1.running_var"' in msg
    assert 'Unexpected key(s) in state_dict: "2.weight"' in msg
    missing, unexpected = m.load_state_dict(sd, strict=False)
    assert missing == ["1.running_var"] and unexpected == ["2.weight"]
    with pytest.raises(TypeError, match="mapping"):
        m.load_state_dict([1, 2])


def test_to_dtype_and_device(device):
    m = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    opt_ref = list(m.parameters())
    assert m.to(device) is m
    assert all(p is q for p, q in zip(opt_ref, m.parameters()))  # same device: nothing replaced
    if device.fp64:
        m(clnet.ones(4, 2)).sum().backward()
        m.double()
        assert all(p.dtype == np.float64 and isinstance(p, nn.Parameter) and p.requires_grad
                   for p in m.parameters())
        assert all(p is q for p, q in zip(opt_ref, m.parameters()))  # converted in place: optimizers keep working
        assert all(p.grad.dtype == np.float64 for p in m.parameters())
        assert m[1].running_mean.dtype == np.float64
        assert m[1].num_batches_tracked.dtype == np.int64  # integer buffers keep their dtype
        out = m(clnet.ones(4, 2, dtype=clnet.float64))
        assert out.dtype == np.float64
        m.float()
        assert m[0].weight.dtype == np.float32
    with pytest.raises(TypeError, match="floating-point"):
        m.to(clnet.int32)


def test_to_other_device_moves_everything():
    devs = [d for d in clnet.devices() if not d.is_simulator]
    if len(devs) < 2:
        pytest.skip("needs two non-simulator OpenCL devices")
    m = nn.Linear(2, 2)
    w = m.weight.numpy()
    params = list(m.parameters())
    m.to(devs[1])
    assert all(p.device is devs[1] for p in m.parameters())
    assert all(p is q for p, q in zip(params, m.parameters()))
    assert_close(m.weight, w)


def test_apply(device):
    m = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    visited = []
    m.apply(lambda mod: visited.append(type(mod).__name__))
    assert visited == ["Linear", "ReLU", "Linear", "Sequential"]

    def init_zero(mod):
        if isinstance(mod, nn.Linear):
            nn.init.zeros_(mod.weight)
    m.apply(init_zero)
    assert not np.any(m[0].weight.numpy()) and not np.any(m[2].weight.numpy())


def test_repr_tree(device):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
            self.head = nn.Linear(16, 10, bias=False)

    expected = """Net(
  (features): Sequential(
    (0): Conv2d(1, 4, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))
    (1): ReLU()
    (2): MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)
  )
  (head): Linear(in_features=16, out_features=10, bias=False)
)"""
    assert repr(Net()) == expected
    assert repr(nn.Dropout(0.3)) == "Dropout(p=0.3, inplace=False)"
    assert repr(nn.BatchNorm2d(8)) == ("BatchNorm2d(8, eps=1e-05, momentum=0.1, affine=True, bias=True, "
                                       "track_running_stats=True)")
    assert repr(nn.Softmax(dim=1)) == "Softmax(dim=1)"
    assert repr(nn.CrossEntropyLoss()) == "CrossEntropyLoss()"


def test_deepcopy_makes_an_independent_model(device, rng):
    import copy
    m = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    x = clnet.tensor(rng.standard_normal((5, 3)).astype(np.float32))
    m(x).sum().backward()
    twin = copy.deepcopy(m)
    assert repr(twin) == repr(m)
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in twin.parameters())
    assert all(p is not q for p, q in zip(m.parameters(), twin.parameters()))
    assert_close(twin[0].weight.grad, m[0].weight.grad.numpy())
    m.eval()
    twin.eval()
    assert_close(twin(x), m(x).numpy())
    with clnet.no_grad():
        twin[0].weight.fill_(0.0)
        twin[1].running_mean.fill_(5.0)
    assert np.any(m[0].weight.numpy() != 0) and not np.any(m[1].running_mean.numpy() == 5.0)


def test_modules_refuse_pickle(device):
    import pickle
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(nn.Linear(1, 1))


# --- containers --------------------------------------------------------------------------------------------
def test_sequential_indexing_and_editing(device, rng):
    a, r, b = nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)
    seq = nn.Sequential(a, r, b)
    assert len(seq) == 3 and seq[0] is a and seq[-1] is b and list(seq) == [a, r, b]
    sub = seq[1:]
    assert isinstance(sub, nn.Sequential) and list(sub) == [r, b]
    with pytest.raises(IndexError, match="out of range"):
        seq[3]  # noqa: B018
    x = clnet.tensor(rng.standard_normal((2, 3)).astype(np.float32))
    assert_close(seq(x), b(r(a(x))).numpy())
    seq.append(nn.Sigmoid())
    seq.add_module("out", nn.Identity())
    assert [n for n, _ in seq.named_children()] == ["0", "1", "2", "3", "out"]
    assert seq.out is seq[-1]
    del seq[1]
    assert [n for n, _ in seq.named_children()] == ["0", "1", "2", "3"] and seq[1] is b
    seq.insert(1, nn.Tanh())
    assert isinstance(seq[1], nn.Tanh) and len(seq) == 5
    seq[0] = nn.Linear(3, 4)
    assert seq[0] is not a
    named = nn.Sequential(OrderedDict([("enc", nn.Linear(2, 2)), ("act", nn.ReLU())]))
    assert [n for n, _ in named.named_children()] == ["enc", "act"] and named.enc is named[0]


def test_module_list_and_dict(device):
    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    layers.append(nn.ReLU())
    assert len(layers) == 4 and isinstance(layers[-1], nn.ReLU)
    assert len(list(layers.parameters())) == 6

    class Holder(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = layers
            self.heads = nn.ModuleDict({"a": nn.Linear(2, 1), "b": nn.Linear(2, 3)})

    h = Holder()
    assert [n for n, _ in h.named_parameters()][:2] == ["blocks.0.weight", "blocks.0.bias"]
    assert "heads.b.bias" in dict(h.named_parameters())
    assert list(h.heads.keys()) == ["a", "b"] and "a" in h.heads

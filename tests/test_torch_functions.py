"""PyTorch's calling conventions on clnet's functions and Tensor methods: keyword names (input=, other=),
out=, alpha=, rounding_mode=; legacy constructors (torch.Tensor(list), FloatTensor, LongTensor) and
Tensor.type(); the conversions programs use (.type_as, .view_as, .cuda, .to(0), .cpu, .tolist); and
errors in PyTorch's words (a wrong keyword names the public function, never an internal helper).
"""
from __future__ import annotations

import inspect
import re

import numpy as np
import pytest

import clnet
from clnet.backend import devices as D
from clnet.errors import DeviceNotFoundError


def test_keyword_names_as_pytorch(device):
    a = clnet.randn(3, 4, device=device)
    b = clnet.randn(4, 2, device=device)
    assert clnet.matmul(input=a, other=b).shape == (3, 2)
    assert clnet.add(input=a, other=a, alpha=2).shape == (3, 4)
    assert clnet.mm(input=a, mat2=b).shape == (3, 2)
    assert clnet.clamp(input=a, min=0).numpy().min() >= 0


def test_alpha(device):
    a = clnet.tensor([1.0, 2.0], device=device)
    b = clnet.tensor([10.0, 20.0], device=device)
    assert clnet.add(a, b, alpha=0.5).numpy().tolist() == [6.0, 12.0]
    assert clnet.sub(a, b, alpha=0.1).numpy().tolist() == pytest.approx([0.0, 0.0], abs=1e-6)
    assert a.add(b, alpha=2).numpy().tolist() == [21.0, 42.0] and a.sub(b, alpha=-1).numpy().tolist() == [11.0, 22.0]
    p = clnet.tensor([1.0, 1.0], device=device, requires_grad=True)
    p.grad = clnet.tensor([2.0, 4.0], device=device)
    with clnet.no_grad():
        p.data.add_(p.grad, alpha=-0.5)  # word_language_model's update
    assert p.numpy().tolist() == [0.0, -1.0]
    with clnet.no_grad():
        p.sub_(p.grad, alpha=0.25)
    assert p.numpy().tolist() == [-0.5, -2.0]


def test_out(device):
    a = clnet.ones(4, 4, device=device)
    out = clnet.rand(4, 4, device=device)
    res = clnet.matmul(a, a.T, out=out)
    assert res is out and out.numpy().tolist() == [[4.0] * 4] * 4
    small = clnet.zeros(1, device=device)
    clnet.mul(a, a, out=small)  # a wrong size is resized, as PyTorch does
    assert small.shape == (4, 4) and small.numpy().sum() == 16
    ints = clnet.zeros(4, 4, dtype=clnet.int64, device=device)
    with pytest.raises(TypeError, match="can't be cast"):
        clnet.add(a, a, out=ints)
    flt = clnet.zeros(2, device=device)
    clnet.add(clnet.tensor([1, 2], device=device), 1, out=flt)
    assert flt.numpy().tolist() == [2.0, 3.0] and flt.dtype == clnet.float32
    w = clnet.ones(2, device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match="out=.*automatic differentiation"):
        clnet.mul(w, 2, out=clnet.zeros(2, device=device))
    v, i = clnet.zeros(2, device=device), clnet.zeros(2, dtype=clnet.int64, device=device)
    clnet.sort(clnet.tensor([3.0, 1.0], device=device), out=(v, i))
    assert v.numpy().tolist() == [1.0, 3.0] and i.numpy().tolist() == [1, 0]
    c = clnet.zeros(4, device=device)
    clnet.cat([clnet.ones(2, device=device), clnet.zeros(2, device=device)], out=c)
    assert c.numpy().tolist() == [1.0, 1.0, 0.0, 0.0]


def test_where_single_argument_and_misc(device):
    cond = clnet.tensor([[0, 1], [1, 0]], device=device)
    rows, cols = clnet.where(cond)
    assert rows.numpy().tolist() == [0, 1] and cols.numpy().tolist() == [1, 0]
    assert clnet.numel(cond) == 4 and clnet.is_floating_point(clnet.ones(1, device=device))
    x = clnet.tensor([1.0, 2.0], device=device)
    assert clnet.as_tensor(x) is x and clnet.as_tensor([1, 2], device=device).dtype == clnet.int64
    assert clnet.round(clnet.tensor([1.234, -2.567], device=device), decimals=1).numpy().tolist() == \
        pytest.approx([1.2, -2.6])
    assert clnet.hstack([x, x]).shape == (4,) and clnet.vstack([x, x]).shape == (2, 2)
    s, m = clnet.std_mean(clnet.tensor([1.0, 3.0], device=device))
    assert m.item() == 2.0 and abs(s.item() - np.sqrt(2)) < 1e-6


# --- legacy constructors and types ---------------------------------------------------------------------
def test_legacy_constructors(device):
    t = clnet.Tensor([[1, 2], [3, 4]])
    assert t.dtype == clnet.float32 and t.numpy().tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert clnet.Tensor(2, 3).shape == (2, 3) and clnet.Tensor().shape == (0,)
    assert clnet.Tensor([-4.0]).double().dtype == clnet.float64 if device.fp64 else True
    assert clnet.LongTensor([1, 2]).dtype == clnet.int64 and clnet.FloatTensor(3).shape == (3,)
    assert clnet.IntTensor([1]).dtype == clnet.int32 and clnet.BoolTensor([True]).dtype == clnet.bool
    assert clnet.ByteTensor([255]).numpy().tolist() == [255]
    assert isinstance(clnet.LongTensor([1]), clnet.LongTensor) and isinstance(t, clnet.FloatTensor)
    assert not isinstance(t, clnet.LongTensor) and isinstance(t, clnet.Tensor)
    with pytest.raises(TypeError, match="sizes as ints"):
        clnet.Tensor(2, "3")


def test_type_and_conversions(device):
    x = clnet.tensor([1.5, -2.5], device=device)
    assert x.type() == "torch.FloatTensor"
    assert x.type(clnet.LongTensor).dtype == clnet.int64 and x.type("torch.IntTensor").dtype == clnet.int32
    assert x.type(clnet.int64).numpy().tolist() == [1, -2]
    assert x.type_as(clnet.tensor([1], device=device)).dtype == clnet.int64
    assert x.view_as(clnet.zeros(2, 1, device=device)).shape == (2, 1)
    assert x.reshape_as(clnet.zeros(1, 2, device=device)).shape == (1, 2)
    assert x.tolist() == [1.5, -2.5] and x.cpu().numpy().tolist() == [1.5, -2.5]
    assert x.nelement() == 2 and x.ndimension() == 1 and x.pin_memory() is x and not x.is_pinned()
    assert x.is_cuda == (device.type != "cpu")


def test_cuda_method(device, monkeypatch):
    x = clnet.ones(2, device=device)
    if D.accelerators():
        assert x.cuda().device is D.current_accelerator()
    else:
        with pytest.raises(DeviceNotFoundError, match="cuda"):
            x.cuda()
    monkeypatch.setattr(D, "accelerators", lambda: [device])
    monkeypatch.setattr(D, "_accelerators", lambda devs, default: [device])
    monkeypatch.setattr(D, "_current_accelerator", lambda devs, default: device)
    assert x.cuda().device is device and x.to(0).device is device and x.cuda(0).device is device


# --- errors in PyTorch's words ---------------------------------------------------------------------------
def _public_functions():
    out = []
    for name in sorted(dir(clnet)):
        obj = getattr(clnet, name)
        if name.startswith("_") or not inspect.isfunction(obj) and not hasattr(obj, "__wrapped__"):
            continue
        if not callable(obj) or inspect.isclass(obj):
            continue
        params = inspect.signature(obj).parameters.values()
        if any(p.kind is p.VAR_KEYWORD for p in params):
            continue
        out.append(name)
    return out


@pytest.mark.parametrize("name", _public_functions())
def test_wrong_keyword_names_the_public_function(name):
    """clnet.<name>(..., wrong=1) says `<name>() got an unexpected keyword argument`, as PyTorch's do."""
    fn = getattr(clnet, name)
    with pytest.raises(TypeError) as info:
        fn(not_an_argument_of_this_function=1)
    msg = str(info.value)
    assert re.search(rf"\b{re.escape(fn.__name__)}\(\)", msg), msg
    assert "<locals>" not in msg and not re.match(r"_\w+\(", msg), msg


TENSOR_METHODS = sorted(n for n, f in vars(clnet.Tensor).items()
                        if inspect.isfunction(f) and not n.startswith("_")
                        and not any(p.kind is p.VAR_KEYWORD for p in inspect.signature(f).parameters.values()))


@pytest.mark.parametrize("name", TENSOR_METHODS)
def test_wrong_keyword_names_the_tensor_method(device, name):
    x = clnet.ones(2, device=device)
    with pytest.raises(TypeError) as info:
        getattr(x, name)(not_an_argument_of_this_method=1)
    public = vars(clnet.Tensor)[name].__name__  # an alias (arccos = acos) names the method it is
    assert f"{public}()" in str(info.value) and "<locals>" not in str(info.value)

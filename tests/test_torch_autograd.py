"""Autograd the way PyTorch programs use it: grad_fn.name()/next_functions, tensor and node hooks,
retain_grad, post-accumulate hooks, backward(inputs=), autograd.grad options, and second derivatives
with create_graph=True (against finite differences of the first derivative and against PyTorch).
"""
from __future__ import annotations

import numpy as np
import pytest

import clnet
from conftest import assert_close, numeric_grad

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None


def T(a, device, **kw):
    return clnet.tensor(a, device=device, **kw)


# --- grad_fn ------------------------------------------------------------------------------------------
def test_grad_fn_names_and_next_functions(device):
    x = clnet.ones(2, 3, device=device, requires_grad=True)
    w = clnet.ones(3, device=device)
    loss = ((x * w).relu().sum(1) - clnet.ones(2, device=device)).mean()
    assert loss.grad_fn.name() == "MeanBackward0" and "MeanBackward0" in repr(loss.grad_fn)
    assert "grad_fn=<MeanBackward0>" in repr(loss)
    (sub, _), = loss.grad_fn.next_functions
    assert sub.name() == "SubBackward0"
    (s, _), nothing = sub.next_functions
    assert nothing == (None, 0)  # an input that does not require grad
    relu = s.next_functions[0][0]
    assert relu.name() == "ReluBackward0"
    mul = relu.next_functions[0][0]
    (acc, slot), no_grad_input = mul.next_functions
    assert acc.name() == "torch::autograd::AccumulateGrad" and acc.variable is x and slot == 0
    assert no_grad_input == (None, 0)  # w does not require grad
    assert mul.next_functions[0][0] is acc  # one AccumulateGrad per leaf


def _walk(fn, seen):
    """Every node reachable from fn, as a program that prints the graph walks it."""
    if fn is None or id(fn) in seen:
        return
    seen[id(fn)] = fn.name()
    for child, _ in fn.next_functions:
        _walk(child, seen)


def test_walking_the_graph_of_a_network(device):
    net = clnet.nn.Sequential(clnet.nn.Linear(4, 3), clnet.nn.ReLU(), clnet.nn.Linear(3, 1)).to(device)
    loss = clnet.nn.MSELoss()(net(clnet.randn(5, 4, device=device)), clnet.zeros(5, 1, device=device))
    names = {}
    _walk(loss.grad_fn, names)
    assert sum(n == "torch::autograd::AccumulateGrad" for n in names.values()) == 4  # 2 weights, 2 biases
    assert any("Relu" in n for n in names.values()) and list(names.values())[0].endswith("Backward0")


# --- hooks --------------------------------------------------------------------------------------------
def test_tensor_hooks_replace_gradients(device):
    x = T([1.0, 2.0, 3.0], device, requires_grad=True)
    y = x * 2
    seen = []
    h1 = y.register_hook(lambda g: seen.append(g.numpy().copy()))
    y.register_hook(lambda g: g * 10)
    (y * y).sum().backward()
    assert np.allclose(seen[0], [4, 8, 12]) and np.allclose(x.grad.numpy(), [80, 160, 240])
    h1.remove()
    seen.clear()
    y2 = x * 2
    handle = y2.register_hook(lambda g: seen.append(1))
    handle.remove()
    y2.sum().backward()
    assert not seen


def test_leaf_hook_sees_the_summed_gradient_once(device):
    x = T([1.0, -2.0], device, requires_grad=True)
    calls = []
    x.register_hook(lambda g: calls.append(g.numpy().copy()) or g * 0.5)
    y = x * 3 + x * x + x.exp()  # three paths into x
    y.sum().backward()
    expect = 3 + 2 * np.array([1.0, -2.0]) + np.exp([1.0, -2.0])
    assert len(calls) == 1 and np.allclose(calls[0], expect, rtol=1e-5)
    assert np.allclose(x.grad.numpy(), expect * 0.5, rtol=1e-5)


def test_post_accumulate_grad_hook(device):
    p = T([1.0, 2.0], device, requires_grad=True)
    seen = []
    handle = p.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.numpy().copy()))
    (p * p).sum().backward()
    (p * 3).sum().backward()
    assert [s.tolist() for s in seen] == [[2.0, 4.0], [5.0, 7.0]]  # after each accumulation
    handle.remove()
    (p * 3).sum().backward()
    assert len(seen) == 2
    with pytest.raises(RuntimeError, match="non-leaf"):
        (p * 2).register_post_accumulate_grad_hook(lambda t: None)


def test_retain_grad(device):
    x = T([1.0, 2.0], device, requires_grad=True)
    y = x * x
    z = y * 3
    y.retain_grad()
    assert y.retains_grad and not z.retains_grad
    z.sum().backward(retain_graph=True)
    assert y.grad.numpy().tolist() == [3.0, 3.0] and z.grad is None
    z.sum().backward()
    assert y.grad.numpy().tolist() == [6.0, 6.0]  # accumulates, as a leaf's does
    x.retain_grad()  # a leaf keeps its gradient anyway: no-op
    with pytest.raises(RuntimeError, match="requires_grad=False"):
        clnet.ones(2, device=device).retain_grad()


def test_node_hooks(device):
    x = T([1.0, 2.0], device, requires_grad=True)
    y = (x * 2).sum()
    pre, post = [], []
    y.grad_fn.register_prehook(lambda gouts: pre.append(gouts[0].item()))
    y.grad_fn.register_hook(lambda gins, gouts: (gins[0] * 0 + 1,))
    y.backward()
    assert pre == [1.0] and x.grad.numpy().tolist() == [2.0, 2.0]  # the sum's input gradient was replaced


def test_hook_errors(device):
    with pytest.raises(RuntimeError, match="doesn't require gradient"):
        clnet.ones(2, device=device).register_hook(lambda g: g)
    with pytest.raises(TypeError, match="callable"):
        clnet.ones(2, device=device, requires_grad=True).register_hook(3)


# --- backward / grad options ---------------------------------------------------------------------------
def test_backward_inputs_and_grad_options(device):
    a = T([1.0, 2.0], device, requires_grad=True)
    b = T([3.0, 4.0], device, requires_grad=True)
    (a * b).sum().backward(inputs=[a])
    assert a.grad.numpy().tolist() == [3.0, 4.0] and b.grad is None
    c = T([1.0], device, requires_grad=True)
    ga, gc = clnet.autograd.grad((a * 2).sum(), [a, c], allow_unused=True)
    assert ga.numpy().tolist() == [2.0, 2.0] and gc is None
    with pytest.raises(RuntimeError, match="not have been used"):
        clnet.autograd.grad((a * 2).sum(), [a, c], allow_unused=False)
    _, gz = clnet.autograd.grad((a * 2).sum(), [a, c], materialize_grads=True)
    assert gz.numpy().tolist() == [0.0]
    with pytest.raises(RuntimeError, match="does not require grad"):
        clnet.autograd.grad(clnet.ones(1, device=device).sum(), [a])


def test_set_grad_enabled_is_a_context_manager(device):
    x = T([1.0], device, requires_grad=True)
    with clnet.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert (x * 2).requires_grad
    clnet.set_grad_enabled(False)
    try:
        assert not clnet.is_grad_enabled()
    finally:
        clnet.set_grad_enabled(True)


# --- second derivatives --------------------------------------------------------------------------------
SECOND = {  # name: f(module, x) -> scalar
    "poly_trig": lambda m, x: (x.sin() * x ** 3).sum(),
    "tanh_div": lambda m, x: (x.tanh() / (x * x + 1)).mean(),
    "exp_sigmoid_dot": lambda m, x: (x.exp() * x.sigmoid()).sum() + (x @ x),
    "sqrt_log": lambda m, x: ((x * x + 1).sqrt() * (x * x + 2).log()).sum(),
    "pow_tensor": lambda m, x: ((x * x + 1) ** (x * 0.5)).sum(),
    "views": lambda m, x: ((x.reshape(2, 2).t() @ x.reshape(2, 2)) ** 2).sum() + (x.flip(0) * x).sum(),
}


@pytest.mark.parametrize("name", sorted(SECOND))
def test_second_derivatives(device, name):
    if not device.fp64:
        pytest.skip(f"{device.name} has no float64 for finite differences")
    f = SECOND[name]
    x0 = np.array([0.3, -1.2, 0.8, 1.5])

    def first(v):
        x = T(v, device, requires_grad=True)
        (g,) = clnet.autograd.grad(f(clnet, x), x)
        return g.numpy()
    x = T(x0, device, requires_grad=True)
    (g,) = clnet.autograd.grad(f(clnet, x), x, create_graph=True)
    assert g.requires_grad and g.grad_fn is not None
    hess_rows = []
    for i in range(len(x0)):
        (h,) = clnet.autograd.grad(g[i], x, retain_graph=True)
        hess_rows.append(h.numpy())
    numeric = np.stack([numeric_grad(lambda v, i=i: first(v)[i], x0) for i in range(len(x0))])
    np.testing.assert_allclose(np.stack(hess_rows), numeric, rtol=1e-5, atol=1e-6)
    if torch is not None:
        tx = torch.tensor(x0, requires_grad=True)
        (tg,) = torch.autograd.grad(f(torch, tx), tx, create_graph=True)
        (th,) = torch.autograd.grad(tg.sum(), tx)
        (oh,) = clnet.autograd.grad(g.sum(), x)
        np.testing.assert_allclose(oh.numpy(), th.numpy(), rtol=1e-9, atol=1e-12)


def test_gradient_penalty_through_linear(device):
    """A WGAN-GP style penalty: the gradient's norm is differentiated again into the weights."""
    clnet.manual_seed(0)
    lin = clnet.nn.Linear(3, 1).to(device)
    x = clnet.randn(4, 3, device=device, requires_grad=True)
    out = (lin(x) ** 2).sum()
    (gx,) = clnet.autograd.grad(out, x, create_graph=True)
    penalty = (gx * gx).sum()
    penalty.backward()
    w = lin.weight.detach().numpy()[0]
    b = lin.bias.detach().numpy()[0]
    xv = x.detach().numpy()
    # gx_i = 2 (x_i.w + b) w  ->  penalty = 4 |w|^2 sum_i (x_i.w + b)^2
    s = xv @ w + b
    expect_w = 8 * (w @ w) * (s[:, None] * xv).sum(0) + 8 * w * (s ** 2).sum()
    assert_close(lin.weight.grad.numpy()[0], expect_w, rtol=1e-4, atol=1e-5)


def test_create_graph_through_an_unsupported_op_says_so(device):
    x = T([0.1, 0.2], device, requires_grad=True)
    y = clnet.nn.functional.softmax(x, 0)[0]  # getitem's rule is differentiable, softmax's is not
    with pytest.raises(NotImplementedError, match="softmax"):
        clnet.autograd.grad(y, x, create_graph=True)
    (g,) = clnet.autograd.grad(clnet.nn.functional.softmax(x, 0)[0], x)  # first order still works
    assert g.shape == (2,)


def test_backward_create_graph_gives_grad_with_history(device):
    x = T([2.0], device, requires_grad=True)
    (x ** 3).backward(create_graph=True)
    assert x.grad.requires_grad and abs(x.grad.item() - 12.0) < 1e-6
    g = x.grad
    x.grad = None
    g.backward()
    assert abs(x.grad.item() - 12.0) < 1e-6  # d/dx 3x^2 = 6x

"""Tape autograd: gradient checks of every differentiable elementwise op, grad modes, graph life,
PyTorch's error cases, memory over many steps, and custom Functions."""
from __future__ import annotations

import gc

import numpy as np
import pytest

import clnet
from conftest import assert_close, gradcheck, is_slow_device, small

# --- finite-difference checks (float64) -------------------------------------------------------------
UNARY_DOMAINS = {
    # op -> how to make a safe input from standard normal samples (away from kinks and poles)
    "neg": lambda x: x, "exp": lambda x: x, "tanh": lambda x: x, "sigmoid": lambda x: x,
    "sin": lambda x: x, "cos": lambda x: x, "square": lambda x: x, "expm1": lambda x: x,
    "abs": lambda x: x + np.sign(x) * 0.1, "relu": lambda x: x + np.sign(x) * 0.1,
    "log": lambda x: np.abs(x) + 0.5, "sqrt": lambda x: np.abs(x) + 0.5, "rsqrt": lambda x: np.abs(x) + 0.5,
    "log1p": lambda x: np.abs(x), "reciprocal": lambda x: x + np.sign(x) * 0.5,
}


@pytest.mark.parametrize("name", sorted(UNARY_DOMAINS))
def test_unary_gradients(device, rng, name):
    x = UNARY_DOMAINS[name](rng.standard_normal((3, 5)))
    gradcheck(getattr(clnet, name), x, device=device)


def test_unary_methods_and_operators_gradients(device, rng):
    x = rng.standard_normal((4, 3))
    gradcheck(lambda t: -t.tanh() + abs(t + 0.05).sqrt() * t.sigmoid(), x, device=device)


BROADCAST = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 3), (4, 1)), ((5,), ()), ((), (2, 3))]


@pytest.mark.parametrize("shapes", BROADCAST, ids=[f"{a}-{b}" for a, b in BROADCAST])
@pytest.mark.parametrize("name", ["add", "sub", "mul", "div", "pow", "maximum", "minimum"])
def test_binary_gradients_with_broadcasting(device, rng, name, shapes):
    sa, sb = shapes
    a = rng.standard_normal(sa)
    b = rng.standard_normal(sb)
    if name == "div":
        b = b + np.sign(b) * 0.5
    if name == "pow":
        a = np.abs(a) + 0.5
    gradcheck(getattr(clnet, name), a, b, device=device)


@pytest.mark.parametrize("scalar", [2, -1.5, 0.5])
def test_scalar_operand_gradients(device, rng, scalar):
    x = np.abs(rng.standard_normal((3, 4))) + 0.5
    gradcheck(lambda t: t + scalar, x, device=device)
    gradcheck(lambda t: scalar - t, x, device=device)
    gradcheck(lambda t: t * scalar, x, device=device)
    gradcheck(lambda t: scalar / t, x, device=device)
    gradcheck(lambda t: t / scalar, x, device=device)
    gradcheck(lambda t: t ** scalar, x, device=device)
    gradcheck(lambda t: abs(scalar) ** t, x, device=device)
    gradcheck(lambda t: clnet.maximum(t, 1.0) + clnet.minimum(1.0, t), x + 0.01, device=device)


def test_pow_gradient_at_zero_base(device):
    if not device.fp64:
        pytest.skip("float64 needs cl_khr_fp64")
    a = clnet.tensor([0.0, 2.0], dtype=clnet.float64, requires_grad=True, device=device)
    b = clnet.tensor([2.0, 3.0], dtype=clnet.float64, requires_grad=True, device=device)
    (a ** b).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), [0.0, 12.0])
    np.testing.assert_allclose(b.grad.numpy(), [0.0, 8 * np.log(2)])


@pytest.mark.parametrize("bounds", [(0.0, None), (None, 0.3), (-0.4, 0.6)])
def test_clamp_gradient(device, rng, bounds):
    lo, hi = bounds
    x = rng.standard_normal((4, 6))
    for b in (lo, hi):  # keep samples away from the kinks
        if b is not None:
            x = np.where(np.abs(x - b) < 0.05, x + 0.1, x)
    gradcheck(lambda t: t.clamp(min=lo, max=hi), x, device=device)


def test_where_gradient(device, rng):
    c = rng.standard_normal((3, 4)) > 0
    gradcheck(lambda a, b: clnet.where(clnet.tensor(c, device=device), a, b),
              rng.standard_normal((3, 4)), rng.standard_normal((4,)), device=device)
    gradcheck(lambda a: clnet.where(clnet.tensor(c, device=device), a, 0.0), rng.standard_normal((1, 4)),
              device=device)


def test_maximum_ties_split_the_gradient(device):
    a = clnet.tensor([1.0, 2.0, 3.0], requires_grad=True, device=device)
    b = clnet.tensor([1.0, 5.0, 0.0], requires_grad=True, device=device)
    clnet.maximum(a, b).sum().backward()
    assert a.grad.tolist() == [0.5, 0.0, 1.0] and b.grad.tolist() == [0.5, 1.0, 0.0]


def test_inplace_ops_record_gradients(device, rng):
    x = rng.standard_normal((3, 4))

    def fn(t):
        y = t * 1.0
        y.mul_(t)        # reads its old value: a copy keeps it
        y += 2           # reads nothing
        y.sub_(t)
        y.clamp_(min=0.5)
        y.sqrt_()        # saves its output
        return y
    x = np.where(np.abs(x * x + 2 - x - 0.5) < 0.05, x + 0.2, x)
    gradcheck(fn, x, device=device)


def test_inplace_tracking_does_not_raise_when_nothing_read_was_changed(device):
    x = clnet.ones(3, requires_grad=True, device=device)
    y = x + 1            # add saves nothing
    y += 2
    z = y * 3            # mul by a scalar saves nothing of y
    z.add_(1)
    y.mul_(2)
    (z + y).sum().backward()
    assert x.grad.tolist() == [5.0, 5.0, 5.0]


def test_chain_of_ops_matches_manual_gradient(device, rng):
    x = rng.standard_normal((5, 3)).astype(np.float32)
    w = rng.standard_normal((3,)).astype(np.float32)
    tx = clnet.tensor(x, device=device)
    tw = clnet.tensor(w, requires_grad=True, device=device)
    loss = ((tx * tw).tanh() ** 2).sum()
    loss.backward()
    t = np.tanh(x * w)
    assert_close(tw.grad, (2 * t * (1 - t * t) * x).sum(0), rtol=1e-5, atol=1e-5)


# --- grad modes ---------------------------------------------------------------------------------------
def test_no_grad_and_enable_grad(device):
    x = clnet.ones(2, requires_grad=True, device=device)
    with clnet.no_grad():
        y = x * 2
        assert not clnet.is_grad_enabled()
        with clnet.enable_grad():
            z = x * 2
        w = x * 3
    assert not y.requires_grad and y.grad_fn is None and z.requires_grad and not w.requires_grad
    assert clnet.is_grad_enabled()

    @clnet.no_grad()
    def infer(t):
        return t * 2

    @clnet.enable_grad()
    def train(t):
        return t * 2
    assert not infer(x).requires_grad
    with clnet.no_grad():
        assert train(x).requires_grad
    clnet.set_grad_enabled(False)
    try:
        assert not (x * 1).requires_grad
    finally:
        clnet.set_grad_enabled(True)


def test_no_grad_restores_mode_after_exception(device):
    with pytest.raises(KeyError):
        with clnet.no_grad():
            raise KeyError
    assert clnet.is_grad_enabled()


def test_detach_and_requires_grad_(device):
    x = clnet.ones(3, requires_grad=True, device=device)
    y = (x * 2).detach()
    assert not y.requires_grad and y.grad_fn is None
    z = (y * x).sum()
    z.backward()
    assert x.grad.tolist() == [2.0, 2.0, 2.0]
    a = clnet.ones(2, device=device)
    b = a * 3
    assert not b.requires_grad
    a.requires_grad_()
    (a * 3).sum().backward()
    assert a.grad.tolist() == [3.0, 3.0]
    y.detach_()
    assert not y.requires_grad


# --- accumulation and aliasing -------------------------------------------------------------------
def test_grad_accumulates_across_backward_calls(device):
    x = clnet.tensor([1.0, 2.0], requires_grad=True, device=device)
    (x * x).sum().backward()
    (x * 3).sum().backward()
    assert x.grad.tolist() == [2 + 3, 4 + 3]
    x.grad.zero_()
    (x * 5).sum().backward()
    assert x.grad.tolist() == [5.0, 5.0]


def test_gradients_never_alias_between_leaves(device):
    a = clnet.ones(3, requires_grad=True, device=device)
    b = clnet.ones(3, requires_grad=True, device=device)
    c = a + b
    c.backward(clnet.ones(3, device=device))
    assert a.grad._buf is not b.grad._buf
    a.grad.zero_()
    assert b.grad.tolist() == [1.0, 1.0, 1.0]

    seed = clnet.ones(3, device=device)
    p = clnet.ones(3, requires_grad=True, device=device)
    q = clnet.ones(3, requires_grad=True, device=device)
    (p - q).backward(seed)
    seed += 10           # the user's gradient tensor is not kept as .grad either
    assert p.grad.tolist() == [1.0, 1.0, 1.0] and q.grad.tolist() == [-1.0, -1.0, -1.0]

    class Twice(clnet.autograd.Function):
        @staticmethod
        def forward(ctx, u, v):
            return u + v

        @staticmethod
        def backward(ctx, g):
            h = g * 2
            return h, h  # one tensor for two inputs
    u = clnet.ones(2, requires_grad=True, device=device)
    v = clnet.ones(2, requires_grad=True, device=device)
    Twice.apply(u, v).sum().backward()
    u.grad.zero_()
    assert v.grad.tolist() == [2.0, 2.0]


def test_leaf_used_twice_and_broadcast_gradient_sums(device):
    x = clnet.tensor([[1.0], [2.0]], requires_grad=True, device=device)  # (2, 1) broadcast to (2, 3)
    y = clnet.ones(3, requires_grad=True, device=device)
    (x * y + x).sum().backward()
    assert x.grad.shape == (2, 1) and x.grad.tolist() == [[6.0], [6.0]]
    assert y.grad.shape == (3,) and y.grad.tolist() == [3.0, 3.0, 3.0]


# --- graph lifetime and PyTorch's errors ---------------------------------------------------------------
def test_second_backward_through_freed_graph_raises(device):
    x = clnet.ones(2, requires_grad=True, device=device)
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_retain_graph_allows_second_backward(device):
    x = clnet.ones(2, requires_grad=True, device=device)
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    first = x.grad.numpy().copy()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * first, rtol=1e-6)


def test_shared_subgraph_freed_by_first_backward(device):
    x = clnet.ones(2, requires_grad=True, device=device)
    h = x.exp()
    a, b = h.sum(), (h * 2).sum()
    a.backward()
    with pytest.raises(RuntimeError, match="second time"):
        b.backward()


def test_inplace_change_of_saved_tensor_raises(device):
    x = clnet.ones(3, requires_grad=True, device=device)
    y = x.exp()          # saves its output
    y.add_(1)
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        y.sum().backward()
    a = clnet.ones(3, requires_grad=True, device=device)
    b = a * 2
    c = b * a            # saves b (for a's gradient)
    b[0] = 5.0           # setitem on a saved tensor
    with pytest.raises(RuntimeError, match="version"):
        c.sum().backward()


def test_backward_needs_scalar_or_gradient(device):
    x = clnet.ones(2, 3, requires_grad=True, device=device)
    y = x * 2
    with pytest.raises(RuntimeError, match="scalar outputs"):
        y.backward()
    y.backward(clnet.full((2, 3), 0.5, device=device))
    assert x.grad.tolist() == [[1.0] * 3] * 2
    with pytest.raises(RuntimeError, match="shape"):
        (x * 2).backward(clnet.ones(3, device=device))
    with pytest.raises(RuntimeError, match="does not require grad"):
        clnet.ones(2, device=device).sum().backward()


def test_inplace_on_leaf_that_requires_grad_raises(device):
    w = clnet.ones(3, requires_grad=True, device=device)
    with pytest.raises(RuntimeError, match="leaf"):
        w += 1
    with pytest.raises(RuntimeError, match="leaf"):
        w[0] += 1
    with pytest.raises(RuntimeError, match="leaf"):
        w.zero_()
    with clnet.no_grad():
        w -= 0.5
        w[1] = 7.0
    assert w.tolist() == [0.5, 7.0, 0.5] and w.requires_grad and w.is_leaf


def test_graph_is_released_after_backward(device):
    """Intermediate buffers go back to the pool once backward has run (no reference cycles)."""
    import weakref
    x = clnet.randn(64, requires_grad=True, device=device)
    h = x.exp()
    h2 = h.tanh() * h
    loss = h2.sum()
    refs = [weakref.ref(t) for t in (h, h2)]
    del h, h2
    gc.disable()
    try:
        loss.backward()
        assert all(r() is None for r in refs), "backward left intermediate tensors alive"
    finally:
        gc.enable()


def _memory(device):
    """Bytes of live device buffers (the pool's active bytes)."""
    return device.pool.active_bytes


def _assert_memory_flat(device, steps, step):
    """Call step() `steps` times with the garbage collector off (everything must be released by reference
    counting alone); the device memory in use after the last step must not exceed that after a tenth.
    Returns the last step's result."""
    gc.disable()
    try:
        marks = []
        for t in range(steps):
            out = step()
            if t in (steps // 10, steps - 1):
                device.synchronize()
                marks.append(_memory(device))
    finally:
        gc.enable()
    assert marks[1] <= marks[0], f"device memory grew from {marks[0]} to {marks[1]} bytes"
    return out


@pytest.mark.slow
def test_memory_is_flat_over_many_training_steps(device, rng):
    steps = small(device, 10_000, 100)
    x = clnet.tensor(rng.standard_normal((8, 5)).astype(np.float32), device=device)
    y = clnet.tensor(rng.standard_normal((8, 2)).astype(np.float32), device=device)
    w1 = clnet.tensor(rng.standard_normal((5, 6)).astype(np.float32) * 0.1, requires_grad=True, device=device)
    w2 = clnet.tensor(rng.standard_normal((6, 2)).astype(np.float32) * 0.1, requires_grad=True, device=device)

    def step():
        nonlocal w1, w2
        loss = ((x.mm(w1).clamp(min=0).mm(w2) - y) ** 2).sum()
        loss.backward()
        with clnet.no_grad():
            w1 -= 1e-3 * w1.grad
            w2 -= 1e-3 * w2.grad
            w1.grad.zero_()
            w2.grad.zero_()
        return loss
    loss = _assert_memory_flat(device, steps, step)
    assert np.isfinite(loss.item())


def test_forward_only_graphs_are_freed_without_the_garbage_collector(device, rng):
    """Evaluating with parameters that require grad and never calling backward must not leak: no node
    may reference its own output (the foundation's detach() made such a cycle through saved outputs)."""
    x = clnet.tensor(rng.standard_normal((8, 5)).astype(np.float32), device=device)
    w = clnet.tensor(rng.standard_normal((5, 6)).astype(np.float32), requires_grad=True, device=device)
    _assert_memory_flat(device, small(device, 300, 40),
                        lambda: (x.mm(w).tanh() ** 2 + x.mm(w).exp().sqrt()).sum().item())


# --- autograd.grad ------------------------------------------------------------------------------------
def test_autograd_grad_returns_without_accumulating(device):
    x = clnet.tensor([1.0, 2.0], requires_grad=True, device=device)
    z = clnet.tensor([3.0], requires_grad=True, device=device)
    y = (x * x).sum()
    gx, gz = clnet.autograd.grad(y, [x, z])
    assert gx.tolist() == [2.0, 4.0] and gz is None and x.grad is None


# --- custom Functions ---------------------------------------------------------------------------------
class MyReLU(clnet.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad_y):
        x, = ctx.saved_tensors
        grad_input = grad_y.clone()
        grad_input[x < 0] = 0
        return grad_input


def test_function_myrelu(device, rng):
    x = rng.standard_normal((4, 5))
    x = x + np.sign(x) * 0.05
    gradcheck(MyReLU.apply, x, device=device)


class ScaleShift(clnet.autograd.Function):
    """y = a * x + b, with a non-tensor argument `a` and two tensor inputs."""

    @staticmethod
    def forward(ctx, x, a, b):
        ctx.a = a
        ctx.seen = ctx.needs_input_grad
        return x * a + b

    @staticmethod
    def backward(ctx, g):
        gx = g * ctx.a if ctx.needs_input_grad[0] else None
        gb = g if ctx.needs_input_grad[2] else None
        return gx, None, gb


def test_function_with_non_tensor_args_and_needs_input_grad(device, rng):
    gradcheck(lambda x, b: ScaleShift.apply(x, 3.0, b), rng.standard_normal((2, 3)), rng.standard_normal((3,)),
              device=device)
    x = clnet.ones(2, requires_grad=True, device=device)
    b = clnet.ones(2, device=device)
    y = ScaleShift.apply(x, 2.0, b)
    assert y.requires_grad and y.grad_fn is not None
    y.sum().backward()
    assert x.grad.tolist() == [2.0, 2.0] and b.grad is None


def test_function_errors(device):
    class Wrong(clnet.autograd.Function):
        @staticmethod
        def forward(ctx, x, k):
            return x * k

        @staticmethod
        def backward(ctx, g):
            return g  # forward took two arguments
    x = clnet.ones(2, requires_grad=True, device=device)
    with pytest.raises(RuntimeError, match="returned 1 gradients"):
        Wrong.apply(x, 2.0).sum().backward()

    class Saves(clnet.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            y = x * 2
            ctx.save_for_backward(y)
            return y

        @staticmethod
        def backward(ctx, g):
            y, = ctx.saved_tensors
            return g * y
    out = Saves.apply(x)
    with clnet.no_grad():
        out.add_(1)
    with pytest.raises(RuntimeError, match="in-place"):
        out.sum().backward()


def test_function_with_two_outputs_one_unused(device):
    class Split(clnet.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2, x * 3

        @staticmethod
        def backward(ctx, g2, g3):
            return g2 * 2 + g3 * 3
    x = clnet.ones(3, requires_grad=True, device=device)
    a, b = Split.apply(x)
    a.sum().backward()  # b's gradient is filled with zeros
    assert x.grad.tolist() == [2.0, 2.0, 2.0]


def test_function_returning_its_input_keeps_input_history(device):
    class Identity(clnet.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x

        @staticmethod
        def backward(ctx, g):
            return g * 10
    x = clnet.ones(2, requires_grad=True, device=device)
    y = Identity.apply(x)
    assert y is not x and x.is_leaf
    y.sum().backward()
    assert x.grad.tolist() == [10.0, 10.0]


def test_copy_is_differentiable_and_guards_leaf_views(device):
    x = clnet.ones(3, requires_grad=True, device=device)
    y = clnet.zeros(2, 3, device=device)
    y.copy_(x * 2)  # broadcast copy: the gradient is summed back to x's shape
    assert y.requires_grad and not y.is_leaf
    (y * y).sum().backward()
    assert x.grad.tolist() == [16.0, 16.0, 16.0]
    w = clnet.ones(3, requires_grad=True, device=device)
    with pytest.raises(RuntimeError, match="view of a leaf"):
        w[1:].zero_()
    with pytest.raises(RuntimeError, match="view of a leaf"):
        w[:2].mul_(2)

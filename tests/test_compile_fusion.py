"""Graph passes (constant folding, dead code, elementwise fusion) keep results equal to eager execution:
random op graphs with broadcasting, views, in-place updates, comparisons and reductions, forward and
backward, compiled vs eager; and the lecture's two-layer step in at most half of eager's launches."""
from __future__ import annotations

import numpy as np
import pytest

import clnet
from clnet.compiler import explain

UNARY = ["exp", "tanh", "sigmoid", "relu", "abs", "neg", "square", "sin"]
BINARY = ["add", "sub", "mul", "maximum", "minimum"]


def _program(seed):
    """A random differentiable program over inputs a (4, 5), b (5,), c (4, 1), w (5, 5)."""
    r = np.random.default_rng(seed)
    steps = []
    for _ in range(int(r.integers(6, 12))):
        kind = r.choice(["unary", "binary", "where", "clamp", "matmul", "reduce", "transpose", "inplace", "scale"])
        steps.append((kind, int(r.integers(0, 1 << 30))))

    def run(a, b, c, w):
        vals = [a, b, c, a * 0.5]
        for kind, s in steps:
            rr = np.random.default_rng(s)
            x = vals[int(rr.integers(len(vals)))]
            y = vals[int(rr.integers(len(vals)))]
            if kind == "unary":
                v = getattr(clnet, UNARY[int(rr.integers(len(UNARY)))])(x * 0.3)
            elif kind == "binary":
                v = getattr(clnet, BINARY[int(rr.integers(len(BINARY)))])(x, y)
            elif kind == "where":
                v = clnet.where(x > y, x, y * 2.0)
            elif kind == "clamp":
                v = x.clamp(min=-0.5, max=0.7)
            elif kind == "matmul":
                v = (x + a).matmul(w) if (x + a).shape[-1] == 5 else x
            elif kind == "reduce":
                v = (x + a).sum(dim=int(rr.integers(2)), keepdim=True) * 0.1
            elif kind == "transpose":
                v = (x + a).t().t() * 1.5 + (x + a)
            elif kind == "inplace":
                v = x + 1.0
                v.mul_(y if y.shape == v.shape else 0.5)
                v += 0.25
            else:
                v = x * float(rr.uniform(-2, 2)) + float(rr.uniform(-1, 1))
            vals.append(v)
        out = vals[-1] + vals[-2] * vals[-3]
        return (out * out).sum()
    return run


@pytest.mark.parametrize("seed", range(8))
def test_random_graphs_compiled_equal_eager(device, seed):
    rng = np.random.default_rng(1000 + seed)
    data = [rng.standard_normal(s).astype(np.float32) for s in ((4, 5), (5,), (4, 1), (5, 5))]
    prog = _program(seed)

    def leaves():
        return [clnet.tensor(d, device=device, requires_grad=True) for d in data]

    def step(a, b, c, w):
        loss = prog(a, b, c, w)
        loss.backward()
        return loss
    compiled = clnet.compile(step)
    ref_leaves = leaves()
    ref = step(*ref_leaves).numpy()
    for call in range(3):
        ls = leaves()
        loss = compiled(*ls)
        np.testing.assert_allclose(loss.numpy(), ref, rtol=2e-5, atol=1e-5)
        for got, want in zip(ls, ref_leaves):
            assert (got.grad is None) == (want.grad is None)
            if want.grad is not None:
                np.testing.assert_allclose(got.grad.numpy(), want.grad.numpy(), rtol=2e-5, atol=1e-5)
    assert compiled.stats.replays == 1
    assert compiled.stats.launches_replayed <= compiled.stats.launches_traced


def test_fused_comparisons_ints_and_bool_intermediates(device):
    def f(x, k):
        m = x > 0                       # a bool intermediate inside the group
        n = (k * 3) // 2 + k % 2        # integer ops
        return clnet.where(m, x * 2, -x) + n.to(dtype=clnet.float32), m.logical_not()
    x = clnet.tensor([-1.5, 0.0, 2.0, 3.5], device=device)
    k = clnet.tensor([1, 2, 3, 4], device=device)
    cf = clnet.compile(f)
    want = [t.numpy() for t in f(x, k)]
    for _ in range(3):
        got = [t.numpy() for t in cf(x, k)]
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    assert cf.stats.launches_replayed < cf.stats.launches_traced


def test_transposed_and_broadcast_reads_are_not_confused(device, rng):
    """x written by the group and read transposed: those reads must come from memory after a store."""
    a = clnet.tensor(rng.standard_normal((6, 6)).astype(np.float32), device=device)

    def f(a):
        y = a * 2 + 1
        z = y.t() + y          # y read in two layouts
        return z * z
    cf = clnet.compile(f)
    want = f(a).numpy()
    for _ in range(3):
        np.testing.assert_allclose(cf(a).numpy(), want, rtol=1e-6)


def test_lecture_two_layer_step_launches_halved(device, rng):
    x = clnet.tensor(rng.standard_normal((64, 100)).astype(np.float32), device=device)
    y = clnet.tensor(rng.standard_normal((64, 10)).astype(np.float32), device=device)
    w1 = clnet.tensor(rng.standard_normal((100, 50)).astype(np.float32), device=device, requires_grad=True)
    w2 = clnet.tensor(rng.standard_normal((50, 10)).astype(np.float32), device=device, requires_grad=True)

    def step():
        loss = (x.mm(w1).clamp(min=0).mm(w2) - y).pow(2).sum()
        loss.backward()
        with clnet.no_grad():
            w1.sub_(1e-6 * w1.grad)
            w2.sub_(1e-6 * w2.grad)
            w1.grad.zero_()
            w2.grad.zero_()
        return loss
    step()
    report = explain(step)
    assert report["launches_after_passes"] * 2 <= report["launches"], report


def test_gemm_epilogues_relu_and_masks(device, rng):
    """Linear + ReLU: the ReLU runs in the GEMM's store; the ReLU's gradient mask in the next GEMM's."""
    clnet.manual_seed(3)
    model = clnet.nn.Sequential(clnet.nn.Linear(12, 16), clnet.nn.ReLU(), clnet.nn.Linear(16, 4)).to(device)
    x = clnet.tensor(rng.standard_normal((8, 12)).astype(np.float32), device=device)

    def step(x):
        model.zero_grad()
        out = model(x)
        (out * out).sum().backward()
        return out
    want = step(x).numpy()
    grads = [p.grad.numpy() for p in model.parameters()]
    report = explain(step, x)
    assert report["launches_after_passes"] <= report["launches"] - 2
    cf = clnet.compile(step)
    for _ in range(3):
        np.testing.assert_allclose(cf(x).numpy(), want, rtol=1e-5, atol=1e-6)
    for p, g in zip(model.parameters(), grads):
        np.testing.assert_allclose(p.grad.numpy(), g, rtol=1e-5, atol=1e-6)


def test_fused_relu_keeps_nan(device):
    w = clnet.tensor([[1.0, -1.0], [0.0, 1.0]], device=device)

    def f(x):
        return clnet.relu(x.mm(w))
    x = clnet.tensor([[float("nan"), 1.0], [2.0, -3.0]], device=device)
    cf = clnet.compile(f)
    want = f(x).numpy()
    for _ in range(3):
        np.testing.assert_array_equal(np.isnan(cf(x).numpy()), np.isnan(want))
        np.testing.assert_allclose(np.nan_to_num(cf(x).numpy()), np.nan_to_num(want))


def test_buffer_planning_shares_dead_intermediates(device, rng):
    """A chain of matmuls: each intermediate dies after the next one is made, so the plan holds about two."""
    ws = [clnet.tensor(rng.standard_normal((32, 32)).astype(np.float32) * 0.2, device=device) for _ in range(6)]

    def f(x):
        for w in ws:
            x = x.mm(w).tanh()
        return x.sum()
    x = clnet.tensor(rng.standard_normal((16, 32)).astype(np.float32), device=device)
    want = f(x).numpy()
    report = explain(f, x)["graph"].pass_report
    assert report["bytes_after"] < report["bytes_before"] / 2
    cf = clnet.compile(f)
    for _ in range(3):
        np.testing.assert_allclose(cf(x).numpy(), want, rtol=1e-5)

"""Graph passes (constant folding, dead code, elementwise fusion) keep results equal to eager execution:
random op graphs with broadcasting, views, in-place updates, comparisons and reductions, forward and
backward, compiled vs eager; and the lecture's two-layer step in at most half of eager's launches."""
from __future__ import annotations

import numpy as np
import pytest

import clnet
from clnet.compiler import explain, fusion

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


# --- GEMM groups (fuse_gemm_groups): the elementwise launches using a GEMM's result run in its epilogue ------
def _two_layer(device, rng, n=13, d_in=37, h=21, d_out=10, lr=1e-3):
    """The lecture's step at small odd sizes (edge blocks in every GEMM), with numpy float64 twins."""
    x, y = rng.standard_normal((n, d_in)), rng.standard_normal((n, d_out))
    w1, w2 = rng.standard_normal((d_in, h)) * 0.3, rng.standard_normal((h, d_out)) * 0.3
    t = {k: clnet.tensor(v.astype(np.float32), device=device, requires_grad=k in ("w1", "w2"))
         for k, v in (("x", x), ("y", y), ("w1", w1), ("w2", w2))}

    def step():
        loss = (t["x"].mm(t["w1"]).clamp(min=0).mm(t["w2"]) - t["y"]).pow(2).sum()
        loss.backward()
        with clnet.no_grad():
            t["w1"].sub_(lr * t["w1"].grad)
            t["w2"].sub_(lr * t["w2"].grad)
            t["w1"].grad.zero_()
            t["w2"].grad.zero_()
        return loss

    ref = {"w1": w1.copy(), "w2": w2.copy()}

    def numpy_step():
        hh = x @ ref["w1"]
        hr = np.maximum(hh, 0)
        d = hr @ ref["w2"] - y
        gy = 2 * d
        g2 = hr.T @ gy
        gh = (gy @ ref["w2"].T) * (hh >= 0)
        g1 = x.T @ gh
        ref["w1"] -= lr * g1
        ref["w2"] -= lr * g2
        return (d * d).sum()
    return t, step, ref, numpy_step


def test_gemm_groups_sgd_update_in_the_gradient_gemm(device, rng):
    """Each weight's SGD update and .grad zeroing run in the epilogue of the GEMM making its gradient, the
    forward ReLU beside its input, the loss's difference, square and gradient in the second GEMM: 6 launches
    (20 eager); weights, .grad and losses equal numpy float64's and eager clnet's."""
    t, step, ref, numpy_step = _two_layer(device, rng)
    te, estep, _, _ = _two_layer(device, np.random.default_rng(int(rng.integers(1 << 30))))
    for k in t:   # the eager twin from the same values
        te[k] = clnet.tensor(t[k].numpy(), device=device, requires_grad=k in ("w1", "w2"))
    report = explain(step)
    kernels = [r.name for r in report["graph"].kernel_launches]
    assert report["launches"] >= 18 and report["launches_after_passes"] <= 6, (report["launches"], kernels)
    multi = [r for r in report["graph"].kernel_launches if (r.kernel.params or {}).get("ext", ())[:1] == ("multi",)]
    assert len(multi) >= 3, kernels
    cstep = clnet.compile(step)
    # explain ran the step once more: numpy's and the eager twin's weights start from its result
    ref["w1"], ref["w2"] = t["w1"].numpy().astype(np.float64), t["w2"].numpy().astype(np.float64)
    for k in ("w1", "w2"):
        with clnet.no_grad():
            te[k].copy_(t[k])
    for i in range(5):
        got, want, eager = cstep().numpy(), numpy_step(), estep().numpy()
        np.testing.assert_allclose(got, want, rtol=1e-4)
        np.testing.assert_allclose(got, eager, rtol=1e-5)
        for k in ("w1", "w2"):
            np.testing.assert_allclose(t[k].numpy(), ref[k], rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(t[k].numpy(), te[k].numpy(), rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(t[k].grad.numpy(), np.zeros(t[k].shape, np.float32))
    assert cstep.stats.replays >= 3


def test_gemm_groups_keep_what_outside_reads(device, rng):
    """A GEMM's result read by fused members and by a later reduction is still stored, so is a member's
    value read by a launch that stays outside (its other operand is written in between)."""
    a = clnet.tensor(rng.standard_normal((9, 11)).astype(np.float32), device=device)
    w = clnet.tensor(rng.standard_normal((11, 19)).astype(np.float32), device=device)
    acc = clnet.tensor(rng.standard_normal((9, 19)).astype(np.float32), device=device)

    def f():
        h = a.mm(w)
        acc.mul_(0.5)
        u = h.tanh() * 2.0
        acc.add_(h * h)
        return h.sum(dim=0), u
    a64, w64 = a.numpy().astype(np.float64), w.numpy().astype(np.float64)
    acc64 = acc.numpy().astype(np.float64)
    graph = explain(f)["graph"]
    exts = [(r.kernel.params or {}).get("ext", ()) for r in graph.kernel_launches if r.name.startswith("gemm")]
    assert exts and exts[0][:1] == ("multi",) and exts[0][4] == "r" and len(exts[0][5]) == 2, exts
    acc64 = 0.5 * acc64 + (a64 @ w64) ** 2   # explain ran f once
    cf = clnet.compile(f)
    for _ in range(4):
        s, u = cf()
        h = a64 @ w64
        acc64 = 0.5 * acc64 + h * h
        np.testing.assert_allclose(s.numpy(), h.sum(0), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(u.numpy(), np.tanh(h) * 2, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(acc.numpy(), acc64, rtol=1e-4, atol=1e-4)
    assert cf.stats.replays >= 2 and cf.stats.launches_replayed <= 3, cf.stats


def test_gemm_groups_vector_comparisons_left_out():
    """OpenCL C's vector comparisons give -1 for true (scalars 1): a member using one as a value stays out
    of the GEMM (whose CPU variant runs members on vectors); a ternary's condition is a select either way."""
    from clnet.compiler.fusion import _vector_safe
    assert _vector_safe("(v0 < v1 ? v1 : v0)") and _vector_safe("v0 * v1 + tanh(v0)")
    assert _vector_safe("(v1 >= v2 ? v0 : 0)") and _vector_safe("(v0 != v1 ? v0 : v1)")
    assert not _vector_safe("(v0 > v1) * v2") and not _vector_safe("v0 == v1")
    assert not _vector_safe("(v0 > 0 ? v1 : 0) + (v0 < v1)") and not _vector_safe("!v0") and not _vector_safe("v0 && v1")


ADAM_FLAGS = [dict(), dict(weight_decay=0.1), dict(weight_decay=0.1, decoupled_weight_decay=True),
              dict(maximize=True)]


def _adam_numpy(w, g, m, v, t, lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, decoupled_weight_decay=False,
                maximize=False):
    """torch.optim.Adam's update in float64; returns (w, m, v)."""
    g = -g if maximize else g
    if weight_decay and decoupled_weight_decay:
        w = w * (1 - lr * weight_decay)
    elif weight_decay:
        g = g + weight_decay * w
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    denom = np.sqrt(v) / np.sqrt(1 - b2 ** t) + eps
    return w - lr / (1 - b1 ** t) * m / denom, m, v


@pytest.mark.parametrize("flags", ADAM_FLAGS, ids=["plain", "l2", "adamw", "maximize"])
def test_gemm_groups_adam_update_in_the_gradient_gemm(device, rng, monkeypatch, flags):
    """Adam's update of a weight runs in the epilogue of the GEMM making its gradient (the step count and
    bias corrections refreshed per replay): weight, .grad and state equal numpy float64's over 4 steps."""
    monkeypatch.setattr(clnet.optim.Adam, "LARGE", 16)   # these small weights get launches of their own
    monkeypatch.setattr(fusion, "ADAM_IN_CPU_GEMM", True)   # checked on every GEMM variant
    x = rng.standard_normal((11, 13))
    y = rng.standard_normal((11, 9))
    w0 = rng.standard_normal((9, 13)) * 0.3
    lin = clnet.nn.Linear(13, 9, bias=False).to(device)
    with clnet.no_grad():
        lin.weight.copy_(clnet.tensor(w0.astype(np.float32), device=device))
    opt = clnet.optim.Adam(lin.parameters(), lr=1e-2, **flags)
    tx, ty = (clnet.tensor(a.astype(np.float32), device=device) for a in (x, y))

    def step():
        opt.zero_grad()
        loss = ((lin(tx) - ty) ** 2).sum()
        loss.backward()
        opt.step()
        return loss
    cstep = clnet.compile(step)
    w, m, v = w0, np.zeros_like(w0), np.zeros_like(w0)
    for t in range(1, 6):
        got = cstep().numpy()
        d = x @ w.T - y
        g = 2 * d.T @ x
        np.testing.assert_allclose(got, (d * d).sum(), rtol=1e-4)
        w, m, v = _adam_numpy(w, g, m, v, t, 1e-2, **flags)
        np.testing.assert_allclose(lin.weight.grad.numpy(), g, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(lin.weight.numpy(), w, rtol=1e-4, atol=1e-5)
        state = opt.state[lin.weight]
        np.testing.assert_allclose(state["exp_avg"].numpy(), m, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(state["exp_avg_sq"].numpy(), v, rtol=1e-4, atol=1e-6)
        assert state["step"] == t
    assert cstep.stats.replays >= 2
    report = explain(step)
    fused = [r for r in report["graph"].kernel_launches if (r.kernel.params or {}).get("ext", ())[:1] == ("multi",)]
    assert fused and not any(r.name == "adam_step" for r in report["graph"].kernel_launches), \
        [r.name for r in report["graph"].kernel_launches]


def test_adam_keeps_its_own_launch_after_the_cpu_gemm(device, rng, monkeypatch):
    """In the CPU GEMM, Adam's update is not moved into the gradient GEMM's epilogue (slower there, see
    fusion._update_accesses): the compiled step keeps an adam_step launch."""
    if device.profile.matmul_variant != "cpu":
        pytest.skip("the device's GEMM is the tiled (GPU) variant, whose epilogue runs Adam")
    monkeypatch.setattr(clnet.optim.Adam, "LARGE", 16)
    lin = clnet.nn.Linear(13, 9, bias=False).to(device)
    opt = clnet.optim.Adam(lin.parameters(), lr=1e-2)
    tx = clnet.tensor(rng.standard_normal((11, 13)).astype(np.float32), device=device)

    def step():
        opt.zero_grad()
        loss = (lin(tx) ** 2).sum()
        loss.backward()
        opt.step()
        return loss
    step()   # Adam's state exists from here on (the traced update is the steady one)
    launches = explain(step)["graph"].kernel_launches
    assert any(r.name == "adam_step" for r in launches), [r.name for r in launches]


def test_gemm_groups_adam_mlp_equals_eager(device, rng, monkeypatch):
    """A ReLU MLP with biases under Adam, compiled (weight updates in the gradient GEMMs, the small
    parameters' update launch as traced) and eager from the same start: equal losses and parameters."""
    monkeypatch.setattr(clnet.optim.Adam, "LARGE", 64)
    monkeypatch.setattr(fusion, "ADAM_IN_CPU_GEMM", True)
    x = clnet.tensor(rng.standard_normal((16, 12)).astype(np.float32), device=device)
    y = clnet.tensor(rng.integers(0, 5, 16).astype(np.int64), device=device)

    def make():
        clnet.manual_seed(7)
        model = clnet.nn.Sequential(clnet.nn.Linear(12, 24), clnet.nn.ReLU(), clnet.nn.Linear(24, 5)).to(device)
        opt = clnet.optim.Adam(model.parameters(), lr=1e-2)

        def step():
            opt.zero_grad()
            loss = clnet.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss
        return model, step
    em, estep = make()
    cm, cstep = make()
    cstep = clnet.compile(cstep)
    for _ in range(5):
        np.testing.assert_allclose(cstep().numpy(), estep().numpy(), rtol=1e-5, atol=1e-6)
    for pe, pc in zip(em.parameters(), cm.parameters()):
        np.testing.assert_allclose(pc.numpy(), pe.numpy(), rtol=1e-5, atol=1e-6)
    assert cstep.stats.replays >= 2 and cstep.stats.launches_replayed < cstep.stats.launches_traced


@pytest.mark.parametrize("flags", [dict(), dict(weight_decay=0.1), dict(maximize=True), dict(momentum=0.9)],
                         ids=["plain", "l2", "maximize", "momentum"])
def test_gemm_groups_sgd_optimizer_update(device, rng, monkeypatch, flags):
    """clnet.optim.SGD without momentum runs in the gradient GEMM's epilogue (with momentum it stays a
    launch of its own); weights equal numpy float64's either way."""
    monkeypatch.setattr(clnet.optim.SGD, "LARGE", 16)
    x, y = rng.standard_normal((11, 13)), rng.standard_normal((11, 9))
    w = rng.standard_normal((9, 13)) * 0.3
    lin = clnet.nn.Linear(13, 9, bias=False).to(device)
    with clnet.no_grad():
        lin.weight.copy_(clnet.tensor(w.astype(np.float32), device=device))
    lr = 1e-2
    opt = clnet.optim.SGD(lin.parameters(), lr=lr, **flags)
    tx, ty = (clnet.tensor(a.astype(np.float32), device=device) for a in (x, y))

    def step():
        opt.zero_grad()
        loss = ((lin(tx) - ty) ** 2).sum()
        loss.backward()
        opt.step()
        return loss
    cstep = clnet.compile(step)
    buf = None
    for _ in range(5):
        cstep()
        g = 2 * (x @ w.T - y).T @ x
        g = -g if flags.get("maximize") else g
        g = g + flags.get("weight_decay", 0.0) * w
        if flags.get("momentum"):
            buf = g if buf is None else 0.9 * buf + g
            g = buf
        w = w - lr * g
        np.testing.assert_allclose(lin.weight.numpy(), w, rtol=1e-4, atol=1e-5)
    names = [r.name for r in explain(step)["graph"].kernel_launches]
    assert ("sgd_step" in names) == bool(flags.get("momentum")), names


def test_powers_one_and_two_become_products(device, rng):
    """pow(x, 1) and pow(x, 2) with a scalar exponent (the backward of t.pow(2) and t.pow(3)) are rewritten
    (x, x * x): the gradient equals numpy float64's, negative and zero values included."""
    a = rng.standard_normal((6, 8)).astype(np.float32)
    a[0, :2] = [0.0, -0.0]
    w = rng.standard_normal((8, 9)).astype(np.float32)
    ta = clnet.tensor(a, device=device)
    tw = clnet.tensor(w, device=device, requires_grad=True)

    def f():
        h = ta.mm(tw)
        loss = h.pow(2).sum() + h.pow(3).sum() * 0.1
        loss.backward()
        with clnet.no_grad():
            g = tw.grad * 1.0
            tw.grad.zero_()
        return loss, g
    f()
    traced = [getattr(r.note, "expr", "") or "" for r in clnet.compiler.trace(f)[0].launches]
    assert sum(e.count("pow(") for e in traced) == 3, traced    # h ** 3; the backward's pow(h, 1), pow(h, 2)
    graph = explain(f)["graph"]
    src = " ".join(str((r.kernel.params or {}).get("ext", ())) + str((r.kernel.params or {}).get("body", ()))
                   for r in graph.kernel_launches)
    assert src.count("pow(") == 1, src                              # h ** 3 only
    cf = clnet.compile(f)
    h = a.astype(np.float64) @ w.astype(np.float64)
    for _ in range(3):
        loss, g = cf()
        np.testing.assert_allclose(loss.numpy(), (h ** 2).sum() + 0.1 * (h ** 3).sum(), rtol=1e-4)
        np.testing.assert_allclose(g.numpy(), a.T.astype(np.float64) @ (2 * h + 0.3 * h * h), rtol=1e-4, atol=1e-4)

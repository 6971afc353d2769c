"""Index tensors that stay on the device (clnet/ops/scatter_plan.py): the scatter plan sorted on the device
(gradient of x[idx], embeddings, x[idx] = v) against numpy float64 and the host-planned path, the bounds
check as a guard, and compiled embedding training steps: one graph, equal to eager, bad tokens raise
before anything is written."""
from __future__ import annotations

import numpy as np
import pytest

import clnet
from clnet.compiler import explain
from clnet.compiler.trace import GraphBreakError
from clnet.ops import scatter_plan
from conftest import assert_close, gradcheck, small


def _rand(rng, shape):
    return np.asarray(rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape))


def _grad_of(device, a, key_of, g):
    """x.grad of sum(x[key] * g) with the key built by key_of(device)."""
    x = clnet.tensor(a, device=device, requires_grad=True)
    (x[key_of(device)] * clnet.tensor(g, device=device)).sum().backward()
    return x.grad.numpy()


# (x shape, key on numpy arrays) -> the key as index tensors (device plan) and as numpy arrays (host plan)
CASES = [
    ((7, 3), lambda r: (r.integers(-7, 7, 40),)),                        # duplicates, negative entries
    ((9, 4), lambda r: (r.integers(0, 9, (6, 50)),)),                    # 2-D index, 300 entries: 3 sort blocks
    ((5, 6), lambda r: (slice(None), r.integers(0, 6, 11))),             # entries adjacent in the output
    ((4, 5, 3), lambda r: (r.integers(0, 4, 12), slice(None), r.integers(-3, 3, 12))),  # two arrays, split
    ((4, 5), lambda r: (r.integers(0, 4, (3, 1)), r.integers(0, 5, (4,)))),   # broadcast arrays
    ((6,), lambda r: (r.integers(0, 6, 1),)),                            # one entry
    ((6, 2), lambda r: (np.zeros(0, np.int64),)),                        # no entries
    ((3, 2), lambda r: (np.full(257, 2),)),                              # one target, many entries
]


def _tensor_key(key, device, dtype=np.int64):
    return tuple(clnet.tensor(k.astype(dtype), device=device) if isinstance(k, np.ndarray) else k for k in key)


@pytest.mark.parametrize("case", range(len(CASES)))
def test_device_plan_gradient_matches_numpy_and_host_plan(device, rng, case):
    shape, make = CASES[case]
    key = make(rng)
    a = _rand(rng, shape).astype(np.float32)
    ref_out = a[key]
    g = _rand(rng, ref_out.shape).astype(np.float32)
    dev_grad = _grad_of(device, a, lambda d: _tensor_key(key, d), g)
    ref = np.zeros(shape)
    np.add.at(ref, key, g.astype(np.float64))
    assert_close(dev_grad, ref, rtol=1e-5, atol=1e-5, what="device-planned gradient")
    host_grad = _grad_of(device, a, lambda d: key, g)        # numpy keys: the host-sorted plan
    np.testing.assert_array_equal(dev_grad, host_grad)       # same summation order, bit for bit
    again = _grad_of(device, a, lambda d: _tensor_key(key, d), g)
    np.testing.assert_array_equal(dev_grad, again)           # deterministic


def test_device_plan_int32_and_strided_index(device, rng):
    a = _rand(rng, (8, 3)).astype(np.float32)
    idx = rng.integers(-8, 8, (5, 12))
    g = _rand(rng, (5, 6, 3)).astype(np.float32)
    ref = np.zeros((8, 3))
    np.add.at(ref, idx[:, ::2], g.astype(np.float64))
    for dtype in (np.int64, np.int32):
        got = _grad_of(device, a, lambda d: (clnet.tensor(idx.astype(dtype), device=d)[:, ::2],), g)
        assert_close(got, ref, rtol=1e-5, atol=1e-5, what=f"{np.dtype(dtype).name} strided index")
        host = _grad_of(device, a, lambda d: (idx[:, ::2],), g)
        np.testing.assert_array_equal(got, host)


def test_device_plan_keys_sorted_with_out_of_bounds_last(device, rng):
    """The plan's keys (target * J + j) come out sorted; entries outside the table get target A (skipped)."""
    n = small(device, 1000, 200)
    vals = rng.integers(-12, 12, n)                      # [-12, -10) and [10, 12) are outside size 10
    ix = clnet.tensor(vals, device=device)
    plan = scatter_plan.DevicePlan([(ix, 0, 1)], [10], n, device)
    wrapped = np.where(vals < 0, vals + 10, vals)
    target = np.where((wrapped >= 0) & (wrapped < 10), wrapped, 10)
    np.testing.assert_array_equal(plan.keys.numpy(), np.sort(target * n + np.arange(n)))
    won = plan.winners(device).numpy()
    last = np.zeros(n, bool)
    for t in range(10):
        hits = np.nonzero(target == t)[0]
        if hits.size:
            last[hits[-1]] = True
    np.testing.assert_array_equal(won, last)


def test_device_plan_put_last_duplicate_wins(device, rng):
    a = _rand(rng, (6, 4)).astype(np.float32)
    idx = rng.integers(-6, 6, 30)
    v = _rand(rng, (30, 4)).astype(np.float32)
    x = clnet.tensor(a, device=device)
    x[clnet.tensor(idx, device=device)] = clnet.tensor(v, device=device)
    ref = a.copy()
    for j, i in enumerate(idx):          # assignment in order: the last entry aimed at a row stays
        ref[i] = v[j]
    assert_close(x, ref)
    y = clnet.tensor(a, device=device)
    y[idx] = clnet.tensor(v, device=device)   # host plan
    np.testing.assert_array_equal(x.numpy(), y.numpy())


def test_gradcheck_index_tensors(device, rng):
    a = _rand(rng, (5, 3))
    idx = rng.integers(-5, 5, (4, 6))

    def look_up(t):
        return t[clnet.tensor(idx, device=device)]

    def put(t, val):
        t = t * 1.0
        t[clnet.tensor(np.array([1, 4, 1, -4]), device=device)] = val   # duplicates: the last one wins
        return t
    gradcheck(look_up, a, device=device)
    gradcheck(put, a, _rand(rng, (4, 3)), device=device)
    gradcheck(lambda w: clnet.nn.functional.embedding(clnet.tensor(idx % 5, device=device), w), a, device=device)


def test_bad_index_tensor_raises_before_any_kernel(device, rng, monkeypatch):
    from clnet.core import dispatch
    a = _rand(rng, (4, 3)).astype(np.float32)
    x = clnet.tensor(a, device=device)
    emb = clnet.nn.Embedding(4, 3).to(device)
    w = emb.weight.numpy()
    bad = clnet.tensor(np.array([[0, 4]]), device=device)
    launches = []
    real = dispatch.launch
    monkeypatch.setattr(dispatch, "launch", lambda *args, **kw: (launches.append(args[1]), real(*args, **kw)))
    with pytest.raises(IndexError, match="index 4 is out of bounds for dimension 0 with size 4"):
        emb(bad)
    with pytest.raises(IndexError, match="index -5 is out of bounds for dimension 0 with size 4"):
        x[clnet.tensor(np.array([1, -5]), device=device)] = 1.0
    with pytest.raises(IndexError, match="gather: index 3 is out of bounds for dimension 1 with size 3"):
        clnet.gather(x, 1, clnet.tensor(np.array([[0], [3], [1], [1]]), device=device))
    assert launches == []
    np.testing.assert_array_equal(emb.weight.numpy(), w)
    assert emb.weight.grad is None
    assert_close(x, a)


# --- compiled training steps ------------------------------------------------------------------------------
class _LM(clnet.nn.Module):
    """Token + position embeddings (the token table tied to the head, as nanoGPT), a layer, a head."""

    def __init__(self, vocab, ctx, width):
        super().__init__()
        self.wte = clnet.nn.Embedding(vocab, width)
        self.wpe = clnet.nn.Embedding(ctx, width)
        self.mix = clnet.nn.Linear(width, width)
        self.head = clnet.nn.Linear(width, vocab, bias=False)
        self.head.weight = self.wte.weight

    def forward(self, idx, pos, targets):
        x = self.wte(idx) + self.wpe(pos)
        logits = self.head(clnet.tanh(self.mix(x)))
        return clnet.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def _lm_setup(device, rng_seed=0, vocab=13, ctx=6, width=8, batch=3):
    clnet.manual_seed(5)
    model = _LM(vocab, ctx, width).to(device)
    opt = clnet.optim.AdamW(model.parameters(), lr=1e-2)
    r = np.random.default_rng(rng_seed)
    data = (clnet.tensor(r.integers(0, vocab, (batch, ctx)), device=device),
            clnet.tensor(np.arange(ctx), device=device),
            clnet.tensor(r.integers(0, vocab, (batch, ctx)), device=device))

    def step():
        loss = model(*data)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss
    return model, opt, data, step


def test_compiled_embedding_step_is_one_graph_equal_to_eager(device):
    model_e, _, _, eager = _lm_setup(device)
    report = explain(eager)                                   # one eager step, traced
    assert report["graph_break_count"] == 0 and report["graph_count"] == 1, report["break_reasons"]
    model_e, _, _, eager = _lm_setup(device)
    model_c, _, _, raw = _lm_setup(device)
    compiled = clnet.compile(raw, fullgraph=True)
    for i in range(5):
        le, lc = eager().item(), compiled().item()
        assert abs(le - lc) <= 1e-6 * max(1.0, abs(le)), (i, le, lc)
    assert compiled.stats.replays == 3 and not compiled.graph_breaks
    for (name, pe), pc in zip(model_e.named_parameters(), model_c.parameters()):
        assert_close(pc, pe.numpy(), rtol=1e-5, atol=1e-6, what=name)


def test_compiled_step_bad_token_raises_before_any_write(device):
    """A replay checks the captured token batch before its launches: IndexError, weights, gradients and
    AdamW's state untouched; the next good call continues exactly as eager code that never saw the bad one."""
    model_e, _, data_e, eager = _lm_setup(device)
    model_c, opt_c, data_c, raw = _lm_setup(device)
    compiled = clnet.compile(raw)
    for _ in range(3):                                        # warm-up, trace, one replay
        eager()
        compiled()
    assert compiled.stats.replays == 1
    weights = [p.numpy().copy() for p in model_c.parameters()]
    grads = [p.grad.numpy().copy() for p in model_c.parameters()]
    steps = [s["step"] for s in opt_c.state.values() if "step" in s]
    good = data_c[0].numpy()
    for bad_value, msg in ((13, "index 13 is out"), (-14, "index -14 is out")):
        bad = good.copy()
        bad[1, 2] = bad_value
        data_c[0].copy_(clnet.tensor(bad, device=device))
        with pytest.raises(IndexError, match=msg + " of bounds for dimension 0 with size 13"):
            compiled()
        for p, w, g in zip(model_c.parameters(), weights, grads):
            np.testing.assert_array_equal(p.numpy(), w)
            np.testing.assert_array_equal(p.grad.numpy(), g)
        assert [s["step"] for s in opt_c.state.values() if "step" in s] == steps
    data_c[0].copy_(clnet.tensor(good, device=device))
    for _ in range(2):
        le, lc = eager().item(), compiled().item()
        assert abs(le - lc) <= 1e-6 * max(1.0, abs(le))
    assert compiled.stats.replays == 3 and not compiled.graph_breaks
    for pe, pc in zip(model_e.parameters(), model_c.parameters()):
        assert_close(pc, pe.numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(IndexError):                          # eager: the same error, also before any write
        data_e[0].copy_(clnet.tensor(np.full(good.shape, 99), device=device))
        eager()


def test_compiled_token_batch_as_argument(device, rng):
    """Token batches passed as arguments: each replay checks the batch it was given."""
    emb = clnet.nn.Embedding(10, 4).to(device)
    opt = clnet.optim.SGD(emb.parameters(), lr=0.1)

    @clnet.compile(fullgraph=True)
    def step(idx, w):
        loss = (emb(idx) * w).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss
    w = clnet.tensor(_rand(rng, (5, 4)).astype(np.float32), device=device)
    ref = emb.weight.numpy().astype(np.float64)
    for _ in range(4):
        idx = rng.integers(0, 10, 5)
        step(clnet.tensor(idx, device=device), w)
        np.subtract.at(ref, idx, 0.1 * w.numpy())
    assert step.stats.replays == 2
    assert_close(emb.weight, ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(IndexError, match="index 10 is out of bounds"):
        step(clnet.tensor(np.array([0, 1, 10, 2, 3]), device=device), w)
    assert_close(emb.weight, ref, rtol=1e-5, atol=1e-5)


def test_index_computed_in_the_step_is_still_a_break(device, rng):
    """An index made inside the traced call cannot be checked before the launches that make it: its
    bounds check stays a host read, a graph break (fullgraph=True raises at it)."""
    x = clnet.tensor(_rand(rng, (6, 2)).astype(np.float32), device=device)
    idx = clnet.tensor(np.array([0, 4, 4]), device=device)
    report = explain(lambda: x[idx + 1])
    assert report["graph_break_count"] == 1
    with pytest.raises(GraphBreakError):
        explain_full = clnet.compile(lambda: x[idx + 1], fullgraph=True)
        for _ in range(2):
            explain_full()
    assert explain(lambda: x[idx] * 2)["graph_break_count"] == 0
    assert explain(lambda: clnet.gather(x, 0, idx.reshape(3, 1)))["graph_break_count"] == 0

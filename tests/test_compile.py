"""clnet.compile / clnet.function: compiled steps equal eager ones (values, gradients, optimizer state, the
random stream), re-trace on new signatures, graph breaks, fullgraph errors, outputs not overwritten."""
from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

import clnet
from clnet import nn
from clnet.compiler import CompileWarning, GraphBreakError


def _pair(device, make):
    """The same model twice (identical weights), each with its own optimizer."""
    clnet.manual_seed(0)
    a = make().to(device)
    b = copy.deepcopy(a)
    return a, b


def _mlp(dropout=0.0):
    layers = [nn.Linear(6, 16), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers, nn.Linear(16, 3))


def _train_step(model, opt, x, t):
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(x), t)
    loss.backward()
    opt.step()
    return loss


@pytest.mark.parametrize("opt_name", ["sgd_momentum", "adam"])
def test_compiled_training_equals_eager(device, rng, opt_name):
    eager, comp = _pair(device, lambda: _mlp(dropout=0.25))
    make = {"sgd_momentum": lambda p: clnet.optim.SGD(p, lr=0.05, momentum=0.9),
            "adam": lambda p: clnet.optim.Adam(p, lr=0.01)}[opt_name]
    opt_e, opt_c = make(eager.parameters()), make(comp.parameters())
    step = clnet.compile(_train_step)
    x = clnet.tensor(rng.standard_normal((8, 6)).astype(np.float32), device=device)
    t = clnet.tensor(rng.integers(0, 3, 8), device=device)
    for i in range(5):
        clnet.manual_seed(100 + i)              # the same dropout masks both ways
        le = _train_step(eager, opt_e, x, t)
        clnet.manual_seed(100 + i)
        lc = step(comp, opt_c, x, t)
        np.testing.assert_allclose(lc.numpy(), le.numpy(), rtol=1e-5, atol=1e-6)
    assert step.stats.replays == 3 and step.stats.traces == 1 and step.stats.warmups == 1
    for pe, pc in zip(eager.parameters(), comp.parameters()):
        np.testing.assert_allclose(pc.numpy(), pe.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(pc.grad.numpy(), pe.grad.numpy(), rtol=1e-5, atol=1e-6)
    se, sc = opt_e.state_dict()["state"], opt_c.state_dict()["state"]
    for k in se:
        for name, v in se[k].items():
            got = sc[k][name]
            if name == "step":
                assert got == v
            else:
                np.testing.assert_allclose(got.numpy(), v.numpy(), rtol=1e-5, atol=1e-6)


def test_random_stream_advances_as_eagerly(device):
    f = clnet.compile(lambda x: nn.functional.dropout(x, 0.5) + clnet.rand(4, device=device))
    x = clnet.ones(4, device=device)
    clnet.manual_seed(7)
    eager = [nn.functional.dropout(x, 0.5) + clnet.rand(4, device=device) for _ in range(4)]
    clnet.manual_seed(7)
    comp = [f(x) for _ in range(4)]
    for a, b in zip(eager, comp):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert f.stats.replays == 2
    assert clnet.ops.random.get_rng_state() == (7, 4 * 2 * 1)  # 2 calls x 4 calls x 1 block each


def test_lecture_two_layer_step_compiles(device, rng):
    """The lecture's autograd loop body (in-place SGD under no_grad, grad.zero_()) as one compiled step."""
    x = clnet.tensor(rng.standard_normal((16, 20)).astype(np.float32), device=device)
    y = clnet.tensor(rng.standard_normal((16, 4)).astype(np.float32), device=device)
    w0 = [rng.standard_normal(s).astype(np.float32) for s in ((20, 12), (12, 4))]

    def make():
        w1 = clnet.tensor(w0[0], device=device, requires_grad=True)
        w2 = clnet.tensor(w0[1], device=device, requires_grad=True)

        def step():
            loss = (x.mm(w1).clamp(min=0).mm(w2) - y).pow(2).sum()
            loss.backward()
            with clnet.no_grad():
                w1.sub_(1e-3 * w1.grad)
                w2.sub_(1e-3 * w2.grad)
                w1.grad.zero_()
                w2.grad.zero_()
            return loss
        return step, w1, w2
    eager, we1, we2 = make()
    comp_fn, wc1, wc2 = make()
    comp = clnet.compile(comp_fn)
    for _ in range(6):
        np.testing.assert_allclose(comp().numpy(), eager().numpy(), rtol=1e-5)
    np.testing.assert_allclose(wc1.numpy(), we1.numpy(), rtol=1e-5, atol=1e-6)
    assert comp.stats.replays == 4


def test_outputs_are_fresh_each_call(device):
    f = clnet.compile(lambda x: x * 2)
    outs = [f(clnet.full((3,), float(i), device=device)) for i in range(5)]
    assert [o.numpy()[0] for o in outs] == [0.0, 2.0, 4.0, 6.0, 8.0]


def test_new_shapes_retrace_and_the_cache_is_bounded(device):
    f = clnet.compile(lambda x: (x * x).sum(0), cache_size_limit=2)
    for n in (3, 3, 3, 5, 5, 5):
        x = clnet.arange(n * 2, dtype=clnet.float32, device=device).reshape(n, 2)
        np.testing.assert_allclose(f(x).numpy(), (x.numpy() ** 2).sum(0))
    assert f.stats.traces == 2 and f.stats.replays == 2
    with pytest.warns(CompileWarning, match="cache_size_limit"):
        f(clnet.ones(7, 2, device=device))
    assert f.stats.eager_calls == 1


def test_train_eval_mode_is_part_of_the_signature(device, rng):
    model = _mlp(dropout=0.5).to(device)
    f = clnet.compile(model)
    x = clnet.tensor(rng.standard_normal((4, 6)).astype(np.float32), device=device)
    model.eval()
    with clnet.no_grad():
        ref = model(x).numpy()
        for _ in range(3):
            np.testing.assert_allclose(f(x).numpy(), ref, rtol=1e-6)
        model.train()
        f(x)
        f(x)
    assert f._compiled_call.stats.traces == 2


def test_graph_break_runs_eagerly_and_is_counted(device):
    def f(x):
        s = x.sum()
        return x * 2 if s.item() > 0 else x * 3
    cf = clnet.compile(f)
    x = clnet.ones(3, device=device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = [cf(x).numpy()[0] for _ in range(3)] + [cf(-x).numpy()[0]]
    assert out == [2.0, 2.0, 2.0, -3.0]
    assert len(cf.graph_breaks) == 1 and "test_compile.py" in cf.graph_breaks[0].where
    assert any(issubclass(w.category, CompileWarning) for w in caught)
    assert cf.stats.replays == 0
    report = clnet.compiler.explain(f, x)
    assert report["graph_break_count"] == 1


def test_fullgraph_raises_at_the_break(device):
    cf = clnet.compile(lambda x: x * float(x.sum()), fullgraph=True)
    x = clnet.ones(3, device=device)
    cf(x)  # the warm-up runs eagerly
    with pytest.raises(GraphBreakError, match="test_compile.py"):
        cf(x)


def test_function_spellings(device):
    @clnet.function
    def f(x):
        return clnet.relu(x) + 1

    @clnet.function(jit_compile=True, reduce_retracing=True)
    def g(x):
        return x * 3

    @clnet.compile(fullgraph=True, mode="reduce-overhead")
    def h(x):
        return x - 1
    x = clnet.tensor([-1.0, 2.0], device=device)
    for _ in range(3):
        assert f(x).numpy().tolist() == [1.0, 3.0]
        assert g(x).numpy().tolist() == [-3.0, 6.0]
        assert h(x).numpy().tolist() == [-2.0, 1.0]
    assert f.stats.replays == g.stats.replays == h.stats.replays == 1


def test_captured_tensor_replaced_forces_a_retrace(device):
    w = clnet.ones(3, device=device)
    f = clnet.compile(lambda x: x * w)
    x = clnet.full((3,), 2.0, device=device)
    for _ in range(3):
        f(x)
    w.data = clnet.full((3,), 5.0, device=device)  # a new buffer behind the same tensor
    assert f(x).numpy().tolist() == [10.0, 10.0, 10.0]
    assert f.stats.traces == 2


def test_python_state_a_replay_cannot_redo_runs_eagerly(device):
    class Counter:
        def __init__(self):
            self.calls = 0
            self.last = None

    c = Counter()

    def counts(x):
        c.calls += 1
        return x + 1

    def keeps(x):
        c.last = x * 2          # a tensor made inside the step, kept in an attribute
        return x + 1
    x = clnet.ones(2, device=device)
    for fn in (counts, keeps):
        cf = clnet.compile(fn)
        with pytest.warns(CompileWarning, match="state in Python"):
            for _ in range(3):
                cf(x)
        assert cf.stats.replays == 0 and cf.stats.state_changes
    assert c.calls == 3 and c.last is not None


def test_keras_fit_jit_compile_matches_run_eagerly(device, rng):
    from clnet import keras
    x = rng.standard_normal((96, 6)).astype(np.float32)
    y = rng.integers(0, 3, 96)

    def fit(**compile_args):
        keras.utils.set_random_seed(5)
        model = keras.Sequential([keras.Input(shape=(6,)), keras.layers.Dense(8, activation="relu"),
                                  keras.layers.Dense(3)])
        model.compile(optimizer=keras.optimizers.Adam(0.01),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), **compile_args)
        hist = model.fit(x, y, batch_size=32, epochs=4, shuffle=False, verbose=0).history
        return model, hist, model.predict(x, batch_size=32, verbose=0)
    eager, he, pe = fit(run_eagerly=True)
    comp, hc, pc = fit(jit_compile=True)
    np.testing.assert_allclose(hc["loss"], he["loss"], rtol=1e-5)
    np.testing.assert_allclose(pc, pe, rtol=1e-5, atol=1e-6)
    assert "_compiled_steps" not in eager.__dict__
    assert comp._compiled_steps["predict"].stats.traces == 1


def test_compiled_module_trains_through_autograd(device, rng):
    """clnet.compile(model) in an ordinary loop: loss.backward() reaches the parameters through the compiled
    forward's traced backward; results and parameters equal eager training."""
    eager, comp = _pair(device, lambda: _mlp(dropout=0.25))
    cmodel = clnet.compile(comp)
    opt_e = clnet.optim.SGD(eager.parameters(), lr=0.1, momentum=0.9)
    opt_c = clnet.optim.SGD(comp.parameters(), lr=0.1, momentum=0.9)
    x = clnet.tensor(rng.standard_normal((8, 6)).astype(np.float32), device=device, requires_grad=True)
    t = clnet.tensor(rng.integers(0, 3, 8), device=device)
    for i in range(5):
        for model, opt in ((eager, opt_e), (cmodel, opt_c)):
            clnet.manual_seed(50 + i)
            opt.zero_grad()
            x.grad = None
            loss = nn.functional.cross_entropy(model(x), t)
            loss.backward()
            opt.step()
            if model is eager:
                want, want_xg = loss.numpy(), x.grad.numpy()
        np.testing.assert_allclose(loss.numpy(), want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(x.grad.numpy(), want_xg, rtol=1e-5, atol=1e-6)
    stats = cmodel._compiled_call.stats
    assert stats.replays == 3 and stats.launches_backward > 0
    for pe, pc in zip(eager.parameters(), comp.parameters()):
        np.testing.assert_allclose(pc.numpy(), pe.numpy(), rtol=1e-5, atol=1e-6)


def test_second_forward_before_backward_runs_eagerly(device, rng):
    model = _mlp().to(device)
    cmodel = clnet.compile(model)
    x = clnet.tensor(rng.standard_normal((4, 6)).astype(np.float32), device=device)
    for _ in range(3):
        cmodel(x).sum().backward()
    grads = [p.grad.numpy().copy() for p in model.parameters()]
    model.zero_grad()
    a, b = cmodel(x), cmodel(x * 2)          # the second call must not overwrite the first's activations
    (a.sum() + b.sum()).backward()
    model2 = copy.deepcopy(model)
    model2.zero_grad()
    (model2(x).sum() + model2(x * 2).sum()).backward()
    for p, q in zip(model.parameters(), model2.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-5, atol=1e-6)
    assert len(grads) == 4


def _lecture_loops(device, rng):
    """The lecture's training loop bodies (examples/custom_function.py, examples/tf_gradient_tape.py,
    examples/nn_module.py): each a make() giving a fresh (step, state) with the same starting values."""
    x0 = rng.standard_normal((8, 12)).astype(np.float32)
    y0 = rng.standard_normal((8, 4)).astype(np.float32)
    w1_0 = rng.standard_normal((12, 6)).astype(np.float32) * 0.5
    w2_0 = rng.standard_normal((6, 4)).astype(np.float32) * 0.5

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

    def custom_function():
        x, y = clnet.tensor(x0, device=device), clnet.tensor(y0, device=device)
        w1 = clnet.tensor(w1_0, device=device, requires_grad=True)
        w2 = clnet.tensor(w2_0, device=device, requires_grad=True)

        def step():
            loss = (MyReLU.apply(x.mm(w1)).mm(w2) - y).pow(2).sum()
            loss.backward()
            with clnet.no_grad():
                w1.sub_(1e-3 * w1.grad)
                w2.sub_(1e-3 * w2.grad)
                w1.grad.zero_()
                w2.grad.zero_()
            return loss
        return step, [w1, w2]

    def gradient_tape():
        x, y = clnet.tensor(x0, device=device), clnet.tensor(y0, device=device)
        w1, w2 = clnet.Variable(w1_0, device=device), clnet.Variable(w2_0, device=device)

        def step():
            with clnet.GradientTape() as tape:
                h = clnet.maximum(clnet.matmul(x, w1), 0)
                loss = clnet.reduce_mean(clnet.reduce_sum((clnet.matmul(h, w2) - y) ** 2, axis=1))
            g1, g2 = tape.gradient(loss, [w1, w2])
            w1.assign(w1 - 1e-2 * g1)
            w2.assign(w2 - 1e-2 * g2)
            return loss
        return step, [w1, w2]

    def nn_module():
        clnet.manual_seed(9)
        model = nn.Sequential(nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 4)).to(device)
        opt = clnet.optim.SGD(model.parameters(), lr=1e-2)
        x, y = clnet.tensor(x0, device=device), clnet.tensor(y0, device=device)

        def step():
            loss = nn.functional.mse_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss
        return step, list(model.parameters())
    return {"custom_function": custom_function, "gradient_tape": gradient_tape, "nn_module": nn_module}


@pytest.mark.parametrize("loop", ["custom_function", "gradient_tape", "nn_module"])
def test_lecture_loops_compiled_equal_eager(device, rng, loop):
    make = _lecture_loops(device, rng)[loop]
    eager_step, eager_w = make()
    comp_step, comp_w = make()
    comp = clnet.compile(comp_step)
    for _ in range(5):
        np.testing.assert_allclose(comp().numpy(), eager_step().numpy(), rtol=1e-5, atol=1e-6)
    for a, b in zip(comp_w, eager_w):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    assert comp.stats.replays == 3, comp.stats

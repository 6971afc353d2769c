"""clnet.optim against numpy float64 references and torch.optim; state_dict; schedulers vs torch's."""
from __future__ import annotations

import math

import numpy as np
import pytest

import clnet
from clnet import optim
from clnet.backend import programs
from clnet.optim import lr_scheduler

from conftest import assert_close

SHAPES = [(3, 4), (5,), (2, 3, 2), (1,)]


# --- numpy float64 references (PyTorch's documented algorithms) ------------------------------------
def ref_run(name, opts, params, grad_seq):
    """Run `len(grad_seq)` steps; grad_seq[t][i] is None when parameter i has no gradient at step t."""
    ps = [np.array(p, np.float64) for p in params]
    st = [dict() for _ in ps]
    for grads in grad_seq:
        for i, g in enumerate(grads):
            if g is None:
                continue
            _ref_update(name, opts, ps[i], np.asarray(g, np.float64), st[i])
    return ps


def _ref_update(name, o, p, g, s):
    g = -g if o.get("maximize") else g
    wd = o.get("weight_decay", 0.0)
    lr = o["lr"]
    if name == "SGD":
        if wd:
            g = g + wd * p
        mom = o.get("momentum", 0.0)
        if mom:
            if "buf" not in s:
                s["buf"] = g.copy()
            else:
                s["buf"] = mom * s["buf"] + (1 - o.get("dampening", 0.0)) * g
            g = g + mom * s["buf"] if o.get("nesterov") else s["buf"]
        p -= lr * g
    elif name in ("Adam", "AdamW"):
        b1, b2 = o.get("betas", (0.9, 0.999))
        eps = o.get("eps", 1e-8)
        s["t"] = s.get("t", 0) + 1
        if name == "AdamW":
            p *= 1 - lr * o.get("weight_decay", 1e-2)
        elif wd:
            g = g + wd * p
        s["m"] = b1 * s.get("m", 0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0) + (1 - b2) * g * g
        v = s["v"]
        if o.get("amsgrad"):
            s["vmax"] = np.maximum(s.get("vmax", 0), s["v"])
            v = s["vmax"]
        t = s["t"]
        p -= lr / (1 - b1 ** t) * s["m"] / (np.sqrt(v) / math.sqrt(1 - b2 ** t) + eps)
    elif name == "RMSprop":
        a, eps, mom = o.get("alpha", 0.99), o.get("eps", 1e-8), o.get("momentum", 0.0)
        if wd:
            g = g + wd * p
        s["sq"] = a * s.get("sq", 0) + (1 - a) * g * g
        if o.get("centered"):
            s["ga"] = a * s.get("ga", 0) + (1 - a) * g
            avg = np.sqrt(s["sq"] - s["ga"] ** 2) + eps
        else:
            avg = np.sqrt(s["sq"]) + eps
        if mom > 0:
            s["buf"] = mom * s.get("buf", 0) + g / avg
            p -= lr * s["buf"]
        else:
            p -= lr * g / avg
    elif name == "Adagrad":
        s["t"] = s.get("t", 0) + 1
        if wd:
            g = g + wd * p
        clr = lr / (1 + (s["t"] - 1) * o.get("lr_decay", 0.0))
        s["sum"] = s.get("sum", o.get("initial_accumulator_value", 0.0)) + g * g
        p -= clr * g / (np.sqrt(s["sum"]) + o.get("eps", 1e-10))


CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.02)),
    ("SGD", dict(lr=0.1, momentum=0.5, maximize=True)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, amsgrad=True, maximize=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.02, weight_decay=0.3, amsgrad=True)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, momentum=0.7, weight_decay=0.05)),
    ("RMSprop", dict(lr=0.005, centered=True, momentum=0.5)),
    ("RMSprop", dict(lr=0.01, centered=True, maximize=True)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05, weight_decay=0.1, initial_accumulator_value=0.2, eps=1e-6)),
]
IDS = [f"{n}-" + "-".join(f"{k}={v}" for k, v in o.items()) for n, o in CASES]


def _data(n_steps=5, shapes=SHAPES, seed=0, holes=True):
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(n_steps)]
    if holes:  # parameter 1 has no gradient at step 2: its step count falls behind the others'
        grads[2][1] = None
    return init, grads


def _run_clnet(name, opts, init, grads, dtype=np.float32, device=None):
    ps = [clnet.tensor(a.astype(dtype), requires_grad=True, device=device) for a in init]
    opt = getattr(optim, name)(ps, **opts)
    for gs in grads:
        for p, g in zip(ps, gs):
            p.grad = None if g is None else clnet.tensor(g.astype(dtype), device=device)
        opt.step()
    return ps, opt


@pytest.mark.parametrize("name,opts", CASES, ids=IDS)
def test_optimizer_matches_numpy_reference(device, name, opts):
    init, grads = _data()
    ps, _ = _run_clnet(name, opts, init, grads)
    for i, (p, r) in enumerate(zip(ps, ref_run(name, opts, init, grads))):
        # float32 updates of O(lr) size over 5 steps
        assert_close(p, r, rtol=1e-5, atol=2e-6, what=f"{name} parameter {i}")
    if device.fp64:
        ps, _ = _run_clnet(name, opts, init, grads, dtype=np.float64)
        for i, (p, r) in enumerate(zip(ps, ref_run(name, opts, init, grads))):
            assert_close(p, r, rtol=1e-11, atol=1e-12, what=f"{name} float64 parameter {i}")


@pytest.mark.parametrize("name,opts", CASES, ids=IDS)
def test_optimizer_matches_torch(device, name, opts):
    torch = pytest.importorskip("torch")
    init, grads = _data(n_steps=6)
    ps, _ = _run_clnet(name, opts, init, grads)
    tp = [torch.tensor(a, requires_grad=True) for a in init]
    topt = getattr(torch.optim, name)(tp, **opts)
    for gs in grads:
        for p, g in zip(tp, gs):
            p.grad = None if g is None else torch.tensor(g)
        topt.step()
    for i, (p, t) in enumerate(zip(ps, tp)):
        # same float32 operation order as torch's single-tensor path: agreement to a few ulps per step
        assert_close(p, t.detach().numpy(), rtol=1e-5, atol=1e-6, what=f"{name} parameter {i} vs torch")


def test_many_parameters_span_several_launches(device):
    """More parameters than slots per launch, of mixed sizes: every one still updated correctly."""
    shapes = [(i + 1, 3) for i in range(optim.Optimizer.SLOTS * 2 + 3)] + [(optim.Optimizer.LARGE + 5,)]
    init, grads = _data(n_steps=3, shapes=shapes, holes=False)
    opts = dict(lr=0.01, weight_decay=0.01)
    ps, _ = _run_clnet("Adam", opts, init, grads)
    for p, r in zip(ps, ref_run("Adam", opts, init, grads)):
        assert_close(p, r, rtol=1e-5, atol=2e-6)


def test_param_groups_with_own_options(device):
    init, grads = _data(n_steps=4, holes=False)
    ps = [clnet.tensor(a, requires_grad=True) for a in init]
    opt = optim.SGD([{"params": ps[:2]}, {"params": ps[2:], "lr": 0.5, "momentum": 0.9}], lr=0.1)
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[1]["lr"] == 0.5
    assert opt.param_groups[0]["momentum"] == 0.0
    for gs in grads:
        for p, g in zip(ps, gs):
            p.grad = clnet.tensor(g)
        opt.step()
    ref_a = ref_run("SGD", dict(lr=0.1), init[:2], [g[:2] for g in grads])
    ref_b = ref_run("SGD", dict(lr=0.5, momentum=0.9), init[2:], [g[2:] for g in grads])
    for p, r in zip(ps, ref_a + ref_b):
        assert_close(p, r, rtol=1e-5, atol=2e-6)


def test_add_param_group_and_errors(device):
    a = clnet.tensor(np.ones(3, np.float32), requires_grad=True)
    b = clnet.tensor(np.ones(2, np.float32), requires_grad=True)
    opt = optim.Adam([a], lr=0.1)
    opt.add_param_group({"params": [b], "lr": 0.01})
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.01]
    assert opt.param_groups[1]["betas"] == (0.9, 0.999)
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [a]})
    with pytest.raises(ValueError, match="learning rate"):
        optim.SGD([a], lr=-1)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([a], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="beta parameter at index 1"):
        optim.Adam([a], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([a * 2], lr=0.1)
    with pytest.raises(TypeError, match="iterable"):
        optim.SGD(a, lr=0.1)
    with pytest.raises(ValueError, match="empty"):
        optim.SGD([], lr=0.1)


def test_step_bumps_version_zero_grad_and_closure(device):
    p = clnet.tensor(np.arange(4, dtype=np.float32), requires_grad=True)
    opt = optim.SGD([p], lr=0.5)
    v0 = p._version[0]
    p.grad = clnet.tensor(np.ones(4, np.float32))
    calls = []

    def closure():
        calls.append(1)
        return 42.0
    assert opt.step(closure) == 42.0 and calls == [1]
    assert p._version[0] == v0 + 1
    assert_close(p, np.arange(4) - 0.5)
    opt.zero_grad(set_to_none=False)
    assert_close(p.grad, np.zeros(4))
    opt.zero_grad()
    assert p.grad is None
    opt.step()  # no gradient: nothing changes
    assert_close(p, np.arange(4) - 0.5)


def test_strided_parameter_is_updated_in_place(device):
    base = np.arange(12, dtype=np.float32).reshape(3, 4)
    p = clnet.tensor(base).T.detach().requires_grad_()  # a transposed view: not contiguous
    assert not p.is_contiguous()
    opt = optim.SGD([p], lr=1.0)
    g = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    p.grad = clnet.tensor(g)
    opt.step()
    assert_close(p, base.T - g)


def test_lr_change_and_steps_do_not_rebuild(device):
    init, grads = _data(n_steps=4, holes=False)
    ps = [clnet.tensor(a, requires_grad=True) for a in init]
    opt = optim.Adam(ps, lr=0.1)
    for p, g in zip(ps, grads[0]):
        p.grad = clnet.tensor(g)
    opt.step()
    before = programs.built_count()
    for gs in grads[1:]:
        opt.param_groups[0]["lr"] *= 0.5
        for p, g in zip(ps, gs):
            p.grad = clnet.tensor(g)
        opt.step()
    assert programs.built_count() == before


@pytest.mark.parametrize("name,opts", [CASES[2], CASES[7], CASES[13], CASES[15]], ids=lambda x: str(x))
def test_state_dict_round_trip(device, name, opts):
    init, grads = _data(n_steps=6)
    ps, opt = _run_clnet(name, opts, init, grads[:3])
    sd = opt.state_dict()
    assert sorted(sd["param_groups"][0]["params"]) == list(range(len(init)))
    # plain data: numpy arrays and numbers only after conversion; no tensors needed to restore
    saved = {"state": {k: {n: (v.numpy() if isinstance(v, clnet.Tensor) else v) for n, v in s.items()}
                       for k, s in sd["state"].items()},
             "param_groups": [dict(g) for g in sd["param_groups"]]}
    qs = [clnet.tensor(p.numpy(), requires_grad=True) for p in ps]
    opt2 = getattr(optim, name)(qs, lr=123.0)
    opt2.load_state_dict(saved)
    assert opt2.param_groups[0]["lr"] == opts["lr"]
    for gs in grads[3:]:
        for p, q, g in zip(ps, qs, gs):
            p.grad = None if g is None else clnet.tensor(g)
            q.grad = None if g is None else clnet.tensor(g)
        opt.step()
        opt2.step()
    for p, q in zip(ps, qs):
        np.testing.assert_array_equal(p.numpy(), q.numpy())


def test_load_state_dict_errors(device):
    a = clnet.tensor(np.ones(3, np.float32), requires_grad=True)
    opt = optim.Adam([a], lr=0.1)
    with pytest.raises(ValueError, match="parameter groups"):
        opt.load_state_dict({"state": {}, "param_groups": []})
    bad = {"state": {0: {"step": 1, "exp_avg": np.zeros(4), "exp_avg_sq": np.zeros(4)}},
           "param_groups": [{"lr": 0.1, "params": [0]}]}
    with pytest.raises(ValueError, match=r"exp_avg.*\(4,\).*\(3,\)"):
        opt.load_state_dict(bad)


def test_torch_state_dict_loads_and_continues(device):
    torch = pytest.importorskip("torch")
    init, grads = _data(n_steps=6, holes=False)
    opts = dict(lr=0.01, amsgrad=True, weight_decay=0.05)
    tp = [torch.tensor(a, requires_grad=True) for a in init]
    topt = torch.optim.Adam(tp, **opts)
    for gs in grads[:3]:
        for p, g in zip(tp, gs):
            p.grad = torch.tensor(g)
        topt.step()
    ps = [clnet.tensor(p.detach().numpy(), requires_grad=True) for p in tp]
    opt = optim.Adam(ps, lr=1.0)
    opt.load_state_dict(topt.state_dict())
    for gs in grads[3:]:
        for p, q, g in zip(ps, tp, gs):
            p.grad, q.grad = clnet.tensor(g), torch.tensor(g)
        opt.step()
        topt.step()
    for p, q in zip(ps, tp):
        assert_close(p, q.detach().numpy(), rtol=1e-5, atol=1e-6)


# --- schedulers ------------------------------------------------------------------------------------
SCHEDULERS = [
    ("StepLR", dict(step_size=3, gamma=0.5)),
    ("CosineAnnealingLR", dict(T_max=7, eta_min=0.001)),
    ("CosineAnnealingLR", dict(T_max=5)),
    ("ExponentialLR", dict(gamma=0.9)),
    ("LambdaLR", dict(lr_lambda=lambda e: 1.0 / (1 + e))),
]


@pytest.mark.parametrize("name,kw", SCHEDULERS, ids=[s[0] + str(i) for i, s in enumerate(SCHEDULERS)])
def test_scheduler_matches_torch(name, kw):
    torch = pytest.importorskip("torch")
    dev = clnet.default_device()
    a = clnet.tensor(np.ones(2, np.float32), requires_grad=True, device=dev)
    b = clnet.tensor(np.ones(2, np.float32), requires_grad=True, device=dev)
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.3}], lr=0.1)
    ta, tb = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
    topt = torch.optim.SGD([{"params": [ta]}, {"params": [tb], "lr": 0.3}], lr=0.1)
    sched = getattr(lr_scheduler, name)(opt, **kw)
    tsched = getattr(torch.optim.lr_scheduler, name)(topt, **kw)
    ours, theirs = [sched.get_last_lr()], [tsched.get_last_lr()]
    for _ in range(24):  # past T_max: the cosine turns back up
        opt.step()
        topt.step()
        sched.step()
        tsched.step()
        ours.append(sched.get_last_lr())
        theirs.append(tsched.get_last_lr())
    np.testing.assert_allclose(np.array(ours), np.array(theirs), rtol=1e-12, atol=1e-15)
    assert [g["lr"] for g in opt.param_groups] == ours[-1]


def test_scheduler_state_dict_round_trip():
    dev = clnet.default_device()
    a = clnet.tensor(np.ones(2, np.float32), requires_grad=True, device=dev)
    opt = optim.SGD([a], lr=0.1)
    sched = lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    for _ in range(4):
        sched.step()
    state = sched.state_dict()
    assert all(isinstance(v, (int, float, list, bool)) for v in state.values())
    opt2 = optim.SGD([a], lr=0.1)
    opt2.load_state_dict(opt.state_dict())
    sched2 = lr_scheduler.CosineAnnealingLR(opt2, T_max=10)
    sched2.load_state_dict(state)
    for _ in range(3):
        sched.step()
        sched2.step()
    assert sched.get_last_lr() == sched2.get_last_lr()
    assert sched.last_epoch == sched2.last_epoch == 7

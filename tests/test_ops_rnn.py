"""Recurrent layers (clnet.ops.rnn, kernels/rnn.cl.mako): numpy float64 step-by-step references,
finite-difference gradients of every input and weight (float64), PyTorch's numbers for the modules
(multi-layer, bidirectional, batch_first, initial states, cells)."""
from __future__ import annotations

import numpy as np
import pytest

import clnet
import clnet.nn as nn
from clnet.ops import rnn
from conftest import assert_close, gradcheck, simulator_subset, small

torch = pytest.importorskip("torch")


def sig(v):
    return 1 / (1 + np.exp(-v))


def np_layer(mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse=False):
    """The recurrence, step by step in float64 (PyTorch's equations)."""
    T = x.shape[0]
    H = w_hh.shape[1]
    h, c = h0.astype(np.float64), (c0.astype(np.float64) if c0 is not None else None)
    out = np.zeros((T, h.shape[0], H))
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        gi = x[t] @ w_ih.T + b_ih
        gh = h @ w_hh.T + b_hh
        if mode == "lstm":
            i, f, g, o = np.split(gi + gh, 4, axis=1)
            c = sig(f) * c + sig(i) * np.tanh(g)
            h = sig(o) * np.tanh(c)
        elif mode == "gru":
            r = sig(gi[:, :H] + gh[:, :H])
            z = sig(gi[:, H:2 * H] + gh[:, H:2 * H])
            n = np.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
            h = (1 - z) * n + z * h
        else:
            a = gi + gh
            h = np.tanh(a) if mode == "rnn_tanh" else np.maximum(a, 0)
        out[t] = h
    return out, h, c


def _weights(rng, mode, I, H):
    G = rnn.GATES[mode]
    return [rng.standard_normal(s) * 0.5 for s in ((G * H, I), (G * H, H), (G * H,), (G * H,))]


@pytest.mark.parametrize("mode", list(rnn.GATES))
@pytest.mark.parametrize("reverse", [False, True])
def test_rnn_layer_matches_numpy(device, rng, mode, reverse):
    T, B, I, H = 5, 3, 4, 6
    x, h0, c0 = rng.standard_normal((T, B, I)), rng.standard_normal((B, H)), rng.standard_normal((B, H))
    w = _weights(rng, mode, I, H)
    c = lambda a: clnet.tensor(a.astype(np.float32))  # noqa: E731
    hx = (c(h0), c(c0)) if mode == "lstm" else c(h0)
    got = rnn.rnn_layer(mode, c(x), hx, *map(c, w), reverse=reverse)
    out, h, cc = np_layer(mode, x, h0, c0 if mode == "lstm" else None, *w, reverse=reverse)
    assert_close(got[0], out, rtol=1e-4, atol=1e-5)
    assert_close(got[1], h, rtol=1e-4, atol=1e-5)
    if mode == "lstm":
        assert_close(got[2], cc, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode,reverse", simulator_subset([("lstm", False), ("gru", True), ("rnn_tanh", False),
                                                           ("rnn_relu", True)], {0, 1}, unpack=True))
def test_rnn_layer_gradcheck(device, rng, mode, reverse):
    T, B, I, H = 2, 2, 2, 2
    x, h0, c0 = rng.standard_normal((T, B, I)), rng.standard_normal((B, H)), rng.standard_normal((B, H))
    w = _weights(rng, mode, I, H)
    if mode == "rnn_relu":  # keep pre-activations away from the kink
        w[2] = w[2] + 0.3

    if mode == "lstm":
        def fn(x, h0, c0, w_ih, w_hh, b_ih, b_hh):
            out, h, c = rnn.rnn_layer(mode, x, (h0, c0), w_ih, w_hh, b_ih, b_hh, reverse=reverse)
            return out.sum(0) + h * 2 + c * 3
        gradcheck(fn, x, h0, c0, *w, device=device)
    else:
        def fn(x, h0, w_ih, w_hh, b_ih, b_hh):
            out, h = rnn.rnn_layer(mode, x, h0, w_ih, w_hh, b_ih, b_hh, reverse=reverse)
            return out.sum(0) + h * 2
        gradcheck(fn, x, h0, *w, device=device)


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_rnn_layer_packs_w_hh_once(device, rng, mode, monkeypatch):
    """With every GEMM operand packed (the CPU kernel's path for big weights), W_hh is packed once per
    forward and once per backward, not at every step: the pack launches do not grow with T; values and
    gradients stay numpy's / finite differences'."""
    from clnet.compiler import trace
    from clnet.ops import matmul as mmod
    for name in ("_DIRECT_B_BYTES", "_DIRECT_ANY_ELEMS", "_DIRECT_A_ELEMS"):
        monkeypatch.setattr(mmod, name, 0)
    B, I, H = 3, 4, 6
    w = _weights(rng, mode, I, H)
    c = lambda a: clnet.tensor(a.astype(np.float32), requires_grad=True)  # noqa: E731
    packs = {}
    for T in (2, 5):
        x, h0, c0 = rng.standard_normal((T, B, I)), rng.standard_normal((B, H)), rng.standard_normal((B, H))

        def step():
            hx = (c(h0), c(c0)) if mode == "lstm" else c(h0)
            res = rnn.rnn_layer(mode, c(x), hx, *map(c, w))
            (res[0].sum() + res[1].sum()).backward()
            return res
        graph, got = trace(step)
        packs[T] = sum(1 for r in graph.kernel_launches if r.name == "pack")
        out, h, cc = np_layer(mode, x, h0, c0 if mode == "lstm" else None, *w)
        assert_close(got[0], out, rtol=1e-4, atol=1e-5)
        assert_close(got[1], h, rtol=1e-4, atol=1e-5)
    if device.profile.matmul_variant == "cpu":
        assert packs[2] == packs[5] > 0, packs
    if mode == "lstm":
        test_rnn_layer_gradcheck(device, rng, mode, False)


def _copy_params(tmod, cmod):
    cmod.load_state_dict({k: v.detach().numpy() for k, v in tmod.state_dict().items()})


@pytest.mark.parametrize("cls,kwargs", simulator_subset([
    ("LSTM", dict(num_layers=2, bidirectional=True)),
    ("GRU", dict(num_layers=2, batch_first=True)),
    ("RNN", dict(nonlinearity="relu", bidirectional=True, bias=False)),
    ("LSTM", dict(batch_first=True, bias=False)),
    ("GRU", dict(bidirectional=True, batch_first=True)),
    ("RNN", dict(num_layers=3)),
], {0, 1}, unpack=True))
def test_rnn_modules_like_torch(device, rng, cls, kwargs):
    I, H, T, B = 4, 5, small(device, 6, 3), 3
    torch.manual_seed(0)
    tm = getattr(torch.nn, cls)(I, H, **kwargs)
    cm = getattr(nn, cls)(I, H, **kwargs)
    assert sorted(n for n, _ in cm.named_parameters()) == sorted(n for n, _ in tm.named_parameters())
    _copy_params(tm, cm)
    shape = (B, T, I) if kwargs.get("batch_first") else (T, B, I)
    x = rng.standard_normal(shape).astype(np.float32)
    dirs = 2 if kwargs.get("bidirectional") else 1
    h0 = rng.standard_normal((kwargs.get("num_layers", 1) * dirs, B, H)).astype(np.float32)
    tx, cx = torch.tensor(x, requires_grad=True), clnet.tensor(x, requires_grad=True)
    th, ch = torch.tensor(h0, requires_grad=True), clnet.tensor(h0, requires_grad=True)
    if cls == "LSTM":
        c0 = rng.standard_normal(h0.shape).astype(np.float32)
        tc, cc = torch.tensor(c0, requires_grad=True), clnet.tensor(c0, requires_grad=True)
        to, (thn, tcn) = tm(tx, (th, tc))
        co, (chn, ccn) = cm(cx, (ch, cc))
        assert_close(ccn, tcn.detach().numpy(), rtol=1e-4, atol=1e-5)
    else:
        to, thn = tm(tx, th)
        co, chn = cm(cx, ch)
    assert_close(co, to.detach().numpy(), rtol=1e-4, atol=1e-5)
    assert_close(chn, thn.detach().numpy(), rtol=1e-4, atol=1e-5)
    g = rng.standard_normal(to.shape).astype(np.float32)
    gh = rng.standard_normal(thn.shape).astype(np.float32)
    (to * torch.tensor(g)).sum().add((thn * torch.tensor(gh)).sum()).backward()
    ((co * clnet.tensor(g)).sum() + (chn * clnet.tensor(gh)).sum()).backward()
    assert_close(cx.grad, tx.grad.numpy(), rtol=1e-4, atol=1e-4)
    assert_close(ch.grad, th.grad.numpy(), rtol=1e-4, atol=1e-4)
    cparams = dict(cm.named_parameters())
    for name, p in tm.named_parameters():
        assert_close(cparams[name].grad, p.grad.numpy(), rtol=1e-4, atol=1e-4, what=name)


def test_rnn_module_defaults_and_unbatched(device, rng):
    tm, cm = torch.nn.GRU(3, 4), nn.GRU(3, 4)
    _copy_params(tm, cm)
    x = rng.standard_normal((5, 3)).astype(np.float32)  # unbatched (L, H_in), zero initial state
    to, th = tm(torch.tensor(x))
    co, ch = cm(clnet.tensor(x))
    assert co.shape == (5, 4) and ch.shape == (1, 4)
    assert_close(co, to.detach().numpy(), rtol=1e-4, atol=1e-5)
    assert_close(ch, th.detach().numpy(), rtol=1e-4, atol=1e-5)
    lstm = nn.LSTM(3, 4, num_layers=2, dropout=0.5)
    assert "dropout=0.5" in repr(lstm) and lstm.weight_ih_l1.shape == (16, 4)
    bound = 1 / np.sqrt(4)
    assert all(np.abs(p.numpy()).max() <= bound for p in lstm.parameters())
    with pytest.raises(ValueError, match="input_size"):
        lstm(clnet.randn(5, 2, 7))
    with pytest.raises(ValueError, match="expected hidden state h_0 size"):
        cm(clnet.randn(5, 2, 3), clnet.randn(2, 2, 4))


@pytest.mark.parametrize("cls", ["RNNCell", "LSTMCell", "GRUCell"])
def test_cells_like_torch(device, rng, cls):
    tm, cm = getattr(torch.nn, cls)(3, 4), getattr(nn, cls)(3, 4)
    _copy_params(tm, cm)
    x = rng.standard_normal((2, 3)).astype(np.float32)
    h = rng.standard_normal((2, 4)).astype(np.float32)
    tx, cx = torch.tensor(x, requires_grad=True), clnet.tensor(x, requires_grad=True)
    if cls == "LSTMCell":
        cc = rng.standard_normal((2, 4)).astype(np.float32)
        th, tc = tm(tx, (torch.tensor(h), torch.tensor(cc)))
        ch, ccn = cm(cx, (clnet.tensor(h), clnet.tensor(cc)))
        assert_close(ccn, tc.detach().numpy(), rtol=1e-5, atol=1e-6)
        (th.sum() + tc.sum() * 2).backward()
        (ch.sum() + ccn.sum() * 2).backward()
    else:
        th, ch = tm(tx, torch.tensor(h)), cm(cx, clnet.tensor(h))
        th.sum().backward()
        ch.sum().backward()
    assert_close(ch, th.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert_close(cx.grad, tx.grad.numpy(), rtol=1e-4, atol=1e-5)
    for name, p in tm.named_parameters():
        assert_close(dict(cm.named_parameters())[name].grad, p.grad.numpy(), rtol=1e-4, atol=1e-5, what=name)
    unbatched = cm(clnet.tensor(x[0]))  # 1-D input, zero state
    assert (unbatched[0] if cls == "LSTMCell" else unbatched).shape == (4,)


def test_rnn_layer_rejects_bad_input(device):
    x = clnet.randn(4, 2, 3)
    w_ih, w_hh = clnet.randn(8, 3), clnet.randn(8, 2)
    with pytest.raises(ValueError, match="mode"):
        rnn.rnn_layer("lstm2", x, None, w_ih, w_hh)
    with pytest.raises(TypeError, match=r"pair \(h0, c0\)"):
        rnn.rnn_layer("lstm", x, clnet.zeros(2, 2), w_ih, w_hh)
    with pytest.raises(ValueError, match=r"weight_hh must have shape \(8, 2\)"):
        rnn.rnn_layer("lstm", x, (clnet.zeros(2, 2), clnet.zeros(2, 2)), w_ih, clnet.randn(8, 3))
    with pytest.raises(ValueError, match="empty"):
        rnn.rnn_layer("gru", clnet.randn(0, 2, 3), clnet.zeros(2, 2), clnet.randn(6, 3), clnet.randn(6, 2))


@pytest.mark.parametrize("cls,kwargs", simulator_subset([("LSTM", dict(num_layers=2, bidirectional=True)),
                                                         ("GRU", dict(bidirectional=True, batch_first=True)),
                                                         ("RNN", dict(num_layers=2))], {0}, unpack=True))
def test_packed_sequences_like_torch(device, rng, cls, kwargs):
    from clnet.nn.utils import rnn as crnn
    tm, cm = getattr(torch.nn, cls)(3, 4, **kwargs), getattr(nn, cls)(3, 4, **kwargs)
    _copy_params(tm, cm)
    bf = kwargs.get("batch_first", False)
    lengths = [3, 5, 2, 4]
    x = rng.standard_normal((4, 5, 3) if bf else (5, 4, 3)).astype(np.float32)
    tx, cx = torch.tensor(x, requires_grad=True), clnet.tensor(x, requires_grad=True)
    tp = torch.nn.utils.rnn.pack_padded_sequence(tx, lengths, batch_first=bf, enforce_sorted=False)
    cp = crnn.pack_padded_sequence(cx, lengths, batch_first=bf, enforce_sorted=False)
    assert_close(cp.data, tp.data.detach().numpy())
    assert cp.batch_sizes.numpy().tolist() == tp.batch_sizes.tolist()
    to, th = tm(tp)
    co, ch = cm(cp)
    if cls == "LSTM":
        assert_close(ch[1], th[1].detach().numpy(), rtol=1e-4, atol=1e-5)
        th, ch = th[0], ch[0]
    assert_close(co.data, to.data.detach().numpy(), rtol=1e-4, atol=1e-5)
    assert_close(ch, th.detach().numpy(), rtol=1e-4, atol=1e-5)
    tpad, tlen = torch.nn.utils.rnn.pad_packed_sequence(to, batch_first=True, total_length=6)
    cpad, clen = crnn.pad_packed_sequence(co, batch_first=True, total_length=6)
    assert clen.numpy().tolist() == tlen.tolist()
    assert_close(cpad, tpad.detach().numpy(), rtol=1e-4, atol=1e-5)
    g = rng.standard_normal(tuple(tpad.shape)).astype(np.float32)
    ((tpad * torch.tensor(g)).sum() + th.sum()).backward()
    ((cpad * clnet.tensor(g)).sum() + ch.sum()).backward()
    assert_close(cx.grad, tx.grad.numpy(), rtol=1e-4, atol=1e-5)
    for name, p in tm.named_parameters():
        assert_close(dict(cm.named_parameters())[name].grad, p.grad.numpy(), rtol=1e-4, atol=1e-4, what=name)


def test_packed_layer_gradcheck_and_helpers(device, rng):
    from clnet.nn.utils import rnn as crnn
    x, h0, c0 = rng.standard_normal((3, 3, 2)), rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    w = _weights(rng, "lstm", 2, 2)

    def fn(x, h0, c0, w_ih, w_hh):
        out, h, c = rnn.rnn_layer("lstm", x, (h0, c0), w_ih, w_hh, reverse=True, batch_sizes=[3, 2, 1])
        return out.sum(0) + h + c * 2
    gradcheck(fn, x, h0, c0, w[0], w[1], device=device)
    seqs = [clnet.tensor(rng.standard_normal((n, 2)).astype(np.float32)) for n in (2, 4, 1)]
    packed = crnn.pack_sequence(seqs, enforce_sorted=False)
    want = torch.nn.utils.rnn.pack_sequence([torch.tensor(s.numpy()) for s in seqs], enforce_sorted=False)
    assert_close(packed.data, want.data.numpy())
    for a, b in zip(crnn.unpack_sequence(packed), seqs):
        assert_close(a, b.numpy())
    with pytest.raises(RuntimeError, match="sorted in decreasing order"):
        crnn.pack_sequence(seqs)
    with pytest.raises(ValueError, match="batch_sizes"):
        rnn.rnn_layer("gru", clnet.randn(2, 2, 2), clnet.zeros(2, 2), clnet.randn(6, 2), clnet.randn(6, 2),
                      batch_sizes=[1, 2])

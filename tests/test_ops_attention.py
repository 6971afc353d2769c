"""Scaled dot-product attention (clnet.ops.attention, kernels/attention.cl.mako): numpy float64 reference,
finite-difference gradients (float64), PyTorch's numbers for masks, causal attention, broadcast batches
and fully masked rows, and nn.MultiheadAttention against PyTorch."""
from __future__ import annotations

import numpy as np
import pytest

import clnet
import clnet.nn as nn
import clnet.nn.functional as F
from clnet.ops import attention as att
from conftest import assert_close, gradcheck, simulator_subset

torch = pytest.importorskip("torch")


def np_attention(q, k, v, mask=None, causal=False, scale=None):
    scale = 1 / np.sqrt(q.shape[-1]) if scale is None else scale
    s = q @ np.swapaxes(k, -1, -2) * scale
    L, S = s.shape[-2:]
    if causal:
        s = np.where(np.tril(np.ones((L, S), bool)), s, -np.inf)
    if mask is not None:
        s = s + (np.where(mask, 0, -np.inf) if mask.dtype == bool else mask)
    m = s.max(-1, keepdims=True)
    e = np.exp(s - np.where(np.isfinite(m), m, 0))
    tot = e.sum(-1, keepdims=True)
    p = np.where(tot > 0, e / np.where(tot > 0, tot, 1), 0)
    return p @ v


CASES = [  # (q shape, k shape, v shape, mask kind, causal)
    ((2, 3, 5, 8), (2, 3, 7, 8), (2, 3, 7, 4), None, False),
    ((2, 3, 5, 8), (2, 3, 7, 8), (2, 3, 7, 4), None, True),
    ((2, 3, 7, 8), (2, 3, 5, 8), (2, 3, 5, 4), "bool", False),
    ((2, 2, 5, 4), (2, 2, 6, 4), (2, 2, 6, 4), "float-batch", False),
    ((5, 8), (7, 8), (7, 4), None, True),
    ((2, 3, 5, 8), (1, 3, 7, 8), (3, 7, 4), None, False),
]


def _mask(kind, rng, L, S):
    if kind == "bool":
        m = rng.random((L, S)) > 0.3
        m[1] = False  # a fully masked query row
        return m
    if kind == "float-batch":
        return rng.standard_normal((2, 1, L, S)).astype(np.float32)
    return None


@pytest.mark.parametrize("case", simulator_subset(CASES, {0, 2}), ids=[f"case{i}" for i in range(len(CASES))])
@pytest.mark.parametrize("path", ["fused", "explicit"])
def test_attention_like_numpy_and_torch(device, rng, case, path):
    qs, ks, vs, kind, causal = case
    q, k, v = (rng.standard_normal(s).astype(np.float32) for s in (qs, ks, vs))
    mask = _mask(kind, rng, qs[-2], ks[-2])
    cq, ck, cv = (clnet.tensor(a, requires_grad=True) for a in (q, k, v))
    cm = clnet.tensor(mask) if mask is not None else None
    if path == "fused":
        out = att.fused_attention(cq, ck, cv, attn_mask=cm, is_causal=causal)
    else:
        out = att.attention_with_weights(cq, ck, cv, cm, 0.0, causal)[0]
    assert_close(out, np_attention(q.astype(np.float64), k, v, mask, causal), rtol=1e-4, atol=1e-5)
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    tout = torch.nn.functional.scaled_dot_product_attention(
        tq, tk, tv, attn_mask=torch.tensor(mask) if mask is not None else None, is_causal=causal)
    g = rng.standard_normal(tout.shape).astype(np.float32)
    tout.backward(torch.tensor(g))
    out.backward(clnet.tensor(g))
    for c, t, name in ((cq, tq, "q"), (ck, tk, "k"), (cv, tv, "v")):
        assert_close(c.grad, t.grad.numpy(), rtol=1e-4, atol=1e-5, what=f"grad of {name}")


@pytest.mark.parametrize("causal", [False, True])
def test_fused_attention_gradcheck(device, rng, causal):
    q, k, v = rng.standard_normal((1, 3, 2)), rng.standard_normal((1, 4, 2)), rng.standard_normal((1, 4, 3))
    gradcheck(lambda q, k, v: att.fused_attention(q, k, v, is_causal=causal, scale=0.7), q, k, v, device=device)


@pytest.mark.parametrize("shape", [(3, 4), (5, 3)], ids=["L<S", "L>S"])
def test_explicit_causal_gradcheck(device, rng, shape):
    """The explicit path's causal branch (scale and mask in one pass, no masked-out rows possible)."""
    L, S = shape
    q, k, v = rng.standard_normal((2, L, 2)), rng.standard_normal((2, S, 2)), rng.standard_normal((2, S, 3))
    gradcheck(lambda q, k, v: att.attention_with_weights(q, k, v, None, 0.0, True, 0.7)[0], q, k, v, device=device)
    w = att.attention_with_weights(*(clnet.tensor(a, device=device) for a in (q, k, v)), None, 0.0, True)[1]
    s = np.einsum("bld,bsd->bls", q, k) / np.sqrt(2)
    s[:, np.arange(S)[None, :] > np.arange(L)[:, None]] = -np.inf
    e = np.exp(s - s.max(-1, keepdims=True))
    assert_close(w, e / e.sum(-1, keepdims=True), rtol=1e-5, atol=1e-6)


def test_attention_with_float_mask_gradient_and_dropout(device, rng):
    """A mask that needs a gradient, and dropout, take the explicit path (both differentiable)."""
    q, k, v = rng.standard_normal((2, 3, 2)), rng.standard_normal((2, 4, 2)), rng.standard_normal((2, 4, 2))
    m = rng.standard_normal((3, 4))
    gradcheck(lambda q, k, v, m: att.scaled_dot_product_attention(q, k, v, attn_mask=m), q, k, v, m, device=device)
    x = clnet.randn(2, 3, 8, 4)
    clnet.manual_seed(3)
    a = F.scaled_dot_product_attention(x, x, x, dropout_p=0.5)
    clnet.manual_seed(3)
    b = F.scaled_dot_product_attention(x, x, x, dropout_p=0.5)
    assert_close(a, b.numpy())
    assert not np.allclose(a.numpy(), F.scaled_dot_product_attention(x, x, x).numpy())


def test_path_choice(device, rng):
    """CPUs take the explicit path for scores that fit CPU_EXPLICIT_BYTES; both paths agree."""
    q = clnet.tensor(rng.standard_normal((2, 3, 4)).astype(np.float32))
    chosen = att._fused_pays(device, q.dtype, None, 0.0, 2, 3, 3, 4, 4)
    assert chosen == (device.type != "cpu")
    assert not att._fused_pays(device, q.dtype, None, 0.1, 2, 3, 3, 4, 4)
    assert not att._fused_pays(device, q.dtype, None, 0.0, 2, 3, 3, att.MAX_HEAD + 1, 4)
    assert_close(F.scaled_dot_product_attention(q, q, q, is_causal=True),
                 att.fused_attention(q, q, q, is_causal=True).numpy(), rtol=1e-5, atol=1e-6)


def test_attention_gqa_and_errors(device, rng):
    q = rng.standard_normal((1, 4, 3, 2)).astype(np.float32)
    k = rng.standard_normal((1, 2, 5, 2)).astype(np.float32)
    v = rng.standard_normal((1, 2, 5, 2)).astype(np.float32)
    got = F.scaled_dot_product_attention(clnet.tensor(q), clnet.tensor(k), clnet.tensor(v), enable_gqa=True)
    want = torch.nn.functional.scaled_dot_product_attention(torch.tensor(q), torch.tensor(k), torch.tensor(v),
                                                            enable_gqa=True)
    assert_close(got, want.numpy(), rtol=1e-5, atol=1e-6)
    x = clnet.randn(2, 3, 4)
    with pytest.raises(ValueError, match="is_causal"):
        F.scaled_dot_product_attention(x, x, x, attn_mask=clnet.ones(3, 3, dtype=clnet.bool), is_causal=True)
    with pytest.raises(ValueError, match="same last dimension"):
        F.scaled_dot_product_attention(x, clnet.randn(2, 3, 5), clnet.randn(2, 3, 5))
    with pytest.raises(ValueError, match="does not broadcast"):
        F.scaled_dot_product_attention(x, x, x, attn_mask=clnet.ones(2, 2, dtype=clnet.bool))


MHA_CASES = [
    dict(batch_first=False, need_weights=True),
    dict(batch_first=True, need_weights=False, masks=True),
    dict(kdim=3, vdim=5, need_weights=True, average=False),
    dict(add_bias_kv=True, add_zero_attn=True, need_weights=True, masks=True),
    dict(unbatched=True, need_weights=False),
]


@pytest.mark.parametrize("case", simulator_subset(MHA_CASES, {1}), ids=[f"mha{i}" for i in range(len(MHA_CASES))])
def test_multihead_attention_like_torch(device, rng, case):
    E, H, L, S, N = 8, 2, 4, 5, 3
    kw = {k: case[k] for k in ("batch_first", "kdim", "vdim", "add_bias_kv", "add_zero_attn") if k in case}
    torch.manual_seed(1)
    tm = torch.nn.MultiheadAttention(E, H, **kw)
    cm = nn.MultiheadAttention(E, H, **kw)
    assert sorted(n for n, _ in cm.named_parameters()) == sorted(n for n, _ in tm.named_parameters())
    cm.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    kd, vd = case.get("kdim", E), case.get("vdim", E)
    if case.get("unbatched"):
        shapes = ((L, E), (S, kd), (S, vd))
    elif case.get("batch_first"):
        shapes = ((N, L, E), (N, S, kd), (N, S, vd))
    else:
        shapes = ((L, N, E), (S, N, kd), (S, N, vd))
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    t_in = [torch.tensor(a, requires_grad=True) for a in arrays]
    c_in = [clnet.tensor(a, requires_grad=True) for a in arrays]
    extra_t, extra_c = {}, {}
    if case.get("masks"):
        am = np.triu(np.ones((L, S), bool), 1)
        kpm = np.zeros((N, S), bool)
        kpm[0, -2:] = True
        extra_t = dict(attn_mask=torch.tensor(am), key_padding_mask=torch.tensor(kpm))
        extra_c = dict(attn_mask=clnet.tensor(am), key_padding_mask=clnet.tensor(kpm))
    need = case.get("need_weights", True)
    avg = case.get("average", True)
    to, tw = tm(*t_in, need_weights=need, average_attn_weights=avg, **extra_t)
    co, cw = cm(*c_in, need_weights=need, average_attn_weights=avg, **extra_c)
    assert_close(co, to.detach().numpy(), rtol=1e-4, atol=1e-5)
    if need:
        assert_close(cw, tw.detach().numpy(), rtol=1e-4, atol=1e-5)
    else:
        assert cw is None and tw is None
    g = rng.standard_normal(to.shape).astype(np.float32)
    to.backward(torch.tensor(g))
    co.backward(clnet.tensor(g))
    for c, t in zip(c_in, t_in):
        assert_close(c.grad, t.grad.numpy(), rtol=1e-4, atol=1e-5)
    cparams = dict(cm.named_parameters())
    for name, p in tm.named_parameters():
        assert_close(cparams[name].grad, p.grad.numpy(), rtol=1e-4, atol=1e-4, what=name)

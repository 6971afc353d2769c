"""The GEMM-speed convolution algorithms (implicit GEMM with phase-split strides, Winograd F(2x2) and F(4x4))
and the per-pass algorithm choice: against PyTorch, numpy float64 and finite differences."""
from __future__ import annotations

import numpy as np
import pytest

import clnet
from clnet.ops import conv, conv_select

from conftest import assert_close, gradcheck, simulator_subset, small
from test_conv import ref_conv2d

# (N, C, H, W, OC, KH, KW, stride, padding, dilation)
CASES = [
    (2, 5, 9, 7, 6, 3, 3, 1, 1, 1),       # odd sizes, channel counts that fill no register block
    (2, 4, 16, 16, 13, 3, 3, 1, 1, 1),    # rows as wide as the GEMM's tile (row tiling), 13 output channels
    (1, 3, 6, 5, 4, 3, 3, 1, 0, 1),       # no padding
    (2, 3, 7, 8, 5, 3, 3, 1, 2, 1),       # padding 2 (Winograd's largest)
    (2, 6, 8, 8, 7, 1, 1, 1, 0, 1),       # 1x1
    (2, 6, 8, 9, 7, 1, 1, 2, 0, 1),       # 1x1 stride 2 (ResNet's shortcut): three of four phases unused
    (2, 4, 9, 8, 5, 3, 3, 2, 1, 1),       # 3x3 stride 2 (ResNet's downsampling): four phase convolutions
    (1, 3, 11, 10, 4, 5, 5, 2, 2, 1),     # 5x5 stride 2
    (2, 3, 8, 7, 4, 2, 2, 2, 0, 1),       # even kernel, stride = kernel
    (1, 3, 10, 9, 4, 3, 3, 1, 2, 2),      # dilation 2
    (1, 2, 9, 9, 3, 3, 3, 3, 1, 1),       # stride 3
    (1, 2, 9, 8, 3, 3, 3, (2, 1), 1, 1),  # unequal strides: the implicit GEMM does not apply (direct)
]
ALGOS = ["gemm", "winograd2", "winograd4"]
IDS = ["x".join(map(str, c[:7])) + f"-s{c[7]}p{c[8]}d{c[9]}".replace(" ", "") for c in CASES]


def _data(rng, n, c, h, w, oc, kh, kw):
    return (rng.standard_normal((n, c, h, w)).astype(np.float32),
            rng.standard_normal((oc, c, kh, kw)).astype(np.float32),
            rng.standard_normal(oc).astype(np.float32))


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("case", simulator_subset(CASES, keep={0, 6}), ids=IDS)
def test_matches_torch(device, rng, case, algo):
    """Output and all three gradients against PyTorch (float32 both sides)."""
    torch = pytest.importorskip("torch")
    n, c, h, w, oc, kh, kw, s, p, d = case
    x, wt, b = _data(rng, n, c, h, w, oc, kh, kw)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, wt, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, s, p, d)
    gy = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
    ty.backward(torch.tensor(gy))
    cx, cw, cb = (clnet.tensor(a, device=device, requires_grad=True) for a in (x, wt, b))
    y = conv.conv2d(cx, cw, cb, s, p, d, algo=algo)
    y.backward(clnet.tensor(gy, device=device))
    # winograd4's transforms carry constants up to 8 and 1/24: a few ulps more than the other algorithms
    tol = 3e-4 if algo == "winograd4" else 1e-4
    scale = lambda r: tol * max(1.0, float(np.abs(r).max()))  # noqa: E731
    for what, got, ref in (("output", y, ty), ("grad input", cx.grad, tx.grad), ("grad weight", cw.grad, tw.grad),
                           ("grad bias", cb.grad, tb.grad)):
        r = ref.detach().numpy()
        assert_close(got, r, rtol=tol, atol=scale(r), what=f"{algo} {what}")


@pytest.mark.parametrize("algo", ALGOS)
def test_float64_matches_numpy(device, rng, algo):
    """float64 end to end: the algorithms are exact up to rounding (Winograd's transforms included)."""
    if not device.fp64:
        pytest.skip("no float64")
    for n, c, h, w, oc, kh, kw, s, p, d in (CASES[0], CASES[6]):
        x, wt, b = (rng.standard_normal(sh) for sh in ((n, c, h, w), (oc, c, kh, kw), (oc,)))
        y = conv.conv2d(clnet.tensor(x, device=device), clnet.tensor(wt, device=device),
                        clnet.tensor(b, device=device), s, p, d, algo=algo)
        assert y.dtype == np.float64
        assert_close(y, ref_conv2d(x, wt, b, s, p, d), rtol=1e-10, atol=1e-10, what=algo)


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("case", simulator_subset([(1, 2, 5, 4, 3, 3, 3, 1, 1, 1), (1, 2, 6, 5, 2, 3, 3, 2, 1, 1)],
                                                  keep={0}), ids=["s1", "s2"])
def test_gradcheck(device, case, algo):
    """Finite differences (float64) through every pass the algorithm runs."""
    n, c, h, w, oc, kh, kw, s, p, d = case
    rng = np.random.default_rng(11)
    x, wt, b = rng.standard_normal((n, c, h, w)), rng.standard_normal((oc, c, kh, kw)), rng.standard_normal(oc)
    gradcheck(lambda a, ww, bb: conv.conv2d(a, ww, bb, s, p, d, algo=algo), x, wt, b, device=device)


@pytest.mark.big(reason="ResNet-sized layers: seconds of simulated work")
def test_default_choice_on_real_layers(device, rng):
    """Without algo=, each pass of a CIFAR ResNet layer takes a GEMM-speed algorithm and still matches torch."""
    torch = pytest.importorskip("torch")
    n = small(device, 4, 1)
    for c, hw, oc, s in ((32, 16, 32, 1), (32, 16, 32, 2)):
        x, wt, _ = _data(rng, n, c, hw, hw, oc, 3, 3)
        # the rule is judged at the real batch of 4 (slow devices run the numbers on a batch of 1, where the
        # rule may rightly keep 'direct')
        g = conv._Geom((4,) + x.shape[1:], wt.shape, (s, s), (1, 1), (1, 1))
        rule = {p: conv_select.choose(device, g, p) for p in conv_select.PASSES}
        assert all(a != "direct" for a in rule.values()), rule
        g = conv._Geom(x.shape, wt.shape, (s, s), (1, 1), (1, 1))
        chosen = {p: conv_select.choose(device, g, p) for p in conv_select.PASSES}
        tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(wt, requires_grad=True)
        ty = torch.nn.functional.conv2d(tx, tw, None, s, 1)
        ty.sum().backward()
        cx, cw = clnet.tensor(x, device=device, requires_grad=True), clnet.tensor(wt, device=device, requires_grad=True)
        y = conv.conv2d(cx, cw, None, s, 1)
        y.sum().backward()
        for what, got, ref in (("output", y, ty), ("grad input", cx.grad, tx.grad), ("grad weight", cw.grad, tw.grad)):
            r = ref.detach().numpy()
            assert_close(got, r, rtol=3e-4, atol=3e-4 * float(np.abs(r).max()), what=f"{chosen} {what}")


def test_choice_rules_and_overrides(monkeypatch):
    """The digits model's tiny layers stay direct; Winograd needs 3x3 stride 1; forcing falls back where an
    algorithm does not apply; unknown names fail clearly."""
    dev = clnet.default_device()
    tiny = conv._Geom((64, 1, 8, 8), (16, 1, 3, 3), (1, 1), (1, 1), (1, 1))
    assert {conv_select.choose(dev, tiny, p) for p in conv_select.PASSES} == {"direct"}
    big = conv._Geom((32, 64, 32, 32), (64, 64, 3, 3), (1, 1), (1, 1), (1, 1))
    assert conv_select.choose(dev, big, "forward") == "winograd4"
    strided = conv._Geom((32, 64, 32, 32), (128, 64, 3, 3), (2, 2), (1, 1), (1, 1))
    assert conv_select.choose(dev, strided, "forward") == "gemm"
    assert conv_select.choose(dev, strided, "forward", "winograd2") == "direct"   # does not apply: falls back
    monkeypatch.setenv("CLNET_CONV_ALGO", "im2col")
    assert conv_select.choose(dev, big, "grad_weight") == "im2col"
    monkeypatch.setenv("CLNET_CONV_ALGO", "fft")
    with pytest.raises(ValueError, match="algo must be one of"):
        conv_select.choose(dev, big, "forward")

"""conv2d, max_pool2d and avg_pool2d against numpy float64 references, finite differences and PyTorch."""
from __future__ import annotations

import numpy as np
import pytest

import clnet
from clnet.backend import programs
from clnet.ops import conv

from conftest import assert_close, gradcheck, simulator_subset, small


# --- numpy float64 references ----------------------------------------------------------------------
def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def ref_conv2d(x, w, b=None, stride=1, padding=0, dilation=1):
    """Direct loops over the kernel taps: y[n, o, i, j] = sum_{c, ky, kx} xpad[n, c, i*s + ky*d, j*s + kx*d] w[o, c, ky, kx]."""
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    n, c, h, wd = x.shape
    oc, _, kh, kw = w.shape
    xp = np.zeros((n, c, h + 2 * ph, wd + 2 * pw))
    xp[:, :, ph:ph + h, pw:pw + wd] = x
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((n, oc, oh, ow))
    for ky in range(kh):
        for kx in range(kw):
            patch = xp[:, :, ky * dh: ky * dh + sh * (oh - 1) + 1: sh, kx * dw: kx * dw + sw * (ow - 1) + 1: sw]
            y += np.einsum("nchw,oc->nohw", patch, w[:, :, ky, kx])
    if b is not None:
        y += np.asarray(b, np.float64)[None, :, None, None]
    return y


def ref_pool2d(x, kernel_size, stride=None, padding=0, mode="max"):
    (kh, kw) = _pair(kernel_size)
    (sh, sw) = _pair(stride) if stride is not None else (kh, kw)
    (ph, pw) = _pair(padding)
    x = np.asarray(x, np.float64)
    n, c, h, w = x.shape
    fill = -np.inf if mode == "max" else 0.0
    xp = np.full((n, c, h + 2 * ph, w + 2 * pw), fill)
    xp[:, :, ph:ph + h, pw:pw + w] = x
    oh = (h + 2 * ph - kh) // sh + 1
    ow = (w + 2 * pw - kw) // sw + 1
    y = np.empty((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            win = xp[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
            y[:, :, i, j] = win.max(axis=(2, 3)) if mode == "max" else win.sum(axis=(2, 3)) / (kh * kw)
    return y


# (N, C, H, W, OC, KH, KW, stride, padding, dilation): odd sizes, asymmetric stride/padding/dilation
CONV_CASES = [
    (2, 3, 7, 9, 4, 3, 3, 1, 0, 1),
    (2, 3, 8, 8, 5, 3, 3, 1, 1, 1),
    (1, 2, 9, 7, 3, 3, 2, (2, 1), (1, 0), 1),
    (2, 4, 11, 10, 6, 3, 3, 2, 2, 2),
    (3, 1, 6, 5, 7, 1, 1, 1, 0, 1),
    (1, 5, 10, 9, 3, 5, 3, (1, 3), (2, 1), (2, 1)),
    (2, 3, 5, 5, 2, 5, 5, 1, 0, 1),       # kernel as big as the image: 1x1 output
    (1, 2, 4, 6, 9, 2, 2, 3, 1, 1),       # stride larger than the kernel: some inputs unused
    (2, 3, 5, 6, 4, 1, 1, 1, 1, 1),       # padding beyond the kernel's reach: the border is bias only
    (1, 2, 5, 4, 3, 2, 3, 1, (2, 3), 1),  # (its input gradient runs the masked kernel variant)
]
ALGOS = ["direct", "im2col"]
# the GEMM-speed algorithms (clnet.ops.conv_select): where one does not apply to a case's pass (winograd on a
# 5x5 kernel, a stride the phase split cannot take) that pass runs `direct`, so every case runs everywhere
FAST_ALGOS = ["gemm", "winograd2", "winograd4"]


def _rand(rng, *shape):
    return rng.standard_normal(shape)


@pytest.mark.parametrize("algo", ALGOS + FAST_ALGOS)
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "x".join(map(str, c[:7])) + f"-s{c[7]}p{c[8]}d{c[9]}")
def test_conv2d_forward_matches_numpy(device, rng, case, algo):
    n, c, h, w, oc, kh, kw, s, p, d = case
    if small(device, False, True):
        n = 1
    x, wt, b = _rand(rng, n, c, h, w), _rand(rng, oc, c, kh, kw), _rand(rng, oc)
    y = conv.conv2d(clnet.tensor(x.astype(np.float32)), clnet.tensor(wt.astype(np.float32)),
                    clnet.tensor(b.astype(np.float32)), s, p, d, algo=algo)
    assert_close(y, ref_conv2d(x, wt, b, s, p, d), rtol=1e-4, atol=1e-4, what="conv2d float32")
    y0 = conv.conv2d(clnet.tensor(x.astype(np.float32)), clnet.tensor(wt.astype(np.float32)), None, s, p, d,
                     algo=algo)
    assert_close(y0, ref_conv2d(x, wt, None, s, p, d), rtol=1e-4, atol=1e-4, what="conv2d without bias")


def test_conv2d_float64_is_exact(device, rng):
    if not device.fp64:
        pytest.skip("no float64")
    x, wt, b = _rand(rng, 2, 3, 7, 6), _rand(rng, 5, 3, 3, 2), _rand(rng, 5)
    y = conv.conv2d(clnet.tensor(x), clnet.tensor(wt), clnet.tensor(b), 2, 1, (1, 2))
    assert y.dtype == np.float64
    assert_close(y, ref_conv2d(x, wt, b, 2, 1, (1, 2)), rtol=1e-12, atol=1e-12)


GRAD_CASES = [
    (1, 2, 5, 4, 3, 3, 2, 1, 1, 1),
    (2, 2, 6, 5, 2, 3, 3, 2, (1, 0), 1),
    (1, 1, 7, 7, 2, 2, 3, (2, 3), 1, (2, 1)),
    (1, 2, 4, 5, 3, 2, 1, 1, (2, 1), 1),
]


# Finite differences run the forward pass twice per input element: seconds per case on PoCL, minutes on
# Oclgrind (4 min for one im2col case). The simulator runs the case with stride, padding and dilation
# through the default (direct) kernels; im2col's gradients are checked there against numpy's by
# test_conv2d_gradients_match_numpy below (and against PyTorch), which launch each kernel once.
@pytest.mark.parametrize("algo", simulator_subset(ALGOS, keep={0}))
@pytest.mark.parametrize("case", simulator_subset(GRAD_CASES, keep={2}), ids=str)
def test_conv2d_gradcheck(device, case, algo):
    n, c, h, w, oc, kh, kw, s, p, d = case
    rng = np.random.default_rng(3)
    x, wt, b = _rand(rng, n, c, h, w), _rand(rng, oc, c, kh, kw), _rand(rng, oc)
    gradcheck(lambda a, ww, bb: conv.conv2d(a, ww, bb, s, p, d, algo=algo), x, wt, b, device=device)
    gradcheck(lambda a, ww: conv.conv2d(a, ww, None, s, p, d, algo=algo), x, wt, device=device)


@pytest.mark.parametrize("algo", ALGOS)
def test_conv2d_gradients_match_numpy(device, rng, algo):
    """Gradients of sum(y * gy) by the adjoint identities, against numpy float64 (float32 on device)."""
    n, c, h, w, oc, kh, kw, s, p, d = 3, 4, 9, 8, 5, 3, 3, 2, 1, (2, 1)
    n = small(device, n, 2)
    x, wt, b = _rand(rng, n, c, h, w), _rand(rng, oc, c, kh, kw), _rand(rng, oc)
    gy = _rand(rng, *ref_conv2d(x, wt, b, s, p, d).shape)
    tx, tw, tb = (clnet.tensor(a.astype(np.float32), requires_grad=True) for a in (x, wt, b))
    conv.conv2d(tx, tw, tb, s, p, d, algo=algo).backward(clnet.tensor(gy.astype(np.float32)))
    # reference gradients: differentiate the numpy reference exactly (it is linear in x and in w)
    gw = np.zeros_like(wt)
    for i in np.ndindex(wt.shape):
        e = np.zeros_like(wt)
        e[i] = 1
        gw[i] = (ref_conv2d(x, e, None, s, p, d) * gy).sum()
    gx = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = 1
        gx[i] = (ref_conv2d(e, wt, None, s, p, d) * gy).sum()
    assert_close(tx.grad, gx, rtol=1e-4, atol=1e-4, what="grad input")
    assert_close(tw.grad, gw, rtol=1e-4, atol=1e-4, what="grad weight")
    assert_close(tb.grad, gy.sum(axis=(0, 2, 3)), rtol=1e-4, atol=1e-4, what="grad bias")


def test_conv2d_unbatched_and_padding_words(device, rng):
    x, wt = _rand(rng, 3, 6, 5), _rand(rng, 2, 3, 3, 3)
    y = conv.conv2d(clnet.tensor(x.astype(np.float32)), clnet.tensor(wt.astype(np.float32)), padding="same")
    assert y.shape == (2, 6, 5)
    assert_close(y, ref_conv2d(x[None], wt, None, 1, 1)[0], rtol=1e-4, atol=1e-4)
    y = conv.conv2d(clnet.tensor(x.astype(np.float32)), clnet.tensor(wt.astype(np.float32)), padding="valid")
    assert y.shape == (2, 4, 3)


def test_conv2d_new_batch_size_does_not_rebuild(device, rng):
    wt = clnet.tensor(_rand(rng, 4, 2, 3, 3).astype(np.float32))
    b = clnet.tensor(_rand(rng, 4).astype(np.float32))

    def run(n, h):
        x = clnet.tensor(_rand(rng, n, 2, h, h + 1).astype(np.float32), requires_grad=True)
        for y in (conv.conv2d(x, wt, b, 1, 1), conv.max_pool2d(x, 2), conv.avg_pool2d(x, 2)):
            y.backward(clnet.ones(y.shape))  # (not .sum(): the reduction may pick kernels by size)
    run(2, 6)
    run(1, 4)  # small and large grids take the split / unsplit channel sums: build both first
    before = programs.built_count()
    run(3, 7)
    run(1, 5)
    run(5, 9)
    assert programs.built_count() == before


def test_conv2d_bad_input_raises_before_launch(device, rng):
    x = clnet.tensor(_rand(rng, 2, 3, 8, 8).astype(np.float32))
    w = clnet.tensor(_rand(rng, 4, 2, 3, 3).astype(np.float32))
    with pytest.raises(ValueError, match=r"3 channels.*\(4, 2, 3, 3\)"):
        conv.conv2d(x, w)
    with pytest.raises(ValueError, match="weight must have shape"):
        conv.conv2d(x, clnet.tensor(np.ones((4, 3, 3), np.float32)))
    with pytest.raises(ValueError, match="too small"):
        conv.conv2d(x, clnet.tensor(np.ones((4, 3, 9, 3), np.float32)))
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\)"):
        conv.conv2d(x, clnet.tensor(np.ones((4, 3, 3, 3), np.float32)), clnet.tensor(np.ones(3, np.float32)))
    with pytest.raises(ValueError, match="stride must be positive"):
        conv.conv2d(x, clnet.tensor(np.ones((4, 3, 3, 3), np.float32)), stride=0)
    with pytest.raises(TypeError, match="floating point"):
        conv.conv2d(clnet.tensor(np.ones((1, 3, 4, 4), np.int32)), clnet.tensor(np.ones((4, 3, 3, 3), np.int32)))
    with pytest.raises(ValueError, match="at most half"):
        conv.max_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        conv.avg_pool2d(clnet.tensor(np.ones((4, 4), np.float32)), 2)


# --- pooling ---------------------------------------------------------------------------------------
POOL_CASES = [
    ((2, 3, 8, 8), 2, None, 0),
    ((1, 2, 7, 9), 3, 2, 1),
    ((2, 1, 9, 6), (3, 2), (1, 2), (1, 0)),
    ((1, 3, 5, 5), 5, 1, 2),
    ((1, 2, 10, 7), 2, 3, 1),      # stride > kernel: some inputs in no window
]


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_pool_forward_matches_numpy(device, rng, case, mode):
    shape, k, s, p = case
    x = _rand(rng, *shape)
    fn = conv.max_pool2d if mode == "max" else conv.avg_pool2d
    y = fn(clnet.tensor(x.astype(np.float32)), k, s, p)
    assert_close(y, ref_pool2d(x, k, s, p, mode), rtol=1e-5, atol=1e-6, what=f"{mode}_pool2d")


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("case", simulator_subset(POOL_CASES[:3], keep={1}), ids=str)  # overlap and padding
def test_pool_gradcheck(device, case, mode):
    shape, k, s, p = case
    shape = small(device, shape, (1, 1) + shape[2:])  # the windows, strides and padding are the same
    x = np.random.default_rng(5).standard_normal(shape)
    fn = conv.max_pool2d if mode == "max" else conv.avg_pool2d
    gradcheck(lambda a: fn(a, k, s, p), x, device=device)


def test_max_pool_overlapping_windows_route_gradient_to_argmax(device):
    # a single big value sits in four overlapping windows: it receives all four output gradients
    x = np.zeros((1, 1, 5, 5), np.float32) - 1
    x[0, 0, 2, 2] = 3.0
    t = clnet.tensor(x, requires_grad=True)
    y, idx = conv.max_pool2d(t, 3, 1, 0, return_indices=True)
    assert (idx.numpy() == 12).all()
    gy = np.arange(1, 10, dtype=np.float32).reshape(1, 1, 3, 3)
    y.backward(clnet.tensor(gy))
    expected = np.zeros_like(x)
    expected[0, 0, 2, 2] = gy.sum()
    assert_close(t.grad, expected)


# --- against PyTorch -------------------------------------------------------------------------------
TORCH_CASES = [
    (4, 3, 9, 8, 6, 3, 3, 1, 1, 1),
    (3, 2, 11, 7, 4, 3, 2, 2, (1, 0), 1),
    (2, 4, 10, 10, 5, 3, 3, (2, 1), 2, 2),
    (8, 1, 8, 8, 16, 3, 3, 1, 1, 1),     # the digits CNN's first layer
    (8, 16, 4, 4, 32, 3, 3, 1, 1, 1),    # and its second
    (2, 3, 5, 6, 4, 1, 1, 1, 1, 1),
    (2, 20, 9, 9, 19, 3, 3, 1, 1, 1),    # channel counts that fill no vector exactly
]


# im2col on the two cases with 16+ channels takes 15-90 s on Oclgrind (GEMMs of 64-item tiles): there the
# simulator runs the direct kernels, and im2col on the other five cases
TORCH_CASE_ALGOS = simulator_subset([(c, a) for c in TORCH_CASES for a in ALGOS],
                                    keep={i for i, (c, a) in enumerate((c, a) for c in TORCH_CASES for a in ALGOS)
                                          if a == "direct" or c[1] < 16},
                                    reason="im2col with 16+ channels; the simulator runs it on the smaller cases",
                                    unpack=True)


@pytest.mark.parametrize("case,algo", TORCH_CASE_ALGOS, ids=str)
def test_conv2d_matches_torch(device, rng, case, algo):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    n, c, h, w, oc, kh, kw, s, p, d = case
    if small(device, False, True):
        n = 1
    x, wt, b = (_rand(rng, *sh).astype(np.float32) for sh in ((n, c, h, w), (oc, c, kh, kw), (oc,)))
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, wt, b))
    ty = F.conv2d(tx, tw, tb, s, p, d)
    gy = _rand(rng, *ty.shape).astype(np.float32)
    ty.backward(torch.tensor(gy))
    cx, cw, cb = (clnet.tensor(a, requires_grad=True) for a in (x, wt, b))
    y = conv.conv2d(cx, cw, cb, s, p, d, algo=algo)
    y.backward(clnet.tensor(gy))
    # float32 on both sides, different summation orders: relative 1e-4, absolute 1e-4
    assert_close(y, ty.detach().numpy(), rtol=1e-4, atol=1e-4, what="output")
    assert_close(cx.grad, tx.grad.numpy(), rtol=1e-4, atol=1e-4, what="grad input")
    assert_close(cw.grad, tw.grad.numpy(), rtol=1e-4, atol=2e-4, what="grad weight")
    assert_close(cb.grad, tb.grad.numpy(), rtol=1e-4, atol=2e-4, what="grad bias")


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_pool_matches_torch(device, rng, case, mode):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    shape, k, s, p = case
    x = _rand(rng, *shape).astype(np.float32)
    tx = torch.tensor(x, requires_grad=True)
    if mode == "max":
        ty, tidx = F.max_pool2d(tx, k, s, p, return_indices=True)
    else:
        ty = F.avg_pool2d(tx, k, s, p)  # count_include_pad=True is PyTorch's default
    gy = _rand(rng, *ty.shape).astype(np.float32)
    ty.backward(torch.tensor(gy))
    cx = clnet.tensor(x, requires_grad=True)
    if mode == "max":
        y, idx = conv.max_pool2d(cx, k, s, p, return_indices=True)
        np.testing.assert_array_equal(idx.numpy(), tidx.numpy())
    else:
        y = conv.avg_pool2d(cx, k, s, p)
    y.backward(clnet.tensor(gy))
    assert_close(y, ty.detach().numpy(), rtol=1e-6, atol=1e-6, what="output")
    assert_close(cx.grad, tx.grad.numpy(), rtol=1e-5, atol=1e-6, what="grad input")

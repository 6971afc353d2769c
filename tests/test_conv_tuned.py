"""The conv kernels' tunable variants and `clnet tune`'s conv entries: every register block of the implicit
GEMM (forward / input gradient: MR x NV; weight gradient: conv_wgrad_q's MO x MK, or the gradient panels)
against numpy float64, finite differences through conv2d with tuned entries in place, the tuning file's conv
entries written by tune_conv and honoured by conv_select (and ignored with CLNET_TUNING=0), wrong candidates
rejected, damaged entries ignored with a warning.

Speed is not asserted here (benchmarks/bench_conv.py and `clnet tune` measure it)."""
from __future__ import annotations

import json

import numpy as np
import pytest

import clnet
from clnet import cli, tune
from clnet.backend import tuning_file
from clnet.ops import conv, conv_gemm, conv_select

from conftest import assert_close, gradcheck, simulator_subset, small
from test_conv import ref_conv2d

# (N, C, H, W, OC, KH, KW, stride, padding, dilation)
CASES = [
    (2, 3, 9, 8, 5, 3, 3, 1, 1, 1),       # a 3-channel first layer, odd sizes
    (2, 5, 6, 7, 13, 3, 3, 1, 0, 1),      # no padding: the input gradient's pitch differs from the weight's
    (1, 4, 10, 9, 6, 3, 3, 1, 2, 2),      # dilation 2
    (2, 4, 9, 8, 7, 3, 3, 2, 1, 1),       # stride 2: phase split (blocks apply per phase)
    (1, 3, 5, 17, 4, 1, 5, 1, (0, 2), 1),  # a 1-D-like kernel (conv1d goes through here)
]
IDS = ["x".join(map(str, c[:7])) + f"-s{c[7]}p{c[8]}d{c[9]}".replace(" ", "") for c in CASES]
GEMM_BLOCKS = [dict(MR=3, NV=1), dict(MR=2, NV=4), dict(MR=8, NV=1), dict(MR=5, NV=2)]
WGRAD_BLOCKS = [dict(MO=2, MK=3), dict(MO=3, MK=4), dict(MO=4, MK=2), dict(MO=1, MK=1), dict(panels=1)]


def _pairs(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def ref_grads(x, w, gy, s, p, d):
    """float64 input and weight gradients of conv2d (sum over the taps of shifted products)."""
    (sh, sw), (ph, pw), (dh, dw) = _pairs(s), _pairs(p), _pairs(d)
    n, c, h, wd = x.shape
    oc, _, kh, kw = w.shape
    _, _, OH, OW = gy.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    gxp = np.zeros_like(xp)
    gw = np.zeros_like(w)
    for i in range(kh):
        for j in range(kw):
            win = (slice(None), slice(None), slice(i * dh, i * dh + sh * (OH - 1) + 1, sh),
                   slice(j * dw, j * dw + sw * (OW - 1) + 1, sw))
            gw[:, :, i, j] = np.einsum("nohw,nchw->oc", gy, xp[win])
            gxp[win] += np.einsum("nohw,oc->nchw", gy, w[:, :, i, j])
    return gxp[:, :, ph:ph + h, pw:pw + wd], gw


def _setup(rng, case, dtype=np.float32):
    n, c, h, w, oc, kh, kw, s, p, d = case
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((oc, c, kh, kw))
    g = conv._Geom(x.shape, wt.shape, _pairs(s), _pairs(p), _pairs(d))
    gy = rng.standard_normal((n, oc, g.OH, g.OW))
    return x, wt, gy, g


# every case with two blocks, every block with two or three cases (builds are what costs on slow devices)
GEMM_RUNS = [(CASES[i], GEMM_BLOCKS[(i + j) % len(GEMM_BLOCKS)]) for i in range(len(CASES)) for j in (0, 1)]
WGRAD_RUNS = [(CASES[i], WGRAD_BLOCKS[(i + j) % len(WGRAD_BLOCKS)]) for i in range(len(CASES)) for j in (0, 2)]


def _run_ids(runs):
    return [f"{IDS[CASES.index(c)]}-" + "-".join(f"{k}{v}" for k, v in b.items()) for c, b in runs]


@pytest.mark.parametrize("case,blk", simulator_subset(GEMM_RUNS, keep={0, 1}, unpack=True), ids=_run_ids(GEMM_RUNS))
def test_gemm_blocks_match_numpy(device, rng, case, blk):
    """Forward and input gradient of the implicit GEMM with each register block, against float64."""
    x, wt, gy, g = _setup(rng, case)
    s, p, d = case[7:]
    dev = lambda a: clnet.tensor(a.astype(np.float32), device=device).detach()  # noqa: E731
    y = conv_gemm.forward(dev(x), dev(wt), None, g, blk=blk)
    ref = ref_conv2d(x, wt, None, s, p, d)
    assert_close(y, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max(), what=f"forward {blk}")
    if conv_gemm.applies(g, "grad_input"):
        gx = conv_gemm.grad_input(dev(gy), dev(wt), g, blk=blk)
        rx = ref_grads(x, wt, gy, s, p, d)[0]
        assert_close(gx, rx, rtol=1e-4, atol=1e-4 * np.abs(rx).max(), what=f"grad input {blk}")


@pytest.mark.parametrize("case,blk", simulator_subset(WGRAD_RUNS, keep={0, 1}, unpack=True), ids=_run_ids(WGRAD_RUNS))
def test_wgrad_blocks_match_numpy(device, rng, case, blk):
    """Weight gradient by conv_wgrad_q with each block (and by the gradient panels), alone and reusing the
    input-gradient pass's pitched gy, against float64."""
    x, wt, gy, g = _setup(rng, case)
    s, p, d = case[7:]
    dev = lambda a: clnet.tensor(a.astype(np.float32), device=device).detach()  # noqa: E731
    rw = ref_grads(x, wt, gy, s, p, d)[1]
    tol = dict(rtol=1e-4, atol=1e-4 * np.abs(rw).max())
    assert_close(conv_gemm.grad_weight(dev(x), dev(gy), g, blk=blk), rw, **tol, what=f"grad weight {blk}")
    if conv_gemm.applies(g, "grad_input"):
        share = {}
        conv_gemm.grad_input(dev(gy), dev(wt), g, share=share)
        assert ("gy" in share) == ((g.SH, g.SW) == (1, 1))
        assert_close(conv_gemm.grad_weight(dev(x), dev(gy), g, blk=blk, share=share), rw, **tol,
                     what=f"grad weight {blk}, shared pitched gy")


def test_wgrad_reads_strided_gradient(device, rng):
    """The GEMM passes read gy through its strides (no contiguous copy): an expanded (stride 0) and a
    transposed view give the same gradients as their contiguous copies."""
    x, wt, _, g = _setup(rng, CASES[0])
    gy = np.broadcast_to(rng.standard_normal((1, g.OC, 1, g.OW)), (g.N, g.OC, g.OH, g.OW))
    dev = lambda a: clnet.tensor(np.ascontiguousarray(a, dtype=np.float32), device=device).detach()  # noqa: E731
    small_gy = dev(gy[:1, :, :1])
    view = small_gy.expand(g.N, g.OC, g.OH, g.OW)
    rx, rw = ref_grads(x, wt, np.array(gy), 1, 1, 1)
    for blk in (None, dict(MO=2, MK=3)):     # gradient panels (a small image's default), conv_wgrad_q
        share = {}
        gx = conv_gemm.grad_input(view, dev(wt), g, share=share)
        gw = conv_gemm.grad_weight(dev(x), view, g, blk=blk, share=share)
        assert_close(gx, rx, rtol=1e-4, atol=1e-4 * np.abs(rx).max(), what="grad input, expanded gy")
        assert_close(gw, rw, rtol=1e-4, atol=1e-4 * np.abs(rw).max(), what=f"grad weight {blk}, expanded gy")


def test_default_weight_gradient_kernel_by_image_size(device, rng, monkeypatch):
    """Images above 128 pixels take conv_wgrad_q (sharing the input-gradient pass's pitched gy), smaller ones
    the gradient panels; both give numpy's gradient."""
    calls = []
    monkeypatch.setattr(conv_gemm, "wgrad_q", lambda *a, **k: calls.append("q") or real_q(*a, **k))
    monkeypatch.setattr(conv_gemm, "wgrad_s1", lambda *a, **k: calls.append("panels") or real_s1(*a, **k))
    for hw, kind in ((8, "panels"), (12, "q")):
        x, wt, gy, g = _setup(rng, (1, 2, hw, hw, 3, 3, 3, 1, 1, 1))
        calls.clear()
        gw = conv_gemm.grad_weight(clnet.tensor(x.astype(np.float32), device=device).detach(),
                                   clnet.tensor(gy.astype(np.float32), device=device).detach(), g)
        assert calls == [kind]
        rw = ref_grads(x, wt, gy, 1, 1, 1)[1]
        assert_close(gw, rw, rtol=1e-4, atol=1e-4 * np.abs(rw).max(), what=f"{hw}x{hw} grad weight")


real_q, real_s1 = conv_gemm.wgrad_q, conv_gemm.wgrad_s1


def test_blocks_float64(device, rng):
    """float64 through the tuned variants: exact up to float64 rounding."""
    if not device.fp64:
        pytest.skip("no float64")
    x, wt, gy, g = _setup(rng, CASES[0])
    dev = lambda a: clnet.tensor(a, device=device).detach()  # noqa: E731
    y = conv_gemm.forward(dev(x), dev(wt), None, g, blk=dict(MR=3, NV=2))
    assert y.dtype == np.float64
    assert_close(y, ref_conv2d(x, wt, None, 1, 1, 1), rtol=1e-10, atol=1e-10, what="forward")
    rx, rw = ref_grads(x, wt, gy, 1, 1, 1)
    assert_close(conv_gemm.grad_input(dev(gy), dev(wt), g, blk=dict(MR=3, NV=1)), rx, rtol=1e-10, atol=1e-10)
    assert_close(conv_gemm.grad_weight(dev(x), dev(gy), g, blk=dict(MO=3, MK=2)), rw, rtol=1e-10, atol=1e-10)


# --- tuned entries in the tuning file ----------------------------------------------------------------------
@pytest.fixture
def tuning_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CLNET_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CLNET_TUNING", "1")
    monkeypatch.delenv("CLNET_CONV_ALGO", raising=False)
    monkeypatch.setattr(tuning_file, "_WARNED", set())
    return tmp_path


TUNED = {"forward": dict(algo="gemm", MR=3, NV=1), "grad_input": dict(algo="gemm", MR=2, NV=2),
         "grad_weight": dict(algo="gemm", MO=2, MK=3)}


def test_stored_entries_are_used_and_gradcheck(device, tuning_dir):
    """Entries for a shape class make conv2d run exactly them (plan), CLNET_TUNING=0 turns them off, and the
    gradients through them pass finite differences."""
    case = (1, 3, 5, 4, 4, 3, 3, 1, 1, 1)
    n, c, h, w, oc, kh, kw = case[:7]
    g = conv._Geom((n, c, h, w), (oc, c, kh, kw), (1, 1), (1, 1), (1, 1))
    cls = conv_select.shape_class(g)
    rule = {p: conv_select.choose(device, g, p) for p in conv_select.PASSES}
    assert rule == {p: "direct" for p in conv_select.PASSES}    # tiny: the rule says direct
    tuning_file.store_conv(device, {cls: TUNED})
    for p in conv_select.PASSES:
        algo, params = conv_select.plan(device, g, p)
        assert dict(params, algo=algo) == TUNED[p]
        assert conv_select.choose(device, g, p) == "gemm"
    seen = []
    real = conv_gemm.conv_s1

    def spy(*a, **k):
        seen.append(k.get("blk"))
        return real(*a, **k)
    rng = np.random.default_rng(3)
    x, wt, b = rng.standard_normal((n, c, h, w)), rng.standard_normal((oc, c, kh, kw)), rng.standard_normal(oc)
    conv_gemm.conv_s1 = spy
    try:
        gradcheck(lambda a, ww, bb: conv.conv2d(a, ww, bb, 1, 1), x, wt, b, device=device)
    finally:
        conv_gemm.conv_s1 = real
    assert dict(MR=3, NV=1) in seen and dict(MR=2, NV=2) in seen
    # another class (a bigger batch) is not affected; CLNET_TUNING=0 ignores the entries
    g2 = conv._Geom((16, c, h, w), (oc, c, kh, kw), (1, 1), (1, 1), (1, 1))
    assert conv_select.plan(device, g2, "forward") == (conv_select._rule(device, g2, "forward"), None)
    import os
    os.environ["CLNET_TUNING"] = "0"
    try:
        assert {p: conv_select.plan(device, g, p) for p in conv_select.PASSES} == {p: ("direct", None) for p in rule}
    finally:
        os.environ["CLNET_TUNING"] = "1"


def test_tune_conv_writes_entries_that_choose_honours(device, tuning_dir):
    shape = small(device, tune.ConvShape(2, 3, 8, 8, 8), tune.ConvShape(1, 2, 5, 5, 3))
    entries = tune.tune_conv(device, shapes=[shape], quick=True, reps=1, budget=small(device, 60, 20),
                             log=lambda *a: None)
    g = shape.geom()
    cls = conv_select.shape_class(g)
    assert set(entries[cls]) == set(conv_select.PASSES)
    data = json.loads(tuning_file.path().read_text())
    entry = data["devices"][tuning_file.device_key(device)]
    assert entry["conv_template"] == tuning_file.conv_template_hash()
    assert entry["conv"][cls] == entries[cls]
    assert tuning_file.tuned_params(device) == {}      # a conv-only entry holds no matmul parameters
    for p in conv_select.PASSES:
        algo, params = conv_select.plan(device, g, p)
        assert dict(params or {}, algo=algo) == entries[cls][p]
    # a later matmul store keeps the conv entries
    tuning_file.store(device, tuning_file.check_params({}))
    assert tuning_file.tuned_conv(device)[cls] == entries[cls]


def test_tune_conv_rejects_wrong_candidates(device, tuning_dir, monkeypatch):
    """A candidate whose result is off (a miscompiled variant) is rejected and never stored, even if fast."""
    real = tune._conv_run

    def skewed(ops, pass_, algo, params):
        y = real(ops, pass_, algo, params)
        if algo == "gemm" and params:      # every tuned block of the GEMM gives a wrong answer
            return clnet.tensor(y.numpy() * 1.01, device=device)
        return y
    monkeypatch.setattr(tune, "_conv_run", skewed)
    shape = tune.ConvShape(1, 3, 5, 5, 4)
    out = []
    entries = tune.tune_conv(device, shapes=[shape], quick=True, reps=1, store=False, log=out.append)
    assert any("REJECTED: wrong result" in line for line in out)
    for params in entries[conv_select.shape_class(shape.geom())].values():
        assert not (params["algo"] == "gemm" and len(params) > 1), params


@pytest.mark.parametrize("conv_entry", [{"k": {"forward": {"algo": "fft"}}}, {"k": {"sideways": {"algo": "gemm"}}},
                                        {"k": {"forward": {"algo": "gemm", "MR": 0}}}, ["not an object"]])
def test_damaged_conv_entries_are_ignored_with_a_warning(device, tuning_dir, conv_entry):
    tuning_file.store_conv(device, {"k": {"forward": {"algo": "gemm"}}})
    data = json.loads(tuning_file.path().read_text())
    data["devices"][tuning_file.device_key(device)]["conv"] = conv_entry
    tuning_file.path().write_text(json.dumps(data))
    with pytest.warns(tuning_file.TuningFileWarning, match="ignoring the tuning file"):
        assert tuning_file.tuned_conv(device) == {}


def test_stale_conv_entries_are_ignored(device, tuning_dir):
    tuning_file.store_conv(device, {"k": {"forward": {"algo": "gemm"}}})
    data = json.loads(tuning_file.path().read_text())
    data["devices"][tuning_file.device_key(device)]["conv_template"] = "0" * 16
    tuning_file.path().write_text(json.dumps(data))
    assert tuning_file.tuned_conv(device) == {}


def test_cli_conv_shapes(device, tuning_dir, capsys):
    assert cli.main(["tune", "--conv", "1,2,3"]) == 2
    assert "N,C,H,W,K" in capsys.readouterr().err
    shape = small(device, "2,3,6,6,4", "1,2,4,4,2")
    assert cli.main(["tune", "--conv", shape, "--reps", "1", "--budget", "5", "--device", device.spec]) == 0
    out = capsys.readouterr().out
    assert "stored conv entries for 1 shape classes" in out and "GFLOP/s" not in out   # conv only
    assert cli.main(["tune", "--show"]) == 0
    assert "conv2d, per shape class" in capsys.readouterr().out


def test_conv_transpose_and_conv1d_use_the_selection(device, tuning_dir, rng):
    """conv_transpose2d and conv1d run conv2d's passes, so a tuned entry for their inner convolution's class
    applies to them (and they still match torch)."""
    torch = pytest.importorskip("torch")
    F = clnet.nn.functional
    x, w = rng.standard_normal((2, 3, 5, 6)).astype(np.float32), rng.standard_normal((3, 4, 3, 3)).astype(np.float32)
    # conv_transpose2d stride 1 padding 1 = conv2d (no padding) of x padded by k - 1 - p = 1 with the flipped,
    # transposed weights
    g = conv._Geom((2, 3, 7, 8), (4, 3, 3, 3), (1, 1), (0, 0), (1, 1))
    tuning_file.store_conv(device, {conv_select.shape_class(g): TUNED})
    seen = []
    real = conv_gemm.conv_s1

    def spy(*a, **k):
        seen.append(k.get("blk"))
        return real(*a, **k)
    conv_gemm.conv_s1 = spy
    try:
        y = F.conv_transpose2d(clnet.tensor(x, device=device), clnet.tensor(w, device=device), padding=1)
    finally:
        conv_gemm.conv_s1 = real
    assert seen == [dict(MR=3, NV=1)]
    ref = torch.nn.functional.conv_transpose2d(torch.tensor(x), torch.tensor(w), padding=1).numpy()
    assert_close(y, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max(), what="conv_transpose2d, tuned")
    x1, w1 = rng.standard_normal((2, 3, 11)).astype(np.float32), rng.standard_normal((5, 3, 3)).astype(np.float32)
    g1 = conv._Geom((2, 3, 1, 11), (5, 3, 1, 3), (1, 1), (0, 1), (1, 1))
    tuning_file.store_conv(device, {conv_select.shape_class(g1): TUNED})
    assert conv_select.plan(device, g1, "forward") == ("gemm", dict(MR=3, NV=1))
    y1 = F.conv1d(clnet.tensor(x1, device=device), clnet.tensor(w1, device=device), padding=1)
    ref1 = torch.nn.functional.conv1d(torch.tensor(x1), torch.tensor(w1), padding=1).numpy()
    assert_close(y1, ref1, rtol=1e-4, atol=1e-4 * np.abs(ref1).max(), what="conv1d, tuned")


def test_lookups_are_cached_and_see_other_processes_writes(device, tuning_dir, monkeypatch):
    """conv2d looks up on every pass: the answer is kept, and a write by another process (the file changed
    behind this one's back) is seen once RECHECK_S has passed."""
    g = conv._Geom((2, 3, 6, 6), (4, 3, 3, 3), (1, 1), (1, 1), (1, 1))
    cls = conv_select.shape_class(g)
    tuning_file.store_conv(device, {cls: TUNED})
    assert conv_select.plan(device, g, "forward") == ("gemm", dict(MR=3, NV=1))
    data = json.loads(tuning_file.path().read_text())
    data["devices"][tuning_file.device_key(device)]["conv"][cls]["forward"] = dict(algo="im2col")
    tuning_file.path().write_text(json.dumps(data) + "\n\n")      # another process's write
    monkeypatch.setattr(tuning_file, "RECHECK_S", 3600.0)
    assert conv_select.plan(device, g, "forward") == ("gemm", dict(MR=3, NV=1))   # kept
    monkeypatch.setattr(tuning_file, "RECHECK_S", 0.0)
    assert conv_select.plan(device, g, "forward") == ("im2col", None)

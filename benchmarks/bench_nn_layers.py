"""The fused nn kernels (layer norm, LSTM/GRU layers, scaled dot-product attention) and the composed layers
(depthwise and transposed convolutions, bilinear upsampling): clnet vs PyTorch CPU (and numpy for the
forward passes), side by side.

Each case is timed forward only and forward + backward. clnet, PyTorch with one thread per core ("torch")
and with one thread ("torch1"), and numpy (forward, float32) run in alternation: median of --reps rounds,
each round a batch of calls sized to about 20 ms. clnet/torch > 1: clnet faster, against the faster of
the two PyTorch configurations. The attention case also times clnet's explicit path (scores, softmax,
weights @ v) and the fused kernels forced ("clnet" is what scaled_dot_product_attention picks).

    python benchmarks/bench_nn_layers.py --device pocl
    python benchmarks/bench_nn_layers.py --device pocl --only lstm,attention
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from common import alternate, header, load_torch, median, open_device, table, with_torch1

import clnet  # noqa: E402
import clnet.nn as cnn  # noqa: E402
import clnet.nn.functional as F  # noqa: E402
from clnet.ops import attention as att  # noqa: E402


def _count(fn, sync, budget=0.02):
    fn()
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return max(1, min(500, int(budget / max(time.perf_counter() - t0, 1e-7))))


def _np_layer_norm(x, w, b):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + 1e-5) * w + b


def _np_lstm(x, h, c, w_ih, w_hh, b):
    gi = x @ w_ih.T + b
    H = h.shape[1]
    out = np.empty((x.shape[0],) + h.shape, np.float32)
    for t in range(x.shape[0]):
        g = gi[t] + h @ w_hh.T
        i, f, gg, o = (g[:, k * H:(k + 1) * H] for k in range(4))
        i, f, o = 1 / (1 + np.exp(-i)), 1 / (1 + np.exp(-f)), 1 / (1 + np.exp(-o))
        c = f * c + i * np.tanh(gg)
        h = o * np.tanh(c)
        out[t] = h
    return out


def _np_attention(q, k, v, causal):
    s = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    if causal:
        L, S = s.shape[-2:]
        s = np.where(np.tril(np.ones((L, S), bool)), s, -np.inf)
    s = np.exp(s - s.max(-1, keepdims=True))
    return (s / s.sum(-1, keepdims=True)) @ v


def _module_case(dev, torch, make_clnet, make_torch, x, numpy_fn=None):
    """{contender: (forward, forward + backward)} for a module built on both sides (one call each)."""
    cm = make_clnet().to(dev)
    cx = clnet.tensor(x, device=dev, requires_grad=True)
    fns = {"clnet": _passes(lambda: _first(cm(cx)), [cx])}
    if torch is not None:
        tm = make_torch()
        tx = torch.from_numpy(x.copy()).requires_grad_(True)
        fns["torch"] = _passes(lambda: _first(tm(tx)), [tx])
    if numpy_fn is not None:
        fns["numpy"] = (numpy_fn, None)
    return fns


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def _passes(forward, inputs):
    """(forward, forward + backward of its sum), the inputs' gradients dropped after each call."""
    def both():
        forward().sum().backward()
        for t in inputs:
            t.grad = None
    return forward, both


def _attention_case(dev, torch, shape, causal, rng):
    q, k, v = (rng.standard_normal(shape, dtype=np.float32) for _ in range(3))
    cq, ck, cv = (clnet.tensor(a, device=dev, requires_grad=True) for a in (q, k, v))
    fns = {"clnet": _passes(lambda: F.scaled_dot_product_attention(cq, ck, cv, is_causal=causal), [cq, ck, cv]),
           "clnet-fused": _passes(lambda: att.fused_attention(cq, ck, cv, is_causal=causal), [cq, ck, cv]),
           "clnet-explicit": _passes(lambda: att.attention_with_weights(cq, ck, cv, None, 0.0, causal)[0],
                                     [cq, ck, cv])}
    if torch is not None:
        tq, tk, tv = (torch.from_numpy(a.copy()).requires_grad_(True) for a in (q, k, v))
        fns["torch"] = _passes(lambda: torch.nn.functional.scaled_dot_product_attention(tq, tk, tv,
                                                                                        is_causal=causal),
                               [tq, tk, tv])
    fns["numpy"] = (lambda: _np_attention(q, k, v, causal), None)
    return fns


def _cases(dev, torch, only):
    """(name, shape text, {contender: (forward fn, forward+backward fn or None)}) for each case."""
    rng = np.random.default_rng(0)
    if "layer_norm" in only:
        for rows, n in ((4096, 512), (256, 4096), (64, 768)):
            x = rng.standard_normal((rows, n), dtype=np.float32)
            w, b = np.ones(n, np.float32), np.zeros(n, np.float32)
            yield "layer_norm", f"{rows}x{n}", _module_case(
                dev, torch, lambda n=n: cnn.LayerNorm(n), lambda n=n: torch.nn.LayerNorm(n), x,
                lambda x=x, w=w, b=b: _np_layer_norm(x, w, b))
    for mode in ("lstm", "gru"):
        if mode not in only:
            continue
        for T, B, I, H in ((35, 20, 200, 200), (50, 64, 128, 256)):
            x = rng.standard_normal((T, B, I), dtype=np.float32)
            numpy_fn = None
            if mode == "lstm":
                w_ih = rng.standard_normal((4 * H, I), dtype=np.float32) * 0.05
                w_hh = rng.standard_normal((4 * H, H), dtype=np.float32) * 0.05
                b, h0 = np.zeros(4 * H, np.float32), np.zeros((B, H), np.float32)
                numpy_fn = lambda x=x, h0=h0, w_ih=w_ih, w_hh=w_hh, b=b: _np_lstm(x, h0, h0, w_ih, w_hh, b)  # noqa: E731
            ccls, tcls = (cnn.LSTM, "LSTM") if mode == "lstm" else (cnn.GRU, "GRU")
            yield mode, f"T{T} B{B} {I}->{H}", _module_case(
                dev, torch, lambda c=ccls, I=I, H=H: c(I, H), lambda t=tcls, I=I, H=H: getattr(torch.nn, t)(I, H), x,
                numpy_fn)
    if "attention" in only:
        for shape, causal in (((8, 8, 256, 64), True), ((4, 12, 128, 64), False), ((2, 4, 1024, 32), True)):
            yield "attention", "x".join(map(str, shape)) + (" causal" if causal else ""), _attention_case(
                dev, torch, shape, causal, rng)
    if "conv" in only:
        yield "depthwise conv", "16x96x28x28 k3", _module_case(
            dev, torch, lambda: cnn.Conv2d(96, 96, 3, padding=1, groups=96),
            lambda: torch.nn.Conv2d(96, 96, 3, padding=1, groups=96),
            rng.standard_normal((16, 96, 28, 28), dtype=np.float32))
        yield "conv_transpose2d", "16x64x16x16 k4 s2", _module_case(
            dev, torch, lambda: cnn.ConvTranspose2d(64, 32, 4, stride=2, padding=1),
            lambda: torch.nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1),
            rng.standard_normal((16, 64, 16, 16), dtype=np.float32))
    if "upsample" in only:
        yield "bilinear x2", "8x64x32x32", _module_case(
            dev, torch, lambda: cnn.Upsample(scale_factor=2, mode="bilinear"),
            lambda: torch.nn.Upsample(scale_factor=2, mode="bilinear"),
            rng.standard_normal((8, 64, 32, 32), dtype=np.float32))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--only", default="layer_norm,lstm,gru,attention,conv,upsample")
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args(argv)
    dev = open_device(args.device)
    torch = load_torch(not args.no_torch)
    header("nn layers: clnet vs PyTorch CPU and numpy", dev, torch)
    rows = []
    for name, shape, fns in _cases(dev, torch, args.only.split(",")):
        for phase in ("fwd", "fwd+bwd"):
            contenders = {}
            for who, (fwd, fb) in fns.items():
                fn = fwd if phase == "fwd" else fb
                if fn is None:
                    continue
                if who == "torch":
                    contenders.update(with_torch1({"torch": fn}))
                else:
                    contenders[who] = fn
            timed = {}
            for who, fn in contenders.items():
                sync = dev.synchronize if who.startswith("clnet") else (lambda: None)
                count = _count(fn, sync)

                def batch(fn=fn, count=count, sync=sync):
                    for _ in range(count):
                        fn()
                    sync()
                timed[who] = (batch, count)
            times = alternate({k: v[0] for k, v in timed.items()}, args.reps, torch=torch)
            per_call = {k: median(v) / timed[k][1] for k, v in times.items()}
            row = {"case": name, "shape": shape, "pass": phase}
            for k, s in per_call.items():
                row[f"{k} ms"] = s * 1e3
            if "torch" in per_call:
                row["clnet/torch"] = min(per_call["torch"], per_call["torch1"]) / per_call["clnet"]
            if "numpy" in per_call:
                row["clnet/numpy"] = per_call["numpy"] / per_call["clnet"]
            rows.append(row)
            print("  " + "  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                  flush=True)
    cols = ["case", "shape", "pass", "clnet ms", "clnet-fused ms", "clnet-explicit ms", "torch ms", "torch1 ms", "numpy ms",
            "clnet/torch", "clnet/numpy"]
    fmt = {c: "{:.3f}" for c in cols if c.endswith("ms")}
    fmt.update({"clnet/torch": "{:.2f}", "clnet/numpy": "{:.2f}"})
    table(rows, cols, fmt)


if __name__ == "__main__":
    main()

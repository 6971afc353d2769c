"""conv2d forward + backward, clnet beside PyTorch CPU in one run (issue 17's three shapes and a sweep).

One timed unit: y = conv2d(x, w, padding); y.sum().backward() giving grad input and grad weight (what a
training step does per layer), then a wait for the device. Every case first checks clnet's output and both
gradients against PyTorch's (float32, relative to the largest value). Medians of alternating repetitions;
`torch` runs with one thread per core (its default here), `torch1` with one thread, and clnet/torch is
taken against the faster of the two.

    python benchmarks/bench_conv.py                        # the three target shapes
    python benchmarks/bench_conv.py --sweep                # + a VGG/ResNet-style sweep of layer shapes
    python benchmarks/bench_conv.py --shapes 32,64,32,64,3 --passes fwd,bwd   # N,C,HW,K,kernel[,stride]
    python benchmarks/bench_conv.py --algo direct,auto     # several clnet algorithms side by side
    python benchmarks/bench_conv.py --per-pass             # forward, grad input, grad weight timed apart

--per-pass times each pass alone with the algorithm (and tuned block) clnet picks for it, beside PyTorch's
conv2d, torch.nn.grad.conv2d_input and conv2d_weight, on fresh random gradients (not y.sum()'s).
"""
from __future__ import annotations

import argparse
import os

import numpy as np

from common import alternate, header, load_torch, median, open_device, table

import clnet  # noqa: E402  (common put the checkout on sys.path)

# (N, C, H=W, K, kernel, stride): issue 17's three targets
TARGETS = [(32, 64, 32, 64, 3, 1), (64, 3, 32, 32, 3, 1), (16, 128, 16, 128, 3, 1)]
# VGG/ResNet-style layers at CIFAR and ImageNet-like sizes (3x3 pad 1 unless the kernel is 1; strided
# downsampling layers as in ResNet)
SWEEP = [(32, 3, 32, 64, 3, 1), (32, 64, 32, 64, 3, 1), (32, 64, 32, 128, 3, 2), (32, 128, 16, 128, 3, 1),
         (32, 128, 16, 256, 3, 2), (32, 256, 8, 256, 3, 1), (32, 256, 8, 512, 3, 2), (32, 512, 4, 512, 3, 1),
         (32, 64, 32, 128, 1, 2), (32, 256, 8, 512, 1, 2), (8, 64, 56, 64, 3, 1), (8, 256, 14, 256, 3, 1),
         (8, 64, 56, 256, 1, 1)]


def flops(n, c, hw, k, ks, stride, passes):
    oh = (hw + 2 * (ks // 2) - ks) // stride + 1
    one = 2.0 * n * k * oh * oh * c * ks * ks
    return one * len(passes)


def case(device, torch, shape, passes, algos, reps, rng):
    n, c, hw, k, ks, stride = shape
    pad = ks // 2
    x = rng.standard_normal((n, c, hw, hw), dtype=np.float32)
    w = (rng.standard_normal((k, c, ks, ks)) / np.sqrt(c * ks * ks)).astype(np.float32)
    backward = "bwd" in passes
    tx = torch.from_numpy(x).requires_grad_(backward)
    tw = torch.from_numpy(w).requires_grad_(backward)
    cx = clnet.tensor(x, device=device, requires_grad=backward)
    cw = clnet.tensor(w, device=device, requires_grad=backward)
    F = torch.nn.functional

    def torch_step():
        y = F.conv2d(tx, tw, padding=pad, stride=stride)
        if backward:
            tx.grad = tw.grad = None
            y.sum().backward()
        return y

    def clnet_step(algo):
        def run():
            if algo != "default":
                os.environ["CLNET_CONV_ALGO"] = algo
            else:
                os.environ.pop("CLNET_CONV_ALGO", None)
            y = clnet.nn.functional.conv2d(cx, cw, padding=pad, stride=stride)
            if backward:
                cx.grad = cw.grad = None
                y.sum().backward()
            device.synchronize()
            return y
        return run

    ref = torch_step()
    errs = []
    for algo in algos:
        y = clnet_step(algo)()
        got = [(y.numpy(), ref.detach().numpy())]
        if backward:
            got += [(cx.grad.numpy(), tx.grad.numpy()), (cw.grad.numpy(), tw.grad.numpy())]
        err = max(float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)) for a, b in got)
        if not err < 1e-3:
            raise AssertionError(f"{shape} algo {algo}: clnet differs from PyTorch (max rel err {err:.3g})")
        errs.append(err)
    contenders = {f"clnet:{a}": clnet_step(a) for a in algos}
    contenders["torch"] = torch_step
    contenders["torch1"] = torch_step
    times = alternate(contenders, reps, warmup=1, torch=torch)
    med = {name: median(t) for name, t in times.items()}
    os.environ.pop("CLNET_CONV_ALGO", None)
    return med, max(errs)


def per_pass(device, torch, shape, reps, rng):
    """{pass: (clnet ms, best torch ms, clnet's algorithm)} of one shape, each pass timed alone."""
    from clnet.ops import conv, conv_gemm, conv_select
    from clnet.tune import describe_conv
    n, c, hw, k, ks, stride = shape
    pad = ks // 2
    x = rng.standard_normal((n, c, hw, hw), dtype=np.float32)
    w = (rng.standard_normal((k, c, ks, ks)) / np.sqrt(c * ks * ks)).astype(np.float32)
    g = conv._Geom(x.shape, w.shape, (stride, stride), (pad, pad), (1, 1))
    gy = rng.standard_normal((n, k, g.OH, g.OW), dtype=np.float32)
    cx, cw, cgy = (clnet.tensor(a, device=device).detach() for a in (x, w, gy))
    tx, tw, tgy = (torch.from_numpy(a) for a in (x, w, gy))
    F = torch.nn.functional
    out = {}
    for pass_ in ("forward", "grad_input", "grad_weight"):
        algo, blk = conv_select.plan(device, g, pass_, dtype=cx.dtype)

        def run(pass_=pass_, algo=algo, blk=blk):
            if pass_ == "forward":
                conv_gemm.forward(cx, cw, None, g, blk=blk) if algo == "gemm" else conv._FORWARD[algo](cx, cw, None, g)
            elif pass_ == "grad_input":
                conv_gemm.grad_input(cgy, cw, g, blk=blk) if algo == "gemm" else conv._GRAD_INPUT[algo](cgy, cw, g)
            else:
                conv_gemm.grad_weight(cx, cgy, g, blk=blk) if algo == "gemm" else conv._GRAD_WEIGHT[algo](cx, cgy, g)
            device.synchronize()
        t = {"forward": lambda: F.conv2d(tx, tw, padding=pad, stride=stride),
             "grad_input": lambda: torch.nn.grad.conv2d_input(tx.shape, tw, tgy, stride=stride, padding=pad),
             "grad_weight": lambda: torch.nn.grad.conv2d_weight(tx, tw.shape, tgy, stride=stride, padding=pad)}[pass_]
        times = alternate({"clnet": run, "torch": t, "torch1": t}, reps, warmup=1, torch=torch)
        med = {name: median(v) * 1e3 for name, v in times.items()}
        out[pass_] = (med["clnet"], min(med["torch"], med["torch1"]), describe_conv(algo, blk))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--sweep", action="store_true", help="also time the VGG/ResNet-style sweep")
    ap.add_argument("--shapes", default=None, help="N,C,HW,K,kernel[,stride] cases separated by ';'")
    ap.add_argument("--passes", default="fwd,bwd", help="fwd or fwd,bwd")
    ap.add_argument("--per-pass", action="store_true", help="time forward, grad input and grad weight apart")
    ap.add_argument("--algo", default="default", help="clnet conv algorithms, comma-separated "
                                                      "(default = clnet's own choice)")
    args = ap.parse_args(argv)
    torch = load_torch()
    device = open_device(args.device)
    header("conv2d forward + backward: clnet vs PyTorch CPU", device, torch)
    if args.shapes:
        shapes = [tuple(int(v) for v in s.split(",")) for s in args.shapes.split(";")]
        shapes = [s + (1,) * (6 - len(s)) for s in shapes]
    else:
        shapes = TARGETS + (SWEEP if args.sweep else [])
    passes = args.passes.split(",")
    algos = args.algo.split(",")
    rng = np.random.default_rng(0)
    if args.per_pass:
        rows = []
        for shape in shapes:
            for pass_, (ms, tms, algo) in per_pass(device, torch, shape, args.reps, rng).items():
                rows.append({"N,C,HW,K,k,s": ",".join(map(str, shape)), "pass": pass_, "clnet algo": algo,
                             "clnet ms": ms, "torch ms": tms, "clnet/torch": ms / tms})
                print(f"  {rows[-1]['N,C,HW,K,k,s']} {pass_}: {algo} {ms:.2f} ms, torch {tms:.2f} ms", flush=True)
        print(f"\nmedians of {args.reps}; torch = the faster of its 1- and {os.cpu_count()}-thread runs")
        table(rows, ["N,C,HW,K,k,s", "pass", "clnet algo", "clnet ms", "torch ms", "clnet/torch"],
              {"clnet ms": "{:.2f}", "torch ms": "{:.2f}", "clnet/torch": "{:.2f}"})
        return
    rows = []
    for shape in shapes:
        med, err = case(device, torch, shape, passes, algos, args.reps, rng)
        best_torch = min(med["torch"], med["torch1"])
        gf = flops(*shape, passes) / 1e9
        row = {"N,C,HW,K,k,s": ",".join(map(str, shape)), "torch ms": med["torch"] * 1e3,
               "torch1 ms": med["torch1"] * 1e3, "torch GF/s": gf / best_torch, "err": err}
        for a in algos:
            row[f"{a} ms"] = med[f"clnet:{a}"] * 1e3
            row[f"{a} GF/s"] = gf / med[f"clnet:{a}"]
            row[f"{a}/torch"] = med[f"clnet:{a}"] / best_torch
        rows.append(row)
        print(f"  {row['N,C,HW,K,k,s']}: " + ", ".join(f"{a} {row[f'{a}/torch']:.2f}x" for a in algos), flush=True)
    cols = ["N,C,HW,K,k,s"] + [c for a in algos for c in (f"{a} ms", f"{a} GF/s")] \
        + ["torch ms", "torch1 ms", "torch GF/s"] + [f"{a}/torch" for a in algos] + ["err"]
    fmt = {c: "{:.2f}" for c in cols[1:]}
    fmt["err"] = "{:.1e}"
    print(f"\nmedians of {args.reps}, passes {'+'.join(passes)} (GF/s counts each pass as one convolution's "
          "2*N*K*OH*OW*C*kh*kw)")
    table(rows, cols, fmt)


if __name__ == "__main__":
    main()

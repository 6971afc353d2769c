"""Compiled training steps (clnet.compile): ms per step beside eager clnet and PyTorch eager, in one process,
plus kernel launches per step before and after the graph passes.

  two-layer  the lecture's autograd net (N=64, 1000-100-10, clamp(min=0), squared-error sum, SGD through
             .grad under no_grad): issue 12 target, compiled <= 0.7x PyTorch CPU eager; launches <= half
  mlp        784-512-512-10, ReLU, cross-entropy, Adam, batch 256: target compiled <= 0.6x PyTorch

Every contender starts from the same weights and data (first losses checked against numpy's), then they
alternate (one timed unit = `--steps-*` steps and a wait for the device); medians of `--reps` units.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_compile.py
    python benchmarks/bench_compile.py --only two-layer --reps 11
    python benchmarks/bench_compile.py --torch-device cuda   # on a GPU machine: PyTorch CUDA eager beside
"""
from __future__ import annotations

import argparse
import os

import numpy as np

from common import alternate, header, load_torch, median, open_device, repeated, table, with_torch1
from bench_training_steps import build, check_first_losses, cpu_ms, host_ms


def compiled_contender(step, to_float, sync):
    import clnet
    cstep = clnet.compile(step)
    return (cstep, to_float, sync), cstep


def launches(step) -> tuple:
    import clnet
    report = clnet.compiler.explain(step)
    return report["launches"], report["launches_after_passes"]


def torch_cuda_contenders(torch, workload, device):
    """PyTorch eager on `device` (e.g. cuda), same data: for the GPU comparison run."""
    from bench_training_steps import two_layer_data
    from clnet.bench import MLPShape, mlp_init
    rng = np.random.default_rng(0)
    dev = torch.device(device)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    if workload == "two-layer":
        x, y, w1, w2 = (torch.from_numpy(a).to(dev) for a in two_layer_data(rng))
        w1.requires_grad_(True)
        w2.requires_grad_(True)

        def step():
            loss = (x.mm(w1).clamp(min=0).mm(w2) - y).pow(2).sum()
            loss.backward()
            with torch.no_grad():
                w1.sub_(1e-6 * w1.grad)
                w2.sub_(1e-6 * w2.grad)
                w1.grad.zero_()
                w2.grad.zero_()
            return loss
        return step, sync
    shape = MLPShape()
    layers, x, y = mlp_init(shape, rng)
    mods = []
    for i, (w, b) in enumerate(layers):
        lin = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w))
            lin.bias.copy_(torch.from_numpy(b))
        mods += [lin] + ([torch.nn.ReLU()] if i < len(layers) - 1 else [])
    model = torch.nn.Sequential(*mods).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=shape.lr)
    xt, yt = torch.from_numpy(x).to(dev), torch.from_numpy(y.astype(np.int64)).to(dev)

    def step():
        loss = torch.nn.functional.cross_entropy(model(xt), yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss
    return step, sync


TARGETS = {"two-layer": 0.7, "mlp": 0.6}
STEPS = {"two-layer": 20, "mlp": 3}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--only", default="two-layer,mlp")
    ap.add_argument("--steps-two", type=int, default=STEPS["two-layer"])
    ap.add_argument("--steps-mlp", type=int, default=STEPS["mlp"])
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--torch-device", default="cpu", help="cpu (default) or cuda: where PyTorch eager runs")
    args = ap.parse_args(argv)
    dev = open_device(args.device)
    torch = load_torch(not args.no_torch)
    header("compiled training steps, ms per step (clnet.compile)", dev, torch)
    steps = {"two-layer": args.steps_two, "mlp": args.steps_mlp}
    rows = []
    for workload in args.only.split(","):
        contenders = build(workload, dev, torch if args.torch_device == "cpu" else None, None, jit_modes=())
        loss = check_first_losses(contenders)
        step, to_float, sync = contenders["clnet"][:3]
        before, after = launches(step)
        entry, cstep = compiled_contender(step, to_float, sync)
        contenders["clnet-compiled"] = entry
        for _ in range(3):                      # warm-up and trace outside the clock
            cstep()
        sync()
        if torch is not None and args.torch_device != "cpu":
            tstep, tsync = torch_cuda_contenders(torch, workload, args.torch_device)
            contenders["torch"] = (tstep, None, tsync)
        fns = {name: repeated(e[0], steps[workload], e[2]) for name, e in contenders.items() if name != "numpy"}
        if args.torch_device == "cpu":
            fns = with_torch1(fns) if "torch" in fns else fns
        times = alternate(fns, args.reps, warmup=2, torch=torch if args.torch_device == "cpu" else None)
        ms = {k: median(v) / steps[workload] * 1e3 for k, v in times.items()}
        row = {"workload": workload, "first loss": loss, "launches eager": before, "launches compiled": after,
               "compiled host ms": host_ms(cstep, sync)}
        row.update({f"{k} ms": v for k, v in ms.items()})
        row["compiled/eager"] = ms["clnet-compiled"] / ms["clnet"]
        # CPU seconds per step (every thread): what a step costs, which the load stretches less than wall time
        row["eager cpu ms"] = cpu_ms(step, sync, steps[workload])
        row["compiled cpu ms"] = cpu_ms(cstep, sync, steps[workload])
        if torch is not None:
            best = min(v for k, v in ms.items() if k.startswith("torch"))
            row["compiled/torch"] = ms["clnet-compiled"] / best
            row["target"] = TARGETS[workload]
            if args.torch_device == "cpu":
                torch.set_num_threads(1)
                row["torch1 cpu ms"] = cpu_ms(contenders["torch"][0], contenders["torch"][2], steps[workload])
                torch.set_num_threads(os.cpu_count() or 1)
                row["cpu compiled/torch1"] = row["compiled cpu ms"] / row["torch1 cpu ms"]
        rows.append(row)
    cols = ["workload", "launches eager", "launches compiled", "clnet ms", "clnet-compiled ms", "compiled host ms"]
    cols += [c for c in ("torch ms", "torch1 ms") if any(c in r for r in rows)]
    cols += ["compiled/eager"] + (["compiled/torch", "target"] if torch is not None else [])
    cols += ["eager cpu ms", "compiled cpu ms"] + (["torch1 cpu ms", "cpu compiled/torch1"]
                                                   if torch is not None and args.torch_device == "cpu" else [])
    fmt = {c: "{:.3f}" for c in cols if c.endswith("ms")}
    fmt.update({c: "{:.2f}" for c in ("compiled/eager", "compiled/torch", "cpu compiled/torch1")})
    table(rows, cols, fmt)
    print(f"load average at the end {os.getloadavg()[0]:.1f} (2 cores): on a loaded machine wall-time ratios "
          "favour single-threaded PyTorch; the CPU columns show the work per step")


if __name__ == "__main__":
    main()

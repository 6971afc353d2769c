"""Memory-bound ops in GB/s: clnet (one OpenCL device) beside numpy and PyTorch CPU, in one run.

Workloads (n float32 elements, 16M by default), each checked against numpy before it is timed:
  add        c = a + b, a new output each time (as users write it)      12 bytes per element
  add_       a += b, in place (no allocation anywhere)                   12
  broadcast  c = x + row, x (n/4096, 4096), row (4096,)                 8
  sum        x.sum() to one number                                     4
  softmax    softmax over rows of (n/1024, 1024)                        8 (one read, one write)
  adam       one Adam step over the MLP 784-512-512-10's six parameters 28 per parameter
             (read p, g, m, v; write p, m, v): clnet.optim.Adam, torch.optim.Adam, numpy by hand
GB/s counts the bytes each op must move once, divided by the median time. Ratios > 1: clnet faster.
PyTorch runs with one thread per core ("torch") and with one thread ("torch1"); clnet/torch is taken
against the faster of the two.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_elementwise.py
    python benchmarks/bench_elementwise.py --device pocl --n 4194304 --reps 9 --only add,sum
"""
from __future__ import annotations

import argparse

import numpy as np

from common import (alternate, header, load_torch, max_rel_err, median, open_device, synced, table,
                    with_torch1)

import clnet  # noqa: E402
from clnet.bench import MLPShape, NumpyMLP, mlp_init  # noqa: E402


def case_add(dev, n, rng, torch):
    a, b = rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32)
    ta, tb = clnet.tensor(a, device=dev), clnet.tensor(b, device=dev)
    err = max_rel_err((ta + tb).numpy(), a.astype(np.float64) + b)
    fns = {"clnet": synced(lambda: ta + tb, dev), "numpy": lambda: a + b}
    if torch:
        pa, pb = torch.from_numpy(a), torch.from_numpy(b)
        fns["torch"] = lambda: pa + pb
    return fns, 12 * n, err


def case_add_(dev, n, rng, torch):
    a, b = rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32) * 1e-3
    ta, tb = clnet.tensor(a, device=dev), clnet.tensor(b, device=dev)
    ref = a.astype(np.float64) + b
    ta += tb
    err = max_rel_err(ta.numpy(), ref)
    na, nb = a.copy(), b.copy()

    def run_clnet():
        nonlocal ta
        ta += tb
        dev.synchronize()

    def run_numpy():
        nonlocal na
        na += nb
    fns = {"clnet": run_clnet, "numpy": run_numpy}
    if torch:
        pa, pb = torch.from_numpy(a.copy()), torch.from_numpy(b)

        def run_torch():
            pa.add_(pb)
        fns["torch"] = run_torch
    return fns, 12 * n, err


def case_broadcast(dev, n, rng, torch):
    cols = 4096
    x = rng.standard_normal((n // cols, cols), dtype=np.float32)
    row = rng.standard_normal(cols, dtype=np.float32)
    tx, tr = clnet.tensor(x, device=dev), clnet.tensor(row, device=dev)
    err = max_rel_err((tx + tr).numpy(), x.astype(np.float64) + row)
    fns = {"clnet": synced(lambda: tx + tr, dev), "numpy": lambda: x + row}
    if torch:
        px, pr = torch.from_numpy(x), torch.from_numpy(row)
        fns["torch"] = lambda: px + pr
    return fns, 8 * x.size, err


def case_sum(dev, n, rng, torch):
    x = rng.standard_normal(n, dtype=np.float32)
    tx = clnet.tensor(x, device=dev)
    ref = x.astype(np.float64).sum()
    err = abs(tx.sum().item() - ref) / np.abs(x).sum()  # relative to the sum of magnitudes
    fns = {"clnet": synced(lambda: tx.sum(), dev), "numpy": lambda: x.sum()}
    if torch:
        px = torch.from_numpy(x)
        fns["torch"] = lambda: px.sum()
    return fns, 4 * n, err


def _np_softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    e /= e.sum(axis=1, keepdims=True)
    return e


def case_softmax(dev, n, rng, torch):
    from clnet.nn import functional as F
    cols = 1024
    x = rng.standard_normal((n // cols, cols), dtype=np.float32)
    tx = clnet.tensor(x, device=dev)
    err = max_rel_err(F.softmax(tx, dim=1).numpy(), _np_softmax(x.astype(np.float64)))
    fns = {"clnet": synced(lambda: F.softmax(tx, dim=1), dev), "numpy": lambda: _np_softmax(x)}
    if torch:
        px = torch.from_numpy(x)
        fns["torch"] = lambda: torch.softmax(px, dim=1)
    return fns, 8 * x.size, err


def case_adam(dev, n, rng, torch):
    layers, x, y = mlp_init(MLPShape(), rng)
    params = [p for wb in layers for p in wb]
    grads = [rng.standard_normal(p.shape, dtype=np.float32) for p in params]
    count = sum(p.size for p in params)
    lr = 1e-3

    tps = [clnet.tensor(p, device=dev, requires_grad=True) for p in params]
    for tp, g in zip(tps, grads):
        tp.grad = clnet.tensor(g, device=dev)
    opt = clnet.optim.Adam(tps, lr=lr)
    opt.step()
    ref = NumpyMLP(layers, x, y, lr)  # numpy by hand: the Adam update of `clnet bench`'s numpy MLP

    def run_numpy():
        ref.adam(grads)
    run_numpy()
    err = max(max_rel_err(tp.detach().numpy() - p0, p - p0) for tp, p, p0 in zip(tps, ref.params, params))

    def run_clnet():
        opt.step()
        dev.synchronize()
    fns = {"clnet": run_clnet, "numpy": run_numpy}
    if torch:
        pps = [torch.tensor(p, requires_grad=True) for p in params]
        for pp, g in zip(pps, grads):
            pp.grad = torch.from_numpy(g)
        topt = torch.optim.Adam(pps, lr=lr)
        fns["torch"] = topt.step
    return fns, 28 * count, err


CASES = {"add": case_add, "add_": case_add_, "broadcast": case_broadcast, "sum": case_sum,
         "softmax": case_softmax, "adam": case_adam}
# Adam's first-step check is ill-conditioned where |g| ~ eps; the others compare plain values
TOLERANCE = {"adam": 1e-2}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None)
    ap.add_argument("--n", type=int, default=16 * 2**20, help="elements (multiple of 4096)")
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--only", default=",".join(CASES), help="comma-separated workloads")
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args(argv)
    dev = open_device(args.device)
    torch = load_torch(not args.no_torch)
    header("memory-bound ops, GB/s (bytes each op must move / median time)", dev, torch)
    print(f"n = {args.n} float32; median of {args.reps} alternating repetitions")
    rng = np.random.default_rng(0)
    rows = []
    for name in args.only.split(","):
        fns, nbytes, err = CASES[name](dev, args.n, rng, torch)
        if not err <= TOLERANCE.get(name, 1e-4):
            raise SystemExit(f"{name}: clnet's result is wrong (max rel err {err:.3g} vs numpy): not timing it")
        times = alternate(with_torch1(fns), args.reps, warmup=2, torch=torch)
        gbs = {k: nbytes / median(v) / 1e9 for k, v in times.items()}
        row = {"op": name, "MB": nbytes / 1e6, "err": err, **{f"{k} GB/s": v for k, v in gbs.items()},
               "clnet/numpy": gbs["clnet"] / gbs["numpy"]}
        if "torch" in gbs:  # against PyTorch's better configuration
            row["clnet/torch"] = gbs["clnet"] / max(gbs["torch"], gbs["torch1"])
        row["clnet ms"] = median(times["clnet"]) * 1e3
        rows.append(row)
        print(f"  {name}: clnet {gbs['clnet']:.1f} GB/s", flush=True)
    cols = ["op", "MB", "clnet GB/s", "numpy GB/s"] + (["torch GB/s", "torch1 GB/s"] if torch else []) + \
        ["clnet/numpy"] + (["clnet/torch"] if torch else []) + ["clnet ms", "err"]
    f2 = "{:.2f}"
    table(rows, cols, {"MB": "{:.0f}", "clnet GB/s": "{:.1f}", "numpy GB/s": "{:.1f}", "torch GB/s": "{:.1f}",
                       "torch1 GB/s": "{:.1f}", "clnet/numpy": f2, "clnet/torch": f2, "clnet ms": "{:.2f}",
                       "err": "{:.0e}"})
    add = next((r for r in rows if r["op"] == "add"), None)
    if add is not None:
        line = f"target c = a + b: >= 2x numpy (got {add['clnet/numpy']:.2f}x)"
        if "clnet/torch" in add:
            line += f", >= 0.9x PyTorch (got {add['clnet/torch']:.2f}x)"
        print(line)


if __name__ == "__main__":
    main()

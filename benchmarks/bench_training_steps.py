"""Training steps, ms per step: clnet beside numpy (by hand), PyTorch CPU and tinygrad, in one process.

  two-layer  the lecture's autograd net (examples/autograd_two_layer.py): N=64, 1000-100-10, ReLU via
             clamp(min=0), squared-error sum, plain SGD through .grad under no_grad; target <= 2.5x PyTorch
  mlp        784-512-512-10 MLP, ReLU, cross-entropy, Adam, batch 256 (clnet.nn + clnet.optim);
             target <= 1.2x PyTorch
All contenders start from the same weights and data (checked: equal first losses), then alternate:
one timed unit is `--steps-*` steps followed by a wait for the device. tinygrad runs on the same PoCL
through its OpenCL backend (DEV=CL; OCL_ICD_VENDORS restricted to one ICD because tinygrad takes the
first platform, which also restricts clnet to that platform), with and without its TinyJit.
PyTorch runs with one thread per core ("torch") and on one thread ("torch1"); clnet/torch is against
the faster. clnet's host (Python) time per step is shown too: the main thread's CPU time.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_training_steps.py
    python benchmarks/bench_training_steps.py --only mlp --reps 5 --no-tinygrad
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from common import (alternate, header, load_tinygrad, load_torch, median, open_device, repeated, restrict_icd,
                    table, with_torch1)

LR_TWO = 1e-6


# --- the lecture's two-layer net ----------------------------------------------------------------------
def two_layer_data(rng):
    return (rng.standard_normal((64, 1000), dtype=np.float32), rng.standard_normal((64, 10), dtype=np.float32),
            rng.standard_normal((1000, 100), dtype=np.float32), rng.standard_normal((100, 10), dtype=np.float32))


def two_layer_clnet(dev, x, y, w1, w2):
    import clnet
    x, y = clnet.tensor(x, device=dev), clnet.tensor(y, device=dev)
    w1 = clnet.tensor(w1, device=dev, requires_grad=True)
    w2 = clnet.tensor(w2, device=dev, requires_grad=True)

    def step():  # examples/autograd_two_layer.py's loop body
        y_pred = x.mm(w1).clamp(min=0).mm(w2)
        loss = (y_pred - y).pow(2).sum()
        loss.backward()
        with clnet.no_grad():
            w1.sub_(LR_TWO * w1.grad)
            w2.sub_(LR_TWO * w2.grad)
            w1.grad.zero_()
            w2.grad.zero_()
        return loss
    return step, lambda loss: loss.item(), dev.synchronize


def two_layer_numpy(x, y, w1, w2):
    w1, w2 = w1.copy(), w2.copy()

    def step():  # the lecture's numpy version
        nonlocal w1, w2
        h = x.dot(w1)
        h_relu = np.maximum(h, 0)
        y_pred = h_relu.dot(w2)
        loss = np.square(y_pred - y).sum()
        grad_y_pred = 2.0 * (y_pred - y)
        grad_w2 = h_relu.T.dot(grad_y_pred)
        grad_h = grad_y_pred.dot(w2.T)
        grad_h[h < 0] = 0
        grad_w1 = x.T.dot(grad_h)
        w1 -= LR_TWO * grad_w1
        w2 -= LR_TWO * grad_w2
        return loss
    return step, float, lambda: None


def two_layer_torch(torch, x, y, w1, w2):
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    w1 = torch.tensor(w1, requires_grad=True)
    w2 = torch.tensor(w2, requires_grad=True)

    def step():
        y_pred = x.mm(w1).clamp(min=0).mm(w2)
        loss = (y_pred - y).pow(2).sum()
        loss.backward()
        with torch.no_grad():
            w1.sub_(LR_TWO * w1.grad)
            w2.sub_(LR_TWO * w2.grad)
            w1.grad.zero_()
            w2.grad.zero_()
        return loss
    return step, lambda loss: loss.item(), lambda: None


def two_layer_tinygrad(tg, x, y, w1, w2, jit):
    from tinygrad import Device, Tensor, TinyJit
    x, y = Tensor(x).realize(), Tensor(y).realize()
    w1, w2 = Tensor(w1).realize(), Tensor(w2).realize()

    def step():  # tinygrad 0.14 has no requires_grad: gradient() asks for the two weights' only
        y_pred = x.matmul(w1).relu().matmul(w2)
        loss = (y_pred - y).pow(2).sum()
        g1, g2 = loss.gradient(w1, w2)
        w1.assign(w1 - LR_TWO * g1)
        w2.assign(w2 - LR_TWO * g2)
        Tensor.realize(loss, w1, w2)
        return loss
    run = TinyJit(step) if jit else step
    return run, lambda loss: loss.item(), Device[Device.DEFAULT].synchronize


# --- the MLP ---------------------------------------------------------------------------------------------
def mlp_torch(torch, layers, x, y, lr):
    lins = [torch.nn.Linear(w.shape[1], w.shape[0]) for w, _ in layers]
    with torch.no_grad():
        for lin, (w, b) in zip(lins, layers):
            lin.weight.copy_(torch.from_numpy(w))
            lin.bias.copy_(torch.from_numpy(b))
    mods = []
    for i, lin in enumerate(lins):
        mods += [lin] + ([torch.nn.ReLU()] if i < len(lins) - 1 else [])
    model = torch.nn.Sequential(*mods)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        loss = torch.nn.functional.cross_entropy(model(xt), yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss
    return step, lambda loss: loss.item(), lambda: None


def mlp_tinygrad(tg, layers, x, y, lr, jit):
    from tinygrad import Context, Device, Tensor, TinyJit, nn
    lins = []
    for w, b in layers:
        lin = nn.Linear(w.shape[1], w.shape[0])
        lin.weight, lin.bias = Tensor(w).realize(), Tensor(b).realize()
        lins.append(lin)
    opt = nn.optim.Adam([p for lin in lins for p in (lin.weight, lin.bias)], lr=lr)
    xt, yt = Tensor(x).realize(), Tensor(y.astype(np.int32)).realize()

    def step():  # tinygrad 0.14: Context(TRAINING=1) instead of Tensor.train()
        with Context(TRAINING=1):
            h = xt
            for i, lin in enumerate(lins):
                h = lin(h)
                if i < len(lins) - 1:
                    h = h.relu()
            loss = h.sparse_categorical_crossentropy(yt)
            opt.zero_grad()
            loss.backward()
            return loss.realize(*opt.schedule_step())  # loss and update in one schedule (tinygrad's idiom)
    run = TinyJit(step) if jit else step
    return run, lambda loss: loss.item(), Device[Device.DEFAULT].synchronize


def mlp_clnet(dev, layers, x, y, lr):
    from clnet.bench import ClnetMLP
    m = ClnetMLP(dev, layers, x, y, lr)
    return m.step, lambda loss: loss.item(), dev.synchronize


def mlp_numpy(layers, x, y, lr):
    from clnet.bench import NumpyMLP
    m = NumpyMLP(layers, x, y, lr)

    def step():
        loss, _ = m.loss_and_grads()  # the step recomputes it; reported loss only for the check
        return loss
    return (lambda: m.step()), None, lambda: None, step


# --- running -----------------------------------------------------------------------------------------------
def build(workload, dev, torch, tg, jit_modes):
    """{name: (step, to_float(loss) or None, sync)} and the first losses they report."""
    from clnet.bench import MLPShape, mlp_init
    rng = np.random.default_rng(0)
    out = {}
    if workload == "two-layer":
        data = two_layer_data(rng)
        out["clnet"] = two_layer_clnet(dev, *data)
        out["numpy"] = two_layer_numpy(*data)
        if torch:
            out["torch"] = two_layer_torch(torch, *data)
        if tg:
            for jit in jit_modes:
                out["tinygrad" + ("-jit" if jit else "")] = two_layer_tinygrad(tg, *data, jit=jit)
    else:
        shape = MLPShape()
        layers, x, y = mlp_init(shape, rng)
        out["clnet"] = mlp_clnet(dev, layers, x, y, shape.lr)
        step, _, sync, loss_fn = mlp_numpy(layers, x, y, shape.lr)
        out["numpy"] = (step, None, sync, loss_fn)
        if torch:
            out["torch"] = mlp_torch(torch, layers, x, y, shape.lr)
        if tg:
            for jit in jit_modes:
                out["tinygrad" + ("-jit" if jit else "")] = mlp_tinygrad(tg, layers, x, y, shape.lr, jit=jit)
    return out


def check_first_losses(contenders, rtol=1e-3):
    """Run one step of each and compare the losses it reports (same weights and data everywhere)."""
    losses = {}
    for name, entry in contenders.items():
        step, to_float = entry[0], entry[1]
        if len(entry) == 4:  # numpy's MLP: the loss before its first step
            losses[name] = entry[3]()
            step()
            continue
        losses[name] = to_float(step())
    ref = losses["numpy"]
    bad = {k: v for k, v in losses.items() if not abs(v - ref) <= rtol * abs(ref)}
    if bad:
        raise SystemExit(f"first losses disagree with numpy's {ref:.6g}: {bad}")
    return ref


def cpu_ms(step, sync, steps, rounds=3):
    """Median process CPU ms per step (every thread: Python, driver and PoCL's workers, BLAS threads):
    the work a step costs, which a loaded machine stretches in wall time but not in CPU time."""
    per = []
    for _ in range(rounds):
        sync()
        t0 = time.process_time()
        for _ in range(steps):
            step()
        sync()
        per.append((time.process_time() - t0) / steps * 1e3)
    return median(per)


def host_ms(step, sync, steps=10):
    """Main-thread CPU ms per step (Python + enqueueing), measured while the device runs behind."""
    sync()
    t0 = time.thread_time()
    for _ in range(steps):
        step()
    t1 = time.thread_time()
    sync()
    return (t1 - t0) / steps * 1e3


TARGETS = {"two-layer": 2.5, "mlp": 1.2}
STEPS = {"two-layer": 20, "mlp": 3}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--only", default="two-layer,mlp")
    ap.add_argument("--steps-two", type=int, default=STEPS["two-layer"], help="two-layer steps per timed unit")
    ap.add_argument("--steps-mlp", type=int, default=STEPS["mlp"], help="MLP steps per timed unit")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-tinygrad", action="store_true")
    ap.add_argument("--tinygrad-icd", default="/etc/OpenCL/vendors/pocl.icd",
                    help="the one OpenCL ICD tinygrad (and then clnet) may see")
    args = ap.parse_args(argv)

    tg, why = None, "not requested"
    if not args.no_tinygrad:
        vendors = restrict_icd(args.tinygrad_icd)
        tg, why = load_tinygrad(vendors is not None)
        if vendors is None:
            why = f"{args.tinygrad_icd} not found"
    dev = open_device(args.device)
    torch = load_torch(not args.no_torch)
    header("training steps, ms per step", dev, torch)
    if tg:
        from importlib.metadata import version
        print(f"tinygrad {version('tinygrad')} on DEV=CL, OCL_ICD_VENDORS={os.environ['OCL_ICD_VENDORS']}")
    elif not args.no_tinygrad:
        print(f"tinygrad: cannot run ({why})")
    steps = {"two-layer": args.steps_two, "mlp": args.steps_mlp}
    rows = []
    for workload in args.only.split(","):
        contenders = build(workload, dev, torch, tg, jit_modes=(False, True))
        loss = check_first_losses(contenders)
        fns = {name: repeated(e[0], steps[workload], e[2]) for name, e in contenders.items()}
        times = alternate(with_torch1(fns), args.reps, warmup=2, torch=torch)
        ms = {k: median(v) / steps[workload] * 1e3 for k, v in times.items()}
        row = {"workload": workload, "first loss": loss, "clnet host ms": host_ms(contenders["clnet"][0],
                                                                                  contenders["clnet"][2])}
        row.update({f"{k} ms": v for k, v in ms.items()})
        for k in ("clnet", "numpy", "torch"):
            if k in contenders:
                if k == "torch":
                    torch.set_num_threads(1)
                row[f"{k}{'1' if k == 'torch' else ''} cpu ms"] = cpu_ms(contenders[k][0], contenders[k][2],
                                                                        steps[workload])
                if k == "torch":
                    torch.set_num_threads(os.cpu_count() or 1)
        row["clnet/numpy"] = ms["clnet"] / ms["numpy"]
        if torch:
            best = min(ms["torch"], ms["torch1"])
            row["clnet/torch"] = ms["clnet"] / best
        for k in ("tinygrad", "tinygrad-jit"):
            if k in ms:
                row[f"clnet/{k}"] = ms["clnet"] / ms[k]
        rows.append(row)
        print(f"  {workload}: clnet {ms['clnet']:.2f} ms/step", flush=True)
    names = ["clnet", "numpy"] + (["torch", "torch1"] if torch else []) + \
        ([k for k in ("tinygrad", "tinygrad-jit")] if tg else [])
    cols = ["workload"] + [f"{n} ms" for n in names] + ["clnet/numpy"] + \
        (["clnet/torch"] if torch else []) + ([f"clnet/{k}" for k in ("tinygrad", "tinygrad-jit")] if tg else [])
    fmt = {c: "{:.2f}" for c in cols}
    fmt["workload"] = "{}"
    table(rows, cols, fmt)
    print("(wall ms per step, medians; time ratios: < 1 means clnet is faster)")
    cpu_cols = ["workload", "clnet host ms", "clnet cpu ms", "numpy cpu ms"] + (["torch1 cpu ms"] if torch else [])
    fmt.update({c: "{:.2f}" for c in cpu_cols[1:]})
    table(rows, cpu_cols, fmt)
    print("(CPU ms per step: host = clnet's main thread (Python + enqueueing); cpu = the whole process, all "
          "threads, so what the step costs whatever the load)")
    for r in rows:
        if "clnet/torch" in r:
            t = TARGETS[r["workload"]]
            print(f"target {r['workload']}: <= {t}x PyTorch's time (got {r['clnet/torch']:.2f}x: "
                  f"{'met' if r['clnet/torch'] <= t else 'MISSED'})")


if __name__ == "__main__":
    main()

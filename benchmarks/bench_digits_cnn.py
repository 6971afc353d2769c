"""Wall time per training epoch of the digits CNN: clnet (an OpenCL device) vs PyTorch CPU, in one run.

Same model (examples/train_digits_cnn.py), same initial weights (PyTorch's, loaded into clnet), same
batches, Adam; each framework runs one warm-up epoch (kernel builds, allocator warm-up) and then
--epochs timed epochs, alternating frameworks epoch by epoch so both see the same machine load.
Prints the median (and min) seconds per epoch and the ratio clnet / PyTorch.

    python benchmarks/bench_digits_cnn.py                    # default device, 5 timed epochs
    python benchmarks/bench_digits_cnn.py --device pocl --epochs 7 --algo direct,im2col
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import clnet  # noqa: E402
from train_digits_cnn import load_digits_nchw, make_model  # noqa: E402


def torch_model():
    import torch
    from torch import nn
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(128, 10)), torch


def clnet_epoch(model, opt, batches, device):
    from clnet.nn import functional as F
    t0 = time.perf_counter()
    last = None
    for xb, yb in batches:
        loss = F.cross_entropy(model(clnet.tensor(xb, device=device)), clnet.tensor(yb, device=device))
        opt.zero_grad()
        loss.backward()
        opt.step()
        last = loss
    last.item()  # wait for the device
    device.synchronize()
    return time.perf_counter() - t0, float(last.item())


def torch_epoch(model, opt, batches, torch):
    F = torch.nn.functional
    t0 = time.perf_counter()
    last = None
    for xb, yb in batches:
        loss = F.cross_entropy(model(torch.from_numpy(xb)), torch.from_numpy(yb))
        opt.zero_grad()
        loss.backward()
        opt.step()
        last = loss
    return time.perf_counter() - t0, float(last.item())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--algo", default="direct", help="clnet conv algorithms to time, comma-separated "
                                                    "(direct, im2col)")
    ap.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = ap.parse_args(argv)

    tm, torch = torch_model()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    torch.manual_seed(0)
    device = clnet.device(args.device) if args.device else clnet.default_device()
    x, y, _, _ = load_digits_nchw(0)
    rng = np.random.default_rng(0)
    epochs_batches = []
    for _ in range(args.epochs + 1):
        order = rng.permutation(len(x))
        epochs_batches.append([(np.ascontiguousarray(x[order[i:i + args.batch_size]]), y[order[i:i + args.batch_size]])
                               for i in range(0, len(x), args.batch_size)])
    algos = [a.strip() for a in args.algo.split(",") if a.strip()]
    models = {}
    for algo in algos:
        cm = make_model(device)
        cm.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
        models[algo] = (cm, clnet.optim.Adam(cm.parameters(), lr=3e-3))
    topt = torch.optim.Adam(tm.parameters(), lr=3e-3)

    times = {"torch": []} | {a: [] for a in algos}
    losses = {k: None for k in times}
    for e, batches in enumerate(epochs_batches):
        t, losses["torch"] = torch_epoch(tm, topt, batches, torch)
        if e:
            times["torch"].append(t)
        for algo in algos:
            os.environ["CLNET_CONV_ALGO"] = algo
            t, losses[algo] = clnet_epoch(*models[algo], batches, device)
            if e:
                times[algo].append(t)
    os.environ.pop("CLNET_CONV_ALGO", None)

    n_batches = len(epochs_batches[0])
    print(f"digits CNN, {len(x)} training images, batch {args.batch_size} ({n_batches} steps/epoch), Adam; "
          f"{args.epochs} timed epochs after 1 warm-up")
    print(f"clnet device: {device}")
    print(f"PyTorch {torch.__version__} CPU, {torch.get_num_threads()} threads; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    ref = float(np.median(times["torch"]))
    print(f"{'framework':<22}{'median s/epoch':>16}{'min s/epoch':>14}{'ms/step':>10}{'vs torch':>10}{'last loss':>11}")
    for k, ts in times.items():
        name = "PyTorch CPU" if k == "torch" else f"clnet ({k} conv)"
        med = float(np.median(ts))
        print(f"{name:<22}{med:>16.4f}{min(ts):>14.4f}{med / n_batches * 1e3:>10.2f}{med / ref:>9.2f}x"
              f"{losses[k]:>11.4f}")
    return times


if __name__ == "__main__":
    main()

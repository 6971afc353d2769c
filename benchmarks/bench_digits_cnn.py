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
from pathlib import Path

import numpy as np

from common import alternate, header, median, open_device, table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import clnet  # noqa: E402
from train_digits_cnn import load_digits_nchw, make_model  # noqa: E402


def torch_model():
    import torch
    from torch import nn
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(128, 10)), torch


def clnet_epoch(model, opt, batches, device, algo):
    """One epoch with convolution algorithm `algo`; waits for the device at the end. Returns the last loss."""
    from clnet.nn import functional as F
    os.environ["CLNET_CONV_ALGO"] = algo
    last = None
    for xb, yb in batches:
        loss = F.cross_entropy(model(clnet.tensor(xb, device=device)), clnet.tensor(yb, device=device))
        opt.zero_grad()
        loss.backward()
        opt.step()
        last = loss
    last.item()  # wait for the device
    device.synchronize()
    return last


def torch_epoch(model, opt, batches, torch):
    """One epoch; returns the last batch's loss (a tensor)."""
    F = torch.nn.functional
    last = None
    for xb, yb in batches:
        loss = F.cross_entropy(model(torch.from_numpy(xb)), torch.from_numpy(yb))
        opt.zero_grad()
        loss.backward()
        opt.step()
        last = loss
    return last


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
    device = open_device(args.device)
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

    n_batches = len(epochs_batches[0])
    header("digits CNN, wall seconds per training epoch", device, torch)
    print(f"digits CNN, {len(x)} training images, batch {args.batch_size} ({n_batches} steps/epoch), Adam; "
          f"{args.epochs} timed epochs after 1 warm-up")

    # the contenders alternate epoch by epoch, each on the same epochs' batches; the first epoch is the warm-up
    losses = {}

    def contender(key, run_epoch):
        batches = iter(epochs_batches)

        def run():
            losses[key] = run_epoch(next(batches))
        return run
    fns = {"torch": contender("torch", lambda b: torch_epoch(tm, topt, b, torch))}
    for algo in algos:
        fns[algo] = contender(algo, lambda b, algo=algo: clnet_epoch(*models[algo], b, device, algo))
    times = alternate(fns, args.epochs, warmup=1)
    os.environ.pop("CLNET_CONV_ALGO", None)

    ref = median(times["torch"])
    rows = [{"framework": "PyTorch CPU" if k == "torch" else f"clnet ({k} conv)", "median s/epoch": median(ts),
             "min s/epoch": min(ts), "ms/step": median(ts) / n_batches * 1e3, "vs torch": median(ts) / ref,
             "last loss": float(losses[k].item())} for k, ts in times.items()]
    table(rows, list(rows[0]), {"median s/epoch": "{:.4f}", "min s/epoch": "{:.4f}", "ms/step": "{:.2f}",
                                "vs torch": "{:.2f}x", "last loss": "{:.4f}"})
    return times


if __name__ == "__main__":
    main()

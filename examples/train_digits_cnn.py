"""Train a small NCHW CNN on scikit-learn's handwritten digits with clnet (PyTorch-style API).

The dataset ships inside scikit-learn (1797 real 8x8 grey-level scans of digits 0-9; no download).
Model: Conv2d(1,16,3,p=1)-ReLU-MaxPool(2) -> Conv2d(16,32,3,p=1)-ReLU-MaxPool(2) -> Flatten -> Linear(128,10),
trained with Adam on cross-entropy. The default run reaches about 97-98% test accuracy on PoCL.

    python examples/train_digits_cnn.py                      # 20 epochs, prints loss per epoch
    python examples/train_digits_cnn.py --epochs 5 --device cpu --plot loss.png

Needs scikit-learn; saves a PNG of the loss curve when matplotlib is installed.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import clnet
from clnet import nn
from clnet.nn import functional as F


def load_digits_nchw(seed: int = 0, test_fraction: float = 0.2):
    """(x_train, y_train, x_test, y_test): float32 images (N, 1, 8, 8) scaled to [0, 1], int64 labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        sys.exit("this example needs scikit-learn for its bundled digits dataset: pip install scikit-learn")
    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def make_model(device=None) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, device=device), nn.ReLU(), nn.MaxPool2d(2),    # 16 x 4 x 4
        nn.Conv2d(16, 32, 3, padding=1, device=device), nn.ReLU(), nn.MaxPool2d(2),   # 32 x 2 x 2
        nn.Flatten(), nn.Linear(32 * 2 * 2, 10, device=device),
    )


def train_epoch(model, opt, x, y, batch_size, rng, device):
    """One pass over (x, y) in shuffled mini-batches; returns the mean training loss."""
    model.train()
    order = rng.permutation(len(x))
    losses, sizes = [], []
    for start in range(0, len(x), batch_size):
        idx = order[start:start + batch_size]
        xb = clnet.tensor(x[idx], device=device)
        yb = clnet.tensor(y[idx], device=device)
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.detach())
        sizes.append(len(idx))
    # one synchronisation per epoch: read the batch losses only now
    return float(sum(l.item() * n for l, n in zip(losses, sizes)) / sum(sizes))


def accuracy(model, x, y, device, batch_size=512) -> float:
    model.eval()
    correct = 0
    with clnet.no_grad():
        for start in range(0, len(x), batch_size):
            logits = model(clnet.tensor(x[start:start + batch_size], device=device))
            correct += int((logits.argmax(dim=1).numpy() == y[start:start + batch_size]).sum())
    return correct / len(x)


def save_plot(history, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no loss plot saved")
        return None
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(range(1, len(history) + 1), history, marker="o")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (cross-entropy)")
    ax.set_title("clnet CNN on scikit-learn digits")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"saved loss curve to {path}")
    return path


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--device", default=None, help="clnet device spec (default: clnet's default device)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="use only this many training images (quick runs)")
    ap.add_argument("--plot", default="digits_cnn_loss.png", help="PNG path for the loss curve ('' for none)")
    args = ap.parse_args(argv)

    device = clnet.device(args.device) if args.device else clnet.default_device()
    clnet.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    x_train, y_train, x_test, y_test = load_digits_nchw(args.seed)
    if args.limit:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]
    model = make_model(device)
    opt = clnet.optim.Adam(model.parameters(), lr=args.lr)
    print(f"device: {device}\ntrain {len(x_train)} / test {len(x_test)} images of 1x8x8\n{model}")

    history, times = [], []
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        loss = train_epoch(model, opt, x_train, y_train, args.batch_size, rng, device)
        times.append(time.perf_counter() - t0)
        history.append(loss)
        print(f"epoch {epoch:3d}  loss {loss:.4f}  ({times[-1]:.2f} s)")
    acc = accuracy(model, x_test, y_test, device)
    print(f"test accuracy: {acc * 100:.2f}% on {len(x_test)} held-out images; "
          f"median epoch time {np.median(times):.3f} s")
    if args.plot:
        save_plot(history, args.plot)
    return {"history": history, "test_accuracy": acc, "epoch_times": times}


if __name__ == "__main__":
    main()

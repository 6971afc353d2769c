"""The lecture's "PyTorch: nn" snippet on clnet: a Sequential model, mse_loss, manual SGD.

    import torch                           ->  import clnet
    torch.nn.Sequential / Linear / ReLU    ->  clnet.nn.Sequential / Linear / ReLU
    torch.nn.functional.mse_loss           ->  clnet.nn.functional.mse_loss
    torch.no_grad()                        ->  clnet.no_grad()

    python examples/nn_sequential.py               # the lecture's sizes: N=64, D_in=1000, H=100, D_out=10, 500 steps
    python examples/nn_sequential.py --small       # a few-second run (what the tests use)
"""
from __future__ import annotations

import argparse

import clnet


def train(N=64, D_in=1000, H=100, D_out=10, steps=500, learning_rate=1e-2, device=None, verbose=True):
    """The lecture's loop, line for line; returns the loss of every step."""
    x = clnet.randn(N, D_in, device=device)
    y = clnet.randn(N, D_out, device=device)

    model = clnet.nn.Sequential(
        clnet.nn.Linear(D_in, H, device=device),
        clnet.nn.ReLU(),
        clnet.nn.Linear(H, D_out, device=device))

    losses = []
    for t in range(steps):
        y_pred = model(x)
        loss = clnet.nn.functional.mse_loss(y_pred, y)

        loss.backward()

        with clnet.no_grad():
            for param in model.parameters():
                param -= learning_rate * param.grad
        model.zero_grad()

        losses.append(loss.item())
        if verbose and (t % 100 == 99 or t == steps - 1):
            print(f"step {t + 1:4d}  loss {losses[-1]:.6f}")
    return losses


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="tiny sizes and few steps (used by the tests)")
    ap.add_argument("--device", default=None, help='e.g. "cpu", "gpu", "pocl" (default: the best device)')
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    clnet.manual_seed(args.seed)
    sizes = dict(N=8, D_in=20, H=16, D_out=3, steps=60) if args.small else {}
    return train(device=args.device, **sizes)


if __name__ == "__main__":
    main()

"""The lecture's "mix and match" snippet on clnet: a custom ParallelBlock module inside a Sequential,
trained with optim.Adam.

    python examples/parallel_block.py            # the lecture's sizes and 500 steps, lr=1e-4 as on the slide
    python examples/parallel_block.py --small    # a few-second run (what the tests use)
"""
from __future__ import annotations

import argparse

import clnet


class ParallelBlock(clnet.nn.Module):
    def __init__(self, D_in, D_out, device=None):
        super(ParallelBlock, self).__init__()
        self.linear1 = clnet.nn.Linear(D_in, D_out, device=device)
        self.linear2 = clnet.nn.Linear(D_in, D_out, device=device)

    def forward(self, x):
        h1 = self.linear1(x)
        h2 = self.linear2(x)
        return (h1 * h2).clamp(min=0)


def train(N=64, D_in=1000, H=100, D_out=10, steps=500, lr=1e-4, device=None, verbose=True):
    """The lecture's loop; returns the loss of every step."""
    x = clnet.randn(N, D_in, device=device)
    y = clnet.randn(N, D_out, device=device)

    model = clnet.nn.Sequential(
        ParallelBlock(D_in, H, device=device),
        ParallelBlock(H, H, device=device),
        clnet.nn.Linear(H, D_out, device=device))
    if verbose:
        print(model)

    optimizer = clnet.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for t in range(steps):
        y_pred = model(x)
        loss = clnet.nn.functional.mse_loss(y_pred, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

        losses.append(loss.item())
        if verbose and (t % 100 == 99 or t == steps - 1):
            print(f"step {t + 1:4d}  loss {losses[-1]:.6f}")
    return losses


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="tiny sizes and few steps (used by the tests)")
    ap.add_argument("--device", default=None, help='e.g. "cpu", "gpu", "pocl" (default: the best device)')
    ap.add_argument("--lr", type=float, default=None, help="learning rate (default 1e-4 as on the slide; "
                                                          "1e-2 with --small so the short run visibly learns)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    clnet.manual_seed(args.seed)
    sizes = dict(N=8, D_in=20, H=16, D_out=3, steps=60, lr=1e-2) if args.small else {}
    if args.lr is not None:
        sizes["lr"] = args.lr
    return train(device=args.device, **sizes)


if __name__ == "__main__":
    main()

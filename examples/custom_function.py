"""The lecture's "PyTorch: New Autograd Functions" on clnet: MyReLU with its own forward and backward
(ctx.save_for_backward / ctx.saved_tensors), used in the autograd two-layer net.

    python examples/custom_function.py                # the lecture's sizes and 500 steps
    python examples/custom_function.py --small
"""
from __future__ import annotations

import argparse

import clnet


class MyReLU(clnet.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad_y):
        x, = ctx.saved_tensors
        grad_input = grad_y.clone()
        grad_input[x < 0] = 0
        return grad_input


def my_relu(x):
    return MyReLU.apply(x)


def train(N=64, D_in=1000, H=100, D_out=10, steps=500, learning_rate=1e-6, device=None, dtype="float32",
          seed=0):
    """The lecture's loop with my_relu; returns the loss of every step."""
    clnet.manual_seed(seed)
    x = clnet.randn(N, D_in, device=device, dtype=dtype)
    y = clnet.randn(N, D_out, device=device, dtype=dtype)
    w1 = clnet.randn(D_in, H, requires_grad=True, device=device, dtype=dtype)
    w2 = clnet.randn(H, D_out, requires_grad=True, device=device, dtype=dtype)

    losses = []
    for t in range(steps):
        y_pred = my_relu(x.mm(w1)).mm(w2)
        loss = (y_pred - y).pow(2).sum()
        losses.append(loss.detach())

        loss.backward()

        with clnet.no_grad():
            w1 -= learning_rate * w1.grad
            w2 -= learning_rate * w2.grad
            w1.grad.zero_()
            w2.grad.zero_()
    return [float(v) for v in losses]


SMALL = dict(N=8, D_in=50, H=20, D_out=5, steps=50, learning_rate=1e-4)


def main(small=False, device=None):
    losses = train(device=device, **(SMALL if small else {}))
    print(f"loss {losses[0]:.4g} -> {losses[-1]:.6g} after {len(losses)} steps")
    return losses


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    main(args.small, args.device)

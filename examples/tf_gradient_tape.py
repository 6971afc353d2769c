"""The lecture's "TensorFlow: Neural Net" on clnet: numpy data converted to tensors, weights as
clnet.Variable, the forward pass under clnet.GradientTape, tape.gradient for the weights and
Variable.assign for the update.

    python examples/tf_gradient_tape.py               # the lecture's sizes and 50 steps
    python examples/tf_gradient_tape.py --small
"""
from __future__ import annotations

import argparse

import numpy as np

import clnet


def train(N=64, D=1000, H=100, steps=50, learning_rate=1e-6, device=None, seed=0):
    """The lecture's loop; returns the loss of every step."""
    np.random.seed(seed)
    clnet.manual_seed(seed)
    x = clnet.convert_to_tensor(np.random.randn(N, D), np.float32, device=device)
    y = clnet.convert_to_tensor(np.random.randn(N, D), np.float32, device=device)
    w1 = clnet.Variable(clnet.random.uniform((D, H), device=device))  # weights
    w2 = clnet.Variable(clnet.random.uniform((H, D), device=device))  # weights

    losses = []
    for t in range(steps):
        with clnet.GradientTape() as tape:
            h = clnet.maximum(clnet.matmul(x, w1), 0)
            y_pred = clnet.matmul(h, w2)
            diff = y_pred - y
            loss = clnet.reduce_mean(clnet.reduce_sum(diff ** 2, axis=1))
        gradients = tape.gradient(loss, [w1, w2])
        w1.assign(w1 - learning_rate * gradients[0])
        w2.assign(w2 - learning_rate * gradients[1])
        losses.append(loss.detach())
    return [float(v) for v in losses]


SMALL = dict(N=8, D=30, H=10, steps=20, learning_rate=1e-3)


def main(small=False, device=None):
    losses = train(device=device, **(SMALL if small else {}))
    print(f"loss {losses[0]:.6g} -> {losses[-1]:.6g} after {len(losses)} steps")
    return losses


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    main(args.small, args.device)

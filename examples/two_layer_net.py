"""The lecture's "PyTorch: Tensors" two-layer ReLU network on random data with L2 loss, with the
gradients written by hand, on clnet: first on device="cpu", then on a GPU when there is one.

`numpy_reference` runs the same code in numpy float64 from the same initial data, so the final loss
can be compared (tests/test_examples.py does, within 1e-3 relative; run with --dtype float64 for
that: in float32 the loss reaches float32's noise floor before step 500, in numpy float32 too).

    python examples/two_layer_net.py                  # the lecture's sizes and 500 steps
    python examples/two_layer_net.py --small          # a few-second run
    python examples/two_layer_net.py --dtype float64 --check
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import clnet


def train(N=64, D_in=1000, H=100, D_out=10, steps=500, learning_rate=1e-6, device="cpu", dtype="float32",
          seed=0):
    """The lecture's loop; returns the loss of every step and the initial data (as numpy arrays)."""
    device = clnet.device(device) if isinstance(device, str) else device
    clnet.manual_seed(seed)

    x = clnet.randn(N, D_in, device=device, dtype=dtype)
    y = clnet.randn(N, D_out, device=device, dtype=dtype)
    w1 = clnet.randn(D_in, H, device=device, dtype=dtype)
    w2 = clnet.randn(H, D_out, device=device, dtype=dtype)
    init = {"x": x.numpy(), "y": y.numpy(), "w1": w1.numpy(), "w2": w2.numpy()}

    losses = []
    for t in range(steps):
        h = x.mm(w1)
        h_relu = h.clamp(min=0)
        y_pred = h_relu.mm(w2)
        loss = (y_pred - y).pow(2).sum()
        losses.append(loss)

        grad_y_pred = 2.0 * (y_pred - y)
        grad_w2 = h_relu.t().mm(grad_y_pred)
        grad_h_relu = grad_y_pred.mm(w2.t())
        grad_h = grad_h_relu.clone()
        grad_h[h < 0] = 0
        grad_w1 = x.t().mm(grad_h)

        w1 -= learning_rate * grad_w1
        w2 -= learning_rate * grad_w2
    return [float(v) for v in losses], init


def numpy_reference(init, steps=500, learning_rate=1e-6):
    """The same code in numpy float64 from the same initial data; returns the loss of every step."""
    x, y, w1, w2 = (init[k].astype(np.float64) for k in ("x", "y", "w1", "w2"))
    losses = []
    for t in range(steps):
        h = x @ w1
        h_relu = np.maximum(h, 0)
        y_pred = h_relu @ w2
        losses.append(float(((y_pred - y) ** 2).sum()))
        grad_y_pred = 2.0 * (y_pred - y)
        grad_w2 = h_relu.T @ grad_y_pred
        grad_h = grad_y_pred @ w2.T
        grad_h[h < 0] = 0
        grad_w1 = x.T @ grad_h
        w1 -= learning_rate * grad_w1
        w2 -= learning_rate * grad_w2
    return losses


def gpu_device():
    """A real GPU if there is one (the Oclgrind simulator reports itself as a GPU: not that)."""
    gpus = [d for d in clnet.devices() if d.type == "gpu" and not d.is_simulator]
    return clnet.device("gpu") if gpus else None


def main(small=False, dtype="float32", check=False, steps=None, devices=None):
    sizes = dict(N=8, D_in=50, H=20, D_out=5, steps=50, learning_rate=1e-4) if small else {}
    if steps is not None:
        sizes["steps"] = steps
    devices = devices if devices is not None else ["cpu"] + ([gpu_device()] if gpu_device() else [])
    results = {}
    for dev in devices:
        dev = clnet.device(dev) if isinstance(dev, str) else dev
        start = time.perf_counter()
        losses, init = train(device=dev, dtype=dtype, **sizes)
        seconds = time.perf_counter() - start
        results[dev.spec] = losses
        print(f"{dev.name} [{dev.platform_name}]: loss {losses[0]:.4g} -> {losses[-1]:.6g} "
              f"after {len(losses)} steps ({seconds:.2f} s)")
        if check:
            ref = numpy_reference(init, len(losses), sizes.get("learning_rate", 1e-6))
            rel = abs(losses[-1] - ref[-1]) / abs(ref[-1])
            print(f"  numpy float64: {ref[-1]:.6g} (relative difference {rel:.2e})")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tiny sizes, 50 steps")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--check", action="store_true", help="compare with numpy float64")
    parser.add_argument("--device", action="append", default=None,
                        help="device(s) to run on (default: cpu, then a GPU if present)")
    args = parser.parse_args()
    main(args.small, args.dtype, args.check, args.steps, args.device)

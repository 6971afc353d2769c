"""The lecture's first computational graph, a = x * y; b = a + z; c = sum(b), twice:

1. "Numpy": forward pass and hand-written backward pass (the gradients the lecture derives);
2. "PyTorch" on clnet: the same forward pass, and `c.backward()` computes the gradients on the device.

The script checks that both agree.

    python examples/computational_graph.py            # N, D = 3, 4 as on the slide
    python examples/computational_graph.py --device gpu

(Run from the repository root after `pip install -e .`, or with PYTHONPATH=. .)
"""
from __future__ import annotations

import argparse

import numpy as np

import clnet


def numpy_graph(x, y, z):
    """The lecture's numpy slide: forward, then the gradients by hand."""
    N, D = x.shape
    a = x * y
    b = a + z
    c = np.sum(b)

    grad_c = 1.0
    grad_b = grad_c * np.ones((N, D))
    grad_a = grad_b.copy()
    grad_z = grad_b.copy()
    grad_x = grad_a * y
    grad_y = grad_a * x
    return c, grad_x, grad_y, grad_z


def main(N=3, D=4, device=None, seed=0, verbose=True):
    """Run the clnet graph; return its values and gradients next to numpy's hand-derived ones."""
    clnet.manual_seed(seed)
    x = clnet.randn(N, D, requires_grad=True, device=device)
    y = clnet.randn(N, D, requires_grad=True, device=device)
    z = clnet.randn(N, D, requires_grad=True, device=device)

    a = x * y
    b = a + z
    c = clnet.sum(b)

    c.backward()
    if verbose:
        print(x.grad)

    ref = numpy_graph(*(t.numpy().astype(np.float64) for t in (x, y, z)))
    ours = (c.item(), x.grad.numpy(), y.grad.numpy(), z.grad.numpy())
    for name, got, want in zip(("c", "grad_x", "grad_y", "grad_z"), ours, ref):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=name)
    if verbose:
        print(f"c = {ours[0]:.6f} (numpy {ref[0]:.6f}); gradients match the lecture's numpy formulas")
    return {"clnet": ours, "numpy": ref}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--N", type=int, default=3)
    parser.add_argument("--D", type=int, default=4)
    parser.add_argument("--device", default=None, help="e.g. cpu, gpu, pocl (default: the best device)")
    parser.add_argument("--small", action="store_true", help="(the slide's sizes are already small)")
    args = parser.parse_args()
    main(args.N, args.D, device=args.device)

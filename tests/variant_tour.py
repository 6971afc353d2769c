"""Build and run once every template family variant clnet's ops produce on one device (issue 11).

    python tests/variant_tour.py DEVICE

Run as a child process by tests/test_build_worker.py, in-process builds only (CLNET_BUILD_WORKER=0): a
compiler that aborts on any variant kills this process, and the test fails on its exit status instead
of the test run dying. Each op family runs over the dtypes the device computes in (float32, float64
with fp64, float16 with fp16, the integer types where the op takes them), contiguous and strided
layouts, forward and backward, and the optimizers' update rules; every result is checked against numpy
loosely (this tour is about building, tests/ check accuracy), so a variant that builds but computes
garbage fails too. Prints the number of programs built.
"""
from __future__ import annotations

import sys

import numpy as np

import clnet
from clnet import nn
from clnet.backend import programs

F = nn.functional


def check(got, want, what, tol):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape or not np.allclose(got, want, rtol=tol, atol=tol):
        raise SystemExit(f"variant tour: {what} differs from numpy")


def tour(dev) -> None:
    rng = np.random.default_rng(0)
    floats = [np.float32] + ([np.float64] if dev.fp64 else []) + ([np.float16] if dev.fp16 else [])
    for dt in floats:
        tol = 2e-2 if dt == np.float16 else 1e-3
        a = rng.standard_normal((6, 9)).astype(dt)
        b = rng.standard_normal((9, 5)).astype(dt)
        ta, tb = clnet.tensor(a, device=dev), clnet.tensor(b, device=dev)
        # elementwise: unary, binary with broadcast, strided operand, comparison, where
        check((ta * 2 + 1).exp().numpy(), np.exp(a.astype(np.float64) * 2 + 1), f"exp {dt}", tol * 10)
        check((ta.T[:, :5] + tb).numpy(), a.T[:, :5].astype(np.float64) + b, f"strided add {dt}", tol)
        check(clnet.where(ta > 0, ta, -ta).numpy(), np.abs(a), f"where {dt}", tol)
        # reductions along each axis, arg ops
        check(ta.sum(dim=0).numpy(), a.astype(np.float64).sum(0), f"sum(0) {dt}", tol)
        check(ta.amax(dim=1).numpy(), a.max(1), f"amax(1) {dt}", tol)
        check(ta.mean().numpy(), a.astype(np.float64).mean(), f"mean {dt}", tol)
        check(ta.argmax(dim=1).numpy(), a.argmax(1), f"argmax {dt}", 0)
        # matmul: plain, transposed operands, batched, linear with bias and relu
        check((ta @ tb).numpy(), a.astype(np.float64) @ b, f"matmul {dt}", tol * 5)
        check((tb.T @ ta.T).numpy(), (a.astype(np.float64) @ b).T, f"transposed matmul {dt}", tol * 5)
        bat = rng.standard_normal((3, 4, 9)).astype(dt)
        check((clnet.tensor(bat, device=dev) @ tb).numpy(), bat.astype(np.float64) @ b, f"batched matmul {dt}",
              tol * 5)
        bias = rng.standard_normal(5).astype(dt)
        check(F.linear(ta, tb.T, clnet.tensor(bias, device=dev)).relu().numpy(),
              np.maximum(a.astype(np.float64) @ b + bias, 0), f"linear+relu {dt}", tol * 5)
        # softmax family, forward and backward
        x = clnet.tensor(a, device=dev, requires_grad=True)
        y = clnet.tensor(rng.integers(0, 9, 6), device=dev)
        F.cross_entropy(x, y).backward()
        e = np.exp(a - a.max(1, keepdims=True))
        check(F.softmax(x.detach(), dim=1).numpy(), e / e.sum(1, keepdims=True), f"softmax {dt}", tol)
        if not np.isfinite(x.grad.numpy()).all():
            raise SystemExit(f"variant tour: cross_entropy backward {dt} not finite")
    for dt in (np.int32, np.int64):
        i = rng.integers(-5, 5, (7, 4)).astype(dt)
        ti = clnet.tensor(i, device=dev)
        check((ti * 3 - 1).numpy(), i * 3 - 1, f"int arithmetic {dt}", 0)
        check(ti.sum(dim=1).numpy(), i.sum(1), f"int sum {dt}", 0)
    # conv and pooling, forward and backward
    x = clnet.tensor(rng.standard_normal((2, 3, 8, 8)).astype(np.float32), device=dev, requires_grad=True)
    w = clnet.tensor(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), device=dev, requires_grad=True)
    out = F.max_pool2d(F.conv2d(x, w, padding=1, stride=1).relu(), 2)
    out = out + F.avg_pool2d(F.conv2d(x, w, stride=2), 2).sum()
    out.sum().backward()
    for t in (x.grad, w.grad):
        if not np.isfinite(t.numpy()).all():
            raise SystemExit("variant tour: conv/pool backward not finite")
    # indexing: masks, index tensors, assignment
    a = rng.standard_normal((5, 6)).astype(np.float32)
    ta = clnet.tensor(a, device=dev)
    check(ta[ta > 0].numpy(), a[a > 0], "mask select", 1e-6)
    idx = np.array([4, 0, 2])
    check(ta[clnet.tensor(idx, device=dev)].numpy(), a[idx], "index select", 1e-6)
    tc = ta.clone()
    tc[tc < 0] = 0
    check(tc.numpy(), np.maximum(a, 0), "mask assign", 1e-6)
    # random numbers and creation
    for dt in floats:
        r = clnet.rand(1000, dtype=dt, device=dev).numpy()
        n = clnet.randn(1000, dtype=dt, device=dev).numpy()
        if not (0 <= r.min() and r.max() < 1 and np.isfinite(n).all()):
            raise SystemExit(f"variant tour: random {dt} out of range")
    check(clnet.arange(10, device=dev).numpy(), np.arange(10), "arange", 0)
    # optimizers: every update rule
    for make in (lambda p: clnet.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4),
                 lambda p: clnet.optim.Adam(p, lr=1e-3), lambda p: clnet.optim.AdamW(p, lr=1e-3),
                 lambda p: clnet.optim.RMSprop(p, lr=1e-3)):
        lin = nn.Linear(6, 3).to(dev)
        opt = make(lin.parameters())
        for _ in range(2):
            opt.zero_grad()
            lin(ta).sum().backward()
            opt.step()
        if not np.isfinite(lin.weight.detach().numpy()).all():
            raise SystemExit("variant tour: optimizer step not finite")


def main() -> int:
    dev = clnet.device(sys.argv[1])
    clnet.set_default_device(dev)
    tour(dev)
    dev.synchronize()
    print(f"variant tour on {dev.describe()}: {programs.built_count()} programs built and run")
    return 0


if __name__ == "__main__":
    sys.exit(main())

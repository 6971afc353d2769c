"""Speed figures for one device (`clnet bench`), with numpy's beside them on CPU devices.

Three workloads, each checked against numpy before it is timed (a fast wrong answer is no answer):
  GEMM          square float32 n x n x n products, GFLOP/s (2 n^3 / t) at several sizes
  elementwise   c = a + b over float32 vectors, GB/s (12 bytes moved per element)
  training step an MLP 784-512-512-10 (ReLU, cross-entropy, Adam, batch 256): clnet.nn + clnet.optim
                beside the same step written by hand in numpy, ms per step
The contenders alternate repetition by repetition and medians are reported, so both see the same
machine load (our CPUs are shared). The workload builders here are also used by benchmarks/, which adds
PyTorch and tinygrad beside them.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np


# --- timing --------------------------------------------------------------------------------------------
def alternate(contenders: dict, reps: int, warmup: int = 1, before: Callable | None = None) -> dict:
    """Run each contender `warmup` times, then `reps` rounds of one call each, in turn.

    Each contender is a callable that does one measured unit of work and waits for it to finish.
    `before(name)`, when given, runs before each call, outside the clock (e.g. to set a thread count).
    Returns {name: [seconds per round]}.
    """
    for _ in range(warmup):
        for name, fn in contenders.items():
            if before is not None:
                before(name)
            fn()
    times = {name: [] for name in contenders}
    for _ in range(reps):
        for name, fn in contenders.items():
            if before is not None:
                before(name)
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def median(xs) -> float:
    return statistics.median(xs)


def max_rel_err(got, ref) -> float:
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    return float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-30))


class WrongResult(AssertionError):
    """A benchmarked computation disagreed with numpy: its timing would mean nothing."""


def _check(what: str, err: float, tol: float) -> float:
    if not err <= tol:  # also catches NaN
        raise WrongResult(f"{what}: max relative error {err:.3g} against numpy exceeds {tol:g}")
    return err


# --- GEMM ----------------------------------------------------------------------------------------------
def gemm_case(device, n: int, rng) -> tuple[dict, float]:
    """({"clnet": fn, "numpy": fn}, max relative error of clnet's product) for one n x n x n SGEMM."""
    import clnet
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    ta, tb = clnet.tensor(a, device=device), clnet.tensor(b, device=device)
    err = _check(f"GEMM n={n}", max_rel_err((ta @ tb).numpy(), a.astype(np.float64) @ b), 1e-4)

    def run_clnet():
        y = ta @ tb
        device.synchronize()
        del y

    return {"clnet": run_clnet, "numpy": lambda: a @ b}, err


# --- elementwise ---------------------------------------------------------------------------------------
def add_case(device, n: int, rng) -> tuple[dict, float]:
    """c = a + b over n float32 elements, as a user writes it (a new output each time)."""
    import clnet
    a = rng.standard_normal(n, dtype=np.float32)
    b = rng.standard_normal(n, dtype=np.float32)
    ta, tb = clnet.tensor(a, device=device), clnet.tensor(b, device=device)
    err = _check(f"c = a + b, n={n}", max_rel_err((ta + tb).numpy(), a.astype(np.float64) + b), 1e-6)

    def run_clnet():
        c = ta + tb
        device.synchronize()
        del c

    return {"clnet": run_clnet, "numpy": lambda: a + b}, err


# --- the MLP training step -------------------------------------------------------------------------------
@dataclass(frozen=True)
class MLPShape:
    sizes: tuple = (784, 512, 512, 10)
    batch: int = 256
    lr: float = 1e-3

    def __str__(self):
        return f"MLP {'-'.join(map(str, self.sizes))}, ReLU, cross-entropy, Adam, batch {self.batch}"


def mlp_init(shape: MLPShape, rng) -> tuple[list, np.ndarray, np.ndarray]:
    """([(W (out, in), b (out,)) per layer], x, labels): PyTorch's default init, float32."""
    layers = []
    for fan_in, fan_out in zip(shape.sizes[:-1], shape.sizes[1:]):
        bound = 1 / math.sqrt(fan_in)
        layers.append((rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32),
                       rng.uniform(-bound, bound, fan_out).astype(np.float32)))
    x = rng.standard_normal((shape.batch, shape.sizes[0]), dtype=np.float32)
    y = rng.integers(0, shape.sizes[-1], shape.batch)
    return layers, x, y


class NumpyMLP:
    """The MLP step written by hand in numpy (float32): forward, cross-entropy, backward, Adam.

    In-place updates where numpy allows them, so it is a fair peer and not a strawman."""

    def __init__(self, layers, x, y, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        self.params = [p.copy() for wb in layers for p in wb]
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.x, self.y = x, y
        self.onehot = np.eye(layers[-1][0].shape[0], dtype=np.float32)[y]
        self.lr, self.b1, self.b2, self.eps, self.t = lr, betas[0], betas[1], eps, 0

    def loss_and_grads(self):
        ws, bs = self.params[0::2], self.params[1::2]
        acts = [self.x]
        h = self.x
        for i, (w, b) in enumerate(zip(ws, bs)):
            h = h @ w.T
            h += b
            if i < len(ws) - 1:
                np.maximum(h, 0, out=h)
            acts.append(h)
        z = acts[-1]
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        s = e.sum(axis=1, keepdims=True)
        n = z.shape[0]
        loss = float(np.log(s).sum() / n - (z * self.onehot).sum() / n)
        g = e / s
        g -= self.onehot
        g /= n
        grads = [None] * len(self.params)
        for i in reversed(range(len(ws))):
            grads[2 * i] = g.T @ acts[i]
            grads[2 * i + 1] = g.sum(axis=0)
            if i:
                g = g @ ws[i]
                g *= acts[i] > 0
        return loss, grads

    def step(self):
        _, grads = self.loss_and_grads()
        self.adam(grads)

    def adam(self, grads):
        """One Adam update of the parameters with `grads`, in place (as torch.optim.Adam computes it)."""
        self.t += 1
        b1, b2 = self.b1, self.b2
        step = self.lr / (1 - b1 ** self.t)
        denom_scale = 1 / math.sqrt(1 - b2 ** self.t)
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            d = np.sqrt(v)
            d *= denom_scale
            d += self.eps
            p -= step * m / d


class ClnetMLP:
    """The same MLP with clnet.nn.Linear/ReLU, F.cross_entropy and clnet.optim.Adam."""

    def __init__(self, device, layers, x, y, lr=1e-3):
        import clnet
        from clnet import nn
        mods = []
        for i, (w, b) in enumerate(layers):
            lin = nn.Linear(w.shape[1], w.shape[0], device=device)
            with clnet.no_grad():
                lin.weight.copy_(clnet.tensor(w, device=device))
                lin.bias.copy_(clnet.tensor(b, device=device))
            mods.append(lin)
            if i < len(layers) - 1:
                mods.append(nn.ReLU())
        self.model = nn.Sequential(*mods)
        self.opt = clnet.optim.Adam(self.model.parameters(), lr=lr)
        self.x = clnet.tensor(x, device=device)
        self.y = clnet.tensor(y.astype(np.int64), device=device)
        self.device = device

    def loss(self):
        from clnet.nn import functional as F
        return F.cross_entropy(self.model(self.x), self.y)

    def step(self):
        loss = self.loss()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss


def mlp_case(device, shape: MLPShape, rng, steps: int) -> tuple[dict, float]:
    """{"clnet": fn, "numpy": fn} running `steps` MLP steps each; error of clnet's first loss and
    gradients against numpy's (the optimizer's formula is tests/test_optim.py's business)."""
    layers, x, y = mlp_init(shape, rng)
    ref, cl = NumpyMLP(layers, x, y, shape.lr), ClnetMLP(device, layers, x, y, shape.lr)
    ref_loss, ref_grads = ref.loss_and_grads()
    loss = cl.loss()
    loss.backward()
    err = max_rel_err([loss.item()], [ref_loss])
    for p, g in zip(cl.model.parameters(), ref_grads):
        err = max(err, max_rel_err(p.grad.numpy(), g))
    _check(f"{shape}: first loss and gradients", err, 1e-3)
    cl.opt.zero_grad()

    def run_clnet():
        for _ in range(steps):
            cl.step()
        device.synchronize()

    def run_numpy():
        for _ in range(steps):
            ref.step()

    return {"clnet": run_clnet, "numpy": run_numpy}, err


# --- the report -----------------------------------------------------------------------------------------
FULL = dict(sizes=(256, 512, 1024, 2048), n=16 * 2**20, mlp=MLPShape(), steps=5, reps=5)
QUICK = dict(sizes=(16, 32), n=4096, mlp=MLPShape((32, 16, 16, 10), batch=8), steps=2, reps=2)


def _row(label: str, figures: dict, unit: str, better: str, err: float, numpy_beside: bool) -> str:
    cl = figures["clnet"]
    line = f"  {label:<22} clnet {cl:>9.3g} {unit}"
    if numpy_beside:
        npv = figures["numpy"]
        ratio = cl / npv if better == "higher" else npv / cl
        line += f"   numpy {npv:>9.3g} {unit}   clnet/numpy {ratio:5.2f}x"
    return line + f"   (max rel err {err:.1e})"


def run(device, quick: bool = False, numpy_beside: bool | None = None, out: Callable = print,
        reps: int | None = None) -> dict:
    """Measure and print the three workloads on `device`; returns {workload: {contender: figure}}.

    Raises WrongResult if any result disagrees with numpy."""
    cfg = dict(QUICK if quick else FULL)
    reps = reps or cfg["reps"]
    if numpy_beside is None:
        numpy_beside = device.type == "cpu"
    rng = np.random.default_rng(0)
    keep = (lambda fns: fns) if numpy_beside else (lambda fns: {"clnet": fns["clnet"]})
    out(f"clnet bench on {device.describe()}  (driver {device.driver_version})")
    out(f"medians of {reps} repetitions, contenders alternating" +
        ("; ratios > 1 mean clnet is faster" if numpy_beside else ""))
    results = {}

    out("GEMM float32, n x n x n (GFLOP/s)")
    for n in cfg["sizes"]:
        fns, err = gemm_case(device, n, rng)
        t = alternate(keep(fns), reps)
        fig = {k: 2.0 * n ** 3 / median(v) / 1e9 for k, v in t.items()}
        results[f"gemm {n}"] = fig
        out(_row(f"n={n}", fig, "GFLOP/s", "higher", err, numpy_beside))

    n = cfg["n"]
    out("elementwise c = a + b, float32 (GB/s, 12 bytes per element)")
    fns, err = add_case(device, n, rng)
    t = alternate(keep(fns), reps)
    fig = {k: 12.0 * n / median(v) / 1e9 for k, v in t.items()}
    results["add"] = fig
    out(_row(f"n={n}", fig, "GB/s", "higher", err, numpy_beside))

    shape, steps = cfg["mlp"], cfg["steps"]
    out(f"training step: {shape} (ms per step)")
    fns, err = mlp_case(device, shape, rng, steps)
    t = alternate(keep(fns), reps)
    fig = {k: median(v) / steps * 1e3 for k, v in t.items()}
    results["mlp step"] = fig
    out(_row("step", fig, "ms", "lower", err, numpy_beside))
    return results

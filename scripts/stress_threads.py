"""Many threads use clnet at once, from the process's very first clnet call; every result is checked
against numpy (float64 references).

Each thread runs the op families below in its own rotated order (so at the start different threads
touch different families for the first time, while other threads build the same kernels), on shapes
drawn from a small set (so kernels are both built and reused under contention), for `--iterations`
rounds or `--seconds`. It prints one JSON line (threads, rounds, values checked, failures, how many
distinct Device objects the threads' first tensors landed on, seconds) and exits 1 on any failure or
if that is more than one (issue 16: threads that set up the default device at once made two).

    python scripts/stress_threads.py --threads 4 --iterations 2           # what tests/test_threads.py runs
    python scripts/stress_threads.py --threads 16 --seconds 300           # the soak in docs/soak.md

Use a fresh CLNET_CACHE_DIR for first use with empty caches; CLNET_DEVICE picks the device.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import traceback

import numpy as np

import clnet
from clnet import keras

FAMILIES = ("elementwise", "reduce", "matmul", "autograd", "conv", "softmax", "indexing", "movement", "random",
            "optim", "nn_eval", "keras_predict")


def _close(got, want, what, rtol=1e-4, atol=1e-5):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise AssertionError(f"{what}: shape {got.shape} != {want.shape}")
    if not np.allclose(got, want, rtol=rtol, atol=atol):
        err = np.max(np.abs(got - want))
        raise AssertionError(f"{what}: max abs error {err:.3g}")


class Shared:
    """What all threads share: a module in eval mode and a Keras model, both built before the threads
    start only when --prebuilt (else the first thread to need them builds them, under a lock)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.net = None
        self.keras_model = None

    def eval_net(self):
        with self.lock:
            if self.net is None:
                clnet.manual_seed(7)
                self.net = clnet.nn.Sequential(clnet.nn.Linear(12, 16), clnet.nn.ReLU(), clnet.nn.Linear(16, 5))
                self.net.eval()
            return self.net

    def keras(self):
        with self.lock:
            if self.keras_model is None:
                model = keras.Sequential([keras.Input(shape=(6,)), keras.layers.Dense(8, activation="relu"),
                                          keras.layers.Dense(3)])
                self.keras_model = model
            return self.keras_model


def _family(name, rng, shared):
    """Run one family once; return how many values were checked."""
    F = clnet.nn.functional
    m, k, n = (int(v) for v in rng.choice([3, 5, 8, 17], size=3))
    if name == "elementwise":
        a, b = rng.standard_normal((m, n)), rng.standard_normal((n,))
        ta, tb = clnet.tensor(a.astype(np.float32)), clnet.tensor(b.astype(np.float32))
        _close((ta * tb + 1.5).numpy(), a * b + 1.5, "a * b + 1.5")
        _close(ta.relu().exp().numpy(), np.exp(np.maximum(a, 0)), "exp(relu(a))")
        _close(clnet.maximum(ta, tb).numpy(), np.maximum(a, b), "maximum")
        return 3 * m * n
    if name == "reduce":
        a = rng.standard_normal((m, n))
        t = clnet.tensor(a.astype(np.float32))
        _close(t.sum(dim=1).numpy(), a.sum(axis=1), "sum(dim=1)")
        _close(t.amax(dim=0).numpy(), a.max(axis=0), "amax(dim=0)")
        _close(t.mean().item(), a.mean(), "mean")
        if not np.array_equal(t.argmax(dim=1).numpy(), a.astype(np.float32).argmax(axis=1)):
            raise AssertionError("argmax(dim=1) differs")
        return m + 2 * n + 1
    if name == "matmul":
        a, b, bias = rng.standard_normal((m, k)), rng.standard_normal((k, n)), rng.standard_normal(n)
        ta, tb = clnet.tensor(a.astype(np.float32)), clnet.tensor(b.astype(np.float32))
        _close((ta @ tb).numpy(), a @ b, "a @ b")
        tw = clnet.tensor(b.T.astype(np.float32))
        _close(F.linear(ta, tw, clnet.tensor(bias.astype(np.float32))).relu().numpy(),
               np.maximum(a @ b + bias, 0), "relu(linear)")
        return 2 * m * n
    if name == "autograd":
        x, w = rng.standard_normal((m, k)), rng.standard_normal((k, n))
        tx = clnet.tensor(x.astype(np.float32))
        tw = clnet.tensor(w.astype(np.float32), requires_grad=True)
        loss = (tx @ tw).relu().sum()
        loss.backward()
        _close(tw.grad.numpy(), x.T @ ((x @ w) > 0).astype(np.float64), "d relu(x @ w).sum() / dw")
        with clnet.no_grad():
            if (tx @ tw).requires_grad:
                raise AssertionError("no_grad() in this thread did not hold")
        return k * n
    if name == "conv":
        x, w = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, 3, 3))
        got = F.conv2d(clnet.tensor(x.astype(np.float32)), clnet.tensor(w.astype(np.float32)), padding=1).numpy()
        xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
        win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))  # N C H W kh kw
        _close(got, np.einsum("nchwij,ocij->nohw", win, w), "conv2d", rtol=1e-4, atol=1e-4)
        pooled = F.max_pool2d(clnet.tensor(x.astype(np.float32)), 2).numpy()
        _close(pooled, x[:, :, :6, :6].reshape(2, 3, 3, 2, 3, 2).max(axis=(3, 5)), "max_pool2d")
        return got.size + pooled.size
    if name == "softmax":
        z, y = rng.standard_normal((m, n)), rng.integers(0, n, size=m)
        tz = clnet.tensor(z.astype(np.float32))
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        _close(F.softmax(tz, dim=1).numpy(), p, "softmax")
        _close(F.cross_entropy(tz, clnet.tensor(y.astype(np.int64))).item(),
               -np.log(p[np.arange(m), y]).mean(), "cross_entropy")
        return m * n + 1
    if name == "indexing":
        a = rng.standard_normal((m, n))
        t = clnet.tensor(a.astype(np.float32))
        _close(t[t > 0].numpy(), a.astype(np.float32)[a.astype(np.float32) > 0], "x[x > 0]")
        c = t.clone()
        c[c < 0] = 0
        _close(c.numpy(), np.maximum(a, 0), "x[x < 0] = 0")
        _close(t[1:, ::2].numpy(), a[1:, ::2], "x[1:, ::2]")
        return 3 * m * n
    if name == "movement":
        a = rng.standard_normal((m, k, n))
        t = clnet.tensor(a.astype(np.float32))
        _close(t.permute(2, 0, 1).reshape(n, -1).numpy(), a.transpose(2, 0, 1).reshape(n, -1), "permute+reshape")
        _close(t.transpose(0, 1).sum(dim=0).numpy(), a.sum(axis=1), "transpose+sum")
        return a.size + m * n
    if name == "random":
        r = clnet.rand(4096).numpy()
        if not (r.min() >= 0 and r.max() < 1 and abs(r.mean() - 0.5) < 0.03):
            raise AssertionError(f"rand: min {r.min()}, max {r.max()}, mean {r.mean()}")
        return r.size
    if name == "optim":
        lin = clnet.nn.Linear(k, n)
        opt = clnet.optim.SGD(lin.parameters(), lr=0.1)
        w0, b0 = lin.weight.detach().numpy().astype(np.float64), lin.bias.detach().numpy().astype(np.float64)
        x = rng.standard_normal((m, k))
        opt.zero_grad()
        lin(clnet.tensor(x.astype(np.float32))).sum().backward()
        opt.step()
        _close(lin.weight.detach().numpy(), w0 - 0.1 * np.tile(x.sum(axis=0), (n, 1)), "SGD step (weight)")
        _close(lin.bias.detach().numpy(), b0 - 0.1 * m, "SGD step (bias)")
        return k * n + n
    if name == "nn_eval":
        net = shared.eval_net()
        x = rng.standard_normal((m, 12))
        w1, b1 = net[0].weight.detach().numpy(), net[0].bias.detach().numpy()
        w2, b2 = net[2].weight.detach().numpy(), net[2].bias.detach().numpy()
        with clnet.no_grad():
            got = net(clnet.tensor(x.astype(np.float32))).numpy()
        _close(got, np.maximum(x @ w1.T + b1, 0) @ w2.T + b2, "shared eval-mode module")
        return got.size
    if name == "keras_predict":
        model = shared.keras()
        x = rng.standard_normal((m, 6)).astype(np.float32)
        got = model.predict(x, verbose=0) if m % 2 else np.asarray(model(x))
        (k1, c1), (k2, c2) = model.layers[0].get_weights(), model.layers[1].get_weights()
        _close(got, np.maximum(x @ k1 + c1, 0) @ k2 + c2, "shared Keras model")
        return got.size
    raise ValueError(f"unknown family {name!r}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--iterations", type=int, default=2, help="rounds over the families per thread")
    ap.add_argument("--seconds", type=float, default=0, help="run rounds until this many seconds passed")
    ap.add_argument("--families", default="all", help="comma-separated subset of: " + ", ".join(FAMILIES))
    ap.add_argument("--switch-interval", type=float, default=1e-5,
                    help="sys.setswitchinterval: how often Python may switch threads (small = more interleaving)")
    args = ap.parse_args(argv)
    families = list(FAMILIES) if args.families == "all" else [f for f in args.families.split(",") if f]
    sys.setswitchinterval(args.switch_interval)

    start = threading.Barrier(args.threads)
    shared = Shared()
    failures, checked, rounds, devices = [], [0], [0], set()
    lock = threading.Lock()
    t0 = time.perf_counter()

    def worker(index):
        rng = np.random.default_rng(1000 + index)
        order = families[index % len(families):] + families[:index % len(families)]
        start.wait()  # the process's first clnet call happens here, in every thread at once
        first = clnet.tensor(np.ones(3, np.float32))
        with lock:
            devices.add(id(first.device))
        r = 0
        while (r < args.iterations) if not args.seconds else (time.perf_counter() - t0 < args.seconds):
            for fam in order:
                try:
                    count = _family(fam, rng, shared)
                    with lock:
                        checked[0] += count
                except Exception as err:  # noqa: BLE001  (every failure is reported, none stops the others)
                    with lock:
                        failures.append(f"thread {index} round {r} {fam}: {type(err).__name__}: {err}")
                        if len(failures) <= 3:
                            failures.append(traceback.format_exc(limit=6))
            with lock:
                rounds[0] += 1
            r += 1

    threads = [threading.Thread(target=worker, args=(i,), name=f"stress-{i}") for i in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = dict(threads=args.threads, rounds=rounds[0], families=families, values_checked=checked[0],
                  failures=len([f for f in failures if not f.startswith("Traceback")]),
                  device_objects=len(devices), device=str(clnet.backend.default_device()),
                  seconds=round(time.perf_counter() - t0, 1))
    for f in failures[:20]:
        print(f, file=sys.stderr)
    print(json.dumps(report))
    return 0 if not failures and len(devices) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())

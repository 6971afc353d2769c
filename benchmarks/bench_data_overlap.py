"""Does data loading overlap compute? A training loop whose batches cost as much to load as to compute.

The model is an MLP 784-512-512-10 trained with Adam on batches of 256 (the lecture's "data is here, model
is there" case): one step is forward, cross-entropy, backward, update and `loss.item()` (a wait for the
device every step, as most training loops print or log the loss). The dataset returns whole batches
(`__getitems__`, as PyTorch's fetcher uses it) after a loading cost L made equal to the measured step time
C: `--load io` sleeps (reading files, decoding on another device: the GIL is free), `--load cpu` runs
numpy work on this process's core (decoding, augmenting: competes with PoCL for the CPU).

Contenders, each one epoch of --steps steps (median of --reps, in alternation):
  compute     the step alone, batches already on the device                        (C)
  load        the DataLoader alone, no step                                         (L)
  serial      DataLoader(num_workers=0) + step: loading then computing               (expect L + C)
  workers     DataLoader(num_workers=2, persistent) + step: workers load ahead       (expect max(L, C))
  tf.data     Dataset.map(load, num_parallel_calls=2).prefetch(2) + step (threads)  (expect max(L, C))
  torch ...   the same loops with PyTorch's DataLoader and model, for reference

    python benchmarks/bench_data_overlap.py                   # --load io
    python benchmarks/bench_data_overlap.py --load cpu --reps 5
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from common import alternate, header, load_torch, median, open_device, table

BATCH, IN, HIDDEN, OUT = 256, 784, 512, 10


class Batches:
    """Batches of (x, y) that cost `seconds` to load each (sleep or numpy work), read whole (__getitems__)."""

    def __init__(self, n_batches, seconds, kind, seed=0):
        rng = np.random.default_rng(seed)
        self.x = rng.standard_normal((n_batches * BATCH, IN), dtype=np.float32)
        self.y = rng.integers(0, OUT, n_batches * BATCH)
        self.seconds, self.kind = seconds, kind
        self.work = 1

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]

    def load(self, indices):
        if self.kind == "io":
            time.sleep(self.seconds)
        else:
            acc = np.zeros(4096, np.float32)
            for _ in range(self.work):
                acc = np.sin(acc + 1.0)
        idx = np.asarray(indices)
        return self.x[idx], self.y[idx]

    def __getitems__(self, indices):
        x, y = self.load(indices)
        return list(zip(x, y))

    def calibrate(self):
        """cpu: the number of numpy passes that takes `seconds` on this core."""
        if self.kind == "cpu":
            self.work = 100
            t = time.perf_counter()
            self.load(range(BATCH))
            per = (time.perf_counter() - t) / 100
            self.work = max(1, int(self.seconds / per))


def clnet_parts(dev, data):
    import clnet
    from clnet import nn
    from clnet.utils.data import DataLoader

    clnet.manual_seed(0)
    model = nn.Sequential(nn.Linear(IN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
                          nn.Linear(HIDDEN, OUT)).to(dev)
    opt = clnet.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    def step(xb, yb):
        loss = loss_fn(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    n = len(data) // BATCH
    resident = [(clnet.tensor(data.x[i * BATCH:(i + 1) * BATCH], device=dev),
                 clnet.tensor(data.y[i * BATCH:(i + 1) * BATCH], device=dev)) for i in range(n)]
    serial = DataLoader(data, batch_size=BATCH, device=dev)
    workers = DataLoader(data, batch_size=BATCH, num_workers=2, persistent_workers=True, device=dev)
    ds = clnet.data.Dataset.range(n).map(lambda i: data.load(range(int(i) * BATCH, (int(i) + 1) * BATCH)),
                                         num_parallel_calls=2).prefetch(2)
    return {
        "compute": lambda: [step(x, y) for x, y in resident],
        "load": lambda: [None for _ in serial],
        "serial": lambda: [step(x, y) for x, y in serial],
        "workers": lambda: [step(x, y) for x, y in workers],
        "tf.data": lambda: [step(x, y) for x, y in ds],
    }


def torch_parts(torch, data):
    from torch import nn
    from torch.utils.data import DataLoader

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(IN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
                          nn.Linear(HIDDEN, OUT))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    def step(xb, yb):
        loss = loss_fn(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    serial = DataLoader(data, batch_size=BATCH)
    workers = DataLoader(data, batch_size=BATCH, num_workers=2, persistent_workers=True)
    return {"torch serial": lambda: [step(x, y) for x, y in serial],
            "torch workers": lambda: [step(x, y) for x, y in workers]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None)
    ap.add_argument("--load", choices=("io", "cpu"), default="io")
    ap.add_argument("--steps", type=int, default=16, help="steps per timed epoch")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args(argv)
    dev = open_device(args.device)
    torch = load_torch(not args.no_torch)
    header(f"data loading overlapped with compute (--load {args.load}, {args.steps} steps of {BATCH})", dev, torch)
    data = Batches(args.steps, 0.0, args.load)
    probe = clnet_parts(dev, data)
    for _ in range(2):
        probe["compute"]()
    compute = median([_timed(probe["compute"]) for _ in range(3)]) / args.steps
    data.seconds = compute
    data.calibrate()
    print(f"step (compute) {compute * 1e3:.1f} ms; loading cost per batch set to the same "
          f"({'sleep' if args.load == 'io' else f'{data.work} numpy passes'})")
    contenders = clnet_parts(dev, data)
    if torch is not None:
        torch.set_num_threads(1)  # PyTorch's step on one core, so its loader has the other
        contenders.update(torch_parts(torch, data))
    times = alternate(contenders, args.reps, warmup=1)
    per = {k: median(v) / args.steps * 1e3 for k, v in times.items()}
    c, ld = per["compute"], per["load"]
    rows = []
    for name, ms in per.items():
        rows.append({"loop": name, "ms/step": ms, "vs C+L": ms / (c + ld), "vs max(C,L)": ms / max(c, ld)})
    table(rows, ["loop", "ms/step", "vs C+L", "vs max(C,L)"],
          {"ms/step": "{:.1f}", "vs C+L": "{:.2f}", "vs max(C,L)": "{:.2f}"})


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    main()

"""ResNet-18 (CIFAR variant) training step, batch 32, 32x32: clnet beside PyTorch CPU eager, in one run.

One step: forward, cross-entropy, zero_grad, backward, SGD (lr 0.1, momentum 0.9, weight decay 5e-4), then a
wait for the device. Both models are built by the same code (benchmarks/models.py) and start from the same
weights (PyTorch's initialisation, loaded into clnet); the first losses are checked equal before timing.
Contenders alternate step by step; medians. `torch` runs with one thread per core (its default here),
`torch1` with one thread; the ratio in the issue's target is against `torch` (default threads), the one
against the faster of the two is printed too.

    python benchmarks/bench_resnet.py                      # batch 32, 7 timed steps
    python benchmarks/bench_resnet.py --reps 3 --batch 8   # quick
    python benchmarks/bench_resnet.py --profile            # + clnet's time per op kind (synchronising)
"""
from __future__ import annotations

import argparse

import numpy as np

from common import alternate, header, load_torch, median, open_device, table
from models import resnet18_cifar

import clnet  # noqa: E402


def make_pair(torch, device, batch, rng):
    torch.manual_seed(0)
    tm = resnet18_cifar(torch.nn, torch.nn.functional)
    cm = resnet18_cifar(clnet.nn, clnet.nn.functional).to(device)
    cm.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    x = rng.standard_normal((batch, 3, 32, 32), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    return tm, cm, x, y


def step_fn(fw, model, x, y, device=None):
    F = fw.nn.functional
    opt = fw.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    if fw.__name__ == "torch":
        xb, yb = fw.from_numpy(x), fw.from_numpy(y)
    else:
        xb, yb = clnet.tensor(x, device=device), clnet.tensor(y, device=device)

    def step():
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device is not None:
            loss.item()
            device.synchronize()
        return loss
    return step


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--no-torch1", action="store_true", help="skip PyTorch on one thread")
    args = ap.parse_args(argv)
    torch = load_torch()
    device = open_device(args.device)
    header(f"ResNet-18 (CIFAR) training step, batch {args.batch}: clnet vs PyTorch CPU eager", device, torch)
    rng = np.random.default_rng(0)
    tm, cm, x, y = make_pair(torch, device, args.batch, rng)
    tstep = step_fn(torch, tm, x, y)
    cstep = step_fn(clnet, cm, x, y, device)
    lt, lc = float(tstep().item()), float(cstep().item())   # the first step of each, from the same weights
    print(f"first loss: torch {lt:.5f}, clnet {lc:.5f}")
    if not abs(lt - lc) <= 1e-3 * max(1.0, abs(lt)):
        raise AssertionError(f"clnet's first loss {lc} differs from PyTorch's {lt}")
    contenders = {"clnet": cstep, "torch": tstep}
    if not args.no_torch1:
        contenders["torch1"] = tstep
    times = alternate(contenders, args.reps, warmup=1, torch=torch)
    med = {k: median(v) for k, v in times.items()}
    best = min(med["torch"], med.get("torch1", med["torch"]))
    rows = [{"contender": k, "ms/step (median)": v * 1e3, "min ms": min(times[k]) * 1e3} for k, v in med.items()]
    table(rows, list(rows[0]), {"ms/step (median)": "{:.1f}", "min ms": "{:.1f}"})
    print(f"clnet / torch (default threads) = {med['clnet'] / med['torch']:.2f}x; "
          f"clnet / best torch = {med['clnet'] / best:.2f}x")


if __name__ == "__main__":
    main()

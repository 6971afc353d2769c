"""Training steps of the models people train, clnet (eager and clnet.compile) beside PyTorch CPU eager, in one run.

    resnet18  ResNet-18, CIFAR variant, batch 32 of 32x32 images, SGD (lr 0.1, momentum 0.9, wd 5e-4)
    lstm      word-level LSTM language model (PyTorch's word_language_model): 2 layers, 256 hidden, 256-d
              embeddings, 10000 words, sequence 35, batch 20, SGD lr 20 with gradient clipping at 0.25
    gpt       nanoGPT at its Shakespeare-character size: 6 layers, 6 heads, 384 wide, context 256, batch 8,
              65 characters, AdamW (lr 1e-3, betas (0.9, 0.99), wd 0.1)

Both frameworks' models are built by the same code (benchmarks/models.py, only the module namespace differs)
and start from the same weights (PyTorch's initialisation loaded into clnet); the first losses are checked
equal before timing. One timed unit is one training step followed by a wait for the device; the contenders
alternate step by step and the medians are reported. `torch` runs with one thread per core (its default
here), `torch1` with one thread; the issue's targets are against `torch` (default threads), the ratio
against the faster of the two is printed too. `clnet+compile` is the same step under clnet.compile (its
first calls warm up and trace; they are run before timing).

    python benchmarks/bench_models.py --model resnet18           # 7 timed steps
    python benchmarks/bench_models.py --model lstm --reps 11
    python benchmarks/bench_models.py --model gpt --no-compile --batch 4
"""
from __future__ import annotations

import argparse

import numpy as np

from common import alternate, header, load_torch, median, open_device, table
from models import gpt, lstm_lm, resnet18_cifar

import clnet  # noqa: E402


# --- the three workloads: (model builder, data, loss of one step, optimizer) -----------------------------------
class Workload:
    def __init__(self, name, build, batch, make_data, loss, optimizer, clip=None, state_map=None):
        self.name, self.build, self.batch, self.make_data = name, build, batch, make_data
        self.loss, self.optimizer, self.clip = loss, optimizer, clip


def _resnet(batch):
    def data(rng, fw, device):
        x = rng.standard_normal((batch, 3, 32, 32), dtype=np.float32)
        y = rng.integers(0, 10, batch)
        return _put(fw, device, x, y)
    return Workload("ResNet-18 (CIFAR)", lambda fw: resnet18_cifar(fw.nn, fw.nn.functional), batch, data,
                    lambda fw, m, d: fw.nn.functional.cross_entropy(m(d[0]), d[1]),
                    lambda fw, params: fw.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4))


def _lstm(batch, seq=35, ntoken=10000):
    def data(rng, fw, device):
        src = rng.integers(0, ntoken, (seq, batch))
        tgt = rng.integers(0, ntoken, (seq * batch,))
        h = np.zeros((2, batch, 256), np.float32)
        return _put(fw, device, src, tgt, h, h.copy())

    def loss(fw, m, d):
        out, _ = m(d[0], (d[2], d[3]))
        return fw.nn.functional.cross_entropy(out, d[1])
    return Workload("LSTM LM", lambda fw: lstm_lm(fw.nn, ntoken), batch, data, loss,
                    lambda fw, params: fw.optim.SGD(params, lr=20.0), clip=0.25)


def _gpt(batch, block=256, vocab=65):
    def data(rng, fw, device):
        idx = rng.integers(0, vocab, (batch, block))
        tgt = rng.integers(0, vocab, (batch, block))
        return _put(fw, device, idx, np.arange(block), tgt)
    return Workload("nanoGPT", lambda fw: gpt(fw.nn, fw.nn.functional, vocab, block), batch, data,
                    lambda fw, m, d: m(*d),
                    lambda fw, params: fw.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1))


WORKLOADS = {"resnet18": (_resnet, 32), "lstm": (_lstm, 20), "gpt": (_gpt, 8)}


def _put(fw, device, *arrays):
    if fw.__name__ == "torch":
        return tuple(fw.from_numpy(a) for a in arrays)
    return tuple(clnet.tensor(a, device=device) for a in arrays)


def make_step(fw, wl, model, data, device=None):
    opt = wl.optimizer(fw, model.parameters())

    def step():
        loss = wl.loss(fw, model, data)
        opt.zero_grad()
        loss.backward()
        if wl.clip is not None:
            fw.nn.utils.clip_grad_norm_(model.parameters(), wl.clip)
        opt.step()
        return loss
    if device is None:
        return step

    def run(fn):
        def timed():
            loss = fn()
            device.synchronize()
            return loss
        return timed
    return run(step), step


def torch_reference(wl, torch):
    """The seeded PyTorch model every contender starts from, its weights as numpy arrays, and the seed of the
    data: one place, so that every script's contenders share the same first loss."""
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    tm = wl.build(torch)
    state = {k: v.detach().numpy() for k, v in tm.state_dict().items()}
    return tm, state, int(rng.integers(1 << 30))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=sorted(WORKLOADS), default="resnet18")
    ap.add_argument("--device", default=None)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--no-torch1", action="store_true", help="skip PyTorch on one thread")
    ap.add_argument("--no-compile", action="store_true", help="skip clnet.compile")
    ap.add_argument("--no-eager", action="store_true", help="skip clnet eager")
    args = ap.parse_args(argv)
    make, default_batch = WORKLOADS[args.model]
    wl = make(args.batch or default_batch)
    torch = load_torch()
    device = open_device(args.device)
    header(f"{wl.name} training step, batch {wl.batch}: clnet (eager, compiled) vs PyTorch CPU eager", device, torch)
    tm, state, seed = torch_reference(wl, torch)
    tdata = wl.make_data(np.random.default_rng(seed), torch, None)
    tstep = make_step(torch, wl, tm, tdata)

    contenders = {}
    first = {}
    for kind in ("eager", "compile"):
        if (kind == "eager" and args.no_eager) or (kind == "compile" and args.no_compile):
            continue
        cm = wl.build(clnet).to(device)
        cm.load_state_dict(state)
        cdata = wl.make_data(np.random.default_rng(seed), clnet, device)
        timed, raw = make_step(clnet, wl, cm, cdata, device)
        if kind == "compile":
            compiled = clnet.compile(raw)

            def timed(compiled=compiled):
                loss = compiled()
                device.synchronize()
                return loss
        first[kind] = float(timed().item())
        contenders["clnet" if kind == "eager" else "clnet+compile"] = timed
    first["torch"] = float(tstep().item())
    print("first losses: " + ", ".join(f"{k} {v:.5f}" for k, v in first.items()))
    for k, v in first.items():
        if not abs(v - first["torch"]) <= 2e-3 * max(1.0, abs(first["torch"])):
            raise AssertionError(f"clnet ({k}) first loss {v} differs from PyTorch's {first['torch']}")
    if "clnet+compile" in contenders:   # warm-up and trace before the clock
        for _ in range(2):
            contenders["clnet+compile"]()
    contenders["torch"] = tstep
    if not args.no_torch1:
        contenders["torch1"] = tstep
    times = alternate(contenders, args.reps, warmup=1, torch=torch)
    med = {k: median(v) for k, v in times.items()}
    best = min(med["torch"], med.get("torch1", med["torch"]))
    rows = [{"contender": k, "ms/step (median)": v * 1e3, "min ms": min(times[k]) * 1e3,
             "vs torch": v / med["torch"], "vs best torch": v / best} for k, v in med.items()]
    table(rows, list(rows[0]), {"ms/step (median)": "{:.1f}", "min ms": "{:.1f}", "vs torch": "{:.2f}x",
                                "vs best torch": "{:.2f}x"})


if __name__ == "__main__":
    main()

"""The LSTM LM step (bench_models.py's `lstm`) with W_hh packed once per layer call (clnet.ops.matmul.pack_b,
now) and packed at every time step (as before: each h W_hh^T and dG_t W_hh product packed its 1 MiB B
operand again, 140 pack launches a step), eager and compiled, alternated with PyTorch in one process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_rnn_prepack.py --reps 5
"""
from __future__ import annotations

import argparse
import types

import numpy as np

from common import alternate, header, load_torch, median, open_device, table
from bench_models import WORKLOADS, make_step, torch_reference

import clnet  # noqa: E402
from clnet.ops import rnn as _rnn  # noqa: E402

_PACK_ONCE = _rnn.pack_b


def _pack_per_step(b, M):
    """A PackedB without panels: mm_packed's GEMM packs B itself, at every product (the old behaviour)."""
    return types.SimpleNamespace(b=b.detach(), M=M, key=None, operand=None)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args(argv)
    make, batch = WORKLOADS["lstm"]
    wl = make(batch)
    torch = load_torch()
    dev = open_device(args.device)
    header(f"{wl.name} step, batch {wl.batch}: W_hh packed per step (before) vs once per layer (after)", dev, torch)
    tm, state, seed = torch_reference(wl, torch)
    contenders, first = {}, {}
    for when, pack in (("before", _pack_per_step), ("after", _PACK_ONCE)):
        for kind in ("eager", "compiled"):
            cm = wl.build(clnet).to(dev)
            cm.load_state_dict(state)
            cdata = wl.make_data(np.random.default_rng(seed), clnet, dev)
            _, raw = make_step(clnet, wl, cm, cdata, dev)
            fn = clnet.compile(raw) if kind == "compiled" else raw

            def timed(fn=fn, pack=pack):
                _rnn.pack_b = pack
                loss = fn()
                dev.synchronize()
                return loss
            name = f"clnet {kind} {when}"
            first[name] = float(timed().item())
            if kind == "compiled":
                for _ in range(2):   # trace and first replay under this packing
                    timed()
            contenders[name] = timed
    tdata = wl.make_data(np.random.default_rng(seed), torch, None)
    contenders["torch"] = make_step(torch, wl, tm, tdata)
    first["torch"] = float(contenders["torch"]().item())
    print("first losses: " + ", ".join(f"{k} {v:.5f}" for k, v in first.items()))
    times = alternate(contenders, args.reps, warmup=1, torch=torch)
    _rnn.pack_b = _PACK_ONCE
    med = {k: median(v) for k, v in times.items()}
    rows = [{"contender": k, "ms/step (median)": v * 1e3, "min ms": min(times[k]) * 1e3,
             "vs torch": v / med["torch"]} for k, v in med.items()]
    table(rows, list(rows[0]), {"ms/step (median)": "{:.1f}", "min ms": "{:.1f}", "vs torch": "{:.2f}x"})


if __name__ == "__main__":
    main()

"""Sum reductions in GB/s: clnet vs numpy and PyTorch CPU, side by side in one run.

Each round times every contestant once (`--reps` calls each, clnet synchronised at the end), in
alternation, so they share the machine's state; the table shows medians over rounds and ratios.
Cases: the 1-D sum of 16M float32 (issue 6's anchor), row sums and column sums (bias gradients) of a
4096 x 4096 matrix, and argmax along rows.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_reduce.py --device pocl
"""
from __future__ import annotations

import argparse

import numpy as np

from common import alternate, header, load_torch, median, open_device, repeated, table

import clnet  # noqa: E402
from clnet.ops import reduce as R  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--n", type=int, default=16 * 2**20, help="elements of the 1-D case")
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args(argv)
    dev = open_device(args.device)
    torch = load_torch(not args.no_torch)
    header("sum reductions, GB/s (bytes read / median time)", dev, torch)
    print(f"reduce_wg={dev.profile.reduce_wg}  compute units={dev.compute_units}; median of {args.rounds} "
          f"alternating rounds of {args.reps} calls each (other processes share the cores and memory bus)")
    rng = np.random.default_rng(0)
    side = 4096
    cases = []
    a = rng.standard_normal(args.n).astype(np.float32)
    cases.append((f"sum of {args.n / 2**20:.0f}M", a, lambda t: R.sum(t), lambda x: x.sum(),
                  lambda x: x.sum()))
    m = rng.standard_normal((side, side)).astype(np.float32)
    cases.append((f"sum({side}x{side}, 1)", m, lambda t: R.sum(t, 1), lambda x: x.sum(1),
                  lambda x: x.sum(1)))
    cases.append((f"sum({side}x{side}, 0)", m, lambda t: R.sum(t, 0), lambda x: x.sum(0),
                  lambda x: x.sum(0)))
    cases.append((f"argmax({side}x{side}, 1)", m, lambda t: R.argmax(t, 1), lambda x: x.argmax(1),
                  lambda x: x.argmax(1)))
    rows = []
    for name, host, f_cl, f_np, f_torch in cases:
        t = clnet.tensor(host, device=dev)
        got = f_cl(t).numpy()
        want = f_np(host.astype(np.float64)) if "argmax" not in name else f_np(host)
        assert np.allclose(got, want, rtol=1e-4, atol=1e-2), name
        f_cl(t)
        dev.synchronize()
        fns = {"clnet": repeated(lambda: f_cl(t), args.reps, dev.synchronize),
               "numpy": repeated(lambda: f_np(host), args.reps)}
        if torch is not None:
            tt = torch.from_numpy(host)
            fns["torch"] = repeated(lambda: f_torch(tt), args.reps)
        times = alternate(fns, args.rounds, warmup=0)
        gbs = {k: host.nbytes / (median(v) / args.reps) / 1e9 for k, v in times.items()}
        passes = R.plan(t.shape, t.strides, (0,) if name.endswith(", 0)") else
                        ((1,) if t.ndim == 2 else (0,)), dev, is_arg="argmax" in name)
        row = {"case": name, **{f"{k} GB/s": v for k, v in gbs.items()}, "x numpy": gbs["clnet"] / gbs["numpy"],
               "passes": " + ".join(f"{p.layout}[{p.nchunks}]" for p in passes)}
        if "torch" in gbs:
            row["x torch"] = gbs["clnet"] / gbs["torch"]
        rows.append(row)
    f1, f2 = "{:.1f}", "{:.2f}"
    table(rows, ["case", "clnet GB/s", "numpy GB/s", "torch GB/s", "x numpy", "x torch", "passes"],
          {"clnet GB/s": f1, "numpy GB/s": f1, "torch GB/s": f1, "x numpy": f2, "x torch": f2})


if __name__ == "__main__":
    main()

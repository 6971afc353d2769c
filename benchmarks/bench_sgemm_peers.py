"""SGEMM GFLOP/s on one OpenCL device: clnet beside CLBlast (pyclblast) and tinygrad, numpy as the anchor.

clnet, CLBlast and tinygrad run on the same device (PoCL by default: OCL_ICD_VENDORS is restricted to
one ICD because tinygrad takes the first platform); numpy/OpenBLAS runs on the host CPU. The contenders
alternate product by product; GFLOP/s = 2 n^3 / median time, each time including the wait for the
device. Every result is checked against numpy first. PyTorch's figures are in bench_matmul.py.
Target (issue 6): clnet >= 5x CLBlast and tinygrad at n = 1024 and 2048, >= 0.8x numpy.

Needs `apt-get install libclblast-dev && pip install pyclblast` for CLBlast and `pip install tinygrad`;
either missing is reported and skipped.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_sgemm_peers.py
    python benchmarks/bench_sgemm_peers.py --sizes 256,512,1024,2048,4096 --reps 5
"""
from __future__ import annotations

import argparse

import numpy as np

from common import alternate, header, load_tinygrad, max_rel_err, median, open_device, restrict_icd, synced, table


def load_clblast():
    try:
        import pyclblast
        return pyclblast, None
    except ImportError as err:
        return None, f"{err} (apt-get install libclblast-dev && pip install pyclblast)"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None)
    ap.add_argument("--sizes", default="256,512,1024,2048")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--icd", default="/etc/OpenCL/vendors/pocl.icd", help="the one OpenCL ICD all may see")
    ap.add_argument("--no-tinygrad", action="store_true")
    args = ap.parse_args(argv)
    vendors = restrict_icd(args.icd)
    tg, tg_why = load_tinygrad(not args.no_tinygrad and vendors is not None)
    import clnet
    import pyopencl.array as cla
    dev = open_device(args.device)
    header("SGEMM GFLOP/s on one OpenCL device beside CLBlast and tinygrad (numpy: host BLAS)", dev)
    clblast, cb_why = load_clblast()
    for name, mod, why in (("CLBlast", clblast, cb_why), ("tinygrad", tg, tg_why)):
        print(f"{name}: " + ("on the same device" if mod else f"skipped: {why}"))
    if tg:
        from tinygrad import Device, Tensor
        tg_sync = Device[Device.DEFAULT].synchronize
    rng = np.random.default_rng(0)
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        ref = a.astype(np.float64) @ b
        ta, tb = clnet.tensor(a, device=dev), clnet.tensor(b, device=dev)
        errs = {"clnet": max_rel_err((ta @ tb).numpy(), ref)}
        fns = {"clnet": synced(lambda: ta @ tb, dev), "numpy": lambda: a @ b}
        if clblast:
            q = dev.queue
            ca, cb = cla.to_device(q, a), cla.to_device(q, b)
            cc = cla.zeros(q, (n, n), np.float32)

            def run_clblast():
                clblast.gemm(q, n, n, n, ca, cb, cc, a_ld=n, b_ld=n, c_ld=n)
                q.finish()
            run_clblast()
            errs["clblast"] = max_rel_err(cc.get(), ref)
            fns["clblast"] = run_clblast
        if tg:
            xa, xb = Tensor(a).realize(), Tensor(b).realize()

            def run_tinygrad():
                (xa @ xb).realize()
                tg_sync()
            errs["tinygrad"] = max_rel_err((xa @ xb).numpy(), ref)
            fns["tinygrad"] = run_tinygrad
        bad = {k: e for k, e in errs.items() if not e < 1e-4}
        if bad:
            raise SystemExit(f"n={n}: results disagree with numpy (max rel err): {bad}")
        times = alternate(fns, args.reps, warmup=1)
        g = {k: 2.0 * n ** 3 / median(v) / 1e9 for k, v in times.items()}
        row = {"n": n, **{f"{k} GFLOP/s": v for k, v in g.items()}, "clnet/numpy": g["clnet"] / g["numpy"]}
        for k in ("clblast", "tinygrad"):
            if k in g:
                row[f"clnet/{k}"] = g["clnet"] / g[k]
        rows.append(row)
        print(f"  n={n}: clnet {g['clnet']:.1f} GFLOP/s", flush=True)
    peers = [k for k in ("clblast", "tinygrad") if (k == "clblast" and clblast) or (k == "tinygrad" and tg)]
    cols = ["n", "clnet GFLOP/s", "numpy GFLOP/s"] + [f"{k} GFLOP/s" for k in peers] + ["clnet/numpy"] + \
        [f"clnet/{k}" for k in peers]
    fmt = {c: "{:.1f}" for c in cols if c.endswith("GFLOP/s")}
    fmt.update({c: "{:.2f}" for c in cols if c.startswith("clnet/")})
    table(rows, cols, fmt)
    print("(ratios > 1 mean clnet is faster)")


if __name__ == "__main__":
    main()

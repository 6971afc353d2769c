"""Static graphs on disk, side by side: a model's forward pass run natively, from clnet's ONNX import, from
clnet.jit.load, and in onnxruntime (the file clnet.onnx.export wrote), plus what export/import/trace cost once.

Each contender runs the same weights on the same input, in alternation (see common.py), inference mode, and
waits for its result. The ratios are to clnet's native module: import and jit.load replay op rows in Python,
so what they add is host time per op.

    python benchmarks/bench_onnx.py
    python benchmarks/bench_onnx.py --device pocl --reps 30 --models mlp,cnn
"""
from __future__ import annotations

import argparse
import io
import os
import tempfile
import time

import numpy as np

from common import alternate, header, median, open_device, synced, table

import clnet  # noqa: E402
import clnet.nn as nn  # noqa: E402


def models():
    """name -> (module in eval mode, input shape, input dtype)."""
    clnet.manual_seed(0)

    class CNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.bn1 = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)
            self.c2, self.bn2 = nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32)
            self.fc = nn.Linear(32 * 8 * 8, 10)

        def forward(self, x):
            x = nn.functional.max_pool2d(clnet.relu(self.bn1(self.c1(x))), 2)
            x = nn.functional.max_pool2d(clnet.relu(self.bn2(self.c2(x))), 2)
            return self.fc(x.view(x.size(0), -1))

    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.lstm, self.out = nn.Embedding(1000, 64), nn.LSTM(64, 128), nn.Linear(128, 20)

        def forward(self, tokens):
            y, _ = self.lstm(self.emb(tokens))
            return self.out(y)

    return {
        "mlp": (nn.Sequential(nn.Linear(1000, 100), nn.ReLU(), nn.Linear(100, 10)).eval(), (64, 1000), np.float32),
        "cnn": (CNN().eval(), (32, 3, 32, 32), np.float32),
        "lstm": (Tagger().eval(), (35, 16), np.int64),
    }


def once(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--models", default="mlp,cnn,lstm")
    args = ap.parse_args(argv)
    dev = open_device(args.device)
    clnet.set_default_device(dev)
    try:
        import onnxruntime as ort
    except ImportError:
        ort = None
        print("(onnxruntime not installed: its columns are skipped)")
    header("static graphs on disk: native vs ONNX import vs jit.load vs onnxruntime", dev)
    rng = np.random.default_rng(0)
    rows, costs = [], []
    folder = tempfile.mkdtemp(prefix="clnet-bench-onnx-")
    for name in args.models.split(","):
        model, shape, dtype = models()[name]
        data = rng.integers(0, 1000, shape) if dtype == np.int64 else rng.standard_normal(shape)
        x = clnet.tensor(data.astype(dtype), device=dev)
        buf = io.BytesIO()
        with clnet.no_grad():
            _, t_export = once(lambda: clnet.onnx.export(model, x, buf))
            imported, t_import = once(lambda: clnet.onnx.load(buf.getvalue(), device=dev))
            traced, t_trace = once(lambda: clnet.jit.trace(model, x, check_trace=False))
            path = os.path.join(folder, f"{name}.pt")
            traced.save(path)
            loaded, t_load = once(lambda: clnet.jit.load(path, map_location=dev))
            expected = model(x).numpy()
            for what, m in (("onnx import", imported), ("jit.load", loaded)):
                err = float(np.abs(m(x).numpy() - expected).max())
                assert err < 1e-3, f"{name}: {what} differs from the native module by {err}"
            fns = {"native": synced(lambda: model(x), dev), "onnx import": synced(lambda: imported(x), dev),
                   "jit.load": synced(lambda: loaded(x), dev)}
            if ort is not None:
                session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
                feed = {session.get_inputs()[0].name: x.numpy()}
                fns["onnxruntime"] = lambda: session.run(None, feed)
            times = alternate(fns, args.reps, warmup=2)
        base = median(times["native"])
        for contender, ts in times.items():
            rows.append({"model": name, "contender": contender, "ms": median(ts) * 1e3, "x native": median(ts) / base})
        costs.append({"model": name, "export ms": t_export * 1e3, "import ms": t_import * 1e3,
                      "trace ms": t_trace * 1e3, "jit.load ms": t_load * 1e3, "file KB": len(buf.getvalue()) / 1e3})
    print("\nforward pass, median of", args.reps)
    table(rows, ["model", "contender", "ms", "x native"], {"ms": "{:.3f}", "x native": "{:.2f}"})
    print("\none-off costs (first call: kernel builds included)")
    table(costs, ["model", "export ms", "import ms", "trace ms", "jit.load ms", "file KB"],
          {c: "{:.1f}" for c in ("export ms", "import ms", "trace ms", "jit.load ms", "file KB")})


if __name__ == "__main__":
    main()

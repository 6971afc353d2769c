"""Keras's simple MNIST convnet (keras.io), fit on the digits: clnet.keras (jit_compile="auto" and
run_eagerly=True) beside Keras 3 on PyTorch, seconds per epoch, in one process, epochs alternating.

The model and data of examples/keras_mnist_convnet.py: Conv2D(32, 3, relu) - MaxPooling2D(2) - Conv2D(64, 3,
relu) - MaxPooling2D(2) - Flatten - Dropout(0.5) - Dense(10, softmax); categorical_crossentropy, adam,
batch 32, metrics=["accuracy"], on scikit-learn's digits upsampled to 28x28 (1,797 images: 1,438 train).
Each contender fits one warm-up epoch first (kernel builds, traces), then `--epochs` timed epochs, one
epoch of each in turn. Issue 12's target: clnet with jit_compile="auto" at most 0.7x Keras 3 on PyTorch.
Besides wall seconds, each epoch's process CPU seconds (all threads: PoCL's workers, PyTorch's) are printed: on a
shared, loaded machine they move far less than wall time, so their ratio is the steadier comparison.

    KERAS_BACKEND=torch python benchmarks/bench_keras_convnet.py --epochs 5
"""
from __future__ import annotations

import argparse
import os
import resource
import time

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402

from common import header, median, open_device, table  # noqa: E402


def _cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def data():
    from clnet import keras as ck
    (x, y), _ = ck.datasets.digits.load_data()
    x = np.expand_dims(x.astype("float32") / 255, -1)
    return x, np.eye(10, dtype=np.float32)[y]


def build(keras, **compile_args):
    keras.utils.set_random_seed(0)
    L = keras.layers
    model = keras.Sequential([keras.Input(shape=(28, 28, 1)), L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(2),
                              L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(2), L.Flatten(), L.Dropout(0.5),
                              L.Dense(10, activation="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"], **compile_args)
    return model


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--no-keras", action="store_true", help="skip Keras 3 on PyTorch")
    args = ap.parse_args(argv)
    import clnet
    from clnet import keras as ck
    dev = open_device(args.device)
    clnet.set_default_device(dev)
    torch = None
    contenders = {"clnet jit auto": build(ck, jit_compile="auto"), "clnet eager": build(ck, run_eagerly=True)}
    if not args.no_keras:
        import keras
        import torch
        torch.set_num_threads(os.cpu_count() or 1)
        contenders["keras3-torch"] = build(keras)
    header("Keras simple convnet, fit seconds per epoch (digits, 1,438 images, batch 32)", dev, torch)
    x, y = data()
    x, y = x[:1438], y[:1438]
    times = {k: [] for k in contenders}
    cpu = {k: [] for k in contenders}
    for name, model in contenders.items():   # warm-up epoch
        model.fit(x, y, batch_size=args.batch_size, epochs=1, verbose=0, shuffle=False)
    for _ in range(args.epochs):
        for name, model in contenders.items():
            c0, t0 = _cpu_seconds(), time.perf_counter()
            hist = model.fit(x, y, batch_size=args.batch_size, epochs=1, verbose=0, shuffle=False)
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(_cpu_seconds() - c0)
            last = hist.history
        del last
    rows = []
    ref = median(times["keras3-torch"]) if "keras3-torch" in times else None
    ref_cpu = median(cpu["keras3-torch"]) if "keras3-torch" in cpu else None
    for name, ts in times.items():
        row = {"contender": name, "s/epoch": median(ts), "min": min(ts), "cpu s/epoch": median(cpu[name])}
        if ref:
            row["/ keras3-torch"] = median(ts) / ref
            row["cpu / keras3-torch"] = median(cpu[name]) / ref_cpu
        rows.append(row)
    cols = ["contender", "s/epoch", "min"] + (["/ keras3-torch"] if ref else []) + ["cpu s/epoch"] + \
        (["cpu / keras3-torch"] if ref else [])
    table(rows, cols, {"s/epoch": "{:.3f}", "min": "{:.3f}", "/ keras3-torch": "{:.2f}", "cpu s/epoch": "{:.3f}",
                       "cpu / keras3-torch": "{:.2f}"})
    comp = contenders["clnet jit auto"].__dict__.get("_compiled_steps", {}).get("train")
    if comp is not None:
        print(f"clnet train_step: {comp.stats.replays} replays, {comp.stats.eager_calls} eager calls, launches "
              f"{comp.stats.launches_traced} -> {comp.stats.launches_replayed}"
              + (f"; ran eagerly because: {comp.stats.state_changes[0]}" if comp.stats.state_changes else ""))
    print(f"load average {os.getloadavg()[0]:.1f} (2 cores); target clnet jit auto <= 0.7x keras3-torch")


if __name__ == "__main__":
    main()

"""The lecture's Keras snippet on clnet: "Keras can handle the training loop for you!"

A two-layer Dense model trained on random data with compile/fit (MSE loss, SGD with learning rate 1e-1).
Only the import changed from the lecture's `tf.keras`; `tf.nn.relu` becomes `clnet.relu` (or "relu").

    python examples/keras_dense.py              # the lecture's N, D, H = 64, 1000, 100 and 50 epochs
    python examples/keras_dense.py --small --device cpu
"""
from __future__ import annotations

import argparse

import numpy as np

import clnet
from clnet import keras


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="tiny sizes (for tests)")
    ap.add_argument("--device", default=None, help="clnet device spec (default: clnet's default device)")
    ap.add_argument("--verbose", default="auto", help="fit's verbose: auto, 0, 1 or 2")
    args = ap.parse_args(argv)
    if args.device:
        clnet.set_default_device(args.device)
    keras.utils.set_random_seed(0)

    N, D, H = (16, 50, 20) if args.small else (64, 1000, 100)
    x = clnet.convert_to_tensor(np.random.randn(N, D), np.float32)
    y = clnet.convert_to_tensor(np.random.randn(N, D), np.float32)
    model = keras.Sequential()
    model.add(keras.layers.Dense(H, input_shape=(D,), activation=clnet.relu))
    model.add(keras.layers.Dense(D))
    optimizer = keras.optimizers.SGD(1e-1)
    model.compile(loss=keras.losses.MeanSquaredError(), optimizer=optimizer)
    history = model.fit(x, y, epochs=50, batch_size=N,
                        verbose=args.verbose if args.verbose == "auto" else int(args.verbose))
    losses = history.history["loss"]
    print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f} after {len(losses)} epochs")
    return losses


if __name__ == "__main__":
    main()

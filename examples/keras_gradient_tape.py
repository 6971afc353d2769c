"""The lecture's Keras snippet with a hand-written loop on clnet: model(x) inside a GradientTape, then
`optimizer.apply_gradients(zip(gradients, model.trainable_variables))`.

Each step only enqueues kernels; the losses are kept as device scalars and read back once at the end.

    python examples/keras_gradient_tape.py            # the lecture's N, D, H = 64, 1000, 100 and 50 steps
    python examples/keras_gradient_tape.py --small --device cpu
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

    losses = []
    for t in range(50):
        with clnet.GradientTape() as tape:
            y_pred = model(x)
            loss = keras.losses.MeanSquaredError()(y_pred, y)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        losses.append(loss)
    losses = [float(v) for v in losses]  # one wait for the device, after the loop
    print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f} after {len(losses)} steps")
    return losses


if __name__ == "__main__":
    main()

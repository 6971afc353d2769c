"""The lecture's tf.distribute slide on clnet: a Keras model built and compiled inside strategy.scope().

The snippet is the slide's (https://www.tensorflow.org/tutorials/distribute/keras), with `import clnet as tf`.
It then trains on real handwritten digits (scikit-learn's, shaped like MNIST by keras.datasets.digits, no
download) through a tf.data pipeline, batched with the global batch size, as the tutorial does.

    python examples/tf_mirrored_strategy.py                           # MirroredStrategy: this process's device
    clnet launch -n 2 examples/tf_mirrored_strategy.py --multi-worker  # two ranks, gradients averaged over MPI
"""
from __future__ import annotations

import argparse

import numpy as np

import clnet as tf


def build(strategy):
    # --- the slide -------------------------------------------------------------------------------------
    with strategy.scope():
        model = tf.keras.Sequential([
            tf.keras.layers.Conv2D(32, 3, activation='relu', input_shape=(28, 28, 1)),
            tf.keras.layers.MaxPooling2D(),
            tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(64, activation='relu'),
            tf.keras.layers.Dense(10)
        ])

        model.compile(loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      optimizer=tf.keras.optimizers.Adam(),
                      metrics=['accuracy'])
    return model


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--multi-worker", action="store_true", help="MultiWorkerMirroredStrategy over the MPI ranks")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size-per-replica", type=int, default=32)
    ap.add_argument("--train-images", type=int, default=None, help="use only this many training images")
    args = ap.parse_args(argv)
    tf.keras.utils.set_random_seed(0)

    strategy = tf.distribute.MultiWorkerMirroredStrategy() if args.multi_worker else tf.distribute.MirroredStrategy()
    print(f"Number of devices: {strategy.num_replicas_in_sync}")
    model = build(strategy)

    (x_train, y_train), (x_test, y_test) = tf.keras.datasets.digits.load_data()
    if args.train_images:
        x_train, y_train = x_train[:args.train_images], y_train[:args.train_images]
    global_batch = args.batch_size_per_replica * strategy.num_replicas_in_sync

    def scale(image, label):
        return (image.astype(np.float32) / 255.0)[..., None], label

    train = tf.data.Dataset.from_tensor_slices((x_train, y_train)).map(scale).cache().shuffle(1000, seed=0)\
        .batch(global_batch).prefetch(tf.data.AUTOTUNE)
    test = tf.data.Dataset.from_tensor_slices((x_test, y_test)).map(scale).batch(global_batch)
    history = model.fit(train, epochs=args.epochs, verbose=2 if strategy.shard()[0] == 0 else 0)
    loss, accuracy = model.evaluate(test, verbose=0)
    if strategy.shard()[0] == 0:
        print(f"test loss {loss:.4f}, test accuracy {accuracy:.4f}")
    return history, accuracy


if __name__ == "__main__":
    main()

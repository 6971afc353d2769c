"""2-rank MultiWorkerMirroredStrategy: Keras fit over MPI ranks equals one process on the global batch."""
from __future__ import annotations

import numpy as np
import pytest

import clnet
import clnet as tf
import clnet.distributed as dist
from clnet import keras

from mpi_support import group, needs_ranks

pytestmark = needs_ranks


def _model():
    return keras.Sequential([keras.Input(shape=(6,)), keras.layers.Dense(12, activation="relu"),
                             keras.layers.Dense(3)])


def _compile(model):
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])


def _gathered(arr):
    _, world = group()
    out = [clnet.zeros(arr.shape) for _ in range(world)]
    dist.all_gather(out, clnet.tensor(arr.astype(np.float32)))
    return [o.numpy() for o in out]


def test_multi_worker_fit_matches_one_process(device):
    rank, world = group()
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    assert strategy.num_replicas_in_sync == world and strategy.shard() == (rank, world)
    rng = np.random.default_rng(3)  # the same data on every rank
    x = rng.standard_normal((45, 6)).astype(np.float32)  # 45: the last global batch (13) splits 7 + 6
    y = rng.integers(0, 3, 45)
    keras.utils.set_random_seed(10 + rank)  # different initial weights per rank: rank 0's must win
    with strategy.scope():
        model = _model()
        _compile(model)
    model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    keras.utils.set_random_seed(10)
    reference = _model()  # rank 0's initial weights
    _compile(reference)
    reference.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    for w, r in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(w, r, rtol=1e-4, atol=1e-5)


def test_multi_worker_shuffled_fit_keeps_ranks_identical(device):
    rank, world = group()
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    rng = np.random.default_rng(4)
    x = rng.standard_normal((64, 6)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    keras.utils.set_random_seed(20 + rank)  # also a different shuffling seed per rank: the strategy shares one
    with strategy.scope():
        model = _model()
        _compile(model)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    copies = _gathered(model.get_weights()[0])
    np.testing.assert_array_equal(copies[1], copies[0])
    mean = strategy.reduce(tf.distribute.ReduceOp.MEAN, clnet.tensor(float(rank)))
    assert mean.item() == pytest.approx((world - 1) / 2)

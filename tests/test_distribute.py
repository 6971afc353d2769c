"""clnet.distribute (tf.distribute's names): the lecture's MirroredStrategy slide runs with `import clnet as tf`."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import clnet
import clnet as tf
from clnet import keras

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tf_mirrored_strategy.py"


def _example():
    spec = importlib.util.spec_from_file_location("clnet_example_tf_mirrored_strategy", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lecture_snippet_builds_and_compiles(device):
    strategy = tf.distribute.MirroredStrategy()
    assert strategy.num_replicas_in_sync == 1 and keras.distribute.MirroredStrategy is tf.distribute.MirroredStrategy
    model = _example().build(strategy)
    assert model.distribute_strategy is strategy and model.count_params() > 0


@pytest.mark.slow  # a conv net's fit: seconds on PoCL, long on llvmpipe
def test_lecture_snippet_fits(device):
    strategy = tf.distribute.MirroredStrategy()
    model = _example().build(strategy)
    rng = np.random.default_rng(0)
    x = rng.random((16, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, 16)
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0]) and model.predict(x[:2], verbose=0).shape == (2, 10)


def test_scopes_and_default_strategy(device):
    default = tf.distribute.get_strategy()
    assert not tf.distribute.has_strategy() and default.num_replicas_in_sync == 1 and default.shard() == (0, 1)
    outer, inner = tf.distribute.MirroredStrategy(), tf.distribute.MirroredStrategy(devices=[device])
    with outer.scope():
        assert tf.distribute.get_strategy() is outer
        with inner.scope():
            assert tf.distribute.get_strategy() is inner
        assert tf.distribute.has_strategy()
    assert tf.distribute.get_strategy() is default
    ds = tf.data.Dataset.range(4)
    assert outer.experimental_distribute_dataset(ds) is ds
    assert outer.run(lambda a, b: a + b, args=(2, 3)) == 5
    v = clnet.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert outer.reduce(tf.distribute.ReduceOp.SUM, v, axis=0).numpy().tolist() == [4.0, 6.0]
    assert outer.reduce("MEAN", v, axis=None) is v


def test_several_devices_in_one_process_say_what_to_do(device):
    others = [d for d in clnet.devices() if d is not device and not d.is_simulator]
    if not others:
        pytest.skip("one device only")
    with pytest.raises(NotImplementedError, match="MultiWorkerMirroredStrategy"):
        tf.distribute.MirroredStrategy(devices=[device, others[0]])

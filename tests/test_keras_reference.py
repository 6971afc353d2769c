"""clnet.keras against real Keras 3: the scenarios of keras_scenarios.py (multi-input/output models, loss_weights,
sample/class weights, steps_per_epoch, validation, custom train_step, add_loss, symbolic op shapes) run here
and must give the numbers real Keras gave (recorded in keras_reference/keras_reference.json, with the command)."""
import json
import pathlib
import warnings

import numpy as np
import pytest

from clnet import keras

import keras_scenarios
from keras_test_support import only_small_models_on_simulators  # noqa: F401  (autouse: small models on Oclgrind)

REFERENCE = json.loads((pathlib.Path(__file__).parent / "keras_reference" / "keras_reference.json").read_text())


def _compare(got, want, path, rtol, atol):
    if isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want), f"{path}: keys {sorted(got)} != {sorted(want)}"
        for k in want:
            _compare(got[k], want[k], f"{path}.{k}", rtol, atol)
    elif isinstance(want, list) and not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in want):
        assert isinstance(got, list) and len(got) == len(want), f"{path}: {got!r} != {want!r}"
        for i, (g, w) in enumerate(zip(got, want)):
            _compare(g, w, f"{path}[{i}]", rtol, atol)
    elif isinstance(want, (list, float)) and not isinstance(want, bool):
        np.testing.assert_allclose(np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64), rtol=rtol,
                                   atol=atol, err_msg=path)
    else:
        assert got == want, f"{path}: {got!r} != {want!r}"


@pytest.mark.parametrize("name", sorted(k for k in REFERENCE if not k.startswith("_")))
def test_scenario_matches_real_keras(device, name):
    keras.utils.clear_session()
    keras.utils.set_random_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = keras_scenarios.SCENARIOS[name](keras)
    _compare(json.loads(json.dumps(got)), REFERENCE[name], name, rtol=2e-4, atol=2e-5)

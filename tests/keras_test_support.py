"""Shared by the clnet.keras test modules: on simulators (Oclgrind), only small models run.

Oclgrind with its checkers takes seconds per kernel launch, so the many fits of the Keras test modules
would take it half an hour; tests/test_keras_small_model.py runs a small model end to end there instead
(every kernel a Keras fit, evaluate, predict and save use, under Oclgrind's race and bounds checks).
"""
import pytest


@pytest.fixture(autouse=True)
def only_small_models_on_simulators(request):
    if "device" in request.fixturenames and request.getfixturevalue("device").is_simulator:
        pytest.skip("on Oclgrind the Keras front end runs tests/test_keras_small_model.py (a small model end to end)")

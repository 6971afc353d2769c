"""Record the numbers of tests/keras_scenarios.py on real Keras 3 into keras_reference.json.

Run (outside CI, where real Keras is installed; the PyTorch backend on CPU):
    KERAS_BACKEND=torch python tests/keras_reference/make_reference.py
tests/test_keras_reference.py runs the same scenarios on clnet.keras and compares with this file.
"""
import json
import os
import pathlib
import platform
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import keras  # noqa: E402  (real Keras, after the path is set)
import torch  # noqa: E402

import keras_scenarios  # noqa: E402


def main(names):
    out_path = HERE / "keras_reference.json"
    data = json.loads(out_path.read_text()) if out_path.exists() else {}
    data["_recorded_with"] = {"keras": keras.__version__, "backend": keras.backend.backend(),
                              "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
                              "command": "KERAS_BACKEND=torch python tests/keras_reference/make_reference.py"}
    for name, fn in keras_scenarios.SCENARIOS.items():
        if names and name not in names:
            continue
        keras.utils.clear_session()
        keras.utils.set_random_seed(0)
        data[name] = fn(keras)
        print(name, "recorded")
    out_path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    if os.environ.get("KERAS_BACKEND") != "torch":
        sys.exit("run with KERAS_BACKEND=torch")
    main(sys.argv[1:])

"""keras.datasets.mnist.load_data(): reads the usual Keras `mnist.npz` from disk (clnet never downloads).

Looked up, in order: `path` as given (absolute or relative to the working directory), then
~/.keras/datasets/<path> (where Keras caches it), then $CLNET_DATA/<path>.
"""
from __future__ import annotations

import os

import numpy as np

URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _candidates(path):
    path = os.fspath(path)
    out = [path]
    if not os.path.isabs(path):
        out.append(os.path.join(os.path.expanduser("~"), ".keras", "datasets", path))
        if os.environ.get("CLNET_DATA"):
            out.append(os.path.join(os.environ["CLNET_DATA"], path))
    return out


def load_data(path="mnist.npz"):
    """(x_train, y_train), (x_test, y_test): uint8 images (N, 28, 28) and uint8 labels, as Keras returns."""
    candidates = _candidates(path)
    found = next((p for p in candidates if os.path.isfile(p)), None)
    if found is None:
        raise FileNotFoundError(
            "MNIST is not on this machine: clnet reads the usual Keras file and does not download it. Get "
            f"{URL} and put it at one of: " + ", ".join(candidates) + ". (For an offline MNIST-shaped dataset use "
            "keras.datasets.digits.load_data(), scikit-learn's bundled handwritten digits.)")
    try:
        with np.load(found, allow_pickle=False) as f:
            missing = [k for k in _KEYS if k not in f.files]
            if missing:
                raise ValueError(f"{found} is not the Keras mnist.npz: it lacks {', '.join(missing)}")
            x_train, y_train, x_test, y_test = (f[k] for k in _KEYS)
    except (OSError, EOFError) as err:
        raise ValueError(f"cannot read {found} (corrupted or not an .npz file): {err}") from None
    return (x_train, y_train), (x_test, y_test)

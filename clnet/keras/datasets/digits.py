"""scikit-learn's bundled handwritten digits (1,797 real 8x8 scans, no download) shaped like MNIST.

Each 8x8 image (values 0..16) is scaled to 0..255, upsampled bilinearly to 20x20 and centred in a 28x28
frame (MNIST's layout: a 20x20 digit in a 28x28 box), so MNIST scripts run offline on real data:

    (x_train, y_train), (x_test, y_test) = keras.datasets.digits.load_data()
    x_train.shape == (1438, 28, 28), dtype uint8; y_train uint8 labels 0..9
"""
from __future__ import annotations

import numpy as np


def _bilinear_matrix(n_in, n_out):
    """(n_out, n_in) interpolation weights, sampling pixel centres (align_corners=False)."""
    pos = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    pos = np.clip(pos, 0, n_in - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = pos - lo
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), lo] += 1 - frac
    m[np.arange(n_out), hi] += frac
    return m


def upsample(images, size=20, frame=28):
    """(N, 8, 8) values in 0..16 -> (N, frame, frame) uint8 with the digit upsampled to size x size."""
    images = np.asarray(images, dtype=np.float64) * (255.0 / 16.0)
    rows = _bilinear_matrix(images.shape[1], size)
    cols = _bilinear_matrix(images.shape[2], size)
    big = np.einsum("ij,njk,lk->nil", rows, images, cols)
    out = np.zeros((images.shape[0], frame, frame), dtype=np.uint8)
    off = (frame - size) // 2
    out[:, off:off + size, off:off + size] = np.clip(np.rint(big), 0, 255).astype(np.uint8)
    return out


def load_data(test_split=0.2, seed=1337, expand_dims=False):
    """(x_train, y_train), (x_test, y_test) like keras.datasets.mnist.load_data(), from sklearn's digits.

    test_split: fraction held out for testing (stratified by class); expand_dims=True gives (N, 28, 28, 1).
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError("keras.datasets.digits needs scikit-learn (pip install scikit-learn); it ships the "
                          "digits inside the package, no download") from None
    if not 0.0 < test_split < 1.0:
        raise ValueError(f"test_split must be in (0, 1), got {test_split}")
    digits = load_digits()
    x = upsample(digits.images)
    y = digits.target.astype(np.uint8)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        test[idx[:int(round(len(idx) * test_split))]] = True
    train_idx, test_idx = np.flatnonzero(~test), np.flatnonzero(test)
    rng.shuffle(train_idx)
    rng.shuffle(test_idx)
    if expand_dims:
        x = x[..., None]
    return (x[train_idx], y[train_idx]), (x[test_idx], y[test_idx])

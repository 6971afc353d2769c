"""Pretrained weights the torchvision way, without downloading: a Weights value names torchvision's file
(url, file name); the model builders load it from a local file (a path given as `weights`, or the file in
torch hub's cache folder, where torchvision keeps the files it downloaded), through clnet.load, which reads
PyTorch files as data only."""
from __future__ import annotations

import enum
import os

from ...serialization import load


class Weights(enum.Enum):
    """Base of the per-model weights enums (ResNet18_Weights, ...): value = (url, number of classes)."""

    @property
    def url(self) -> str:
        return self.value[0]

    @property
    def file_name(self) -> str:
        return os.path.basename(self.url)

    @property
    def meta(self) -> dict:
        return {"num_classes": self.value[1], "file": self.file_name}

    @classmethod
    def verify(cls, obj):
        if obj is None or isinstance(obj, (cls, str, os.PathLike)):
            return cls[obj] if isinstance(obj, str) and obj in cls.__members__ else obj
        raise TypeError(f"weights must be None, a {cls.__name__}, or a path to a weights file, got {obj!r}")


def hub_dir() -> str:
    """torch hub's checkpoint folder ($TORCH_HOME/hub/checkpoints, default ~/.cache/torch/hub/checkpoints)."""
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")), "torch")
    return os.path.join(home, "hub", "checkpoints")


def weights_file(weights):
    """The file `weights` (a Weights value or a path) names, checked before any model is built; None for None.
    A Weights value is looked up in torch hub's cache."""
    if weights is None:
        return None
    if isinstance(weights, Weights):
        path = os.path.join(hub_dir(), weights.file_name)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"clnet does not download weights. Get {weights.url} once (e.g. with torchvision, or a download "
                f"tool) and put it at {path}, or pass the file's path as weights=...")
        return path
    path = os.fspath(weights)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such weights file: {path}")
    return path


def load_weights(model, path, progress: bool = True):
    """Load the weights file at `path` (from weights_file) into model; nothing when path is None."""
    if path is not None:
        model.load_state_dict(load(path, map_location="cpu"))
    return model


def check_pretrained(kwargs, weights):
    """torchvision's deprecated pretrained=True means the default weights."""
    if kwargs.pop("pretrained", False):
        if weights is None:
            raise ValueError("pretrained=True: clnet does not download weights; pass weights=<path> or a Weights "
                             "value whose file is in torch hub's cache")
    return weights


def make_divisible(v: float, divisor: int, min_value=None) -> int:
    """The channel count v rounded to a multiple of divisor, never below 90% of v (MobileNet's rule)."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v

"""keras.backend: the few session-level helpers Keras scripts call (clear_session, floatx, epsilon)."""
from __future__ import annotations

from .utils import clear_session  # noqa: F401

_EPSILON = 1e-7


def floatx() -> str:
    """The default float type of layers' weights and inputs."""
    return "float32"


def set_floatx(value):
    if value != "float32":
        raise NotImplementedError("clnet.keras computes in float32; set dtype= on a layer for other types")


def epsilon() -> float:
    return _EPSILON


def set_epsilon(value):
    global _EPSILON
    _EPSILON = float(value)


def image_data_format() -> str:
    """Images are channels-last (NHWC), Keras's default; channels_first is not supported."""
    return "channels_last"


def backend() -> str:
    return "clnet"

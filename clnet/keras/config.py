"""keras.config: the global settings of the Keras front end (float type, epsilon, image layout, ...)."""
from __future__ import annotations

import numpy as np

_settings = {"floatx": "float32", "epsilon": 1e-7, "image_data_format": "channels_last",
             "unsafe_deserialization": False, "interactive_logging": True, "traceback_filtering": True,
             "max_epochs": None, "max_steps_per_epoch": None}
_FLOAT_TYPES = ("float16", "bfloat16", "float32", "float64")


def backend() -> str:
    """The backend's name: clnet (Keras says "tensorflow", "jax", "torch" or "numpy")."""
    return "clnet"


def floatx() -> str:
    """The default float type of weights and of float inputs ("float32")."""
    return _settings["floatx"]


def set_floatx(value) -> None:
    value = str(np.dtype(value).name) if not isinstance(value, str) else value
    if value not in _FLOAT_TYPES:
        raise ValueError(f"Unknown `floatx` value: {value}. Expected one of {set(_FLOAT_TYPES)}")
    if value == "bfloat16":
        raise ValueError("bfloat16 is not supported by clnet's OpenCL kernels; use float16, float32 or float64")
    _settings["floatx"] = value


def epsilon() -> float:
    """The fuzz factor used in numeric expressions (1e-7)."""
    return _settings["epsilon"]


def set_epsilon(value) -> None:
    _settings["epsilon"] = float(value)


def image_data_format() -> str:
    """"channels_last" (NHWC, Keras's default) or "channels_first"."""
    return _settings["image_data_format"]


def set_image_data_format(data_format) -> None:
    data_format = str(data_format).lower()
    if data_format not in ("channels_first", "channels_last"):
        raise ValueError(f"The `data_format` argument must be one of {{'channels_first', 'channels_last'}}. "
                         f"Received: data_format={data_format}")
    _settings["image_data_format"] = data_format


def enable_unsafe_deserialization() -> None:
    """Allow loading configs that hold Python lambdas (their bytecode is never run by clnet: see docs/keras.md)."""
    _settings["unsafe_deserialization"] = True


def is_unsafe_deserialization_enabled() -> bool:
    return _settings["unsafe_deserialization"]


def enable_interactive_logging() -> None:
    _settings["interactive_logging"] = True


def disable_interactive_logging() -> None:
    _settings["interactive_logging"] = False


def is_interactive_logging_enabled() -> bool:
    return _settings["interactive_logging"]


def enable_traceback_filtering() -> None:
    _settings["traceback_filtering"] = True


def disable_traceback_filtering() -> None:
    _settings["traceback_filtering"] = False


def is_traceback_filtering_enabled() -> bool:
    return _settings["traceback_filtering"]


def dtype_policy():
    """The global dtype policy's name (clnet computes each layer in its own dtype)."""
    return floatx()


def set_dtype_policy(policy) -> None:
    name = getattr(policy, "name", policy)
    if name in ("mixed_float16", "mixed_bfloat16"):
        raise ValueError(f"dtype policy {name!r} (mixed precision) is not supported by clnet yet; use 'float32'")
    set_floatx(name)


def set_max_epochs(max_epochs) -> None:
    """Cap the epochs of every fit() (for quick runs of long scripts), as keras.config.set_max_epochs."""
    _settings["max_epochs"] = None if max_epochs is None else int(max_epochs)


def max_epochs():
    return _settings["max_epochs"]


def set_max_steps_per_epoch(max_steps) -> None:
    _settings["max_steps_per_epoch"] = None if max_steps is None else int(max_steps)


def max_steps_per_epoch():
    return _settings["max_steps_per_epoch"]

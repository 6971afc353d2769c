"""keras.backend: the session-level helpers older Keras scripts call (floatx, epsilon, clear_session...)."""
from __future__ import annotations

from .config import backend, epsilon, floatx, image_data_format, set_epsilon, set_floatx  # noqa: F401
from .config import set_image_data_format  # noqa: F401
from .utils import clear_session  # noqa: F401

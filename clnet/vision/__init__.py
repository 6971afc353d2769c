"""clnet.vision: torchvision's model zoo layouts for clnet (clnet.vision.models)."""
from . import models  # noqa: F401

"""torch.nn.modules.flatten: re-exported from clnet.nn.flatten."""
from ..flatten import Flatten, Unflatten  # noqa: F401

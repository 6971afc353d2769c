"""torch.nn.modules.padding: re-exported from clnet.nn.padding."""
from ..padding import *  # noqa: F401,F403

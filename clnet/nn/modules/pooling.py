"""torch.nn.modules.pooling: re-exported from clnet.nn.pooling."""
from ..pooling import *  # noqa: F401,F403

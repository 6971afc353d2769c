"""torch.nn.modules.activation: re-exported from clnet.nn.activation."""
from ..activation import *  # noqa: F401,F403
from ..attention import MultiheadAttention  # noqa: F401

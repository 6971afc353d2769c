"""torch.nn.modules.loss: re-exported from clnet.nn.loss."""
from ..loss import *  # noqa: F401,F403
from ..loss import _Loss, _WeightedLoss  # noqa: F401

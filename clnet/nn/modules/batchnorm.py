"""torch.nn.modules.batchnorm: re-exported from clnet.nn.normalization."""
from ..normalization import BatchNorm1d, BatchNorm2d, BatchNorm3d  # noqa: F401
from ..normalization import _BatchNorm  # noqa: F401

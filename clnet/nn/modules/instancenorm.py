"""torch.nn.modules.instancenorm: re-exported from clnet.nn.normalization."""
from ..normalization import InstanceNorm1d, InstanceNorm2d, InstanceNorm3d  # noqa: F401
from ..normalization import _InstanceNorm  # noqa: F401

"""torch.nn.modules.conv: re-exported from clnet.nn.conv."""
from ..conv import Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d  # noqa: F401
from ..conv import _ConvNd, _ConvTransposeNd  # noqa: F401

"""torch.nn.modules.pixelshuffle: re-exported from clnet.nn.upsampling."""
from ..upsampling import PixelShuffle, PixelUnshuffle  # noqa: F401

"""torch.nn.modules.upsampling: re-exported from clnet.nn.upsampling."""
from ..upsampling import Upsample, UpsamplingNearest2d, UpsamplingBilinear2d  # noqa: F401

"""torch.nn.modules.normalization: re-exported from clnet.nn.normalization."""
from ..normalization import LayerNorm, GroupNorm, LocalResponseNorm  # noqa: F401

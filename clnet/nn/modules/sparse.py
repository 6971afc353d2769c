"""torch.nn.modules.sparse: re-exported from clnet.nn.embedding."""
from ..embedding import Embedding  # noqa: F401

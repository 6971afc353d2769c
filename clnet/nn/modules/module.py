"""torch.nn.modules.module: re-exported from clnet.nn.module."""
from ..module import Module  # noqa: F401
from ..module import _addindent  # noqa: F401

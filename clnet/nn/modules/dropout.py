"""torch.nn.modules.dropout: re-exported from clnet.nn.dropout."""
from ..dropout import Dropout, Dropout1d, Dropout2d, Dropout3d  # noqa: F401

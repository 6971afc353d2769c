"""clnet.utils: data loading (clnet.utils.data), as torch.utils."""
from . import data  # noqa: F401

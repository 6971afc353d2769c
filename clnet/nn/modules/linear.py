"""torch.nn.modules.linear: re-exported from clnet.nn.linear."""
from ..linear import Identity, Linear  # noqa: F401
from ..attention import NonDynamicallyQuantizableLinear  # noqa: F401

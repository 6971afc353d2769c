"""torch.nn.modules.container: re-exported from clnet.nn.container."""
from ..container import Sequential, ModuleList, ModuleDict, ParameterList, ParameterDict  # noqa: F401

"""The ops layer: every computation on tensors, each op next to its gradient rule.

elementwise  C-expression ops with broadcasting       reduce    sum/mean/max/min/arg*
movement     views, copies, indexing, concat/stack    matmul    mm/bmm/matmul (tiled kernels)
creation     tensor/zeros/ones/full/arange/eye        random    device-side Philox rand/randn
"""
from . import creation, elementwise, movement, reduce  # noqa: F401
from . import matmul, random  # noqa: F401

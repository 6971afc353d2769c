"""Parameter: a Tensor that a Module registers as learnable when it is assigned as an attribute."""
from __future__ import annotations

import numpy as np

from ..tensor import Tensor


class Parameter(Tensor):
    """A leaf tensor with requires_grad=True that shares its data's buffer (no copy), as in PyTorch.

        self.weight = clnet.nn.Parameter(clnet.randn(out_features, in_features))
    """

    def __new__(cls, data=None, requires_grad=True):
        from ..ops.creation import empty, tensor
        if data is None:
            data = empty(0)
        elif not isinstance(data, Tensor):
            data = tensor(np.asarray(data))
        p = cls._wrap(data._buf, data.shape, data.dtype, data.device, offset=data.offset, strides=data.strides,
                      storage_size=data._storage_size)
        p._base = data._base
        p._version = data._version  # in-place changes through either name are seen by autograd
        if requires_grad:
            p.requires_grad_(True)
        return p

    def __init__(self, data=None, requires_grad=True):  # Tensor.__init__ refuses direct construction
        pass

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()

    __str__ = __repr__

"""clnet.Size: the tuple that `Tensor.size()` and `.shape` are, as torch.Size.

A tuple of ints with PyTorch's printing (`torch.Size([2, 3])`, so program output reads as it does on
PyTorch) and `numel()`; `+` keeps the type, and it compares equal to the plain tuple. Indexing is
tuple's own (a Python-level __getitem__ cost about 0.6 us per `x.shape[i]`, and ops read shapes often),
so a slice `x.shape[1:]` is a plain tuple, where PyTorch gives a torch.Size.
"""
from __future__ import annotations

import math
import operator


class Size(tuple):
    """Sizes of a tensor's dimensions: `x.shape == (2, 3)`, `x.shape[1:]`, `x.size().numel()`."""

    __slots__ = ()

    def __new__(cls, sizes=()):
        try:
            values = tuple(operator.index(s) for s in sizes)
        except TypeError:
            bad = next((s for s in sizes if not hasattr(s, "__index__")), sizes)
            raise TypeError(f"Size() takes an iterable of ints, got {bad!r} ({type(bad).__name__})") from None
        return super().__new__(cls, values)

    def numel(self) -> int:
        """The number of elements a tensor of this shape holds."""
        return math.prod(self)

    def __repr__(self) -> str:
        return f"torch.Size({list(self)})"

    __str__ = __repr__

    def __add__(self, other):
        if not isinstance(other, tuple):
            return NotImplemented
        return Size(tuple(self) + tuple(other))

    def __radd__(self, other):
        if not isinstance(other, tuple):
            return NotImplemented
        return Size(tuple(other) + tuple(self))

    def __mul__(self, times):
        return Size(tuple(self) * times)

    __rmul__ = __mul__

    def __reduce__(self):
        return (Size, (tuple(self),))

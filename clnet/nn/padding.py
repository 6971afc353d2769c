"""Padding layers (ConstantPad, ZeroPad, ReflectionPad, ReplicationPad, CircularPad in 1-D, 2-D, 3-D):
modules around F.pad with an int (every side) or an explicit (left, right, top, bottom, ...) tuple."""
from __future__ import annotations

import numbers

from . import functional as F
from .module import Module


class _PadNd(Module):
    _n = 1
    _mode = "constant"

    def __init__(self, padding, value: float = 0.0):
        super().__init__()
        if isinstance(padding, numbers.Integral):
            padding = (int(padding),) * (2 * self._n)
        padding = tuple(padding)
        if len(padding) != 2 * self._n:
            raise ValueError(f"{type(self).__name__}: padding must be an int or a {2 * self._n}-tuple, got {padding}")
        self.padding = padding
        self.value = value

    def forward(self, input):
        if self._mode == "constant":
            return F.pad(input, self.padding, "constant", self.value)
        return F.pad(input, self.padding, self._mode)

    def extra_repr(self) -> str:
        return f"padding={self.padding}" + (f", value={self.value}" if self._mode == "constant" else "")


class ConstantPad1d(_PadNd):
    """Pad the last dimension with a constant (value)."""

    _n = 1

    def __init__(self, padding, value: float):
        super().__init__(padding, value)


class ConstantPad2d(_PadNd):
    """Pad the last two dimensions with a constant (value)."""

    _n = 2

    def __init__(self, padding, value: float):
        super().__init__(padding, value)


class ConstantPad3d(_PadNd):
    """Pad the last three dimensions with a constant (value)."""

    _n = 3

    def __init__(self, padding, value: float):
        super().__init__(padding, value)


class ReflectionPad1d(_PadNd):
    """Pad the last dimension by reflection (the edge value not repeated)."""

    _n = 1
    _mode = "reflect"

    def __init__(self, padding):
        super().__init__(padding)


class ReflectionPad2d(_PadNd):
    """Pad the last two dimensions by reflection (the edge value not repeated)."""

    _n = 2
    _mode = "reflect"

    def __init__(self, padding):
        super().__init__(padding)


class ReflectionPad3d(_PadNd):
    """Pad the last three dimensions by reflection (the edge value not repeated)."""

    _n = 3
    _mode = "reflect"

    def __init__(self, padding):
        super().__init__(padding)


class ReplicationPad1d(_PadNd):
    """Pad the last dimension by repeating the edge value."""

    _n = 1
    _mode = "replicate"

    def __init__(self, padding):
        super().__init__(padding)


class ReplicationPad2d(_PadNd):
    """Pad the last two dimensions by repeating the edge value."""

    _n = 2
    _mode = "replicate"

    def __init__(self, padding):
        super().__init__(padding)


class ReplicationPad3d(_PadNd):
    """Pad the last three dimensions by repeating the edge value."""

    _n = 3
    _mode = "replicate"

    def __init__(self, padding):
        super().__init__(padding)


class CircularPad1d(_PadNd):
    """Pad the last dimension periodically (wrapping around)."""

    _n = 1
    _mode = "circular"

    def __init__(self, padding):
        super().__init__(padding)


class CircularPad2d(_PadNd):
    """Pad the last two dimensions periodically (wrapping around)."""

    _n = 2
    _mode = "circular"

    def __init__(self, padding):
        super().__init__(padding)


class CircularPad3d(_PadNd):
    """Pad the last three dimensions periodically (wrapping around)."""

    _n = 3
    _mode = "circular"

    def __init__(self, padding):
        super().__init__(padding)


class ZeroPad1d(ConstantPad1d):
    def __init__(self, padding):
        super().__init__(padding, 0.0)


class ZeroPad2d(ConstantPad2d):
    def __init__(self, padding):
        super().__init__(padding, 0.0)


class ZeroPad3d(ConstantPad3d):
    def __init__(self, padding):
        super().__init__(padding, 0.0)

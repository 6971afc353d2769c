"""torch.backends.mps: "mps" names the accelerator too, so a program that picks "mps" when available runs
on the GPU on any machine (docs/pytorch.md)."""
from __future__ import annotations

from ..backend import devices as _devices


def is_available() -> bool:
    return bool(_devices.accelerators())


def is_built() -> bool:
    return True

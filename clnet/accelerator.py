"""torch.accelerator on OpenCL: the accelerator is the best GPU (or other non-CPU) OpenCL device.

`current_accelerator()` returns that Device; its `.type` ('gpu', or 'accelerator') is a word
`clnet.device()` accepts, so `torch.device(torch.accelerator.current_accelerator().type)` gets it back.
None when the default device is a CPU device (CLNET_DEVICE=pocl, or no GPU): see docs/pytorch.md.
"""
from __future__ import annotations

from .backend import devices as _devices


def is_available() -> bool:
    return bool(_devices.accelerators())


def current_accelerator(check_available: bool = False):
    """The accelerator's Device (the default device when it is one, else the best GPU), or None."""
    return _devices.current_accelerator()


def device_count() -> int:
    return len(_devices.accelerators())


def current_device_index() -> int:
    """N of the 'cuda:N' that the current accelerator is."""
    current = _devices.current_accelerator()
    if current is None:
        raise RuntimeError("torch.accelerator.current_device_index: there is no accelerator "
                           "(torch.accelerator.is_available() is False)")
    return _devices.accelerators().index(current)


current_device_idx = current_device_index


def set_device_index(index: int) -> None:
    """Make accelerator `index` ('cuda:index') the default device."""
    _devices.set_default_device(_devices.get_device("cuda", index))


set_device_idx = set_device_index


def synchronize(device=None) -> None:
    """Wait for every command queued on the accelerator (or on `device`)."""
    dev = _devices.get_device(device) if device is not None else _devices.current_accelerator()
    if dev is not None:
        dev.synchronize()

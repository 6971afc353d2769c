"""torch.cuda's spellings on OpenCL: "CUDA" is the accelerator, the best GPU (or other non-CPU) OpenCL device.

A PyTorch program that writes `device = "cuda" if torch.cuda.is_available() else "cpu"` gets the GPU when
the machine has one and the CPU device otherwise. When CLNET_DEVICE (or clnet.set_default_device) names a
CPU device, there is no accelerator: is_available() is False, so such a program runs where it was put.
docs/pytorch.md has the whole story.
"""
from __future__ import annotations

import contextlib

from .backend import devices as _devices
from .ops import random as _random


def is_available() -> bool:
    """True when there is an accelerator ('cuda' names a device)."""
    return bool(_devices.accelerators())


def device_count() -> int:
    """How many accelerators 'cuda:0', 'cuda:1', ... name."""
    return len(_devices.accelerators())


def is_initialized() -> bool:
    return is_available()


def current_device() -> int:
    """The index N of 'cuda:N' that bare 'cuda' names (the default device when it is an accelerator)."""
    return _devices.accelerators().index(_accelerator())


def set_device(device) -> None:
    """Make accelerator `device` (an index, 'cuda:N' or a Device) the default device."""
    _devices.set_default_device(_accelerator(device))


def get_device_name(device=None) -> str:
    """The OpenCL device's own name (e.g. 'NVIDIA H200')."""
    return _accelerator(device).name


def get_device_capability(device=None) -> tuple:
    """CUDA compute capabilities do not exist on OpenCL: the device's OpenCL C version, (major, minor)."""
    dev = _accelerator(device)
    digits = [int(x) for x in dev.opencl_c_version.split()[2].split(".")[:2]] if dev.opencl_c_version else [1, 2]
    return tuple(digits)


class _DeviceProperties:
    """The fields of torch.cuda.get_device_properties programs read, from the OpenCL device's facts."""

    def __init__(self, dev):
        self.name = dev.name
        self.total_memory = dev.global_mem
        self.multi_processor_count = dev.compute_units
        self.is_integrated = not dev.is_discrete_gpu
        self.major, self.minor = get_device_capability(dev)

    def __repr__(self):
        return (f"_DeviceProperties(name='{self.name}', total_memory={self.total_memory // 2**20}MB, "
                f"multi_processor_count={self.multi_processor_count})")


def get_device_properties(device=None) -> _DeviceProperties:
    return _DeviceProperties(_accelerator(device))


def synchronize(device=None) -> None:
    """Wait for every command queued on the accelerator."""
    _accelerator(device).synchronize()


def manual_seed(seed: int) -> None:
    """Seeds clnet's generator (one for every device) when there is an accelerator; otherwise ignored, as
    PyTorch ignores it without CUDA."""
    if is_available():
        _random.manual_seed(seed)


def manual_seed_all(seed: int) -> None:
    manual_seed(seed)


def empty_cache() -> None:
    """Give the accelerators' cached, unused buffers back to the driver."""
    for dev in _devices.accelerators():
        if dev._pool is not None:
            dev.pool.free_cached()


def memory_allocated(device=None) -> int:
    """Bytes in tensors alive on the accelerator."""
    dev = _accelerator(device)
    return dev.pool.active_bytes if dev._pool is not None else 0


def memory_reserved(device=None) -> int:
    """Bytes clnet holds on the accelerator (live tensors plus cached blocks)."""
    dev = _accelerator(device)
    return dev.pool.bytes_in_use if dev._pool is not None else 0


def is_bf16_supported(including_emulation: bool = True) -> bool:
    """bfloat16 is not a clnet dtype."""
    return False


@contextlib.contextmanager
def device(index):
    """`with torch.cuda.device(i):` makes accelerator i the default device inside the block."""
    previous = _devices.would_be_default()
    set_device(index)
    try:
        yield
    finally:
        _devices.set_default_device(previous)


def _accelerator(device=None):
    """The accelerator a torch.cuda argument names (None: the current one), or a clear error."""
    if isinstance(device, _devices.Device):
        return device
    if device is None or device == "cuda":
        return _devices.get_device("cuda")
    if isinstance(device, str):
        return _devices.get_device(device)
    return _devices.get_device("cuda", int(device))

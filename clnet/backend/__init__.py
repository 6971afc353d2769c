"""The layer that talks to OpenCL: devices, their profiles, and kernel programs."""
from .devices import Device, all_devices, get_device, default_device, set_default_device  # noqa: F401

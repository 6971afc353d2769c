"""Discovery and selection of OpenCL devices.

Every platform is enumerated; one that errors or has no devices is skipped with a single warning.
A `Device` knows its facts (limits, vendor, fp16/fp64) and lazily owns a context, an in-order
queue and a memory pool, so importing clnet never touches a driver until a tensor is made.
"""
from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field

import pyopencl as cl

from ..errors import DeviceNotFoundError

VENDORS = ("nvidia", "amd", "intel", "apple", "arm", "pocl", "mesa", "oclgrind", "other")


def _normalise_vendor(platform_name: str, vendor: str, device_name: str) -> str:
    """Map the many vendor spellings drivers report to one word."""
    text = f"{platform_name} {vendor} {device_name}".lower()
    table = (
        ("oclgrind", "oclgrind"),
        ("portable computing language", "pocl"), ("pocl", "pocl"),
        ("rusticl", "mesa"), ("clover", "mesa"), ("mesa", "mesa"),
        ("nvidia", "nvidia"),
        ("advanced micro devices", "amd"), ("amd", "amd"),
        ("intel", "intel"),
        ("apple", "apple"),
        ("arm", "arm"), ("mali", "arm"),
    )
    for needle, word in table:
        if needle in text:
            return word
    return "other"


def _device_type(cl_type: int) -> str:
    if cl_type & cl.device_type.GPU:
        return "gpu"
    if cl_type & cl.device_type.CPU:
        return "cpu"
    if cl_type & cl.device_type.ACCELERATOR:
        return "accelerator"
    return "other"


@dataclass(eq=False)
class Device:
    """One OpenCL device with its facts; context, queue and pool are created on first use."""

    cl_device: cl.Device = field(repr=False)
    platform_index: int
    device_index: int
    name: str
    platform_name: str
    platform_version: str
    vendor: str
    type: str
    compute_units: int
    global_mem: int
    max_alloc: int
    local_mem: int
    local_mem_is_local: bool
    max_work_group_size: int
    max_work_item_sizes: tuple
    fp16: bool
    fp64: bool
    opencl_c_version: str
    driver_version: str
    host_unified_memory: bool
    preferred_vector_width_float: int
    _context: cl.Context | None = field(default=None, repr=False)
    _queue: cl.CommandQueue | None = field(default=None, repr=False)
    _pool: object | None = field(default=None, repr=False)
    _profile: object | None = field(default=None, repr=False)

    @classmethod
    def from_cl(cls, dev: cl.Device, p_index: int, d_index: int) -> "Device":
        plat = dev.platform
        exts = dev.extensions.split()
        try:
            c_version = dev.opencl_c_version
        except cl.Error:
            c_version = dev.version
        try:
            unified = bool(dev.host_unified_memory)
        except cl.Error:
            unified = False
        return cls(
            cl_device=dev, platform_index=p_index, device_index=d_index,
            name=dev.name.strip(), platform_name=plat.name.strip(), platform_version=plat.version.strip(),
            vendor=_normalise_vendor(plat.name, dev.vendor, dev.name), type=_device_type(dev.type),
            compute_units=dev.max_compute_units, global_mem=dev.global_mem_size,
            max_alloc=dev.max_mem_alloc_size, local_mem=dev.local_mem_size,
            local_mem_is_local=dev.local_mem_type == cl.device_local_mem_type.LOCAL,
            max_work_group_size=dev.max_work_group_size,
            max_work_item_sizes=tuple(dev.max_work_item_sizes),
            fp16="cl_khr_fp16" in exts, fp64="cl_khr_fp64" in exts or dev.double_fp_config != 0,
            opencl_c_version=c_version.strip(), driver_version=dev.driver_version.strip(),
            host_unified_memory=unified,
            preferred_vector_width_float=max(1, dev.preferred_vector_width_float),
        )

    # --- identity -------------------------------------------------------------------------------
    @property
    def spec(self) -> str:
        """The selection string that names exactly this device."""
        return f"opencl:{self.platform_index}:{self.device_index}"

    @property
    def implementation(self) -> str:
        """Which OpenCL implementation serves it: pocl, rusticl, oclgrind, or the vendor word."""
        p = self.platform_name.lower()
        if "rusticl" in p:
            return "rusticl"
        if "clover" in p:
            return "clover"
        return self.vendor

    @property
    def is_simulator(self) -> bool:
        """Oclgrind and friends: correct but very slow, never the default."""
        return self.vendor == "oclgrind"

    @property
    def is_discrete_gpu(self) -> bool:
        return self.type == "gpu" and not self.host_unified_memory

    def __str__(self) -> str:
        return f"{self.spec} {self.name} [{self.platform_name}]"

    def __repr__(self) -> str:
        return f"Device('{self.spec}', name='{self.name}', platform='{self.platform_name}', type='{self.type}')"

    def facts(self) -> dict:
        """Plain-data facts, for `clnet devices --json` and bug reports."""
        return {
            "spec": self.spec, "name": self.name, "platform": self.platform_name,
            "platform_version": self.platform_version, "vendor": self.vendor,
            "implementation": self.implementation, "type": self.type,
            "compute_units": self.compute_units, "global_mem": self.global_mem,
            "max_alloc": self.max_alloc, "local_mem": self.local_mem,
            "max_work_group_size": self.max_work_group_size, "fp16": self.fp16, "fp64": self.fp64,
            "opencl_c_version": self.opencl_c_version, "driver_version": self.driver_version,
            "host_unified_memory": self.host_unified_memory,
        }

    # --- lazily created OpenCL objects ------------------------------------------------------------
    @property
    def context(self) -> cl.Context:
        if self._context is None:
            self._context = cl.Context([self.cl_device])
        return self._context

    @property
    def queue(self) -> cl.CommandQueue:
        if self._queue is None:
            self._queue = cl.CommandQueue(self.context)
        return self._queue

    @property
    def pool(self):
        """The device's memory pool (see clnet.backend.memory)."""
        if self._pool is None:
            from .memory import MemoryPool
            self._pool = MemoryPool(self)
        return self._pool

    @property
    def profile(self):
        """Kernel parameters for this device (see clnet.backend.profiles)."""
        if self._profile is None:
            from .profiles import profile_for
            self._profile = profile_for(self)
        return self._profile

    def synchronize(self) -> None:
        """Wait until every command queued on this device has finished."""
        if self._queue is not None:
            self._queue.finish()


# --- discovery ------------------------------------------------------------------------------------
_DEVICES: list[Device] | None = None
_DEFAULT: Device | None = None


def all_devices(refresh: bool = False) -> list[Device]:
    """Every usable OpenCL device, in platform order; broken or empty platforms are skipped."""
    global _DEVICES
    if _DEVICES is not None and not refresh:
        return _DEVICES
    found: list[Device] = []
    try:
        platforms = cl.get_platforms()
    except cl.Error as err:  # no ICD loader entries at all
        warnings.warn(f"clnet: no OpenCL platform could be listed ({err}); "
                      "install a driver or `pip install clnet[pocl]`", RuntimeWarning, stacklevel=2)
        platforms = []
    for p_index, plat in enumerate(platforms):
        try:
            cl_devices = plat.get_devices()
        except cl.Error as err:
            name = getattr(plat, "name", "?")
            if "DEVICE_NOT_FOUND" not in str(err):
                warnings.warn(f"clnet: skipping OpenCL platform {p_index} '{name}': {err}",
                              RuntimeWarning, stacklevel=2)
            continue
        for d_index, dev in enumerate(cl_devices):
            try:
                found.append(Device.from_cl(dev, p_index, d_index))
            except cl.Error as err:
                warnings.warn(f"clnet: skipping device {p_index}:{d_index} on '{plat.name}': {err}",
                              RuntimeWarning, stacklevel=2)
    _DEVICES = found
    return found


def _rank(dev: Device) -> tuple:
    """Higher is better: discrete GPU > integrated GPU > CPU > accelerator > simulator."""
    if dev.is_simulator:
        kind = 0
    elif dev.type == "gpu":
        kind = 4 if dev.is_discrete_gpu else 3
    elif dev.type == "cpu":
        kind = 2
    else:
        kind = 1
    # Among CPU implementations PoCL from a distribution beats the wheel and Mesa's llvmpipe by far.
    impl = {"pocl": 3, "intel": 3, "amd": 2, "rusticl": 0, "clover": 0}.get(dev.implementation, 1)
    return (kind, impl, dev.compute_units, dev.global_mem)


def _describe(devs: list[Device]) -> str:
    if not devs:
        return "no OpenCL device is present (install a vendor driver or `pip install clnet[pocl]`)"
    return "devices present:\n" + "\n".join(f"  {d}" for d in devs)


def _select(spec: str, devs: list[Device]) -> Device:
    text = spec.strip().lower()
    m = re.fullmatch(r"opencl:(\d+):(\d+)", text)
    if m:
        p, d = int(m.group(1)), int(m.group(2))
        for dev in devs:
            if (dev.platform_index, dev.device_index) == (p, d):
                return dev
        raise DeviceNotFoundError(f"no OpenCL device {p}:{d}; {_describe(devs)}")
    m = re.fullmatch(r"([a-z]+)(?::(\d+))?", text)
    if not m:
        raise DeviceNotFoundError(f"cannot parse device string {spec!r}: use 'gpu', 'cpu', 'gpu:1', "
                                  f"'opencl:P:D' or a vendor/platform word; {_describe(devs)}")
    word, index = m.group(1), int(m.group(2) or 0)
    if word in ("gpu", "cpu", "accelerator"):
        matches = [d for d in devs if d.type == word]
        matches.sort(key=_rank, reverse=True)
    else:
        matches = [d for d in devs if word in (d.vendor, d.implementation)
                   or word in d.platform_name.lower() or word in d.name.lower()]
        matches.sort(key=_rank, reverse=True)
    if index >= len(matches):
        have = f"{len(matches)} match" if matches else "none matches"
        raise DeviceNotFoundError(f"no device {spec!r} ({have}); {_describe(devs)}")
    return matches[index]


def get_device(spec=None) -> Device:
    """Resolve a device: a Device, a selection string, or None for the default."""
    if isinstance(spec, Device):
        return spec
    if spec is None:
        return default_device()
    if not isinstance(spec, str):
        raise TypeError(f"device must be a clnet Device or a string such as 'gpu' or 'cpu', "
                        f"got {type(spec).__name__}")
    return _select(spec, all_devices())


def default_device() -> Device:
    """CLNET_DEVICE if set, else the best-ranked device (a simulator only when nothing else exists)."""
    global _DEFAULT
    if _DEFAULT is not None:
        return _DEFAULT
    devs = all_devices()
    env = os.environ.get("CLNET_DEVICE")
    if env:
        _DEFAULT = _select(env, devs)
        return _DEFAULT
    if not devs:
        raise DeviceNotFoundError(_describe(devs))
    _DEFAULT = max(devs, key=_rank)
    return _DEFAULT


def set_default_device(spec) -> Device:
    """Make `spec` the device that new tensors go to when no device= is given."""
    global _DEFAULT
    _DEFAULT = get_device(spec) if spec is not None else None
    return _DEFAULT

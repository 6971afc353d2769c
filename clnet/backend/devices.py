"""Discovery and selection of OpenCL devices.

Every platform is enumerated; one that errors or has no devices is skipped with a single warning.
A `Device` knows its facts (limits, vendor, fp16/fp64) and lazily owns a context, an in-order
queue and a memory pool, so importing clnet never touches a driver until a tensor is made.
"""
from __future__ import annotations

import os
import re
import threading
import warnings
from dataclasses import dataclass, field

import pyopencl as cl

from ..errors import DeviceNotFoundError
from . import calibration, deferred, icd
from .deferred import DeferredLaunches
from .memory import MemoryPool
from .profiles import profile_for

VENDORS = ("nvidia", "amd", "intel", "apple", "arm", "pocl", "mesa", "oclgrind", "other")

# Software implementations that name themselves in the platform name win over the hardware vendor:
# PoCL on an Intel CPU is "pocl", Mesa's rusticl on an AMD GPU is "mesa".
_IMPLEMENTATION_WORDS = (
    (r"oclgrind", "oclgrind"),
    (r"portable computing language|\bpocl\b", "pocl"),
    (r"rusticl|clover|\bmesa\b", "mesa"),
)
# Hardware vendors, matched as whole words in the device's vendor string, then the platform and device name.
_HARDWARE_WORDS = (
    (r"nvidia", "nvidia"),
    (r"advanced micro devices|\bamd\b|\bati\b", "amd"),
    (r"\bintel|genuineintel", "intel"),
    (r"\bapple\b", "apple"),
    (r"\barm\b|\bmali\b", "arm"),
)


def _normalise_vendor(platform_name: str, vendor: str, device_name: str) -> str:
    """Map the many vendor spellings drivers report to one of VENDORS."""
    for pattern, word in _IMPLEMENTATION_WORDS:
        if re.search(pattern, f"{platform_name} {vendor}".lower()):
            return word
    for text in (vendor, platform_name, device_name):
        for pattern, word in _HARDWARE_WORDS:
            if re.search(pattern, text.lower()):
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


def _double_fp_config(dev: cl.Device) -> int:
    try:
        return dev.double_fp_config
    except cl.Error:  # a driver that rejects it anyway has no usable fp64
        return 0


def _cl_version(text: str) -> tuple:
    """'OpenCL 1.2 (Oclgrind 21.10)' -> (1, 2); (1, 0) when unreadable."""
    m = re.match(r"\s*OpenCL (\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else (1, 0)


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
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _deferred: DeferredLaunches = field(default_factory=DeferredLaunches, repr=False)  # see backend/deferred.py

    @classmethod
    def from_cl(cls, dev: cl.Device, p_index: int, d_index: int) -> "Device":
        """Read a device's facts, asking only what its OpenCL version defines (a query a device does not
        define answers CL_INVALID_VALUE, which API checkers such as Oclgrind's report as errors)."""
        plat = dev.platform
        exts = dev.extensions.split()
        version = _cl_version(dev.version)
        c_version = dev.opencl_c_version if version >= (1, 1) else dev.version  # CL_DEVICE_OPENCL_C_VERSION: 1.1
        unified = bool(dev.host_unified_memory) if version >= (1, 1) else False  # 1.1, deprecated (not gone) in 2.0
        fp64 = "cl_khr_fp64" in exts or (version >= (1, 2) and _double_fp_config(dev) != 0)  # core in 1.2
        return cls(
            cl_device=dev, platform_index=p_index, device_index=d_index,
            name=dev.name.strip(), platform_name=plat.name.strip(), platform_version=plat.version.strip(),
            vendor=_normalise_vendor(plat.name, dev.vendor, dev.name), type=_device_type(dev.type),
            compute_units=dev.max_compute_units, global_mem=dev.global_mem_size,
            max_alloc=dev.max_mem_alloc_size, local_mem=dev.local_mem_size,
            local_mem_is_local=dev.local_mem_type == cl.device_local_mem_type.LOCAL,
            max_work_group_size=dev.max_work_group_size,
            max_work_item_sizes=tuple(dev.max_work_item_sizes),
            fp16="cl_khr_fp16" in exts, fp64=fp64,
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
        """Which OpenCL implementation serves it: pocl, rusticl, clover, oclgrind, apple or the vendor word."""
        p = self.platform_name.lower()
        for word in ("rusticl", "clover", "apple"):
            if word in p:
                return word
        return self.vendor

    @property
    def is_simulator(self) -> bool:
        """Oclgrind and friends: correct but very slow, never the default."""
        return self.vendor == "oclgrind"

    @property
    def is_discrete_gpu(self) -> bool:
        return self.type == "gpu" and not self.host_unified_memory

    def __str__(self) -> str:
        """What PyTorch prints for a device: 'cpu' (the best CPU device), 'cpu:1', 'gpu:0', 'oclgrind'.

        The string selects this device again (`clnet.device(str(d)) is d`); `describe()` has the
        OpenCL spec, device name and platform."""
        return _short_name(self, all_devices())

    def describe(self) -> str:
        """The OpenCL identity: 'opencl:1:0 pthread-haswell-AMD EPYC [Portable Computing Language]'."""
        return f"{self.spec} {self.name} [{self.platform_name}]"

    @property
    def index(self) -> int | None:
        """PyTorch's device index: None for the CPU device that 'cpu' names, else the N of 'gpu:N'/'cpu:N'."""
        name = str(self)
        return int(name.rsplit(":", 1)[1]) if ":" in name and not name.startswith("opencl:") else None

    def __repr__(self) -> str:
        return f"Device('{self.spec}', name='{self.name}', platform='{self.platform_name}', type='{self.type}')"

    def facts(self) -> dict:
        """Plain-data facts, for `clnet devices --json` and bug reports."""
        return {
            "spec": self.spec, "name": self.name, "platform": self.platform_name,
            "platform_version": self.platform_version, "vendor": self.vendor,
            "implementation": self.implementation, "type": self.type,
            "discrete": self.is_discrete_gpu, "simulator": self.is_simulator,
            "compute_units": self.compute_units, "global_mem": self.global_mem,
            "max_alloc": self.max_alloc, "local_mem": self.local_mem,
            "local_mem_is_local": self.local_mem_is_local,
            "max_work_group_size": self.max_work_group_size,
            "max_work_item_sizes": list(self.max_work_item_sizes),
            "preferred_vector_width_float": self.preferred_vector_width_float,
            "fp16": self.fp16, "fp64": self.fp64,
            "opencl_c_version": self.opencl_c_version, "driver_version": self.driver_version,
            "host_unified_memory": self.host_unified_memory,
        }

    # --- lazily created OpenCL objects ------------------------------------------------------------
    # Each is made once, under the device's lock, even when several threads ask first at the same time;
    # once made, reading it takes no lock (docs/threads.md: double-checked creation).
    @property
    def context(self) -> cl.Context:
        if self._context is None:
            with self._lock:
                if self._context is None:
                    self._context = cl.Context([self.cl_device])
        return self._context

    @property
    def queue(self) -> cl.CommandQueue:
        """The device's one in-order queue; OpenCL queues accept commands from any thread. Launches still
        waiting for their kernel's first build (backend/deferred.py) are enqueued first, so whatever is
        enqueued next comes after them."""
        if self._deferred.entries:
            deferred.drain(self)
        return self.raw_queue

    @property
    def raw_queue(self) -> cl.CommandQueue:
        """The queue, without enqueueing the deferred launches first (for backend/deferred.py itself)."""
        if self._queue is None:
            context = self.context
            with self._lock:
                if self._queue is None:
                    self._queue = cl.CommandQueue(context)
        return self._queue

    @property
    def pool(self):
        """The device's memory pool (see clnet.backend.memory)."""
        if self._pool is None:
            self.queue  # made first, outside this device's lock (the pool's allocator needs it)
            with self._lock:
                if self._pool is None:
                    self._pool = MemoryPool(self)
        return self._pool

    @property
    def profile(self):
        """Kernel parameters for this device (see clnet.backend.profiles)."""
        if self._profile is None:
            with self._lock:
                if self._profile is None:
                    self._profile = profile_for(self)
        return self._profile

    def forget_profile(self) -> None:
        """Recompute the profile at next use (after a compiler crash changed what it should be)."""
        with self._lock:
            self._profile = None

    def synchronize(self) -> None:
        """Wait until every command queued on this device has finished."""
        if self._deferred.entries:
            deferred.drain(self)
        if self._queue is not None:
            self._queue.finish()


# --- discovery ------------------------------------------------------------------------------------
class PlatformSkippedWarning(RuntimeWarning):
    """An OpenCL platform (or one of its devices) failed with an error and was skipped. A platform that
    simply has no devices (Mesa's rusticl without RUSTICL_ENABLE, Clover) is skipped silently: it is
    listed, with the reason, by `clnet devices` and `skipped_platforms()`."""


@dataclass(frozen=True)
class SkippedPlatform:
    """A platform that discovery passed over, and why (shown by `clnet devices`)."""

    index: int
    name: str
    version: str
    reason: str
    broken: bool = False  # it raised an error (warned about), rather than having no devices


_DEVICES: list[Device] | None = None
_SKIPPED: list[SkippedPlatform] = []
_DEFAULT: Device | None = None
_WARNED: set = set()
# Discovery and the choice of the default run once per process under this lock, so threads that touch
# clnet first at the same moment share one Device per OpenCL device (issue 16). Re-entrant because
# default_device() discovers. Once made, _DEVICES and _DEFAULT are read without it.
_DISCOVERY_LOCK = threading.RLock()


def _platform_text(plat, attr: str) -> str:
    try:
        return getattr(plat, attr).strip()
    except Exception:  # a broken ICD may fail even to name itself
        return "?"


def _why_empty(name: str) -> str:
    if "rusticl" in name.lower():
        return "no devices; set RUSTICL_ENABLE, e.g. RUSTICL_ENABLE=llvmpipe, to list Mesa's"
    return "no devices"


def all_devices(refresh: bool = False) -> list[Device]:
    """Every usable OpenCL device, in platform order.

    A platform that raises or has no devices is skipped (see `skipped_platforms()`); one
    PlatformSkippedWarning per process names those that raised (an empty platform is normal, and
    silent); discovery itself never raises. Runs once per process, under a lock (first use may come
    from several threads at once).
    """
    if _DEVICES is not None and not refresh:
        return _DEVICES
    with _DISCOVERY_LOCK:
        if _DEVICES is not None and not refresh:
            return _DEVICES
        return _discover()


def _discover() -> list[Device]:
    global _DEVICES
    found: list[Device] = []
    skipped: list[SkippedPlatform] = []
    icd.arrange()  # runtimes pip installed into this environment (Intel's CPU runtime), before the first listing
    try:
        platforms = cl.get_platforms()
    except cl.Error:  # no ICD registered at all: there is simply no device (the error says how to get one)
        platforms = []
    for p_index, plat in enumerate(platforms):
        name, version = _platform_text(plat, "name"), _platform_text(plat, "version")
        try:
            cl_devices = plat.get_devices()
        except Exception as err:  # a broken ICD may raise anything; discovery never crashes
            empty = getattr(err, "code", None) == cl.status_code.DEVICE_NOT_FOUND
            reason = _why_empty(name) if empty else f"error: {err}"
            skipped.append(SkippedPlatform(p_index, name, version, reason, broken=not empty))
            continue
        if not cl_devices:
            skipped.append(SkippedPlatform(p_index, name, version, _why_empty(name)))
            continue
        for d_index, dev in enumerate(cl_devices):
            try:
                found.append(Device.from_cl(dev, p_index, d_index))
            except Exception as err:
                skipped.append(SkippedPlatform(p_index, name, version, f"device {d_index}: error: {err}", True))
    _DEVICES = found
    _SKIPPED[:] = skipped
    message = ", ".join(f"'{s.name}' ({s.reason})" for s in skipped if s.broken)
    if message and message not in _WARNED:
        _WARNED.add(message)
        warnings.warn(f"clnet skipped OpenCL platforms that failed: {message} (`clnet devices` lists every "
                      "platform)", PlatformSkippedWarning, stacklevel=4)
    return found


def skipped_platforms() -> list[SkippedPlatform]:
    """Platforms (or single devices) that the last discovery skipped, with the reason."""
    all_devices()
    return list(_SKIPPED)


# --- ranking --------------------------------------------------------------------------------------
# CPU implementations, fastest first: Intel's CPU runtime vectorises across work-items, PoCL is the
# portable default, AMD's old APP CPU runtime is unmaintained, Mesa's llvmpipe is 100-1000x slower.
# CPU implementations when nothing was measured (CLNET_CALIBRATE=0, or a single candidate): PoCL from 3.1
# first (Debian's 3.1 ran clnet's SGEMM at 216 GFLOP/s on our EPYC, Intel's CPU runtime at 95, issue 11),
# then Intel's runtime, then older PoCL (the pip wheel's 3.0: about 10x slower than 3.1 here), AMD's
# unmaintained APP CPU runtime, and Mesa's llvmpipe (100-1000x slower) last.
_CPU_IMPLEMENTATION_RANK = {"pocl": 5, "intel": 4, "pocl-old": 3, "amd": 2, "rusticl": 0, "clover": 0}


def _cpu_rule(dev: "Device") -> int:
    impl = dev.implementation
    if impl == "pocl" and _version_key(dev.driver_version) < (3, 1, 0, 0, 0):
        impl = "pocl-old"
    return _CPU_IMPLEMENTATION_RANK.get(impl, 1)


def calibration_candidates(devs: list["Device"]) -> list["Device"]:
    """The devices whose speed decides the default by measurement: two or more CPU implementations (not
    Mesa's llvmpipe, never a contender) on a machine without a GPU."""
    if any(d.type == "gpu" and not d.is_simulator for d in devs):
        return []
    cpus = [d for d in devs if d.type == "cpu" and not d.is_simulator and d.implementation not in ("rusticl", "clover")]
    return cpus if len(cpus) >= 2 else []


def _version_key(text: str) -> tuple:
    """'3.1+debian' -> (3, 1, 0, 0, 1); a pre-release such as '3.0-rc2' sorts below its release."""
    m = re.search(r"(\d+(?:\.\d+)*)(\S*)", text)
    if not m:
        return (0, 0, 0, 0, 0)
    nums = [int(x) for x in m.group(1).split(".")][:4]
    nums += [0] * (4 - len(nums))
    pre = re.match(r"[-~._]?(rc|alpha|beta|pre|dev|git)", m.group(2).lower())
    return tuple(nums) + ((0,) if pre else (1,))


def _rank(dev: Device) -> tuple:
    """Sort key, higher is better: discrete GPU > integrated GPU > CPU > other, simulators last.

    GPUs: a vendor driver before Mesa's, then more memory, then more compute units.
    CPUs: by the speed measured on this machine (calibration.py) where it was, then by implementation
    (_CPU_IMPLEMENTATION_RANK), then by the implementation's own version (Debian's PoCL 3.1 before the
    wheel's 3.0-rc2), then by compute units.
    """
    if dev.is_simulator:
        return (-1, dev.compute_units)
    if dev.type == "gpu":
        vendor_driver = 0 if dev.implementation in ("rusticl", "clover") else 1
        return (4 if dev.is_discrete_gpu else 3, vendor_driver, dev.global_mem, dev.compute_units)
    if dev.type == "cpu":
        measured = calibration.score(dev) if calibration.enabled() else None
        return (2, -1.0 if measured is None else measured, _cpu_rule(dev), _version_key(dev.driver_version),
                dev.compute_units)
    return (1, dev.compute_units, dev.global_mem)


def ranked(devs: list[Device] | None = None) -> list[Device]:
    """Devices best first (simulators last), the order `default_device()` picks from."""
    return sorted(all_devices() if devs is None else devs, key=_rank, reverse=True)


# --- selection ------------------------------------------------------------------------------------
_HOW_TO_GET_ONE = ("install your GPU vendor's OpenCL driver, or `pip install clnet[pocl]` "
                   "(or Debian's pocl-opencl-icd) for a CPU device")


def _describe(devs: list[Device]) -> str:
    if not devs:
        return f"no OpenCL device is present: {_HOW_TO_GET_ONE}"
    return "devices present:\n" + "\n".join(f"  {d.describe()}  ({d.type}, {d.implementation})" for d in devs)


def _tokens(text: str) -> set:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def _matches(word: str, devs: list[Device]) -> list[Device]:
    """Devices a selection word names, trying the most specific reading first.

    type words (gpu/cpu/accelerator; never a simulator) -> vendor or implementation word ->
    a word of the platform name -> a word of the device name (e.g. 'llvmpipe').
    """
    if word in ("gpu", "cpu", "accelerator"):
        return [d for d in devs if d.type == word and not d.is_simulator]
    for rule in (lambda d: word in (d.vendor, d.implementation),
                 lambda d: word in _tokens(d.platform_name),
                 lambda d: word in _tokens(d.name)):
        hits = [d for d in devs if rule(d)]
        if hits:
            return hits
    return []


# PyTorch programs ask for "cuda" (or "mps", "xpu"): on OpenCL each means the accelerator, the device
# torch.cuda.is_available() reports (see accelerators()). The index of "cuda:N" counts accelerators.
TORCH_ACCELERATOR_WORDS = ("cuda", "mps", "xpu")
_TYPE_WORDS = ("gpu", "cpu", "accelerator")


def _accelerators(devs: list[Device], default: Device | None) -> list[Device]:
    """The devices 'cuda:0', 'cuda:1', ... name: the GPUs and accelerators, best first (a simulator only when
    it is the default, then last); none when the default device is a CPU device, so that a program checking
    torch.cuda.is_available() runs where CLNET_DEVICE or set_default_device put it."""
    if default is not None and default.type == "cpu":
        return []
    accel = ranked([d for d in devs if d.type != "cpu" and not d.is_simulator])
    return accel + [default] if default is not None and default not in accel else accel


def _current_accelerator(devs: list[Device], default: Device | None) -> Device | None:
    """What bare 'cuda' names: the default device when it is not a CPU device, else the best accelerator."""
    accel = _accelerators(devs, default)
    return default if default in accel else (accel[0] if accel else None)


def _select(spec: str, devs: list[Device], origin: str = "", default: Device | None = None) -> Device:
    """Resolve a selection string: 'opencl:P:D', or 'WORD' / 'WORD:N' (the N-th best match, from 0).

    A bare type word ('cpu', 'gpu', 'accelerator') names `default` when it is of that type (as PyTorch's
    'cuda' names the current device), else the best device of the type; 'cuda'/'mps'/'xpu' name the
    accelerators (_accelerators)."""
    text = spec.strip().lower()
    where = f" (from {origin})" if origin else ""
    m = re.fullmatch(r"opencl:(\d+):(\d+)", text)
    if m:
        p, d = int(m.group(1)), int(m.group(2))
        for dev in devs:
            if (dev.platform_index, dev.device_index) == (p, d):
                return dev
        raise DeviceNotFoundError(f"no OpenCL device opencl:{p}:{d}{where}; {_describe(devs)}")
    m = re.fullmatch(r"([a-z][a-z0-9_]*)(?::(\d+))?", text)
    if not m:
        raise DeviceNotFoundError(f"cannot read device string {spec!r}{where}: use 'gpu', 'cpu', 'gpu:1', "
                                  f"'opencl:P:D' or a vendor/platform word such as 'pocl'; {_describe(devs)}")
    word, index = m.group(1), int(m.group(2) or 0)
    if word in TORCH_ACCELERATOR_WORDS:
        accel = _accelerators(devs, default)
        if m.group(2) is None and accel:
            return _current_accelerator(devs, default)
        if index < len(accel):
            return accel[index]
        others = [d for d in devs if d.type != "cpu" and not d.is_simulator]
        if default is not None and default.type == "cpu" and others:
            why = (f"the default device is a CPU device ({default.describe()}), so torch.cuda.is_available() is "
                   "False; use 'cpu', or make a GPU the default (CLNET_DEVICE=gpu)")
        elif not others:
            why = "there is no GPU or accelerator OpenCL device (torch.cuda.is_available() is False); use 'cpu'"
        else:
            why = f"there are {len(accel)}"

        raise DeviceNotFoundError(f"no device {spec!r}{where}: {spec!r} names an accelerator and {why}; "
                                  f"{_describe(devs)}")
    if word in _TYPE_WORDS and m.group(2) is None and default is not None and default.type == word:
        return default
    matches = ranked(_matches(word, devs))
    if index >= len(matches):
        have = f"only {len(matches)} match" if matches else "nothing matches"
        raise DeviceNotFoundError(f"no device {spec!r}{where} ({have}); {_describe(devs)}")
    return matches[index]


def _short_name(dev: Device, devs: list[Device]) -> str:
    """The selection string PyTorch-style printing uses: 'cpu' for the device 'cpu' names, else 'TYPE:N'
    ('cpu:1', 'gpu:0'); a simulator by its word ('oclgrind'); a device not among `devs` by its spec."""
    word = dev.implementation if dev.is_simulator else dev.type
    matches = ranked(_matches(word, devs))
    index = next((i for i, d in enumerate(matches) if d is dev), None)
    if index is None:
        return dev.spec
    if (word == "cpu" or dev.is_simulator) and _select(word, devs, default=would_be_default()) is dev:
        return word
    return f"{word}:{index}"


def accelerators() -> list[Device]:
    """The GPUs and accelerators PyTorch's spellings see ('cuda:0', 'cuda:1', ...; torch.cuda.device_count()),
    best first; none when the default device is a CPU device."""
    return _accelerators(all_devices(), would_be_default())


def current_accelerator() -> Device | None:
    """The device PyTorch's bare 'cuda' names: the default device unless it is a CPU device, else None."""
    return _current_accelerator(all_devices(), would_be_default())


def get_device(spec=None, index=None) -> Device:
    """Resolve a device: a Device, a selection string ('gpu', 'cpu:1', 'pocl', 'opencl:1:0', PyTorch's 'cuda'),
    PyTorch's ('cuda', 0) pair or accelerator ordinal 0, or None for the default."""
    if isinstance(spec, Device):
        return spec
    if spec is None:
        return default_device()
    return _resolve(spec, index, would_be_default())


def _resolve(spec, index, default: Device | None) -> Device:
    if isinstance(spec, int) and not isinstance(spec, bool) and index is None:
        spec, index = "cuda", spec  # torch.device(0) is cuda:0
    if not isinstance(spec, str):
        raise TypeError(f"device must be a clnet Device or a string such as 'gpu' or 'cpu', "
                        f"got {type(spec).__name__}")
    if index is not None:
        if ":" in spec or not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise ValueError(f"device({spec!r}, {index!r}): give the index either in the string or as a "
                             "non-negative int, not both")
        spec = f"{spec}:{index}"
    return _select(spec, all_devices(), default=default)


class _DeviceType(type):
    def __instancecheck__(cls, obj) -> bool:
        return isinstance(obj, Device)


class device(metaclass=_DeviceType):
    """`clnet.device("cuda")`, `clnet.device("cuda", 0)`, `clnet.device("cpu")`: PyTorch's torch.device, which
    returns the Device the words name (see get_device); `isinstance(x.device, clnet.device)` holds."""

    def __new__(cls, type, index=None) -> Device:  # noqa: A002  (PyTorch's parameter name)
        return get_device(type, index)


def default_device() -> Device:
    """CLNET_DEVICE if set, else the best-ranked device; a simulator (Oclgrind) only when asked for."""
    if _DEFAULT is not None:
        return _DEFAULT
    with _DISCOVERY_LOCK:
        if _DEFAULT is not None:
            return _DEFAULT
        return _choose_default()


def _choose_default() -> Device:
    global _DEFAULT
    devs = all_devices()
    env = os.environ.get("CLNET_DEVICE", "").strip()
    if env:
        _DEFAULT = _select(env, devs, origin=f"CLNET_DEVICE={env}")
        return _DEFAULT
    real = [d for d in devs if not d.is_simulator]
    if not real:
        hint = (" (only a simulator is present; ask for it with CLNET_DEVICE=oclgrind or device='oclgrind')"
                if devs else "")
        raise DeviceNotFoundError(f"no default OpenCL device{hint}; {_describe(devs)}")
    calibration.ensure(calibration_candidates(real))  # once per machine: time clnet on each CPU implementation
    _DEFAULT = ranked(real)[0]
    return _DEFAULT


def default_reason(dev: Device, devs: list[Device] | None = None) -> str:
    """Why `dev` is (or would be) the default, for `clnet devices`."""
    devs = all_devices() if devs is None else devs
    if os.environ.get("CLNET_DEVICE", "").strip():
        return f"CLNET_DEVICE={os.environ['CLNET_DEVICE'].strip()}"
    real = [d for d in devs if not d.is_simulator]
    if len(real) == 1:
        return "the only device (simulators are never the default)"
    if dev.type == "gpu":
        return ("a discrete GPU" if dev.is_discrete_gpu else "an integrated GPU") + \
            " (GPUs before CPUs; then a vendor driver, more memory, more compute units)"
    contenders = calibration_candidates(real)
    measured = {d: calibration.cached(d) for d in contenders} if calibration.enabled() else {}
    if dev in contenders and measured.get(dev) and all(measured.values()):
        def fig(d):
            m = measured[d]
            return (f"{d.spec} {d.implementation} {d.driver_version}: " +
                    (f"SGEMM {m.get('gemm_gflops')} GFLOP/s, c=a+b {m.get('add_gbps')} GB/s, "
                     f"MLP step {m.get('mlp_steps_s')}/s" if "error" not in m
                     else f"failed ({m['error'][:80]})"))
        return ("the fastest CPU implementation measured on this machine (" + "; ".join(fig(d) for d in ranked(contenders))
                + f"; kept in {calibration.path()})")
    why = "ranked by rule: CPU implementations in the order PoCL >= 3.1, Intel, older PoCL, AMD, Mesa"
    if dev in contenders and calibration.enabled() and calibration.pending_path().exists():
        why += " (their speed is being measured in the background: the next runs choose by it)"
    return why


def would_be_default() -> Device | None:
    """The device default_device() picks, or None where it would raise (for `clnet devices`)."""
    try:
        return default_device()
    except DeviceNotFoundError:
        return None


def set_default_device(spec) -> Device | None:
    """Make `spec` the device that new tensors go to when no device= is given (None: back to automatic)."""
    global _DEFAULT
    if isinstance(spec, Device) or spec is None:
        chosen = spec
    else:  # words name the best device of their kind, whatever the default was ('cuda': the best GPU)
        chosen = _resolve(spec, None, None)
    with _DISCOVERY_LOCK:
        _DEFAULT = chosen
    return chosen

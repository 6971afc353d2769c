"""Exceptions clnet raises, so users can catch them by name."""


class ClnetError(Exception):
    """Base class of every clnet-specific error."""


class DeviceNotFoundError(ClnetError, LookupError):
    """A device selection string matched none of the OpenCL devices present."""


class KernelBuildError(ClnetError, RuntimeError):
    """The OpenCL compiler rejected a rendered kernel; the message shows the source around each error."""


class OutOfMemoryError(ClnetError, MemoryError):
    """A device allocation failed even after the memory pool released its cached blocks."""


class DtypeNotSupportedError(ClnetError, TypeError):
    """The device cannot compute in the requested dtype (e.g. float64 without cl_khr_fp64)."""


class FileFormatError(ClnetError, ValueError):
    """clnet.load (or clnet.keras loading, whose keras.saving.FileFormatError subclasses this) met a file that is
    damaged, truncated, tampered with or not written by clnet."""

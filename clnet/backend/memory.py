"""Device memory pool: steady-state training allocates nothing from the driver.

Wraps pyopencl's binned MemoryPool. Requests beyond the device's single-allocation limit fail
early with a clear `OutOfMemoryError`; a failed driver allocation first releases the pool's
cached blocks and retries once.
"""
from __future__ import annotations

import pyopencl as cl
import pyopencl.tools as cl_tools

from ..errors import OutOfMemoryError


def format_bytes(n: int) -> str:
    """A byte count for people: '512 B', '1.5 MiB' (error messages here, `clnet devices`)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


class MemoryPool:
    """Allocates device buffers for one Device; freed buffers return to the pool when garbage-collected."""

    def __init__(self, device):
        self.device = device
        self._pool = cl_tools.MemoryPool(cl_tools.ImmediateAllocator(device.queue))

    def allocate(self, nbytes: int):
        nbytes = max(int(nbytes), 1)
        limit = self.device.max_alloc
        if nbytes > limit:
            raise OutOfMemoryError(
                f"cannot allocate {format_bytes(nbytes)} ({nbytes} bytes) on {self.device.name}: one buffer may be "
                f"at most {format_bytes(limit)} ({limit} bytes, CL_DEVICE_MAX_MEM_ALLOC_SIZE); use smaller batches "
                "or split the tensor")
        try:
            return self._pool.allocate(nbytes)
        except (cl.MemoryError, cl.RuntimeError, cl.LogicError) as first:
            self._pool.free_held()
            try:
                return self._pool.allocate(nbytes)
            except (cl.MemoryError, cl.RuntimeError, cl.LogicError):
                raise OutOfMemoryError(
                    f"cannot allocate {format_bytes(nbytes)} ({nbytes} bytes) on {self.device.name} "
                    f"(device memory {format_bytes(self.device.global_mem)}, "
                    f"{format_bytes(self.bytes_in_use)} held by clnet after releasing its cached blocks): "
                    f"{first}") from None

    @property
    def bytes_in_use(self) -> int:
        """Bytes in active blocks plus cached blocks (what the device sees clnet holding)."""
        return int(self._pool.managed_bytes)

    @property
    def active_bytes(self) -> int:
        return int(self._pool.active_bytes)

    def free_cached(self) -> None:
        """Give cached, unused blocks back to the driver."""
        self._pool.free_held()

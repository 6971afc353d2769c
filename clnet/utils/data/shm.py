"""Batches from worker processes in POSIX shared memory: written once by the worker, read in place.

Each worker owns a ring of shared-memory segments (SegmentRing). It copies a batch's big arrays (those
that become device tensors, SHM_THRESHOLD bytes or more) into a free segment and sends only their places
(a _Packed). The main process maps each segment once (SegmentMaps), copies to the device straight from
it, and when the copy has finished hands the segment's name back with the worker's next task, so the
worker reuses it. Reused segments are already in memory: no page faults, no segment made per batch
(a fresh segment per batch measured slower than pickling through the pipe, BENCHMARKS.md).

The worker creates and unlinks its segments (Python's resource tracker frees them if the worker is
killed); the main process only maps them.
"""
from __future__ import annotations

import mmap
import os

import numpy as np

from .collate import HostArray, map_leaves

try:  # POSIX shared memory (what multiprocessing.shared_memory uses); absent on Windows
    import _posixshmem
    from multiprocessing.shared_memory import SharedMemory
except ImportError:  # pragma: no cover - Windows: batches go through the pipe
    _posixshmem = None

SHM_THRESHOLD = 64 * 1024  # bytes: smaller arrays are cheaper to pickle through the pipe
_ALIGN = 64
_GRANULE = 1 << 20  # segments are made in whole MiB, so a ragged last batch fits a full one's segment


def available() -> bool:
    return _posixshmem is not None


class _ShmRef:
    __slots__ = ("offset", "shape", "dtype")

    def __init__(self, offset, shape, dtype):
        self.offset, self.shape, self.dtype = offset, shape, dtype


class _Packed:
    """A batch whose big HostArrays sit in shared-memory segment `name` (of `size` bytes) as _ShmRefs."""

    def __init__(self, name, size, data):
        self.name, self.size, self.data = name, size, data


class SegmentRing:
    """A worker's segments: a free one is filled with each batch, and comes back when the main process is done."""

    def __init__(self, threshold=None):
        self.threshold = SHM_THRESHOLD if threshold is None else threshold
        self.segments = {}  # name -> SharedMemory
        self.free = set()

    def release(self, names) -> None:
        self.free.update(n for n in names if n in self.segments)

    def _segment(self, nbytes) -> SharedMemory:
        fits = [n for n in self.free if self.segments[n].size >= nbytes]
        if fits:
            name = min(fits, key=lambda n: self.segments[n].size)
            self.free.discard(name)
            return self.segments[name]
        shm = SharedMemory(create=True, size=-(-nbytes // _GRANULE) * _GRANULE)
        self.segments[shm.name] = shm
        return shm

    def pack(self, data):
        """The batch with its big HostArrays copied into a segment (or the batch itself if none is big)."""
        if _posixshmem is None:
            return data
        big = []
        map_leaves(lambda x: big.append(x) if isinstance(x, HostArray) and x.nbytes >= self.threshold else None,
                   data)
        if not big:
            return data
        offsets, total = {}, 0
        for arr in big:
            offsets[id(arr)] = total
            total += -(-arr.nbytes // _ALIGN) * _ALIGN
        shm = self._segment(total)

        def place(x):
            if id(x) not in offsets:
                return x
            off = offsets[id(x)]
            np.ndarray(x.shape, x.dtype, buffer=shm.buf, offset=off)[...] = x
            return _ShmRef(off, x.shape, x.dtype.str)
        return _Packed(shm.name, shm.size, map_leaves(place, data))

    def give_back(self, packed) -> None:
        """A packed batch that could not be sent: its segment is free again."""
        if isinstance(packed, _Packed):
            self.free.add(packed.name)

    def close(self) -> None:
        for shm in self.segments.values():
            shm.close()
            try:
                shm.unlink()
            except FileNotFoundError:
                pass
        self.segments.clear()
        self.free.clear()


class SegmentMaps:
    """The main process's mappings of the workers' segments (each mapped once)."""

    def __init__(self):
        self._maps = {}

    def _map(self, name, size):
        mem = self._maps.get(name)
        if mem is None or len(mem) != size:
            path = name if name.startswith("/") else "/" + name
            fd = _posixshmem.shm_open(path, os.O_RDWR, mode=0o600)
            try:
                mem = self._maps[name] = mmap.mmap(fd, size)
            finally:
                os.close(fd)
        return mem

    def unpack(self, obj):
        """(the batch with its arrays viewing the segment, the segment's name or None)."""
        if not isinstance(obj, _Packed):
            return obj, None
        mem = self._map(obj.name, obj.size)

        def view(x):
            if isinstance(x, _ShmRef):
                return np.ndarray(x.shape, np.dtype(x.dtype), buffer=mem, offset=x.offset).view(HostArray)
            return x
        return map_leaves(view, obj.data), obj.name

    def close(self) -> None:
        """Unmap (mappings that arrays still view are left to the garbage collector)."""
        for mem in self._maps.values():
            try:
                mem.close()
            except BufferError:
                pass
        self._maps.clear()

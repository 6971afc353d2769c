"""Collectives on clnet tensors over MPI: all_reduce, broadcast, all_gather, reduce_scatter, ...

Each one stages the tensor through host memory: read it from the device, run the MPI collective on
the host copy, write the result back into the tensor (in place, as PyTorch's collectives do). MPI
cannot address OpenCL buffers, so the two copies are the price of portability; docs/distributed.md
says what a GPU-aware MPI would save. Every collective is started non-blocking and waited on with the
process group's deadline (process_group.wait), so a stuck or dead rank raises instead of hanging.
`async_op=True` returns a Work whose wait() finishes the collective and writes the result back.

dtypes: float32/float64/int32/int64/uint8 go to MPI as they are; float16 is reduced in float32 (MPI has
no standard half type); bool reduces with logical or (SUM, MAX) / and (MIN, PRODUCT).
"""
from __future__ import annotations

import enum

import numpy as np
import pyopencl as cl

from ..autograd import no_grad
from ..ops.creation import tensor as _make_tensor
from ..tensor import Tensor
from .process_group import _mpi, default_group, wait


class ReduceOp(enum.Enum):
    """How all_reduce / reduce / reduce_scatter combine the ranks' values."""

    SUM = "sum"
    AVG = "avg"
    PRODUCT = "product"
    MIN = "min"
    MAX = "max"
    BAND = "band"
    BOR = "bor"
    BXOR = "bxor"


def _mpi_op(op, dtype):
    MPI = _mpi()
    if not isinstance(op, ReduceOp):
        raise TypeError(f"op must be a clnet.distributed.ReduceOp (SUM, AVG, PRODUCT, MIN, MAX), got {op!r}")
    if dtype == np.bool_:
        return MPI.LOR if op in (ReduceOp.SUM, ReduceOp.MAX, ReduceOp.BOR, ReduceOp.AVG) else MPI.LAND
    if op in (ReduceOp.BAND, ReduceOp.BOR, ReduceOp.BXOR) and dtype.kind == "f":
        raise TypeError(f"ReduceOp.{op.name} needs an integer or bool tensor, got {dtype.name}")
    if op is ReduceOp.AVG and dtype.kind != "f":
        raise TypeError(f"ReduceOp.AVG needs a floating-point tensor, got {dtype.name} (use SUM and divide)")
    return {ReduceOp.SUM: MPI.SUM, ReduceOp.AVG: MPI.SUM, ReduceOp.PRODUCT: MPI.PROD, ReduceOp.MIN: MPI.MIN,
            ReduceOp.MAX: MPI.MAX, ReduceOp.BAND: MPI.BAND, ReduceOp.BOR: MPI.BOR, ReduceOp.BXOR: MPI.BXOR}[op]


# --- host staging ---------------------------------------------------------------------------------------
def _check(t, what):
    if not isinstance(t, Tensor):
        raise TypeError(f"{what} expects clnet tensors, got {type(t).__name__}")
    return t


def _host_dtype(dtype) -> np.dtype:
    return np.dtype(np.float32) if dtype == np.float16 else np.dtype(dtype)


def to_host(t: Tensor) -> np.ndarray:
    """A contiguous host copy in a dtype MPI reduces (float16 widened to float32)."""
    return np.ascontiguousarray(t.numpy(), dtype=_host_dtype(t.dtype))


def write_back(t: Tensor, arr: np.ndarray) -> None:
    """Store host values into t in place (bumps its version, as any in-place change)."""
    arr = np.ascontiguousarray(arr.reshape(t.shape), dtype=t.dtype)
    if arr.size == 0:
        return
    if t.is_contiguous():
        cl.enqueue_copy(t.device.queue, t._buf, arr, dst_offset=t.offset * t.dtype.itemsize, is_blocking=True)
        t._bump_version()
    else:
        with no_grad():
            t.copy_(_make_tensor(arr, dtype=t.dtype, device=t.device))


class Work:
    """A collective in flight (async_op=True): wait() completes it and writes the result into the tensors."""

    def __init__(self, request, what, finish):
        self._request, self._what, self._finish, self._done = request, what, finish, False

    def wait(self, timeout=None) -> bool:
        if not self._done:
            wait(self._request, self._what)
            self._finish()
            self._done = True
        return True

    def is_completed(self) -> bool:
        return self._done or bool(self._request.Test())

    def is_success(self) -> bool:
        return self.is_completed()


def _run(request, what, finish, async_op):
    work = Work(request, what, finish)
    if async_op:
        return work
    work.wait()
    return None


# --- the collectives ------------------------------------------------------------------------------------
def all_reduce(tensor, op=ReduceOp.SUM, group=None, async_op=False):
    """Every rank's `tensor` becomes the reduction (SUM, AVG, PRODUCT, MIN, MAX) of all ranks' tensors."""
    g = default_group()
    send = to_host(_check(tensor, "all_reduce"))
    recv = np.empty_like(send)
    request = g.comm.Iallreduce(send, recv, op=_mpi_op(op, send.dtype))

    def finish():
        if op is ReduceOp.AVG:
            recv[...] /= g.size
        write_back(tensor, recv)
    return _run(request, "all_reduce", finish, async_op)


def broadcast(tensor, src, group=None, async_op=False):
    """Every rank's `tensor` becomes rank `src`'s."""
    g = default_group()
    _check_rank(src, g, "src")
    _check(tensor, "broadcast")
    buf = to_host(tensor) if g.rank == src else np.empty(tensor.shape, _host_dtype(tensor.dtype))
    request = g.comm.Ibcast(buf, root=src)
    return _run(request, "broadcast", lambda: write_back(tensor, buf) if g.rank != src else None, async_op)


def all_gather(tensor_list, tensor, group=None, async_op=False):
    """tensor_list[i] becomes rank i's `tensor` (every rank passes tensors of the same shape and dtype)."""
    g = default_group()
    _check(tensor, "all_gather")
    _check_list(tensor_list, tensor, g, "all_gather", "tensor_list")
    send = to_host(tensor)
    recv = np.empty((g.size,) + send.shape, send.dtype)
    request = g.comm.Iallgather(send, recv)

    def finish():
        for i, t in enumerate(tensor_list):
            write_back(t, recv[i])
    return _run(request, "all_gather", finish, async_op)


def all_gather_into_tensor(output_tensor, input_tensor, group=None, async_op=False):
    """output_tensor (world_size * n rows, or shape (world_size, *input.shape)) holds every rank's input."""
    g = default_group()
    _check(output_tensor, "all_gather_into_tensor")
    send = to_host(_check(input_tensor, "all_gather_into_tensor"))
    if output_tensor.numel() != send.size * g.size:
        raise ValueError(f"all_gather_into_tensor: output has {output_tensor.numel()} elements; it needs world_size "
                         f"({g.size}) x {send.size}")
    recv = np.empty((g.size,) + send.shape, send.dtype)
    request = g.comm.Iallgather(send, recv)
    return _run(request, "all_gather_into_tensor", lambda: write_back(output_tensor, recv), async_op)


def reduce_scatter(output, input_list, op=ReduceOp.SUM, group=None, async_op=False):
    """output becomes the reduction over ranks of input_list[rank] (each rank passes world_size inputs)."""
    g = default_group()
    _check(output, "reduce_scatter")
    _check_list(input_list, output, g, "reduce_scatter", "input_list")
    send = np.concatenate([to_host(t).reshape(-1) for t in input_list])
    return _reduce_scatter(output, send, op, g, async_op)


def reduce_scatter_tensor(output, input, op=ReduceOp.SUM, group=None, async_op=False):
    """output becomes the reduction over ranks of this rank's 1/world_size share of `input`."""
    g = default_group()
    _check(output, "reduce_scatter_tensor")
    if _check(input, "reduce_scatter_tensor").numel() != output.numel() * g.size:
        raise ValueError(f"reduce_scatter_tensor: input has {input.numel()} elements; it needs world_size ({g.size}) "
                         f"x output's {output.numel()}")
    return _reduce_scatter(output, to_host(input).reshape(-1), op, g, async_op)


def _reduce_scatter(output, send, op, g, async_op):
    recv = np.empty(send.size // g.size, send.dtype)
    request = g.comm.Ireduce_scatter_block(send, recv, op=_mpi_op(op, send.dtype))

    def finish():
        if op is ReduceOp.AVG:
            recv[...] /= g.size
        write_back(output, recv)
    return _run(request, "reduce_scatter", finish, async_op)


def reduce(tensor, dst, op=ReduceOp.SUM, group=None, async_op=False):
    """Rank `dst`'s tensor becomes the reduction of all ranks' tensors (the others keep theirs)."""
    g = default_group()
    _check_rank(dst, g, "dst")
    send = to_host(_check(tensor, "reduce"))
    recv = np.empty_like(send) if g.rank == dst else None
    request = g.comm.Ireduce(send, recv, op=_mpi_op(op, send.dtype), root=dst)

    def finish():
        if g.rank == dst:
            if op is ReduceOp.AVG:
                recv[...] /= g.size
            write_back(tensor, recv)
    return _run(request, "reduce", finish, async_op)


def gather(tensor, gather_list=None, dst=0, group=None, async_op=False):
    """Rank `dst` receives every rank's tensor into gather_list (None on the other ranks)."""
    g = default_group()
    _check_rank(dst, g, "dst")
    send = to_host(_check(tensor, "gather"))
    recv = None
    if g.rank == dst:
        _check_list(gather_list, tensor, g, "gather", "gather_list")
        recv = np.empty((g.size,) + send.shape, send.dtype)
    request = g.comm.Igather(send, recv, root=dst)

    def finish():
        if g.rank == dst:
            for i, t in enumerate(gather_list):
                write_back(t, recv[i])
    return _run(request, "gather", finish, async_op)


def scatter(tensor, scatter_list=None, src=0, group=None, async_op=False):
    """Rank i's tensor becomes scatter_list[i] of rank `src`."""
    g = default_group()
    _check_rank(src, g, "src")
    recv = np.empty(_check(tensor, "scatter").shape, _host_dtype(tensor.dtype))
    send = None
    if g.rank == src:
        _check_list(scatter_list, tensor, g, "scatter", "scatter_list")
        send = np.stack([to_host(t) for t in scatter_list])
    request = g.comm.Iscatter(send, recv, root=src)
    return _run(request, "scatter", lambda: write_back(tensor, recv), async_op)


def barrier(group=None, async_op=False, device_ids=None):
    """Wait until every rank has reached this point."""
    g = default_group()
    return _run(g.comm.Ibarrier(), "barrier", lambda: None, async_op)


def _check_rank(r, g, what):
    if not isinstance(r, (int, np.integer)) or not 0 <= r < g.size:
        raise ValueError(f"{what}={r!r} is not a rank of this group (0..{g.size - 1})")


def _check_list(items, like, g, what, name):
    if not isinstance(items, (list, tuple)) or len(items) != g.size:
        raise ValueError(f"{what}: {name} must be a list of world_size ({g.size}) tensors, got "
                         f"{len(items) if isinstance(items, (list, tuple)) else type(items).__name__}")
    for t in items:
        _check(t, what)
        if tuple(t.shape) != tuple(like.shape) or t.dtype != like.dtype:
            raise ValueError(f"{what}: every tensor in {name} must have shape {tuple(like.shape)} and dtype "
                             f"{like.dtype.name}, got {tuple(t.shape)} {t.dtype.name}")

"""nn.parallel.DistributedDataParallel: one process per device, gradients averaged over MPI.

    dist.init_process_group(backend="mpi")          # every rank of `clnet launch -n K train.py`
    model = DistributedDataParallel(Net())           # rank 0's parameters and buffers on every rank
    for x, y in loader:                              # a DistributedSampler gives each rank its share
        loss_fn(model(x), y).backward()              # gradients averaged in buckets while backward runs
        opt.step(); opt.zero_grad()

As in PyTorch: construction broadcasts rank 0's parameters and buffers (after checking every rank built
the same shapes); each forward broadcasts rank 0's buffers first (broadcast_buffers=True), so BatchNorm
running statistics are rank 0's (each rank still normalises by its own batch's statistics: a per-rank
batch, not the global one); `no_sync()` accumulates gradients locally (the next backward outside it
averages the sum); find_unused_parameters=True lets parameters that the forward did not use take part
with zeros. The bucketing and the overlap of communication with backward are in reducer.py.
"""
from __future__ import annotations

import contextlib
import hashlib

import numpy as np

from ...autograd import is_grad_enabled, no_grad
from ...distributed import collectives
from ...distributed import process_group as _pg
from ...tensor import Tensor
from ..module import Module
from .reducer import Reducer

DEFAULT_BUCKET_CAP_MB = 25  # PyTorch's defaults
DEFAULT_FIRST_BUCKET_MB = 1


def _flat_broadcast(tensors, group, src=0):
    """Broadcast many tensors from rank `src` as one host buffer per dtype (one MPI call each)."""
    by_dtype = {}
    for t in tensors:
        by_dtype.setdefault(collectives._host_dtype(t.dtype), []).append(t)
    for dtype, group_tensors in by_dtype.items():
        sizes = [t.numel() for t in group_tensors]
        buf = (np.concatenate([collectives.to_host(t).reshape(-1) for t in group_tensors]) if group.rank == src
               else np.empty(sum(sizes), dtype))
        _pg.wait(group.comm.Ibcast(buf, root=src), "DistributedDataParallel broadcast of rank 0's state")
        if group.rank != src:
            start = 0
            for t, n in zip(group_tensors, sizes):
                collectives.write_back(t, buf[start:start + n])
                start += n


def _check_same_shapes(named, group):
    """Every rank must have built the same parameters: compare a fingerprint of names, shapes and dtypes."""
    text = ";".join(f"{n}:{tuple(t.shape)}:{t.dtype.name}" for n, t in named)
    mine = np.frombuffer(hashlib.sha256(text.encode()).digest()[:8], dtype=np.int64).copy()
    every = np.empty(group.size, np.int64)
    _pg.wait(group.comm.Iallgather(mine, every), "DistributedDataParallel parameter check")
    if len(set(every.tolist())) > 1:
        raise RuntimeError(f"DistributedDataParallel: the ranks built different models (parameter names, shapes or "
                           f"dtypes differ; rank {group.rank} has {len(named)} tensors). DDP expects the same "
                           "model on every rank.")


class DistributedDataParallel(Module):
    """DistributedDataParallel(module, device_ids=None, output_device=None, dim=0, broadcast_buffers=True,
    process_group=None, bucket_cap_mb=None, find_unused_parameters=False, ...)."""

    def __init__(self, module, device_ids=None, output_device=None, dim=0, broadcast_buffers=True,
                 process_group=None, bucket_cap_mb=None, find_unused_parameters=False, check_reduction=False,
                 gradient_as_bucket_view=False, static_graph=False, **kwargs):
        super().__init__()
        unknown = set(kwargs) - {"init_sync", "delay_all_reduce_named_params",
                                 "param_to_hook_all_reduce", "mixed_precision", "device_mesh"}
        if unknown:
            raise TypeError(f"DistributedDataParallel got unexpected keyword arguments {sorted(unknown)}")
        group = _pg.default_group()
        self.module = module
        self.device_ids = device_ids
        self.output_device = output_device
        self.dim = dim
        self.broadcast_buffers = broadcast_buffers
        self.find_unused_parameters = find_unused_parameters
        self.require_backward_grad_sync = True
        params = [p for p in module.parameters() if p.requires_grad]
        if not params:
            raise RuntimeError("DistributedDataParallel is not needed when a module doesn't have any parameter that "
                               "requires a gradient.")
        if not hasattr(params[0], "register_post_accumulate_grad_hook"):
            raise NotImplementedError("DistributedDataParallel needs Tensor.register_post_accumulate_grad_hook "
                                      "(autograd hooks, issue 13), which this build does not have yet")
        named = list(module.named_parameters()) + list(module.named_buffers())
        _check_same_shapes(named, group)
        with no_grad():
            _flat_broadcast([t for _, t in named], group)
        cap = DEFAULT_BUCKET_CAP_MB if bucket_cap_mb is None else bucket_cap_mb
        first = min(DEFAULT_FIRST_BUCKET_MB, cap)
        self.reducer = Reducer(params, int(cap * 1024 * 1024), int(first * 1024 * 1024))
        self._hooks = [p.register_post_accumulate_grad_hook(self.reducer.mark_ready) for p in params]

    @property
    def bucket_bytes(self) -> list:
        """The size of each gradient bucket in bytes (all-reduced once per step)."""
        return [b.host.nbytes for b in self.reducer.buckets]

    def forward(self, *inputs, **kwargs):
        reducer = self.reducer
        if reducer.unfinished():
            missing = [name for name, p in self.module.named_parameters()
                       if any(p is q for q in reducer.unready_parameters()) and p.grad is None]
            raise RuntimeError(
                "Expected to have finished reduction in the prior iteration before starting a new one. This error "
                "indicates that your module has parameters that were not used in producing loss. You can enable "
                "unused parameter detection by passing the keyword argument `find_unused_parameters=True` to "
                "`clnet.nn.parallel.DistributedDataParallel`, and by making sure all `forward` function outputs "
                "participate in calculating loss. Parameters that received no gradient: "
                f"{', '.join(missing[:10]) or '(unknown)'}")
        if self.broadcast_buffers:
            buffers = [b for b in self.module.buffers()]
            if buffers:
                with no_grad():
                    _flat_broadcast(buffers, _pg.default_group())
        sync = self.require_backward_grad_sync and is_grad_enabled()
        if sync:
            reducer.prepare()
        out = self.module(*inputs, **kwargs)
        if sync and self.find_unused_parameters:
            used = _leaves_reached(out)
            with no_grad():
                for p in list(reducer.unready_parameters()):
                    if id(p) not in used:
                        reducer.mark_ready(p)
        return out

    @contextlib.contextmanager
    def no_sync(self):
        """Inside: backward only accumulates gradients locally (no communication)."""
        old = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = old

    def __del__(self):
        reducer = self.__dict__.get("reducer")
        if reducer is not None:
            reducer.close()


def _leaves_reached(outputs) -> set:
    """ids of the leaf tensors that the outputs' recorded graph reaches."""
    stack, seen, leaves = [], set(), set()

    def collect(x):
        if isinstance(x, Tensor):
            if x._node is not None:
                stack.append(x._node)
            elif x.requires_grad:
                leaves.add(id(x))
        elif isinstance(x, (list, tuple)):
            for v in x:
                collect(v)
        elif isinstance(x, dict):
            for v in x.values():
                collect(v)
    collect(outputs)
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        for edge in node.edges:
            if edge.leaf is not None:
                leaves.add(id(edge.leaf))
            if edge.node is not None:
                stack.append(edge.node)
    return leaves

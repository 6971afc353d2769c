"""tf.distribute's strategies on clnet: where a Keras model's replicas run and how their gradients meet.

    strategy = tf.distribute.MirroredStrategy()          # the lecture's snippet, with import clnet as tf
    with strategy.scope():
        model = tf.keras.Sequential([...])
        model.compile(...)
    model.fit(x, y, batch_size=64)                         # 64 is the global batch, split over the replicas

MirroredStrategy(devices=None) mirrors the model on the devices of this process: every GPU, or the
default device when there is none (TensorFlow uses the CPU then), so on one device it is plain training.
MultiWorkerMirroredStrategy mirrors it over the ranks of an MPI job (`clnet launch -n K train.py`): each
rank takes its share of every global batch, the gradients are averaged over MPI (weighted by the shares,
so the step equals one process on the whole batch), and rank 0's weights are copied to every rank before
the first step. Keras' trainer asks the model's strategy (recorded when the model is compiled inside
scope()) for these steps: shard(), sync_variables(), sync_gradients().
"""
from __future__ import annotations

import contextlib
import enum
import threading

import numpy as np

from .. import distributed as dist
from ..autograd import no_grad
from ..backend.devices import all_devices, get_device
from ..distributed import collectives
from ..distributed import process_group as _pg
from ..ops.creation import zeros_like

_state = threading.local()


class ReduceOp(enum.Enum):
    """tf.distribute.ReduceOp."""

    SUM = "SUM"
    MEAN = "MEAN"


class Strategy:
    """The default strategy: one replica, this process, the default device."""

    def __init__(self, devices=None):
        self._devices = [get_device(d) for d in devices] if devices else [get_device(None)]
        self.extended = self

    # --- what users call --------------------------------------------------------------------------------
    @property
    def num_replicas_in_sync(self) -> int:
        return len(self._devices) * self._num_workers()

    @contextlib.contextmanager
    def scope(self):
        """Inside: models and variables are made for this strategy (their device is its first device)."""
        stack = _stack()
        stack.append(self)
        try:
            yield self
        finally:
            stack.pop()

    def experimental_distribute_dataset(self, dataset, options=None):
        """The dataset itself: the trainer shards each global batch (see shard())."""
        return dataset

    def run(self, fn, args=(), kwargs=None):
        """fn(*args, **kwargs) on this process's replica (one replica per process)."""
        return fn(*args, **(kwargs or {}))

    def reduce(self, reduce_op, value, axis=None):
        """A per-replica value combined over the replicas (SUM or MEAN), reduced over `axis` first."""
        op = reduce_op if isinstance(reduce_op, ReduceOp) else ReduceOp[str(reduce_op).upper()]
        if axis is not None:
            value = value.sum(axis) if op is ReduceOp.SUM else value.mean(axis)
        return value

    # --- what Keras' trainer calls -------------------------------------------------------------------------
    def _num_workers(self) -> int:
        return 1

    def shard(self):
        """(index, count): this process takes part `index` of `count` of every global batch."""
        return 0, 1

    def shared_seed(self, seed: int) -> int:
        """A seed that is the same on every worker (rank 0's)."""
        return int(seed)

    def sync_variables(self, variables) -> None:
        """Make every worker start from the same weights (rank 0's)."""

    def sync_gradients(self, variables, local_batch_size: int) -> None:
        """Average the variables' gradients over the workers, weighted by their share of the batch."""

    def __repr__(self):
        return f"<{type(self).__name__} replicas={self.num_replicas_in_sync} devices={[d.spec for d in self._devices]}>"


def _default_mirrored_devices():
    """MirroredStrategy(devices=None): every GPU of this machine, else the default device."""
    gpus = [d for d in all_devices() if d.type == "gpu" and not d.is_simulator]
    return gpus if gpus else [get_device(None)]


class MirroredStrategy(Strategy):
    """Synchronous training on the devices of one process (tf.distribute.MirroredStrategy)."""

    def __init__(self, devices=None, cross_device_ops=None):
        super().__init__(devices or _default_mirrored_devices())
        if len(self._devices) > 1:
            raise NotImplementedError(
                f"MirroredStrategy over {len(self._devices)} devices in one process is not supported yet: run one "
                "process per device with MultiWorkerMirroredStrategy (`clnet launch -n K train.py` gives each rank "
                "its own GPU), or pick one device with devices=[...]; PyTorch-style code can use "
                "clnet.nn.DataParallel")


class MultiWorkerMirroredStrategy(Strategy):
    """Synchronous training over the ranks of an MPI job, one replica per rank
    (tf.distribute.MultiWorkerMirroredStrategy); starts the process group if needed."""

    def __init__(self, cluster_resolver=None, communication_options=None):
        if not dist.is_initialized():
            dist.init_process_group(backend="mpi")
        super().__init__(None)
        self._group = _pg.default_group()

    def _num_workers(self) -> int:
        return self._group.size

    def shard(self):
        return self._group.rank, self._group.size

    def shared_seed(self, seed: int) -> int:
        buf = np.array([int(seed) & ((1 << 62) - 1)], dtype=np.int64)
        _pg.wait(self._group.comm.Ibcast(buf, root=0), "MultiWorkerMirroredStrategy seed broadcast")
        return int(buf[0])

    def sync_variables(self, variables) -> None:
        with no_grad():
            for v in variables:
                dist.broadcast(v, src=0)

    def sync_gradients(self, variables, local_batch_size: int) -> None:
        """One flat all-reduce per dtype of n_local * grad, divided by the global sample count."""
        group = self._group
        MPI = _pg._mpi()
        count = np.array([float(local_batch_size)])
        _pg.wait(group.comm.Iallreduce(MPI.IN_PLACE, count, op=MPI.SUM), "MultiWorkerMirroredStrategy batch size")
        total = float(count[0])
        with no_grad():
            for v in variables:
                if v.grad is None:
                    v.grad = zeros_like(v)
            by_dtype = {}
            for v in variables:
                by_dtype.setdefault(collectives._host_dtype(v.grad.dtype), []).append(v)
            for dtype, vs in by_dtype.items():
                flat = np.concatenate([collectives.to_host(v.grad).reshape(-1) for v in vs]) * local_batch_size
                _pg.wait(group.comm.Iallreduce(MPI.IN_PLACE, flat, op=MPI.SUM),
                         "MultiWorkerMirroredStrategy gradient all-reduce")
                flat /= total
                start = 0
                for v in vs:
                    n = v.grad.numel()
                    collectives.write_back(v.grad, flat[start:start + n])
                    start += n

    def reduce(self, reduce_op, value, axis=None):
        value = super().reduce(reduce_op, value, axis)
        op = reduce_op if isinstance(reduce_op, ReduceOp) else ReduceOp[str(reduce_op).upper()]
        out = value.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.AVG if op is ReduceOp.MEAN else dist.ReduceOp.SUM)
        return out


_DEFAULT = None


def _stack():
    stack = getattr(_state, "stack", None)
    if stack is None:
        stack = _state.stack = []
    return stack


def get_strategy() -> Strategy:
    """The strategy of the innermost scope(), else the default (one replica) strategy."""
    global _DEFAULT
    stack = _stack()
    if stack:
        return stack[-1]
    if _DEFAULT is None:
        _DEFAULT = Strategy()
    return _DEFAULT


def has_strategy() -> bool:
    return bool(_stack())


def in_cross_replica_context() -> bool:
    return True

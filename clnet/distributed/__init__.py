"""clnet.distributed: processes that train together over MPI (torch.distributed's API).

    # run with: clnet launch -n 2 train.py   (or: mpiexec -n 2 python train.py)
    import clnet.distributed as dist
    dist.init_process_group(backend="mpi")
    dist.all_reduce(t, op=dist.ReduceOp.SUM)      # in place, on every rank

mpi4py and an MPI library (the `clnet[mpi]` extra brings both) are imported only by init_process_group.
docs/distributed.md covers launching, multi-node runs and what the collectives cost.
"""
from .collectives import (ReduceOp, Work, all_gather, all_gather_into_tensor, all_reduce, barrier, broadcast, gather,
                          reduce, reduce_scatter, reduce_scatter_tensor, scatter)
from .process_group import (Backend, DistributedTimeoutError, destroy_process_group, get_backend, get_rank,
                            get_world_size, init_process_group, is_available, is_gloo_available, is_initialized,
                            is_mpi_available, is_nccl_available)

reduce_op = ReduceOp  # PyTorch's old spelling

__all__ = ["Backend", "DistributedTimeoutError", "ReduceOp", "Work", "all_gather", "all_gather_into_tensor",
           "all_reduce", "barrier", "broadcast", "destroy_process_group", "gather", "get_backend", "get_rank",
           "get_world_size", "init_process_group", "is_available", "is_gloo_available", "is_initialized",
           "is_mpi_available", "is_nccl_available", "reduce", "reduce_op", "reduce_scatter", "reduce_scatter_tensor",
           "scatter"]

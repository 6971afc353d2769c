"""clnet.nn.parallel: data parallelism over several devices in one process (DataParallel) and over MPI
processes (DistributedDataParallel), with PyTorch's names."""
from .data_parallel import DataParallel
from .distributed import DistributedDataParallel
from .scatter_gather import gather, replicate, scatter

__all__ = ["DataParallel", "DistributedDataParallel", "gather", "replicate", "scatter"]

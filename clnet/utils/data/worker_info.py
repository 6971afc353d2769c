"""Which DataLoader worker this process is (get_worker_info), and the rule that workers stay off devices.

A worker process only reads samples and collates them on the host: a forked child cannot use the
OpenCL objects it inherited (the driver's threads did not come along, so a command would never run),
and a spawned one would build every kernel again. `enter_worker` therefore makes any use of a device
in a worker raise an error that says so, instead of hanging.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...backend.devices import Device

_INFO = None


@dataclass(frozen=True)
class WorkerInfo:
    """What a dataset's __iter__ or a worker_init_fn may read inside a worker: id, num_workers, seed, dataset."""

    id: int
    num_workers: int
    seed: int
    dataset: object


def get_worker_info() -> WorkerInfo | None:
    """This worker's WorkerInfo inside a DataLoader worker process; None in the main process."""
    return _INFO


_NO_DEVICE = ("DataLoader worker processes work on the host and cannot use OpenCL devices: return numpy "
              "arrays or Python numbers from the dataset (the DataLoader makes clnet tensors of them in the main "
              "process), or use num_workers=0 for a dataset that computes on a device")


def _refuse(self):
    raise RuntimeError(f"{_NO_DEVICE} (device {self.name})")


def enter_worker(info: WorkerInfo) -> None:
    """Mark this process as DataLoader worker `info.id` and make device use raise (worker processes only)."""
    global _INFO
    _INFO = info
    for name in ("context", "queue", "pool"):
        setattr(Device, name, property(_refuse))

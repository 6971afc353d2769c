"""How batches travel from DataLoader workers: shared memory against pickling through the pipe.

A dataset whose items are ready batches of `--batch` x `--shape` float32 (DataLoader(batch_size=None), no
loading or collating cost) is read by a DataLoader with one worker; the loop only receives the batches
(they still go to the device, as in training), so what is timed is the worker handing batches over. "shm" is clnet's default (arrays of SHM_THRESHOLD bytes and more in one shared-memory segment per
batch), "pipe" sends everything pickled through the worker's pipe. Reported: ms per batch (median of --reps
epochs of --batches batches, alternating), and the MB/s it makes.

    python benchmarks/bench_worker_transfer.py
    python benchmarks/bench_worker_transfer.py --shape 3,64,64 --batch 64
"""
from __future__ import annotations

import argparse

import numpy as np

from common import alternate, header, median, open_device, table


class Ready:
    def __init__(self, n, batch, shape):
        self.blocks = np.random.default_rng(0).standard_normal((n, batch) + shape, dtype=np.float32)

    def __len__(self):
        return len(self.blocks)

    def __getitem__(self, i):
        return self.blocks[i]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None)
    ap.add_argument("--shape", default="3,32,32")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args(argv)
    from clnet.utils.data import DataLoader, shm
    dev = open_device(args.device)
    shape = tuple(int(s) for s in args.shape.split(","))
    header(f"worker -> main transfer of batches of {args.batch} x {shape} float32", dev)
    data = Ready(args.batches, args.batch, shape)
    default = shm.SHM_THRESHOLD
    loaders = {}
    for name, threshold in (("shm", default), ("pipe", float("inf"))):
        shm.SHM_THRESHOLD = threshold  # read by the workers, which are forked by the first epoch below
        loaders[name] = DataLoader(data, batch_size=None, num_workers=1, persistent_workers=True, device=dev)
        [None for _ in loaders[name]]
    shm.SHM_THRESHOLD = default

    def epoch(loader):
        def run():
            for _ in loader:
                pass
            dev.synchronize()
        return run
    times = alternate({name: epoch(loader) for name, loader in loaders.items()}, args.reps)
    for loader in loaders.values():
        loader._iterator._shutdown()
    mb = args.batch * int(np.prod(shape)) * 4 / 1e6
    rows = [{"transfer": k, "ms/batch": median(v) / args.batches * 1e3,
             "MB/s": mb / (median(v) / args.batches)} for k, v in times.items()]
    print(f"{mb:.1f} MB per batch")
    table(rows, ["transfer", "ms/batch", "MB/s"], {"ms/batch": "{:.2f}", "MB/s": "{:.0f}"})


if __name__ == "__main__":
    main()

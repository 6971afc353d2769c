"""keras.utils.PyDataset: a dataset of whole batches, read in parallel by threads or processes.

A subclass implements __getitem__(index) -> one batch (x, (x, y) or (x, y, sample_weight)) and __len__
(the number of batches), and calls super().__init__(workers=..., use_multiprocessing=..., max_queue_size=...).
fit/evaluate/predict read it through clnet/keras/data_adapters.py: with workers > 1, batches are read ahead
by a thread pool, or by worker processes with use_multiprocessing=True (clnet.utils.data's workers:
spawn- and fork-safe, errors re-raised with the worker's traceback).
"""
from __future__ import annotations

import warnings


class PyDataset:
    """Base class for batch datasets (keras.utils.PyDataset; keras.utils.Sequence is the same class)."""

    def __init__(self, workers=1, use_multiprocessing=False, max_queue_size=10):
        self._workers = workers
        self._use_multiprocessing = use_multiprocessing
        self._max_queue_size = max_queue_size

    def _warn_if_super_not_called(self):
        if not hasattr(self, "_workers"):
            warnings.warn("Your `PyDataset` class should call `super().__init__(**kwargs)` in its constructor. "
                          "`**kwargs` can include `workers`, `use_multiprocessing`, `max_queue_size`. Do not pass "
                          "these arguments to `fit()`, as they will be ignored.", stacklevel=3)
            self._workers, self._use_multiprocessing, self._max_queue_size = 1, False, 10

    @property
    def workers(self):
        self._warn_if_super_not_called()
        return self._workers

    @workers.setter
    def workers(self, value):
        self._workers = value

    @property
    def use_multiprocessing(self):
        self._warn_if_super_not_called()
        return self._use_multiprocessing

    @use_multiprocessing.setter
    def use_multiprocessing(self, value):
        self._use_multiprocessing = value

    @property
    def max_queue_size(self):
        self._warn_if_super_not_called()
        return self._max_queue_size

    @max_queue_size.setter
    def max_queue_size(self, value):
        self._max_queue_size = value

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__(index) returning one batch")

    @property
    def num_batches(self):
        """The number of batches (len(self)); None for an endless dataset."""
        if hasattr(self, "__len__"):
            return len(self)
        return None

    def on_epoch_begin(self):
        """Called at the start of every epoch (override to prepare it)."""

    def on_epoch_end(self):
        """Called at the end of every epoch (override, e.g. to reshuffle)."""

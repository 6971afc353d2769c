"""keras.callbacks.TensorBoard: event files TensorBoard reads, written with the `tensorboard` package's own
event writer and protocol buffers (no TensorFlow needed; `pip install tensorboard`).

As Keras does, training scalars go to <log_dir>/train and validation ones to <log_dir>/validation, named
"epoch_<metric>" once per epoch ("batch_<metric>" every update_freq batches when it is an int),
"epoch_learning_rate" with the optimizer's rate, "evaluation_<metric>_vs_iterations" for the validation
metrics against the optimizer's step count, and with histogram_freq > 0 a histogram of every weight.
"""
from __future__ import annotations

import os
import time

import numpy as np

from .base import Callback


def _writer_modules():
    try:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except ImportError as err:  # an optional dependency, imported where it is used (as Keras imports TensorFlow)
        raise ImportError("keras.callbacks.TensorBoard needs the `tensorboard` package to write event files: "
                          "pip install tensorboard") from err
    return event_pb2, summary_pb2, EventFileWriter


class _Writer:
    """Scalars and histograms into one event file (one per run directory, as TensorBoard expects)."""

    def __init__(self, folder):
        self._event_pb2, self._summary_pb2, writer_cls = _writer_modules()
        os.makedirs(folder, exist_ok=True)
        self._writer = writer_cls(folder)

    def _add(self, value, step):
        summary = self._summary_pb2.Summary(value=[value])
        self._writer.add_event(self._event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

    def scalar(self, tag, value, step):
        self._add(self._summary_pb2.Summary.Value(tag=tag, simple_value=float(value)), step)

    def histogram(self, tag, values, step):
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if values.size == 0:
            return
        counts, edges = np.histogram(values, bins=30)
        proto = self._summary_pb2.HistogramProto(
            min=float(values.min()), max=float(values.max()), num=float(values.size), sum=float(values.sum()),
            sum_squares=float(np.square(values).sum()), bucket_limit=[float(e) for e in edges[1:]],
            bucket=[float(c) for c in counts])
        self._add(self._summary_pb2.Summary.Value(tag=tag, histo=proto), step)

    def flush(self):
        self._writer.flush()

    def close(self):
        self._writer.close()


class TensorBoard(Callback):
    """Log metrics (and weight histograms) for TensorBoard: `tensorboard --logdir <log_dir>`."""

    def __init__(self, log_dir="logs", histogram_freq=0, write_graph=True, write_images=False,
                 write_steps_per_second=False, update_freq="epoch", profile_batch=0, embeddings_freq=0,
                 embeddings_metadata=None):
        super().__init__()
        _writer_modules()  # fail at construction, with the fix, when tensorboard is missing
        if update_freq != "epoch" and not (isinstance(update_freq, int) and update_freq > 0) and \
                update_freq != "batch":
            raise ValueError(f"Unrecognized update_freq: {update_freq!r} (use 'epoch', 'batch' or a positive int)")
        self.log_dir = os.fspath(log_dir)
        self.histogram_freq, self.write_graph, self.write_images = int(histogram_freq), write_graph, write_images
        self.write_steps_per_second = bool(write_steps_per_second)
        self.update_freq = 1 if update_freq == "batch" else update_freq
        self._writers = {}
        self._global_step = 0
        self._epoch_start = None
        self._epoch_steps = 0

    def _writer(self, run):
        if run not in self._writers:
            self._writers[run] = _Writer(os.path.join(self.log_dir, run))
        return self._writers[run]

    def on_train_begin(self, logs=None):
        self._global_step = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start, self._epoch_steps = time.time(), 0

    def on_train_batch_end(self, batch, logs=None):
        self._global_step += 1
        self._epoch_steps += 1
        if isinstance(self.update_freq, int) and self._global_step % self.update_freq == 0:
            writer = self._writer("train")
            for name, value in (logs or {}).items():
                if np.ndim(value) == 0:
                    writer.scalar(f"batch_{name}", value, self._global_step)

    def on_epoch_end(self, epoch, logs=None):
        train, val = self._writer("train"), None
        for name, value in (logs or {}).items():
            if np.ndim(value) != 0:
                continue
            if name.startswith("val_"):
                val = val or self._writer("validation")
                val.scalar(f"epoch_{name[4:]}", value, epoch)
                val.scalar(f"evaluation_{name[4:]}_vs_iterations", value, self._optimizer_steps())
            else:
                train.scalar(f"epoch_{name}", value, epoch)
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None and "learning_rate" not in (logs or {}):
            train.scalar("epoch_learning_rate", float(optimizer.learning_rate), epoch)
        if self.write_steps_per_second and self._epoch_start is not None:
            train.scalar("epoch_steps_per_second", self._epoch_steps / max(time.time() - self._epoch_start, 1e-9),
                         epoch)
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            for w in self.model.weights:
                train.histogram(getattr(w, "path", None) or w.name or "weight", w.numpy(), epoch)
        for writer in self._writers.values():
            writer.flush()

    def _optimizer_steps(self):
        optimizer = getattr(self.model, "optimizer", None)
        return int(getattr(optimizer, "iterations", self._global_step))

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

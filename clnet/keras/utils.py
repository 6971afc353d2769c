"""keras.utils: to_categorical, Progbar, set_random_seed and the host-side helpers the trainer shares.

Progbar reproduces Keras 3's progress bar (`12/50 ━━━━━━━━━━━━━━━━━━━━ 1s 21ms/step - loss: 0.2104`).
It renders at most once per `interval` seconds, and when given a mapping of values it reads them only
when it renders, so the values may be lazy device reads (one host synchronisation per refresh).
"""
from __future__ import annotations

import math
import random as _pyrandom
import re
import sys
import time
from collections.abc import Mapping

import numpy as np

import clnet

from .data_adapters import pack_x_y_sample_weight, unpack_x_y_sample_weight  # noqa: F401  (issue 15's adapters)
from .model_visualization import model_to_dot, plot_model  # noqa: F401
from .py_dataset import PyDataset
from .saving.object_registration import (CustomObjectScope, custom_object_scope, get_custom_objects,  # noqa: F401
                                         get_registered_name, get_registered_object, register_keras_serializable)
from .sequence_utils import pad_sequences, timeseries_dataset_from_array  # noqa: F401

Sequence = PyDataset  # Keras 3 keeps the old name

# --- random seeds -----------------------------------------------------------------------------------
_host_rng = np.random.default_rng()


def host_rng() -> np.random.Generator:
    """The generator initializers and shuffling draw from; reseeded by set_random_seed."""
    return _host_rng


def set_random_seed(seed: int) -> None:
    """Seed Python's, numpy's, clnet's device generator and the Keras-side generator at once (as Keras)."""
    global _host_rng
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"set_random_seed expects an int, got {seed!r}")
    _pyrandom.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    _host_rng = np.random.default_rng(int(seed))
    clnet.manual_seed(int(seed))


# --- names ------------------------------------------------------------------------------------------
_name_counts: dict[str, int] = {}


def unique_name(base: str) -> str:
    """Keras's automatic names: dense, dense_1, dense_2, ... per base name until clear_session()."""
    n = _name_counts.get(base, 0)
    _name_counts[base] = n + 1
    return base if n == 0 else f"{base}_{n}"


def clear_session() -> None:
    """Reset automatic layer names (Keras's keras.utils.clear_session)."""
    _name_counts.clear()


def snake_case(name: str) -> str:
    """Keras's names from class names: Conv2D -> conv2d, MaxPooling2D -> max_pooling2d, PReLU -> p_re_lu (the
    same rule as Keras, because saved weight files name layers this way)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


# --- data -------------------------------------------------------------------------------------------
def to_categorical(x, num_classes=None):
    """Integer class vector -> one-hot float32 matrix (a trailing axis of size 1 is dropped, as Keras)."""
    x = np.asarray(x.numpy() if hasattr(x, "numpy") and not isinstance(x, np.ndarray) else x)
    if x.dtype.kind == "f":
        if not np.all(np.equal(np.mod(x, 1), 0)):
            raise ValueError("to_categorical expects integer class labels; got non-integer floats")
        x = x.astype(np.int64)
    elif x.dtype.kind not in "iub":
        raise TypeError(f"to_categorical expects integer class labels, got dtype {x.dtype}")
    x = x.astype(np.int64)
    shape = x.shape
    if shape and shape[-1] == 1 and len(shape) > 1:
        shape = shape[:-1]
    x = x.reshape(-1)
    if x.size and x.min() < 0:
        raise ValueError(f"to_categorical: class labels must be >= 0, found {int(x.min())}")
    if num_classes is None:
        num_classes = int(x.max()) + 1 if x.size else 0
    elif x.size and x.max() >= num_classes:
        raise ValueError(f"to_categorical: label {int(x.max())} is out of range for num_classes={num_classes}")
    out = np.zeros((x.size, num_classes), dtype=np.float32)
    out[np.arange(x.size), x] = 1.0
    return out.reshape(shape + (num_classes,))


def normalize(x, axis=-1, order=2):
    """x divided by its L-`order` norm along `axis` (numpy in, numpy out)."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, ord=order, axis=axis, keepdims=True)
    return x / np.where(norm == 0, 1, norm)


# --- progress bar -----------------------------------------------------------------------------------
def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _fmt_value(v) -> str:
    try:
        avg = float(v)
    except (TypeError, ValueError):
        return f" {v}"
    return f" {avg:.4f}" if abs(avg) > 1e-3 else f" {avg:.4e}"


class Progbar:
    """Keras's progress bar. verbose=1: a live bar on a terminal (one final line otherwise); verbose=2: a
    line at the end; verbose=0: silent.

    update(current, values) takes (name, value) pairs (averaged over steps unless listed in
    stateful_metrics) or a mapping of running values (all treated as stateful, read only when drawing).
    """

    def __init__(self, target, width=20, verbose=1, interval=0.05, stateful_metrics=None, unit_name="step",
                 stream=None, dynamic=None):
        self.target = target
        self.width = width
        self.verbose = verbose
        self.interval = interval
        self.unit_name = unit_name
        self.stateful_metrics = set(stateful_metrics or ())
        self.stream = stream
        self._dynamic_display = _is_terminal(self._out()) if dynamic is None else dynamic
        self._values = {}
        self._values_order = []
        self._seen_so_far = 0
        self._start = time.time()
        self._last_update = 0.0
        self._time_after_first_step = None
        self._prev_total_width = 0

    def _out(self):
        return self.stream if self.stream is not None else sys.stdout

    def will_render(self, current, finalize=None) -> bool:
        """Whether update(current) would draw now (callers skip reading device values otherwise)."""
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        if self.verbose == 1:
            if finalize:
                return True
            return self._dynamic_display and time.time() - self._last_update >= self.interval
        return self.verbose == 2 and finalize

    def update(self, current, values=None, finalize=None):
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        render = self.will_render(current, finalize)
        if isinstance(values, Mapping):
            if render:
                self._take_stateful(values.items())
        else:
            self._take(values or [], current)
        now = time.time()
        time_per_unit = self._estimate_step_duration(current, now)
        self._seen_so_far = current
        if render and self.verbose == 1:
            self._draw_bar(current, now, time_per_unit, finalize)
        elif render and self.verbose == 2:
            self._draw_line(current, now, time_per_unit)
        if render:
            self._last_update = now

    def add(self, n, values=None):
        self.update(self._seen_so_far + n, values)

    def _take_stateful(self, items):
        for k, v in items:
            if k not in self._values_order:
                self._values_order.append(k)
            self._values[k] = [v, 1]

    def _take(self, items, current):
        for k, v in items:
            if k not in self._values_order:
                self._values_order.append(k)
            if k in self.stateful_metrics:
                self._values[k] = [v, 1]
                continue
            base = max(current - self._seen_so_far, 1)
            v = float(v)
            if k not in self._values:
                self._values[k] = [v * base, base]
            else:
                self._values[k][0] += v * base
                self._values[k][1] += base

    def _metrics_text(self):
        info = ""
        for k in self._values_order:
            total, count = self._values[k]
            value = total if count == 1 else float(total) / max(1, count)
            info += f" - {k}:" + _fmt_value(value)
        return info

    def _estimate_step_duration(self, current, now):
        if not current:
            return 0.0
        if self._time_after_first_step is not None and current > 1:
            per = (now - self._time_after_first_step) / (current - 1)
        else:
            per = (now - self._start) / current
        if current == 1 and self._time_after_first_step is None:
            self._time_after_first_step = now
        return per

    def _format_time(self, per):
        if per >= 1 or per == 0:
            return f" {per:.0f}s/{self.unit_name}"
        if per >= 1e-3:
            return f" {per * 1e3:.0f}ms/{self.unit_name}"
        return f" {per * 1e6:.0f}us/{self.unit_name}"

    def _style(self, text, code):
        return f"\x1b[{code}m{text}\x1b[0m" if self._dynamic_display else text

    def _draw_bar(self, current, now, per, finalize):
        out = self._out()
        message = ("\b" * self._prev_total_width + "\r") if self._dynamic_display else ""
        if self.target is not None:
            digits = int(math.log10(max(self.target, 1))) + 1
            count = f"{current:{digits}d}/{self.target}"
            filled = int(self.width * min(current / self.target, 1.0)) if self.target else self.width
            plain_bar = f"{count} " + "━" * self.width
            bar = self._style(count, "1") + " "
            if filled:
                bar += self._style("━" * filled, "32")
            if filled < self.width:
                bar += self._style("━" * (self.width - filled), "37")
        else:
            plain_bar = bar = f"{current:7d}/Unknown"
        if self.target is not None and not finalize:
            eta = per * (self.target - current)
            if eta > 3600:
                eta_text = "%d:%02d:%02d" % (eta // 3600, (eta % 3600) // 60, eta % 60)
            elif eta > 60:
                eta_text = "%d:%02d" % (eta // 60, eta % 60)
            else:
                eta_text = "%ds" % eta
        else:
            eta_text = f"{now - self._start:.0f}s"
        info = " " + self._style(eta_text, "1") + self._format_time(per) + self._metrics_text()
        plain_info = " " + eta_text + self._format_time(per) + self._metrics_text()
        total_width = len(plain_bar) + len(plain_info)
        message += bar + info
        if self._dynamic_display and self._prev_total_width > total_width:
            message += " " * (self._prev_total_width - total_width)
        if finalize or not self._dynamic_display:
            message += "\n"
        out.write(message)
        out.flush()
        self._prev_total_width = total_width

    def _draw_line(self, current, now, per):
        out = self._out()
        if self.target is not None:
            digits = int(math.log10(max(self.target, 1))) + 1
            count = f"{current:{digits}d}/{self.target}"
        else:
            count = f"{current}"
        info = f"{count} - {now - self._start:.0f}s -" + self._format_time(per)[0:] + self._metrics_text()
        out.write(info + "\n")
        out.flush()

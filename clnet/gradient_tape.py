"""TF-style GradientTape and Variable, on the same tape engine as Tensor.backward()."""
from __future__ import annotations

from . import autograd
from . import dtypes as _dt
from .ops.creation import ones_like, tensor, zeros_like
from .tensor import Tensor


class Variable(Tensor):
    """A trainable tensor with TF's assign/assign_add/assign_sub (watched by every GradientTape)."""

    def __new__(cls, initial_value, trainable=True, name=None, dtype=None, device=None):
        if callable(initial_value):
            initial_value = initial_value()
        src = tensor(initial_value, dtype=dtype, device=device)
        if trainable and not _dt.is_floating(src.dtype):
            raise TypeError(f"a trainable Variable must be floating point, got {src.dtype.name}")
        var = Tensor._wrap.__func__(cls, src._buf, src.shape, src.dtype, src.device,
                                    storage_size=src._storage_size)
        var.requires_grad = bool(trainable)
        var.trainable = bool(trainable)
        var.name = name
        return var

    def __init__(self, *args, **kwargs):
        pass

    def assign(self, value):
        """Overwrite the value in place (no gradient is recorded), as tf.Variable.assign."""
        if isinstance(value, Tensor) and value.shape != self.shape:
            raise ValueError(f"cannot assign a value of shape {tuple(value.shape)} to a Variable of shape "
                             f"{tuple(self.shape)}")
        with autograd.no_grad():
            self.copy_(value)
        return self

    def assign_add(self, delta):
        with autograd.no_grad():
            self += delta
        return self

    def assign_sub(self, delta):
        with autograd.no_grad():
            self -= delta
        return self

    def value(self):
        return self.detach()

    def __repr__(self):
        return f"<clnet.Variable{' ' + repr(self.name) if self.name else ''} shape={tuple(self.shape)} " \
               f"dtype={self.dtype.name}, numpy=\n{self.numpy()!r}>"


class GradientTape:
    """Records ops inside `with` on watched tensors; `gradient(target, sources)` differentiates them.

    Trainable Variables (and any tensor with requires_grad) are watched automatically; other tensors
    need `tape.watch(t)`, which makes ops on them record only while the tape is open. A tape that is
    not `persistent` can compute gradients once, as in TensorFlow, and frees its graph doing so.
    """

    def __init__(self, persistent=False, watch_accessed_variables=True):
        self.persistent = persistent
        self.watch_accessed_variables = watch_accessed_variables
        self._used = False
        self._watched = []
        self._grad_mode = None

    def __enter__(self):
        self._grad_mode = autograd.enable_grad()
        self._grad_mode.__enter__()
        return self

    def __exit__(self, *exc):
        self._grad_mode.__exit__(*exc)
        for t, was in self._watched:  # watching ends with the tape; gradient() still reaches them
            if t._node is None:
                t.requires_grad = was
        return False

    def watch(self, tensor):
        """Record ops on `tensor` (or each tensor in a list/tuple) from now on."""
        items = tensor if isinstance(tensor, (list, tuple)) else [tensor]
        for t in items:
            if not isinstance(t, Tensor):
                raise TypeError(f"GradientTape.watch expects tensors, got {type(t).__name__}")
            if not _dt.is_floating(t.dtype):
                raise TypeError(f"cannot watch a {t.dtype.name} tensor: gradients need floating point")
            self._watched.append((t, t.requires_grad))
            if t._node is None:
                t.requires_grad = True

    def watched_variables(self):
        return [t for t, _ in self._watched]

    def gradient(self, target, sources, output_gradients=None, unconnected_gradients="none"):
        """d target / d sources, shaped like `sources` (a tensor, or a list/tuple/dict of them).

        A non-scalar target is differentiated as the sum of its elements, as in TensorFlow; a source
        the target does not depend on gets None (or zeros with unconnected_gradients="zero").
        """
        if self._used and not self.persistent:
            raise RuntimeError("A non-persistent GradientTape can only be used to compute one set of "
                               "gradients (or jacobians); use GradientTape(persistent=True)")
        if unconnected_gradients not in ("none", "zero"):
            raise ValueError(f"unconnected_gradients must be 'none' or 'zero', got {unconnected_gradients!r}")
        self._used = True
        if isinstance(sources, dict):
            keys, flat = list(sources.keys()), list(sources.values())
        elif isinstance(sources, (list, tuple)):
            keys, flat = None, list(sources)
        else:
            keys, flat = None, [sources]
        for s in flat:
            if not isinstance(s, Tensor):
                raise TypeError(f"GradientTape.gradient sources must be tensors or Variables, got "
                                f"{type(s).__name__}")
        targets = list(target) if isinstance(target, (list, tuple)) else [target]
        if output_gradients is None:
            seeds = [ones_like(t) for t in targets]
        else:
            seeds = list(output_gradients) if isinstance(output_gradients, (list, tuple)) else [output_gradients]
        live = [(t, g) for t, g in zip(targets, seeds) if t.requires_grad]
        if not live:
            grads = [None] * len(flat)
        else:
            grads = list(autograd.grad([t for t, _ in live], flat, grad_outputs=[g for _, g in live],
                                       retain_graph=self.persistent))
        if unconnected_gradients == "zero":
            grads = [zeros_like(s) if g is None else g for g, s in zip(grads, flat)]
        if isinstance(sources, dict):
            return dict(zip(keys, grads))
        if isinstance(sources, (list, tuple)):
            return type(sources)(grads) if isinstance(sources, tuple) else grads
        return grads[0]

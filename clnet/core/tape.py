"""The tape: grad mode (per thread) and the nodes ops hang on their outputs.

An op that produced `out` from inputs that require grad calls `record(...)`, which hangs a Node on
`out`. A Node holds one Edge per input (the node that made it, as it was when the op ran, or the leaf
tensor itself), a `backward` callable that maps output gradients to input gradients using the same
ops (so gradients run on the device too), and the version of every tensor it saved, so an in-place
change of a saved tensor is caught. Non-leaf inputs are not referenced (only their nodes are), so an
intermediate that no rule saved goes back to the memory pool as soon as user code drops it.

Walking the nodes (backward, grad, Function) is clnet.autograd's job, one layer above the ops;
this module only records, so the ops can import it without importing what sits above them.
"""
from __future__ import annotations

import functools
import threading

_state = threading.local()


def is_grad_enabled() -> bool:
    try:
        return _state.enabled
    except AttributeError:  # a thread that never set it: grad mode is on by default
        return True


def set_grad_enabled(mode: bool) -> None:
    _state.enabled = bool(mode)


class _GradMode:
    """Context manager and decorator that sets grad mode and restores the previous one."""

    mode = True

    def __enter__(self):
        self._prev = is_grad_enabled()
        set_grad_enabled(self.mode)
        return self

    def __exit__(self, *exc):
        set_grad_enabled(self._prev)
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self.__class__():
                return fn(*args, **kwargs)
        return wrapper


class no_grad(_GradMode):
    """Ops inside record nothing: use for parameter updates and inference."""

    mode = False


class enable_grad(_GradMode):
    """Turn recording back on inside a no_grad block."""

    mode = True


class Edge:
    """Where an input's gradient goes: the node (and output slot) that produced the input when the op
    ran, or the leaf tensor to accumulate into; plus its shape and dtype to sum/convert gradients."""

    __slots__ = ("node", "index", "leaf", "shape", "dtype", "wants")

    def __init__(self, t):
        self.node = t._node
        self.index = t._out_index
        self.leaf = t if t._node is None and t.requires_grad else None
        self.shape = t.shape
        self.dtype = t.dtype
        self.wants = t.requires_grad


class Node:
    """One recorded op: input edges, the rule that maps output grads to input grads, saved versions."""

    __slots__ = ("name", "edges", "backward", "saved", "out_meta", "__weakref__")

    def __init__(self, name, inputs, backward, saved=(), out_meta=()):
        self.name = name
        self.edges = tuple(Edge(t) for t in inputs)
        self.backward = backward
        self.saved = tuple((t, t._version[0]) for t in saved)
        self.out_meta = out_meta  # (shape, dtype, device) of each output, to make zero grads

    @property
    def n_outputs(self):
        return len(self.out_meta)

    def free(self):
        """Drop what backward needed (rule, saved tensors, edges); a later walk through this node raises."""
        self.backward = None
        self.saved = ()
        self.edges = ()

    def __repr__(self):
        return f"<{self.name}Backward>"

    def check_saved(self):
        for t, version in self.saved:
            if t._version[0] != version:
                raise RuntimeError(
                    f"one of the tensors needed for the gradient of {self.name} has been modified by an "
                    f"in-place operation: {t.dtype.name}{list(t.shape)} is at version {t._version[0]}; "
                    f"expected version {version} instead. Use .clone() before changing it in place.")


def needs_grad(*tensors) -> bool:
    """True when grad mode is on and any of the tensors requires grad."""
    if not is_grad_enabled():
        return False
    for t in tensors:
        if getattr(t, "requires_grad", False):
            return True
    return False


def record(name, outputs, inputs, backward, saved=()):
    """Attach a Node to `outputs` (one tensor or a tuple) if any input requires grad.

    `backward(*grads_out)` returns one gradient (or None) per input. `saved` lists the tensors the rule
    reads; they are version-checked at backward time.
    """
    if not needs_grad(*inputs):
        return
    if isinstance(outputs, tuple):
        node = Node(name, inputs, backward, saved, tuple((o.shape, o.dtype, o.device) for o in outputs))
        for i, out in enumerate(outputs):
            out._node = node
            out._out_index = i
            out.requires_grad = True
    else:
        outputs._node = Node(name, inputs, backward, saved, ((outputs.shape, outputs.dtype, outputs.device),))
        outputs._out_index = 0
        outputs.requires_grad = True

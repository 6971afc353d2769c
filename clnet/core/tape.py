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
import weakref

_state = threading.local()


def is_grad_enabled() -> bool:
    try:
        return _state.enabled
    except AttributeError:  # a thread that never set it: grad mode is on by default
        return True


def _set_mode(mode: bool) -> None:
    _state.enabled = bool(mode)


class set_grad_enabled:
    """Turn grad mode on or off: at once when called (`clnet.set_grad_enabled(False)`), and back to
    what it was when used as a context manager (`with clnet.set_grad_enabled(train):`), as PyTorch's."""

    def __init__(self, mode: bool):
        self._prev = is_grad_enabled()
        _set_mode(mode)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _set_mode(self._prev)
        return False


class _GradMode:
    """Context manager and decorator that sets grad mode and restores the previous one."""

    mode = True

    def __enter__(self):
        self._prev = is_grad_enabled()
        _set_mode(self.mode)
        return self

    def __exit__(self, *exc):
        _set_mode(self._prev)
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
    """One recorded op: input edges, the rule that maps output grads to input grads, saved versions.

    As PyTorch's grad_fn: `name()` ('MulBackward0'), `next_functions` (the nodes of the inputs, each with
    the output slot it produced, an AccumulateGrad for a leaf that requires grad, or None), and
    `register_hook` / `register_prehook`. `hooks` holds the tensor hooks of this node's outputs
    (Tensor.register_hook, retain_grad), by output slot."""

    __slots__ = ("op", "edges", "backward", "saved", "out_meta", "hooks", "node_hooks", "__weakref__")

    def __init__(self, op, inputs, backward, saved=(), out_meta=()):
        self.op = op  # the op's name ("mul", "mse_loss")
        self.edges = tuple(Edge(t) for t in inputs)
        self.backward = backward
        self.saved = tuple((t, t._version[0]) for t in saved)
        self.out_meta = out_meta  # (shape, dtype, device) of each output, to make zero grads
        self.hooks = None         # {output slot: [hook(grad) -> grad or None, ...]}
        self.node_hooks = None    # {"pre": [...], "post": [...]}: grad_fn.register_prehook / register_hook

    @property
    def n_outputs(self):
        return len(self.out_meta)

    def name(self) -> str:
        """PyTorch's spelling of the node: op 'mse_loss' -> 'MseLossBackward0'."""
        return "".join(part[:1].upper() + part[1:] for part in self.op.split("_")) + "Backward0"

    @property
    def next_functions(self) -> tuple:
        """((node, output slot), ...) per input: the node that produced it, AccumulateGrad for a leaf that
        requires grad, (None, 0) for an input without gradient (as PyTorch's grad_fn.next_functions)."""
        out = []
        for e in self.edges:
            if e.node is not None:
                out.append((e.node, e.index))
            elif e.leaf is not None:
                out.append((AccumulateGrad.of(e.leaf), 0))
            else:
                out.append((None, 0))
        return tuple(out)

    def register_hook(self, hook):
        """hook(grad_inputs, grad_outputs) after this node's rule ran (may return new grad_inputs)."""
        return _add_hook(self, "post", hook)

    def register_prehook(self, hook):
        """hook(grad_outputs) before this node's rule runs (may return new grad_outputs)."""
        return _add_hook(self, "pre", hook)

    def free(self):
        """Drop what backward needed (rule, saved tensors, edges); a later walk through this node raises."""
        self.backward = None
        self.saved = ()
        self.edges = ()

    def __repr__(self):
        return f"<{self.name()} object at {id(self):#x}>"

    def check_saved(self):
        for t, version in self.saved:
            if t._version[0] != version:
                raise RuntimeError(
                    f"one of the tensors needed for the gradient of {self.op} has been modified by an "
                    f"in-place operation: {t.dtype.name}{list(t.shape)} is at version {t._version[0]}; "
                    f"expected version {version} instead. Use .clone() before changing it in place.")


class AccumulateGrad:
    """The grad_fn-side stand-in for a leaf that requires grad (PyTorch's AccumulateGrad): `.variable` is
    the leaf; one per leaf, so `is` comparisons between walks hold."""

    __slots__ = ("_leaf", "__weakref__")

    def __init__(self, leaf):
        self._leaf = weakref.ref(leaf)

    @staticmethod
    def of(leaf) -> "AccumulateGrad":
        acc = leaf.__dict__.get("_accumulate_grad")
        if acc is None:
            acc = leaf.__dict__["_accumulate_grad"] = AccumulateGrad(leaf)
        return acc

    @property
    def variable(self):
        return self._leaf()

    next_functions = ()

    def name(self) -> str:
        return "torch::autograd::AccumulateGrad"

    def __repr__(self):
        return f"<AccumulateGrad object at {id(self):#x}>"


class RemovableHandle:
    """What register_hook returns: `.remove()` takes the hook out again."""

    __slots__ = ("_hooks", "_hook")

    def __init__(self, hooks: list, hook):
        self._hooks, self._hook = hooks, hook

    def remove(self) -> None:
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def _add_hook(node, kind, hook):
    if not callable(hook):
        raise TypeError(f"register_hook expects a callable, got {type(hook).__name__}")
    if node.node_hooks is None:
        node.node_hooks = {"pre": [], "post": []}
    node.node_hooks[kind].append(hook)
    return RemovableHandle(node.node_hooks[kind], hook)


def add_tensor_hook(t, hook) -> RemovableHandle:
    """Tensor.register_hook: hook(grad) runs when the gradient w.r.t. `t` is computed, and may return a
    replacement. Leaves keep their hooks in their own dict; non-leaves on their node, by output slot."""
    if not callable(hook):
        raise TypeError(f"register_hook expects a callable, got {type(hook).__name__}")
    if not t.requires_grad:
        raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
    if t._node is None:
        hooks = t.__dict__.setdefault("_grad_hooks", [])
    else:
        if t._node.hooks is None:
            t._node.hooks = {}
        hooks = t._node.hooks.setdefault(t._out_index, [])
    hooks.append(hook)
    return RemovableHandle(hooks, hook)


def needs_grad(*tensors) -> bool:
    """True when grad mode is on and any of the tensors requires grad."""
    if not is_grad_enabled():
        return False
    for t in tensors:
        if getattr(t, "requires_grad", False):
            return True
    return False


def record(name, outputs, inputs, backward, saved=(), differentiable=False):
    """Attach a Node to `outputs` (one tensor or a tuple) if any input requires grad.

    `backward(*grads_out)` returns one gradient (or None) per input. `saved` lists the tensors the rule
    reads; they are version-checked at backward time. `differentiable=True` says the rule is written
    with recorded ops on the inputs themselves, so a backward with create_graph=True can run it and
    differentiate its result again (a rule with a `graph_rule` attribute has such a second version).
    """
    if not needs_grad(*inputs):
        return
    if differentiable:
        backward.differentiable = True
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

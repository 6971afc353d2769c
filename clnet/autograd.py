"""Autograd: walking the tape backward (`backward`, `grad`) and custom `Function`s.

Ops record a Node on each output they make from inputs that require grad (clnet.core.tape, below
the ops); this module, above the ops, walks those nodes in reverse topological order and calls their
gradient rules, which are ops themselves, so gradients run on the device too. The same engine serves
`Tensor.backward()`, TF-style `GradientTape`, and custom `Function`s. Grad mode (`no_grad`,
`enable_grad`, ...) lives in the tape and is re-exported here under its PyTorch names.
"""
from __future__ import annotations

from .core import dispatch
from .core.storage import TensorBase
from .core.tape import (Edge, Node, enable_grad, is_grad_enabled, needs_grad, no_grad, record,  # noqa: F401
                        set_grad_enabled)
from .ops.broadcast import sum_to
from .ops.creation import ones_like, tensor, zeros
from .ops.elementwise import add, add_, cast
from .ops.movement import clone


def _topological(roots):
    """Nodes reachable from roots, ordered so each node comes after every node that consumes it."""
    order, seen = [], set()
    for root in roots:
        if root is None or id(root) in seen:
            continue
        stack = [(root, False)]
        while stack:
            node, done = stack.pop()
            if done:
                order.append(node)
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            for edge in node.edges:
                child = edge.node
                if child is not None and id(child) not in seen:
                    stack.append((child, False))
    order.reverse()
    return order


_FREED = ("Trying to backward through the graph a second time (or to read saved tensors after they were "
          "freed). Saved intermediate values of the graph are freed when you call .backward() or "
          "autograd.grad(). Pass retain_graph=True to the first backward() (or persistent=True to the "
          "GradientTape) if you need to go through it again.")


def run_backward(outputs, grad_outputs, retain_graph=False, capture=None):
    """Propagate gradients from outputs to every leaf (or only to `capture`'s tensors).

    Without `capture`, leaf gradients accumulate into `.grad`. With `capture` (a list of tensors),
    nothing is accumulated and their gradients are returned in order (None where unconnected); a
    captured tensor counts as requiring grad even if its flag was reset (GradientTape.watch).
    Without retain_graph every node that was walked drops its rule, saved tensors and inputs, so
    the graph's device memory is released as soon as its tensors are; walking it again raises.
    """
    grads = {}  # id(node) -> list of output grads
    captured = {id(t): None for t in capture} if capture is not None else None
    handed = set()  # buffers already stored as some leaf's .grad in this run
    leaf_outputs = []
    for out, g in zip(outputs, grad_outputs):
        node = out._node
        if node is None:
            if out.requires_grad or (captured is not None and id(out) in captured):
                leaf_outputs.append((out, g))
            continue
        slot = grads.setdefault(id(node), [None] * node.n_outputs)
        slot[out._out_index] = g if slot[out._out_index] is None else add(slot[out._out_index], g)
    for out, g in leaf_outputs:
        if captured is not None:
            if id(out) in captured:
                captured[id(out)] = g if captured[id(out)] is None else add(captured[id(out)], g)
        else:
            _accumulate(out, g, True, handed)

    capture_by_node = {}
    if captured is not None:
        for t in capture:
            if t._node is not None:
                capture_by_node.setdefault(id(t._node), []).append(t)

    nodes = _topological([o._node for o in outputs])
    for node in nodes:
        out_grads = grads.pop(id(node), None)
        if out_grads is None:
            continue
        for t in capture_by_node.get(id(node), ()):
            captured[id(t)] = out_grads[t._out_index]
        if node.backward is None:
            raise RuntimeError(_FREED)
        node.check_saved()
        if any(g is None for g in out_grads):
            out_grads = [g if g is not None else zeros(node.out_meta[i][0], dtype=node.out_meta[i][1],
                                                       device=node.out_meta[i][2])
                         for i, g in enumerate(out_grads)]
        in_grads = node.backward(*out_grads)
        if not isinstance(in_grads, (tuple, list)):
            in_grads = (in_grads,)
        if len(in_grads) != len(node.edges):
            raise RuntimeError(f"backward of {node.name} returned {len(in_grads)} gradients for "
                               f"{len(node.edges)} inputs")
        edges = node.edges
        if not retain_graph:
            node.free()
        # a gradient object that is an incoming gradient, or is returned for two inputs, is shared
        incoming = {id(g._buf) for g in out_grads}
        seen = set()
        for edge, g in zip(edges, in_grads):
            if g is None:
                continue
            leaf = edge.leaf
            if not (edge.wants or (captured is not None and leaf is not None and id(leaf) in captured)):
                continue
            if g.shape != edge.shape:
                if len(g.shape) < len(edge.shape) or any(
                        e != 1 and e != s for e, s in zip(reversed(edge.shape), reversed(g.shape))):
                    raise RuntimeError(f"backward of {node.name} returned a gradient of shape {tuple(g.shape)} "
                                       f"for an input of shape {tuple(edge.shape)}")
                g = sum_to(g, edge.shape)
            if g.dtype != edge.dtype:
                g = cast(g, edge.dtype)
            shared = id(g._buf) in incoming or id(g._buf) in seen
            seen.add(id(g._buf))
            child = edge.node
            if child is not None:
                slot = grads.setdefault(id(child), [None] * child.n_outputs)
                i = edge.index
                slot[i] = g if slot[i] is None else add(slot[i], g)
            elif captured is not None:
                if id(leaf) in captured:
                    captured[id(leaf)] = g if captured[id(leaf)] is None else add(captured[id(leaf)], g)
            else:
                _accumulate(leaf, g, shared, handed)
    if captured is not None:
        return [captured[id(t)] for t in capture]
    return None


def _accumulate(leaf, g, shared, handed):
    """Add g into leaf.grad. A new .grad never aliases another tensor: g is copied when it is a view,
    an incoming gradient, or a buffer another leaf already holds (c = a + b gives a and b one g)."""
    if g.dtype != leaf.dtype:
        g = cast(g, leaf.dtype)
    if leaf.grad is None:
        if shared or g._base is not None or id(g._buf) in handed or not g.is_contiguous():
            g = clone(g)
        handed.add(id(g._buf))
        leaf.grad = g
    else:
        with no_grad():
            add_(leaf.grad, g)


def zero_grads(tensors, set_to_none: bool = True) -> None:
    """Drop (set_to_none, the default) or zero in place the .grad of each tensor: Module.zero_grad and
    Optimizer.zero_grad."""
    for t in tensors:
        if t.grad is None:
            continue
        if set_to_none:
            t.grad = None
        else:
            with no_grad():
                t.grad.zero_()


def backward(tensor, gradient=None, retain_graph=False):
    """Tensor.backward(): seed with ones for a scalar, or with `gradient` of the same shape."""
    if not tensor.requires_grad:
        raise RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn: "
                           "call backward() on a result of ops on tensors with requires_grad=True")
    gradient = _seed(tensor, gradient, "backward(gradient=...)")
    with no_grad(), dispatch.phase("backward"):
        run_backward([tensor], [gradient], retain_graph=retain_graph)


def _seed(out, gradient, how: str):
    """The gradient that starts backward from `out`: ones for a scalar when `gradient` is None (else an
    error saying to pass it `how`), or `gradient` as a tensor of `out`'s shape."""
    if gradient is None:
        if out.numel() != 1:
            raise RuntimeError(f"grad can be implicitly created only for scalar outputs; this tensor has "
                               f"shape {tuple(out.shape)}: pass {how} of that shape")
        return ones_like(out)
    return _as_grad(gradient, out)


def _as_grad(gradient, like):
    if not isinstance(gradient, TensorBase):
        gradient = tensor(gradient, dtype=like.dtype, device=like.device)
    if gradient.shape != like.shape:
        raise RuntimeError(f"gradient has shape {tuple(gradient.shape)} but the output has shape "
                           f"{tuple(like.shape)}")
    return gradient


def grad(outputs, inputs, grad_outputs=None, retain_graph=False, allow_unused=True):
    """Gradients of outputs w.r.t. inputs, returned instead of accumulated (torch.autograd.grad)."""
    single_out = not isinstance(outputs, (list, tuple))
    outputs = [outputs] if single_out else list(outputs)
    inputs_list = [inputs] if not isinstance(inputs, (list, tuple)) else list(inputs)
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    elif not isinstance(grad_outputs, (list, tuple)):
        grad_outputs = [grad_outputs]
    seeds = [_seed(out, g, "grad_outputs=[...]") for out, g in zip(outputs, grad_outputs)]
    with no_grad(), dispatch.phase("backward"):
        result = run_backward(outputs, seeds, retain_graph=retain_graph, capture=inputs_list)
    if not allow_unused and any(r is None for r in result):
        raise RuntimeError("one of the inputs is not connected to the outputs")
    return result


# --- custom functions ----------------------------------------------------------------------------
class FunctionCtx:
    """What `forward` hands to `backward`: saved tensors and any attributes set on it."""

    def __init__(self):
        self._saved = ()
        self.needs_input_grad = ()
        self._non_differentiable = set()

    def mark_non_differentiable(self, *tensors):
        """Outputs that get no gradient (e.g. indices): they will not require grad."""
        self._non_differentiable.update(id(t) for t in tensors)

    def save_for_backward(self, *tensors):
        self._saved = tuple(t.detach() if t is not None else None for t in tensors)
        self._versions = tuple((t._version, t._version[0]) if t is not None else None for t in tensors)

    @property
    def saved_tensors(self):
        for entry in getattr(self, "_versions", ()):
            if entry is not None and entry[0][0] != entry[1]:
                raise RuntimeError("a tensor saved with save_for_backward was modified by an in-place "
                                   "operation after it was saved")
        return self._saved


class Function:
    """Subclass with static `forward(ctx, *args)` and `backward(ctx, *grads)`; call `.apply(*args)`."""

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise NotImplementedError

    @classmethod
    def apply(cls, *args, **kwargs):
        ctx = FunctionCtx()
        tensor_args = [a for a in args if isinstance(a, TensorBase)]
        grad_on = is_grad_enabled()
        ctx.needs_input_grad = tuple(grad_on and isinstance(a, TensorBase) and a.requires_grad for a in args)
        with no_grad():
            result = cls.forward(ctx, *args, **kwargs)
        outs = result if isinstance(result, tuple) else (result,)
        # an output that is an input object gets its own identity, so its node does not replace the input's
        outs = tuple(o.detach() if any(o is a for a in tensor_args) else o for o in outs)
        result = outs if isinstance(result, tuple) else outs[0]
        tensor_outs = tuple(o for o in outs if isinstance(o, TensorBase))
        if tensor_outs and needs_grad(*tensor_args):
            positions = [i for i, a in enumerate(args) if isinstance(a, TensorBase)]

            def backward_rule(*grads):
                got = cls.backward(ctx, *grads)
                got = got if isinstance(got, tuple) else (got,)
                if len(got) != len(args):
                    raise RuntimeError(f"{cls.__name__}.backward returned {len(got)} gradients, but forward "
                                       f"took {len(args)} arguments")
                return tuple(got[i] for i in positions)

            if len(tensor_outs) != len(outs):
                raise TypeError(f"{cls.__name__}.forward must return tensors (or a tuple of tensors) when its "
                                f"inputs require grad, got {[type(o).__name__ for o in outs]}")
            record(cls.__name__, tensor_outs if isinstance(result, tuple) else tensor_outs[0], tensor_args,
                   backward_rule)
            for o in tensor_outs:
                if id(o) in ctx._non_differentiable:
                    o._node, o.requires_grad = None, False
        return result

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
from .core.tape import (AccumulateGrad, Edge, Node, RemovableHandle, add_tensor_hook, enable_grad,  # noqa: F401
                        is_grad_enabled, needs_grad, no_grad, record, set_grad_enabled)
from .core.tape import set_grad_enabled as set_grad_mode
from .ops.broadcast import sum_to
from .ops.creation import ones_like, tensor, zeros, zeros_like
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


def run_backward(outputs, grad_outputs, retain_graph=False, capture=None, create_graph=False):
    """Propagate gradients from outputs to every leaf (or only to `capture`'s tensors).

    Without `capture`, leaf gradients accumulate into `.grad`. With `capture` (a list of tensors),
    nothing is accumulated and their gradients are returned in order (None where unconnected); a
    captured tensor counts as requiring grad even if its flag was reset (GradientTape.watch).
    Without retain_graph every node that was walked drops its rule, saved tensors and inputs, so
    the graph's device memory is released as soon as its tensors are; walking it again raises.

    Hooks run as in PyTorch: a tensor's hooks (Tensor.register_hook, retain_grad) see its whole
    gradient once, before it flows on (a leaf's before it accumulates, then its post-accumulate hooks);
    a node's pre-hooks and hooks (grad_fn.register_prehook / register_hook) around its rule.
    With create_graph (the caller turns grad mode on) the rules record, so the gradients have history;
    a node whose rule is not built from recorded ops raises instead of giving a wrong second derivative.
    """
    grads = {}  # id(node) -> list of output grads
    captured = {id(t): None for t in capture} if capture is not None else None
    walk = _Walk(captured, create_graph)
    leaf_outputs = []
    for out, g in zip(outputs, grad_outputs):
        node = out._node
        if node is None:
            if out.requires_grad or (captured is not None and id(out) in captured):
                leaf_outputs.append((out, g))
            continue
        slot = grads.setdefault(id(node), [None] * node.n_outputs)
        slot[out._out_index] = g if slot[out._out_index] is None else add(slot[out._out_index], g)

    capture_by_node = {}
    if captured is not None:
        for t in capture:
            if t._node is not None:
                capture_by_node.setdefault(id(t._node), []).append(t)

    nodes = _topological([o._node for o in outputs])
    walk.count_hooked_leaves(nodes)
    for out, g in leaf_outputs:
        walk.deliver(out, g, True, counted=False)
    for node in nodes:
        out_grads = grads.pop(id(node), None)
        if out_grads is None:
            walk.skip(node)
            continue
        if node.hooks is not None:
            out_grads = _run_tensor_hooks(node.hooks, out_grads)
        for t in capture_by_node.get(id(node), ()):
            captured[id(t)] = out_grads[t._out_index]
        if node.backward is None:
            raise RuntimeError(_FREED)
        rule = node.backward
        if create_graph and not getattr(rule, "differentiable", False):
            rule = getattr(rule, "graph_rule", None)
        if rule is None:
            raise NotImplementedError(
                f"create_graph=True: the gradient of {node.op} ({node.name()}) is computed by a kernel that "
                "records no history, so clnet cannot differentiate it again; second derivatives work through "
                "the ops listed in docs/pytorch.md")
        node.check_saved()
        if any(g is None for g in out_grads):
            out_grads = [g if g is not None else zeros(node.out_meta[i][0], dtype=node.out_meta[i][1],
                                                       device=node.out_meta[i][2])
                         for i, g in enumerate(out_grads)]
        if node.node_hooks is not None:
            out_grads = _run_node_hooks(node.node_hooks["pre"], out_grads)
        in_grads = rule(*out_grads)
        if not isinstance(in_grads, (tuple, list)):
            in_grads = (in_grads,)
        if len(in_grads) != len(node.edges):
            raise RuntimeError(f"backward of {node.op} returned {len(in_grads)} gradients for "
                               f"{len(node.edges)} inputs")
        if node.node_hooks is not None:
            for hook in list(node.node_hooks["post"]):
                replaced = hook(tuple(in_grads), tuple(out_grads))
                if replaced is not None:
                    in_grads = tuple(replaced)
        edges = node.edges
        if not retain_graph:
            node.free()
        # a gradient object that is an incoming gradient, or is returned for two inputs, is shared
        incoming = {id(g._buf) for g in out_grads}
        seen = set()
        for edge, g in zip(edges, in_grads):
            leaf = edge.leaf
            if g is None or not (edge.wants or (captured is not None and leaf is not None and id(leaf) in captured)):
                if leaf is not None:
                    walk.arrived(leaf)
                continue
            if g.shape != edge.shape:
                if len(g.shape) < len(edge.shape) or any(
                        e != 1 and e != s for e, s in zip(reversed(edge.shape), reversed(g.shape))):
                    raise RuntimeError(f"backward of {node.op} returned a gradient of shape {tuple(g.shape)} "
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
            else:
                walk.deliver(leaf, g, shared)
    walk.flush()
    if captured is not None:
        return [captured[id(t)] for t in capture]
    return None


class _Walk:
    """Where a backward walk puts leaf gradients: accumulated into .grad (or captured for grad()), at once
    for a leaf without hooks; summed first for a leaf with hooks, whose hooks then see the whole gradient
    once, when the last edge that can reach it has delivered (or at the end of the walk)."""

    def __init__(self, captured, create_graph):
        self.captured = captured
        self.create_graph = create_graph
        self.handed = set()   # buffers already stored as some leaf's .grad in this run
        self.pending = {}     # id(hooked leaf) -> [leaf, edges still to arrive, summed grad]

    def count_hooked_leaves(self, nodes):
        for node in nodes:
            for e in node.edges:
                leaf = e.leaf
                if leaf is not None and _leaf_hooks(leaf):
                    entry = self.pending.setdefault(id(leaf), [leaf, 0, None])
                    entry[1] += 1

    def skip(self, node):
        """A node no gradient reached: the hooked leaves it would have fed wait for one edge less."""
        for e in node.edges:
            if e.leaf is not None:
                self.arrived(e.leaf)

    def arrived(self, leaf, g=None):
        entry = self.pending.get(id(leaf))
        if entry is None:
            return
        if g is not None:
            entry[2] = g if entry[2] is None else add(entry[2], g)
        entry[1] -= 1
        if entry[1] <= 0:
            self._finish(id(leaf))

    def deliver(self, leaf, g, shared, counted=True):
        if id(leaf) in self.pending:
            if not counted:
                self.pending[id(leaf)][1] += 1
            self.arrived(leaf, g)
        elif _leaf_hooks(leaf):  # a leaf output with hooks, seen before any node
            self.pending[id(leaf)] = [leaf, 1, None]
            self.arrived(leaf, g)
        else:
            self._store(leaf, g, shared)

    def _finish(self, key):
        leaf, _, g = self.pending.pop(key)
        if g is None:
            return
        g = _run_tensor_hook_list(leaf.__dict__.get("_grad_hooks"), g)
        self._store(leaf, g, True)  # the hooks may have returned a tensor someone holds: copy it
        if self.captured is None:
            for hook in list(leaf.__dict__.get("_post_accumulate_hooks", ())):
                hook(leaf)

    def _store(self, leaf, g, shared):
        captured = self.captured
        if captured is not None:
            if id(leaf) in captured:
                captured[id(leaf)] = g if captured[id(leaf)] is None else add(captured[id(leaf)], g)
        else:
            _accumulate(leaf, g, shared, self.handed, self.create_graph)

    def flush(self):
        for key in list(self.pending):
            self._finish(key)


def _leaf_hooks(leaf) -> bool:
    d = leaf.__dict__
    return bool(d.get("_grad_hooks") or d.get("_post_accumulate_hooks"))


def _run_tensor_hook_list(hooks, g):
    for hook in list(hooks or ()):
        replaced = hook(g)
        if replaced is not None:
            g = replaced
    return g


def _run_tensor_hooks(hooks_by_slot, out_grads):
    out_grads = list(out_grads)
    for i, hooks in hooks_by_slot.items():
        if out_grads[i] is not None:
            out_grads[i] = _run_tensor_hook_list(hooks, out_grads[i])
    return out_grads


def _run_node_hooks(hooks, out_grads):
    for hook in list(hooks):
        replaced = hook(tuple(out_grads))
        if replaced is not None:
            out_grads = list(replaced)
    return out_grads


def _accumulate(leaf, g, shared, handed, create_graph=False):
    """Add g into leaf.grad. A new .grad never aliases another tensor: g is copied when it is an incoming
    gradient, a buffer another leaf already holds (c = a + b gives a and b one g), not contiguous, or a
    view of part of a buffer. (A view of a whole fresh buffer, as matmul and reductions return, is kept:
    copying it would only cost a launch per parameter.) With create_graph the sum keeps its history (out
    of place), as PyTorch's does."""
    if g.dtype != leaf.dtype:
        g = cast(g, leaf.dtype)
    if leaf.grad is None:
        partial = g._base is not None and (g.offset != 0 or g.numel() != g._storage_size)
        if shared or partial or id(g._buf) in handed or not g.is_contiguous():
            g = clone(g)
        handed.add(id(g._buf))
        leaf.grad = g
    elif create_graph:
        leaf.grad = add(leaf.grad, g)
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


def backward(tensor, gradient=None, retain_graph=None, create_graph=False, inputs=None):
    """Tensor.backward(): seed with ones for a scalar, or with `gradient` of the same shape.

    create_graph=True records the gradient computation too (so .grad has history and can be
    differentiated again); retain_graph defaults to create_graph, as in PyTorch. `inputs` limits the
    accumulation to those tensors."""
    if not tensor.requires_grad:
        raise RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn: "
                           "call backward() on a result of ops on tensors with requires_grad=True")
    gradient = _seed(tensor, gradient, "backward(gradient=...)")
    if retain_graph is None:
        retain_graph = create_graph
    with set_grad_mode(create_graph), dispatch.phase("backward"):
        if inputs is None:
            run_backward([tensor], [gradient], retain_graph=retain_graph, create_graph=create_graph)
            return
        inputs = [inputs] if isinstance(inputs, TensorBase) else list(inputs)
        got = run_backward([tensor], [gradient], retain_graph=retain_graph, capture=inputs,
                           create_graph=create_graph)
        handed = set()
        for t, g in zip(inputs, got):
            if g is not None:
                _accumulate(t, g, True, handed, create_graph)


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


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, allow_unused=None,
         materialize_grads=False):
    """Gradients of outputs w.r.t. inputs, returned instead of accumulated (torch.autograd.grad).

    create_graph=True records the gradient computation, so the returned gradients can be differentiated
    again (second derivatives, gradient penalties); retain_graph defaults to create_graph.
    allow_unused=False raises for an input the outputs do not depend on (None is returned for it
    otherwise); materialize_grads=True returns zeros instead of None."""
    if retain_graph is None:
        retain_graph = create_graph
    if allow_unused is None:
        allow_unused = True
    single_out = not isinstance(outputs, (list, tuple))
    outputs = [outputs] if single_out else list(outputs)
    inputs_list = [inputs] if not isinstance(inputs, (list, tuple)) else list(inputs)
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    elif not isinstance(grad_outputs, (list, tuple)):
        grad_outputs = [grad_outputs]
    for out in outputs:
        if not out.requires_grad:
            raise RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn: "
                               "the outputs given to autograd.grad must come from tensors that require grad")
    seeds = [_seed(out, g, "grad_outputs=[...]") for out, g in zip(outputs, grad_outputs)]
    with set_grad_mode(create_graph), dispatch.phase("backward"):
        result = run_backward(outputs, seeds, retain_graph=retain_graph, capture=inputs_list,
                              create_graph=create_graph)
    if not allow_unused and any(r is None for r in result):
        raise RuntimeError("one of the differentiated tensors appears to not have been used in the graph: "
                           "pass allow_unused=True if this is intended")
    if materialize_grads:
        result = [r if r is not None else zeros_like(t) for r, t in zip(result, inputs_list)]
    return tuple(result)


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

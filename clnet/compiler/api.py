"""clnet.compile (torch.compile's spelling) and clnet.function (tf.function's): trace, guard, replay.

    step = clnet.compile(step)           # or @clnet.compile, @clnet.compile(fullgraph=True)
    train_step = clnet.function(train_step, jit_compile=True)   # or @clnet.function

Per input signature (each tensor argument's shape, strides, offset, dtype, device and requires_grad;
the value of every other argument; grad mode; the train/eval mode of the modules the function uses):

1. the first call runs eagerly (a warm-up: optimizer state, lazily built layers and the like are made
   the way the function makes them, outside any graph);
2. the second call is traced (clnet.compiler.trace: it runs eagerly while recording) and the graph is
   optimised (passes.py) into a replay plan (replay.py);
3. later calls replay the plan: no per-op Python, the same results as eager execution (the random
   stream and the optimizer's step counts advance as eagerly, learning-rate changes are read at each
   call), `.grad` of parameters set as the traced call left them.

A new signature traces again (a bounded cache: past `cache_size_limit` signatures new ones run eagerly,
with a warning saying what changed). A function that reads device values on the host (`.item()`,
`.numpy()`, `print(t)`, `if t > 0:`) has a graph break: it runs eagerly from then on and the break is
counted (`compiled.graph_breaks`, `clnet.compiler.explain`); with `fullgraph=True` the trace raises
GraphBreakError at that line instead. What the replay cannot see: Python state the function reads
that is not an argument (a global counter, a list it appends to): as with tf.function, such code runs
at trace time only. CLNET_COMPILE=0 turns compilation off (every call eager).
"""
from __future__ import annotations

import functools
import os
import threading
import types
import warnings
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field

from .. import autograd
from ..core.storage import TensorBase
from ..core.tape import is_grad_enabled, no_grad, record
from ..ops.creation import zeros_like
from ..ops.elementwise import cast
from ..ops.movement import contiguous
from ..nn.module import Module
from ..optim.optimizer import Optimizer
from . import passes
from .replay import Plan
from .trace import GraphBreakError, flatten_tensors, trace


class CompileWarning(UserWarning):
    """clnet.compile could not (or will no longer) replay a function: re-traces, graph breaks."""


@dataclass
class CompileStats:
    """What a compiled function did, for tests and reports."""
    warmups: int = 0
    traces: int = 0
    replays: int = 0
    eager_calls: int = 0
    graph_breaks: list = field(default_factory=list)   # Break rows of every trace that had some
    state_changes: list = field(default_factory=list)  # Python state a trace changed that replay would not
    launches_traced: int = 0       # kernel launches of the last trace, before the passes
    launches_replayed: int = 0     # kernel launches of the last plan, after the passes
    launches_backward: int = 0     # launches of the traced backward of results that carry autograd history


class _Entry:
    """One signature's state: "warm" (warmed up, trace next), "ready" (replay), "eager" (a break)."""

    def __init__(self):
        self.state = "warm"
        self.plan = None
        self.structure = None
        self.guards = ()
        self.grad_writes = ()
        self.input_grad_writes = ()
        self.graph = None
        self.bw_plan = None      # results with autograd history: the traced backward (see _trace_backward)
        self.outstanding = None  # weakref to the last call's tape node while its backward has not run
        self.lock = threading.Lock()


def _enabled() -> bool:
    return os.environ.get("CLNET_COMPILE", "1").strip() not in ("0", "false", "off")


# --- what the function touches: modules and optimizers ---------------------------------------------------
def _referenced_objects(fn) -> list:
    """The objects the function can reach: itself, its bound self, closure cells, the globals it names
    (not functions, classes or modules)."""
    found = []
    target = fn
    if isinstance(fn, functools.partial):
        found += list(fn.args) + list(fn.keywords.values())
        target = fn.func
    self_obj = getattr(target, "__self__", None)
    if self_obj is not None:
        found.append(self_obj)
    if isinstance(target, (Module, Optimizer)):
        found.append(target)
        target = getattr(type(target), "forward", None) or target
    code = getattr(target, "__code__", None)
    if code is not None:
        for cell in getattr(target, "__closure__", None) or ():
            try:
                found.append(cell.cell_contents)
            except ValueError:
                pass
        glb = getattr(target, "__globals__", {})
        found += [glb[n] for n in code.co_names if n in glb]
    return [o for o in found if not isinstance(o, _CODE + _SCALARS + (TensorBase,))]


def _modules_and_params(objects):
    modules, params, seen = [], [], set()
    for obj in objects:
        if isinstance(obj, Module):
            for m in obj.modules():
                if id(m) not in seen:
                    seen.add(id(m))
                    modules.append(m)
            for p in obj.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    params.append(p)
        elif isinstance(obj, Optimizer):
            for group in obj.param_groups:
                for p in group["params"]:
                    if id(p) not in seen:
                        seen.add(id(p))
                        params.append(p)
    return modules, params


# --- Python state the function keeps: what a replay cannot redo ------------------------------------------------
_SCALARS = (int, float, bool, str, bytes, type(None), complex)
_CODE = (types.FunctionType, types.MethodType, types.BuiltinFunctionType, types.ModuleType, type, functools.partial)
_WALK_DEPTH = 6


def _state(roots, managed) -> dict:
    """{path: value} of the scalars and tensors reachable from `roots` through attributes, dicts, lists and
    tuples (objects in `managed`, whose state replays keep up to date, are skipped; tensors are leaves)."""
    out, seen = {}, set()

    def walk(obj, path, depth):
        if isinstance(obj, _SCALARS):
            out[path] = obj
            return
        if isinstance(obj, TensorBase):
            out[path] = ("tensor", id(obj), id(obj._buf))
            return
        if depth > _WALK_DEPTH or id(obj) in seen or id(obj) in managed:
            return
        seen.add(id(obj))
        if isinstance(obj, dict):
            for k, v in list(obj.items()):
                walk(v, path + (k if isinstance(k, _SCALARS) else id(k),), depth + 1)
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(v, path + (i,), depth + 1)
        else:
            d = getattr(obj, "__dict__", None)
            if isinstance(d, dict) and not isinstance(obj, type) and type(obj).__module__ != "builtins":
                for k, v in list(d.items()):
                    if not isinstance(v, _CODE):
                        walk(v, path + (k,), depth + 1)

    for i, root in enumerate(roots):
        walk(root, (i,), 0)
    return out


def _hidden_state_change(before: dict, after: dict, allocated) -> str | None:
    """What the traced call changed in Python state that a replay would not redo, or None."""
    for path, value in after.items():
        old = before.get(path, _MISSING)
        if isinstance(value, tuple) and value[:1] == ("tensor",):
            if old != value and value[2] in allocated:
                return f"{_path(path)} now holds a tensor made inside the function"
            continue
        if old is not _MISSING and old != value and not (old != old and value != value):
            return f"{_path(path)} changed from {old!r} to {value!r}"
    return None


_MISSING = object()


def _path(path) -> str:
    return "obj" + "".join(f"[{p!r}]" if not isinstance(p, str) else f".{p}" for p in path[1:])


# --- signatures ---------------------------------------------------------------------------------------------
def _describe(x):
    if isinstance(x, TensorBase):
        return (x.shape, x.strides, x.offset, x.dtype, id(x.device), x.requires_grad, x.grad is not None)
    if isinstance(x, (list, tuple)):
        return (type(x), tuple(_describe(a) for a in x))
    if isinstance(x, dict):
        return (dict, tuple((k, _describe(v)) for k, v in x.items()))
    try:
        hash(x)
        return (type(x), x)
    except TypeError:
        return (type(x), id(x))


def _explain_change(old, new) -> str:
    """A short reason a signature differs from the last one (for the re-trace warning)."""
    if old is None:
        return "first call"
    if old[0] != new[0]:
        for i, (a, b) in enumerate(zip(old[0], new[0])):
            if a != b:
                return f"argument {i} changed: {_short(a)} -> {_short(b)}"
        return "the number of arguments changed"
    if old[1] != new[1]:
        return "keyword arguments changed"
    if old[2] != new[2]:
        return "grad mode changed"
    if old[3] != new[3]:
        return "a module's train/eval mode changed"
    return "tensor arguments alias each other differently"


def _short(d) -> str:
    if isinstance(d, tuple) and len(d) == 7 and isinstance(d[0], tuple):
        return f"tensor{list(d[0])} {d[3].name}{' requires_grad' if d[5] else ''}"
    return repr(d[1]) if isinstance(d, tuple) and len(d) == 2 else repr(d)


def _live_history(t) -> bool:
    """t carries autograd history a later backward() can still walk (not already consumed)."""
    return t.requires_grad and t._node is not None and t._node.backward is not None


def _rebuild(structure, outs):
    from .graph import Value
    if isinstance(structure, Value):
        return outs[structure.output_index]
    if isinstance(structure, list):
        return [_rebuild(x, outs) for x in structure]
    if isinstance(structure, tuple):
        return type(structure)(_rebuild(x, outs) for x in structure) if type(structure) is tuple else \
            type(structure)(*(_rebuild(x, outs) for x in structure))
    if isinstance(structure, dict):
        return {k: _rebuild(v, outs) for k, v in structure.items()}
    return structure


# --- the compiled function ------------------------------------------------------------------------------
class CompiledFunction:
    """A function (or module call) that replays its traced graph per input signature."""

    def __init__(self, fn, *, fullgraph=False, cache_size_limit=8, name=None, optimize=True, warn=True):
        self.fn = fn
        self.warn = warn
        self.fullgraph = fullgraph
        self.cache_size_limit = cache_size_limit
        self.optimize = optimize
        self.stats = CompileStats()
        self._entries: OrderedDict = OrderedDict()
        self._objects = None
        self._modules = ()
        self._params = ()
        self._last_key = None
        self._warned_limit = False
        self._warned_break = False
        self._lock = threading.Lock()
        functools.update_wrapper(self, fn if not isinstance(fn, Module) else type(fn).forward, updated=())
        self.__name__ = name or getattr(fn, "__name__", type(fn).__name__)

    @property
    def graph_breaks(self) -> list:
        return self.stats.graph_breaks

    @property
    def graphs(self) -> list:
        """The traced graphs of the signatures replayed now."""
        return [e.graph for e in self._entries.values() if e.graph is not None]

    def __get__(self, obj, objtype=None):  # a compiled method binds like a function
        return self if obj is None else functools.partial(self, obj)

    def _key(self, args, kwargs):
        if self._objects is None:
            self._objects = _referenced_objects(self.fn) + [a for a in args if isinstance(a, (Module, Optimizer))]
            self._modules, self._params = _modules_and_params(
                [o for o in self._objects if isinstance(o, (Module, Optimizer))])
        tensors = flatten_tensors((args, kwargs))
        bufs = {}
        aliasing = tuple(bufs.setdefault(id(t._buf), i) for i, t in enumerate(tensors))
        return (tuple(_describe(a) for a in args), _describe(kwargs) if kwargs else (), is_grad_enabled(),
                tuple(m.training for m in self._modules), aliasing), tensors

    def __call__(self, *args, **kwargs):
        if not _enabled():
            self.stats.eager_calls += 1
            return self.fn(*args, **kwargs)
        key, tensors = self._key(args, kwargs)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                if len(self._entries) >= self.cache_size_limit:
                    self._limit_reached(key)
                    self.stats.eager_calls += 1
                    return self.fn(*args, **kwargs)
                entry = self._entries[key] = _Entry()
                retrace_reason = _explain_change(self._last_key, key)
                self._last_key = key
                self.stats.warmups += 1
                entry.reason = retrace_reason
                return self.fn(*args, **kwargs)
            self._entries.move_to_end(key)
        with entry.lock:
            if entry.state == "ready":
                if entry.bw_plan is not None and self._outstanding(entry):
                    self.stats.eager_calls += 1  # an earlier call's backward still needs the activations
                    return self.fn(*args, **kwargs)
                if self._guards_hold(entry):
                    return self._replay(entry, tensors)
                entry.state = "warm"
            if entry.state == "eager":
                self.stats.eager_calls += 1
                return self.fn(*args, **kwargs)
            return self._trace(entry, args, kwargs, tensors)

    def _limit_reached(self, key):
        if not self._warned_limit:
            self._warned_limit = True
            warnings.warn(f"clnet.compile: {self.__name__} was traced for {self.cache_size_limit} signatures "
                          f"(cache_size_limit); new ones run eagerly ({_explain_change(self._last_key, key)}). "
                          "Pad inputs to a few shapes, or raise cache_size_limit", CompileWarning, stacklevel=3)

    def _state_roots(self, args, kwargs):
        target = self.fn.func if isinstance(self.fn, functools.partial) else self.fn
        roots = [getattr(target, "__self__", None)] + list(self._objects) + list(args) + list(kwargs.values())
        return [r for r in roots if r is not None and not isinstance(r, (TensorBase,) + _SCALARS)]

    def _trace(self, entry, args, kwargs, tensors):
        before = {id(p): p.grad for p in self._params}
        input_grads = [t.grad for t in tensors]
        roots = self._state_roots(args, kwargs)
        mine = {id(self), id(self.stats), id(self._entries)}  # this object's own bookkeeping changes anyway
        state_before = _state(roots, mine)
        graph, result = trace(self.fn, *args, fullgraph=self.fullgraph, **kwargs)
        self.stats.traces += 1
        hidden = None if graph.breaks else _hidden_state_change(state_before, _state(roots, graph.managed | mine),
                                                                graph.allocated)
        if hidden is not None:
            entry.state = "eager"
            self.stats.state_changes.append(hidden)
            if self.warn:
                warnings.warn(f"clnet.compile: {self.__name__} keeps state in Python that a replay would not "
                              f"update ({hidden}); it runs eagerly. Keep such state in tensors changed in place "
                              "(t.add_(...), variable.assign_add(...))", CompileWarning, stacklevel=3)
            return result
        if graph.breaks:
            entry.state = "eager"
            self.stats.graph_breaks.extend(graph.breaks)
            if self.warn and not self._warned_break:
                self._warned_break = True
                where = "; ".join(b.where for b in graph.breaks[:3])
                warnings.warn(f"clnet.compile: {self.__name__} reads device values on the host ({where}): a graph "
                              "break; it runs eagerly. Return tensors instead of .item()/.numpy(), use clnet.where "
                              "for data-dependent choices, or pass fullgraph=True to raise at the break",
                              CompileWarning, stacklevel=3)
            return result
        self.stats.launches_traced = len(graph.kernel_launches)
        captured = [v.tensor for v in graph.captured if v.tensor is not None]
        for v in graph.captured:
            before.setdefault(id(v.tensor), v.grad_at_capture)
        candidates = list({id(t): t for t in list(self._params) + captured}.values())
        outputs = [v.tensor for v in graph.outputs]
        grads_in = [g for g in input_grads if g is not None]
        visible = {id(t._buf) for t in tensors + outputs + candidates + grads_in}
        visible |= {id(t.grad._buf) for t in candidates + tensors if t.grad is not None}
        if is_grad_enabled() and any(_live_history(o) for o in outputs):
            # results that carry autograd history (a compiled forward whose backward runs later): the
            # backward is traced now, from placeholder gradients, into a second plan run by one tape node
            bw = self._trace_backward(entry, graph, tensors, outputs, captured)
            if bw is None:
                entry.state = "eager"
                return result
            visible |= bw
        if self.optimize:
            passes.optimize(graph, visible)
        entry.plan = Plan(graph, tensors + grads_in, outputs)
        # a tensor argument that requires grad gets .grad as the traced call gave its argument
        entry.input_grad_writes = tuple((i, t.grad) for i, (t, g) in enumerate(zip(tensors, input_grads))
                                        if t.requires_grad and g is None and t.grad is not None)
        self.stats.launches_replayed = entry.plan.launch_count
        entry.structure = graph.output_structure
        used = entry.plan.sites
        # guards: every captured tensor keeps its buffer; a .grad the graph read stays that tensor
        entry.guards = tuple((t, t._buf) for t in captured)
        entry.grad_guards = tuple((p, before[id(p)]) for p in candidates
                                  if before.get(id(p)) is not None and id(before[id(p)]._buf) in used)
        # .grad as the traced call left it, wherever the call changed it
        entry.grad_writes = tuple((p, p.grad) for p in candidates if p.grad is not before.get(id(p)))
        graph.release()
        entry.graph = graph
        entry.state = "ready"
        if entry.bw_plan is not None:
            self._attach_backward(entry, tensors, outputs)
        return result

    # --- results with autograd history -----------------------------------------------------------------
    def _trace_backward(self, entry, graph, tensors, outputs, captured):
        """Trace d(outputs)/d(everything that requires grad) into entry.bw_plan; returns the buffers of the
        forward graph the backward reads (the forward must keep them), or None when it cannot be done."""
        diff = []
        for i, o in enumerate(outputs):
            if _live_history(o) and all(o is not d for _, d in diff):
                diff.append((i, o))
        made = set(graph.allocated)  # ids of the buffers made inside the forward
        if not diff or any(id(o._buf) not in made for _, o in diff):
            return None   # a result that is an argument or a captured tensor itself: no node can hang on it
        wrt, edges = [], []
        for i, t in enumerate(tensors):
            if t.requires_grad and all(t is not w for w in wrt):
                wrt.append(t)
                edges.append(("input", i))
        for t in captured:
            if t.requires_grad and all(t is not w for w in wrt):
                wrt.append(t)
                edges.append(("captured", t))
        with no_grad():
            seeds = [zeros_like(o) for _, o in diff]
        diff_outs = [o for _, o in diff]

        def backward(*gs):
            return autograd.grad(diff_outs, wrt, grad_outputs=list(gs), allow_unused=True)
        bw_graph, grads = trace(backward, *seeds, fullgraph=False)
        if bw_graph.breaks:
            self.stats.graph_breaks.extend(bw_graph.breaks)
            return None
        bw_inputs = seeds + list(tensors) + outputs
        grad_tensors = [g for g in grads if g is not None]
        bw_visible = {id(t._buf) for t in bw_inputs + grad_tensors + captured}
        bw_visible |= {id(v.tensor._buf) for v in bw_graph.captured if v.tensor is not None}
        if self.optimize:
            passes.optimize(bw_graph, bw_visible)
        entry.bw_plan = Plan(bw_graph, bw_inputs, grad_tensors)
        entry.bw_present = [g is not None for g in grads]
        entry.diff_index = [i for i, _ in diff]
        entry.edges = edges
        entry.bw_graph = bw_graph
        self.stats.launches_backward = entry.bw_plan.launch_count
        return {k for k in entry.bw_plan.buffers if k in made}  # activations the backward reads

    def _attach_backward(self, entry, inputs, outputs):
        """Hang one tape node on this call's differentiable results; its backward runs entry.bw_plan."""
        diff_outs = [outputs[i] for i in entry.diff_index]
        edges = [inputs[k] if kind == "input" else k for kind, k in entry.edges]
        saved_inputs = [t.detach() for t in inputs]
        saved_outputs = [o.detach() for o in outputs]

        def backward(*gys):
            gys = [g if g.is_contiguous() and g.dtype == o.dtype else cast(contiguous(g), o.dtype)
                   for g, o in zip(gys, diff_outs)]
            with entry.lock:
                grads = iter(entry.bw_plan.run(list(gys) + saved_inputs + saved_outputs))
                entry.outstanding = None
            return tuple(next(grads) if present else None for present in entry.bw_present)
        record("CompiledFunction", tuple(diff_outs), tuple(edges), backward)
        entry.outstanding = weakref.ref(diff_outs[0]._node)

    def _outstanding(self, entry) -> bool:
        """A call whose backward has not run yet still needs the plan's buffers (activations)."""
        ref = entry.outstanding
        return ref is not None and ref() is not None and ref().backward is not None

    def _guards_hold(self, entry) -> bool:
        for t, buf in entry.guards:
            if t._buf is not buf:
                return False
        for p, g in entry.grad_guards:
            if p.grad is not g or g._buf is None:
                return False
        return True

    def _replay(self, entry, tensors):
        outs = entry.plan.run(tensors + [t.grad for t in tensors if t.grad is not None])
        for p, g in entry.grad_writes:
            p.grad = g
        for i, g in entry.input_grad_writes:
            tensors[i].grad = g
        if entry.bw_plan is not None:
            self._attach_backward(entry, tensors, outs)
        self.stats.replays += 1
        return _rebuild(entry.structure, outs)


class CompiledModule:
    """clnet.compile(module): the module's __call__ compiled; attributes, parameters and state_dict are
    the module's own (as torch.compile's OptimizedModule)."""

    def __init__(self, module, **options):
        object.__setattr__(self, "_orig_mod", module)
        object.__setattr__(self, "_compiled_call", CompiledFunction(module, **options))

    def __call__(self, *args, **kwargs):
        return self._compiled_call(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._orig_mod, name)

    def __setattr__(self, name, value):
        setattr(self._orig_mod, name, value)

    def __repr__(self):
        return f"CompiledModule({self._orig_mod!r})"


def compile(model=None, *, fullgraph=False, dynamic=None, backend=None, mode=None, options=None,
            disable=False, cache_size_limit=8):
    """torch.compile's spelling: compile a function or a Module (or use as a decorator, with or without
    arguments). `dynamic`, `backend`, `mode` and `options` are accepted for PyTorch programs; clnet has
    one backend (trace -> optimise -> replay). `disable=True` returns the function unchanged."""
    def wrap(fn):
        if disable:
            return fn
        if isinstance(fn, Module):
            return CompiledModule(fn, fullgraph=fullgraph, cache_size_limit=cache_size_limit)
        if not callable(fn):
            raise TypeError(f"clnet.compile expects a function or a Module, got {type(fn).__name__}")
        return CompiledFunction(fn, fullgraph=fullgraph, cache_size_limit=cache_size_limit)
    return wrap if model is None else wrap(model)


def function(func=None, input_signature=None, autograph=True, jit_compile=None, reduce_retracing=False,
             experimental_implements=None, experimental_autograph_options=None, experimental_attributes=None,
             experimental_relax_shapes=None, experimental_compile=None, experimental_follow_type_hints=None,
             name=None):
    """tf.function's spelling (with or without arguments). `jit_compile` and the other TensorFlow options
    are accepted; clnet always traces and replays. `reduce_retracing` raises the signature cache's size."""
    def wrap(fn):
        return CompiledFunction(fn, cache_size_limit=32 if reduce_retracing else 8, name=name)
    return wrap if func is None else wrap(func)


def explain(fn, *args, **kwargs) -> dict:
    """Trace fn once on these arguments and say what a compiled version would do (as torch._dynamo.explain):
    graph count, graph breaks with their places, op rows, kernel launches before/after the passes."""
    target = fn.fn if isinstance(fn, CompiledFunction) else fn
    graph, result = trace(target, *args, **kwargs)
    launches = len(graph.kernel_launches)
    if not graph.breaks:
        visible = {id(t._buf) for t in flatten_tensors((args, kwargs, result))}
        visible |= {id(v.tensor._buf) for v in graph.captured}
        visible |= {id(v.tensor.grad._buf) for v in graph.captured if v.tensor.grad is not None}
        passes.optimize(graph, visible)
    return {"graph_count": 0 if graph.breaks else 1, "graph_break_count": len(graph.breaks),
            "break_reasons": [b.where for b in graph.breaks], "ops": len(list(graph.walk())),
            "launches": launches, "launches_after_passes": len(graph.kernel_launches), "graph": graph}


__all__ = ["compile", "function", "explain", "CompiledFunction", "CompiledModule", "CompileWarning",
           "GraphBreakError"]

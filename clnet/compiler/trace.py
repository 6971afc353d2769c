"""Tracing: run a function once, eagerly, while clnet.core.dispatch reports what it does into a Graph.

    graph, result = clnet.compiler.trace(fn, *args, **kwargs)
    print(graph)

`fn` runs exactly as it would eagerly (same results, same side effects, same random numbers); the
Recorder below turns dispatch's reports into the rows of graph.py: every @op call becomes an OpNode
(children nested), every kernel launch a Launch, every host->device copy an Upload, every
device->host read a Break. With `fullgraph=True` a break raises GraphBreakError at the line that
caused it, before the value is read.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import pyopencl as cl

from ..core import dispatch
from ..core.storage import TensorBase
from ..errors import ClnetError
from .graph import Break, Graph, Guard, HostStep, Launch, OpNode, Upload, Value


class GraphBreakError(ClnetError, RuntimeError):
    """A traced function read a device value on the host (`.item()`, `.numpy()`, `print(t)`, `if t:`)
    while fullgraph=True asked for one graph."""


_CLNET_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def user_frame() -> str:
    """file:line of the innermost caller outside clnet (where a graph break comes from)."""
    frame = sys._getframe(1)
    while frame is not None:
        path = os.path.abspath(frame.f_code.co_filename)
        if not path.startswith(_CLNET_DIR) or "/tests/" in path:
            return f"{frame.f_code.co_filename}:{frame.f_lineno}"
        frame = frame.f_back
    return "<clnet>"


class Recorder:
    """Receives dispatch's reports (on_launch, on_upload, on_download, on_op) and builds a Graph."""

    def __init__(self, fullgraph: bool = False):
        self.graph = Graph()
        self.fullgraph = fullgraph
        self._values = {}      # id(tensor) -> its latest Value
        self._keep = []        # every tensor seen, so ids stay unique while tracing
        self._stack = []       # OpNodes being called
        self._touched = set()  # id() of every buffer a launch in this trace was passed
        self.allocated = {}    # id(buffer) -> buffer, for every tensor made while tracing

    # --- values ---------------------------------------------------------------------------------
    def add_input(self, t: TensorBase) -> Value:
        v = self._new_value(t, "input")
        v.index = len(self.graph.inputs)
        self.graph.inputs.append(v)
        return v

    def value_of(self, t: TensorBase) -> Value:
        """The Value `t` holds now; a tensor not made in the trace is captured (param or constant)."""
        v = self._values.get(id(t))
        if v is None:
            if t.requires_grad and t._node is None:
                kind = "param"
            elif id(t._buf) in self._touched:  # made in the trace by code outside any op (a gradient rule)
                kind = "intermediate"
            else:
                kind = "constant"
            v = self._new_value(t, kind)
            v.grad_at_capture = t.grad
        return v

    def _new_value(self, t, kind, producer=None) -> Value:
        v = Value(len(self.graph.values), tuple(t.shape), t.dtype, t.device, kind, t, producer)
        self.graph.values.append(v)
        self._values[id(t)] = v
        self._keep.append(t)
        return v

    def _abstract(self, obj, found: list):
        """obj with every tensor replaced by its Value (appended to `found`)."""
        if isinstance(obj, TensorBase):
            v = self.value_of(obj)
            found.append(v)
            return v
        if isinstance(obj, (list, tuple)):
            items = [self._abstract(x, found) for x in obj]
            return items if isinstance(obj, list) else tuple(items)
        if isinstance(obj, dict):
            return {k: self._abstract(x, found) for k, x in obj.items()}
        return obj

    def _outputs(self, obj, node, found: list):
        """The result's structure with a new Value for each tensor (made by `node`)."""
        if isinstance(obj, TensorBase):
            v = self._new_value(obj, "intermediate", node)
            found.append(v)
            return v
        if isinstance(obj, (list, tuple)):
            items = [self._outputs(x, node, found) for x in obj]
            return items if isinstance(obj, list) else tuple(items)
        return obj

    # --- dispatch's reports ---------------------------------------------------------------------
    def on_op(self, name, fn, args, kwargs):
        inputs = []
        node = OpNode(name, fn, None, None, inputs, phase=dispatch.current_phase(),
                      parent=self._stack[-1] if self._stack else None)
        node.args = self._abstract(tuple(args), inputs)
        node.kwargs = self._abstract(dict(kwargs), inputs)
        self._stack.append(node)
        try:
            result = fn(*args, **kwargs)
        finally:
            self._stack.pop()
        node.result = self._outputs(result, node, node.outputs)
        if node.parent is not None:
            node.parent.children.append(node)
            node.parent._order.append(node)
        else:
            self.graph.ops.append(node)
        return result

    def on_allocate(self, t):
        self.allocated[id(t._buf)] = t._buf

    def on_host_step(self, fn, manages=()):
        self.graph.launches.append(HostStep(fn, self._stack[-1] if self._stack else None))
        self.graph.managed.update(id(o) for o in manages)

    def on_launch(self, device, kernel, global_size, local_size, args, refresh, note=None, manages=()):
        self.graph.managed.update(id(o) for o in manages)
        op = self._stack[-1] if self._stack else None
        local = None if local_size is None else tuple(local_size)   # None: the driver picks the group size
        row = Launch(device, kernel, tuple(global_size), local, list(args), refresh, op,
                     dispatch.current_phase(), note)
        self.graph.launches.append(row)
        self._touched.update(id(a) for a in args if isinstance(a, cl.MemoryObjectHolder))
        if op is not None:
            op.launches.append(row)
            op._order.append(row)

    def on_upload(self, device, buf, host):
        self.graph.launches.append(Upload(device, buf, np.array(host, copy=True),
                                          self._stack[-1] if self._stack else None))

    def on_guard(self, device, host, buf, byte_offset, check):
        """A guard (dispatch.guard) replays as a check before the plan's launches when that reads what
        it read now: the buffer was neither made in this trace nor written (by a launch or an upload)
        before this point. Otherwise it is a download: a break."""
        key = id(buf)
        written = key in self.allocated or key in self._touched or any(
            isinstance(r, Upload) and r.buf is buf for r in self.graph.launches)
        if written:
            self.on_download(device, host, buf, byte_offset)
            return
        self.graph.launches.append(Guard(device, buf, byte_offset, np.empty_like(host), check,
                                         self._stack[-1] if self._stack else None))

    def on_download(self, device, host, buf, byte_offset):
        where = user_frame()
        if self.fullgraph:
            raise GraphBreakError(f"graph break at {where}: a device value is read on the host (.item(), "
                                  ".numpy(), print, or Python control flow on a tensor); with fullgraph=True "
                                  "the function must stay on the device: return the tensor instead, or use "
                                  "clnet.where for a data-dependent choice")
        self.graph.breaks.append(Break(self._stack[-1] if self._stack else None, where))


def flatten_tensors(obj, out=None) -> list:
    """The tensors in nested lists/tuples/dicts, in order."""
    out = [] if out is None else out
    if isinstance(obj, TensorBase):
        out.append(obj)
    elif isinstance(obj, (list, tuple)):
        for x in obj:
            flatten_tensors(x, out)
    elif isinstance(obj, dict):
        for x in obj.values():
            flatten_tensors(x, out)
    return out


def trace(fn, *args, fullgraph: bool = False, **kwargs):
    """Run fn(*args, **kwargs) once, eagerly, recording what it does; returns (graph, result).

    The tensors among args/kwargs become graph.inputs (in order), those in the result graph.outputs;
    every other tensor fn used is captured (graph.captured). See clnet/compiler/graph.py for the rows.
    """
    rec = Recorder(fullgraph=fullgraph)
    for t in flatten_tensors((args, kwargs)):
        if id(t) not in rec._values:
            rec.add_input(t)
    with dispatch.recording(rec):
        result = fn(*args, **kwargs)
    found = []
    rec.graph.output_structure = rec._abstract(result, found)
    rec.graph.outputs = found
    for i, v in enumerate(found):
        v.output_index = i
    rec.graph.allocated = rec.allocated
    return rec.graph, result

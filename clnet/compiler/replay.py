"""Replay: a traced graph's launches run again with no per-op Python.

Every Launch of the graph gets a cl.Kernel of its own (cloned from the shared one), with its
arguments set once when the plan is built; a replay is then one loop of enqueue calls. Between calls
only three things change, each at a known argument slot:

- the function's tensor arguments: the slots holding a traced input's buffer are rebound to the new
  argument's buffer (only when it differs from the last call's);
- the outputs: each call's results get fresh buffers from the pool (slots rebound), so a result kept
  by the caller is never overwritten by the next call;
- host-state scalars (random counters, optimizer step sizes): the launch's `refresh` callable runs
  before the loop and its values are set into their slots, so the random stream and the optimizer's
  state advance exactly as eagerly.

Guards (dispatch.guard: an index bounds check) read their buffer, rebound like a launch argument, and
run their check with the refreshes, before the loop of enqueues: a bad value raises before any launch.

A plan is not thread-safe on its own: the compiled function holds a lock around `run`.
"""
from __future__ import annotations

import numpy as np
import pyopencl as cl

from ..backend import cl_private
from ..core.storage import TensorBase
from .graph import Guard, HostStep, Launch, Upload


def _buffer_key(a):
    return id(a) if isinstance(a, cl.MemoryObjectHolder) else None


def _upload(queue, buf, host):
    cl.enqueue_copy(queue, buf, host, is_blocking=False)  # host is the plan's own copy: it stays alive


def _nbytes(buf) -> int:
    return int(buf.get_info(cl.mem_info.SIZE))


class _GuardStep:
    """A Guard row at replay: read the (rebound) buffer, waiting, and run the check."""

    def __init__(self, row: Guard):
        self.row, self.mem = row, row.mem

    def __call__(self):
        host = np.empty_like(self.row.like)
        if host.size:
            cl.enqueue_copy(self.row.device.queue, host, self.mem, src_offset=self.row.byte_offset, is_blocking=True)
        self.row.check(host)


class Plan:
    """Replayable launches of one traced call (see the module docstring)."""

    def __init__(self, graph, input_tensors, output_tensors):
        self.steps = []           # (enqueue function, its arguments) in order
        self.sites = {}           # id(buffer) -> [(cl kernel clone, argument position)]
        self.refreshers = []      # (clone, refresh, arg_dtypes), or (None, host step, None), in graph order
        self.buffers = {}         # id(buffer) -> buffer: keeps every traced buffer alive
        self.guard_sites = {}     # id(buffer) -> [_GuardStep]: guards reading it (rebound with the launches)
        self.launch_count = 0
        for row in graph.launches:
            if isinstance(row, Launch):
                self._add_launch(row)
            elif isinstance(row, HostStep):
                self.refreshers.append((None, row.fn, None))
            elif isinstance(row, Guard):
                step = _GuardStep(row)
                self.guard_sites.setdefault(id(row.mem), []).append(step)
                self.refreshers.append((None, step, None))
            elif isinstance(row, Upload):
                self.buffers[id(row.buf)] = row.buf
                self.steps.append((_upload, (row.device.queue, row.buf, row.host)))
        # inputs: the traced argument's buffer, rebound per call
        self.input_bufs = [t._buf for t in input_tensors]
        self.current_inputs = list(self.input_bufs)
        # outputs: fresh buffers per call unless the result is an input or a captured tensor
        inputs_by_buf = {id(b): i for i, b in enumerate(self.input_bufs)}
        self.outputs = []
        fresh = {}
        for t in output_tensors:
            key = id(t._buf)
            if key in inputs_by_buf:
                self.outputs.append(("input", inputs_by_buf[key], t))
            elif key not in self.sites or t._buf is None:
                self.outputs.append(("same", None, t))   # not written by the graph: a captured tensor
            else:
                fresh.setdefault(key, (t._buf, _nbytes(t._buf), t.device))
                self.outputs.append(("fresh", key, t))
        self.fresh = list(fresh.values())

    def _add_launch(self, row: Launch):
        kern = row.kernel
        raw = kern.built()  # a variant made by a pass may not be built yet
        # from the raw program: pyopencl's Program wrapper would look up a kernel named "_source" first
        clone = cl.Kernel(cl_private.raw_program(raw.program), raw.function_name)
        if kern.arg_dtypes is not None:
            clone.set_scalar_arg_dtypes(kern.arg_dtypes)
        clone.set_args(*row.args)
        for pos, a in enumerate(row.args):
            key = _buffer_key(a)
            if key is not None:
                self.sites.setdefault(key, []).append((clone, pos))
                self.buffers[key] = a
        if row.refresh is not None:
            self.refreshers.append((clone, row.refresh, kern.arg_dtypes))
        self.steps.append((cl.enqueue_nd_range_kernel,
                           (row.device.queue, clone, row.global_size, row.local_size)))
        self.launch_count += 1

    def _rebind(self, old_key, new_buf):
        for clone, pos in self.sites.get(old_key, ()):
            clone.set_arg(pos, new_buf)
        for step in self.guard_sites.get(old_key, ()):
            step.mem = new_buf

    def run(self, inputs):
        """Replay with `inputs` (tensors laid out as the traced ones); returns the output tensors."""
        for i, t in enumerate(inputs):
            if t._buf is not self.current_inputs[i]:
                self._rebind(id(self.input_bufs[i]), t._buf)
                self.current_inputs[i] = t._buf
        new_bufs = {}
        for old, nbytes, device in self.fresh:
            buf = device.pool.allocate(nbytes)
            self._rebind(id(old), buf)
            new_bufs[id(old)] = buf
        for clone, refresh, dtypes in self.refreshers:
            if clone is None:  # host bookkeeping, in its place among the refreshes
                refresh()
                continue
            for pos, value in refresh().items():
                dt = dtypes[pos] if dtypes is not None else None
                clone.set_arg(pos, np.dtype(dt).type(value) if dt is not None else value)
        for fn, args in self.steps:
            fn(*args)
        outs = []
        for kind, key, t in self.outputs:
            if kind == "input":
                outs.append(inputs[key])
            elif kind == "same":
                outs.append(t)
            else:
                outs.append(TensorBase._wrap(new_bufs[key], t.shape, t.dtype, t.device, t.offset, t.strides,
                                             storage_size=t._storage_size))
        self._promote(new_bufs)
        return outs

    def _promote(self, new_bufs):
        """After a call, the slots hold the fresh buffers: make them the keys the next call rebinds."""
        if not new_bufs:
            return
        fresh = []
        outputs = []
        for old, nbytes, device in self.fresh:
            new = new_bufs[id(old)]
            self.sites[id(new)] = self.sites.pop(id(old))
            fresh.append((new, nbytes, device))
        for kind, key, t in self.outputs:
            outputs.append((kind, id(new_bufs[key]) if kind == "fresh" else key, t))
        self.fresh, self.outputs = fresh, outputs

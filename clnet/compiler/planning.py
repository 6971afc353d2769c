"""Buffer planning: the internal buffers of a graph (made inside the trace, invisible outside it) share
memory when their lifetimes do not overlap, so a replayed step holds about its peak of live intermediates
instead of every intermediate it ever made.

A buffer lives from the first launch that uses it to the last; buffers are given slots in order of first
use, each taking the smallest free slot it fits (a slot frees after its last user, never at the same
launch: a kernel may read one buffer while writing another). Every slot is one new pool allocation as big
as its largest tenant, and the launches' arguments are rewritten to it (offsets are kept: a tenant starts
at the slot's start).
"""
from __future__ import annotations

import pyopencl as cl

from .graph import Launch, Upload


def _nbytes(buf) -> int:
    return int(buf.get_info(cl.mem_info.SIZE))


def plan(graph, visible) -> dict:
    """Rewrite graph.launches to share internal buffers; returns {"bytes_before", "bytes_after", "slots"}."""
    internal = {k: b for k, b in graph.allocated.items() if k not in visible}
    first, last = {}, {}
    for i, row in enumerate(graph.launches):
        bufs = row.args if isinstance(row, Launch) else ([row.buf] if isinstance(row, Upload) else [])
        for a in bufs:
            k = id(a)
            if k in internal:
                first.setdefault(k, i)
                last[k] = i
    if not first:
        return {"bytes_before": 0, "bytes_after": 0, "slots": 0}
    size = {k: _nbytes(internal[k]) for k in first}
    pools = _pools(graph, internal)
    slots = []          # [capacity, free from launch index, pool]
    assign = {}
    for k in sorted(first, key=lambda k: (first[k], -size[k])):
        pool = pools[k]
        free = [j for j, (_, free_at, p) in enumerate(slots) if free_at < first[k] and p is pool]
        fits = [j for j in free if slots[j][0] >= size[k]]
        if fits:       # the smallest free slot it fits
            best = min(fits, key=lambda j: slots[j][0])
        elif free:     # else the largest free slot, grown
            best = max(free, key=lambda j: slots[j][0])
            slots[best][0] = size[k]
        else:
            slots.append([size[k], -1, pool])
            best = len(slots) - 1
        slots[best][1] = last[k]
        assign[k] = best
    before = sum(size.values())
    after = sum(cap for cap, _, _ in slots)
    if after >= before:
        return {"bytes_before": before, "bytes_after": before, "slots": len(first)}
    new = [pool.allocate(cap) for cap, _, pool in slots]
    mapping = {k: new[s] for k, s in assign.items()}
    for row in graph.launches:
        if isinstance(row, Launch):
            row.args = [mapping.get(id(a), a) if isinstance(a, cl.MemoryObjectHolder) else a for a in row.args]
        elif isinstance(row, Upload) and id(row.buf) in mapping:
            row.buf = mapping[id(row.buf)]
    graph.allocated = {id(b): b for b in new}
    graph.planned_bytes = (before, after)
    return {"bytes_before": before, "bytes_after": after, "slots": len(slots)}


def _pools(graph, internal) -> dict:
    """The memory pool of each internal buffer's device (the device of a launch that uses it)."""
    out = {}
    for row in graph.launches:
        if isinstance(row, Launch):
            for a in row.args:
                if id(a) in internal and id(a) not in out:
                    out[id(a)] = row.device.pool
        elif isinstance(row, Upload) and id(row.buf) in internal:
            out.setdefault(id(row.buf), row.device.pool)
    return out

"""Elementwise passes on a traced graph: constant folding, dead-code elimination, and fusion of
elementwise launches into one kernel per group, rendered from kernels/elementwise.cl.mako with the
composition of their C expressions (several outputs when the group's values are needed outside it).

Buffers are "internal" when a tensor made inside the trace owned them and nothing outside the graph can
see them (not an input, output, captured tensor or .grad): only those may be folded away or kept in
registers instead of memory. Every other buffer keeps every write it got.

Launches are analysed through their notes (clnet.ops.elementwise.EwNote); a launch without one is
taken to read and write every buffer it was passed, so nothing moves across it unsafely.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pyopencl as cl

from .. import dtypes as _dt
from ..backend.programs import ctype, get_kernel
from ..core.storage import TensorBase
from ..errors import KernelBuildError
from ..ops.elementwise import EwNote, _collapse, _use_grid2
from ..ops.matmul import GemmNote
from ..optim.optimizer import UpdateNote
from .graph import Launch

_INT_MAX = 2**31 - 1
_I32 = np.dtype(np.int32)
_VAR = re.compile(r"\bv(\d+)\b")
_FUSABLE = {np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int32), np.dtype(np.int64),
            np.dtype(np.bool_), np.dtype(np.uint8)}


class _Access:
    """A tensor operand as the kernel sees it: buffer, offset, strides over the iteration shape, dtype."""
    __slots__ = ("buf", "offset", "strides", "dtype")

    def __init__(self, buf, offset, strides, dtype):
        self.buf, self.offset, self.strides, self.dtype = buf, offset, tuple(strides), np.dtype(dtype)

    @property
    def pattern(self):
        return (self.offset, self.strides)


class _Ew:
    """One elementwise launch, analysed."""

    def __init__(self, row: Launch):
        note: EwNote = row.note
        self.row = row
        self.expr = note.expr
        self.shape = tuple(note.shape)
        self.ct = note.compute_dtype
        self.out_dtype = note.out_dtype
        self.ins = []
        for x, st in zip(note.operands, note.strides):
            self.ins.append(_Access(x._buf, x.offset, st, x.dtype) if isinstance(x, TensorBase) else x)
        self.out = _Access(note.out._buf, note.out.offset, note.out_strides, note.out_dtype)

    @property
    def reads(self):
        return {id(a.buf) for a in self.ins if isinstance(a, _Access)}

    @property
    def writes(self):
        return {id(self.out.buf)}

    def fusable(self) -> bool:
        return all(a.dtype in _FUSABLE for a in self.ins if isinstance(a, _Access)) and \
            self.out_dtype in _FUSABLE and self.ct in _FUSABLE


def _buffers(args):
    return {id(a) for a in args if isinstance(a, cl.MemoryObjectHolder)}


_EPI_BETA, _EPI_BIAS, _EPI_RELU = 1, 2, 4


def _gemm_rw(args):
    """(reads, writes) of a GEMM launch from its arguments (see GemmNote)."""
    C = GemmNote.ARG_C
    epi = int(args[C + 8])
    reads = {id(args[GemmNote.ARG_A]), id(args[GemmNote.ARG_B])}
    if epi & _EPI_BIAS:
        reads.add(id(args[GemmNote.ARG_BIAS]))
    if epi & _EPI_BETA:
        reads.add(id(args[C]))
    reads |= {id(a) for a in args[C + 9:] if isinstance(a, cl.MemoryObjectHolder)}  # fused epilogue operands
    return reads, {id(args[C])}


class _Row:
    """A launch (or upload) with what it reads and writes, by buffer id."""

    def __init__(self, row):
        self.row = row
        self.ew = _Ew(row) if isinstance(row, Launch) and isinstance(row.note, EwNote) else None
        self.gemm = row.note if isinstance(row, Launch) and isinstance(row.note, GemmNote) else None
        self.update = row.note if isinstance(row, Launch) and isinstance(row.note, UpdateNote) else None
        if self.ew is not None:
            self.reads, self.writes = self.ew.reads, self.ew.writes
        elif self.gemm is not None:
            self.reads, self.writes = _gemm_rw(row.args)
        elif isinstance(row, Launch):
            bufs = _buffers(row.args)
            self.reads, self.writes = bufs, bufs
        elif not hasattr(row, "buf"):  # HostStep: no buffers (it stays in its place: see _may_move_before)
            self.reads, self.writes = set(), set()
        else:  # Upload
            self.reads, self.writes = set(), {id(row.buf)}


# --- constant folding and dead code -----------------------------------------------------------------------
def fold_constants(rows, internal) -> None:
    """A fill of an internal buffer that only elementwise launches read becomes a scalar operand of each."""
    for r in rows:
        ew = r.ew
        if ew is None or ew.expr != "v0" or isinstance(ew.ins[0], _Access) or id(ew.out.buf) not in internal:
            continue
        key = id(ew.out.buf)
        if any(o is not r and key in o.writes for o in rows):
            continue
        readers = [o for o in rows if key in o.reads]
        if not readers or any(o.ew is None for o in readers):
            continue
        value = np.array(ew.ins[0], dtype=ew.out_dtype).item()
        for o in readers:
            o.ew.ins = [value if isinstance(a, _Access) and id(a.buf) == key else a for a in o.ew.ins]
            o.reads = o.ew.reads


_POW = re.compile(r"\bpow\(v(\d+), v(\d+)\)")


def simplify_powers(rows) -> None:
    """pow(x, 1) -> x and pow(x, 2) -> x * x where the exponent is a scalar operand (the backward of
    `t.pow(2)` is 2 * g * pow(t, 1)): OpenCL's pow is a slow general routine (the two-layer loss gradient's
    640 elements took 0.15 ms on PoCL), and both forms are exact or correctly rounded."""
    for r in rows:
        ew = r.ew
        if ew is None or "pow(" not in ew.expr:
            continue

        def sub(mo, ins=ew.ins):
            b = ins[int(mo.group(2))]
            if isinstance(b, _Access) or isinstance(b, (bool, np.bool_)):
                return mo.group(0)
            if b == 1:
                return f"(v{mo.group(1)})"
            if b == 2:
                return f"(v{mo.group(1)} * v{mo.group(1)})"
            return mo.group(0)
        ew.expr = _POW.sub(sub, ew.expr)


def eliminate_dead(rows, internal) -> list:
    """Drop elementwise launches whose result (an internal buffer) nothing reads later."""
    changed = True
    while changed:
        changed = False
        for i in range(len(rows) - 1, -1, -1):
            r = rows[i]
            if r.ew is None or id(r.ew.out.buf) not in internal:
                continue
            key = id(r.ew.out.buf)
            if not any(key in o.reads for o in rows[i + 1:]):
                del rows[i]
                changed = True
    return rows


# --- epilogues: an elementwise launch that is a GEMM's only reader runs inside the GEMM's store ------------
def _is_relu(ew, c_index) -> bool:
    if ew.expr == "(v0 < 0 ? 0 : v0)" and c_index == 0:
        return True
    return (ew.expr == "(v0 < v1 ? v1 : v0)" and c_index == 0 and not isinstance(ew.ins[1], _Access)
            and ew.ins[1] == 0)


def fuse_epilogues(rows, internal) -> list:
    """GEMM followed by an elementwise op of its result (its only reader, the result internal): the GEMM
    writes the op's output, applying it in its epilogue (ReLU through the `epi` flag, anything else as
    matmul.cl.mako's `ext` expression). Returns the rows left."""
    i = 0
    while i < len(rows):
        g = rows[i]
        i += 1
        if g.gemm is None or g.gemm.Bt != 1 or (g.row.kernel.params or {}).get("ext"):
            continue
        args = g.row.args
        C = GemmNote.ARG_C
        key = id(args[C])
        if key not in internal or int(args[C + 8]) & _EPI_BETA:
            continue
        others = [r for r in rows if r is not g and (key in r.reads or key in r.writes)]
        if len(others) != 1 or others[0].ew is None or key in others[0].writes:
            continue
        e = others[0]
        ew = e.ew
        j = rows.index(e)
        if j < i or ew.shape != (g.gemm.M, g.gemm.N) or ew.out_dtype != g.gemm.dtype or ew.ct != g.gemm.dtype:
            continue
        c_pattern = (args[C + 1], (args[C + 3], 1))
        c_uses = [k for k, a in enumerate(ew.ins) if isinstance(a, _Access) and id(a.buf) == key]
        if any(ew.ins[k].pattern != c_pattern for k in c_uses) or ew.out.strides[-1:] != (1,) or \
                not _may_move_before(e, rows[i:j]):
            continue
        new = _with_epilogue(g, e, c_uses)
        if new is None:
            continue
        rows[i - 1] = new
        del rows[j]
    return rows


def _with_epilogue(g, e, c_uses):
    """The GEMM row g computing e's result into e's output, or None when the expression does not build."""
    ew = e.ew
    args = list(g.row.args)
    C = GemmNote.ARG_C
    out = ew.out
    args[C:C + 4] = [out.buf, out.offset, 0, out.strides[0] if len(out.strides) > 1 else 0]
    kern = g.row.kernel
    if len(c_uses) == 1 and _is_relu(ew, c_uses[0]):
        args[C + 8] = int(args[C + 8]) | _EPI_RELU
        new_kern = kern
    else:
        names, ext_args, ext_types, nt, ns = [], [], [], 0, 0
        acc = np.dtype(args[C + 6].dtype) if hasattr(args[C + 6], "dtype") else np.dtype(np.float32)
        for k, a in enumerate(ew.ins):
            if k in c_uses:
                names.append("r")
            elif isinstance(a, _Access):
                if len(a.strides) != 2 or a.strides[1] != 1:
                    return None
                names.append(f"e{nt}")
                ext_args += [a.buf, a.offset, a.strides[0]]
                ext_types += [None, np.dtype(np.int32), np.dtype(np.int32)]
                nt += 1
            else:
                names.append(f"s{ns}")
                ns += 1
        scalars = [a for a in ew.ins if not isinstance(a, _Access)]
        ext_args += [acc.type(v) for v in scalars]
        ext_types += [acc] * len(scalars)
        expr = _VAR.sub(lambda mo: names[int(mo.group(1))], ew.expr)
        params = dict(kern.params, ext=(expr, nt, ns))
        try:
            new_kern = get_kernel(g.row.device, "matmul.cl.mako", kern.kernel_name,
                                  arg_dtypes=list(kern.arg_dtypes) + ext_types, **params)
        except KernelBuildError:
            return None
        args += ext_args
    row = Launch(g.row.device, new_kern, g.row.global_size, g.row.local_size, args, None, g.row.op,
                 g.row.phase, GemmNote(g.gemm.M, g.gemm.N, 1, g.gemm.dtype, None))
    return _Row(row)


# --- GEMM groups: elementwise launches of a GEMM's result run in its epilogue, several stores --------------
_F32 = np.dtype(np.float32)
_LOGIC = re.compile(r"&&|\|\||![^=]|[<>]=?|==|!=")


def _vector_safe(expr) -> bool:
    """True when the expression computes the same in the CPU GEMM's vector lanes as in scalars: OpenCL C's
    vector comparisons and logic give -1 for true (scalars 1), so only comparisons that are the condition of
    a ternary (`c ? a : b`, a select either way) are taken."""
    return len(_LOGIC.findall(expr)) <= expr.count("?")


def _pattern2(a):
    """(offset, (row stride, 1)) of a 2-D operand with unit column stride, or None."""
    return a.pattern if len(a.strides) == 2 and a.strides[1] == 1 else None


def _member_ok(ew, shape) -> bool:
    return (ew.shape == shape and ew.ct == _F32 and ew.out_dtype == _F32 and ew.row.refresh is None
            and all(a.dtype == _F32 for a in ew.ins if isinstance(a, _Access)) and _vector_safe(ew.expr)
            and _pattern2(ew.out) is not None
            and all(_pattern2(a) is not None for a in ew.ins if isinstance(a, _Access)))


ADAM_IN_CPU_GEMM = False   # see _update_accesses (tests switch it on to check that epilogue on the CPU)


def _update_accesses(u, shape, produced, cpu_gemm=False):
    """The accesses of an optimizer update the GEMM epilogue can run (SGD without momentum; Adam without
    amsgrad, except in the CPU GEMM; float32, contiguous tensors of M*N elements, its gradient made by the
    GEMM group), or None.

    Not Adam in the CPU GEMM: each work-item's epilogue then reads and writes three more arrays (weight, two
    moments) in 8-row x 32-column patches that the prefetchers do not follow, where Adam's own streaming
    kernel does; the MLP 784-512-512-10 step was 5-9% slower fused (6.38-7.69 vs 6.05-7.04 ms over three
    runs), nanoGPT's 2% (1111.8 vs 1085.3 ms), PoCL on 2 Xeon cores."""
    tensors = [u.param, u.grad] + u.states
    if id(u.grad._buf) not in produced:
        return None
    adam = u.rule == "adam" and not u.flags.get("amsgrad") and (ADAM_IN_CPU_GEMM or not cpu_gemm)
    if not (adam or (u.rule == "sgd" and not u.flags.get("momentum"))):
        return None
    if any(t.dtype != _F32 or not t.is_contiguous() or t.numel() != shape[0] * shape[1] for t in tensors):
        return None
    if len({id(t._buf) for t in tensors}) != len(tensors):
        return None
    return [_Access(t._buf, t.offset, (shape[1], 1), t.dtype) for t in tensors]


def _update_body(u, temps, load, scalar, body):
    """kernels/optim.cl.mako's Adam or SGD (no momentum), operation by operation, as epilogue expressions;
    sets temps for the parameter and state buffers."""
    def new(expr):
        body.append(expr)
        return f"u{len(body) - 1}"
    if u.rule == "sgd":     # scalars: lr, momentum, 1 - dampening, weight_decay, first
        lr, wd = scalar(0), scalar(3)
        grad = temps[id(u.grad._buf)]
        if u.flags.get("maximize"):
            grad = new(f"-{grad}")
        param = load(u.param)
        if u.flags.get("weight_decay"):
            grad = new(f"{grad} + {wd} * {param}")
        temps[id(u.param._buf)] = new(f"{param} + (-{lr}) * {grad}")
        return
    one_minus_b1, b2, one_minus_b2, eps, wd, decay, step_size, bc2_sqrt = (scalar(k) for k in range(8))
    grad = temps[id(u.grad._buf)]
    if u.flags.get("maximize"):
        grad = new(f"-{grad}")
    param = load(u.param)
    if u.flags.get("weight_decay") and u.flags.get("decoupled"):
        param = new(f"{param} * {decay}")
    elif u.flags.get("weight_decay"):
        grad = new(f"{grad} + {wd} * {param}")
    ma, va = (load(t) for t in u.states)
    m = new(f"{ma} + {one_minus_b1} * ({grad} - {ma})")
    v = new(f"{va} * {b2} + {one_minus_b2} * {grad} * {grad}")
    denom = new(f"sqrt({v}) / {bc2_sqrt} + {eps}")
    p_new = new(f"{param} + (-{step_size}) * {m} / {denom}")
    temps[id(u.param._buf)] = p_new
    temps[id(u.states[0]._buf)] = m
    temps[id(u.states[1]._buf)] = v


def fuse_gemm_groups(rows, internal) -> list:
    """A float32 GEMM (batch 1) and the elementwise launches after it that use its result (or values made
    from it) over the same [M, N] elements: one launch, the GEMM computing each element's group in its
    epilogue and storing only what is visible or read elsewhere. E.g. a weight gradient, the SGD update
    of the weight from it and the gradient's zeroing: the weight is updated where the gradient is made,
    the gradient reaching memory only as the zeros `.grad` must hold; or a forward GEMM with its ReLU
    when the backward needs both. Each member must be movable to the GEMM's place (_may_move_before),
    read and write every buffer at one layout shared with the GEMM's output, and not write what the
    GEMM reads (another work-item may still read it). Returns the rows left."""
    i = 0
    while i < len(rows):
        g = rows[i]
        i += 1
        if g.gemm is None or g.gemm.Bt != 1 or np.dtype(g.gemm.dtype) != _F32:
            continue
        params = g.row.kernel.params or {}
        ext = params.get("ext") or ()
        cpu_gemm = params.get("kernel") == "gemm_cpu"
        if ext and ext[0] == "multi":
            continue
        args = g.row.args
        C = GemmNote.ARG_C
        shape = (int(g.gemm.M), int(g.gemm.N))
        c_key = id(args[C])
        patterns = {c_key: (args[C + 1], (args[C + 3], 1))}
        nt = ext[1] if ext else 0
        for k in range(nt):
            e_buf, e_off, e_sm = args[C + 9 + 3 * k:C + 12 + 3 * k]
            if patterns.setdefault(id(e_buf), (e_off, (e_sm, 1))) != (e_off, (e_sm, 1)):
                break
        else:
            gemm_reads = {id(args[GemmNote.ARG_A]), id(args[GemmNote.ARG_B]), id(args[GemmNote.ARG_BIAS])}
            members, produced = [], {c_key}
            for j in range(i, len(rows)):
                e = rows[j]
                if e.update is not None:
                    accs = _update_accesses(e.update, shape, produced, cpu_gemm)
                    if accs is None:
                        continue
                elif e.ew is None or not ((e.reads | e.writes) & produced) or not _member_ok(e.ew, shape):
                    continue
                else:
                    accs = [a for a in e.ew.ins if isinstance(a, _Access)] + [e.ew.out]
                if any(patterns.get(id(a.buf), a.pattern) != a.pattern for a in accs) or e.writes & gemm_reads:
                    continue
                if not _may_move_before(e, [x for x in rows[i:j] if x not in members]):
                    continue
                members.append(e)
                produced |= e.writes
                for a in accs:
                    patterns.setdefault(id(a.buf), a.pattern)
            if members:
                new = _gemm_group(g, members, rows, internal, patterns)
                if new is not None:
                    rows[i - 1] = new
                    rows = [r for r in rows if not any(r is m for m in members)]
    return rows


def _gemm_group(g, members, rows, internal, patterns):
    """The GEMM row g computing its members in its epilogue (see fuse_gemm_groups), or None when it does
    not build."""
    args = list(g.row.args)
    C = GemmNote.ARG_C
    kern = g.row.kernel
    ext = kern.params.get("ext") or ()
    c_key = id(args[C])
    e_args, e_index, scalars, body = [], {}, [], []
    temps = {}
    bufs = {c_key: args[C]}
    shape_n = g.gemm.N

    def load(buf, pattern):
        key = (id(buf), pattern)
        if key not in e_index:
            e_index[key] = len(e_index)
            e_args.extend([buf, pattern[0], pattern[1][0]])
        return f"e{e_index[key]}"

    if ext:   # the single expression fuse_epilogues gave it becomes the first member
        nt, ns = ext[1], ext[2]
        names_e = [load(args[C + 9 + 3 * k], (args[C + 10 + 3 * k], (args[C + 11 + 3 * k], 1))) for k in range(nt)]
        names_s = []
        for k in range(ns):
            names_s.append(f"s{len(scalars)}")
            scalars.append(args[C + 9 + 3 * nt + k])
        expr = re.sub(r"\be(\d+)\b", lambda mo: names_e[int(mo.group(1))], ext[0])
        body.append(re.sub(r"\bs(\d+)\b", lambda mo: names_s[int(mo.group(1))], expr))
        temps[c_key] = "u0"
    else:
        temps[c_key] = "r"
    refreshers = []   # (refresh, {its argument position: index among the fused kernel's scalars})
    for m in members:
        if m.update is not None:
            u = m.update
            first = len(scalars)
            scalars.extend(u.scalars)
            _update_body(u, temps, lambda t: temps.get(id(t._buf)) or load(t._buf, (t.offset, (int(shape_n), 1))),
                         lambda k: f"s{first + k}", body)
            for t in [u.param] + u.states:
                bufs[id(t._buf)] = t._buf
            refreshers.append((m.row.refresh, {u.first_scalar + k: first + k for k in range(len(u.scalars))}))
            continue
        ew = m.ew
        names = []
        for a in ew.ins:
            if isinstance(a, _Access):
                names.append(temps.get(id(a.buf)) or load(a.buf, a.pattern))
            else:
                names.append(f"s{len(scalars)}")
                scalars.append(a)
        body.append(_VAR.sub(lambda mo: names[int(mo.group(1))], ew.expr))
        temps[id(ew.out.buf)] = f"u{len(body) - 1}"
    outside = [r for r in rows if r is not g and not any(r is m for m in members)]
    for m in members:
        if m.ew is not None:
            bufs[id(m.ew.out.buf)] = m.ew.out.buf
    c_store, outs, o_args = None, [], []
    for key, name in temps.items():
        if key in internal and not any(key in r.reads for r in outside):
            continue
        if key == c_key:
            c_store = name
        else:
            pat = patterns[key]
            outs.append(name)
            o_args += [bufs[key], pat[0], pat[1][0]]
    acc = np.dtype(args[C + 6].dtype)
    n_e = len(e_index)
    multi = ("multi", tuple(body), n_e, len(scalars), c_store, tuple(outs))
    base = list(kern.arg_dtypes)[:C + 9]
    arg_dtypes = base + [None, _I32, _I32] * n_e + [acc] * len(scalars) + [None, _I32, _I32] * len(outs)
    params = dict(kern.params, ext=multi)
    try:
        new_kern = get_kernel(g.row.device, "matmul.cl.mako", kern.kernel_name, arg_dtypes=arg_dtypes, **params)
        new_kern.built()
    except KernelBuildError:
        return None
    new_args = args[:C + 9] + e_args + [acc.type(v) for v in scalars] + o_args
    first_scalar = C + 9 + 3 * n_e
    refresh = None
    if refreshers:
        moved = [(fn, {old: first_scalar + k for old, k in where.items()}) for fn, where in refreshers]

        def refresh():
            out = {}
            for fn, where in moved:   # each update's host step (its step count) runs once per replay
                out.update({where[pos]: v for pos, v in fn().items() if pos in where})
            return out
    row = Launch(g.row.device, new_kern, g.row.global_size, g.row.local_size, new_args, refresh, g.row.op,
                 g.row.phase, GemmNote(g.gemm.M, g.gemm.N, 1, g.gemm.dtype, None))
    out = _Row(row)
    out.gemm = None    # its epilogue is taken: no later pass fuses into it
    out.reads = g.reads | set().union(*(m.reads for m in members))
    out.writes = g.writes | set().union(*(m.writes for m in members))
    return out


# --- grouping -------------------------------------------------------------------------------------------
class _Group:
    def __init__(self, index, row):
        self.index = index            # where the fused kernel runs: its first member's place
        self.members = [row]
        self.patterns = {}            # id(buffer) -> (offset, strides) of every access in the group
        self.written = set()
        self._note(row.ew)

    def _note(self, ew):
        for a in [x for x in ew.ins if isinstance(x, _Access)] + [ew.out]:
            self.patterns.setdefault(id(a.buf), a.pattern)
        self.written.add(id(ew.out.buf))

    def accepts(self, ew) -> bool:
        first = self.members[0].ew
        if ew.shape != first.shape or ew.row.device is not first.row.device:
            return False
        for a in [x for x in ew.ins if isinstance(x, _Access)] + [ew.out]:
            seen = self.patterns.get(id(a.buf))
            if seen is not None and seen != a.pattern:
                return False
        return True

    def add(self, row):
        self.members.append(row)
        self._note(row.ew)


def _may_move_before(row, others) -> bool:
    """Can `row` run before every row in `others` (which originally ran before it)?"""
    for x in others:
        if x.writes & (row.reads | row.writes) or x.reads & row.writes:
            return False
    return True


def group(rows) -> list:
    """Greedy grouping: an elementwise launch joins the latest open group of its shape when it can run at
    that group's place (no launch in between touches what it reads or writes, every shared buffer is
    accessed the same way). Returns a list whose items are rows or groups, in run order."""
    out = []             # rows and groups in order
    open_groups = []     # groups that may still grow
    for i, r in enumerate(rows):
        ew = r.ew
        if ew is None or not ew.fusable():
            out.append(r)
            continue
        joined = False
        for g in reversed(open_groups):
            if not g.accepts(ew):
                continue
            between = [x for x in rows[g.index + 1:i] if x not in g.members]
            if _may_move_before(r, between):
                g.add(r)
                joined = True
                break
        if not joined:
            g = _Group(i, r)
            open_groups.append(g)
            out.append(g)
    return out


# --- emitting a fused kernel ------------------------------------------------------------------------------
def _cast(expr, ct, dtype):
    """An operand as a member reads it: converted to its compute type, except bool/uchar values, which
    stay uchar (they may be conditions, and OpenCL C takes no float condition)."""
    return expr if np.dtype(dtype) in (_dt.bool_, _dt.uint8) else f"(({ct}){expr})"


def emit(g: _Group, rows, internal, visible) -> Launch:
    """One launch computing every member of group g; stores the buffers something outside reads."""
    members = [m.ew for m in g.members]
    first = members[0]
    device = first.row.device
    shape = first.shape
    inputs, in_index = [], {}     # external tensor operands (deduplicated) and scalars
    temps = {}                    # id(buffer) -> name of the temporary holding its latest value
    out_type = {}
    body = []
    for m, ew in enumerate(members):
        ct = ctype(ew.ct)
        names = []
        for a in ew.ins:
            if isinstance(a, _Access):
                key = id(a.buf)
                if key in temps:
                    names.append(_cast(temps[key], ct, out_type[key][0].dtype))
                    continue
                ikey = ("t", key, a.pattern, a.dtype)
            else:
                ikey = ("s", type(a).__name__, a, ct)
            if ikey not in in_index:
                in_index[ikey] = len(inputs)
                inputs.append((a, ct))
            names.append(_cast(f"v{in_index[ikey]}", ct, a.dtype) if isinstance(a, _Access) else f"v{in_index[ikey]}")
        expr = _VAR.sub(lambda mo: names[int(mo.group(1))], ew.expr)
        out_t = ctype(ew.out_dtype)
        value = f"(({ct})({expr}) != 0)" if ew.out_dtype == _dt.bool_ else f"({ct})({expr})"
        body.append(f"const {out_t} t{m} = ({out_t})({value});")
        temps[id(ew.out.buf)] = f"t{m}"
        out_type[id(ew.out.buf)] = (ew.out, out_t, ew.out_dtype == _dt.bool_)
    # store what is visible outside the graph or read by any launch outside the group
    outside = [r for r in rows if r not in g.members]
    stores = [key for key in temps if key not in internal or any(key in r.reads for r in outside)]
    if not stores:  # nothing needed: still keep the last result (a later pass may drop the group)
        stores = [id(members[-1].out.buf)]
    # layout: collapse dims over every access
    accesses = [out_type[k][0] for k in stores] + [a for a, _ in inputs if isinstance(a, _Access)]
    n = math.prod(shape)
    sizes, strides = _collapse(shape, [list(a.strides) for a in accesses])
    rank = len(sizes)
    if rank <= 1 and all(st == [1] or not st for st in strides):
        rank = 0
    big = any(a.offset + 1 + sum((s - 1) * abs(st) for s, st in zip(shape, a.strides)) > _INT_MAX
              for a in accesses) or n > _INT_MAX
    idx = "long" if big else "int"
    idx_dt = np.dtype(np.int64 if big else np.int32)
    outs = tuple((out_type[k][1], out_type[k][2]) for k in stores)
    results = tuple(temps[k] for k in stores)
    in_ts, arg_dtypes, args = [], [idx_dt], [n]
    for j, k in enumerate(stores):
        acc = out_type[k][0]
        arg_dtypes += [None, idx_dt]
        args += [acc.buf, acc.offset]
    for d in range(rank):
        arg_dtypes.append(idx_dt)
        args.append(sizes[d])
        for j in range(len(stores)):
            arg_dtypes.append(idx_dt)
            args.append(strides[j][d])
    k_acc = len(stores)
    for a, ct in inputs:
        if isinstance(a, _Access):
            in_ts.append(ctype(a.dtype))
            arg_dtypes += [None, idx_dt] + [idx_dt] * rank
            args += [a.buf, a.offset] + (list(strides[k_acc]) if rank else [])
            k_acc += 1
        else:
            c_np = np.dtype({"float": np.float32, "double": np.float64, "int": np.int32, "long": np.int64,
                             "uchar": np.uint8}[ct])
            in_ts.append(("scalar", ct))
            arg_dtypes.append(c_np)
            args.append(c_np.type(a))
    wg = device.profile.elementwise_wg
    grid2 = _use_grid2(device, sizes, rank, wg)
    kern = get_kernel(device, "elementwise.cl.mako", "ew", arg_dtypes=arg_dtypes, name="ew", results=results,
                      body=tuple(body), outs=outs, in_ts=tuple(in_ts), native=True, ct="float", rank=rank,
                      idx=idx, grid2=grid2)
    if grid2:
        gsize, lsize = (-(-sizes[-1] // wg) * wg, n // sizes[-1]), (wg, 1)
    else:
        gsize, lsize = (-(-n // wg) * wg,), (wg,)
    return Launch(device, kern, gsize, lsize, args, None, first.row.op, first.row.phase, None)


def run(graph, visible) -> dict:
    """Fold, eliminate and fuse graph.launches in place; returns counts for reports."""
    internal = {k for k in graph.allocated if k not in visible}
    rows = [_Row(r) for r in graph.launches]
    before = sum(1 for r in rows if isinstance(r.row, Launch))
    fold_constants(rows, internal)
    simplify_powers(rows)
    rows = eliminate_dead(rows, internal)
    rows = fuse_epilogues(rows, internal)
    rows = fuse_gemm_groups(rows, internal)
    items = group(rows)
    new = []
    for it in items:
        if isinstance(it, _Group) and len(it.members) > 1:
            new.append(emit(it, rows, internal, visible))
        elif isinstance(it, _Group):
            new.append(_rewrite_single(it.members[0]))
        else:
            new.append(it.row)
    graph.launches = new
    return {"launches_before": before, "launches_after": sum(1 for r in new if isinstance(r, Launch))}


def _rewrite_single(r) -> Launch:
    """An unfused elementwise launch stays as traced, unless folding changed its operands or its expression."""
    ew = r.ew
    if ew.expr == r.row.note.expr and \
            all((isinstance(a, _Access)) == isinstance(x, TensorBase) for a, x in zip(ew.ins, r.row.note.operands)):
        return r.row
    g = _Group(0, r)
    return emit(g, [r], set(), set())


__all__ = ["run", "fold_constants", "eliminate_dead", "fuse_epilogues", "fuse_gemm_groups", "group", "emit"]

"""dynamic_axes for ONNX export: which traced integers are really sizes of the inputs' dynamic axes.

A traced graph holds the integers Python computed while tracing (`x.view(x.size(0), -1)` is a reshape to
(64, -1) at batch 64). To export a graph that runs at any batch size, the model is traced again with each
dynamic axis a little longer, and once more with all of them longer still. The graphs must have the same
rows (code whose op sequence depends on a dynamic size cannot become one ONNX graph: export says so); the
integers that differ are fitted as c * size (+ d), or c * size_a * size_b (+ d) for products such as
batch * seq, checked on the extra trace, and become SymInts: ints whose value is the traced one and that
ONNX export computes in the graph from Shape(input) (Emitter.shape_input). Value shapes are treated the
same way, so rules reading a dimension see the SymInt too.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from ..jit.graph import Ref
from ..jit.trace import capture
from ..ops.creation import tensor as _make_tensor
from .ops.common import UnsupportedOperatorError


class SymInt(int):
    """An int computed from the inputs' dynamic sizes: value = slope * prod(sizes) + offset (slope and offset
    rationals whose result is an integer at every traced size). `dims` are (input index, axis) pairs."""

    def __new__(cls, value, slope: Fraction, dims: tuple, offset: Fraction, symbol: str):
        obj = super().__new__(cls, int(value))
        obj.slope, obj.dims, obj.offset, obj.symbol = slope, dims, offset, symbol
        return obj

    def emit(self, e) -> str:
        """A 1-element int64 tensor computing this value from the inputs' shapes."""
        b = e.b
        y = None
        for i, axis in self.dims:
            d = e.dim(Ref("input", i), axis)
            y = d if y is None else b.node("Mul", [y, d])
        den = self.slope.denominator * self.offset.denominator
        num = self.slope.numerator * (den // self.slope.denominator)
        off = self.offset.numerator * (den // self.offset.denominator)
        if num != 1:
            y = b.node("Mul", [y, b.ints([num])])
        if off:
            y = b.node("Add", [y, b.ints([off])])
        if den != 1:
            y = b.node("Div", [y, b.ints([den])])
        return y

    def __repr__(self):
        return f"SymInt({int(self)} = {self.symbol})"


class FixedDim(int):
    """A dimension that changes with the dynamic axes in a way export cannot write as a formula (a pooled
    length, floor(T / 2)): usable where its value does not matter to the file, refused where it would be
    written into the graph as a size (Emitter.shape_input)."""

    def __new__(cls, value, why: str):
        obj = super().__new__(cls, int(value))
        obj.why = why
        return obj


def _resized(x, axis: int, size: int):
    """x with `axis` made `size` long by repeating its entries (values stay in their domain: token ids...)."""
    arr = x.detach().numpy()
    idx = np.arange(size) % arr.shape[axis]
    return _make_tensor(np.take(arr, idx, axis=axis), device=x.device)


def _describe(slope, dims, offset, names) -> str:
    term = "*".join(names[d] for d in dims)
    if slope != 1:
        term = f"{slope}*{term}"
    if offset:
        term += f"{'+' if offset > 0 else '-'}{abs(offset)}"
    return term


class _Fitter:
    """Fits one integer observed at the base sizes, with each axis changed, and with all changed."""

    def __init__(self, axes, base, single, every, names):
        self.axes, self.base, self.single, self.every, self.names = axes, base, single, every, names

    def fit(self, v0, v_single, v_every, where):
        moved = [k for k, v in enumerate(v_single) if v != v0]
        if not moved and v_every == v0:
            return v0
        s0 = [self.base[k] for k in range(len(self.axes))]
        if len(moved) == 1:
            k = moved[0]
            slope = Fraction(v_single[k] - v0, self.single[k] - s0[k])
            offset = v0 - slope * s0[k]
            dims = (k,)
            predicted = slope * self.every[k] + offset
        elif len(moved) == 2:
            k1, k2 = moved
            slope = Fraction(v_single[k1] - v0, (self.single[k1] - s0[k1]) * s0[k2])
            offset = v0 - slope * s0[k1] * s0[k2]
            if slope * s0[k1] * (self.single[k2] - s0[k2]) != v_single[k2] - v0:
                predicted = None
            else:
                dims = (k1, k2)
                predicted = slope * self.every[k1] * self.every[k2] + offset
        else:
            predicted = None
        if predicted is None or predicted != v_every:
            raise UnsupportedOperatorError(
                f"clnet.onnx.export: with dynamic_axes, {where} is {v0} at the traced sizes and changes with the "
                f"dynamic axes in a way export cannot write as a formula of the input sizes (it handles c*size+d "
                f"and c*size1*size2+d)")
        return SymInt(v0, slope, tuple(self.axes[k] for k in dims), offset,
                      _describe(slope, dims, offset, self.names))


class Symbols:
    """The SymInts found: row arguments by (row index, path) and value dimensions by (Ref, axis); rows whose
    arguments (or inner rows) follow the dynamic sizes in a way export cannot express, with the reason
    (an error only if export needs that row)."""

    def __init__(self):
        self.args = {}
        self.dims = {}
        self.bad = {}            # row index -> why its arguments cannot be used
        self.bad_children = {}   # row index -> why its inner rows cannot be used

    def arguments(self, index, args, kwargs):
        if index in self.bad:
            raise UnsupportedOperatorError(self.bad[index])

        def sub(tree, path):
            key = (index, path)
            if key in self.args:
                return self.args[key]
            if isinstance(tree, tuple):
                return tuple(sub(v, path + (i,)) for i, v in enumerate(tree))
            if isinstance(tree, list):
                return [sub(v, path + (i,)) for i, v in enumerate(tree)]
            if isinstance(tree, dict):
                return {k: sub(v, path + (k,)) for k, v in tree.items()}
            if isinstance(tree, slice):
                return slice(sub(tree.start, path + ("start",)), sub(tree.stop, path + ("stop",)),
                             sub(tree.step, path + ("step",)))
            return tree
        return sub(args, ("args",)), sub(kwargs, ("kwargs",))

    def check_children(self, index):
        if index in self.bad_children:
            raise UnsupportedOperatorError(self.bad_children[index])

    def shape(self, ref, shape):
        return tuple(self.dims.get((ref, d), s) for d, s in enumerate(shape))


def _leaves(tree, path, out):
    if isinstance(tree, (tuple, list)):
        out.append((path, ("seq", type(tree).__name__, len(tree))))
        for i, v in enumerate(tree):
            _leaves(v, path + (i,), out)
    elif isinstance(tree, dict):
        out.append((path, ("dict", tuple(tree))))
        for k, v in tree.items():
            _leaves(v, path + (k,), out)
    elif isinstance(tree, slice):
        out.append((path, ("slice",)))
        for f in ("start", "stop", "step"):
            _leaves(getattr(tree, f), path + (f,), out)
    else:
        out.append((path, tree))
    return out


def _row_leaves(n):
    return _leaves(n.args, ("args",), []) + _leaves(n.kwargs, ("kwargs",), [])


_DIFFERENT_OPS = ("clnet.onnx.export: the model runs different ops when a dynamic axis changes size (Python control "
                  "flow on a size); export it without dynamic_axes, or make the code's ops independent of that size")


class _Comparison:
    """Walks the base graph's rows beside the same rows of the other traces."""

    def __init__(self, base, others, fitter, symbols):
        self.base, self.others, self.fitter, self.symbols = base, others, fitter, symbols
        self.index_of = {id(n): i for i, n in enumerate(base.walk())}

    def rows(self, nodes0, others, top: bool) -> bool:
        if any(len(o) != len(nodes0) or any(a.op != b.op for a, b in zip(nodes0, o)) for o in others):
            if top:
                raise UnsupportedOperatorError(_DIFFERENT_OPS)
            return False
        for k, node in enumerate(nodes0):
            peers = [o[k] for o in others]
            index = self.index_of[id(node)]
            try:
                self.arguments(index, node, peers)
                self.results(node, peers)
            except UnsupportedOperatorError as err:
                self.symbols.bad[index] = str(err)
            if node.children and not self.rows(node.children, [p.children for p in peers], False):
                self.symbols.bad_children[index] = _DIFFERENT_OPS
        return True

    def arguments(self, index, node, peers):
        leaves0 = _row_leaves(node)
        seen = [_row_leaves(p) for p in peers]
        if any(len(s) != len(leaves0) for s in seen):
            raise UnsupportedOperatorError(f"clnet.onnx.export: the arguments of {node.op!r} change shape with a "
                                           "dynamic axis")
        for j, (path, v0) in enumerate(leaves0):
            if any(s[j][0] != path for s in seen):
                raise UnsupportedOperatorError(f"clnet.onnx.export: the arguments of {node.op!r} change shape with "
                                               "a dynamic axis")
            values = [s[j][1] for s in seen]
            if all(v == v0 and type(v) is type(v0) for v in values):
                continue
            if not (isinstance(v0, (int, np.integer)) and not isinstance(v0, bool)
                    and all(isinstance(v, (int, np.integer)) for v in values)):
                raise UnsupportedOperatorError(f"clnet.onnx.export: an argument of {node.op!r} ({v0!r}) changes "
                                               "with a dynamic axis, and only integers (sizes) may")
            sym = self.fitter.fit(int(v0), [int(v) for v in values[:-1]], int(values[-1]),
                                  f"an argument of {node.op!r}")
            if isinstance(sym, SymInt):
                self.symbols.args[(index, path)] = sym

    def results(self, node, peers):
        refs0 = list(self.base.refs_in(node.outputs))
        for p_refs, g in zip([list(self.base.refs_in(p.outputs)) for p in peers], self.others_graphs):
            if len(p_refs) != len(refs0):
                raise UnsupportedOperatorError(f"clnet.onnx.export: {node.op!r} returns a different number of "
                                               "tensors when a dynamic axis changes")
        for i, r0 in enumerate(refs0):
            shape0 = self.base.values[r0.key].shape
            shapes = [g.values[list(g.refs_in(p.outputs))[i].key].shape for p, g in zip(peers, self.others_graphs)]
            for d, s0 in enumerate(shape0):
                seen = [s[d] for s in shapes]
                if all(s == s0 for s in seen):
                    continue
                try:
                    sym = self.fitter.fit(int(s0), seen[:-1], seen[-1], f"dimension {d} of what {node.op!r} returns")
                except UnsupportedOperatorError as err:
                    sym = FixedDim(s0, str(err))
                if isinstance(sym, (SymInt, FixedDim)):
                    self.symbols.dims[(Ref("value", r0.key), d)] = sym


def analyse(model, inputs, graph, axes_by_input: dict) -> Symbols:
    """Trace `model` again with each dynamic axis resized and find the SymInts (see the module docstring).
    axes_by_input: {input index: {axis: symbol name}}; axes with the same symbol are one size (resized
    together, like the batch of several inputs)."""
    groups = {}
    for i, spec in axes_by_input.items():
        for axis, symbol in spec.items():
            if not 0 <= axis < inputs[i].ndim:
                raise ValueError(f"clnet.onnx.export: dynamic axis {axis} of input {i} is out of range for shape "
                                 f"{tuple(inputs[i].shape)}")
            groups.setdefault(symbol, []).append((i, axis))
    names = dict(enumerate(groups))
    axes = [members[0] for members in groups.values()]     # each size by its first (input, axis)
    base = [inputs[i].shape[a] for i, a in axes]
    for symbol, members in groups.items():
        sizes = {inputs[i].shape[a] for i, a in members}
        if len(sizes) > 1:
            raise ValueError(f"clnet.onnx.export: the dynamic axes named {symbol!r} have different sizes in the "
                             f"example inputs ({sorted(sizes)})")
    single_sizes = [s + 1 for s in base]
    every_sizes = [s + 2 for s in base]

    def traced_with(sizes):
        xs = list(inputs)
        for members, s in zip(groups.values(), sizes):
            for i, a in members:
                if xs[i].shape[a] != s:
                    xs[i] = _resized(xs[i], a, s)
        return capture(model, tuple(xs), children=True)[0]

    others = [traced_with([single_sizes[k] if j == k else base[j] for j in range(len(axes))])
              for k in range(len(axes))] + [traced_with(every_sizes)]
    symbols = Symbols()
    comparison = _Comparison(graph, [g.nodes for g in others], _Fitter(axes, base, single_sizes, every_sizes, names),
                             symbols)
    comparison.others_graphs = others
    comparison.rows(graph.nodes, [g.nodes for g in others], True)
    for k, members in enumerate(groups.values()):
        for i, d in members:
            symbols.dims[(Ref("input", i), d)] = SymInt(graph.inputs[i].shape[d], Fraction(1), (axes[k],),
                                                        Fraction(0), names[k])
    return symbols

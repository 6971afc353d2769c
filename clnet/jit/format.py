"""The file clnet.jit saves a traced model in: data only, checked like clnet's other files.

    graph.json          format name, clnet version, the traced module's class name and mode, the graph
                        (inputs with dtype and shape, nodes by op name with their argument trees, outputs),
                        and for each parameter, buffer and constant its member, shape and dtype
    arrays/NNNNNN.npy   the arrays, written with allow_pickle=False

The zip container is clnet.serialization's (atomic writes; ZipReader checks member names, sizes, JSON and
arrays). Loading also checks the graph itself: every op name against the op table given (a dict lookup:
nothing is imported or evaluated by name), every reference in range and defined before it is used,
every argument a plain value (numbers, strings, None, tuples, lists, dicts, slices, dtypes). Any problem
raises clnet.FileFormatError naming the file and what is wrong.
"""
from __future__ import annotations

import json
import numbers
import re

import numpy as np

from ..errors import FileFormatError
from ..serialization import ZipReader, npy_bytes, write_zip
from .cexpr import ExpressionError, parse
from .graph import DEVICE, Graph, Node, Ref, TensorSpec

FORMAT = "clnet.jit/1"
_GRAPH = "graph.json"
_MEMBER = re.compile(r"^(graph\.json|arrays/\d{6}\.npy)$")
_MAX_DEPTH = 64
_KINDS = "biuf"


# --- argument trees <-> JSON ---------------------------------------------------------------------------------
def encode(obj, where: str, depth: int = 0):
    """The JSON node of an argument or result tree (`where` names it in errors)."""
    if depth > _MAX_DEPTH:
        raise ValueError(f"clnet.jit: {where} is nested more than {_MAX_DEPTH} levels deep")
    if isinstance(obj, Ref):
        return {"ref": [obj.kind, obj.key]}
    if obj is DEVICE:
        return {"device": None}
    if obj is None:
        return {"none": None}
    if obj is Ellipsis:
        return {"ellipsis": None}
    if isinstance(obj, (bool, np.bool_)):
        return {"bool": bool(obj)}
    if isinstance(obj, numbers.Integral):
        return {"int": str(int(obj))}
    if isinstance(obj, numbers.Real):
        return {"float": repr(float(obj))}
    if isinstance(obj, str):
        return {"str": obj}
    if isinstance(obj, np.dtype) or (isinstance(obj, type) and issubclass(obj, np.generic)):
        dt = np.dtype(obj)
        if dt.kind not in _KINDS:
            raise TypeError(f"clnet.jit: {where} is the dtype {dt}, which clnet does not use")
        return {"dtype": dt.name}
    if isinstance(obj, slice):
        return {"slice": [encode(p, where, depth + 1) for p in (obj.start, obj.stop, obj.step)]}
    if isinstance(obj, (list, tuple)):
        kind = "list" if isinstance(obj, list) else "tuple"
        return {kind: [encode(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(obj)]}
    if isinstance(obj, dict):
        if not all(isinstance(k, str) or (isinstance(k, int) and not isinstance(k, bool)) for k in obj):
            raise TypeError(f"clnet.jit: {where} is a dict with keys that are not strings or ints")
        return {"dict": [[k, encode(v, f"{where}[{k!r}]", depth + 1)] for k, v in obj.items()]}
    raise TypeError(f"clnet.jit: {where} is a {type(obj).__name__}, which a saved graph cannot hold (numbers, "
                    "strings, None, dtypes, slices, tuples/lists/dicts of them, and tensors)")


class _Decoder:
    """Turns JSON trees back into argument trees, checking every node and reference."""

    def __init__(self, reader: ZipReader, n_inputs: int, params: set, buffers: set, n_consts: int):
        self.reader, self.n_inputs, self.params, self.buffers, self.n_consts = \
            reader, n_inputs, params, buffers, n_consts
        self.defined = 0   # values 0 .. defined-1 exist

    def error(self, message):
        return self.reader.error(message)

    def ref(self, kind, key) -> Ref:
        ok = {"input": lambda: _index(key) and key < self.n_inputs,
              "param": lambda: isinstance(key, str) and key in self.params,
              "buffer": lambda: isinstance(key, str) and key in self.buffers,
              "const": lambda: _index(key) and key < self.n_consts,
              "value": lambda: _index(key) and key < self.defined}.get(kind)
        if ok is None or not ok():
            raise self.error(f"the graph refers to {kind} {repr(key)[:80]}, which does not exist "
                             f"{'(yet) ' if kind == 'value' else ''}(the file is damaged or was tampered with)")
        return Ref(kind, key)

    def tree(self, node, depth: int = 0):
        if depth > _MAX_DEPTH:
            raise self.error(f"an argument is nested more than {_MAX_DEPTH} levels deep")
        if not isinstance(node, dict) or len(node) != 1:
            raise self.error(f"malformed argument in the graph: {str(node)[:200]}")
        (kind, v), = node.items()
        try:
            if kind == "ref" and isinstance(v, list) and len(v) == 2 and isinstance(v[0], str):
                return self.ref(v[0], v[1])
            if kind in ("none", "ellipsis", "device") and v is None:
                return {"none": None, "ellipsis": Ellipsis, "device": DEVICE}[kind]
            if kind == "bool" and isinstance(v, bool):
                return v
            if kind == "int" and isinstance(v, str) and re.fullmatch(r"-?\d{1,40}", v):
                return int(v)
            if kind == "float" and isinstance(v, str) and len(v) < 40:
                return float(v)
            if kind == "str" and isinstance(v, str):
                return v
            if kind == "dtype" and isinstance(v, str) and np.dtype(v).kind in _KINDS:
                return np.dtype(v)
            if kind == "slice" and isinstance(v, list) and len(v) == 3:
                return slice(*(self.tree(p, depth + 1) for p in v))
            if kind in ("list", "tuple") and isinstance(v, list):
                items = [self.tree(x, depth + 1) for x in v]
                return items if kind == "list" else tuple(items)
            if kind == "dict" and isinstance(v, list) and all(isinstance(p, list) and len(p) == 2 and (
                    isinstance(p[0], str) or _index(p[0])) for p in v):
                return {k: self.tree(x, depth + 1) for k, x in v}
        except (TypeError, ValueError) as err:
            if isinstance(err, FileFormatError):
                raise
            raise self.error(f"malformed {kind} value in the graph: {str(v)[:100]!r}") from None
        raise self.error(f"malformed argument in the graph: {str(node)[:200]}")

    def results(self, node):
        """A node's result tree: new value numbers, in order, each defined by this node (None: not a tensor)."""
        if node == {"none": None}:
            return None
        if isinstance(node, dict) and set(node) == {"ref"}:
            kind, key = node["ref"] if isinstance(node["ref"], list) and len(node["ref"]) == 2 else (None, None)
            if kind != "value" or key != self.defined:
                raise self.error(f"a node's result {str(node)[:100]} is not the next value ({self.defined})")
            self.defined += 1
            return Ref("value", key)
        if isinstance(node, dict) and set(node) == {"tuple"} and isinstance(node["tuple"], list):
            return tuple(self.results(x) for x in node["tuple"])
        raise self.error(f"malformed node result in the graph: {str(node)[:200]}")


def _index(key) -> bool:
    return isinstance(key, int) and not isinstance(key, bool) and key >= 0


def _spec_json(spec: TensorSpec) -> dict:
    out = {"dtype": np.dtype(spec.dtype).name, "shape": [int(d) for d in spec.shape]}
    if spec.name:
        out["name"] = spec.name
    return out


def _spec(reader, entry, what) -> TensorSpec:
    try:
        dtype = np.dtype(entry["dtype"])
        shape = tuple(int(d) for d in entry["shape"])
        name = entry.get("name", "")
        ok = dtype.kind in _KINDS and all(d >= 0 for d in shape) and isinstance(name, str)
    except (KeyError, TypeError, ValueError, AttributeError):
        ok = False
    if not ok:
        raise reader.error(f"malformed {what} in the graph: {str(entry)[:200]}")
    return TensorSpec(name, dtype, shape)


def _check_pointwise(reader, args, kwargs):
    """A pointwise row carries C source (its expressions): it must be the pointwise language of
    clnet/jit/cexpr.py over its operands, nothing else, before it may be compiled into a kernel."""
    if kwargs or len(args) != 5 or not isinstance(args[0], str) or not isinstance(args[1], str) \
            or not isinstance(args[2], list) or not isinstance(args[3], dict):
        raise reader.error("malformed pointwise row in the graph (expected name, expression, operands, gradient "
                           "expressions, dtype)")
    n = len(args[2])
    try:
        parse(args[1], n)
        for k, expr in args[3].items():
            if not _index(k) or k >= n:
                raise ExpressionError(f"a gradient expression for operand {k!r}, of {n}")
            parse(expr, n + 1)
    except ExpressionError as err:
        raise reader.error(f"the pointwise row {args[0][:40]!r} holds an expression clnet refuses: {err}") from None


# --- saving --------------------------------------------------------------------------------------------------
def save_graph(path, graph: Graph, params: dict, buffers: dict, meta: dict) -> None:
    """Write `graph` with its parameters and buffers (name -> numpy array; parameters as
    (array, requires_grad)) and `meta` (JSON-able: the module's class name, mode) to `path`."""
    from .. import __version__
    members, arrays = {}, []

    def add(arr: np.ndarray) -> dict:
        arr = np.asarray(arr, order="C")
        if arr.dtype.kind not in _KINDS:
            raise TypeError(f"clnet.jit: an array of dtype {arr.dtype} cannot be saved")
        member = f"arrays/{len(arrays):06d}.npy"
        arrays.append(member)
        members[member] = npy_bytes(arr)
        return {"file": member, "shape": list(arr.shape), "dtype": arr.dtype.str}

    head = {
        "format": FORMAT, "clnet_version": __version__, "meta": meta,
        "inputs": [_spec_json(s) for s in graph.inputs],
        "params": [{"name": n, "requires_grad": bool(g), **add(a)} for n, (a, g) in params.items()],
        "buffers": [{"name": n, **add(a)} for n, a in buffers.items()],
        "constants": [add(np.asarray(c)) for c in graph.constants],
        "values": [[k, _spec_json(s)] for k, s in sorted(graph.values.items())],
        "nodes": [{"op": n.op, "args": encode(tuple(n.args), f"the arguments of {n.op}"),
                   "kwargs": encode(dict(n.kwargs), f"the keyword arguments of {n.op}"),
                   "out": encode(n.outputs, f"the results of {n.op}")} for n in graph.nodes],
        "outputs": encode(graph.outputs, "the graph's outputs"),
    }
    write_zip(path, {_GRAPH: json.dumps(head, separators=(",", ":")).encode("utf-8"), **members})


# --- loading -------------------------------------------------------------------------------------------------
def load_graph(path, known_ops):
    """Read a saved graph: (graph, params {name: (array, requires_grad)}, buffers {name: array}, meta).
    `known_ops` is the collection of op names this clnet can run; any other name is refused."""
    with ZipReader(path, _MEMBER, "a graph saved by clnet.jit") as reader:
        head = reader.json(_GRAPH)
        if head.get("format") != FORMAT:
            raise reader.error(f"unknown format {head.get('format')!r} (expected {FORMAT!r})")
        for key, kind in (("inputs", list), ("params", list), ("buffers", list), ("constants", list),
                          ("values", list), ("nodes", list), ("meta", dict)):
            if not isinstance(head.get(key), kind):
                raise reader.error(f"{_GRAPH} lacks its {key!r} {kind.__name__}")
        entries = head["params"] + head["buffers"] + head["constants"]
        listed = [e.get("file") if isinstance(e, dict) else None for e in entries]
        if sorted(map(str, listed)) != sorted(reader.names - {_GRAPH}) or len(set(listed)) != len(listed):
            raise reader.error("the arrays present do not match the ones the graph lists (the file was tampered "
                               "with)")
        params, buffers = {}, {}
        for kind, table in (("params", params), ("buffers", buffers)):
            for e in head[kind]:
                name = e.get("name")
                if not isinstance(name, str) or not name or name in params or name in buffers:
                    raise reader.error(f"a {kind[:-1]} has a missing or repeated name: {str(name)[:80]!r}")
                arr = reader.array(e, kind[:-1])
                table[name] = (arr, e.get("requires_grad") is True and arr.dtype.kind == "f") \
                    if kind == "params" else arr
        constants = [reader.array(e, "constant") for e in head["constants"]]
        inputs = [_spec(reader, e, "input") for e in head["inputs"]]
        values = {}
        for item in head["values"]:
            if not (isinstance(item, list) and len(item) == 2 and _index(item[0])):
                raise reader.error(f"malformed value entry in the graph: {str(item)[:200]}")
            values[item[0]] = _spec(reader, item[1], "value")
        dec = _Decoder(reader, len(inputs), set(params), set(buffers), len(constants))
        nodes = []
        for n in head["nodes"]:
            if not isinstance(n, dict) or set(n) != {"op", "args", "kwargs", "out"} or not isinstance(n["op"], str):
                raise reader.error(f"malformed node in the graph: {str(n)[:200]}")
            if n["op"] not in known_ops:
                raise reader.error(f"the graph uses the op {n['op'][:80]!r}, which this clnet does not have "
                                   f"(the file was written by clnet {head.get('clnet_version')!s:.20})")
            args, kwargs = dec.tree(n["args"]), dec.tree(n["kwargs"])
            if not isinstance(args, tuple) or not isinstance(kwargs, dict):
                raise reader.error(f"malformed arguments of {n['op']!r} in the graph")
            if n["op"] == "pointwise":
                _check_pointwise(reader, args, kwargs)
            nodes.append(Node(n["op"], args, kwargs, dec.results(n["out"])))
        outputs = dec.tree(head.get("outputs", {"none": None}))
        if any(k >= dec.defined for k in values):
            raise reader.error("the graph describes values no node makes")
        return Graph(inputs, nodes, outputs, constants, values), params, buffers, head["meta"]

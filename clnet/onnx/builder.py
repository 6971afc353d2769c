"""A small ONNX graph builder for the exporter: nodes, initializers, constants, and the model around them.

    b = GraphBuilder(opset=17)
    y = b.node("Gemm", [x, w, bias], transB=1)         # returns the output's value name
    shape = b.const(np.array([0, -1], np.int64))        # an int64 initializer (deduplicated)
    model = b.model(inputs, outputs, producer="clnet")
"""
from __future__ import annotations

import importlib

import numpy as np

from .proto import elem_type, require


class GraphBuilder:
    """Collects ONNX nodes and initializers; names values uniquely."""

    def __init__(self, opset: int):
        self.opset = opset
        self.nodes = []
        self.initializers = []
        self._names = set()
        self._consts = {}
        self._count = 0
        self.named = set()   # initializers named by the model (state_dict names), not made up

    def fresh(self, hint: str = "v") -> str:
        """A value name not used yet."""
        while True:
            self._count += 1
            name = f"{hint}_{self._count}"
            if name not in self._names:
                self._names.add(name)
                return name

    def reserve(self, name: str) -> str:
        if name in self._names:
            raise ValueError(f"clnet.onnx.export: the name {name!r} is used twice")
        self._names.add(name)
        return name

    def node(self, op_type: str, inputs, n_outputs: int = 1, outputs=None, **attrs):
        """Add a node; returns its output name (or a list of names when n_outputs > 1)."""
        onnx = require()
        outs = list(outputs) if outputs is not None else [self.fresh(op_type.lower()) for _ in range(n_outputs)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(onnx.helper.make_node(op_type, [i or "" for i in inputs], outs,
                                                name=f"{op_type}_{len(self.nodes)}", **attrs))
        return outs[0] if len(outs) == 1 else outs

    def initializer(self, name: str, array: np.ndarray, fresh: bool = False) -> str:
        onnx = require()
        if not fresh:
            self.reserve(name)
            self.named.add(name)
        self.initializers.append(onnx.numpy_helper.from_array(np.array(array, order="C"), name))
        return name

    def initializer_names(self) -> set:
        return {t.name for t in self.initializers}

    @staticmethod
    def tensor_attr(array):
        """A tensor-valued attribute (ConstantOfShape's value)."""
        return require().numpy_helper.from_array(np.array(array, order="C"))

    def _unique(self, name: str) -> str:
        out, k = name, 1
        while out in self._names:
            k += 1
            out = f"{name}_{k}"
        self._names.add(out)
        return out

    def rename_uses(self, old: str, new: str, done) -> None:
        """Rename `old` to `new` in the inputs of the nodes not yet in `done` (folding rewrites as it goes)."""
        for n in self.nodes:
            for i, name in enumerate(n.input):
                if name == old:
                    n.input[i] = new

    def rename(self, old: str, new: str) -> None:
        """Give the value `old` the name `new` everywhere (graph outputs get the names users asked for)."""
        self.reserve(new)
        for n in self.nodes:
            for seq in (n.input, n.output):
                for i, name in enumerate(seq):
                    if name == old:
                        seq[i] = new

    def drop_unused(self, keep) -> None:
        """Remove nodes none of whose outputs is used (by a later node or as one of `keep`), and unused
        initializers."""
        while True:
            used = set(keep) | {i for n in self.nodes for i in n.input}
            alive = [n for n in self.nodes if any(o in used for o in n.output)]
            if len(alive) == len(self.nodes):
                break
            self.nodes = alive
        used = set(keep) | {i for n in self.nodes for i in n.input}
        self.initializers = [t for t in self.initializers if t.name in used]

    # nodes that only rearrange or convert data: folded into initializers when every input is one
    FOLDABLE = {"Transpose", "Reshape", "Unsqueeze", "Squeeze", "Cast", "Concat", "Identity", "Slice", "Split",
                "Gather", "Shape", "Expand", "Tile", "Neg", "Mul", "Add", "Sub", "Div", "Sqrt", "Reciprocal"}

    def fold_constants(self, keep) -> None:
        """Evaluate, with onnx's reference evaluator, the FOLDABLE nodes whose inputs are all initializers (a
        Keras kernel transposed for Conv, a weight transposed for MatMul), replacing them by initializers
        (torch.onnx.export's do_constant_folding). Graph outputs are left as nodes."""
        onnx = require()
        from_reference = importlib.import_module("onnx.reference")
        values = {t.name: onnx.numpy_helper.to_array(t) for t in self.initializers}
        kept = []
        for n in self.nodes:
            if n.op_type in self.FOLDABLE and n.input and all(i in values for i in n.input if i) \
                    and not any(o in keep for o in n.output):
                outs = from_reference.ReferenceEvaluator(n).run(None, {i: values[i] for i in n.input if i})
                named = [i for i in n.input if i and i in self.named]
                if len(n.output) == 1 and len(named) == 1:  # a weight transformed: keep its name in sight
                    new = self._unique(f"{named[0]}.{n.op_type.lower()}")
                    self.rename_uses(n.output[0], new, kept)
                    n.output[0] = new
                    self.named.add(new)
                for name, arr in zip(n.output, outs):
                    arr = np.asarray(arr)
                    values[name] = arr
                    self.initializers.append(onnx.numpy_helper.from_array(np.array(arr, order="C"), name))
                continue
            kept.append(n)
        self.nodes = kept

    def const(self, value, dtype=None) -> str:
        """A constant as an initializer (the same value and dtype gives the same name)."""
        arr = np.asarray(value, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._consts:
            self._consts[key] = self.initializer(self.fresh("const"), arr, fresh=True)
        return self._consts[key]

    def ints(self, values) -> str:
        """A 1-D int64 constant (shapes, axes, pads, ...)."""
        return self.const(np.asarray(list(values), dtype=np.int64).reshape(-1))

    @staticmethod
    def value_info(name: str, dtype, shape):
        """A typed graph input/output; a dimension given as a string is symbolic (dynamic)."""
        onnx = require()
        return onnx.helper.make_tensor_value_info(name, elem_type(dtype, f"the graph value {name!r}"),
                                                  list(shape) if shape is not None else None)

    def model(self, inputs, outputs, producer: str, doc: str = "", graph_name: str = "main_graph"):
        onnx = require()
        graph = onnx.helper.make_graph(self.nodes, graph_name, inputs, outputs, initializer=self.initializers,
                                       doc_string=doc)
        opsets = [onnx.helper.make_opsetid("", self.opset)]
        model = onnx.helper.make_model(graph, producer_name="clnet", producer_version=producer, opset_imports=opsets)
        # the oldest IR version that carries this opset, so older runtimes read the file too
        model.ir_version = onnx.helper.find_min_ir_version_for(opsets)
        return model

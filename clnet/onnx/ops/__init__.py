"""The importer's table of ONNX operators: op_type -> function(ctx, node, *inputs) -> output(s).

One module per family: elementwise (arithmetic, logic, activations), shape (movement, slicing, gather,
constants, casts), reduce, layers (Gemm/MatMul, Conv, pooling, norms, softmax, dropout), recurrent
(LSTM/GRU/RNN). A function returns one value or a tuple with one value per node output.
"""
from __future__ import annotations

from . import elementwise, layers, recurrent, reduce, shape
from .common import Context, Node, UnsupportedOperatorError

TABLE = {**elementwise.OPS, **shape.OPS, **reduce.OPS, **layers.OPS, **recurrent.OPS}

__all__ = ["TABLE", "Context", "Node", "UnsupportedOperatorError"]

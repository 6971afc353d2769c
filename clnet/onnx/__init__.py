"""clnet.onnx: ONNX import (and export) for clnet models.

    model = clnet.onnx.load("model.onnx")       # any ONNX file PyTorch (or others) wrote -> an nn.Module
    clnet.onnx.export(model, dummy_input, "model.onnx", input_names=["x"], dynamic_axes={"x": {0: "batch"}})

Needs the optional `onnx` package (`pip install 'clnet[onnx]'`); `import clnet` does not.
"""
from __future__ import annotations

from .export import TrainingMode, export
from .importer import ImportedGraph, OnnxModule, load
from .ops import TABLE as _TABLE
from .ops.common import UnsupportedOperatorError

SUPPORTED_OPERATORS = tuple(sorted(_TABLE))

__all__ = ["load", "export", "TrainingMode", "OnnxModule", "ImportedGraph", "UnsupportedOperatorError",
           "SUPPORTED_OPERATORS"]

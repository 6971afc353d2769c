"""clnet.onnx: ONNX import (and export) for clnet models.

    model = clnet.onnx.load("model.onnx")       # any ONNX file PyTorch (or others) wrote -> an nn.Module

Needs the optional `onnx` package (`pip install 'clnet[onnx]'`); `import clnet` does not.
"""
from __future__ import annotations

from .importer import ImportedGraph, OnnxModule, load
from .ops import TABLE as _TABLE
from .ops.common import UnsupportedOperatorError

SUPPORTED_OPERATORS = tuple(sorted(_TABLE))

__all__ = ["load", "OnnxModule", "ImportedGraph", "UnsupportedOperatorError", "SUPPORTED_OPERATORS"]

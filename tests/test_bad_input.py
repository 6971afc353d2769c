"""Bad input: a clear Python exception before any kernel runs, and every tensor involved left intact.

CASES is the table of wrong calls (shapes that do not broadcast or multiply, dtypes the device lacks,
tensors on two devices, indices out of range, arguments of the wrong type, layers and losses given
the wrong shapes). For each one the test checks the exception type, the words its message must hold,
that no kernel was enqueued by the failing call, and that every tensor made for the call still holds
its values (and its version counter). QUIET is the table of inputs that must NOT raise: NaN and Inf
propagate as in numpy, empty tensors work in every op family; they are checked against numpy float64.

docs/errors.md shows both tables; it is generated from them:  python tests/test_bad_input.py
(test_errors_doc_is_generated_from_these_tables fails when the doc and the tables disagree).
"""
from __future__ import annotations

import dataclasses
import re
import sys
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import pyopencl._cl as _cl
import pytest

if __name__ == "__main__":  # `python tests/test_bad_input.py` from a checkout regenerates the doc
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import clnet  # noqa: E402
from clnet import nn  # noqa: E402
from clnet.errors import DtypeNotSupportedError  # noqa: E402
from clnet.nn import functional as F  # noqa: E402

DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"


# --- what each case may use ---------------------------------------------------------------------------
_FAKES: dict = {}


def _copy_of(device, **changes):
    """Another Device object for the same OpenCL device, with its own context (and the changed facts)."""
    key = (device.spec, tuple(sorted(changes.items())))
    if key not in _FAKES:
        _FAKES[key] = dataclasses.replace(device, _context=None, _queue=None, _pool=None, _profile=None,
                                          **changes)
    return _FAKES[key]


def second_device(device):
    """A device other than `device`: another OpenCL device when there is one (real devices first),
    else a second Device object on the same hardware with its own context (also 'another device')."""
    others = [d for d in clnet.devices() if d is not device]
    others.sort(key=lambda d: d.is_simulator)
    return others[0] if others else _copy_of(device)


def without_fp64(device):
    """The device itself when it has no float64 (rusticl/llvmpipe here), else a copy that says it has none."""
    return device if not device.fp64 else _copy_of(device, fp64=False, fp16=False)


class Env:
    """Makes a case's inputs, remembers them, and restarts the kernel count after each one, so the count
    left at the end is what the failing call itself enqueued."""

    def __init__(self, device, rng, launches):
        self.dev, self.rng, self.launches = device, rng, launches
        self.made = []
        self._other = self._nofp64 = None

    @property
    def other(self):
        if self._other is None:
            self._other = second_device(self.dev)
        return self._other

    @property
    def nofp64(self):
        if self._nofp64 is None:
            self._nofp64 = without_fp64(self.dev)
        return self._nofp64

    @property
    def nofp16(self):
        return self.dev if not self.dev.profile.fp16 else _copy_of(self.dev, fp16=False)

    def keep(self, t):
        self.made.append((t, t.numpy(), t._version_count))
        self.launches[0] = 0
        return t

    def t(self, *shape, on=None, dtype=np.float32, grad=False):
        """A random tensor (never zeros) on the device under test, or on `on`."""
        data = (self.rng.standard_normal(shape) * 3).astype(dtype)
        return self.keep(clnet.tensor(data, device=on or self.dev, requires_grad=grad))

    def ix(self, values, on=None):
        return self.keep(clnet.tensor(np.asarray(values, np.int64), device=on or self.dev))

    def mask(self, values, on=None):
        return self.keep(clnet.tensor(np.asarray(values, bool), device=on or self.dev))

    def m(self, cls, *args, on=None, **kwargs):
        """A module on the device; its parameters count as inputs that must stay intact."""
        clnet.manual_seed(0)
        module = cls(*args, **kwargs)
        module.to(on or self.dev)
        for p in module.parameters():
            self.keep(p)
        self.launches[0] = 0
        return module


@dataclasses.dataclass
class Case:
    family: str
    example: str               # what the user wrote, shown in docs/errors.md
    run: Callable              # run(env) makes the inputs (through env) and makes the bad call
    error: type
    says: tuple                # words the message must contain (the first ones are shown in the doc)
    runs_first: bool = False   # kernels of an earlier, valid step may run (the first layer of a Sequential)

    @property
    def id(self):
        return re.sub(r"[^A-Za-z0-9_.]+", "_", f"{self.family}-{self.example}").strip("_")


def C(family, example, run, error, *says, runs_first=False):
    return Case(family, example, run, error, says, runs_first)


def _iadd(a, b):
    a += b


def _setitem(a, key, value):
    a[key] = value


CASES = [
    # shapes that do not broadcast: both shapes in the message
    C("broadcasting", "a(2,3) + b(2,4)", lambda e: e.t(2, 3) + e.t(2, 4), ValueError,
      "(2, 3)", "(2, 4)", "cannot be broadcast"),
    C("broadcasting", "clnet.maximum(a(3,), b(4,))", lambda e: clnet.maximum(e.t(3), e.t(4)), ValueError,
      "(3,)", "(4,)"),
    C("broadcasting", "a(2,3) < b(3,2)", lambda e: e.t(2, 3) < e.t(3, 2), ValueError, "(2, 3)", "(3, 2)"),
    C("broadcasting", "clnet.where(c(2,3), a(2,3), b(2,4))",
      lambda e: clnet.where(e.mask(np.ones((2, 3))), e.t(2, 3), e.t(2, 4)), ValueError, "(2, 3)", "(2, 4)"),
    C("broadcasting", "a(2,3) += b(2,1,3)", lambda e: _iadd(e.t(2, 3), e.t(2, 1, 3)), ValueError,
      "(2, 3)", "(2, 2, 3)"),
    C("broadcasting", "a(2,3).copy_(b(3,2))", lambda e: e.t(2, 3).copy_(e.t(3, 2)), ValueError,
      "(3, 2)", "(2, 3)"),
    C("broadcasting", "a(2,3)[0] = b(4,)", lambda e: _setitem(e.t(2, 3), 0, e.t(4)), ValueError, "(4,)", "(3,)"),
    C("broadcasting", "a(2,3).masked_fill(mask(2,), 0)",
      lambda e: e.t(2, 3).masked_fill(e.mask([True, False]), 0.0), ValueError, "(2,)", "(2, 3)"),
    C("broadcasting", "clnet.concat([a(2,3), b(2,4)])", lambda e: clnet.concat([e.t(2, 3), e.t(2, 4)]),
      ValueError, "(2, 3)", "(2, 4)"),
    C("broadcasting", "clnet.stack([a(2,3), b(3,2)])", lambda e: clnet.stack([e.t(2, 3), e.t(3, 2)]),
      ValueError, "(2, 3)", "(3, 2)"),
    C("broadcasting", "a(2,3).reshape(4, 2)", lambda e: e.t(2, 3).reshape(4, 2), ValueError,
      "(2, 3)", "(4, 2)"),
    # matrix products: both shapes in the message
    C("matmul", "a(2,3) @ b(4,5)", lambda e: e.t(2, 3) @ e.t(4, 5), ValueError, "(2, 3)", "(4, 5)"),
    C("matmul", "clnet.mm(a(2,3), b(4,5))", lambda e: clnet.mm(e.t(2, 3), e.t(4, 5)), ValueError,
      "(2, 3)", "(4, 5)"),
    C("matmul", "clnet.mm(a(2,3,4), b(4,5))", lambda e: clnet.mm(e.t(2, 3, 4), e.t(4, 5)), ValueError,
      "2-D", "(2, 3, 4)"),
    C("matmul", "clnet.bmm(a(2,2,3), b(3,3,4))", lambda e: clnet.bmm(e.t(2, 2, 3), e.t(3, 3, 4)), ValueError,
      "(2, 2, 3)", "(3, 3, 4)"),
    C("matmul", "a(3,) @ b(4,)", lambda e: e.t(3) @ e.t(4), ValueError, "(3,)", "(4,)"),
    C("matmul", "a(2,3,4) @ b(5,4,6)", lambda e: e.t(2, 3, 4) @ e.t(5, 4, 6), ValueError,
      "(2, 3, 4)", "(5, 4, 6)"),
    C("matmul", "a(2,3) @ 2.0", lambda e: e.t(2, 3) @ 2.0, ValueError, "0-d", "use * for scalars"),
    C("matmul", "int32 a(2,3) @ int32 b(3,2)",
      lambda e: e.t(2, 3, dtype=np.int32) @ e.t(3, 2, dtype=np.int32), TypeError, "floating-point", "int32"),
    C("matmul", "F.linear(x(2,3), w(2,4))", lambda e: F.linear(e.t(2, 3), e.t(2, 4)), ValueError,
      "(2, 3)", "in_features=4"),
    # dtypes the device cannot compute in (rusticl/llvmpipe has no fp64; elsewhere a copy of the
    # device that reports none)
    C("dtype", "clnet.zeros(3, dtype=clnet.float64)", lambda e: clnet.zeros(3, dtype=clnet.float64, device=e.nofp64),
      DtypeNotSupportedError, "no float64 support", "cl_khr_fp64", "clnet.float32"),
    C("dtype", "clnet.tensor([1.0], dtype=clnet.float64)",
      lambda e: clnet.tensor([1.0], dtype=clnet.float64, device=e.nofp64),
      DtypeNotSupportedError, "no float64 support"),
    C("dtype", "clnet.from_numpy(np.ones(3))", lambda e: clnet.from_numpy(np.ones(3), device=e.nofp64),
      DtypeNotSupportedError, "no float64 support"),
    C("dtype", "clnet.randn(3, dtype=clnet.float64)", lambda e: clnet.randn(3, dtype=clnet.float64, device=e.nofp64),
      DtypeNotSupportedError, "no float64 support"),
    C("dtype", "a.double()", lambda e: e.t(2, 3, on=e.nofp64).double(), DtypeNotSupportedError, "no float64 support"),
    C("dtype", "a.to(clnet.float64)", lambda e: e.t(2, 3, on=e.nofp64).to(clnet.float64), DtypeNotSupportedError,
      "no float64 support"),
    C("dtype", "nn.Linear(3, 2, dtype=clnet.float64)",
      lambda e: nn.Linear(3, 2, dtype=clnet.float64, device=e.nofp64), DtypeNotSupportedError, "no float64 support"),
    C("dtype", "clnet.zeros(3, dtype=clnet.float16)", lambda e: clnet.zeros(3, dtype=clnet.float16, device=e.nofp16),
      DtypeNotSupportedError, "no usable float16 support", "cl_khr_fp16"),
    C("dtype", "clnet.tensor(np.array([1j]))", lambda e: clnet.tensor(np.array([1j]), device=e.dev), TypeError,
      "complex128", "not supported"),
    # tensors on two devices
    C("devices", "a + b (b on another device)", lambda e: e.t(2, 3) + e.t(2, 3, on=e.other), ValueError,
      "different devices", ".to(device)"),
    C("devices", "a += b (b on another device)", lambda e: _iadd(e.t(2, 3), e.t(2, 3, on=e.other)), ValueError,
      "different devices"),
    C("devices", "a @ b (b on another device)", lambda e: e.t(2, 3) @ e.t(3, 2, on=e.other), ValueError,
      "different devices"),
    C("devices", "clnet.where(c, a, b) (b on another device)",
      lambda e: clnet.where(e.mask(np.ones((2, 3))), e.t(2, 3), e.t(2, 3, on=e.other)), ValueError,
      "different devices"),
    C("devices", "clnet.concat([a, b]) (b on another device)",
      lambda e: clnet.concat([e.t(2, 3), e.t(2, 3, on=e.other)]), ValueError, "different devices"),
    C("devices", "nn.Linear(3, 2)(x) (x on another device)", lambda e: e.m(nn.Linear, 3, 2)(e.t(4, 3, on=e.other)),
      ValueError, "different devices"),
    C("devices", "F.conv2d(x, w) (w on another device)",
      lambda e: F.conv2d(e.t(1, 1, 5, 5), e.t(2, 1, 3, 3, on=e.other)), ValueError, "weight is on"),
    C("devices", "F.cross_entropy(x, t) (t on another device)",
      lambda e: F.cross_entropy(e.t(2, 3), e.ix([0, 1], on=e.other)), ValueError, "different devices"),
    C("devices", "F.mse_loss(x, y) (y on another device)", lambda e: F.mse_loss(e.t(2, 3), e.t(2, 3, on=e.other)),
      ValueError, "different devices"),
    C("devices", "a.index_select(0, i) (i on another device)",
      lambda e: e.t(2, 3).index_select(0, e.ix([0], on=e.other)), ValueError, "index is on"),
    C("devices", "a[i] (i on another device)", lambda e: e.t(2, 3)[e.ix([0], on=e.other)], IndexError,
      "index tensor is on"),
    C("devices", "a.copy_(b) (b on another device)", lambda e: e.t(2, 3).copy_(e.t(2, 3, on=e.other)), ValueError,
      "cannot copy a tensor on", ".to()"),
    C("devices", "a[0] = b (b on another device)", lambda e: _setitem(e.t(2, 3), 0, e.t(3, on=e.other)),
      ValueError, "value is on"),
    C("devices", "a.masked_fill(m, 0) (m on another device)",
      lambda e: e.t(2, 3).masked_fill(e.mask(np.ones((2, 3)), on=e.other), 0.0), ValueError, "mask is on"),
    # indices out of range
    C("indices", "a(2,3)[5]", lambda e: e.t(2, 3)[5], IndexError,
      "index 5 is out of bounds for dimension 0 with size 2"),
    C("indices", "a(2,3)[-3]", lambda e: e.t(2, 3)[-3], IndexError, "index -3 is out of bounds"),
    C("indices", "a(2,3)[:, 3]", lambda e: e.t(2, 3)[:, 3], IndexError, "index 3 is out of bounds for dimension 1"),
    C("indices", "a(2,3)[0, 0, 0]", lambda e: e.t(2, 3)[0, 0, 0], IndexError, "too many indices", "(2, 3)"),
    C("indices", "a(2,3)[i] with i = [0, 2]", lambda e: e.t(2, 3)[e.ix([0, 2])], IndexError,
      "index 2 is out of bounds for dimension 0 with size 2"),
    C("indices", "a(2,3)[i] with i = [-3]", lambda e: e.t(2, 3)[e.ix([-3])], IndexError, "index -3 is out of bounds"),
    C("indices", "a(2,3)[5] = 1.0", lambda e: _setitem(e.t(2, 3), 5, 1.0), IndexError, "index 5 is out of bounds"),
    C("indices", "a(2,3).index_select(0, [2])", lambda e: e.t(2, 3).index_select(0, e.ix([2])), IndexError,
      "index 2 is out of bounds for dimension 0 with size 2"),
    C("indices", "a(2,3).gather(1, [[0, 3], [0, 0]])", lambda e: e.t(2, 3).gather(1, e.ix([[0, 3], [0, 0]])),
      IndexError, "gather", "index 3 is out of bounds for dimension 1 with size 3"),
    C("indices", "a(2,3).take([6])", lambda e: e.t(2, 3).take(e.ix([6])), IndexError, "index 6 is out of bounds"),
    C("indices", "z(3).scatter_add(0, [0, 5], v)", lambda e: e.t(3).scatter_add(0, e.ix([0, 5]), e.t(2)),
      IndexError, "scatter_add", "index 5 is out of bounds"),
    C("indices", "a(2,3).narrow(1, 2, 3)", lambda e: e.t(2, 3).narrow(1, 2, 3), ValueError, "narrow", "exceeds"),
    C("indices", "a(2,3).sum(dim=2)", lambda e: e.t(2, 3).sum(dim=2), IndexError,
      "dim 2 is out of range for a tensor with 2 dimensions"),
    C("indices", "a(2,3).transpose(0, -3)", lambda e: e.t(2, 3).transpose(0, -3), IndexError, "dim -3 is out of range"),
    C("indices", "a(2,3).permute(0, 0)", lambda e: e.t(2, 3).permute(0, 0), ValueError, "permutation"),
    C("indices", "F.softmax(a(2,3), dim=2)", lambda e: F.softmax(e.t(2, 3), dim=2), IndexError,
      "dim 2 is out of range"),
    C("indices", "a(0,3).argmax()", lambda e: e.t(0, 3).argmax(), ValueError, "argmax of an empty tensor"),
    C("indices", "a(0,3).amax(dim=0)", lambda e: e.t(0, 3).amax(dim=0), ValueError, "empty tensor", "(0, 3)"),
    # arguments of the wrong type
    C("types", "a + 'x'", lambda e: e.t(2, 3) + "x", TypeError, "unsupported operand type str"),
    C("types", "a * None", lambda e: e.t(2, 3) * None, TypeError, "unsupported operand type NoneType"),
    C("types", "clnet.exp('x')", lambda e: clnet.exp("x"), TypeError, "str"),
    C("types", "clnet.sum(None)", lambda e: clnet.sum(None), TypeError, "sum expects a clnet Tensor", "NoneType"),
    C("types", "clnet.sum([1.0, 2.0])", lambda e: clnet.sum([1.0, 2.0]), TypeError, "sum expects a clnet Tensor",
      "list"),
    C("types", "clnet.matmul(a, None)", lambda e: clnet.matmul(e.t(2, 3), None), TypeError, "NoneType"),
    C("types", "clnet.mm(a, [[1.0]])", lambda e: clnet.mm(e.t(2, 3), [[1.0]]), TypeError, "mm expects tensors", "list"),
    C("types", "clnet.tensor('abc')", lambda e: clnet.tensor("abc", device=e.dev), TypeError, "str"),
    C("types", "clnet.tensor([1.0, None])", lambda e: clnet.tensor([1.0, None], device=e.dev), TypeError, "list"),
    C("types", "clnet.tensor(None, dtype=clnet.float32)",
      lambda e: clnet.tensor(None, dtype=clnet.float32, device=e.dev), TypeError, "NoneType"),
    C("types", "clnet.zeros('3')", lambda e: clnet.zeros("3", device=e.dev), TypeError, "shape entries must be ints"),
    C("types", "clnet.zeros(-1)", lambda e: clnet.zeros(-1, device=e.dev), ValueError, "negative dimension -1"),
    C("types", "a.reshape('x')", lambda e: e.t(2, 3).reshape("x"), TypeError, "shape entries must be ints"),
    C("types", "a.sum(dim='x')", lambda e: e.t(2, 3).sum(dim="x"), TypeError, "dim must be an int"),
    C("types", "a[1.5]", lambda e: e.t(2, 3)[1.5], IndexError, "unsupported index 1.5"),
    C("types", "a.item() on 6 elements", lambda e: e.t(2, 3).item(), ValueError, "one-element", "(2, 3)"),
    C("types", "bool(a) on 6 elements", lambda e: bool(e.t(2, 3)), RuntimeError, "ambiguous"),
    C("types", "clnet.device(5.0)", lambda e: clnet.device(5.0), TypeError, "device must be"),
    C("types", "clnet.device('tpu')", lambda e: clnet.device("tpu"), clnet.DeviceNotFoundError, "'tpu'"),
    C("types", "clnet.manual_seed('x')", lambda e: clnet.manual_seed("x"), TypeError, "manual_seed expects an int"),
    C("types", "F.relu('x')", lambda e: F.relu("x"), TypeError, "relu", "must be a clnet Tensor", "str"),
    C("types", "F.softmax(None, 1)", lambda e: F.softmax(None, 1), TypeError, "softmax", "NoneType"),
    C("types", "F.cross_entropy(x, [0, 1])", lambda e: F.cross_entropy(e.t(2, 3), [0, 1]), TypeError,
      "target must be a clnet Tensor", "list"),
    C("types", "F.conv2d(None, w)", lambda e: F.conv2d(None, e.t(1, 1, 3, 3)), TypeError, "conv2d", "NoneType"),
    C("types", "nn.Linear(4, 2)(None)", lambda e: e.m(nn.Linear, 4, 2)(None), TypeError, "NoneType"),
    C("types", "nn.Linear('4', 2)", lambda e: nn.Linear("4", 2), ValueError, "in_features", "'4'"),
    C("types", "clnet.optim.SGD(a, lr=0.1) (a single tensor)",
      lambda e: clnet.optim.SGD(e.t(3, grad=True), lr=0.1), TypeError, "single Tensor", "[tensor]"),
    C("types", "clnet.optim.SGD(['w'], lr=0.1)", lambda e: clnet.optim.SGD(["w"], lr=0.1), TypeError,
      "can only optimize clnet Tensors", "str"),
    C("types", "clnet.optim.Adam([w], lr='0.1')", lambda e: clnet.optim.Adam([e.t(3, grad=True)], lr="0.1"),
      TypeError, "learning rate", "'0.1'"),
    C("types", "clnet.optim.SGD([w], lr=-1)", lambda e: clnet.optim.SGD([e.t(3, grad=True)], lr=-1), ValueError,
      "learning rate", "-1"),
    # layers given inputs of the wrong shape: expected and received
    C("layers", "nn.Linear(4, 2)(x(5,3))", lambda e: e.m(nn.Linear, 4, 2)(e.t(5, 3)), ValueError,
      "(5, 3)", "in_features=4"),
    C("layers", "nn.Conv2d(3, 4, 3)(x(1,2,5,5))", lambda e: e.m(nn.Conv2d, 3, 4, 3)(e.t(1, 2, 5, 5)), ValueError,
      "2 channels", "expects 3"),
    C("layers", "nn.Conv2d(3, 4, 3)(x(2,5))", lambda e: e.m(nn.Conv2d, 3, 4, 3)(e.t(2, 5)), ValueError,
      "(N, C, H, W)", "(2, 5)"),
    C("layers", "nn.Conv2d(1, 1, 5)(x(1,1,3,3))", lambda e: e.m(nn.Conv2d, 1, 1, 5)(e.t(1, 1, 3, 3)), ValueError,
      "too small", "kernel size 5"),
    C("layers", "nn.MaxPool2d(2)(x(2,5))", lambda e: nn.MaxPool2d(2)(e.t(2, 5)), ValueError, "(N, C, H, W)", "(2, 5)"),
    C("layers", "nn.BatchNorm1d(4)(x(2,3))", lambda e: e.m(nn.BatchNorm1d, 4)(e.t(2, 3)), ValueError,
      "expected 4 channels", "(2, 3)"),
    C("layers", "nn.Sequential(Linear(4,3), Linear(4,2))(x(2,4)): the 2nd layer raises",
      lambda e: e.m(nn.Sequential, nn.Linear(4, 3), nn.Linear(4, 2))(e.t(2, 4)), ValueError, "(2, 3)", "in_features=4",
      runs_first=True),
    C("layers", "keras Dense(3) built for 4 features, called on (2,5)",
      lambda e: _keras_dense(e)(e.t(2, 5)), ValueError, "expected axis -1", "value 4", "(2, 5)"),
    # losses given mismatched shapes
    C("losses", "F.mse_loss(x(2,3), y(2,4))", lambda e: F.mse_loss(e.t(2, 3), e.t(2, 4)), ValueError,
      "(2, 3)", "(2, 4)"),
    C("losses", "nn.MSELoss()(x(2,3), y(3,2))", lambda e: nn.MSELoss()(e.t(2, 3), e.t(3, 2)), ValueError,
      "(2, 3)", "(3, 2)"),
    C("losses", "F.cross_entropy(x(2,3), t(3,))", lambda e: F.cross_entropy(e.t(2, 3), e.ix([0, 1, 2])), ValueError,
      "(2, 3)", "needs a target of shape (2,)", "(3,)"),
    C("losses", "F.cross_entropy(x(2,3), float t(2,))", lambda e: F.cross_entropy(e.t(2, 3), e.t(2)), ValueError,
      "probability targets must have the input's shape (2, 3)"),
    C("losses", "nn.CrossEntropyLoss()(x(2,3), t(1,))",
      lambda e: nn.CrossEntropyLoss()(e.t(2, 3), e.ix([0])), ValueError, "needs a target of shape (2,)"),
    C("losses", "F.nll_loss(x(2,3), t(3,))", lambda e: F.nll_loss(e.t(2, 3), e.ix([0, 1, 2])), ValueError,
      "nll_loss", "(3,)"),
    C("losses", "F.binary_cross_entropy(p(2,3), y(3,2))",
      lambda e: F.binary_cross_entropy(clnet.sigmoid(e.t(2, 3)), e.t(3, 2)), ValueError, "(3, 2)", "(2, 3)"),
    C("losses", "keras.losses.MeanSquaredError()(y(2,3), p(2,4))",
      lambda e: clnet.keras.losses.MeanSquaredError()(e.t(2, 3), e.t(2, 4)), ValueError, "(2, 3)", "(2, 4)"),
    C("losses", "keras SparseCategoricalCrossentropy()(y(3,), p(2,3))",
      lambda e: clnet.keras.losses.SparseCategoricalCrossentropy()(e.ix([0, 1, 2]), e.t(2, 3)), ValueError,
      "(3,)", "(2, 3)"),
]


def _keras_dense(e):
    from clnet import keras
    layer = keras.layers.Dense(3)
    layer(clnet.tensor(np.ones((2, 4), np.float32), device=e.dev))
    for w in layer.weights:
        e.keep(w)
    return layer


@pytest.fixture
def launches(monkeypatch):
    """Counts every kernel enqueued (all clnet kernels go through enqueue_nd_range_kernel)."""
    count = [0]
    original = _cl.enqueue_nd_range_kernel

    def counting(*args, **kwargs):
        count[0] += 1
        return original(*args, **kwargs)
    monkeypatch.setattr(_cl, "enqueue_nd_range_kernel", counting)
    return count


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_raises_before_any_kernel_and_leaves_tensors_intact(device, rng, launches, case):
    env = Env(device, rng, launches)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(case.error) as info:
            case.run(env)
    message = str(info.value)
    for words in case.says:
        assert words in message, f"{words!r} missing from the message: {message}"
    assert launches[0] == 0 or case.runs_first, f"{launches[0]} kernel(s) ran before the error: {message}"
    for t, before, version in env.made:
        assert t.shape == before.shape and t.dtype == before.dtype
        np.testing.assert_array_equal(t.numpy(), before)
        assert t._version_count == version, "an input's version counter moved: something wrote to it"


def test_float64_ops_on_a_device_without_fp64_fail_before_any_kernel(device, rng, launches):
    """A (copied) device that had fp64 when its tensors were made and then reports none: every op in
    float64 raises DtypeNotSupportedError at once (the check is not skipped by a cached plan or kernel)."""
    dev = dataclasses.replace(device, _context=None, _queue=None, _pool=None, _profile=None, fp64=True)
    x_host, w_host = rng.standard_normal((3, 4)), rng.standard_normal((2, 4))
    x, w = clnet.tensor(x_host, device=dev), clnet.tensor(w_host, device=dev)
    t = clnet.tensor([0, 1, 2], device=dev)
    dev.fp64 = False
    dev.synchronize()
    launches[0] = 0
    ops = {"add": lambda: x + x, "exp": lambda: clnet.exp(x), "sum": lambda: x.sum(), "amax": lambda: x.amax(dim=1),
           "matmul": lambda: x @ w.T, "linear": lambda: F.linear(x, w), "softmax": lambda: F.softmax(x, dim=1),
           "cross_entropy": lambda: F.cross_entropy(x, t), "concat": lambda: clnet.concat([x, x]),
           "contiguous": lambda: x.T.contiguous(), "zeros_like": lambda: clnet.zeros_like(x)}
    for name, op in ops.items():
        with pytest.raises(DtypeNotSupportedError, match="no float64 support"):
            op()
        assert launches[0] == 0, name
    np.testing.assert_array_equal(x.numpy(), x_host)
    np.testing.assert_array_equal(w.numpy(), w_host)


# --- inputs that must not raise: NaN/Inf propagate as in numpy, empty tensors work ----------------------
def _nan_inf():
    return np.array([[1.5, np.nan, -2.0, 3.0, 0.25],
                     [np.inf, -np.inf, 0.5, -1.0, 2.0],
                     [0.1, 0.2, 0.3, 0.4, -0.5],
                     [np.inf, 1.0, 2.0, np.inf, 3.0]], np.float32)


def _softmax(v, axis):
    e = np.exp(v - v.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _ce(v, t):
    return -np.log(_softmax(v, 1))[np.arange(len(t)), t]


def _grid(v):
    """The NaN/Inf rows as a 2x2 CNN input (N=1, C=1, 4x5)."""
    return v.reshape(1, 1, *v.shape)


@dataclasses.dataclass
class Quiet:
    family: str
    example: str
    clnet_fn: Callable         # f(tensors...) -> tensor
    numpy_fn: Callable         # f(arrays...) -> array, in float64
    inputs: Callable           # rng -> list of arrays
    note: str = "as numpy"

    @property
    def id(self):
        return re.sub(r"[^A-Za-z0-9_.]+", "_", f"{self.family}-{self.example}").strip("_")


def Q(family, example, clnet_fn, numpy_fn, inputs=lambda rng: [_nan_inf()], note="as numpy"):
    return Quiet(family, example, clnet_fn, numpy_fn, inputs, note)


def _cols(rng):
    return [_nan_inf(), rng.standard_normal((5, 3)).astype(np.float32)]


def _big(rng):
    a = rng.standard_normal((70, 90)).astype(np.float32)
    a[3, 5], a[10, 7], a[20, 8] = np.nan, np.inf, -np.inf
    return [a, rng.standard_normal((90, 40)).astype(np.float32)]


def _empty(*shape):
    return lambda rng: [np.zeros(shape, np.float32)]


QUIET = [
    Q("NaN/Inf", "clnet.exp(x), log, sqrt, tanh, sigmoid", lambda x: clnet.stack(
        [clnet.exp(x), clnet.log(x), clnet.sqrt(x), clnet.tanh(x), clnet.sigmoid(x)]),
      lambda x: np.stack([np.exp(x), np.log(x), np.sqrt(x), np.tanh(x), 1 / (1 + np.exp(-x))])),
    Q("NaN/Inf", "relu(x), abs, sign, floor, x * 0, x / 0", lambda x: clnet.stack(
        [clnet.relu(x), clnet.abs(x), clnet.sign(x), clnet.floor(x), x * 0, x / 0]),
      lambda x: np.stack([np.where(x < 0, 0, x), np.abs(x), np.sign(x), np.floor(x), x * 0, x / 0])),
    Q("NaN/Inf", "clnet.maximum(x, 0), minimum, clamp(-1, 1)", lambda x: clnet.stack(
        [clnet.maximum(x, 0.0), clnet.minimum(x, 0.0), x.clamp(-1, 1)]),
      lambda x: np.stack([np.maximum(x, 0), np.minimum(x, 0), np.clip(x, -1, 1)])),
    Q("NaN/Inf", "x.sum(), x.sum(dim=0), x.sum(dim=1)", lambda x: clnet.concat(
        [x.sum().reshape(1), x.sum(dim=0), x.sum(dim=1)]),
      lambda x: np.concatenate([[x.sum()], x.sum(0), x.sum(1)])),
    Q("NaN/Inf", "x.mean(dim=0), x.prod(dim=1)", lambda x: clnet.concat([x.mean(dim=0), x.prod(dim=1)]),
      lambda x: np.concatenate([x.mean(0), x.prod(1)])),
    Q("NaN/Inf", "x.amax(dim=d), x.amin(dim=d), x.amax()", lambda x: clnet.concat(
        [x.amax(dim=0), x.amax(dim=1), x.amin(dim=0), x.amin(dim=1), x.amax().reshape(1)]),
      lambda x: np.concatenate([x.max(0), x.max(1), x.min(0), x.min(1), [x.max()]])),
    Q("NaN/Inf", "x.argmax(dim=d), x.argmin(dim=d), x.argmax()", lambda x: clnet.concat(
        [x.argmax(dim=0), x.argmax(dim=1), x.argmin(dim=0), x.argmin(dim=1), x.argmax().reshape(1)]),
      lambda x: np.concatenate([x.argmax(0), x.argmax(1), x.argmin(0), x.argmin(1), [x.argmax()]]),
      note="the first NaN wins, as numpy"),
    Q("NaN/Inf", "x.logsumexp(dim=1)", lambda x: x.logsumexp(dim=1),
      lambda x: np.array([np.nan, np.inf, np.log(np.exp(x[2]).sum()), np.inf]),
      note="+inf where the row has one, as PyTorch"),
    Q("NaN/Inf", "x @ w (4x5 @ 5x3)", lambda x, w: x @ w, lambda x, w: x @ w, _cols),
    Q("NaN/Inf", "a @ w (70x90 @ 90x40)", lambda a, w: a @ w, lambda a, w: a @ w, _big),
    Q("NaN/Inf", "F.softmax(x, dim=1), F.log_softmax", lambda x: clnet.stack(
        [F.softmax(x, dim=1), F.log_softmax(x, dim=1)]),
      lambda x: np.stack([_softmax(x, 1), np.log(_softmax(x, 1))]), note="a row with NaN or +inf is NaN"),
    Q("NaN/Inf", "F.cross_entropy(x, t, reduction='none'), mean", lambda x: clnet.concat(
        [F.cross_entropy(x, clnet.tensor([0, 2, 1, 4], device=x.device), reduction="none"),
         F.cross_entropy(x, clnet.tensor([0, 2, 1, 4], device=x.device)).reshape(1)]),
      lambda x: np.concatenate([_ce(x, [0, 2, 1, 4]), [_ce(x, [0, 2, 1, 4]).mean()]])),
    Q("NaN/Inf", "F.mse_loss(x, y)", lambda x: F.mse_loss(x, clnet.ones(4, 5, device=x.device)),
      lambda x: ((x - 1) ** 2).mean()),
    Q("NaN/Inf", "F.conv2d(x, w), F.max_pool2d(x, 2)", lambda x: clnet.concat(
        [F.conv2d(x.reshape(1, 1, 4, 5), clnet.ones(1, 1, 2, 2, device=x.device)).flatten(),
         F.max_pool2d(x.reshape(1, 1, 4, 5), 2).flatten()]),
      lambda x: np.concatenate([np.array([[x[i:i + 2, j:j + 2].sum() for j in range(4)] for i in range(3)]).ravel(),
                                np.array([[x[i:i + 2, j:j + 2].max() if not np.isnan(x[i:i + 2, j:j + 2]).any()
                                           else np.nan for j in (0, 2)] for i in (0, 2)]).ravel()]),
      note="NaN wins a pooling window, as PyTorch"),
    Q("NaN/Inf", "F.cross_entropy(x, t) with t outside [0, C)", lambda x: F.cross_entropy(
        x[2:3], clnet.tensor([7], device=x.device), reduction="none"), lambda x: np.array([np.nan]),
      note="NaN for that sample: checking targets would cost a device-to-host sync"),
    Q("empty", "clnet.exp(x(0,3)), x(0,3) + b(3,)", lambda x: clnet.exp(x) + clnet.ones(3, device=x.device),
      lambda x: np.exp(x) + 1, _empty(0, 3)),
    Q("empty", "x(0,3).sum(dim=0), prod, mean over nothing", lambda x: clnet.concat(
        [x.sum(dim=0), x.prod(dim=0), x.mean().reshape(1)]),
      lambda x: np.concatenate([x.sum(0), x.prod(0), [np.nan]]), _empty(0, 3), note="0, 1 and NaN, as numpy"),
    Q("empty", "x(0,3).amax(dim=1) (an empty result), x(2,0).logsumexp(dim=1)", lambda x: clnet.concat(
        [x.amax(dim=1), clnet.zeros(2, 0, device=x.device).logsumexp(dim=1)]),
      lambda x: np.array([-np.inf, -np.inf]), _empty(0, 3), note="-inf over nothing, as PyTorch"),
    Q("empty", "x(0,3).any(), x(0,3).all()", lambda x: clnet.stack([x.any(), x.all()]),
      lambda x: np.array([False, True]), _empty(0, 3)),
    Q("empty", "x(2,0) @ w(0,3)", lambda x: x @ clnet.zeros(0, 3, device=x.device), lambda x: np.zeros((2, 3)),
      _empty(2, 0), note="zeros, as numpy"),
    Q("empty", "x(0,4) @ w(4,3), bmm of batch 0", lambda x: clnet.concat(
        [x @ clnet.ones(4, 3, device=x.device), clnet.bmm(x.reshape(0, 1, 4), clnet.ones(0, 4, 3, device=x.device))
         .reshape(0, 3)]), lambda x: np.zeros((0, 3)), _empty(0, 4)),
    Q("empty", "nn.Linear(4, 3)(x(0,4))", lambda x: nn.Linear(4, 3, device=x.device)(x), lambda x: np.zeros((0, 3)),
      _empty(0, 4)),
    Q("empty", "F.softmax(x(0,3)), F.log_softmax(x(3,0))", lambda x: clnet.concat(
        [F.softmax(x, dim=1).reshape(-1), F.log_softmax(x.reshape(3, 0), dim=1).reshape(-1)]),
      lambda x: np.zeros(0), _empty(0, 3)),
    Q("empty", "F.cross_entropy(x(0,3), t(0,))", lambda x: clnet.stack(
        [F.cross_entropy(x, clnet.zeros(0, dtype=clnet.int64, device=x.device)),
         F.cross_entropy(x, clnet.zeros(0, dtype=clnet.int64, device=x.device), reduction="sum")]),
      lambda x: np.array([np.nan, 0.0]), _empty(0, 3), note="mean NaN, sum 0, as PyTorch"),
    Q("empty", "F.mse_loss(x(0,), y(0,))", lambda x: F.mse_loss(x, x), lambda x: np.array(np.nan), _empty(0),
      note="NaN, as PyTorch"),
    Q("empty", "F.conv2d(x(0,1,5,5), w), F.max_pool2d", lambda x: clnet.concat(
        [F.conv2d(x, clnet.ones(2, 1, 3, 3, device=x.device)).reshape(0, 18), F.max_pool2d(x, 2).reshape(0, 4)],
        dim=1), lambda x: np.zeros((0, 22)), _empty(0, 1, 5, 5)),
    Q("empty", "x(0,3)[0:0], index_select with no index, masked_select of nothing", lambda x: clnet.concat(
        [x[0:0].flatten(), x.index_select(0, clnet.zeros(0, dtype=clnet.int64, device=x.device)).flatten(),
         x.masked_select(x > 0)]), lambda x: np.zeros(0), _empty(0, 3)),
    Q("empty", "x(0,3).reshape(3, 0), permute, concat([x, a]), stack", lambda x: clnet.concat(
        [x.reshape(3, 0).permute(1, 0).contiguous(), clnet.ones(2, 3, device=x.device),
         clnet.stack([x, x]).reshape(0, 3)]), lambda x: np.ones((2, 3)), _empty(0, 3)),
    Q("empty", "x(0,3).requires_grad_(); (x * 2).sum().backward(); x.grad", lambda x: (
        x.requires_grad_(), (x * 2).sum().backward(), x.grad)[2], lambda x: np.zeros((0, 3)), _empty(0, 3)),
    Q("empty", "clnet.randn(0, 3), clnet.randint(0, 5, (0,)), F.dropout(x(0,3))", lambda x: clnet.concat(
        [clnet.randn(0, 3, device=x.device), F.dropout(x, 0.5, True),
         clnet.randint(0, 5, (0,), device=x.device).float().reshape(0, 1).expand(0, 3)]),
      lambda x: np.zeros((0, 3)), _empty(0, 3)),
]


@pytest.mark.parametrize("case", QUIET, ids=[q.id for q in QUIET])
def test_quiet_inputs_follow_numpy(device, rng, case):
    arrays = case.inputs(rng)
    with np.errstate(all="ignore"):
        expected = np.asarray(case.numpy_fn(*[a.astype(np.float64) for a in arrays]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = case.clnet_fn(*[clnet.tensor(a, device=device) for a in arrays])
    got = got.numpy() if isinstance(got, clnet.Tensor) else np.asarray(got)
    assert got.shape == expected.shape, f"shape {got.shape} != {expected.shape}"
    got64 = got.astype(np.float64)
    assert np.array_equal(np.isnan(got64), np.isnan(expected)), f"NaN at different places:\n{got}\n{expected}"
    inf = np.isinf(expected)
    assert np.array_equal(np.isinf(got64), inf) and np.array_equal(got64[inf], expected[inf]), \
        f"infinities differ:\n{got}\n{expected}"
    finite = np.isfinite(expected)
    np.testing.assert_allclose(got64[finite], expected[finite], rtol=2e-5, atol=1e-4)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
def test_optimizers_with_nan_and_inf_gradients_do_not_crash_or_spread(device, name):
    """A NaN/Inf gradient entry makes only its own parameter entry non-finite (one kernel updates
    every parameter: nothing leaks into the others); empty parameters are stepped too."""
    ctor = getattr(clnet.optim, name)
    p = clnet.tensor(np.ones(4, np.float32), device=device, requires_grad=True)
    q = clnet.tensor(np.ones(3, np.float32), device=device, requires_grad=True)
    empty = clnet.zeros(0, 2, device=device, requires_grad=True)
    opt = ctor([p, q, empty], lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        loss = (p * clnet.tensor([1.0, np.nan, np.inf, -2.0], device=device)).sum() + (q * 3).sum() + empty.sum()
        loss.backward()
        opt.step()
    pv, qv = p.numpy(), q.numpy()
    assert np.isfinite(pv[[0, 3]]).all() and not np.isfinite(pv[[1, 2]]).any(), pv
    assert np.isfinite(qv).all() and (qv < 1).all(), qv
    assert empty.shape == (0, 2)


# --- docs/errors.md is generated from CASES and QUIET ---------------------------------------------------
_BEGIN = "<!-- generated by tests/test_bad_input.py: begin -->"
_END = "<!-- generated by tests/test_bad_input.py: end -->"


def _cell(text):
    return text.replace("|", "\\|")


def render_tables() -> str:
    lines = ["### Errors", "", "| case | example | exception | message contains |", "|---|---|---|---|"]
    for c in CASES:
        says = " … ".join(f"`{_cell(s)}`" for s in c.says)
        lines.append(f"| {c.family} | `{_cell(c.example)}` | `{c.error.__name__}` | {says} |")
    lines += ["", "### Inputs that do not raise", "",
              "| case | example | result |", "|---|---|---|"]
    for q in QUIET:
        lines.append(f"| {q.family} | `{_cell(q.example)}` | {_cell(q.note)} |")
    lines.append("| NaN/Inf | `opt.step()` with NaN/Inf gradient entries (SGD, Adam, AdamW, RMSprop, Adagrad) | "
                 "only those parameter entries become NaN/Inf; nothing leaks into other entries or parameters |")
    lines.append("| empty | `opt.step()` with a parameter of shape (0, 2) | stepped (nothing to do), no error |")
    return "\n".join(lines) + "\n"


def _doc_with_tables(text: str) -> str:
    head, _, rest = text.partition(_BEGIN)
    _, _, tail = rest.partition(_END)
    return head + _BEGIN + "\n" + render_tables() + _END + tail


def test_errors_doc_is_generated_from_these_tables():
    text = DOC.read_text()
    assert _BEGIN in text and _END in text, f"{DOC} lost its generated-table markers"
    assert text == _doc_with_tables(text), f"{DOC} is out of date: run  python tests/test_bad_input.py"


if __name__ == "__main__":
    DOC.write_text(_doc_with_tables(DOC.read_text()))
    print(f"wrote the tables of {len(CASES)} error cases and {len(QUIET)} quiet cases into {DOC}")

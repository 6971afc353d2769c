"""Tensor: the class users hold, with every operator and method written out.

The storage (buffer, offset, shape, strides, dtype, device) and the facts about it live in
`clnet.core.storage.TensorBase`; every computation is an op in `clnet.ops`. This file is the Python
surface between them: each method below is one call into an op, so an IDE or type checker sees the
whole API, and `a + b` reads as `Tensor.__add__` -> `ops.elementwise.add` -> the kernel
(docs/architecture.md walks it through).
"""
from __future__ import annotations

import copy as _copy
import weakref

import numpy as np

from . import autograd
from . import dtypes as _dt
from .backend.devices import Device, get_device
from .core.storage import TensorBase, contiguous_strides, normalise_shape, register_tensor_class  # noqa: F401
from .core.storage import check_device_dtype as _check_device_dtype  # noqa: F401  (old name)
from .errors import DeviceNotFoundError
from .ops import arith as _ar
from .ops import broadcast as _bc
from .ops import creation as _cr
from .ops import elementwise as _ew
from .ops import indexing as _ix
from .ops import linalg as _la
from .ops import matmul as _mm
from .ops import movement as _mv
from .ops import nn as _nn
from .ops import random as _rnd
from .ops import reduce as _red
from .ops import sampling as _smp
from .ops import scan as _scan
from .ops import sort as _sort
from .ops import structure as _st
from . import tensor_types as _types

_normalise_shape = normalise_shape  # the name this module used to define


def _reduce_args(name, dim, keepdim, axis, keepdims, out=None):
    """PyTorch's dim/keepdim and numpy/TF's axis/keepdims spellings -> (dim, keepdim)."""
    if axis is not None:
        if dim is not None:
            raise TypeError(f"{name}() got both dim={dim!r} and axis={axis!r}")
        dim = axis
    if keepdims is not None:
        keepdim = keepdims
    if out is not None:
        raise TypeError(f"{name}() does not support out=")
    return dim, keepdim


class Tensor(TensorBase):
    """An n-dimensional array on an OpenCL device that records operations for autograd."""

    __slots__ = ()

    def __new__(cls, *args, device=None):
        """torch.Tensor(data) copies data into a float32 tensor; torch.Tensor(2, 3) is uninitialised (the
        legacy constructor; clnet.tensor(data) is the usual way)."""
        return _types.new_legacy(_dt.DEFAULT_FLOAT, args, device)

    def __init__(self, *args, **kwargs):
        pass

    # --- conversion -----------------------------------------------------------------------------
    def numpy(self, *, force=False) -> np.ndarray:
        """Copy to a numpy array (waits for the device). Works on tensors that require grad, as in TF
        (force= is accepted: the copy is always made)."""
        with autograd.no_grad():
            return _cr.to_numpy(self)

    def __array__(self, dtype=None, copy=None):
        if copy is False:
            raise ValueError("a clnet tensor lives on an OpenCL device: converting it to numpy always copies")
        arr = self.numpy()
        return arr.astype(dtype, copy=False) if dtype is not None else arr

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        """numpy ufuncs on tensors: the elementwise ones clnet has run on the device and return a
        Tensor (so `np.float64(2) * t` and `ndarray + t` stay tensors); others run on host copies."""
        name = _UFUNCS.get(ufunc.__name__)
        if method == "__call__" and name is not None and not kwargs:
            return getattr(_ew, name)(*inputs)
        if any(isinstance(o, Tensor) for o in kwargs.get("out", ()) or ()):
            return NotImplemented
        host = [x.numpy() if isinstance(x, Tensor) else x for x in inputs]
        return getattr(ufunc, method)(*host, **kwargs)

    def tolist(self):
        return self.numpy().tolist()

    def item(self):
        if self.numel() != 1:
            raise ValueError(f"only one-element tensors can be converted to Python scalars; shape is "
                             f"{tuple(self.shape)}")
        return self.numpy().reshape(()).item()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __bool__(self):
        if self.numel() != 1:
            raise RuntimeError(f"the truth value of a tensor with {self.numel()} elements is ambiguous; "
                               "use .any() or .all()")
        return bool(self.item())

    def __index__(self):
        if self.dtype.kind not in "iu" or self.numel() != 1:
            raise TypeError("only integer tensors of one element can be used as an index")
        return int(self.item())

    def to(self, *args, dtype=None, device=None, copy=False, non_blocking=False) -> Tensor:
        """.to(device), .to(dtype), .to(device, dtype), .to(other_tensor) or keywords; returns self when
        nothing changes (copy=True forces a new tensor). Differentiable."""
        for a in args:
            if isinstance(a, Tensor):
                device, dtype = a.device, a.dtype
            elif isinstance(a, (Device, str)) and not _is_dtype_name(a):
                device = a
            elif isinstance(a, int) and not isinstance(a, bool):
                device = a  # an accelerator ordinal, as .to(0) is cuda:0
            else:
                dtype = a
        out = self
        if device is not None:
            dev = get_device(device)
            if dev is not out.device:
                out = _mv.to_device(out, dev)
        if dtype is not None:
            dtype = _dt.as_dtype(dtype)
            if dtype != out.dtype:
                out = _ew.cast(out, dtype)
        if copy and out is self:
            out = self.clone()
        return out

    def cpu(self) -> Tensor:
        """The tensor on the CPU OpenCL device; itself when there is none (.numpy() works anywhere)."""
        try:
            return self.to("cpu")
        except DeviceNotFoundError:
            return self

    def float(self) -> Tensor:
        return self.to(dtype=_dt.float32)

    def double(self) -> Tensor:
        return self.to(dtype=_dt.float64)

    def half(self) -> Tensor:
        return self.to(dtype=_dt.float16)

    def int(self) -> Tensor:
        return self.to(dtype=_dt.int32)

    def long(self) -> Tensor:
        return self.to(dtype=_dt.int64)

    def bool(self) -> Tensor:
        return self.to(dtype=_dt.bool_)

    def type(self, dtype=None, non_blocking=False):
        """'torch.FloatTensor' (PyTorch's type name) without an argument; else this tensor converted to the
        dtype, the legacy type (clnet.LongTensor) or its name ('torch.LongTensor')."""
        if dtype is None:
            return _types.type_name(self.dtype)
        return self.to(dtype=_types.dtype_of(dtype))

    def type_as(self, other) -> Tensor:
        """This tensor in other's dtype."""
        return self.to(dtype=other.dtype)

    def cuda(self, device=None, non_blocking=False) -> Tensor:
        """This tensor on the accelerator ('cuda', or accelerator `device`); an error naming the devices
        when there is none (docs/pytorch.md)."""
        return self.to(get_device("cuda") if device is None else
                       (get_device("cuda", device) if isinstance(device, int) else get_device(device)))

    @property
    def is_cuda(self) -> bool:
        """True on an accelerator (a non-CPU device), as PyTorch's is_cuda on a GPU."""
        return self.device.type != "cpu"

    @property
    def is_cpu(self) -> bool:
        return self.device.type == "cpu"

    def pin_memory(self, device=None) -> Tensor:
        """Itself: clnet stages host copies itself (DataLoader(pin_memory=True) is accepted)."""
        return self

    def is_pinned(self, device=None) -> bool:
        return False

    def nelement(self) -> int:
        return self.numel()

    def ndimension(self) -> int:
        return self.ndim

    def __repr__(self):
        try:
            body = np.array2string(self.numpy(), separator=", ", prefix="tensor(", threshold=200)
        except Exception as err:  # pragma: no cover - repr must not raise
            body = f"<unreadable: {err}>"
        extra = f", shape={tuple(self.shape)}, dtype={self.dtype.name}, device='{self.device.spec}'"
        if self._node is not None:
            extra += f", grad_fn=<{self._node.name()}>"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    __str__ = __repr__

    def __format__(self, spec):
        if self.numel() == 1 and spec:
            return format(self.item(), spec)
        return str(self)

    __hash__ = TensorBase.__hash__  # defining __eq__ below would otherwise unset it

    def __iter__(self):
        if not self.shape:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))

    # --- autograd -------------------------------------------------------------------------------
    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's .grad (self must be a scalar unless `gradient`, of
        self's shape, is given). create_graph=True keeps the gradients' history for second derivatives."""
        autograd.backward(self, gradient, retain_graph=retain_graph, create_graph=create_graph, inputs=inputs)

    def register_hook(self, hook):
        """hook(grad) runs when the gradient with respect to this tensor is computed and may return a
        replacement; returns a handle whose .remove() takes the hook out."""
        return autograd.add_tensor_hook(self, hook)

    def register_post_accumulate_grad_hook(self, hook):
        """hook(tensor) runs on a leaf after its .grad has been accumulated in a backward pass."""
        if self._node is not None:
            raise RuntimeError("post accumulate grad hooks cannot be registered on non-leaf tensors")
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        hooks = self.__dict__.setdefault("_post_accumulate_hooks", [])
        hooks.append(hook)
        return autograd.RemovableHandle(hooks, hook)

    def retain_grad(self) -> None:
        """Keep .grad of this non-leaf tensor after backward (leaves keep theirs anyway)."""
        if not self.requires_grad:
            raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
        if self._node is None or self.__dict__.get("_retains_grad"):
            return
        self.__dict__["_retains_grad"] = True
        autograd.add_tensor_hook(self, _RetainGrad(self))

    @property
    def retains_grad(self) -> bool:
        return bool(self.__dict__.get("_retains_grad"))

    @property
    def data(self) -> Tensor:
        """The values without history, sharing storage but not the version counter (torch's .data:
        changes through it are invisible to autograd's in-place checks; prefer no_grad + detach)."""
        t = self.detach()
        t._version = [0]
        return t

    @data.setter
    def data(self, other: Tensor):
        if not isinstance(other, TensorBase):
            raise TypeError(f".data must be set to a Tensor, got {type(other).__name__}")
        self._buf, self.offset, self.shape, self.strides = other._buf, other.offset, other.shape, other.strides
        self.dtype, self.device, self._storage_size = other.dtype, other.device, other._storage_size
        self._version = [0]

    def __deepcopy__(self, memo):
        """copy.deepcopy of a leaf (as PyTorch: graph outputs refuse); keeps class, flags and .grad."""
        if self._node is not None:
            raise RuntimeError("only tensors created explicitly by the user (graph leaves) support deepcopy; "
                               "use .detach() first")
        with autograd.no_grad():
            new = _mv.clone(self.detach())
        if type(self) is not Tensor:
            new.__class__ = type(self)
        memo[id(self)] = new
        new.__dict__.update(_copy.deepcopy(self.__dict__, memo))
        new.requires_grad = self.requires_grad
        if self.grad is not None:
            new.grad = _copy.deepcopy(self.grad, memo)
        return new

    # --- new tensors like this one --------------------------------------------------------------
    def new_tensor(self, data, dtype=None, device=None, requires_grad=False) -> Tensor:
        return _cr.tensor(data, dtype=self.dtype if dtype is None else dtype,
                          device=self.device if device is None else device, requires_grad=requires_grad)

    def new_zeros(self, *shape, dtype=None, device=None, requires_grad=False) -> Tensor:
        return _cr.zeros(*shape, dtype=self.dtype if dtype is None else dtype,
                         device=self.device if device is None else device, requires_grad=requires_grad)

    def new_ones(self, *shape, dtype=None, device=None, requires_grad=False) -> Tensor:
        return _cr.ones(*shape, dtype=self.dtype if dtype is None else dtype,
                        device=self.device if device is None else device, requires_grad=requires_grad)

    def new_full(self, shape, fill_value, dtype=None, device=None, requires_grad=False) -> Tensor:
        return _cr.full(shape, fill_value, dtype=self.dtype if dtype is None else dtype,
                        device=self.device if device is None else device, requires_grad=requires_grad)

    def new_empty(self, *shape, dtype=None, device=None, requires_grad=False) -> Tensor:
        return _cr.empty(*shape, dtype=self.dtype if dtype is None else dtype,
                         device=self.device if device is None else device, requires_grad=requires_grad)

    # --- arithmetic operators -------------------------------------------------------------------
    def __add__(self, other) -> Tensor:
        return _ew.add(self, other)

    def __radd__(self, other) -> Tensor:
        return _ew.add(other, self)

    def __sub__(self, other) -> Tensor:
        return _ew.sub(self, other)

    def __rsub__(self, other) -> Tensor:
        return _ew.sub(other, self)

    def __mul__(self, other) -> Tensor:
        return _ew.mul(self, other)

    def __rmul__(self, other) -> Tensor:
        return _ew.mul(other, self)

    def __truediv__(self, other) -> Tensor:
        return _ew.div(self, other)

    def __rtruediv__(self, other) -> Tensor:
        return _ew.div(other, self)

    def __floordiv__(self, other) -> Tensor:
        return _ew.floor_divide(self, other)

    def __rfloordiv__(self, other) -> Tensor:
        return _ew.floor_divide(other, self)

    def __mod__(self, other) -> Tensor:
        return _ew.remainder(self, other)

    def __rmod__(self, other) -> Tensor:
        return _ew.remainder(other, self)

    def __pow__(self, other) -> Tensor:
        return _ew.pow(self, other)

    def __rpow__(self, other) -> Tensor:
        return _ew.pow(other, self)

    def __matmul__(self, other) -> Tensor:
        return _mm.matmul(self, other)

    def __rmatmul__(self, other) -> Tensor:
        return _mm.matmul(other, self)

    def __neg__(self) -> Tensor:
        return _ew.neg(self)

    def __pos__(self) -> Tensor:
        return self

    def __abs__(self) -> Tensor:
        return _ew.abs(self)

    def __invert__(self) -> Tensor:
        return _ew.logical_not(self)

    def __iadd__(self, other) -> Tensor:
        return _ew.add_(self, other)

    def __isub__(self, other) -> Tensor:
        return _ew.sub_(self, other)

    def __imul__(self, other) -> Tensor:
        return _ew.mul_(self, other)

    def __itruediv__(self, other) -> Tensor:
        return _ew.div_(self, other)

    def __ipow__(self, other) -> Tensor:
        return _ew.pow_(self, other)

    # --- comparisons and logic (bool tensors) ---------------------------------------------------
    def __eq__(self, other) -> Tensor:  # type: ignore[override]
        return _ew.eq(self, other)

    def __ne__(self, other) -> Tensor:  # type: ignore[override]
        return _ew.ne(self, other)

    def __lt__(self, other) -> Tensor:
        return _ew.lt(self, other)

    def __le__(self, other) -> Tensor:
        return _ew.le(self, other)

    def __gt__(self, other) -> Tensor:
        return _ew.gt(self, other)

    def __ge__(self, other) -> Tensor:
        return _ew.ge(self, other)

    def __and__(self, other) -> Tensor:
        return _ew.logical_and(self, other)

    def __or__(self, other) -> Tensor:
        return _ew.logical_or(self, other)

    def __xor__(self, other) -> Tensor:
        return _ew.logical_xor(self, other)

    # --- elementwise methods --------------------------------------------------------------------
    def add(self, other, *, alpha=1) -> Tensor:
        """self + alpha * other."""
        return _ew.add(self, other if alpha == 1 else _ew.mul(other, alpha))

    def sub(self, other, *, alpha=1) -> Tensor:
        """self - alpha * other."""
        return _ew.sub(self, other if alpha == 1 else _ew.mul(other, alpha))

    def mul(self, other) -> Tensor:
        return _ew.mul(self, other)

    def div(self, other, *, rounding_mode=None) -> Tensor:
        """self / other; rounding_mode 'trunc' or 'floor' rounds the quotient."""
        return _ar.divide(self, other, rounding_mode)

    subtract, multiply, divide = sub, mul, div

    def true_divide(self, other) -> Tensor:
        return _ew.div(self, other)

    def pow(self, other) -> Tensor:
        return _ew.pow(self, other)

    def maximum(self, other) -> Tensor:
        return _ew.maximum(self, other)

    def minimum(self, other) -> Tensor:
        return _ew.minimum(self, other)

    def floor_divide(self, other) -> Tensor:
        return _ew.floor_divide(self, other)

    def remainder(self, other) -> Tensor:
        return _ew.remainder(self, other)

    def eq(self, other) -> Tensor:
        return _ew.eq(self, other)

    def ne(self, other) -> Tensor:
        return _ew.ne(self, other)

    def lt(self, other) -> Tensor:
        return _ew.lt(self, other)

    def le(self, other) -> Tensor:
        return _ew.le(self, other)

    def gt(self, other) -> Tensor:
        return _ew.gt(self, other)

    def ge(self, other) -> Tensor:
        return _ew.ge(self, other)

    def logical_and(self, other) -> Tensor:
        return _ew.logical_and(self, other)

    def logical_or(self, other) -> Tensor:
        return _ew.logical_or(self, other)

    def logical_xor(self, other) -> Tensor:
        return _ew.logical_xor(self, other)

    def add_(self, other, *, alpha=1) -> Tensor:
        """self += alpha * other, in place (p.data.add_(p.grad, alpha=-lr))."""
        return _ew.add_(self, other if alpha == 1 else _ew.mul(other, alpha))

    def sub_(self, other, *, alpha=1) -> Tensor:
        """self -= alpha * other, in place."""
        return _ew.sub_(self, other if alpha == 1 else _ew.mul(other, alpha))

    def mul_(self, other) -> Tensor:
        return _ew.mul_(self, other)

    def div_(self, other, *, rounding_mode=None) -> Tensor:
        if rounding_mode is None:
            return _ew.div_(self, other)
        return _ew.copy_(self, _ar.divide(self, other, rounding_mode))

    subtract_, multiply_, divide_ = sub_, mul_, div_

    def pow_(self, other) -> Tensor:
        return _ew.pow_(self, other)

    def neg(self) -> Tensor:
        return _ew.neg(self)

    def abs(self) -> Tensor:
        return _ew.abs(self)

    def sign(self) -> Tensor:
        return _ew.sign(self)

    def exp(self) -> Tensor:
        return _ew.exp(self)

    def log(self) -> Tensor:
        return _ew.log(self)

    def sqrt(self) -> Tensor:
        return _ew.sqrt(self)

    def rsqrt(self) -> Tensor:
        return _ew.rsqrt(self)

    def sin(self) -> Tensor:
        return _ew.sin(self)

    def cos(self) -> Tensor:
        return _ew.cos(self)

    def tanh(self) -> Tensor:
        return _ew.tanh(self)

    def sigmoid(self) -> Tensor:
        return _ew.sigmoid(self)

    def relu(self) -> Tensor:
        return _ew.relu(self)

    def reciprocal(self) -> Tensor:
        return _ew.reciprocal(self)

    def square(self) -> Tensor:
        return _ew.square(self)

    def log1p(self) -> Tensor:
        return _ew.log1p(self)

    def expm1(self) -> Tensor:
        return _ew.expm1(self)

    def floor(self) -> Tensor:
        return _ew.floor(self)

    def ceil(self) -> Tensor:
        return _ew.ceil(self)

    def round(self) -> Tensor:
        return _ew.round(self)

    def logical_not(self) -> Tensor:
        return _ew.logical_not(self)

    def isnan(self) -> Tensor:
        return _ew.isnan(self)

    def isinf(self) -> Tensor:
        return _ew.isinf(self)

    def neg_(self) -> Tensor:
        return _ew.neg_(self)

    def abs_(self) -> Tensor:
        return _ew.abs_(self)

    def sign_(self) -> Tensor:
        return _ew.sign_(self)

    def exp_(self) -> Tensor:
        return _ew.exp_(self)

    def log_(self) -> Tensor:
        return _ew.log_(self)

    def sqrt_(self) -> Tensor:
        return _ew.sqrt_(self)

    def rsqrt_(self) -> Tensor:
        return _ew.rsqrt_(self)

    def sin_(self) -> Tensor:
        return _ew.sin_(self)

    def cos_(self) -> Tensor:
        return _ew.cos_(self)

    def tanh_(self) -> Tensor:
        return _ew.tanh_(self)

    def sigmoid_(self) -> Tensor:
        return _ew.sigmoid_(self)

    def relu_(self) -> Tensor:
        return _ew.relu_(self)

    def reciprocal_(self) -> Tensor:
        return _ew.reciprocal_(self)

    def square_(self) -> Tensor:
        return _ew.square_(self)

    def log1p_(self) -> Tensor:
        return _ew.log1p_(self)

    def expm1_(self) -> Tensor:
        return _ew.expm1_(self)

    def floor_(self) -> Tensor:
        return _ew.floor_(self)

    def ceil_(self) -> Tensor:
        return _ew.ceil_(self)

    def round_(self) -> Tensor:
        return _ew.round_(self)

    def logical_not_(self) -> Tensor:
        return _ew.logical_not_(self)

    def isnan_(self) -> Tensor:
        return _ew.isnan_(self)

    def isinf_(self) -> Tensor:
        return _ew.isinf_(self)

    def tan(self) -> Tensor:
        return _ew.tan(self)

    def asin(self) -> Tensor:
        return _ew.asin(self)

    def acos(self) -> Tensor:
        return _ew.acos(self)

    def atan(self) -> Tensor:
        return _ew.atan(self)

    arcsin, arccos, arctan = asin, acos, atan

    def sinh(self) -> Tensor:
        return _ew.sinh(self)

    def cosh(self) -> Tensor:
        return _ew.cosh(self)

    def asinh(self) -> Tensor:
        return _ew.asinh(self)

    def acosh(self) -> Tensor:
        return _ew.acosh(self)

    def atanh(self) -> Tensor:
        return _ew.atanh(self)

    def log2(self) -> Tensor:
        return _ew.log2(self)

    def log10(self) -> Tensor:
        return _ew.log10(self)

    def exp2(self) -> Tensor:
        return _ew.exp2(self)

    def erf(self) -> Tensor:
        return _ew.erf(self)

    def erfc(self) -> Tensor:
        return _ew.erfc(self)

    def trunc(self) -> Tensor:
        return _ew.trunc(self)

    fix = trunc

    def frac(self) -> Tensor:
        return _ew.frac(self)

    def isfinite(self) -> Tensor:
        return _ew.isfinite(self)

    def sgn(self) -> Tensor:
        return _ew.sign(self)

    def negative(self) -> Tensor:
        return _ew.neg(self)

    def absolute(self) -> Tensor:
        return _ew.abs(self)

    def tan_(self) -> Tensor:
        return _ew.tan_(self)

    def sinh_(self) -> Tensor:
        return _ew.sinh_(self)

    def cosh_(self) -> Tensor:
        return _ew.cosh_(self)

    def asin_(self) -> Tensor:
        return _ew.asin_(self)

    def acos_(self) -> Tensor:
        return _ew.acos_(self)

    def atan_(self) -> Tensor:
        return _ew.atan_(self)

    def erf_(self) -> Tensor:
        return _ew.erf_(self)

    def trunc_(self) -> Tensor:
        return _ew.trunc_(self)

    def frac_(self) -> Tensor:
        return _ew.frac_(self)

    def log2_(self) -> Tensor:
        return _ew.log2_(self)

    def log10_(self) -> Tensor:
        return _ew.log10_(self)

    def atan2(self, other) -> Tensor:
        return _ew.atan2(self, other)

    arctan2 = atan2

    def hypot(self, other) -> Tensor:
        return _ew.hypot(self, other)

    def fmod(self, other) -> Tensor:
        return _ew.fmod(self, other)

    def fmod_(self, other) -> Tensor:
        return _ew.fmod_(self, other)

    def remainder_(self, other) -> Tensor:
        return _ew.remainder_(self, other)

    def fmax(self, other) -> Tensor:
        return _ar.fmax(self, other)

    def fmin(self, other) -> Tensor:
        return _ar.fmin(self, other)

    def lerp(self, end, weight) -> Tensor:
        """self + weight * (end - self)."""
        return _ar.lerp(self, end, weight)

    def lerp_(self, end, weight) -> Tensor:
        return _ew.copy_(self, _ar.lerp(self, end, weight))

    def addcmul(self, tensor1, tensor2, *, value=1) -> Tensor:
        """self + value * tensor1 * tensor2."""
        return _ar.addcmul(self, tensor1, tensor2, value)

    def addcmul_(self, tensor1, tensor2, *, value=1) -> Tensor:
        """self += value * tensor1 * tensor2, in place (optimizers' moment updates)."""
        return _ew.copy_(self, _ar.addcmul(self, tensor1, tensor2, value))

    def addcdiv(self, tensor1, tensor2, *, value=1) -> Tensor:
        """self + value * tensor1 / tensor2."""
        return _ar.addcdiv(self, tensor1, tensor2, value)

    def addcdiv_(self, tensor1, tensor2, *, value=1) -> Tensor:
        """self += value * tensor1 / tensor2, in place."""
        return _ew.copy_(self, _ar.addcdiv(self, tensor1, tensor2, value))

    def nan_to_num(self, nan=0.0, posinf=None, neginf=None) -> Tensor:
        return _ar.nan_to_num(self, nan, posinf, neginf)

    def nan_to_num_(self, nan=0.0, posinf=None, neginf=None) -> Tensor:
        return _ew.copy_(self, _ar.nan_to_num(self, nan, posinf, neginf))

    def isclose(self, other, rtol=1e-05, atol=1e-08, equal_nan=False) -> Tensor:
        return _ar.isclose(self, other, rtol, atol, equal_nan)

    def allclose(self, other, rtol=1e-05, atol=1e-08, equal_nan=False) -> bool:
        return bool(_red.all(_ar.isclose(self, other, rtol, atol, equal_nan)).item())

    def equal(self, other) -> bool:
        return tuple(self.shape) == tuple(other.shape) and bool(_red.all(_ew.eq(self, other)).item())

    def clamp_min(self, min) -> Tensor:
        return _ew.clamp(self, min, None)

    def clamp_max(self, max) -> Tensor:
        return _ew.clamp(self, None, max)

    def clamp_min_(self, min) -> Tensor:
        return _ew.clamp_(self, min, None)

    def clamp_max_(self, max) -> Tensor:
        return _ew.clamp_(self, None, max)

    def clamp(self, min=None, max=None) -> Tensor:
        return _ew.clamp(self, min, max)

    def clamp_(self, min=None, max=None) -> Tensor:
        return _ew.clamp_(self, min, max)

    clip, clip_ = clamp, clamp_

    def where(self, condition, other) -> Tensor:
        """self where condition holds, else other (torch's Tensor.where)."""
        return _ew.where(condition, self, other)

    def copy_(self, src) -> Tensor:
        """Overwrite the values with src (broadcast, converted); differentiable towards src."""
        return _ew.copy_(self, src)

    def fill_(self, value) -> Tensor:
        return _ew.copy_(self, value)

    def zero_(self) -> Tensor:
        return _ew.copy_(self, 0)

    # --- reductions (dim/keepdim or axis/keepdims) ----------------------------------------------
    def sum(self, dim=None, keepdim=False, *, axis=None, keepdims=None, dtype=None, out=None) -> Tensor:
        dim, keepdim = _reduce_args("sum", dim, keepdim, axis, keepdims, out)
        return _red.sum(self, dim, keepdim, dtype=dtype)

    def mean(self, dim=None, keepdim=False, *, axis=None, keepdims=None, dtype=None, out=None) -> Tensor:
        dim, keepdim = _reduce_args("mean", dim, keepdim, axis, keepdims, out)
        return _red.mean(self, dim, keepdim, dtype=dtype)

    def prod(self, dim=None, keepdim=False, *, axis=None, keepdims=None, dtype=None, out=None) -> Tensor:
        dim, keepdim = _reduce_args("prod", dim, keepdim, axis, keepdims, out)
        return _red.prod(self, dim, keepdim, dtype=dtype)

    def max(self, dim=None, keepdim=False, *, axis=None, keepdims=None, out=None):
        """The largest value, or (values, indices) along `dim` as in PyTorch."""
        dim, keepdim = _reduce_args("max", dim, keepdim, axis, keepdims, out)
        return _red.max(self, dim, keepdim)

    def min(self, dim=None, keepdim=False, *, axis=None, keepdims=None, out=None):
        """The smallest value, or (values, indices) along `dim` as in PyTorch."""
        dim, keepdim = _reduce_args("min", dim, keepdim, axis, keepdims, out)
        return _red.min(self, dim, keepdim)

    def amax(self, dim=None, keepdim=False, *, axis=None, keepdims=None, out=None) -> Tensor:
        dim, keepdim = _reduce_args("amax", dim, keepdim, axis, keepdims, out)
        return _red.amax(self, dim, keepdim)

    def amin(self, dim=None, keepdim=False, *, axis=None, keepdims=None, out=None) -> Tensor:
        dim, keepdim = _reduce_args("amin", dim, keepdim, axis, keepdims, out)
        return _red.amin(self, dim, keepdim)

    def argmax(self, dim=None, keepdim=False, *, axis=None, keepdims=None, out=None) -> Tensor:
        dim, keepdim = _reduce_args("argmax", dim, keepdim, axis, keepdims, out)
        return _red.argmax(self, dim, keepdim)

    def argmin(self, dim=None, keepdim=False, *, axis=None, keepdims=None, out=None) -> Tensor:
        dim, keepdim = _reduce_args("argmin", dim, keepdim, axis, keepdims, out)
        return _red.argmin(self, dim, keepdim)

    def var(self, dim=None, keepdim=False, *, axis=None, keepdims=None, unbiased=True, correction=None,
            out=None) -> Tensor:
        dim, keepdim = _reduce_args("var", dim, keepdim, axis, keepdims, out)
        return _red.var(self, dim, keepdim, unbiased, correction=correction)

    def std(self, dim=None, keepdim=False, *, axis=None, keepdims=None, unbiased=True, correction=None,
            out=None) -> Tensor:
        dim, keepdim = _reduce_args("std", dim, keepdim, axis, keepdims, out)
        return _red.std(self, dim, keepdim, unbiased, correction=correction)

    def logsumexp(self, dim=None, keepdim=False, *, axis=None, keepdims=None, out=None) -> Tensor:
        dim, keepdim = _reduce_args("logsumexp", dim, keepdim, axis, keepdims, out)
        return _red.logsumexp(self, dim, keepdim)

    def any(self, dim=None, keepdim=False, *, axis=None, keepdims=None, out=None) -> Tensor:
        dim, keepdim = _reduce_args("any", dim, keepdim, axis, keepdims, out)
        return _red.any(self, dim, keepdim)

    def all(self, dim=None, keepdim=False, *, axis=None, keepdims=None, out=None) -> Tensor:
        dim, keepdim = _reduce_args("all", dim, keepdim, axis, keepdims, out)
        return _red.all(self, dim, keepdim)

    # --- shape and layout -----------------------------------------------------------------------
    @property
    def T(self) -> Tensor:
        """Reversed dimensions (a view), as numpy's .T."""
        return _mv.permute(self, tuple(reversed(range(self.ndim))))

    def reshape(self, *shape) -> Tensor:
        return _mv.reshape(self, *shape)

    def view(self, *shape) -> Tensor:
        return _mv.view(self, *shape)

    def permute(self, *dims) -> Tensor:
        return _mv.permute(self, *dims)

    def transpose(self, dim0=0, dim1=1) -> Tensor:
        return _mv.transpose(self, dim0, dim1)

    swapaxes = transpose

    def t(self) -> Tensor:
        return _mv.t(self)

    def squeeze(self, dim=None) -> Tensor:
        return _mv.squeeze(self, dim)

    def unsqueeze(self, dim) -> Tensor:
        return _mv.unsqueeze(self, dim)

    def flatten(self, start_dim=0, end_dim=-1) -> Tensor:
        return _mv.flatten(self, start_dim, end_dim)

    def unflatten(self, dim, sizes) -> Tensor:
        return _mv.unflatten(self, dim, sizes)

    def movedim(self, source, destination) -> Tensor:
        return _mv.movedim(self, source, destination)

    def narrow(self, dim, start, length) -> Tensor:
        return _mv.narrow(self, dim, start, length)

    def contiguous(self) -> Tensor:
        return _mv.contiguous(self)

    def clone(self) -> Tensor:
        return _mv.clone(self)

    def flip(self, dims) -> Tensor:
        return _mv.flip(self, dims)

    def split(self, split_size_or_sections, dim=0) -> tuple:
        return _mv.split(self, split_size_or_sections, dim)

    def chunk(self, chunks, dim=0) -> tuple:
        return _mv.chunk(self, chunks, dim)

    def unbind(self, dim=0) -> tuple:
        return _mv.unbind(self, dim)

    def expand(self, *shape) -> Tensor:
        return _bc.expand(self, *shape)

    def expand_as(self, other) -> Tensor:
        return _bc.expand_as(self, other)

    def repeat(self, *sizes) -> Tensor:
        return _bc.repeat(self, *sizes)

    def tile(self, *reps) -> Tensor:
        return _bc.tile(self, reps[0] if len(reps) == 1 and isinstance(reps[0], (tuple, list)) else reps)

    def view_as(self, other) -> Tensor:
        """This tensor viewed with other's shape."""
        return _mv.view(self, tuple(other.shape))

    def reshape_as(self, other) -> Tensor:
        return _mv.reshape(self, tuple(other.shape))

    @property
    def mT(self) -> Tensor:
        """The last two dimensions swapped (a view)."""
        return _mv.transpose(self, -2, -1)

    def moveaxis(self, source, destination) -> Tensor:
        return _mv.movedim(self, source, destination)

    def roll(self, shifts, dims=None) -> Tensor:
        return _st.roll(self, shifts, dims)

    def tril(self, diagonal=0) -> Tensor:
        return _st.tril(self, diagonal)

    def triu(self, diagonal=0) -> Tensor:
        return _st.triu(self, diagonal)

    def tril_(self, diagonal=0) -> Tensor:
        return _st.tril_(self, diagonal)

    def triu_(self, diagonal=0) -> Tensor:
        return _st.triu_(self, diagonal)

    def diag(self, diagonal=0) -> Tensor:
        return _st.diag(self, diagonal)

    def diagonal(self, offset=0, dim1=0, dim2=1) -> Tensor:
        return _st.diagonal(self, offset, dim1, dim2)

    def diag_embed(self, offset=0, dim1=-2, dim2=-1) -> Tensor:
        return _st.diag_embed(self, offset, dim1, dim2)

    def take_along_dim(self, indices, dim=None) -> Tensor:
        return _st.take_along_dim(self, indices, dim)

    # --- scans and sorting ----------------------------------------------------------------------
    def cumsum(self, dim, *, dtype=None) -> Tensor:
        return _scan.cumsum(self, dim, dtype=dtype)

    def cumprod(self, dim, *, dtype=None) -> Tensor:
        return _scan.cumprod(self, dim, dtype=dtype)

    def sort(self, dim=-1, descending=False, stable=False):
        """(values, indices) sorted along dim (stable)."""
        return _sort.sort(self, dim, descending, stable)

    def argsort(self, dim=-1, descending=False, stable=False) -> Tensor:
        return _sort.argsort(self, dim, descending, stable)

    def msort(self) -> Tensor:
        return _sort.msort(self)

    def topk(self, k, dim=-1, largest=True, sorted=True):
        """(values, indices) of the k largest (smallest with largest=False) elements along dim."""
        return _sort.topk(self, k, dim, largest, sorted)

    def kthvalue(self, k, dim=-1, keepdim=False):
        return _sort.kthvalue(self, k, dim, keepdim)

    def unique(self, sorted=True, return_inverse=False, return_counts=False, dim=None):
        return _sort.unique(self, sorted, return_inverse, return_counts, dim)

    # --- products and norms -----------------------------------------------------------------------
    def dot(self, other) -> Tensor:
        return _la.dot(self, other)

    def vdot(self, other) -> Tensor:
        return _la.dot(self, other)

    def outer(self, vec2) -> Tensor:
        return _la.outer(self, vec2)

    ger = outer

    def mv(self, vec) -> Tensor:
        return _la.mv(self, vec)

    def addmm(self, mat1, mat2, *, beta=1, alpha=1) -> Tensor:
        return _la.addmm(self, mat1, mat2, beta=beta, alpha=alpha)

    def addmv(self, mat, vec, *, beta=1, alpha=1) -> Tensor:
        return _la.addmv(self, mat, vec, beta=beta, alpha=alpha)

    def addr(self, vec1, vec2, *, beta=1, alpha=1) -> Tensor:
        return _la.addr(self, vec1, vec2, beta=beta, alpha=alpha)

    def baddbmm(self, batch1, batch2, *, beta=1, alpha=1) -> Tensor:
        return _la.baddbmm(self, batch1, batch2, beta=beta, alpha=alpha)

    def addbmm(self, batch1, batch2, *, beta=1, alpha=1) -> Tensor:
        return _la.addbmm(self, batch1, batch2, beta=beta, alpha=alpha)

    def trace(self) -> Tensor:
        return _la.trace(self)

    def cross(self, other, dim=None) -> Tensor:
        return _la.cross(self, other, dim)

    def norm(self, p="fro", dim=None, keepdim=False, dtype=None) -> Tensor:
        """The p-norm over dim (all elements by default); p 'fro', a number, inf or -inf."""
        return _la.norm(self, p, dim, keepdim, dtype)

    def dist(self, other, p=2) -> Tensor:
        return _la.dist(self, other, p)

    def softmax(self, dim, dtype=None) -> Tensor:
        return _nn.softmax(self if dtype is None else _ew.cast(self, _dt.as_dtype(dtype)), dim)

    def log_softmax(self, dim, dtype=None) -> Tensor:
        return _nn.log_softmax(self if dtype is None else _ew.cast(self, _dt.as_dtype(dtype)), dim)

    # --- sampling ---------------------------------------------------------------------------------
    def bernoulli(self, p=None) -> Tensor:
        """0/1 drawn with probability self (or p) elementwise."""
        return _smp.bernoulli(self, p)

    def bernoulli_(self, p=0.5) -> Tensor:
        """Refill with 0/1 drawn with probability p (a number or a tensor)."""
        probs = p if isinstance(p, TensorBase) else _cr.full(self.shape, float(p), dtype=_dt.DEFAULT_FLOAT,
                                                             device=self.device)
        return _ew.copy_(self, _smp.bernoulli(probs))

    def multinomial(self, num_samples, replacement=False) -> Tensor:
        return _smp.multinomial(self, num_samples, replacement)

    def uniform_(self, a=0.0, b=1.0) -> Tensor:
        """Refill with U(a, b) values."""
        return _rnd.uniform_(self, a, b)

    def normal_(self, mean=0.0, std=1.0) -> Tensor:
        """Refill with N(mean, std**2) values."""
        return _rnd.normal_(self, mean, std)

    def random_(self, from_=0, to=None) -> Tensor:
        """Refill with integers uniform in [from_, to) (to: 2**24 for floats without it)."""
        if to is None:
            from_, to = 0, (from_ if from_ else 2**24)
        return _ew.copy_(self, _rnd.randint(from_, to, tuple(self.shape), device=self.device))

    # --- indexing -------------------------------------------------------------------------------
    def __getitem__(self, key) -> Tensor:
        return _ix.getitem(self, key)

    def __setitem__(self, key, value) -> None:
        _ix.setitem(self, key, value)

    def index_select(self, dim, index) -> Tensor:
        return _ix.index_select(self, dim, index)

    def gather(self, dim, index) -> Tensor:
        return _ix.gather(self, dim, index)

    def take(self, index) -> Tensor:
        return _ix.take(self, index)

    def scatter_add(self, dim, index, src) -> Tensor:
        return _ix.scatter_add(self, dim, index, src)

    def scatter_add_(self, dim, index, src) -> Tensor:
        _ew.check_inplace_target("scatter_add", self)
        return _ew.copy_(self, _ix.scatter_add(self.detach(), dim, index, src))

    def scatter(self, dim, index, src=None, value=None, *, reduce=None) -> Tensor:
        """A copy with src's entries (or value) written at index along dim."""
        return _ix.scatter(self, dim, index, src, value, reduce=reduce)

    def scatter_(self, dim, index, src=None, value=None, *, reduce=None) -> Tensor:
        return _ix.scatter_(self, dim, index, src, value, reduce=reduce)

    def masked_fill(self, mask, value) -> Tensor:
        return _ix.masked_fill(self, mask, value)

    def masked_fill_(self, mask, value) -> Tensor:
        return _ix.masked_fill_(self, mask, value)

    def masked_select(self, mask) -> Tensor:
        return _ix.masked_select(self, mask)

    def nonzero(self, as_tuple=False):
        return _ix.nonzero(self, as_tuple)

    # --- products -------------------------------------------------------------------------------
    def matmul(self, other) -> Tensor:
        return _mm.matmul(self, other)

    def mm(self, other) -> Tensor:
        return _mm.mm(self, other)

    def bmm(self, other) -> Tensor:
        return _mm.bmm(self, other)


register_tensor_class(Tensor)


class _RetainGrad:
    """The hook retain_grad() adds: stores (accumulates) the gradient on the tensor, held weakly so the
    node does not keep its own output alive."""

    def __init__(self, t):
        self._t = weakref.ref(t)

    def __call__(self, g):
        t = self._t()
        if t is not None:
            if t.grad is None:
                t.grad = _mv.clone(g)
            else:
                with autograd.no_grad():
                    _ew.add_(t.grad, g)


def _is_dtype_name(x) -> bool:
    if not isinstance(x, str):
        return False
    try:
        _dt.as_dtype(x)
        return True
    except TypeError:
        return False


def is_tensor(x) -> bool:
    return isinstance(x, Tensor)


def tensor(data, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Copy `data` (nested lists, numbers, numpy arrays or tensors) into a new tensor on `device`."""
    return _cr.tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)


_UFUNCS = {"add": "add", "subtract": "sub", "multiply": "mul", "divide": "div", "true_divide": "div",
           "power": "pow", "float_power": "pow", "maximum": "maximum", "minimum": "minimum",
           "equal": "eq", "not_equal": "ne", "less": "lt", "less_equal": "le", "greater": "gt",
           "greater_equal": "ge", "negative": "neg", "absolute": "abs", "exp": "exp", "log": "log",
           "sqrt": "sqrt", "tanh": "tanh", "sin": "sin", "cos": "cos", "square": "square",
           "reciprocal": "reciprocal", "sign": "sign", "floor": "floor", "ceil": "ceil", "rint": "round",
           "log1p": "log1p", "expm1": "expm1", "logical_and": "logical_and", "logical_or": "logical_or",
           "logical_xor": "logical_xor", "logical_not": "logical_not", "isnan": "isnan", "isinf": "isinf",
           "floor_divide": "floor_divide", "remainder": "remainder"}

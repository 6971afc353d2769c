"""Tensor: a device buffer plus offset, shape, strides (in elements), dtype and device.

Views (transpose, slices, reshape of contiguous data) share the buffer and the version counter.
Every computation is delegated to clnet.ops, which launches a kernel; this file only holds the
Python surface (operators, properties, conversions).
"""
from __future__ import annotations

import math

import numpy as np
import pyopencl as cl

from . import autograd
from . import dtypes as _dt
from .backend.devices import Device, get_device


def contiguous_strides(shape) -> tuple:
    strides, acc = [], 1
    for s in reversed(shape):
        strides.append(acc)
        acc *= max(s, 1)
    return tuple(reversed(strides))


def _normalise_shape(args) -> tuple:
    """shape given as varargs (2, 3) or as one tuple/list ((2, 3),)."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = tuple(args[0])
    shape = []
    for s in args:
        if isinstance(s, (np.integer,)):
            s = int(s)
        if not isinstance(s, int) or isinstance(s, bool):
            raise TypeError(f"shape entries must be ints, got {s!r} ({type(s).__name__})")
        if s < 0:
            raise ValueError(f"negative dimension {s} in shape {tuple(args)}")
        shape.append(s)
    return tuple(shape)


class Tensor:
    """An n-dimensional array on an OpenCL device that records operations for autograd."""

    __slots__ = ("_buf", "offset", "shape", "strides", "dtype", "device", "requires_grad", "grad",
                 "_node", "_out_index", "_version", "_base", "_storage_size", "__weakref__", "__dict__")
    __array_priority__ = 1000  # numpy defers to our operators (ndarray + Tensor -> Tensor)

    def __init__(self, *args, **kwargs):
        raise TypeError("make tensors with clnet.tensor(data), clnet.zeros(shape), clnet.randn(shape), ...")

    # --- construction (internal) ----------------------------------------------------------------
    @classmethod
    def _wrap(cls, buf, shape, dtype, device, offset=0, strides=None, base=None, storage_size=None):
        t = object.__new__(cls)
        t._buf = buf
        t.offset = offset
        t.shape = tuple(shape)
        t.strides = contiguous_strides(shape) if strides is None else tuple(strides)
        t.dtype = dtype
        t.device = device
        t.requires_grad = False
        t.grad = None
        t._node = None
        t._out_index = 0
        t._base = base
        t._version = base._version if base is not None else [0]
        t._storage_size = storage_size if storage_size is not None else (
            base._storage_size if base is not None else math.prod(shape))
        return t

    @classmethod
    def _empty(cls, shape, dtype, device, strides=None) -> "Tensor":
        """A new contiguous tensor from the device's pool (`strides`: its contiguous strides, if known)."""
        shape = tuple(shape)
        if dtype is not _dt.float32:  # the common case skips the checks
            dtype = _dt.as_dtype(dtype)
            _check_device_dtype(device, dtype)
        n = math.prod(shape)
        t = object.__new__(cls)
        t._buf = device.pool.allocate(n * dtype.itemsize)
        t.offset = 0
        t.shape = shape
        t.strides = contiguous_strides(shape) if strides is None else strides
        t.dtype = dtype
        t.device = device
        t.requires_grad = False
        t.grad = None
        t._node = None
        t._out_index = 0
        t._base = None
        t._version = [0]
        t._storage_size = n
        return t

    def _view(self, shape, strides, offset=None) -> "Tensor":
        """A tensor sharing this one's buffer and version counter (no autograd; callers record)."""
        base = self._base if self._base is not None else self
        return Tensor._wrap(self._buf, shape, self.dtype, self.device,
                            self.offset if offset is None else offset, strides, base=base)

    # --- facts ----------------------------------------------------------------------------------
    @property
    def ndim(self) -> int:
        return len(self.shape)

    def dim(self) -> int:
        return len(self.shape)

    def numel(self) -> int:
        return math.prod(self.shape)

    def size(self, dim=None):
        if dim is None:
            return self.shape
        return self.shape[dim]

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    @property
    def grad_fn(self):
        return self._node

    @property
    def nbytes(self) -> int:
        return self.numel() * self.dtype.itemsize

    def is_contiguous(self) -> bool:
        if 0 in self.shape:
            return True
        expected = 1
        for s, st in zip(reversed(self.shape), reversed(self.strides)):
            if s != 1 and st != expected:
                return False
            expected *= s
        return True

    # --- conversion -----------------------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """Copy to a numpy array (waits for the device). Works on tensors that require grad, as in TF."""
        out = np.empty(self.shape, dtype=self.dtype)
        if out.size == 0:
            return out
        if self.is_contiguous():
            src = self
        else:
            with autograd.no_grad():
                src = self.contiguous()
        cl.enqueue_copy(self.device.queue, out, src._buf, src_offset=src.offset * self.dtype.itemsize,
                        is_blocking=True)
        return out

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
            return getattr(_ops.elementwise, name)(*inputs)
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

    def to(self, *args, dtype=None, device=None, copy=False, non_blocking=False) -> "Tensor":
        """.to(device), .to(dtype), .to(device, dtype), .to(other_tensor) or keywords; returns self when
        nothing changes (copy=True forces a new tensor). Differentiable."""
        for a in args:
            if isinstance(a, Tensor):
                device, dtype = a.device, a.dtype
            elif isinstance(a, (Device, str)) and not _is_dtype_name(a):
                device = a
            else:
                dtype = a
        out = self
        if device is not None:
            dev = get_device(device)
            if dev is not out.device:
                from .ops.movement import to_device
                out = to_device(out, dev)
        if dtype is not None:
            dtype = _dt.as_dtype(dtype)
            if dtype != out.dtype:
                from .ops.elementwise import cast
                out = cast(out, dtype)
        if copy and out is self:
            out = self.clone()
        return out

    def cpu(self):
        """The tensor on the CPU OpenCL device; itself when there is none (.numpy() works anywhere)."""
        from .errors import DeviceNotFoundError
        try:
            return self.to("cpu")
        except DeviceNotFoundError:
            return self

    def float(self):
        return self.to(dtype=_dt.float32)

    def double(self):
        return self.to(dtype=_dt.float64)

    def half(self):
        return self.to(dtype=_dt.float16)

    def int(self):
        return self.to(dtype=_dt.int32)

    def long(self):
        return self.to(dtype=_dt.int64)

    def bool(self):
        return self.to(dtype=_dt.bool_)

    def type(self, dtype=None):
        return self.dtype.name if dtype is None else self.to(dtype=dtype)

    def __repr__(self):
        try:
            body = np.array2string(self.numpy(), separator=", ", prefix="tensor(", threshold=200)
        except Exception as err:  # pragma: no cover - repr must not raise
            body = f"<unreadable: {err}>"
        extra = f", shape={tuple(self.shape)}, dtype={self.dtype.name}, device='{self.device.spec}'"
        if self._node is not None:
            extra += f", grad_fn={self._node!r}"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    __str__ = __repr__

    def __format__(self, spec):
        if self.numel() == 1 and spec:
            return format(self.item(), spec)
        return str(self)

    def __hash__(self):
        return id(self)

    def __iter__(self):
        if not self.shape:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))

    def __reduce_ex__(self, protocol):
        raise TypeError("clnet tensors are not picklable: save them with clnet.save / model.save")

    # --- autograd -------------------------------------------------------------------------------
    def backward(self, gradient=None, retain_graph=False, create_graph=False):
        if create_graph:
            raise NotImplementedError("higher-order gradients (create_graph=True) are not supported")
        autograd.backward(self, gradient, retain_graph=retain_graph)

    @property
    def data(self) -> "Tensor":
        """The values without history, sharing storage but not the version counter (torch's .data:
        changes through it are invisible to autograd's in-place checks; prefer no_grad + detach)."""
        t = self.detach()
        t._version = [0]
        return t

    @data.setter
    def data(self, other: "Tensor"):
        if not isinstance(other, Tensor):
            raise TypeError(f".data must be set to a Tensor, got {type(other).__name__}")
        self._buf, self.offset, self.shape, self.strides = other._buf, other.offset, other.shape, other.strides
        self.dtype, self.device, self._storage_size = other.dtype, other.device, other._storage_size
        self._version = [0]

    def __deepcopy__(self, memo):
        """copy.deepcopy of a leaf (as PyTorch: graph outputs refuse); keeps class, flags and .grad."""
        import copy
        if self._node is not None:
            raise RuntimeError("only tensors created explicitly by the user (graph leaves) support deepcopy; "
                               "use .detach() first")
        with autograd.no_grad():
            new = _ops.movement.clone(self.detach())
        if type(self) is not Tensor:
            new.__class__ = type(self)
        memo[id(self)] = new
        new.__dict__.update(copy.deepcopy(self.__dict__, memo))
        new.requires_grad = self.requires_grad
        if self.grad is not None:
            new.grad = copy.deepcopy(self.grad, memo)
        return new

    def detach(self) -> "Tensor":
        """The same data (buffer and version counter shared) without history.

        The alias does not reference `self`, so an op may save `out.detach()` in the node that hangs
        on `out` without making a reference cycle (cycles would keep device buffers alive until the
        garbage collector runs).
        """
        t = Tensor._wrap(self._buf, self.shape, self.dtype, self.device, self.offset, self.strides,
                         storage_size=self._storage_size)
        t._version = self._version
        t._base = self._base
        return t

    def detach_(self) -> "Tensor":
        self._node = None
        self.requires_grad = False
        return self

    def requires_grad_(self, requires_grad=True) -> "Tensor":
        if self._node is not None:
            if not requires_grad:
                raise RuntimeError("you can only change requires_grad of leaf tensors; use .detach()")
            return self
        if requires_grad and not _dt.is_floating(self.dtype):
            raise RuntimeError(f"only floating-point tensors can require gradients (this is {self.dtype.name})")
        self.requires_grad = requires_grad
        return self

    def is_floating_point(self) -> bool:
        return _dt.is_floating(self.dtype)

    def element_size(self) -> int:
        return self.dtype.itemsize

    def stride(self, dim=None):
        """Strides in elements, as torch's stride()."""
        return self.strides if dim is None else self.strides[dim]

    def storage_offset(self) -> int:
        return self.offset

    def new_tensor(self, data, dtype=None, device=None, requires_grad=False) -> "Tensor":
        return tensor(data, dtype=self.dtype if dtype is None else dtype,
                      device=self.device if device is None else device, requires_grad=requires_grad)

    def new_zeros(self, *shape, dtype=None, device=None, requires_grad=False) -> "Tensor":
        return _ops.creation.zeros(*shape, dtype=self.dtype if dtype is None else dtype,
                                   device=self.device if device is None else device, requires_grad=requires_grad)

    def new_ones(self, *shape, dtype=None, device=None, requires_grad=False) -> "Tensor":
        return _ops.creation.ones(*shape, dtype=self.dtype if dtype is None else dtype,
                                  device=self.device if device is None else device, requires_grad=requires_grad)

    def new_full(self, shape, fill_value, dtype=None, device=None, requires_grad=False) -> "Tensor":
        return _ops.creation.full(shape, fill_value, dtype=self.dtype if dtype is None else dtype,
                                  device=self.device if device is None else device, requires_grad=requires_grad)

    def new_empty(self, *shape, dtype=None, device=None, requires_grad=False) -> "Tensor":
        return _ops.creation.empty(*shape, dtype=self.dtype if dtype is None else dtype,
                                   device=self.device if device is None else device, requires_grad=requires_grad)

    def retain_grad(self):
        raise NotImplementedError("retain_grad is not supported yet; use clnet.autograd.grad(out, [t])")

    def _bump_version(self):
        self._version[0] += 1

    @property
    def _version_count(self) -> int:
        """How many in-place changes this tensor's storage has seen (torch's ._version)."""
        return self._version[0]


def _is_dtype_name(x) -> bool:
    if not isinstance(x, str):
        return False
    try:
        _dt.as_dtype(x)
        return True
    except TypeError:
        return False


def _check_device_dtype(device, dtype):
    from .errors import DtypeNotSupportedError
    if dtype == _dt.float64 and not device.fp64:
        raise DtypeNotSupportedError(f"{device.name} has no float64 support (cl_khr_fp64); "
                                     f"use dtype=clnet.float32")
    if dtype == _dt.float16 and not device.profile.fp16:
        raise DtypeNotSupportedError(f"{device.name} has no usable float16 support (cl_khr_fp16); "
                                     f"use dtype=clnet.float32")


def is_tensor(x) -> bool:
    return isinstance(x, Tensor)


def tensor(data, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Copy `data` (nested lists, numbers, numpy arrays or tensors) into a new tensor on `device`."""
    from .ops.creation import tensor as _tensor
    return _tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)


# --- the Python operator surface: each method is one call into clnet.ops ----------------------------
def _method(fn_path):
    """Bind Tensor.<name> to ops function `fn_path` ("module.function") looked up at call time."""
    module, name = fn_path.split(".")

    def method(self, *args, **kwargs):
        return getattr(getattr(_ops, module), name)(self, *args, **kwargs)
    method.__name__ = name
    return method


def _reflected(fn_path):
    module, name = fn_path.split(".")

    def method(self, other):
        return getattr(getattr(_ops, module), name)(other, self)
    return method


def _inplace(op):
    def method(self, other):
        _ops.elementwise.binary(op, self, other, out=self)
        return self
    method.__name__ = op + "_"
    return method


def _inplace_unary(op):
    def method(self):
        return _ops.elementwise.unary(op, self, out=self)
    method.__name__ = op + "_"
    return method


def _reduction(name):
    """Tensor.sum/mean/...: PyTorch's dim/keepdim and numpy/TF's axis/keepdims spellings."""
    def method(self, dim=None, keepdim=False, *, axis=None, keepdims=None, **kwargs):
        return _call_reduction(name, self, dim, keepdim, axis, keepdims, kwargs)
    method.__name__ = name
    return method


def _call_reduction(name, x, dim, keepdim, axis, keepdims, kwargs):
    if axis is not None:
        if dim is not None:
            raise TypeError(f"{name}() got both dim={dim!r} and axis={axis!r}")
        dim = axis
    if keepdims is not None:
        keepdim = keepdims
    if kwargs.pop("out", None) is not None:
        raise TypeError(f"{name}() does not support out=")
    if kwargs.get("dtype", 1) is None:
        kwargs.pop("dtype")
    return getattr(_ops.reduce, name)(x, dim, keepdim, **kwargs)


_UFUNCS = {"add": "add", "subtract": "sub", "multiply": "mul", "divide": "div", "true_divide": "div",
           "power": "pow", "float_power": "pow", "maximum": "maximum", "minimum": "minimum",
           "equal": "eq", "not_equal": "ne", "less": "lt", "less_equal": "le", "greater": "gt",
           "greater_equal": "ge", "negative": "neg", "absolute": "abs", "exp": "exp", "log": "log",
           "sqrt": "sqrt", "tanh": "tanh", "sin": "sin", "cos": "cos", "square": "square",
           "reciprocal": "reciprocal", "sign": "sign", "floor": "floor", "ceil": "ceil", "rint": "round",
           "log1p": "log1p", "expm1": "expm1", "logical_and": "logical_and", "logical_or": "logical_or",
           "logical_xor": "logical_xor", "logical_not": "logical_not", "isnan": "isnan", "isinf": "isinf",
           "floor_divide": "floor_divide", "remainder": "remainder"}


def _install():
    ew = _ops.elementwise
    binary = {"add": "add", "sub": "sub", "mul": "mul", "truediv": "div", "pow": "pow",
              "floordiv": "floor_divide", "mod": "remainder"}
    for dunder, op in binary.items():
        setattr(Tensor, f"__{dunder}__", _method(f"elementwise.{op}"))
        setattr(Tensor, f"__r{dunder}__", _reflected(f"elementwise.{op}"))
    for dunder, op in {"iadd": "add", "isub": "sub", "imul": "mul", "itruediv": "div", "ipow": "pow"}.items():
        setattr(Tensor, f"__{dunder}__", _inplace(op))
    for dunder, op in {"eq": "eq", "ne": "ne", "lt": "lt", "le": "le", "gt": "gt", "ge": "ge",
                       "and": "logical_and", "or": "logical_or", "xor": "logical_xor"}.items():
        setattr(Tensor, f"__{dunder}__", _method(f"elementwise.{op}"))
    for op in ("add", "sub", "mul", "div", "pow", "maximum", "minimum", "eq", "ne", "lt", "le", "gt", "ge",
               "logical_and", "logical_or", "logical_xor", "floor_divide", "remainder"):
        setattr(Tensor, op, _method(f"elementwise.{op}"))
    for op in ("add", "sub", "mul", "div", "pow"):
        setattr(Tensor, op + "_", _inplace(op))
    Tensor.subtract, Tensor.multiply, Tensor.divide = Tensor.sub, Tensor.mul, Tensor.div
    Tensor.true_divide = Tensor.div
    for op in ew.UNARY:
        setattr(Tensor, op, _method(f"elementwise.{op}"))
        setattr(Tensor, op + "_", _inplace_unary(op))
    for op in ("sum", "mean", "max", "min", "amax", "amin", "argmax", "argmin", "prod", "var", "std", "logsumexp",
               "any", "all"):
        setattr(Tensor, op, _reduction(op))
    for op in ("reshape", "view", "permute", "transpose", "t", "squeeze", "unsqueeze", "flatten", "expand",
               "contiguous", "clone", "flip", "split", "chunk", "repeat", "tile", "narrow", "movedim", "unflatten",
               "unbind", "expand_as", "swapaxes"):
        setattr(Tensor, op, _method(f"movement.{op}"))
    for op in ("index_select", "gather", "take", "masked_fill", "masked_fill_", "masked_select", "nonzero",
               "scatter_add"):
        setattr(Tensor, op, _method(f"indexing.{op}"))
    Tensor.__getitem__ = _method("movement.getitem")
    Tensor.__setitem__ = _method("movement.setitem")
    Tensor.__neg__ = _method("elementwise.neg")
    Tensor.__abs__ = _method("elementwise.abs")
    Tensor.__invert__ = _method("elementwise.logical_not")
    Tensor.__pos__ = lambda self: self
    Tensor.clamp = _method("elementwise.clamp")
    Tensor.clip = Tensor.clamp
    Tensor.clamp_ = lambda self, min=None, max=None: _ops.elementwise.clamp(self, min, max, out=self)
    Tensor.clip_ = Tensor.clamp_
    Tensor.where = lambda self, cond, other: _ops.elementwise.where(cond, self, other)
    Tensor.__matmul__ = _method("matmul.matmul")
    Tensor.__rmatmul__ = _reflected("matmul.matmul")
    Tensor.matmul = _method("matmul.matmul")
    Tensor.mm = _method("matmul.mm")
    Tensor.bmm = _method("matmul.bmm")


def _T(self):
    """Reversed dimensions (a view), as numpy's .T."""
    return _ops.movement.permute(self, tuple(reversed(range(self.ndim))))


def _copy_(self, src):
    """Overwrite self's values with src (broadcast, converted); bumps the version counter.

    Differentiable as in PyTorch: with grad mode on, self's new history is the copy from src (its old
    values, and their history, are gone); gradients flow back to src summed to its shape."""
    ew = _ops.elementwise
    ew._check_inplace_target("copy", self)
    ew.copy_into(self, src)
    self._bump_version()
    if autograd.is_grad_enabled():
        if isinstance(src, Tensor) and src.requires_grad and _dt.is_floating(self.dtype):
            self._node = None
            src_dtype = src.dtype
            autograd.record("copy_", self, (src,), lambda g: g if g.dtype == src_dtype else ew.cast(g, src_dtype))
        elif self._node is not None:
            self._node, self.requires_grad = None, False
    return self


def _fill_(self, value):
    return _copy_(self, value)


def _zero_(self):
    return _copy_(self, 0)


Tensor.T = property(_T)
Tensor.copy_ = _copy_
Tensor.fill_ = _fill_
Tensor.zero_ = _zero_

from . import ops as _ops  # noqa: E402  (ops import Tensor; methods resolve them at call time)

_install()

"""Storage: what a tensor *is* (buffer, offset, shape, strides in elements, dtype, device, version).

`TensorBase` holds those facts and the few operations that need nothing but them (views, detach,
contiguity, sizes). It has no arithmetic: every computation is an op (clnet.ops), and the operator
methods users call (`+`, `.sum()`, ...) are written out on `clnet.tensor.Tensor`, which subclasses this
class one layer up. Ops create their results here, as instances of the class `register_tensor_class`
installed (clnet.tensor.Tensor once `clnet` is imported), so a result always has every method while
nothing below the Tensor layer imports it (PyTorch's C core does the same with its registered
`torch.Tensor` class).
"""
from __future__ import annotations

import math

import numpy as np

from .. import dtypes as _dt
from ..errors import DtypeNotSupportedError
from ..size import Size

_new_size = tuple.__new__  # Size(shape) without re-checking entries that are already ints


def contiguous_strides(shape) -> tuple:
    """Row-major strides (in elements) of `shape`."""
    strides, acc = [], 1
    for s in reversed(shape):
        strides.append(acc)
        acc *= max(s, 1)
    return tuple(reversed(strides))


def normalise_shape(args) -> tuple:
    """A shape given as varargs (2, 3) or as one tuple/list ((2, 3),), checked."""
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


def check_device_dtype(device, dtype) -> None:
    """A clear error before any kernel when `device` cannot store/compute `dtype`."""
    if dtype == _dt.float64 and not device.fp64:
        raise DtypeNotSupportedError(f"{device.name} has no float64 support (cl_khr_fp64); "
                                     f"use dtype=clnet.float32")
    if dtype == _dt.float16 and not device.profile.fp16:
        raise DtypeNotSupportedError(f"{device.name} has no usable float16 support (cl_khr_fp16); "
                                     f"use dtype=clnet.float32")


class TensorBase:
    """A view of device memory: `_buf` (a pool allocation), `offset`, `shape` (a clnet.Size), `strides` (elements),
    `dtype`, `device`, plus the autograd fields the tape fills in (`requires_grad`, `grad`, `_node`,
    `_out_index`) and the version counter shared by every view of one storage (`_version`)."""

    __slots__ = ("_buf", "offset", "shape", "strides", "dtype", "device", "requires_grad", "grad",
                 "_node", "_out_index", "_version", "_base", "_storage_size", "__weakref__", "__dict__")
    __array_priority__ = 1000  # numpy defers to our operators (ndarray + Tensor -> Tensor)

    def __init__(self, *args, **kwargs):
        raise TypeError("make tensors with clnet.tensor(data), clnet.zeros(shape), clnet.randn(shape), ...")

    # --- construction (internal) ----------------------------------------------------------------
    @classmethod
    def _wrap(cls, buf, shape, dtype, device, offset=0, strides=None, base=None, storage_size=None):
        """A tensor over an existing buffer (views, Parameters, uploads)."""
        t = object.__new__(_TENSOR_CLASS if cls is TensorBase else cls)
        t._buf = buf
        t.offset = offset
        t.shape = _new_size(Size, shape)
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
    def _empty(cls, shape, dtype, device, strides=None):
        """A new contiguous tensor from the device's pool (`strides`: its contiguous strides, if known)."""
        shape = _new_size(Size, shape)
        if dtype is not _dt.float32:  # the common case skips the checks
            dtype = _dt.as_dtype(dtype)
            check_device_dtype(device, dtype)
        n = math.prod(shape)
        t = object.__new__(_TENSOR_CLASS if cls is TensorBase else cls)
        t._buf = device.pool.allocate(n * dtype.itemsize)
        if _allocation_hook is not None:  # a trace learns which buffers are made inside it
            _allocation_hook(t)
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

    def _view(self, shape, strides, offset=None):
        """A tensor sharing this one's buffer and version counter (no autograd; callers record)."""
        base = self._base if self._base is not None else self
        return TensorBase._wrap(self._buf, shape, self.dtype, self.device,
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

    def is_floating_point(self) -> bool:
        return _dt.is_floating(self.dtype)

    def element_size(self) -> int:
        return self.dtype.itemsize

    def stride(self, dim=None):
        """Strides in elements, as torch's stride()."""
        return self.strides if dim is None else self.strides[dim]

    def storage_offset(self) -> int:
        return self.offset

    def __hash__(self):
        return id(self)

    def __reduce_ex__(self, protocol):
        raise TypeError("clnet tensors are not picklable: save them with clnet.save / model.save")

    # --- identity without history ---------------------------------------------------------------
    def detach(self):
        """The same data (buffer and version counter shared) without history.

        The alias does not reference `self`, so an op may save `out.detach()` in the node that hangs
        on `out` without making a reference cycle (cycles would keep device buffers alive until the
        garbage collector runs).
        """
        t = TensorBase._wrap(self._buf, self.shape, self.dtype, self.device, self.offset, self.strides,
                             storage_size=self._storage_size)
        t._version = self._version
        t._base = self._base
        return t

    def detach_(self):
        self._node = None
        self.requires_grad = False
        return self

    def requires_grad_(self, requires_grad=True):
        if self._node is not None:
            if not requires_grad:
                raise RuntimeError("you can only change requires_grad of leaf tensors; use .detach()")
            return self
        if requires_grad and not _dt.is_floating(self.dtype):
            raise RuntimeError(f"only floating-point tensors can require gradients (this is {self.dtype.name})")
        self.requires_grad = requires_grad
        return self

    def _bump_version(self):
        self._version[0] += 1

    @property
    def _version_count(self) -> int:
        """How many in-place changes this tensor's storage has seen (torch's ._version)."""
        return self._version[0]


_TENSOR_CLASS = TensorBase
_allocation_hook = None


def set_allocation_hook(hook) -> None:
    """Call hook(tensor) for every new pool-backed tensor (clnet.core.dispatch sets it while recording)."""
    global _allocation_hook
    _allocation_hook = hook


def register_tensor_class(cls) -> None:
    """Make ops create instances of `cls` (clnet.tensor.Tensor registers itself when it is defined)."""
    global _TENSOR_CLASS
    if not (isinstance(cls, type) and issubclass(cls, TensorBase)):
        raise TypeError(f"the tensor class must subclass TensorBase, got {cls!r}")
    _TENSOR_CLASS = cls


def is_tensor(x) -> bool:
    return isinstance(x, TensorBase)

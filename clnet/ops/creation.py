"""Making tensors: from host data, filled with a constant, ranges and identities; and reading them back.

`tensor` uploads host data through dispatch.upload (under tracing: a constant of the graph);
`to_numpy` is the one device->host read of a whole tensor (under tracing: a graph break).
"""
from __future__ import annotations

import numpy as np

from .. import dtypes as _dt
from ..backend.devices import get_device
from ..backend.programs import get_kernel
from ..core import dispatch
from ..core.dispatch import op
from ..core.storage import TensorBase, normalise_shape
from .elementwise import copy_into, launch


def _finish(t: TensorBase, requires_grad: bool) -> TensorBase:
    if requires_grad:
        t.requires_grad_(True)
    return t


def to_numpy(x: TensorBase) -> np.ndarray:
    """Copy x to a new numpy array (waits for the device); strided tensors are made contiguous first."""
    out = np.empty(x.shape, dtype=x.dtype)
    if out.size == 0:
        return out
    src = x if x.is_contiguous() else launch("v0", [x], x.dtype, x.dtype)
    dispatch.download(x.device, out, src._buf, src.offset * x.dtype.itemsize)
    return out


def from_numpy(array: np.ndarray, device=None) -> TensorBase:
    """Copy a numpy array to the device, keeping its dtype (float64 stays float64, as in PyTorch)."""
    return tensor(array, dtype=array.dtype, device=device)


def tensor(data, dtype=None, device=None, requires_grad=False) -> TensorBase:
    """Copy data (numbers, nested lists, numpy arrays, tensors) into a new tensor.

    Lists of Python floats become float32, of ints int64, of bools bool (as in PyTorch); numpy arrays
    keep their dtype (float64 becomes float32 on a device without fp64 unless dtype= asks for it).
    """
    if isinstance(data, TensorBase):
        dev = get_device(device) if device is not None else data.device
        dt = _dt.as_dtype(dtype) if dtype is not None else data.dtype
        if dev is data.device:
            out = copy_into(TensorBase._empty(data.shape, dt, dev), data.detach())
        else:  # OpenCL contexts cannot share buffers: through the host
            out = dispatch.upload_array(np.ascontiguousarray(to_numpy(data), dtype=dt), dt, dev)
        return _finish(out, requires_grad)
    dev = get_device(device)
    inferred = _dt.infer_dtype(data)  # also when dtype= is given: None or "x" must not become NaN
    dt = _dt.as_dtype(dtype) if dtype is not None else inferred
    if dt == _dt.float64 and dtype is None and not dev.fp64:
        dt = _dt.float32  # a float64 numpy array on a device without fp64 computes in float32
    host = np.asarray(data, dtype=dt, order="C")  # (np.ascontiguousarray would turn 0-d into shape (1,))
    if requires_grad and not _dt.is_floating(dt):
        raise RuntimeError(f"only floating-point tensors can require gradients (this is {dt.name})")
    return _finish(dispatch.upload_array(host, dt, dev), requires_grad)


def convert_to_tensor(value, dtype=None, device=None) -> TensorBase:
    """TF's name: returns `value` itself when it is already a tensor of that dtype."""
    if isinstance(value, TensorBase) and (dtype is None or _dt.as_dtype(dtype) == value.dtype):
        return value
    return tensor(value, dtype=dtype, device=device)


def empty(*shape, dtype=None, device=None, requires_grad=False) -> TensorBase:
    dt = _dt.as_dtype(dtype) if dtype is not None else _dt.DEFAULT_FLOAT
    return _finish(TensorBase._empty(normalise_shape(shape), dt, get_device(device)), requires_grad)


@op("full")
def full(shape, fill_value, dtype=None, device=None, requires_grad=False) -> TensorBase:
    shape = normalise_shape((shape,) if not isinstance(shape, (tuple, list)) else (tuple(shape),))
    if isinstance(fill_value, TensorBase):
        fill_value = to_numpy(fill_value).reshape(()).item()
    dt = _dt.as_dtype(dtype) if dtype is not None else _dt.result_type([], [fill_value])
    out = TensorBase._empty(shape, dt, get_device(device))
    if dt == _dt.bool_:
        fill_value = bool(fill_value)
    elif not _dt.is_floating(dt):
        fill_value = int(fill_value)
    launch("v0", [fill_value], dt, dt, out=out)
    return _finish(out, requires_grad)


def zeros(*shape, dtype=None, device=None, requires_grad=False) -> TensorBase:
    return full(normalise_shape(shape), 0, dtype=_dt.DEFAULT_FLOAT if dtype is None else dtype,
                device=device, requires_grad=requires_grad)


def ones(*shape, dtype=None, device=None, requires_grad=False) -> TensorBase:
    return full(normalise_shape(shape), 1, dtype=_dt.DEFAULT_FLOAT if dtype is None else dtype,
                device=device, requires_grad=requires_grad)


def like(x, dtype, device) -> dict:
    """dtype= and device= of a *_like function: x's unless given."""
    return dict(dtype=x.dtype if dtype is None else dtype, device=x.device if device is None else device)


def zeros_like(x, dtype=None, device=None, requires_grad=False) -> TensorBase:
    return zeros(x.shape, requires_grad=requires_grad, **like(x, dtype, device))


def ones_like(x, dtype=None, device=None, requires_grad=False) -> TensorBase:
    return ones(x.shape, requires_grad=requires_grad, **like(x, dtype, device))


def full_like(x, fill_value, dtype=None, device=None, requires_grad=False) -> TensorBase:
    return full(x.shape, fill_value, requires_grad=requires_grad, **like(x, dtype, device))


def empty_like(x, dtype=None, device=None, requires_grad=False) -> TensorBase:
    return empty(x.shape, requires_grad=requires_grad, **like(x, dtype, device))


@op("arange")
def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False) -> TensorBase:
    """Values start, start+step, ... < end, computed on the device."""
    if end is None:
        start, end = 0, start
    if step == 0:
        raise ValueError("arange step must be non-zero")
    n = max(0, int(np.ceil((end - start) / step)))
    dt = _dt.as_dtype(dtype) if dtype is not None else _dt.result_type([], [start, end, step])
    out = TensorBase._empty((n,), dt, get_device(device))
    idx = _index_tensor(n, out.device)
    ct = _dt.float64 if (_dt.is_floating(dt) and out.device.fp64) else (dt if _dt.is_floating(dt) else _dt.int64)
    launch("v1 + v0 * v2", [idx, start, step], dt, ct, out=out)
    return _finish(out, requires_grad)


def _index_tensor(n, device) -> TensorBase:
    """0, 1, ..., n-1 as int64 (kernels/creation.cl.mako's iota)."""
    out = TensorBase._empty((n,), _dt.int64, device)
    if n:
        kern = get_kernel(device, "creation.cl.mako", "iota", arg_dtypes=[np.int64, None])
        wg = device.profile.elementwise_wg
        dispatch.launch(device, kern, (-(-n // wg) * wg,), (wg,), [n, out._buf])
    return out


@op("eye")
def eye(n, m=None, dtype=None, device=None, requires_grad=False) -> TensorBase:
    m = n if m is None else m
    dt = _dt.as_dtype(dtype) if dtype is not None else _dt.DEFAULT_FLOAT
    dev = get_device(device)
    rows = _index_tensor(n, dev)._view((n, 1), (1, 0))
    cols = _index_tensor(m, dev)._view((1, m), (0, 1))
    out = TensorBase._empty((n, m), dt, dev)
    launch("v0 == v1", [rows, cols], dt, _dt.int64, out=out)
    return _finish(out, requires_grad)


@op("linspace")
def linspace(start, end, steps, dtype=None, device=None, requires_grad=False) -> TensorBase:
    dt = _dt.as_dtype(dtype) if dtype is not None else _dt.DEFAULT_FLOAT
    dev = get_device(device)
    out = TensorBase._empty((steps,), dt, dev)
    step = (end - start) / (steps - 1) if steps > 1 else 0.0
    launch("v1 + v0 * v2", [_index_tensor(steps, dev), float(start), float(step)], dt,
           _dt.float64 if dev.fp64 else _dt.float32, out=out)
    return _finish(out, requires_grad)

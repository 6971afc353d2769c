"""Making tensors: from data, filled with a constant, ranges and identities."""
from __future__ import annotations

import numpy as np
import pyopencl as cl

from .. import dtypes as _dt
from ..backend.devices import get_device
from ..tensor import Tensor, _normalise_shape
from .elementwise import launch


def _finish(t: Tensor, requires_grad: bool) -> Tensor:
    if requires_grad:
        t.requires_grad_(True)
    return t


def from_numpy(array: np.ndarray, device=None) -> Tensor:
    """Copy a numpy array to the device, keeping its dtype (float64 stays float64, as in PyTorch)."""
    return tensor(array, dtype=array.dtype, device=device)


def tensor(data, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Copy data (numbers, nested lists, numpy arrays, tensors) into a new tensor.

    Lists of Python floats become float32, of ints int64, of bools bool (as in PyTorch); numpy arrays
    keep their dtype (float64 becomes float32 on a device without fp64 unless dtype= asks for it).
    """
    if isinstance(data, Tensor):
        out = data.detach().to(device=device if device is not None else data.device,
                               dtype=dtype if dtype is not None else data.dtype, copy=True)
        return _finish(out, requires_grad)
    dev = get_device(device)
    inferred = _dt.infer_dtype(data)  # also when dtype= is given: None or "x" must not become NaN
    dt = _dt.as_dtype(dtype) if dtype is not None else inferred
    if dt == _dt.float64 and dtype is None and not dev.fp64:
        dt = _dt.float32  # a float64 numpy array on a device without fp64 computes in float32
    host = np.asarray(data, dtype=dt, order="C")  # (np.ascontiguousarray would turn 0-d into shape (1,))
    if requires_grad and not _dt.is_floating(dt):
        raise RuntimeError(f"only floating-point tensors can require gradients (this is {dt.name})")
    out = Tensor._empty(host.shape, dt, dev)
    if host.size:
        cl.enqueue_copy(dev.queue, out._buf, host, is_blocking=True)
    return _finish(out, requires_grad)


def convert_to_tensor(value, dtype=None, device=None) -> Tensor:
    """TF's name: returns `value` itself when it is already a tensor of that dtype."""
    if isinstance(value, Tensor) and (dtype is None or _dt.as_dtype(dtype) == value.dtype):
        return value
    return tensor(value, dtype=dtype, device=device)


def empty(*shape, dtype=None, device=None, requires_grad=False) -> Tensor:
    dt = _dt.as_dtype(dtype) if dtype is not None else _dt.DEFAULT_FLOAT
    return _finish(Tensor._empty(_normalise_shape(shape), dt, get_device(device)), requires_grad)


def full(shape, fill_value, dtype=None, device=None, requires_grad=False) -> Tensor:
    shape = _normalise_shape((shape,) if not isinstance(shape, (tuple, list)) else (tuple(shape),))
    if isinstance(fill_value, Tensor):
        fill_value = fill_value.item()
    dt = _dt.as_dtype(dtype) if dtype is not None else _dt.result_type([], [fill_value])
    out = Tensor._empty(shape, dt, get_device(device))
    if dt == _dt.bool_:
        fill_value = bool(fill_value)
    elif not _dt.is_floating(dt):
        fill_value = int(fill_value)
    launch("v0", [fill_value], dt, dt, out=out)
    return _finish(out, requires_grad)


def zeros(*shape, dtype=None, device=None, requires_grad=False) -> Tensor:
    return full(_normalise_shape(shape), 0, dtype=_dt.DEFAULT_FLOAT if dtype is None else dtype,
                device=device, requires_grad=requires_grad)


def ones(*shape, dtype=None, device=None, requires_grad=False) -> Tensor:
    return full(_normalise_shape(shape), 1, dtype=_dt.DEFAULT_FLOAT if dtype is None else dtype,
                device=device, requires_grad=requires_grad)


def _like(x, dtype, device):
    return dict(dtype=x.dtype if dtype is None else dtype, device=x.device if device is None else device)


def zeros_like(x, dtype=None, device=None, requires_grad=False) -> Tensor:
    return zeros(x.shape, requires_grad=requires_grad, **_like(x, dtype, device))


def ones_like(x, dtype=None, device=None, requires_grad=False) -> Tensor:
    return ones(x.shape, requires_grad=requires_grad, **_like(x, dtype, device))


def full_like(x, fill_value, dtype=None, device=None, requires_grad=False) -> Tensor:
    return full(x.shape, fill_value, requires_grad=requires_grad, **_like(x, dtype, device))


def empty_like(x, dtype=None, device=None, requires_grad=False) -> Tensor:
    return empty(x.shape, requires_grad=requires_grad, **_like(x, dtype, device))


def rand_like(x, dtype=None, device=None, requires_grad=False) -> Tensor:
    from .random import rand
    return rand(x.shape, requires_grad=requires_grad, **_like(x, dtype, device))


def randn_like(x, dtype=None, device=None, requires_grad=False) -> Tensor:
    from .random import randn
    return randn(x.shape, requires_grad=requires_grad, **_like(x, dtype, device))


def uniform(shape, minval=0.0, maxval=1.0, dtype=None, seed=None, device=None) -> Tensor:
    """tf.random.uniform: values in [minval, maxval) (float32 unless dtype says otherwise)."""
    from .random import manual_seed, uniform_
    if seed is not None:
        manual_seed(seed)
    out = empty(_normalise_shape((shape,) if not isinstance(shape, (tuple, list)) else (tuple(shape),)),
                dtype=_dt.DEFAULT_FLOAT if dtype is None else dtype, device=device)
    return uniform_(out, minval, maxval)


def normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None, device=None) -> Tensor:
    """tf.random.normal: Gaussian values with the given mean and standard deviation."""
    from .random import manual_seed, normal_
    if seed is not None:
        manual_seed(seed)
    out = empty(_normalise_shape((shape,) if not isinstance(shape, (tuple, list)) else (tuple(shape),)),
                dtype=_dt.DEFAULT_FLOAT if dtype is None else dtype, device=device)
    return normal_(out, mean, stddev)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Values start, start+step, ... < end, computed on the device."""
    if end is None:
        start, end = 0, start
    if step == 0:
        raise ValueError("arange step must be non-zero")
    n = max(0, int(np.ceil((end - start) / step)))
    dt = _dt.as_dtype(dtype) if dtype is not None else _dt.result_type([], [start, end, step])
    out = Tensor._empty((n,), dt, get_device(device))
    idx = _index_tensor(n, out.device)
    ct = _dt.float64 if (_dt.is_floating(dt) and out.device.fp64) else (dt if _dt.is_floating(dt) else _dt.int64)
    launch("v1 + v0 * v2", [idx, start, step], dt, ct, out=out)
    return _finish(out, requires_grad)


def _index_tensor(n, device) -> Tensor:
    """0, 1, ..., n-1 as int64 (made by one kernel over a broadcast stride trick)."""
    out = Tensor._empty((n,), _dt.int64, device)
    if n:
        from ..backend.programs import get_kernel
        kern = get_kernel(device, "creation.cl.mako", "iota", arg_dtypes=[np.int64, None])
        wg = device.profile.elementwise_wg
        kern(device.queue, (-(-n // wg) * wg,), (wg,), n, out._buf)
    return out


def eye(n, m=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    m = n if m is None else m
    dt = _dt.as_dtype(dtype) if dtype is not None else _dt.DEFAULT_FLOAT
    dev = get_device(device)
    rows = _index_tensor(n, dev)._view((n, 1), (1, 0))
    cols = _index_tensor(m, dev)._view((1, m), (0, 1))
    out = Tensor._empty((n, m), dt, dev)
    launch("v0 == v1", [rows, cols], dt, _dt.int64, out=out)
    return _finish(out, requires_grad)


def linspace(start, end, steps, dtype=None, device=None, requires_grad=False) -> Tensor:
    dt = _dt.as_dtype(dtype) if dtype is not None else _dt.DEFAULT_FLOAT
    dev = get_device(device)
    out = Tensor._empty((steps,), dt, dev)
    step = (end - start) / (steps - 1) if steps > 1 else 0.0
    launch("v1 + v0 * v2", [_index_tensor(steps, dev), float(start), float(step)], dt,
           _dt.float64 if dev.fp64 else _dt.float32, out=out)
    return _finish(out, requires_grad)

"""keras.ops' core functions: conversion, casting, shapes, slicing and scatter, gradients stopped, control flow.

Control flow (cond, while_loop, fori_loop, scan, map) runs as Python on concrete tensors, as in Keras's
eager backends; inside a functional model being built they are recorded like any other op.
"""
from __future__ import annotations

import numpy as np

import clnet
from clnet import dtypes as _dt

from .. import tree
from .symbolic import KerasTensor, as_tensor, keras_op, same_spec, standardize_dtype


def convert_to_tensor(x, dtype=None, sparse=None, ragged=None):
    """A clnet tensor on the default device (Python floats become floatx, Python ints int32, as Keras)."""
    if isinstance(x, KerasTensor):
        return x if dtype is None else cast(x, dtype)
    return as_tensor(x, dtype)


def convert_to_numpy(x):
    if isinstance(x, clnet.Tensor):
        return x.detach().numpy()
    if isinstance(x, KerasTensor):
        raise x._no_value("convert it to a NumPy array")
    return np.asarray(x)


def is_tensor(x) -> bool:
    """True for clnet tensors (a KerasTensor is symbolic, not a backend tensor)."""
    return isinstance(x, clnet.Tensor)


def dtype(x) -> str:
    return x.dtype if isinstance(x, KerasTensor) else standardize_dtype(as_tensor(x).dtype)


def shape(x) -> tuple:
    """The shape as a tuple of ints (None for unknown sizes of a KerasTensor)."""
    if isinstance(x, KerasTensor):
        return x.shape
    return tuple(as_tensor(x).shape) if not hasattr(x, "shape") else tuple(x.shape)


@keras_op(spec=lambda x, dtype: KerasTensor(x.shape, standardize_dtype(dtype)))
def cast(x, dtype):
    t = as_tensor(x)
    target = _dt.as_dtype(standardize_dtype(dtype))
    if t.dtype == target:
        return t
    if target == _dt.bool_:
        return t != 0
    if not _dt.is_floating(target) and _dt.is_floating(t.dtype):
        t = clnet.sign(t) * clnet.floor(clnet.abs(t))  # truncate toward zero, as C and numpy casts
    return t.to(dtype=target)


@keras_op(spec=lambda x, dtype: KerasTensor(x.shape, standardize_dtype(dtype)))
def saturate_cast(x, dtype):
    target = standardize_dtype(dtype)
    t = as_tensor(x)
    if np.dtype(target).kind in "iu":
        info = np.iinfo(target)
        t = clnet.clamp(t, float(info.min), float(info.max))
    return cast(t, target)


@keras_op(spec=same_spec)
def stop_gradient(variable):
    return as_tensor(variable).detach()


@keras_op(spec=lambda x, start_indices, shape: KerasTensor(tuple(shape), x.dtype))
def slice(inputs, start_indices, shape):  # noqa: A001
    """inputs[start:start + shape] along every axis."""
    t = as_tensor(inputs)
    starts = [int(s) for s in (start_indices.numpy() if isinstance(start_indices, clnet.Tensor) else start_indices)]
    for axis, (start, size) in enumerate(zip(starts, shape)):
        size = t.shape[axis] - start if size in (-1, None) else int(size)
        t = t.narrow(axis, start, size)
    return t


@keras_op(spec=lambda inputs, start_indices, updates: KerasTensor(inputs.shape, inputs.dtype))
def slice_update(inputs, start_indices, updates):
    """A copy of inputs with the block at start_indices replaced by updates (differentiable in both)."""
    t, u = as_tensor(inputs), as_tensor(updates)
    starts = [int(s) for s in (start_indices.numpy() if isinstance(start_indices, clnet.Tensor) else start_indices)]
    mask = np.zeros(tuple(t.shape), dtype=bool)
    region = tuple(np.s_[s:s + n] for s, n in zip(starts, u.shape))
    mask[region] = True
    pad = []
    for axis in reversed(range(t.ndim)):
        pad += [starts[axis], t.shape[axis] - starts[axis] - u.shape[axis]]
    placed = clnet.nn.functional.pad(u.to(dtype=t.dtype), tuple(pad))
    return clnet.where(clnet.tensor(mask, device=t.device), placed, t)


def _flat_index(indices, shape):
    idx = np.asarray(indices.numpy() if isinstance(indices, clnet.Tensor) else indices, dtype=np.int64)
    depth = idx.shape[-1]
    strides = np.cumprod((list(shape[1:depth]) + [1])[::-1])[::-1]
    return (idx * strides).sum(-1), depth


def scatter(indices, values, shape):
    """A zero tensor of `shape` with `values` added at `indices` (rows of coordinates), as keras.ops.scatter."""
    v = as_tensor(values)
    shape = tuple(int(s) for s in shape)
    flat, depth = _flat_index(indices, shape)
    inner = int(np.prod(shape[depth:]))
    rows = int(np.prod(shape[:depth]))
    index = clnet.tensor(np.repeat(flat.reshape(-1, 1), inner, 1).astype(np.int64), device=v.device)
    out = clnet.scatter_add(clnet.zeros((rows, inner), dtype=v.dtype, device=v.device), 0, index,
                            v.reshape(-1, inner))
    return out.reshape(shape)


def scatter_update(inputs, indices, updates):
    """inputs with the entries at `indices` replaced by `updates`."""
    t, u = as_tensor(inputs), as_tensor(updates)
    flat, depth = _flat_index(indices, tuple(t.shape))
    inner = int(np.prod(t.shape[depth:]))
    mask = np.zeros((int(np.prod(t.shape[:depth])), inner), dtype=bool)
    mask[flat.reshape(-1)] = True
    placed = scatter(indices, u, tuple(t.shape)).reshape(mask.shape)
    flat_t = t.reshape(mask.shape)
    return clnet.where(clnet.tensor(mask, device=t.device), placed.to(dtype=t.dtype), flat_t).reshape(tuple(t.shape))


# --- control flow -----------------------------------------------------------------------------------
def _truth(pred):
    if isinstance(pred, clnet.Tensor):
        return bool(pred.item())
    return bool(pred)


def cond(pred, true_fn, false_fn):
    return true_fn() if _truth(pred) else false_fn()


def switch(index, branches, *operands):
    i = int(index.item()) if isinstance(index, clnet.Tensor) else int(index)
    return branches[max(0, min(i, len(branches) - 1))](*operands)


def while_loop(cond, body, loop_vars, maximum_iterations=None):  # noqa: A002
    single = not isinstance(loop_vars, (list, tuple))
    state = (loop_vars,) if single else tuple(loop_vars)
    steps = 0
    while _truth(cond(*state)) and (maximum_iterations is None or steps < maximum_iterations):
        out = body(*state)
        state = (out,) if single else tuple(out)
        steps += 1
    return state[0] if single else state


def fori_loop(lower, upper, body_fun, init_val):
    value = init_val
    for i in range(int(lower), int(upper)):
        value = body_fun(i, value)
    return value


def scan(f, init, xs=None, length=None, reverse=False, unroll=1):
    """lax.scan: carry through f(carry, x) over the leading axis of xs; returns (carry, stacked ys)."""
    n = length if xs is None else as_tensor(tree.flatten(xs)[0]).shape[0]
    order = range(n - 1, -1, -1) if reverse else range(n)
    carry, ys = init, []
    for i in order:
        x = None if xs is None else tree.map_structure(lambda a, i=i: as_tensor(a)[i], xs)
        carry, y = f(carry, x)
        ys.append(y)
    if reverse:
        ys.reverse()
    if not ys or ys[0] is None:
        return carry, None
    return carry, tree.map_structure(lambda *leaves: clnet.stack([as_tensor(v) for v in leaves], 0), *ys)


def map(f, xs):  # noqa: A001
    return tree.map_structure(lambda *leaves: clnet.stack([as_tensor(v) for v in leaves], 0),
                              *[f(tree.map_structure(lambda a, i=i: as_tensor(a)[i], xs))
                                for i in range(as_tensor(tree.flatten(xs)[0]).shape[0])])


def vectorized_map(function, elements):
    return map(function, elements)


def associative_scan(f, elems, reverse=False, axis=0):
    t = as_tensor(elems)
    moved = t.movedim(axis, 0)
    items = list(clnet.unbind(moved, 0))
    if reverse:
        items.reverse()
    acc, out = None, []
    for item in items:
        acc = item if acc is None else f(acc, item)
        out.append(acc)
    if reverse:
        out.reverse()
    return clnet.stack(out, 0).movedim(0, axis)


def unstack(x, num=None, axis=0):
    return list(clnet.unbind(as_tensor(x), int(axis)))


def custom_gradient(fn):
    """Keras's custom_gradient: fn returns (output, grad_fn(*upstream)) and grad_fn gives the inputs' gradients."""
    class _Custom(clnet.autograd.Function):
        @staticmethod
        def forward(ctx, *args):
            with clnet.enable_grad():
                out, grad_fn = fn(*args)
            ctx.grad_fn = grad_fn
            return out.detach() if isinstance(out, clnet.Tensor) else out

        @staticmethod
        def backward(ctx, *upstream):
            grads = ctx.grad_fn(*upstream)
            return tuple(grads) if isinstance(grads, (list, tuple)) else grads

    def wrapper(*args):
        return _Custom.apply(*[as_tensor(a) if not isinstance(a, clnet.Tensor) else a for a in args])
    return wrapper

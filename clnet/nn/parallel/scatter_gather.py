"""scatter / gather / replicate: the moves nn.DataParallel makes between devices, all differentiable.

OpenCL contexts cannot share buffers, so every move between devices goes through the host
(Tensor.to(device)); autograd records it, so gradients travel back the same way and the parameters'
gradients are summed on the device that owns them.
"""
from __future__ import annotations

import collections.abc
from collections import OrderedDict

from ...ops.movement import chunk, concat
from ...tensor import Tensor


def scatter(inputs, devices, dim=0):
    """Split every tensor in `inputs` (nested lists/tuples/dicts) into len(devices) chunks along dim, chunk i
    moved to devices[i]; other values are repeated. Fewer chunks when the batch is smaller than the devices."""
    def parts(x):
        if isinstance(x, Tensor):
            pieces = chunk(x, len(devices), dim)
            return [p.to(d) for p, d in zip(pieces, devices)]
        if isinstance(x, tuple) and hasattr(x, "_fields"):
            return [type(x)(*row) for row in zip(*(parts(v) for v in x))]
        if isinstance(x, (list, tuple)):
            columns = [parts(v) for v in x]
            return [type(x)(row) for row in zip(*columns)] if columns else [type(x)()] * len(devices)
        if isinstance(x, collections.abc.Mapping):
            keys = list(x)
            columns = [parts(x[k]) for k in keys]
            return [type(x)(zip(keys, row)) for row in zip(*columns)] if columns else [type(x)()] * len(devices)
        return [x] * len(devices)
    return parts(inputs)


def scatter_kwargs(inputs, kwargs, devices, dim=0):
    """(inputs per device, kwargs per device), as many as the smaller of the two has chunks."""
    ins = scatter(tuple(inputs), devices, dim) if inputs else []
    kws = scatter(dict(kwargs), devices, dim) if kwargs else []
    n = max(len(ins), len(kws))
    ins = (ins + [()] * n)[:n] if ins else [()] * n
    kws = (kws + [{}] * n)[:n] if kws else [{}] * n
    return ins, kws


def gather(outputs, target_device, dim=0):
    """The replicas' outputs on target_device, joined along dim (0-d tensors are stacked into a vector)."""
    first = outputs[0]
    if isinstance(first, Tensor):
        moved = [o.to(target_device) for o in outputs]
        if first.ndim == 0:
            moved = [m.reshape(1) for m in moved]
        return concat(moved, dim)
    if first is None:
        return None
    if isinstance(first, collections.abc.Mapping):
        return type(first)((k, gather([o[k] for o in outputs], target_device, dim)) for k in first)
    if isinstance(first, tuple) and hasattr(first, "_fields"):
        return type(first)(*(gather(list(col), target_device, dim) for col in zip(*outputs)))
    if isinstance(first, (list, tuple)):
        return type(first)(gather(list(col), target_device, dim) for col in zip(*outputs))
    return first


def replicate(module, devices, detach=False):
    """Copies of `module` on each device whose parameters are differentiable copies of the originals
    (gradients flow back to them). A replica on the module's own device is the module itself."""
    source = _device_of(module)
    out = []
    for dev in devices:
        if dev is source:
            out.append(module)
        else:
            out.append(_copy_module(module, dev, detach, {}))
    return out


def _device_of(module):
    for t in list(module.parameters()) + list(module.buffers()):
        return t.device
    return None


def _copy_module(m, dev, detach, memo):
    if id(m) in memo:
        return memo[id(m)]
    replica = object.__new__(type(m))
    replica.__dict__.update(m.__dict__)
    memo[id(m)] = replica
    params = OrderedDict()
    for name, p in m._parameters.items():
        params[name] = None if p is None else (p.detach().to(dev) if detach else p.to(dev))
    replica.__dict__["_parameters"] = params
    replica.__dict__["_buffers"] = OrderedDict(
        (name, None if b is None else b.detach().to(dev)) for name, b in m._buffers.items())
    replica.__dict__["_modules"] = OrderedDict(
        (name, None if c is None else _copy_module(c, dev, detach, memo)) for name, c in m._modules.items())
    return replica

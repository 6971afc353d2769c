"""nn.DataParallel: one process drives several OpenCL devices (two GPUs, or a GPU and the CPU).

Each forward splits the batch along `dim` into one chunk per device, runs a replica of the module on
each (the replica on the first device is the module itself; the others get differentiable copies of its
parameters), and joins the outputs on `output_device`. Kernels are queued on every device before any
result is read, so the devices compute at the same time; backward sends the gradients back the same way
and sums them into the parameters on the first device, as PyTorch's DataParallel does. Buffer updates
made by the other replicas (BatchNorm running statistics) are dropped; the first device's are kept.
"""
from __future__ import annotations

from ...backend.devices import all_devices, get_device
from ..module import Module
from .scatter_gather import gather, replicate, scatter_kwargs


def _default_devices(module):
    """device_ids=None: every GPU when there are several, else just the module's device."""
    gpus = [d for d in all_devices() if d.type == "gpu" and not d.is_simulator]
    if len(gpus) > 1:
        return gpus
    for t in module.parameters():
        return [t.device]
    return [get_device(None)]


class DataParallel(Module):
    """DataParallel(module, device_ids=None, output_device=None, dim=0)."""

    def __init__(self, module, device_ids=None, output_device=None, dim=0):
        super().__init__()
        self.module = module
        devices = [get_device(d) for d in device_ids] if device_ids else _default_devices(module)
        if len({id(d) for d in devices}) != len(devices):
            raise ValueError(f"DataParallel: device_ids name the same device twice: {[str(d) for d in devices]}")
        self.device_ids = devices
        self.output_device = get_device(output_device) if output_device is not None else devices[0]
        self.src_device = devices[0]
        self.dim = dim
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            if t.device is not self.src_device:
                raise RuntimeError(f"module must have its parameters and buffers on device {self.src_device} "
                                   f"(device_ids[0]) but found {name} on device: {t.device}")

    def forward(self, *inputs, **kwargs):
        if len(self.device_ids) == 1:
            return self.module(*inputs, **kwargs)
        ins, kws = scatter_kwargs(inputs, kwargs, self.device_ids, self.dim)
        if not ins:
            return self.module(*inputs, **kwargs)
        replicas = replicate(self.module, self.device_ids[:len(ins)])
        outputs = [replica(*i, **k) for replica, i, k in zip(replicas, ins, kws)]
        return gather(outputs, self.output_device, self.dim)

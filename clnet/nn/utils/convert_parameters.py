"""All parameters as one flat vector and back (e.g. for second-order or evolutionary methods)."""
from __future__ import annotations

from ...autograd import no_grad
from ...ops import movement as _mv
from ...tensor import Tensor


def parameters_to_vector(parameters) -> Tensor:
    """The parameters flattened and concatenated, in order (differentiable)."""
    params = list(parameters)
    if not params:
        raise ValueError("parameters_to_vector: no parameters given")
    device = params[0].device
    for p in params:
        if p.device is not device:
            raise TypeError(f"parameters_to_vector: found parameters on {device} and {p.device}; move them to one "
                            "device")
    return _mv.concat([_mv.reshape(p, (-1,)) for p in params])


def vector_to_parameters(vec: Tensor, parameters) -> None:
    """Copy consecutive slices of `vec` into the parameters (in place, keeping their identity)."""
    if not isinstance(vec, Tensor):
        raise TypeError(f"expected torch.Tensor, but got: {type(vec).__name__}")
    params = list(parameters)
    total = sum(p.numel() for p in params)
    if vec.ndim != 1 or vec.shape[0] != total:
        raise ValueError(f"vector_to_parameters: vec must be 1-D with {total} values, got shape {tuple(vec.shape)}")
    pointer = 0
    with no_grad():
        for p in params:
            n = p.numel()
            p.copy_(_mv.reshape(vec[pointer:pointer + n], p.shape))
            pointer += n

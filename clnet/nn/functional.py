"""clnet.nn.functional: stateless layer math with PyTorch's names and signatures.

    import clnet.nn.functional as F
    loss = F.cross_entropy(model(x), labels)

Everything here is a thin front to clnet.ops (one implementation of every piece of math, shared with
clnet.keras): fused kernels for softmax, cross-entropy and the pointwise losses, layer/group norm
(clnet.ops.norm), attention (clnet.ops.attention), the conv/pool kernels of clnet.ops.conv, and
autograd-recorded compositions elsewhere. The basics live in this file; the rest by topic in
clnet.nn.functions (activation, conv, pooling, sampling, normalization, loss, attention, embedding).
"""
from __future__ import annotations

import numbers

from .. import dtypes as _dt
from ..autograd import no_grad
from ..ops import batchnorm as _bn
from ..ops import conv as _conv
from ..ops import elementwise as _ew
from ..ops import matmul as _mm
from ..ops import movement as _mv
from ..ops import nn as _nn
from ..ops import reduce as _red
from ..ops.nn import (softmax, log_softmax, cross_entropy, nll_loss, mse_loss, l1_loss,  # noqa: F401
                      binary_cross_entropy, binary_cross_entropy_with_logits)
from ..core.dispatch import op
from ..tensor import Tensor
from .functions.activation import *  # noqa: F401,F403
from .functions.activation import __all__ as _activation_all
from .functions.attention import *  # noqa: F401,F403
from .functions.attention import __all__ as _attention_all
from .functions.conv import conv1d, conv2d, conv_transpose1d, conv_transpose2d  # noqa: F401
from .functions.embedding import *  # noqa: F401,F403
from .functions.embedding import __all__ as _embedding_all
from .functions.loss import *  # noqa: F401,F403
from .functions.loss import __all__ as _loss_all
from .functions.normalization import *  # noqa: F401,F403
from .functions.normalization import __all__ as _norm_all
from .functions.pooling import *  # noqa: F401,F403
from .functions.pooling import __all__ as _pool_all
from .functions.sampling import *  # noqa: F401,F403
from .functions.sampling import __all__ as _sampling_all


def _check_tensor(x, fn, what="input"):
    if not isinstance(x, Tensor):
        raise TypeError(f"{fn}: {what} must be a clnet Tensor, got {type(x).__name__}")


# --- activations -------------------------------------------------------------------------------------
def relu(input: Tensor, inplace: bool = False) -> Tensor:
    _check_tensor(input, "relu")
    return input.relu_() if inplace else _ew.relu(input)


def sigmoid(input: Tensor) -> Tensor:
    _check_tensor(input, "sigmoid")
    return _ew.sigmoid(input)


def tanh(input: Tensor) -> Tensor:
    _check_tensor(input, "tanh")
    return _ew.tanh(input)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """x for x >= 0, negative_slope * x below (one kernel each way)."""
    _check_tensor(input, "leaky_relu")
    y = _nn._pointwise("leaky_relu", "(v0 < 0 ? v0 * v1 : v0)", [input, float(negative_slope)],
                       {0: "(v0 < 0 ? v2 * v1 : v2)"}, input.dtype)
    if inplace:
        with no_grad():
            input.copy_(y)
        return input
    return y


# --- linear and convolution -----------------------------------------------------------------------------
def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """input @ weight.T + bias, with weight (out_features, in_features) as in PyTorch.

    Any leading dimensions of input are batch dimensions. Uses clnet.ops.matmul's fused
    linear (matmul + bias in one kernel) when that exists.
    """
    _check_tensor(input, "linear")
    _check_tensor(weight, "linear", "weight")
    if weight.ndim != 2:
        raise ValueError(f"linear: weight must be 2-D (out_features, in_features), got {tuple(weight.shape)}")
    if input.ndim == 0 or input.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input of shape {tuple(input.shape)} does not end in in_features="
                         f"{weight.shape[1]} of the weight {tuple(weight.shape)}")
    if bias is not None:
        _check_tensor(bias, "linear", "bias")
        if tuple(bias.shape) != (weight.shape[0],):
            raise ValueError(f"linear: bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    fused = getattr(_mm, "linear", None)
    if fused is not None:
        return fused(input, weight, bias)
    lead = input.shape[:-1]
    x2 = input if input.ndim == 2 else _mv.reshape(input, (-1, weight.shape[1]))
    y = _mm.mm(x2, _mv.transpose(weight, 0, 1))
    if bias is not None:
        y = y + bias
    return y if input.ndim == 2 else _mv.reshape(y, lead + (weight.shape[0],))


def _pair(v):
    return (v, v) if isinstance(v, numbers.Integral) else tuple(v)


def _pool_args(fn, dilation=1, ceil_mode=False, **unsupported):
    if _pair(dilation) != (1, 1):
        raise NotImplementedError(f"{fn}: dilation={dilation} is not supported (only 1)")
    if ceil_mode:
        raise NotImplementedError(f"{fn}: ceil_mode=True is not supported")
    for name, (value, default) in unsupported.items():
        if value != default:
            raise NotImplementedError(f"{fn}: {name}={value!r} is not supported (only {default!r})")


def max_pool2d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Max over kernel_size windows of NCHW input; stride defaults to kernel_size."""
    _check_tensor(input, "max_pool2d")
    _pool_args("max_pool2d", dilation, ceil_mode)
    return _conv.max_pool2d(input, kernel_size, stride, padding, return_indices=return_indices)


def avg_pool2d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Mean over kernel_size windows of NCHW input (padding counts as zeros)."""
    _check_tensor(input, "avg_pool2d")
    _pool_args("avg_pool2d", 1, ceil_mode, count_include_pad=(count_include_pad, True),
               divisor_override=(divisor_override, None))
    return _conv.avg_pool2d(input, kernel_size, stride, padding)


# --- dropout --------------------------------------------------------------------------------------------
def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each element with probability p and scale the rest by 1 / (1 - p); identity unless training.

    The mask is made on the device by clnet.ops.random.dropout_mask (Philox, seeded by clnet.manual_seed).
    """
    _check_tensor(input, "dropout")
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    from ..ops.random import dropout_mask
    mask = dropout_mask(input.shape, float(p), device=input.device,
                        dtype=input.dtype if _dt.is_floating(input.dtype) else None)
    # v0 = x, v1 = the mask (0 or 1 / (1 - p)), v2 = incoming gradient
    y = _nn._pointwise("dropout", "v0 * v1", [input, mask], {0: "v2 * v1"}, input.dtype)
    if inplace:
        with no_grad():
            input.copy_(y)
        return input
    return y


# --- normalisation ----------------------------------------------------------------------------------------
def batch_norm(input: Tensor, running_mean, running_var, weight=None, bias=None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalise each channel (dim 1) of (N, C, ...) input by batch statistics (training) or the running
    ones (eval), then scale by weight and shift by bias.

    In training the running statistics, when given, are updated in place:
    running = (1 - momentum) * running + momentum * batch (the variance unbiased), as in PyTorch.
    Two passes over the activations each way (clnet.ops.batchnorm); the gradient flows through the batch
    statistics.
    """
    _check_tensor(input, "batch_norm")
    return _bn.batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)


# --- misc -----------------------------------------------------------------------------------------------
@op("one_hot")
def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """int64 one-hot encoding along a new last dimension (num_classes=-1 reads max + 1 from the data)."""
    _check_tensor(tensor, "one_hot")
    if tensor.dtype.kind not in "iu":
        raise TypeError(f"one_hot: expects an integer tensor of class indices, got {tensor.dtype.name}")
    if num_classes < 0:
        num_classes = int(_red.amax(tensor).item()) + 1 if tensor.numel() else 0
    from ..ops.creation import arange
    classes = arange(num_classes, dtype=tensor.dtype, device=tensor.device)
    return _ew.launch("v0 == v1", [_mv.unsqueeze(tensor, -1), classes], _dt.int64, tensor.dtype)


def flatten(input: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    return _mv.flatten(input, start_dim, end_dim)


__all__ = (["relu", "sigmoid", "tanh", "leaky_relu", "softmax", "log_softmax", "linear", "conv1d", "conv2d",
            "conv_transpose1d", "conv_transpose2d", "max_pool2d", "avg_pool2d", "dropout", "batch_norm",
            "one_hot", "flatten", "mse_loss", "l1_loss", "cross_entropy", "nll_loss", "binary_cross_entropy",
            "binary_cross_entropy_with_logits"]
           + _activation_all + _attention_all + _embedding_all + _loss_all + _norm_all + _pool_all + _sampling_all)

"""The ops layer: every computation on tensors, each op next to its gradient rule.

Modules in import order (each imports only the ones above it, and clnet.core below them all):
shapes       broadcasting, axes, reshape strides (pure Python)
elementwise  C-expression ops with broadcasting: the UNARY/BINARY rows, pointwise(), the launcher
creation     tensor/zeros/ones/full/arange/eye; to_numpy (the device->host read)
movement     views and copies: reshape, permute, basic getitem, concat, split, flip, pad
reduce       sum/mean/max/min/arg*/var/logsumexp (kernels/reduce.cl.mako)
broadcast    expand/repeat and sum_to, the adjoint of broadcasting
indexing     x[key] and x[key] = value for every key, gather/scatter, masks
random       device-side Philox rand/randn/dropout masks
matmul       mm/bmm/matmul, matmul_ex/linear with a fused epilogue
conv_gemm    implicit-GEMM convolution kernels (stride 1, strided as phase sums)
conv_winograd Winograd F(2x2|4x4, 3x3) convolution kernels
conv_select  which convolution algorithm runs each pass
conv         conv2d, max/avg pooling
batchnorm    batch normalisation in two passes each way (optionally with the ReLU after it)
nn           softmax, fused cross-entropy, pointwise losses
arith        lerp/addcmul/addcdiv/nan_to_num/isclose, division with a rounding mode (pointwise kernels)
scan         cumsum/cumprod (kernels/scan.cl.mako)
sort         sort/argsort/topk/kthvalue/unique (kernels/sort.cl.mako)
structure    tril/triu, diagonal/diag/diag_embed, roll, meshgrid, take_along_dim
linalg       dot/outer/addmm/baddbmm/tensordot/einsum, p-norms
sampling     normal/bernoulli/multinomial, logspace
docs/architecture.md says how to add an op.
"""
from . import shapes, elementwise, creation, movement, reduce, broadcast, indexing  # noqa: F401
from . import random, matmul, conv_gemm, conv_winograd, conv_select, conv, batchnorm, nn  # noqa: F401
from . import arith, scan, sort, structure, linalg, sampling  # noqa: F401

"""keras.ops: the backend-agnostic math of Keras 3 programs (`from keras import ops`), on clnet tensors.

Each function runs eagerly on clnet tensors (numpy arrays and Python numbers are converted), and on
symbolic KerasTensors records itself into the functional model being built (ops.symbolic).
"""
from . import core, linalg, math, nn, numpy  # noqa: F401
from .array import (append, array_split, bincount, broadcast_to, concatenate, cross, diag, diagflat,  # noqa: F401
                    diagonal, diff, dot, dsplit, dstack, einsum, expand_dims, flip, fliplr, flipud, hsplit,
                    hstack, inner, kron, meshgrid, moveaxis, ndim, nonzero, outer, pad, ravel, repeat, roll,
                    select, size, sort, argsort, split, stack, swapaxes, take, take_along_axis, tensordot, tile,
                    trace, tril, triu, unstack, vdot, vsplit, vstack)
from .core import (associative_scan, cast, cond, convert_to_numpy, convert_to_tensor, custom_gradient,  # noqa: F401
                   dtype, fori_loop, is_tensor, map, saturate_cast, scan, scatter, scatter_update, shape, slice,
                   slice_update, stop_gradient, switch, vectorized_map, while_loop)
from .linalg import norm  # noqa: F401
from .math import (erfc, erfinv, extract_sequences, in_top_k, logdet, segment_max, segment_sum,  # noqa: F401
                   top_k)
from .nn import (average_pool, batch_normalization, binary_crossentropy, categorical_crossentropy,  # noqa: F401
                 celu, conv, conv_transpose, depthwise_conv, dot_product_attention, elu, erf, gelu, glu,
                 hard_shrink, hard_sigmoid, hard_silu, hard_swish, hard_tanh, layer_normalization, leaky_relu,
                 log_sigmoid, log_softmax, max_pool, moments, multi_hot, normalize, one_hot, psnr, relu, relu6,
                 rms_normalization, selu, separable_conv, sigmoid, silu, soft_shrink, softmax, softplus, softsign,
                 sparse_categorical_crossentropy, sparse_plus, squareplus, swish, tanh_shrink, threshold)
from .numpy import (abs, absolute, add, all, allclose, amax, amin, any, arange, arccos, arccosh,  # noqa: F401,A004
                    arcsin, arcsinh, arctan, arctan2, arctanh, argmax, argmin, array, average, cbrt, ceil, clip,
                    conj, conjugate, copy, cos, cosh, count_nonzero, cumprod, cumsum, deg2rad, divide,
                    divide_no_nan, empty, empty_like, equal, exp, exp2, expm1, eye, fabs, floor, floor_divide, fmax,
                    fmin, fmod, full, full_like, geomspace, get_item, greater, greater_equal, heaviside, hypot,
                    identity, isclose, isfinite, isinf, isnan, isneginf, isposinf, less, less_equal, linspace, log,
                    log10, log1p, log2, logaddexp, logaddexp2, logical_and, logical_not, logical_or, logical_xor,
                    logspace, logsumexp, matmul, max, maximum, mean, min, minimum, mod, multiply, nan_to_num,
                    negative, not_equal, ones, ones_like, positive, power, prod, ptp, rad2deg, real, reciprocal,
                    reshape, round, rsqrt, sign, signbit, sin, sinc, sinh, sqrt, square, squeeze, std, subtract,
                    sum, tan, tanh, transpose, tri, true_divide, trunc, var, where, zeros, zeros_like)
from .symbolic import KerasTensor, is_keras_tensor  # noqa: F401

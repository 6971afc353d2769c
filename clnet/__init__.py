"""clnet: deep learning on any OpenCL device, with PyTorch- and Keras-style APIs.

    import clnet
    x = clnet.randn(64, 1000, device="cpu")
"""
from . import dtypes
from .dtypes import float16, float32, float64, int8, int16, int32, int64, bool_, uint8, half, double, long, short
from .dtypes import bool_ as bool, float, int  # noqa: A001  (clnet.bool, clnet.float, clnet.int: as torch's)
from .dtypes import dtype, finfo, iinfo, get_default_dtype, set_default_dtype
from .size import Size
from .errors import (ClnetError, DeviceNotFoundError, KernelBuildError, OutOfMemoryError, DtypeNotSupportedError,
                     FileFormatError)
from .backend.devices import Device, all_devices as devices, device, set_default_device
from .backend.devices import default_device
from .tensor import Tensor, is_tensor
from . import autograd
from .autograd import no_grad, enable_grad, is_grad_enabled, set_grad_enabled
from .ops.creation import (tensor, from_numpy, convert_to_tensor, empty, zeros, ones, full, arange, eye,
                           linspace, zeros_like, ones_like, full_like, empty_like)
from .ops.random import manual_seed, rand, randn, randint, randperm, rand_like, randn_like
from .ops.elementwise import (add, sub, mul, div, pow, maximum, minimum, exp, log, sqrt, tanh, sigmoid, relu,
                              abs, neg, sign, clamp, where, sin, cos, square, eq, ne, lt, le, gt, ge,
                              logical_and, logical_or, logical_not, logical_xor, isnan, isinf, reciprocal,
                              rsqrt, log1p, expm1, floor, ceil, round, floor_divide, remainder)
from .ops.reduce import sum, mean, amax, amin, argmax, argmin, max, min, prod, var, std, logsumexp, any, all
from .ops.movement import (reshape, transpose, permute, flatten, squeeze, unsqueeze, concat, stack, clone,
                           contiguous, flip, split, chunk, movedim, narrow, unbind)
from .ops.broadcast import expand, repeat, tile, broadcast_to
from .ops.indexing import (gather, index_select, take, masked_fill, masked_select, nonzero, scatter_add)
from .ops.matmul import matmul, mm, bmm
from .gradient_tape import GradientTape, Variable
from .serialization import save, load
from .generator import Generator  # noqa: E402  (data-pipeline shuffling; issue 15)
from . import nn  # noqa: E402  (clnet.nn after `import clnet`)
from . import optim  # noqa: E402  (clnet.optim after `import clnet`)
from . import accelerator, backends, cuda  # noqa: E402  (PyTorch's device spellings, docs/pytorch.md)
# PyTorch's functions with their keyword arguments (input=, other=, out=, alpha=, ...): these names replace the
# plain ops imported above (docs/pytorch.md lists them)
from .functions import (  # noqa: E402,F811
    abs, absolute, acos, arccos, acosh, arccosh, add, addbmm, addcdiv, addcmul, addmm, addmv, addr, allclose,
    arcsin, arcsinh, arctan, arctan2, arctanh, argsort, as_tensor, asin, asinh, atan, atan2, atanh, baddbmm, bmm,
    cat, ceil, clamp, clamp_max, clamp_min, clip, concat, concatenate, cos, cosh, cumprod, cumsum, div, divide,
    dot, eq, equal, erf, erfc, exp, exp2, expm1, fix, float_power, floor, floor_divide, fmax, fmin, fmod, frac,
    ge, ger, greater, greater_equal, gt, hstack, hypot, is_floating_point, is_nonzero, isclose, isfinite, isinf,
    isnan, kthvalue, le, lerp, less, less_equal, log, log10, log1p, log2, log_softmax, logical_and, logical_not,
    logical_or, logical_xor, lt, matmul, maximum, minimum, mm, mul, multiply, mv, nan_to_num, ne, neg, negative,
    not_equal, numel, outer, pow, reciprocal, relu, remainder, round, rsqrt, scalar_tensor, sgn, sigmoid, sign,
    sin, sinh, softmax, sort, sqrt, square, stack, std_mean, sub, subtract, tan, tanh, topk, true_divide, trunc,
    var_mean, vdot, vstack, where, rand, randn, randint, randperm, normal, bernoulli, multinomial)
from .ops.sort import msort, unique  # noqa: E402
from .ops.structure import diag, diag_embed, diagonal, meshgrid, roll, take_along_dim, tril, triu  # noqa: E402
from .ops.linalg import cross, dist, einsum, norm, tensordot, trace  # noqa: E402
from .ops.sampling import logspace, randint_like  # noqa: E402
from .ops.indexing import scatter  # noqa: E402
from .tensor_types import (BoolTensor, ByteTensor, CharTensor, DoubleTensor, FloatTensor, HalfTensor,  # noqa: E402
                           IntTensor, LongTensor, ShortTensor)
from . import linalg  # noqa: E402  (torch.linalg: norm, vector_norm, matrix_norm)
from . import compiler  # noqa: E402  (static graphs: trace, compile, function; issue 12)
from .compiler import compile, function  # noqa: E402,A001  (torch.compile / tf.function spellings)

reduce_sum, reduce_mean, reduce_max, reduce_min = sum, mean, amax, amin



class _RandomNamespace:
    """`clnet.random.uniform/normal`, TensorFlow's spellings (the lecture's tf.random.uniform)."""

    from .ops.random import uniform, normal
    uniform, normal = staticmethod(uniform), staticmethod(normal)
    set_seed = staticmethod(manual_seed)


random = _RandomNamespace()

__version__ = "0.1.0"


# PyTorch names clnet does not have, with what to use instead (the AttributeError says it).
_NOT_IN_CLNET = {
    "bfloat16": "clnet has no bfloat16: use clnet.float16 (devices with cl_khr_fp16) or clnet.float32",
    **{n: "clnet has no complex dtypes" for n in ("complex32", "complex64", "complex128", "cfloat", "cdouble",
                                                  "chalf")},
    **{n: f"clnet has no {n}: use clnet.int32 or clnet.int64" for n in ("uint16", "uint32", "uint64")},
    **{n: "clnet has no 8-bit float dtypes" for n in ("float8_e4m3fn", "float8_e5m2")},
}
# utils, data, distributed and distribute (issue 15) load multiprocessing and are only needed by programs
# that name them (`torch.utils.data`, `tf.data`, `torch.distributed`, `tf.distribute`).
_ON_FIRST_USE = ("keras", "onnx", "jit", "utils", "data", "distributed", "distribute")
_TF_ALIASES = {"optimizers": ".keras.optimizers", "losses": ".keras.losses"}


def _did_you_mean(name):
    """PyTorch-style hint for a misspelt name: the closest public names (`clnet.flot` -> float, float16, ...)."""
    import difflib
    public = [n for n in globals() if not n.startswith("_")] + list(_ON_FIRST_USE)
    close = difflib.get_close_matches(name, public, n=3, cutoff=0.75)
    if not close:
        return ""
    first = globals().get(close[0])
    what = f" ({first})" if isinstance(first, dtype) else ""
    return "did you mean " + ", ".join(f"clnet.{c}" for c in close) + what + "?"


def __getattr__(name):
    """`clnet.keras` is imported on first use (`from clnet import keras` or `clnet.keras.X`): it adds about
    0.15-0.3 s to `import clnet` that PyTorch-style programs never need. So are `clnet.onnx` and `clnet.jit`
    (`torch.onnx` / `torch.jit` programs spell them `clnet.onnx.export(...)` without importing them)."""
    if name in _ON_FIRST_USE:
        import importlib
        return importlib.import_module("." + name, __name__)
    if name in _TF_ALIASES:  # tf.optimizers / tf.losses: TensorFlow's short names of the Keras modules
        import importlib
        return importlib.import_module(_TF_ALIASES[name], __name__)
    hint = _NOT_IN_CLNET.get(name) or _did_you_mean(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}" + (f" ({hint})" if hint else ""))

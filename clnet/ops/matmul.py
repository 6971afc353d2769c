"""Matrix products: mm, bmm, matmul (numpy/PyTorch rules) and matmul_ex/linear with a fused epilogue.

All of them end in `_gemm`, which runs kernels/matmul.cl.mako in the variant the device profile picks:

- "cpu" (PoCL and other CPU drivers): B is packed once into NR-wide panels (any source layout, so a
  transposed operand costs nothing extra), A is read through its strides when its rows are contiguous
  and packed into MR-wide panels otherwise; one work-item keeps an MR x NR block of C in vector
  registers. No local memory, no barriers: that is what CPU OpenCL compilers turn into fast code.
- "gpu": local-memory tiles with per-work-item register blocks; operands are read through their
  strides directly (transposes included), tiles past the edges are zero-filled.

Sizes and strides are kernel arguments, so a new shape never recompiles. The epilogue
`act(alpha * (A @ B) + beta * out + bias)` runs inside the GEMM's store, so nn.Linear is one kernel.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import dtypes as _dt
from ..backend import caches
from ..backend.programs import ctype, get_kernel
from ..core import dispatch
from ..core.dispatch import op
from ..core.storage import TensorBase, contiguous_strides
from ..core.tape import needs_grad, record
from .broadcast import expand, sum_to
from .creation import tensor
from .elementwise import gt, mul
from .movement import contiguous, reshape, transpose, unsqueeze, squeeze
from .shapes import broadcast_shapes

_INT_MAX = 2**31 - 1
_ACTIVATIONS = (None, "relu")
_i32 = np.dtype(np.int32)
_EPI_BETA, _EPI_BIAS, _EPI_RELU = 1, 2, 4   # the kernels' `epi` bits (kernels/matmul.cl.mako)


# --- checks ----------------------------------------------------------------------------------------
def _check(a, b, name):
    if not isinstance(a, TensorBase) or not isinstance(b, TensorBase):
        raise TypeError(f"{name} expects tensors, got {type(a).__name__} and {type(b).__name__}")
    if a.device is not b.device:
        raise ValueError(f"{name}: tensors are on different devices ({a.device} and {b.device}); "
                         "move one with .to(device)")
    if a.dtype != b.dtype:
        raise TypeError(f"{name}: dtypes differ ({a.dtype.name} and {b.dtype.name}); convert one with .to()")
    if not _dt.is_floating(a.dtype):
        raise TypeError(f"{name} needs floating-point tensors, got {a.dtype.name}")


def _check_extra(name, like, t, what):
    """bias / out must live on the same device with the same dtype as the operands."""
    if not isinstance(t, TensorBase):
        raise TypeError(f"{name}: {what} must be a Tensor, got {type(t).__name__}")
    if t.device is not like.device:
        raise ValueError(f"{name}: {what} is on {t.device} but the operands are on {like.device}")
    if t.dtype != like.dtype:
        raise TypeError(f"{name}: {what} has dtype {t.dtype.name} but the operands are {like.dtype.name}")


# --- launch ----------------------------------------------------------------------------------------
def _acc_ctype(dtype):
    return "float" if dtype == _dt.float16 else ctype(dtype)


def _dummy(device):
    """A valid buffer to pass for unused pointer arguments (the kernel never reads it)."""
    buf = getattr(device, "_matmul_dummy", None)
    if buf is None:
        buf = device.pool.allocate(64)
        device._matmul_dummy = buf
    return buf


def _cpu_block(prof, dtype, M, N):
    """Register block (MR, NR) and vector width VW of the CPU kernel.

    VW is the profile's float vector width (the device's preferred one: 16 with AVX-512, 8 with AVX2),
    halved for float64, between 4 (2 for float64) and 16 lanes. Each row of the block holds
    wpt_n / 16 such vectors (8 x 32 floats in 16 of AVX-512's 32 zmm registers). The accumulators must
    leave registers for A's broadcast and B's vectors: with 16 vector registers (AVX2, 8 lanes) an
    8 x 16 block (16 accumulators) spills in the K loop, so such blocks become 4 x 3 vectors (12
    accumulators): SGEMM per CPU-second on our AVX2 EPYC, PoCL 1 thread, n=1024: 8x16 16-17 GFLOP/s,
    4x24 31-32 (the speed engineer's measurement, issue 17). Thin products (matmul_shape_class: an output
    side under 256) take 6 x 2 vectors instead (12 accumulators too, one B vector fewer live, less padding
    along a short N): the two-layer net's 64x100x1000 ran in 0.68-0.72 ms vs 1.22-1.34 with 4x24, its
    1000x100x64 weight gradient 0.78-1.27 vs 1.36-1.78 (PoCL, 2 loaded cores, best of 5-7 alternated runs);
    the MLP's 256x512x784 products were unchanged either way. Small M or N take a smaller block.
    """
    width = 16
    while width > 4 and width > prof.vector_width:
        width //= 2
    vw = width // 2 if dtype.itemsize == 8 else width
    mr = max(1, prof.matmul_wpt_m)
    nr = max(1, prof.matmul_wpt_n // 16) * vw
    registers = 32 if width >= 16 else 16
    if mr * (nr // vw) > registers - 4:
        mr, nr = (6, 2 * vw) if min(M, N) < 256 else (4, 3 * vw)
    if M < mr:
        mr = min(mr, 1 << (M - 1).bit_length())
    if N <= vw:
        nr = vw
    return mr, nr, vw


def _pack(device, src, rows, K, s_sb, s_sr, s_sk, batches, R, vw):
    """Copy a strided [batches, rows, K] operand into panels [batches][ceil(rows/R)][K][R] (zero padded)."""
    panels = -(-rows // R)
    t = "ushort" if src.dtype == _dt.float16 else ctype(src.dtype)
    total = batches * panels * K * R
    if total > _INT_MAX:
        raise ValueError(f"matmul operand too large for 32-bit indexing ({total} packed elements)")
    buf = device.pool.allocate(total * src.dtype.itemsize)
    if total == 0:
        return buf
    kern = _kernel(device, "pack", [_i32, _i32, None] + [_i32] * 4 + [None, _i32], t=t, R=R, VW=vw, unit=s_sr == 1)
    lk = 16
    dispatch.launch(device, kern, (-(-K // lk) * lk, panels, batches), (lk, 1, 1),
                    [rows, K, src._buf, src.offset, s_sb, s_sr, s_sk, buf, panels])
    return buf


# Operands of the CPU kernel are read in place while they are small (they stay in cache, and a launch
# is saved); bigger ones are packed once so the K loop streams contiguous memory (strided rows of a big
# operand thrash the cache: measured 2-3x slower at n=1024).
_DIRECT_B_BYTES = 512 * 1024    # B with unit stride along N and at most this size is read directly
_DIRECT_ANY_ELEMS = 16384       # any B (e.g. transposed) this small is read directly, gathering
_DIRECT_A_ELEMS = 128 * 1024    # A whose rows are not contiguous is packed above this many elements
_GEMM_ARGS = [_i32] * 3 + ([None] + [_i32] * 4) * 2 + [None] + [_i32] * 3 + [None, _i32]


def _cpu_b_operand(device, b, Bt, K, N, nr, vw):
    """Kernel arguments (B, b_off, b_sb, b_sk, b_sn), b_mode and b_nc for the CPU GEMM."""
    b_sb, b_sk, b_sn = b.strides
    b_nc = b_sn == 1 or N == 1
    if (b_nc and K * N * b.dtype.itemsize <= _DIRECT_B_BYTES) or K * N <= _DIRECT_ANY_ELEMS:
        return (b._buf, b.offset, b_sb, b_sk, b_sn), "direct", b_nc
    batches = 1 if Bt == 1 or b_sb == 0 else Bt
    bp = _pack(device, b, N, K, b_sb, b_sn, b_sk, batches, nr, vw)
    return (bp, 0, 0 if batches == 1 else -(-N // nr) * K * nr, nr, 1), "panels", False


def _cpu_a_operand(device, a, Bt, M, K, mr, vw):
    """Kernel arguments (A, a_off, a_sb, a_sm, a_sk) and a_mode for the CPU GEMM."""
    a_sb, a_sm, a_sk = a.strides
    a_kc = a_sk == 1 or K == 1
    if a_kc or M * K <= _DIRECT_A_ELEMS:
        return (a._buf, a.offset, a_sb, a_sm, 1 if a_kc else a_sk), "rows"
    batches = 1 if Bt == 1 or a_sb == 0 else Bt
    ap = _pack(device, a, M, K, a_sb, a_sm, a_sk, batches, mr, vw)
    return (ap, 0, 0 if batches == 1 else -(-M // mr) * K * mr, 1, 1), "panels"


_MM_KERNELS = caches.new_cache("matmul kernels")  # a memo over get_kernel (backend/caches.py)


def _kernel(device, name, arg_dtypes, **params):
    """get_kernel for kernels/matmul.cl.mako, memoized on a plain tuple (the hot path of every matmul)."""
    key = (device, name) + tuple(params.values())
    kern = _MM_KERNELS.get(key)
    if kern is None:
        kern = _MM_KERNELS[key] = get_kernel(device, "matmul.cl.mako", name, arg_dtypes=arg_dtypes,
                                             kernel=name, ext=(), **params)
    return kern


class GemmNote:
    """What a GEMM launch computes, for graph passes (given only while a trace records): C = out, a
    [Bt, M, N] tensor, written through the kernel's arguments C (ARG_C: buffer, offset, batch stride, row
    stride) after the epilogue (ARG_EPI: alpha, beta, epi bits). Both variants share the argument order."""

    __slots__ = ("M", "N", "Bt", "dtype", "out")
    ARG_A, ARG_B, ARG_C, ARG_BIAS, ARG_EPI = 3, 8, 13, 17, 19

    def __init__(self, M, N, Bt, dtype, out):
        self.M, self.N, self.Bt, self.dtype, self.out = M, N, Bt, dtype, out


def _gemm(a: TensorBase, b: TensorBase, *, alpha=1.0, beta=0.0, bias: TensorBase | None = None, act=None,
          out: TensorBase | None = None, b_packed: "PackedB | None" = None) -> TensorBase:
    """out[B, M, N] = act(alpha * a @ b + beta * out + bias): a [B, M, K], b [B, K, N], any strides.

    A new contiguous output is made when `out` is None; `out` needs unit stride along N. `b_packed`
    (pack_b(b, M)) is b already in the CPU kernel's panels: no pack launch here.
    """
    device, dtype = a.device, a.dtype
    Bt, M, K = a.shape
    N = b.shape[2]
    if out is None:
        out = TensorBase._empty((Bt, M, N), dtype, device)
        beta = 0.0
    if out.numel() == 0:
        return out
    for t in (a, b, out):
        if t._storage_size + abs(t.offset) > _INT_MAX:
            raise ValueError(f"matmul: a tensor of {t._storage_size} elements exceeds 32-bit indexing")
    has_beta = beta != 0
    bias_buf, bias_off = (bias._buf, bias.offset) if bias is not None else (_dummy(device), 0)
    prof = device.profile.for_matmul(M, N, K)  # the shape class's tuned parameters, where `clnet tune` found some
    t, acc = ctype(dtype), _acc_ctype(dtype)
    acc_np = np.dtype(np.float32) if dtype == _dt.float16 else dtype
    epi = (_EPI_BETA if has_beta else 0) | (_EPI_BIAS if bias is not None else 0) | (_EPI_RELU if act == "relu" else 0)
    c_args = (out._buf, out.offset, out.strides[0], out.strides[1])
    tail = (bias_buf, bias_off, acc_np.type(alpha), acc_np.type(beta), epi)

    if prof.matmul_variant == "cpu":
        mr, nr, vw = _cpu_block(prof, dtype, M, N)
        if b_packed is not None and b_packed.operand is not None and b_packed.key == (M, N, K, nr, vw) and Bt == 1:
            b_args, b_mode, b_nc = b_packed.operand
        else:
            b_args, b_mode, b_nc = _cpu_b_operand(device, b, Bt, K, N, nr, vw)
        a_args, a_mode = _cpu_a_operand(device, a, Bt, M, K, mr, vw)
        kern = _kernel(device, "gemm_cpu", _GEMM_ARGS + [acc_np, acc_np, _i32], t=t, acc=acc, MR=mr, NR=nr, VW=vw,
                       a_mode=a_mode, b_mode=b_mode, b_nc=b_nc)
        lm = max(1, min(prof.matmul_tile_m // max(1, prof.matmul_wpt_m), device.max_work_item_sizes[0]))
        gm = -(-(-(-M // mr)) // lm) * lm
        note = GemmNote(M, N, Bt, dtype, out) if dispatch.recording_active() else None
        dispatch.launch(device, kern, (gm, -(-N // nr), Bt), (lm, 1, 1), [M, N, K, *a_args, *b_args, *c_args, *tail],
                        note=note)
        return out

    TM, TN, TK = prof.matmul_tile_m, prof.matmul_tile_n, prof.matmul_tile_k
    WM, WN = prof.matmul_wpt_m, prof.matmul_wpt_n
    RM, RN = TM // WM, TN // WN
    kern = _kernel(device, "gemm_gpu", _GEMM_ARGS + [acc_np, acc_np, _i32], t=t, acc=acc, TM=TM, TN=TN, TK=TK,
                   WM=WM, WN=WN, a_kc=a.strides[2] == 1 and a.strides[1] != 1, b_nc=b.strides[2] == 1)
    note = GemmNote(M, N, Bt, dtype, out) if dispatch.recording_active() else None
    dispatch.launch(device, kern, (-(-N // TN) * RN, -(-M // TM) * RM, Bt), (RN, RM, 1),
                    [M, N, K, a._buf, a.offset, *a.strides, b._buf, b.offset, *b.strides, *c_args, *tail], note=note)
    return out


class PackedB:
    """The B operand of many products a @ B with the same B and a of M rows (a recurrent layer's W_hh over
    its time steps), packed once into the CPU kernel's panels. Without it each product packs B again:
    the LSTM LM's 1024x256 W_hh (1 MiB, past _DIRECT_B_BYTES) was packed at every step, 140 times a
    training step. `operand` is None where the kernel reads B in place anyway (GPU variant, a small B);
    B's values are those at pack time."""

    __slots__ = ("b", "M", "key", "operand")

    def __init__(self, b: TensorBase, M: int):
        self.b, self.M = b.detach(), M
        self.key, self.operand = None, None
        device = b.device
        K, N = b.shape
        prof = device.profile.for_matmul(M, N, K)
        if prof.matmul_variant != "cpu" or M * N * K == 0:
            return
        mr, nr, vw = _cpu_block(prof, b.dtype, M, N)
        operand = _cpu_b_operand(device, _as3(self.b), 1, K, N, nr, vw)
        if operand[1] == "panels":
            self.key, self.operand = (M, N, K, nr, vw), operand


def pack_b(b: TensorBase, M: int) -> PackedB:
    """b ([K, N], any strides) packed once for mm_packed(a, ...) with a of M rows (no autograd)."""
    if b.ndim != 2:
        raise ValueError(f"pack_b expects a 2-D operand, got shape {tuple(b.shape)}")
    return PackedB(b, int(M))


def mm_packed(a: TensorBase, packed: PackedB, bias: TensorBase | None = None) -> TensorBase:
    """a [M, K] @ packed.b [K, N] (+ bias (N,)) -> a new [M, N] tensor, B read from its panels (no autograd:
    for the inner loops of ops that record their own gradient)."""
    b = packed.b
    if a.ndim != 2 or a.shape[0] != packed.M or a.shape[1] != b.shape[0]:
        raise ValueError(f"mm_packed: a of shape {tuple(a.shape)} does not match the packed operand "
                         f"({packed.M} rows of {b.shape[0]})")
    y = _gemm(_as3(a.detach()), _as3(b), bias=None if bias is None else _contiguous_detached(bias), b_packed=packed)
    return y._view(y.shape[1:], y.strides[1:])


# --- public functions -----------------------------------------------------------------------------
@op("mm")
def mm(a: TensorBase, b: TensorBase) -> TensorBase:
    """[M, K] @ [K, N] -> [M, N]."""
    _check(a, b, "mm")
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"mm expects 2-D tensors, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"mm: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be multiplied "
                         f"({a.shape[1]} != {b.shape[0]})")
    y = _gemm(_as3(a), _as3(b))
    y = y._view(y.shape[1:], y.strides[1:])
    if needs_grad(a, b):
        record("mm", y, (a, b), lambda g: (mm(g, transpose(b, 0, 1)) if a.requires_grad else None,
                                           mm(transpose(a, 0, 1), g) if b.requires_grad else None),
               saved=(a, b), differentiable=True)
    return y


@op("bmm")
def bmm(a: TensorBase, b: TensorBase) -> TensorBase:
    """[B, M, K] @ [B, K, N] -> [B, M, N]."""
    _check(a, b, "bmm")
    if a.ndim != 3 or b.ndim != 3 or a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]:
        raise ValueError(f"bmm: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be multiplied "
                         "(expected [B, M, K] and [B, K, N])")
    y = _gemm(a.detach(), b.detach())
    if needs_grad(a, b):
        record("bmm", y, (a, b), lambda g: (bmm(g, transpose(b, 1, 2)) if a.requires_grad else None,
                                            bmm(transpose(a, 1, 2), g) if b.requires_grad else None),
               saved=(a, b), differentiable=True)
    return y


def _as3(x: TensorBase) -> TensorBase:
    """A 2-D tensor as a [1, M, K] view (no autograd: callers record)."""
    return x._view((1,) + x.shape, (0,) + x.strides)


def _to_tensor(x, like):
    return tensor(x, dtype=like.dtype, device=like.device)


@op("matmul")
def matmul(a: TensorBase, b: TensorBase) -> TensorBase:
    """numpy matmul semantics: 1-D operands are promoted and squeezed, batch dims broadcast."""
    if not isinstance(b, TensorBase) and isinstance(a, TensorBase):
        b = _to_tensor(b, a)
    if not isinstance(a, TensorBase) and isinstance(b, TensorBase):
        a = _to_tensor(a, b)
    _check(a, b, "matmul")
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul does not accept 0-d tensors (shapes {tuple(a.shape)} and {tuple(b.shape)}); "
                         "use * for scalars")
    if a.ndim == 2 and b.ndim == 2:
        return mm(a, b)
    a2 = unsqueeze(a, 0) if a.ndim == 1 else a
    b2 = unsqueeze(b, 1) if b.ndim == 1 else b
    if a2.shape[-1] != b2.shape[-2]:
        raise ValueError(f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be multiplied "
                         f"({a2.shape[-1]} != {b2.shape[-2]})")
    if b2.ndim == 2 and a2.ndim > 2:
        # [..., M, K] @ [K, N]: fold the batch into M (one 2-D GEMM) when the rows merge into a view
        y = mm(reshape(a2, (math.prod(a2.shape[:-1]), a2.shape[-1])), b2)
        y = reshape(y, a2.shape[:-1] + (b2.shape[-1],))
    else:
        batch = _batch_shape(a, b, a2.shape[:-2], b2.shape[:-2], "matmul")
        nb = math.prod(batch)
        a3 = reshape(expand(a2, batch + a2.shape[-2:]), (nb,) + a2.shape[-2:])
        b3 = reshape(expand(b2, batch + b2.shape[-2:]), (nb,) + b2.shape[-2:])
        y = reshape(bmm(a3, b3), batch + (a2.shape[-2], b2.shape[-1]))
    if a.ndim == 1:
        y = squeeze(y, -2)
    if b.ndim == 1:
        y = squeeze(y, -1)
    return y


@op("matmul_ex")
def matmul_ex(a: TensorBase, b: TensorBase, *, trans_a=False, trans_b=False, alpha=1.0, bias=None, activation=None,
              beta=0.0, out=None) -> TensorBase:
    """One kernel for `activation(alpha * op(a) @ op(b) + beta * out + bias)` (BLAS GEMM plus an epilogue).

    op(x) is x, or x with its last two dims swapped when trans_x (read in place, never copied).
    a, b: at least 2-D after op, batch dims broadcast as in matmul; bias: shape (N,), added to every row;
    activation: None or "relu"; out: an existing [..., M, N] tensor to write (beta != 0 reads it first,
    i.e. accumulates). Gradients flow to a, b and bias (bias gets the sum over rows) when out is None.

    nn.Linear, weight (out_features, in_features):  y = matmul_ex(x, weight, trans_b=True, bias=b)
    (see also `linear`, which takes any leading dims on x).
    """
    _check(a, b, "matmul_ex")
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError(f"matmul_ex needs operands with at least 2 dims, got shapes {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"matmul_ex: activation must be one of {_ACTIVATIONS}, got {activation!r}")
    for name, v in (("alpha", alpha), ("beta", beta)):
        if not isinstance(v, numbers.Real):
            raise TypeError(f"matmul_ex: {name} must be a real number, got {type(v).__name__}")
    A = a.detach()._view(a.shape[:-2] + (a.shape[-1], a.shape[-2]), a.strides[:-2] + (a.strides[-1], a.strides[-2])) \
        if trans_a else a.detach()
    B = b.detach()._view(b.shape[:-2] + (b.shape[-1], b.shape[-2]), b.strides[:-2] + (b.strides[-1], b.strides[-2])) \
        if trans_b else b.detach()
    M, K = A.shape[-2:]
    K2, N = B.shape[-2:]
    if K != K2:
        raise ValueError(f"matmul_ex: shapes {tuple(a.shape)}{'.T' if trans_a else ''} and "
                         f"{tuple(b.shape)}{'.T' if trans_b else ''} cannot be multiplied ({K} != {K2})")
    batch = _batch_shape(a, b, A.shape[:-2], B.shape[:-2], "matmul_ex")
    if bias is not None:
        _check_extra("matmul_ex", a, bias, "bias")
        if tuple(bias.shape) != (N,):
            raise ValueError(f"matmul_ex: bias must have shape ({N},) to match the output's last dim, "
                             f"got {tuple(bias.shape)}")
    grad_on = needs_grad(a, b, *(() if bias is None else (bias,)))
    if out is not None:
        _check_extra("matmul_ex", a, out, "out")
        if tuple(out.shape) != batch + (M, N):
            raise ValueError(f"matmul_ex: out has shape {tuple(out.shape)}, the product has shape "
                             f"{batch + (M, N)}")
        if N > 1 and out.strides[-1] != 1:
            raise ValueError("matmul_ex: out must have unit stride in its last dim")
        if out._buf is a._buf or out._buf is b._buf:
            raise ValueError("matmul_ex: out must not share memory with a or b")
        if grad_on:
            raise RuntimeError("matmul_ex(out=...) does not support automatic differentiation; "
                               "call it without out (or under clnet.no_grad())")
    out3 = None
    if out is not None:
        out3 = _batched(out.detach(), batch)
        if out3._buf is not out._buf:
            raise ValueError(f"matmul_ex: out's batch dims (strides {out.strides}) cannot be merged into one; "
                             "pass a contiguous out")
    y = _gemm(_batched(A, batch), _batched(B, batch), alpha=alpha, beta=beta,
              bias=None if bias is None else _contiguous_detached(bias), act=activation, out=out3)
    if out is not None:
        out._bump_version()
        return out
    y = y._view(batch + (M, N), _strides_for(batch, y))
    if grad_on:
        inputs = (a, b) if bias is None else (a, b, bias)
        yd = y.detach()  # the relu mask reads y's values; a detached view keeps y's node out of its own closure
        record("matmul_ex", y, inputs,
               lambda g: _matmul_ex_grads(g, a, b, yd, trans_a, trans_b, alpha, activation, bias is not None),
               saved=(a, b, yd) if activation else (a, b), differentiable=True)
    return y


def _matmul_ex_grads(g, a, b, y, trans_a, trans_b, alpha, activation, with_bias):
    """Gradients of act(alpha * op(a) @ op(b) + bias); each is itself one matmul_ex (no transposes)."""
    if activation == "relu":
        g = mul(g, gt(y, 0))
    ga = gb = gbias = None
    if a.requires_grad:
        ga = (matmul_ex(b, g, trans_a=trans_b, trans_b=True, alpha=alpha) if trans_a
              else matmul_ex(g, b, trans_b=not trans_b, alpha=alpha))
    if b.requires_grad:
        gb = (matmul_ex(g, a, trans_a=True, trans_b=trans_a, alpha=alpha) if trans_b
              else matmul_ex(a, g, trans_a=not trans_a, alpha=alpha))
    if with_bias:
        gbias = sum_to(g, (g.shape[-1],))
    return (ga, gb) if not with_bias else (ga, gb, gbias)


@op("linear")
def linear(x: TensorBase, weight: TensorBase, bias: TensorBase | None = None, activation=None) -> TensorBase:
    """nn.Linear's forward as one kernel: activation(x @ weight.T + bias).

    x: (..., in_features) (1-D allowed), weight: (out_features, in_features) as in PyTorch, bias:
    (out_features,) or None, activation: None or "relu". Differentiable in x, weight and bias.
    """
    _check(x, weight, "linear")
    if weight.ndim != 2:
        raise ValueError(f"linear: weight must be 2-D (out_features, in_features), got {tuple(weight.shape)}")
    if x.ndim == 0 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input of shape {tuple(x.shape)} does not match weight of shape "
                         f"{tuple(weight.shape)} (expected last dim {weight.shape[1]})")
    x2 = reshape(x, (math.prod(x.shape[:-1]), x.shape[-1])) if x.ndim != 2 else x
    y = matmul_ex(x2, weight, trans_b=True, bias=bias, activation=activation)
    return y if x.ndim == 2 else reshape(y, x.shape[:-1] + (weight.shape[0],))


# --- helpers ---------------------------------------------------------------------------------------
def _batch_shape(a, b, batch_a, batch_b, name) -> tuple:
    """Broadcast batch dims; the error names both operands' full shapes."""
    try:
        return broadcast_shapes(batch_a, batch_b)
    except ValueError:
        raise ValueError(f"{name}: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be multiplied "
                         f"(batch dims {tuple(batch_a)} and {tuple(batch_b)} do not broadcast)") from None


def _contiguous_detached(t: TensorBase) -> TensorBase:
    t = t.detach()
    return t if t.is_contiguous() else contiguous(t)


def _batched(x: TensorBase, batch) -> TensorBase:
    """x (..., R, C) broadcast to batch + (R, C) and seen as [prod(batch), R, C] (a view when possible)."""
    x = x.detach()
    if not batch:
        return _as3(x)
    full = expand(x, batch + x.shape[-2:])
    return reshape(full, (math.prod(batch),) + x.shape[-2:])


def _strides_for(batch, y3: TensorBase) -> tuple:
    """Strides of a contiguous [prod(batch), M, N] result seen as batch + (M, N)."""
    return contiguous_strides(batch + y3.shape[1:])

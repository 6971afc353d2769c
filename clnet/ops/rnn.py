"""Recurrent layers (one layer, one direction) as one autograd op each: LSTM, GRU, Elman RNN (tanh/relu).

Forward, as cuDNN and PyTorch do it: the input projections of every step in one matmul
(x W_ih^T + biases, (T*B, G*H)); then per step one matmul h W_hh^T and one fused cell kernel
(kernels/rnn.cl.mako) that writes h_t straight into the output sequence. The backward walks the steps in
reverse with one cell-backward kernel and one matmul per step, collecting the gate gradients of every
step in one (T, B, G*H) tensor; then the weight gradients are one matmul each over all steps
(dW_ih = dG^T X, dW_hh = dG^T H_prev), the input gradient one matmul (dX = dG W_ih), the bias
gradients one sum. Nothing per step is recorded on the tape: one node for the whole layer.

clnet.nn's RNN/LSTM/GRU stack these layers (multi-layer, bidirectional, batch_first, dropout) and its
cells (LSTMCell, ...) are these layers run for one step.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes as _dt
from ..backend.programs import ctype, get_kernel
from ..core import dispatch
from ..core.dispatch import op
from ..core.storage import TensorBase
from ..core.tape import needs_grad, no_grad, record
from .creation import zeros
from .elementwise import add, cast
from .matmul import matmul_ex, mm, mm_packed, pack_b
from .movement import concat, contiguous, getitem, reshape, transpose, unsqueeze
from .nn import _acc_dtype
from .reduce import sum as _sum

GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}
_INT_MAX = 2**31 - 1
_i32 = np.int32


def _check_float(x, name, what):
    if not isinstance(x, TensorBase):
        raise TypeError(f"{name}: {what} must be a clnet Tensor, got {type(x).__name__}")
    if not _dt.is_floating(x.dtype):
        raise TypeError(f"{name}: {what} must be floating point, got {x.dtype.name}")


def _check_shape(t, shape, name, what, like):
    _check_float(t, name, what)
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name}: {what} must have shape {tuple(shape)}, got {tuple(t.shape)}")
    if t.device is not like.device:
        raise ValueError(f"{name}: {what} is on {t.device}, the input on {like.device}; move it with .to(device)")
    if t.dtype != like.dtype:
        raise TypeError(f"{name}: {what} is {t.dtype.name}, the input {like.dtype.name}")


def _launch(dev, kern, n, *args):
    wg = dev.profile.elementwise_wg
    dispatch.launch(dev, kern, (max(1, -(-n // wg)) * wg,), (wg,), list(args))


# buffers (each with its offset) of each kernel's signature, without and with `packed`'s extra one
_FORWARD_BUFS = {"lstm": 6, "gru": 5, "rnn_tanh": 3, "rnn_relu": 3}
_BACKWARD_BUFS = {"lstm": 8, "gru": 8, "rnn_tanh": 4, "rnn_relu": 4}


def _kernel(dev, cell, kernel, dtype, packed):
    n_bufs = (_FORWARD_BUFS if kernel == "forward" else _BACKWARD_BUFS)[cell] + (packed and cell != "gru")
    return get_kernel(dev, "rnn.cl.mako", f"{cell}_{kernel}", arg_dtypes=[_i32] * 3 + [None, _i32] * n_bufs,
                      cell=cell, kernel=kernel, t=ctype(dtype), acc=ctype(_acc_dtype(dtype)), packed=packed)


def _check_batch_sizes(batch_sizes, T, B, name):
    """A PackedSequence's running batch size per step: non-increasing, between 1 and B."""
    sizes = [int(b) for b in batch_sizes]
    if len(sizes) != T or any(not 0 < b <= B for b in sizes) or any(a < b for a, b in zip(sizes, sizes[1:])):
        raise ValueError(f"{name}: batch_sizes must hold {T} non-increasing sizes between 1 and {B}, got {sizes}")
    return sizes


@op("rnn_layer")
def rnn_layer(mode: str, x: TensorBase, hx, w_ih: TensorBase, w_hh: TensorBase, b_ih=None, b_hh=None,
              reverse: bool = False, batch_sizes=None):
    """One recurrent layer over a time-major sequence.

    mode: "lstm", "gru", "rnn_tanh" or "rnn_relu"; x: (T, B, I); hx: h0 (B, H), or (h0, c0) for "lstm";
    w_ih: (G*H, I), w_hh: (G*H, H), b_ih, b_hh: (G*H,) or None (G = 4, 3, 1), PyTorch's gate order.
    reverse runs the sequence from its end (the backward direction of a bidirectional layer); the output
    stays in input order. Returns (output (T, B, H), h_T) or, for "lstm", (output, h_T, c_T).
    batch_sizes (a PackedSequence's, host ints, non-increasing): only the first batch_sizes[t] sequences
    run at step t, the others keep their state (so h_T holds every sequence's state at its own end).
    """
    name = mode if mode in GATES else "rnn_layer"
    if mode not in GATES:
        raise ValueError(f"rnn_layer: mode must be one of {sorted(GATES)}, got {mode!r}")
    G = GATES[mode]
    _check_float(x, name, "input")
    if x.ndim != 3:
        raise ValueError(f"{name}: input must be (T, B, input_size), got {tuple(x.shape)}")
    T, B, I = x.shape
    if T == 0:
        raise ValueError(f"{name}: the input sequence is empty (shape {tuple(x.shape)})")
    if w_ih.ndim != 2 or w_ih.shape[0] % G:
        raise ValueError(f"{name}: weight_ih must be ({G} * hidden_size, input_size), got {tuple(w_ih.shape)}")
    H = w_ih.shape[0] // G
    _check_shape(w_ih, (G * H, I), name, "weight_ih", x)
    _check_shape(w_hh, (G * H, H), name, "weight_hh", x)
    for what, b in (("bias_ih", b_ih), ("bias_hh", b_hh)):
        if b is not None:
            _check_shape(b, (G * H,), name, what, x)
    if mode == "lstm":
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError(f"{name}: hx must be a pair (h0, c0)")
        h0, c0 = hx
        _check_shape(c0, (B, H), name, "c0", x)
    else:
        h0, c0 = hx, None
    _check_shape(h0, (B, H), name, "h0", x)
    if T * B * 4 * H > _INT_MAX or T * B * I > _INT_MAX:
        raise ValueError(f"{name}: a sequence of {T} x {B} x {max(I, 4 * H)} values exceeds 32-bit indexing; "
                         "split the sequence")
    dev, dtype = x.device, x.dtype
    steps = range(T - 1, -1, -1) if reverse else range(T)
    packed = batch_sizes is not None
    active = _check_batch_sizes(batch_sizes, T, B, name) if packed else [B] * T

    with no_grad():
        xd = contiguous(x.detach())
        w_ihd, w_hhd = w_ih.detach(), w_hh.detach()
        if mode == "gru":
            bias_i = b_ih.detach() if b_ih is not None else None
            bias_h = b_hh.detach() if b_hh is not None else None
        else:  # both biases add to the same pre-activations: fold them into the input projection
            parts = [b.detach() for b in (b_ih, b_hh) if b is not None]
            bias_i = add(parts[0], parts[1]) if len(parts) == 2 else (parts[0] if parts else None)
            bias_h = None
        gi = contiguous(matmul_ex(reshape(xd, (T * B, I)), w_ihd, trans_b=True, bias=bias_i))  # (T*B, G*H)
        out = TensorBase._empty((T, B, H), dtype, dev)
        cs = TensorBase._empty((T, B, H), dtype, dev) if mode == "lstm" else None
        ws = TensorBase._empty((T, B, 4 * H), dtype, dev) if mode in ("lstm", "gru") else None
        h_prev = contiguous(h0.detach())
        c_prev = contiguous(c0.detach()) if c0 is not None else None
        kern = _kernel(dev, mode, "forward", dtype, packed)
        BH = B * H
        w_hh_t = pack_b(transpose(w_hhd, 0, 1), B)  # W_hh^T packed once for every step's h W_hh^T
        for t in steps:
            gh = mm_packed(h_prev, w_hh_t, bias=bias_h)
            args = [gi._buf, gi.offset + t * B * G * H, gh._buf, gh.offset]
            if mode == "gru":
                args += [h_prev._buf, h_prev.offset]
            elif mode == "lstm":
                args += [c_prev._buf, c_prev.offset]
            if packed and mode != "gru":
                args += [h_prev._buf, h_prev.offset]
            if mode == "lstm":
                args += [cs._buf, t * BH]
            if mode in ("lstm", "gru"):
                args += [ws._buf, t * B * 4 * H]
            args += [out._buf, t * BH]
            _launch(dev, kern, BH, B, H, active[t], *args)
            h_prev = getitem(out, t)
            if mode == "lstm":
                c_prev = getitem(cs, t)
        last = 0 if reverse else T - 1
        h_T = getitem(out, last)
        c_T = getitem(cs, last) if mode == "lstm" else None

    outputs = (out, h_T) + ((c_T,) if mode == "lstm" else ())
    inputs = [x, h0] + ([c0] if mode == "lstm" else []) + [w_ih, w_hh]
    inputs += [b for b in (b_ih, b_hh) if b is not None]
    if needs_grad(*inputs):
        ctx = dict(mode=mode, T=T, B=B, H=H, I=I, G=G, reverse=reverse, steps=steps, x=xd,
                   h0=contiguous(h0.detach()), c0=contiguous(c0.detach()) if c0 is not None else None,
                   w_ih=w_ihd, w_hh=w_hhd, out=out.detach(), cs=cs, ws=ws,
                   wants=[t.requires_grad for t in inputs], has_b=(b_ih is not None, b_hh is not None),
                   packed=packed, active=active)
        saved = (xd, out.detach()) + tuple(t for t in (cs, ws) if t is not None)
        record(mode, outputs, tuple(inputs), lambda *g: _rnn_backward(ctx, *g), saved=saved)
    return outputs


def _as(t, dtype):
    return t if t.dtype == dtype else cast(t, dtype)


def _rnn_backward(ctx, g_out, g_h, g_c=None):
    mode, T, B, H, I, G = (ctx[k] for k in ("mode", "T", "B", "H", "I", "G"))
    dev, dtype = ctx["x"].device, ctx["x"].dtype
    out, cs, ws, x, h0, c0 = (ctx[k] for k in ("out", "cs", "ws", "x", "h0", "c0"))
    w_ih, w_hh = ctx["w_ih"], ctx["w_hh"]
    g_out = contiguous(_as(g_out, dtype))
    dh_mm = contiguous(_as(g_h, dtype))
    BH = B * H
    dG = TensorBase._empty((T, B, G * H), dtype, dev)
    dGH = TensorBase._empty((T, B, G * H), dtype, dev) if mode == "gru" else dG
    if mode == "lstm":
        carry = contiguous(_as(g_c, dtype))
    elif mode == "gru":
        carry = zeros((B, H), dtype=dtype, device=dev)
    else:
        carry = None
    packed, active = ctx["packed"], ctx["active"]
    kern = _kernel(dev, mode, "backward", dtype, packed)
    steps = list(ctx["steps"])
    w_hh_p = pack_b(w_hh, B)  # packed once for every step's dG_t W_hh
    for k in range(len(steps) - 1, -1, -1):
        t = steps[k]
        prev_t = steps[k - 1] if k > 0 else None  # the step whose state this one started from
        args = [dh_mm._buf, dh_mm.offset, g_out._buf, t * BH]
        new_carry = None
        if mode in ("lstm", "gru"):
            if prev_t is not None:
                prev = (cs._buf, prev_t * BH) if mode == "lstm" else (out._buf, prev_t * BH)
            else:
                first = c0 if mode == "lstm" else h0
                prev = (first._buf, first.offset)
            new_carry = TensorBase._empty((B, H), dtype, dev)
            args += [carry._buf, carry.offset, ws._buf, t * B * 4 * H, *prev]
            if mode == "lstm":
                args += [cs._buf, t * BH]
            else:
                args += [dGH._buf, t * B * G * H]
            args += [new_carry._buf, 0]
        else:
            args += [out._buf, t * BH]
        skip = TensorBase._empty((B, H), dtype, dev) if packed and mode != "gru" else None
        if skip is not None:
            args += [skip._buf, 0]
        args += [dG._buf, t * B * G * H]
        _launch(dev, kern, BH, B, H, active[t], *args)
        carry = new_carry
        dh_mm = mm_packed(getitem(dGH, t), w_hh_p)  # (B, H): the gradient reaching the previous state through W_hh
        if skip is not None:  # rows that did not run pass their state's gradient straight through
            dh_mm = add(dh_mm, skip)
    wants = ctx["wants"]
    grads = []
    # x
    dG2 = reshape(dG, (T * B, G * H))
    grads.append(reshape(mm(dG2, w_ih), (T, B, I)) if wants[0] else None)
    # h0 (and c0)
    dh0 = add(dh_mm, carry) if mode == "gru" else dh_mm
    grads.append(dh0 if wants[1] else None)
    i = 2
    if mode == "lstm":
        grads.append(carry if wants[2] else None)
        i = 3
    # weights
    grads.append(matmul_ex(dG2, reshape(x, (T * B, I)), trans_a=True) if wants[i] else None)
    if wants[i + 1]:
        h_first = unsqueeze(h0, 0)
        if T == 1:
            h_prev = h_first
        elif ctx["reverse"]:
            h_prev = concat([getitem(out, slice(1, None)), h_first], 0)
        else:
            h_prev = concat([h_first, getitem(out, slice(None, -1))], 0)
        grads.append(matmul_ex(reshape(dGH, (T * B, G * H)), reshape(h_prev, (T * B, H)), trans_a=True))
    else:
        grads.append(None)
    has_ih, has_hh = ctx["has_b"]
    j = i + 2
    if has_ih:
        grads.append(_sum(dG2, 0) if wants[j] else None)
        j += 1
    if has_hh:
        grads.append(_sum(reshape(dGH, (T * B, G * H)), 0) if wants[j] else None)
    return tuple(grads)


__all__ = ["rnn_layer", "GATES"]

"""ONNX's recurrent operators (LSTM, GRU, RNN) as clnet ops unrolled over the sequence.

What PyTorch's layers compute (default activations, no clip or peepholes, GRU with linear_before_reset=1,
which PyTorch's exporter writes) runs on clnet's fused recurrent layer (clnet.ops.rnn.rnn_layer), the
weights' gate blocks put in PyTorch's order. Anything else is unrolled: the input projection of every time
step is one matmul up front; each step then adds the recurrent projection and applies the gate math of the
ONNX definition (gate order i, o, f, c for LSTM and z, r, h for GRU). Either way autograd records it, so an
imported recurrent model fine-tunes like any other.
"""
from __future__ import annotations

from ... import clamp as _clamp, concat as _concat, matmul as _matmul, relu as _relu, sigmoid as _sigmoid
from ... import split as _split, stack as _stack, tanh as _tanh, zeros as _zeros
from ...ops.rnn import rnn_layer as _rnn_layer
from .common import ints

# ONNX's gate blocks in PyTorch's order (clnet's fused rnn_layer): LSTM i,o,f,c -> i,f,c,o; GRU z,r,h -> r,z,h
_TORCH_ORDER = {"LSTM": [0, 2, 3, 1], "GRU": [1, 0, 2], "RNN": [0]}

_ACTIVATIONS = {"Sigmoid": _sigmoid, "Tanh": _tanh, "Relu": _relu}


def _activations(node, defaults, n_dir):
    names = node.attrs.get("activations") or defaults * n_dir
    if node.attrs.get("activation_alpha") or node.attrs.get("activation_beta"):
        raise node.unsupported("activation_alpha/activation_beta")
    fns = []
    for name in names:
        if name not in _ACTIVATIONS:
            raise node.unsupported(f"the activation {name!r} (clnet runs {', '.join(_ACTIVATIONS)})")
        fns.append(_ACTIVATIONS[name])
    per = len(defaults)
    return [fns[d * per:(d + 1) * per] for d in range(n_dir)]


def _setup(ctx, node, x, w, seq_lens, defaults):
    direction = node.attrs.get("direction", "forward")
    if direction not in ("forward", "reverse", "bidirectional"):
        raise node.unsupported(f"direction={direction!r}")
    n_dir = 2 if direction == "bidirectional" else 1
    x = ctx.tensor(x)
    layout = node.attrs.get("layout", 0)
    if layout:
        x = x.transpose(0, 1)  # (batch, seq, in) -> (seq, batch, in)
    seq = x.shape[0]
    if seq_lens is not None and any(n != seq for n in ints(seq_lens)):
        raise node.unsupported("sequence_lens shorter than the sequence (variable-length batches)")
    if w.shape[0] != n_dir:
        raise ValueError(f"{node.where()}: W has {w.shape[0]} directions, direction={direction!r} needs {n_dir}")
    reverse = [direction == "reverse"] if n_dir == 1 else [False, True]
    return x, seq, n_dir, reverse, layout, _activations(node, defaults, n_dir)


def _initial(ctx, value, d, batch, hidden, like):
    if value is None:
        return _zeros((batch, hidden), dtype=like.dtype, device=like.device)
    return ctx.tensor(value)[d]


def _clip(node, v):
    c = node.attrs.get("clip")
    return v if c is None else _clamp(v, -c, c)


def _outputs(node, ys, finals, layout):
    """Y (seq, dirs, batch, hidden) and each final state (dirs, batch, hidden), batch-major if layout=1."""
    y = _stack([_stack(steps, 0) for steps in ys], 1)
    states = [_stack(list(f), 0) for f in finals]
    if layout:
        y = y.permute(2, 0, 1, 3)
        states = [s.transpose(0, 1) for s in states]
    return tuple([y] + states)[:max(1, len(node.outputs))]


def _projected(ctx, x, w, b, d, n_gates, hidden):
    """x @ W[d]^T (+ the input bias) for every step at once: (seq, batch, n_gates * hidden)."""
    xw = _matmul(x, ctx.tensor(w)[d].transpose(0, 1))
    if b is not None:
        xw = xw + ctx.tensor(b)[d][:n_gates * hidden]
    return xw


def _fusable(node, defaults, n_dir):
    """Whether clnet's fused layer computes this node: default activations (RNN: Tanh or Relu), no clip, and
    for GRU PyTorch's linear_before_reset=1."""
    names = node.attrs.get("activations") or defaults * n_dir
    if node.op_type == "RNN":
        ok = len(set(names)) == 1 and names[0] in ("Tanh", "Relu")
    else:
        ok = list(names) == defaults * n_dir
    return ok and node.attrs.get("clip") is None and not node.attrs.get("activation_alpha") and \
        not node.attrs.get("activation_beta") and (node.op_type != "GRU" or node.attrs.get("linear_before_reset", 0))


def _torch_blocks(t, gates, order):
    """A (G*H, ...) tensor with its ONNX gate blocks put in PyTorch's order."""
    blocks = _split(t, t.shape[0] // gates, 0)
    return _concat([blocks[k] for k in order], 0) if gates > 1 else t


def _fused(ctx, node, x, w, r, b, h0, c0, n_dir, reverse, layout):
    """The node as clnet's fused recurrent layer, one call per direction."""
    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[node.op_type]
    order = _TORCH_ORDER[node.op_type]
    mode = node.op_type.lower() if node.op_type != "RNN" else \
        ("rnn_relu" if (node.attrs.get("activations") or ["Tanh"])[0] == "Relu" else "rnn_tanh")
    hidden = r.shape[-1]
    batch = x.shape[1]
    ys, hs, cs = [], [], []
    for d in range(n_dir):
        w_d = _torch_blocks(ctx.tensor(w)[d], gates, order)
        r_d = _torch_blocks(ctx.tensor(r)[d], gates, order)
        b_ih = b_hh = None
        if b is not None:
            b_d = ctx.tensor(b)[d]
            b_ih = _torch_blocks(b_d[:gates * hidden], gates, order)
            b_hh = _torch_blocks(b_d[gates * hidden:], gates, order)
        h = _initial(ctx, h0, d, batch, hidden, x)
        hx = (h, _initial(ctx, c0, d, batch, hidden, x)) if mode == "lstm" else h
        out = _rnn_layer(mode, x, hx, w_d, r_d, b_ih, b_hh, reverse[d])
        ys.append(out[0])
        hs.append(out[1])
        if mode == "lstm":
            cs.append(out[2])
    y = _stack(ys, 1)                                   # (seq, dirs, batch, hidden)
    states = [_stack(hs, 0)] + ([_stack(cs, 0)] if mode == "lstm" else [])
    if layout:
        y = y.permute(2, 0, 1, 3)
        states = [s.transpose(0, 1) for s in states]
    return tuple([y] + states)[:max(1, len(node.outputs))]


def _lstm(ctx, node, x, w, r, b=None, seq_lens=None, h0=None, c0=None, peep=None):
    if node.attrs.get("input_forget", 0):
        raise node.unsupported("input_forget=1")
    x, seq, n_dir, reverse, layout, acts = _setup(ctx, node, x, w, seq_lens, ["Sigmoid", "Tanh", "Tanh"])
    if peep is None and _fusable(node, ["Sigmoid", "Tanh", "Tanh"], n_dir):
        return _fused(ctx, node, x, w, r, b, h0, c0, n_dir, reverse, layout)
    hidden = node.attrs.get("hidden_size") or r.shape[-1]
    batch = x.shape[1]
    ys, hs, cs = [], [], []
    for d in range(n_dir):
        f, g, h_act = acts[d]
        xw = _projected(ctx, x, w, b, d, 4, hidden)
        rt = ctx.tensor(r)[d].transpose(0, 1)
        rb = ctx.tensor(b)[d][4 * hidden:] if b is not None else None
        p_i, p_o, p_f = _split(ctx.tensor(peep)[d], hidden, 0) if peep is not None else (None, None, None)
        h, c = _initial(ctx, h0, d, batch, hidden, x), _initial(ctx, c0, d, batch, hidden, x)
        steps = [None] * seq
        for t in (reversed(range(seq)) if reverse[d] else range(seq)):
            gates = xw[t] + _matmul(h, rt)
            if rb is not None:
                gates = gates + rb
            i, o, fg, cand = _split(gates, hidden, 1)
            if p_i is not None:
                i, fg = i + p_i * c, fg + p_f * c
            i, fg, cand = f(_clip(node, i)), f(_clip(node, fg)), g(_clip(node, cand))
            c = fg * c + i * cand
            if p_o is not None:
                o = o + p_o * c
            h = f(_clip(node, o)) * h_act(c)
            steps[t] = h
        ys.append(steps)
        hs.append(h)
        cs.append(c)
    return _outputs(node, ys, (hs, cs), layout)


def _gru(ctx, node, x, w, r, b=None, seq_lens=None, h0=None):
    x, seq, n_dir, reverse, layout, acts = _setup(ctx, node, x, w, seq_lens, ["Sigmoid", "Tanh"])
    if _fusable(node, ["Sigmoid", "Tanh"], n_dir):
        return _fused(ctx, node, x, w, r, b, h0, None, n_dir, reverse, layout)
    hidden = node.attrs.get("hidden_size") or r.shape[-1]
    before_reset = node.attrs.get("linear_before_reset", 0)
    batch = x.shape[1]
    ys, hs = [], []
    for d in range(n_dir):
        f, g = acts[d]
        xw = _projected(ctx, x, w, b, d, 3, hidden)
        r_z, r_r, r_h = (m.transpose(0, 1) for m in _split(ctx.tensor(r)[d], hidden, 0))
        rb_z, rb_r, rb_h = _split(ctx.tensor(b)[d][3 * hidden:], hidden, 0) if b is not None else (None,) * 3
        h = _initial(ctx, h0, d, batch, hidden, x)
        steps = [None] * seq
        for t in (reversed(range(seq)) if reverse[d] else range(seq)):
            x_z, x_r, x_h = _split(xw[t], hidden, 1)
            pre_z, pre_r = x_z + _matmul(h, r_z), x_r + _matmul(h, r_r)
            if rb_z is not None:
                pre_z, pre_r = pre_z + rb_z, pre_r + rb_r
            z, rr = f(_clip(node, pre_z)), f(_clip(node, pre_r))
            if before_reset:
                rec = _matmul(h, r_h)
                if rb_h is not None:
                    rec = rec + rb_h
                cand = x_h + rr * rec
            else:
                cand = x_h + _matmul(rr * h, r_h)
                if rb_h is not None:
                    cand = cand + rb_h
            cand = g(_clip(node, cand))
            h = (1 - z) * cand + z * h
            steps[t] = h
        ys.append(steps)
        hs.append(h)
    return _outputs(node, ys, (hs,), layout)


def _rnn(ctx, node, x, w, r, b=None, seq_lens=None, h0=None):
    x, seq, n_dir, reverse, layout, acts = _setup(ctx, node, x, w, seq_lens, ["Tanh"])
    if _fusable(node, ["Tanh"], n_dir):
        return _fused(ctx, node, x, w, r, b, h0, None, n_dir, reverse, layout)
    hidden = node.attrs.get("hidden_size") or r.shape[-1]
    batch = x.shape[1]
    ys, hs = [], []
    for d in range(n_dir):
        (f,) = acts[d]
        xw = _projected(ctx, x, w, b, d, 1, hidden)
        rt = ctx.tensor(r)[d].transpose(0, 1)
        rb = ctx.tensor(b)[d][hidden:] if b is not None else None
        h = _initial(ctx, h0, d, batch, hidden, x)
        steps = [None] * seq
        for t in (reversed(range(seq)) if reverse[d] else range(seq)):
            pre = xw[t] + _matmul(h, rt)
            h = f(_clip(node, pre + rb if rb is not None else pre))
            steps[t] = h
        ys.append(steps)
        hs.append(h)
    return _outputs(node, ys, (hs,), layout)


OPS = {"LSTM": _lstm, "GRU": _gru, "RNN": _rnn}

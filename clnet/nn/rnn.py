"""Recurrent layers: RNN, LSTM, GRU (multi-layer, bidirectional, batch_first, dropout between layers,
initial states) and their one-step cells, with PyTorch's parameter names, shapes and initialisation.

Every layer and direction is one clnet.ops.rnn.rnn_layer call (all input projections in one matmul, one
matmul plus one fused cell kernel per step, one autograd node for the whole sequence).
"""
from __future__ import annotations

import math

import numpy as np

from .. import dtypes as _dt
from ..ops import indexing as _ix
from ..ops import movement as _mv
from ..ops.creation import empty, tensor, zeros
from ..ops.rnn import GATES, rnn_layer
from ..tensor import Tensor
from . import functional as F
from . import init
from .module import Module
from .parameter import Parameter
from .utils.rnn import PackedSequence


def _index(host, device):
    return tensor(np.ascontiguousarray(host, np.int64), dtype=_dt.int64, device=device)


class RNNBase(Module):
    """The stack of layers and directions; `mode` is "lstm", "gru", "rnn_tanh" or "rnn_relu"."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device=None, dtype=None):
        super().__init__()
        if mode not in GATES:
            raise ValueError(f"RNNBase: unknown mode {mode!r}")
        for name, v in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{type(self).__name__}: {name} must be a positive int, got {v!r}")
        if isinstance(dropout, bool) or not 0 <= dropout <= 1:
            raise ValueError(f"{type(self).__name__}: dropout should be a number in range [0, 1] representing the "
                             f"probability of an element being zeroed, got {dropout!r}")
        if proj_size:
            raise NotImplementedError(f"{type(self).__name__}: proj_size > 0 is not supported")
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        G = GATES[mode]
        dirs = 2 if bidirectional else 1
        self._flat_weights_names = []
        for layer in range(num_layers):
            for d in range(dirs):
                suffix = f"_l{layer}" + ("_reverse" if d else "")
                in_size = input_size if layer == 0 else hidden_size * dirs
                names = [("weight_ih", (G * hidden_size, in_size)), ("weight_hh", (G * hidden_size, hidden_size))]
                if bias:
                    names += [("bias_ih", (G * hidden_size,)), ("bias_hh", (G * hidden_size,))]
                for name, shape in names:
                    setattr(self, name + suffix, Parameter(empty(*shape, device=device, dtype=dtype)))
                    self._flat_weights_names.append(name + suffix)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every weight and bias U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)), as PyTorch."""
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for p in self.parameters():
            init.uniform_(p, -stdv, stdv)

    @property
    def all_weights(self):
        """[[weight_ih, weight_hh, bias_ih, bias_hh] of each layer and direction] (no biases if bias=False)."""
        return [[p for p in self._weights(suffix) if p is not None] for suffix in self._suffixes()]

    def _suffixes(self):
        return [f"_l{layer}" + ("_reverse" if d else "") for layer in range(self.num_layers)
                for d in range(2 if self.bidirectional else 1)]

    def flatten_parameters(self) -> None:
        """A no-op kept for PyTorch programs (cuDNN's contiguous weight buffer has no counterpart here)."""

    def _weights(self, suffix):
        w = [getattr(self, "weight_ih" + suffix), getattr(self, "weight_hh" + suffix)]
        b = [getattr(self, "bias_ih" + suffix), getattr(self, "bias_hh" + suffix)] if self.bias else [None, None]
        return w + b

    def _check_input(self, input):
        if not isinstance(input, Tensor):
            raise TypeError(f"{type(self).__name__}: input must be a clnet Tensor, got {type(input).__name__}")
        if input.ndim not in (2, 3):
            raise ValueError(f"{type(self).__name__}: input must have 2 (unbatched) or 3 dimensions, got "
                             f"{input.ndim}-D input of shape {tuple(input.shape)}")
        if input.shape[-1] != self.input_size:
            raise ValueError(f"{type(self).__name__}: input.size(-1) must be equal to input_size. Expected "
                             f"{self.input_size}, got {input.shape[-1]}")

    def _state(self, hx, batch, unbatched, like, what):
        dirs = 2 if self.bidirectional else 1
        shape = (self.num_layers * dirs, batch, self.hidden_size)
        if hx is None:
            return zeros(shape, dtype=like.dtype, device=like.device)
        if not isinstance(hx, Tensor):
            raise TypeError(f"{type(self).__name__}: {what} must be a clnet Tensor, got {type(hx).__name__}")
        if unbatched:
            if hx.ndim != 2:
                raise ValueError(f"{type(self).__name__}: for unbatched 2-D input, {what} should also be 2-D but "
                                 f"got {hx.ndim}-D tensor")
            hx = _mv.unsqueeze(hx, 1)
        if tuple(hx.shape) != shape:
            raise ValueError(f"{type(self).__name__}: expected {what} size {shape}, got {tuple(hx.shape)}")
        return hx

    def _hidden(self, hx, batch, unbatched, x):
        """(h0, c0) of shape (layers * directions, batch, hidden) from what the caller passed (zeros if None)."""
        if self.mode != "lstm":
            return self._state(hx, batch, unbatched, x, "hidden state h_0"), None
        if hx is None:
            h0 = c0 = None
        elif not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError("LSTM: hx must be a tuple (h_0, c_0)")
        else:
            h0, c0 = hx
        return (self._state(h0, batch, unbatched, x, "hidden state h_0"),
                self._state(c0, batch, unbatched, x, "cell state c_0"))

    def _run(self, x, h0, c0, batch_sizes=None):
        """Every layer and direction over time-major x: (output, h_n, c_n or None)."""
        lstm = self.mode == "lstm"
        dirs = 2 if self.bidirectional else 1
        h_n, c_n = [], []
        layer_in = x
        for layer in range(self.num_layers):
            outs = []
            for d in range(dirs):
                k = layer * dirs + d
                suffix = f"_l{layer}" + ("_reverse" if d else "")
                state = (h0[k], c0[k]) if lstm else h0[k]
                res = rnn_layer(self.mode, layer_in, state, *self._weights(suffix), reverse=bool(d),
                                batch_sizes=batch_sizes)
                outs.append(res[0])
                h_n.append(res[1])
                if lstm:
                    c_n.append(res[2])
            layer_in = outs[0] if dirs == 1 else _mv.concat(outs, 2)
            if self.dropout and self.training and layer < self.num_layers - 1:
                layer_in = F.dropout(layer_in, self.dropout, True)
        return layer_in, _mv.stack(h_n, 0), (_mv.stack(c_n, 0) if lstm else None)

    def forward(self, input, hx=None):
        if isinstance(input, PackedSequence):
            return self._forward_packed(input, hx)
        self._check_input(input)
        unbatched = input.ndim == 2
        x = _mv.unsqueeze(input, 1) if unbatched else (_mv.transpose(input, 0, 1) if self.batch_first else input)
        h0, c0 = self._hidden(hx, x.shape[1], unbatched, x)
        out, h, c = self._run(x, h0, c0)
        if unbatched:
            out, h = _mv.squeeze(out, 1), _mv.squeeze(h, 1)
            c = _mv.squeeze(c, 1) if c is not None else None
        elif self.batch_first:
            out = _mv.transpose(out, 0, 1)
        return (out, (h, c)) if self.mode == "lstm" else (out, h)

    def _forward_packed(self, packed, hx):
        """A PackedSequence runs as the padded batch in its sorted order, each step with its running batch
        size (finished sequences keep their state); the output is packed the same way and the final states
        are returned in the caller's batch order (initial states are read in it)."""
        data, batch_sizes, sorted_indices, unsorted_indices = packed
        sizes = batch_sizes.numpy().astype(np.int64) if isinstance(batch_sizes, Tensor) else np.asarray(batch_sizes)
        if data.ndim != 2 or data.shape[-1] != self.input_size:
            raise ValueError(f"{type(self).__name__}: packed data must be (total steps, {self.input_size}), got "
                             f"{tuple(data.shape)}")
        T, B = len(sizes), int(sizes[0])
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        where = np.full((T, B), data.shape[0], np.int64)  # positions past a sequence's end read a zero row
        for t in range(T):
            where[t, :sizes[t]] = starts[t] + np.arange(sizes[t])
        source = _mv.concat([data, zeros((1, data.shape[1]), dtype=data.dtype, device=data.device)], 0)
        x = _mv.reshape(_ix.index_select(source, 0, _index(where.reshape(-1), data.device)), (T, B, data.shape[1]))

        def to_sorted(state):
            if state is None or sorted_indices is None:
                return state
            return _ix.index_select(state, 1, sorted_indices)
        if self.mode == "lstm" and hx is not None:
            hx = tuple(to_sorted(h) for h in hx)
        else:
            hx = to_sorted(hx)
        h0, c0 = self._hidden(hx, B, False, x)
        out, h, c = self._run(x, h0, c0, batch_sizes=sizes.tolist())
        valid = where.reshape(-1) < data.shape[0]
        rows = np.nonzero(valid)[0][np.argsort(where.reshape(-1)[valid], kind="stable")]
        out_data = _ix.index_select(_mv.reshape(out, (T * B, out.shape[2])), 0, _index(rows, data.device))
        if unsorted_indices is not None:
            h = _ix.index_select(h, 1, unsorted_indices)
            c = _ix.index_select(c, 1, unsorted_indices) if c is not None else None
        result = PackedSequence(out_data, batch_sizes, sorted_indices, unsorted_indices)
        return (result, (h, c)) if self.mode == "lstm" else (result, h)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s


class RNN(RNNBase):
    """Elman RNN: h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh) (nonlinearity='relu' for ReLU)."""

    def __init__(self, *args, **kwargs):
        nonlinearity = kwargs.pop("nonlinearity", "tanh")
        if len(args) > 3:  # positional (input_size, hidden_size, num_layers, nonlinearity, ...)
            nonlinearity, args = args[3], args[:3] + args[4:]
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: unknown nonlinearity {nonlinearity!r}; select from 'tanh' or 'relu'")
        self.nonlinearity = nonlinearity
        super().__init__("rnn_" + nonlinearity, *args, **kwargs)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s + (", nonlinearity='relu'" if self.nonlinearity == "relu" else "")


class LSTM(RNNBase):
    """Long short-term memory; forward(input, (h_0, c_0)) -> output, (h_n, c_n). Gates i, f, g, o."""

    def __init__(self, *args, **kwargs):
        super().__init__("lstm", *args, **kwargs)


class GRU(RNNBase):
    """Gated recurrent unit; gates r, z, n with n = tanh(W_in x + b_in + r (W_hn h + b_hn))."""

    def __init__(self, *args, **kwargs):
        super().__init__("gru", *args, **kwargs)


class RNNCellBase(Module):
    """One step of a recurrent layer; parameters weight_ih, weight_hh, bias_ih, bias_hh."""

    _mode = ""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, num_chunks: int = 1, device=None,
                 dtype=None):
        super().__init__()
        for name, v in (("input_size", input_size), ("hidden_size", hidden_size)):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{type(self).__name__}: {name} must be a positive int, got {v!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.weight_ih = Parameter(empty(num_chunks * hidden_size, input_size, device=device, dtype=dtype))
        self.weight_hh = Parameter(empty(num_chunks * hidden_size, hidden_size, device=device, dtype=dtype))
        if bias:
            self.bias_ih = Parameter(empty(num_chunks * hidden_size, device=device, dtype=dtype))
            self.bias_hh = Parameter(empty(num_chunks * hidden_size, device=device, dtype=dtype))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for p in self.parameters():
            init.uniform_(p, -stdv, stdv)

    def _prepare(self, input, hx):
        if not isinstance(input, Tensor):
            raise TypeError(f"{type(self).__name__}: input must be a clnet Tensor, got {type(input).__name__}")
        if input.ndim not in (1, 2):
            raise ValueError(f"{type(self).__name__}: Expected input to be 1D or 2D, got {input.ndim}D instead")
        if input.shape[-1] != self.input_size:
            raise ValueError(f"{type(self).__name__}: input has {input.shape[-1]} features, expected "
                             f"{self.input_size}")
        unbatched = input.ndim == 1
        x = _mv.unsqueeze(input, 0) if unbatched else input
        return x, unbatched

    def _zero(self, x):
        return zeros((x.shape[0], self.hidden_size), dtype=x.dtype, device=x.device)

    def _batched_state(self, h, unbatched, what):
        if h is None:
            return None
        if unbatched and h.ndim == 1:
            return _mv.unsqueeze(h, 0)
        return h

    def _run(self, x, state):
        return rnn_layer(self._mode, _mv.unsqueeze(x, 0), state, self.weight_ih, self.weight_hh, self.bias_ih,
                         self.bias_hh)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        return s


class RNNCell(RNNCellBase):
    """h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh) (or relu)."""

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: unknown nonlinearity {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        self._mode = "rnn_" + nonlinearity
        super().__init__(input_size, hidden_size, bias, 1, device, dtype)

    def forward(self, input, hx=None):
        x, unbatched = self._prepare(input, hx)
        h = self._batched_state(hx, unbatched, "hx")
        h = self._zero(x) if h is None else h
        out = self._run(x, h)[1]
        return _mv.squeeze(out, 0) if unbatched else out


class LSTMCell(RNNCellBase):
    """One LSTM step: forward(input, (h, c)) -> (h', c')."""

    _mode = "lstm"

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 4, device, dtype)

    def forward(self, input, hx=None):
        x, unbatched = self._prepare(input, hx)
        if hx is None:
            h = c = self._zero(x)
        else:
            h, c = (self._batched_state(t, unbatched, n) for t, n in zip(hx, ("h", "c")))
        _, h1, c1 = self._run(x, (h, c))
        if unbatched:
            return _mv.squeeze(h1, 0), _mv.squeeze(c1, 0)
        return h1, c1


class GRUCell(RNNCellBase):
    """One GRU step: forward(input, h) -> h'."""

    _mode = "gru"

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 3, device, dtype)

    def forward(self, input, hx=None):
        x, unbatched = self._prepare(input, hx)
        h = self._batched_state(hx, unbatched, "hx")
        h = self._zero(x) if h is None else h
        out = self._run(x, h)[1]
        return _mv.squeeze(out, 0) if unbatched else out

"""The recurrent cells behind SimpleRNN, LSTM and GRU: Keras's weights (names, shapes, gate orders, bias
layouts and initial values) and one step of Keras's formulas composed of clnet ops, plus the views of the
same weights in PyTorch's layout that clnet.ops.rnn.rnn_layer (the fused kernels) takes.

LSTM's kernel is (in, 4 units) with gates i, f, c, o (PyTorch's order, transposed); GRU's is (in, 3 units)
with gates z, r, h (PyTorch: r, z, n) and, with reset_after=True, a (2, 3 units) bias of input and
recurrent halves (PyTorch's b_ih and b_hh).
"""
from __future__ import annotations

import numpy as np

import clnet
from clnet.nn import functional as F

from .. import activations, constraints, initializers, regularizers
from .base import Layer

_TANH = (activations.tanh, clnet.tanh)
_SIGMOID = (activations.sigmoid, clnet.sigmoid)
_RELU = (activations.relu, clnet.relu)


def _is(fn, group):
    return any(fn is f for f in group)


def _ones_dropout(like_shape, rate, device, dtype):
    """Keras's dropout mask: dropout applied to ones, so kept entries are 1 / (1 - rate)."""
    return F.dropout(clnet.ones(like_shape, dtype=dtype, device=device), p=rate, training=True)


class _Cell(Layer):
    """Shared by the cells: Keras's arguments, the weights, the input projection of every step at once."""

    gates = 1

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal", bias_initializer="zeros",
                 kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, dropout=0.0, recurrent_dropout=0.0, seed=None,
                 **kwargs):
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units <= 0:
            raise ValueError(f"Received an invalid value for argument `units`, expected a positive integer, got "
                             f"{units}.")
        super().__init__(**kwargs)
        self.units = int(units)
        self.activation = activations.get(activation)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.recurrent_initializer = initializers.get(recurrent_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = regularizers.get(recurrent_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.recurrent_constraint = constraints.get(recurrent_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.dropout = min(1.0, max(0.0, float(dropout)))
        self.recurrent_dropout = min(1.0, max(0.0, float(recurrent_dropout)))
        self.seed = seed

    @property
    def state_size(self):
        return [self.units]

    def _bias_shape(self):
        return (self.gates * self.units,)

    def _bias_init(self):
        return self.bias_initializer

    def build(self, input_shape):
        in_dim = input_shape[-1]
        if in_dim is None:
            raise ValueError(f"The last dimension of the inputs to {type(self).__name__} should be defined. "
                             f"Found None (input shape {tuple(input_shape)}).")
        g = self.gates * self.units
        self.kernel = self.add_weight((in_dim, g), self.kernel_initializer, regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint, name="kernel")
        self.recurrent_kernel = self.add_weight((self.units, g), self.recurrent_initializer,
                                                regularizer=self.recurrent_regularizer,
                                                constraint=self.recurrent_constraint, name="recurrent_kernel")
        self.bias = self.add_weight(self._bias_shape(), self._bias_init(), regularizer=self.bias_regularizer,
                                    constraint=self.bias_constraint, name="bias") if self.use_bias else None
        self.built = True

    # dropout masks (Keras: one per call, the same at every step; one per gate with recurrent dropout)
    def _mask_count(self):
        return self.gates if self.recurrent_dropout > 0 and self.gates > 1 else 1

    def input_masks(self, x, training):
        if not (training and 0.0 < self.dropout < 1.0):
            return None
        shape = (x.shape[0], x.shape[-1])
        return [_ones_dropout(shape, self.dropout, x.device, x.dtype) for _ in range(self._mask_count())]

    def recurrent_masks(self, h, training):
        if not (training and 0.0 < self.recurrent_dropout < 1.0):
            return None
        return [_ones_dropout(tuple(h.shape), self.recurrent_dropout, h.device, h.dtype)
                for _ in range(self._mask_count())]

    def _input_bias(self):
        return self.bias

    def project(self, x, masks):
        """x (batch, steps, in) -> x @ kernel + input bias for every step, with the input dropout masks."""
        if masks is None or len(masks) == 1:
            if masks is not None:
                x = x * masks[0].unsqueeze(1)
            return F.linear(x, self.kernel.T, self._input_bias())
        u, b = self.units, self._input_bias()
        parts = [F.linear(x * m.unsqueeze(1), self.kernel[:, g * u:(g + 1) * u].T,
                          None if b is None else b[g * u:(g + 1) * u]) for g, m in enumerate(masks)]
        return clnet.concat(parts, -1)

    def _recurrent(self, h, masks, cols=None):
        """h @ recurrent_kernel (columns `cols` of each gate block), each gate's block with its own mask."""
        u = self.units
        gates = range(self.gates) if cols is None else cols
        if masks is None:
            if cols is None:
                return clnet.matmul(h, self.recurrent_kernel)
            return clnet.concat([clnet.matmul(h, self.recurrent_kernel[:, g * u:(g + 1) * u]) for g in gates], -1)
        return clnet.concat([clnet.matmul(h * masks[g if len(masks) > 1 else 0],
                                          self.recurrent_kernel[:, g * u:(g + 1) * u]) for g in gates], -1)

    def call(self, inputs, states, training=False):
        """One step, as Keras's cells: (inputs (batch, in), states) -> (output, new states)."""
        states = list(states) if isinstance(states, (list, tuple)) else [states]
        xp = self.project(inputs.unsqueeze(1), self.input_masks(inputs.unsqueeze(1), training))[:, 0]
        return self.step(xp, states, self.recurrent_masks(states[0], training))

    def fused(self):
        """(mode, w_ih, w_hh, b_ih, b_hh) for clnet.ops.rnn.rnn_layer in PyTorch's layout, or None."""
        return None

    def get_config(self):
        return {**super().get_config(), **_cell_config(self)}


def _cell_config(cell):
    return {"units": cell.units, "activation": activations.serialize(cell.activation),
            "use_bias": cell.use_bias,
            "kernel_initializer": initializers.serialize(cell.kernel_initializer),
            "recurrent_initializer": initializers.serialize(cell.recurrent_initializer),
            "bias_initializer": initializers.serialize(cell.bias_initializer),
            "kernel_regularizer": regularizers.serialize(cell.kernel_regularizer),
            "recurrent_regularizer": regularizers.serialize(cell.recurrent_regularizer),
            "bias_regularizer": regularizers.serialize(cell.bias_regularizer),
            "kernel_constraint": constraints.serialize(cell.kernel_constraint),
            "recurrent_constraint": constraints.serialize(cell.recurrent_constraint),
            "bias_constraint": constraints.serialize(cell.bias_constraint),
            "dropout": cell.dropout, "recurrent_dropout": cell.recurrent_dropout, "seed": cell.seed}


class SimpleRNNCell(_Cell):
    """h' = activation(x @ kernel + bias + h @ recurrent_kernel)."""

    def __init__(self, units, activation="tanh", **kwargs):
        kwargs.pop("recurrent_activation", None)
        super().__init__(units, activation=activation, **kwargs)

    def step(self, xp, states, rec_masks):
        h = states[0]
        if rec_masks is not None:
            h = h * rec_masks[0]
        out = self.activation(xp + clnet.matmul(h, self.recurrent_kernel))
        return out, [out]

    def fused(self):
        mode = "rnn_tanh" if _is(self.activation, _TANH) else "rnn_relu" if _is(self.activation, _RELU) else None
        if mode is None:
            return None
        return mode, self.kernel.T, self.recurrent_kernel.T, self.bias, None


class LSTMCell(_Cell):
    """Gates i, f, c, o: c' = f c + i act(x K_c + h U_c + b_c), h' = o act(c'); i, f, o recurrent_activation."""

    gates = 4

    def __init__(self, units, unit_forget_bias=True, **kwargs):
        self.implementation = kwargs.pop("implementation", 2)
        super().__init__(units, **kwargs)
        self.unit_forget_bias = bool(unit_forget_bias)

    @property
    def state_size(self):
        return [self.units, self.units]

    def _bias_init(self):
        if not self.unit_forget_bias:
            return self.bias_initializer
        base, u = self.bias_initializer, self.units

        def init(shape, dtype="float32"):  # Keras: the forget gate's bias starts at ones
            return np.concatenate([np.asarray(base((u,), dtype=dtype)), np.ones((u,), dtype),
                                   np.asarray(base((2 * u,), dtype=dtype))]).astype(dtype)
        return init

    def step(self, xp, states, rec_masks):
        h, c = states
        z = xp + self._recurrent(h, rec_masks)
        u = self.units
        i = self.recurrent_activation(z[:, :u])
        f = self.recurrent_activation(z[:, u:2 * u])
        c = f * c + i * self.activation(z[:, 2 * u:3 * u])
        o = self.recurrent_activation(z[:, 3 * u:])
        h = o * self.activation(c)
        return h, [h, c]

    def fused(self):
        if not (_is(self.activation, _TANH) and _is(self.recurrent_activation, _SIGMOID)):
            return None
        return "lstm", self.kernel.T, self.recurrent_kernel.T, self.bias, None

    def get_config(self):
        return {**super().get_config(), "recurrent_activation": activations.serialize(self.recurrent_activation),
                "unit_forget_bias": self.unit_forget_bias}


class GRUCell(_Cell):
    """Gates z, r, h: h' = z h + (1 - z) act(x K_h + r (h U_h + b_rec)) (reset_after=True, Keras's default),
    or act(x K_h + (r h) U_h) with reset_after=False."""

    gates = 3

    def __init__(self, units, reset_after=True, **kwargs):
        self.implementation = kwargs.pop("implementation", 2)
        super().__init__(units, **kwargs)
        self.reset_after = bool(reset_after)

    def _bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def _input_bias(self):
        if self.bias is None:
            return None
        return self.bias[0] if self.reset_after else self.bias

    def step(self, xp, states, rec_masks):
        h = states[0]
        u = self.units
        if self.reset_after:
            inner = self._recurrent(h, rec_masks)
            if self.bias is not None:
                inner = inner + self.bias[1]
            z = self.recurrent_activation(xp[:, :u] + inner[:, :u])
            r = self.recurrent_activation(xp[:, u:2 * u] + inner[:, u:2 * u])
            hh = self.activation(xp[:, 2 * u:] + r * inner[:, 2 * u:])
        else:
            inner = self._recurrent(h, rec_masks, cols=(0, 1))
            z = self.recurrent_activation(xp[:, :u] + inner[:, :u])
            r = self.recurrent_activation(xp[:, u:2 * u] + inner[:, u:])
            h_h = h * rec_masks[2 if len(rec_masks) > 1 else 0] if rec_masks is not None else h
            hh = self.activation(xp[:, 2 * u:] + clnet.matmul(r * h_h, self.recurrent_kernel[:, 2 * u:]))
        out = z * h + (1.0 - z) * hh
        return out, [out]

    def fused(self):
        if not (self.reset_after and _is(self.activation, _TANH) and _is(self.recurrent_activation, _SIGMOID)):
            return None
        u = self.units

        def torch_order(w):  # Keras's (z, r, h) blocks on the last axis -> PyTorch's (r, z, n)
            return clnet.concat([w[..., u:2 * u], w[..., :u], w[..., 2 * u:]], -1)
        b_ih = b_hh = None
        if self.bias is not None:
            b = torch_order(self.bias)
            b_ih, b_hh = b[0], b[1]
        return "gru", torch_order(self.kernel).T, torch_order(self.recurrent_kernel).T, b_ih, b_hh

    def get_config(self):
        return {**super().get_config(), "recurrent_activation": activations.serialize(self.recurrent_activation),
                "reset_after": self.reset_after}

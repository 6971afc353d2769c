"""Recurrent layers: SimpleRNN, LSTM, GRU, and the wrappers Bidirectional and TimeDistributed.

Weights have Keras's names, shapes and gate orders; they live on a cell sublayer (rnn_cells.py), as in
Keras: `lstm/lstm_cell/kernel` (in, 4 units), `recurrent_kernel` (units, 4 units), `bias`.

Two ways through a sequence, both with Keras's results:
- fused: clnet.ops.rnn.rnn_layer, the kernels behind clnet.nn.LSTM/GRU/RNN (one matmul for every step's
  input projection, one matmul and one fused cell kernel per step, one autograd node). It takes the
  default activations (tanh with sigmoid gates; SimpleRNN tanh or relu), GRU's reset_after=True, no
  recurrent dropout, and no mask or a padding mask (each row true then false: the sequences run as a
  packed batch, each stopping at its own length, as Keras's masked steps keep the state).
- stepwise: the cell's Keras formulas composed of clnet ops, step by step, for everything else (other
  activations, reset_after=False, recurrent dropout, masks with holes), with Keras's masking rule: a
  masked step keeps the states and repeats the previous output (zeros with zero_output_for_mask).
"""
from __future__ import annotations

import numpy as np

import clnet
from clnet.ops.rnn import rnn_layer

from .. import regularizers, tree
from ..saving.serialization_lib import deserialize_layer, serialize_layer
from .base import InputSpec, Layer, _shape_tuple
from .normalization import BatchNormalization
from .rnn_cells import GRUCell, LSTMCell, SimpleRNNCell, _Cell


# --- the recurrent layers ---------------------------------------------------------------------------
def _padding_lengths(mask_host):
    """Each row's length if the mask is a padding mask (true then false in every row), else None."""
    lengths = mask_host.sum(1)
    steps = np.arange(mask_host.shape[1])
    if not np.array_equal(mask_host, steps[None, :] < lengths[:, None]):
        return None
    return lengths


class _RNN(Layer):
    """A cell run over (batch, steps, features), with Keras's RNN arguments, masks and states."""

    _cell_class = _Cell
    _cell_name = "cell"

    def __init__(self, units, return_sequences=False, return_state=False, go_backwards=False, stateful=False,
                 unroll=False, zero_output_for_mask=False, activity_regularizer=None, **kwargs):
        base_keys = ("name", "trainable", "dtype", "autocast") + Layer._valid_kwargs
        base = {k: kwargs.pop(k) for k in list(kwargs) if k in base_keys}
        super().__init__(activity_regularizer=activity_regularizer, **base)
        try:
            self.cell = self._cell_class(units, name=self._cell_name, dtype=self._dtype_name,
                                         trainable=base.get("trainable", True), **kwargs)
        except ValueError as err:  # name the layer the user made, not its cell
            raise ValueError(str(err).replace(self._cell_class.__name__, type(self).__name__)) from None
        self.return_sequences, self.return_state = bool(return_sequences), bool(return_state)
        self.go_backwards, self.stateful, self.unroll = bool(go_backwards), bool(stateful), bool(unroll)
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self.supports_masking = True
        self.input_spec = InputSpec(ndim=3)
        self.states = None

    def __getattr__(self, name):  # Keras's LSTM.units, .activation, ...: the cell's attributes
        if name.startswith("_") or name in ("cell", "states"):
            raise AttributeError(name)
        cell = self.__dict__.get("cell")
        if cell is not None and hasattr(cell, name):
            return getattr(cell, name)
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    @property
    def state_size(self):
        return self.cell.state_size

    def build(self, sequences_shape, initial_state_shape=None):
        shape = _shape_tuple(sequences_shape)
        if len(shape) != 3:
            raise ValueError(f'Input 0 of layer "{self.name}" is incompatible with the layer: expected ndim=3, '
                             f"found ndim={len(shape)}. Full shape received: {shape}")
        self.cell._maybe_build((shape[0], shape[2]))
        for w in self.cell._own_weights:
            w.path = f"{self.name}/{self.cell.name}/{w.name}"
        self.built = True

    def compute_output_shape(self, sequences_shape, initial_state_shape=None):
        batch, steps = sequences_shape[0], sequences_shape[1]
        out = (batch, steps, self.cell.units) if self.return_sequences else (batch, self.cell.units)
        if self.return_state:
            return (out,) + tuple((batch, s) for s in self.state_size)
        return out

    def compute_mask(self, inputs, mask=None):
        if isinstance(mask, (list, tuple)):
            mask = mask[0] if mask else None
        out_mask = mask if self.return_sequences else None
        if self.return_state:
            return [out_mask] + [None] * len(self.state_size)
        return out_mask

    # states
    def get_initial_state(self, batch_size):
        dev = self._device()
        return [clnet.zeros((batch_size, s), dtype=self.dtype, device=dev) for s in self.state_size]

    def reset_state(self):
        if self.states is not None:
            self.states = [clnet.zeros(tuple(s.shape), dtype=s.dtype, device=s.device) for s in self.states]

    reset_states = reset_state

    def _initial_states(self, initial_state, batch, x):
        if initial_state is None:
            if self.stateful:
                if self.states is None:
                    self.states = self.get_initial_state(batch)
                if self.states[0].shape[0] != batch:
                    raise ValueError(f"If an RNN is stateful, the batch size of the input sequences must be the same "
                                     f"as the batch size of the initial state. \n- Expected batch size: "
                                     f"{self.states[0].shape[0]}\n- Received batch size: {batch}")
                return list(self.states)
            return self.get_initial_state(batch)
        states = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
        if len(states) != len(self.state_size):
            raise ValueError(f"Layer {self.name!r} ({type(self).__name__}) expects {len(self.state_size)} initial "
                             f"state(s) (one per size in cell.state_size={self.state_size}), but received "
                             f"{len(states)}.")
        out = []
        for s, size in zip(states, self.state_size):
            s = self._convert(s) if not isinstance(s, clnet.Tensor) else s
            if not isinstance(s, clnet.Tensor):
                s = clnet.tensor(np.asarray(s, dtype=self.dtype), device=x.device)
            if tuple(s.shape) != (batch, size):
                raise ValueError(f"An initial_state of layer {self.name!r} has shape {tuple(s.shape)}, expected "
                                 f"(batch_size, units) = {(batch, size)}.")
            out.append(s.to(dtype=x.dtype) if s.dtype != x.dtype else s)
        return out

    def call(self, sequences, initial_state=None, mask=None, training=False):
        x = sequences
        if not isinstance(x, clnet.Tensor) or x.ndim != 3:
            raise ValueError(f"Layer {self.name!r} expects inputs of shape (batch_size, timesteps, features), got "
                             f"{getattr(x, 'shape', type(x).__name__)}")
        if not clnet.is_floating_point(x):  # one-hot bool or int sequences: Keras's ops promote them to floatx
            x = x.to(clnet.float32)
        batch, steps = x.shape[0], x.shape[1]
        states = self._initial_states(initial_state, batch, x)
        if isinstance(mask, (list, tuple)):
            mask = mask[0] if mask else None
        if mask is not None and not isinstance(mask, clnet.Tensor):
            mask = clnet.tensor(np.asarray(mask, dtype=bool), device=x.device)
        if mask is not None and mask.dtype != clnet.bool:
            mask = mask != 0
        if mask is not None and tuple(mask.shape) != (batch, steps):
            raise ValueError(f"The mask of layer {self.name!r} must have shape (batch_size, timesteps) = "
                             f"{(batch, steps)}, got {tuple(mask.shape)}")
        cell = self.cell
        in_masks = cell.input_masks(x, training)
        rec_masks = cell.recurrent_masks(states[0], training)
        fused = cell.fused() if rec_masks is None else None
        lengths = None
        if fused is not None and mask is not None:
            mask_host = mask.numpy().astype(bool)
            lengths = _padding_lengths(mask_host)
            if lengths is None:
                fused = None
            elif lengths.min() == steps:
                mask, lengths = None, None  # nothing masked
        if fused is not None:
            if in_masks is not None:
                x = x * in_masks[0].unsqueeze(1)
            last, seq, new_states = self._run_fused(x, states, fused, mask, lengths)
        else:
            last, seq, new_states = self._run_steps(cell.project(x, in_masks), states, mask, rec_masks)
        if self.stateful:
            self.states = [s.detach() for s in new_states]
        output = seq if self.return_sequences else last
        if self.return_state:
            return [output] + list(new_states)
        return output

    def _run_steps(self, xp, states, mask, rec_masks):
        """Keras's loop: outputs in processing order (reversed with go_backwards)."""
        steps = xp.shape[1]
        order = range(steps - 1, -1, -1) if self.go_backwards else range(steps)
        outputs, prev = [], None
        for t in order:
            out, new = self.cell.step(xp[:, t], states, rec_masks)
            if mask is not None:
                m = mask[:, t:t + 1]
                new = [clnet.where(m, n, s) for n, s in zip(new, states)]
                if self.zero_output_for_mask or prev is None:
                    out = clnet.where(m, out, 0.0)
                else:
                    out = clnet.where(m, out, prev)
            states, prev = new, out
            outputs.append(out)
        seq = clnet.stack(outputs, 1) if self.return_sequences else None
        return outputs[-1], seq, states

    def _run_fused(self, x, states, fused, mask, lengths):
        mode, w_ih, w_hh, b_ih, b_hh = fused
        lstm = mode == "lstm"
        rev = self.go_backwards
        batch, steps = x.shape[0], x.shape[1]
        if mask is None:
            res = rnn_layer(mode, x.transpose(0, 1), tuple(states) if lstm else states[0], w_ih, w_hh, b_ih, b_hh,
                            reverse=rev)
            seq = None
            if self.return_sequences:
                seq = res[0].transpose(0, 1)
                if rev:
                    seq = clnet.flip(seq, [1])
            return res[1], seq, list(res[1:])
        # a padding mask: the rows, longest first, run as a packed batch (each stops at its own length)
        longest = int(lengths.max())
        if longest == 0:
            zeros = clnet.zeros((batch, steps, self.cell.units), dtype=x.dtype, device=x.device)
            return zeros[:, -1], zeros if self.return_sequences else None, states
        order = np.argsort(-lengths, kind="stable")
        inverse = clnet.tensor(np.argsort(order).astype(np.int64), device=x.device)
        order_t = clnet.tensor(order.astype(np.int64), device=x.device)
        sizes = [int((lengths > t).sum()) for t in range(longest)]
        xs = x[:, :longest].index_select(0, order_t).transpose(0, 1)
        st = [s.index_select(0, order_t) for s in states]
        res = rnn_layer(mode, xs, tuple(st) if lstm else st[0], w_ih, w_hh, b_ih, b_hh, reverse=rev,
                        batch_sizes=sizes)
        new_states = [s.index_select(0, inverse) for s in res[1:]]
        seq = res[0].index_select(1, inverse).transpose(0, 1)  # (batch, longest, units), input order
        if longest < steps:  # steps no row reaches: forward, the state is carried on; backward, nothing ran yet
            pad = new_states[0].unsqueeze(1).expand(batch, steps - longest, self.cell.units) if not rev else \
                clnet.zeros((batch, steps - longest, self.cell.units), dtype=x.dtype, device=x.device)
            seq = clnet.concat([seq, pad], 1)
        # Keras: outputs before a row's first valid step are zeros, and every masked one with zero_output_for_mask
        if rev or self.zero_output_for_mask:
            keep = mask.unsqueeze(-1)
        else:
            keep = clnet.tensor((lengths > 0)[:, None, None], device=x.device)
        seq = clnet.where(keep, seq, 0.0)
        if rev:
            seq = clnet.flip(seq, [1])
        return seq[:, -1], seq, new_states

    def get_config(self):
        config = {**super().get_config(), "return_sequences": self.return_sequences,
                  "return_state": self.return_state, "go_backwards": self.go_backwards, "stateful": self.stateful,
                  "unroll": self.unroll, "zero_output_for_mask": self.zero_output_for_mask,
                  "activity_regularizer": regularizers.serialize(self.activity_regularizer)}
        cell = self.cell.get_config()
        for key in ("name", "trainable", "dtype", "batch_input_shape"):
            cell.pop(key, None)
        return {**config, **cell}


def _check_cudnn(use_cudnn):
    if use_cudnn not in ("auto", True, False):
        raise ValueError(f"Invalid valid received for argument `use_cudnn`. Expected one of {{'auto', True, False}}. "
                         f"Received: use_cudnn={use_cudnn}")
    return use_cudnn


class SimpleRNN(_RNN):
    """Fully connected RNN: h_t = activation(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias)."""

    _cell_class = SimpleRNNCell
    _cell_name = "simple_rnn_cell"

    def __init__(self, units, activation="tanh", **kwargs):
        super().__init__(units, activation=activation, **kwargs)


class LSTM(_RNN):
    """Long short-term memory (Hochreiter 1997), Keras's weights: kernel (in, 4 units), gates i, f, c, o."""

    _cell_class = LSTMCell
    _cell_name = "lstm_cell"

    def __init__(self, units, use_cudnn="auto", **kwargs):
        self.use_cudnn = _check_cudnn(use_cudnn)
        super().__init__(units, **kwargs)


class GRU(_RNN):
    """Gated recurrent unit (Cho 2014), Keras's weights: kernel (in, 3 units), gates z, r, h."""

    _cell_class = GRUCell
    _cell_name = "gru_cell"

    def __init__(self, units, use_cudnn="auto", **kwargs):
        self.use_cudnn = _check_cudnn(use_cudnn)
        super().__init__(units, **kwargs)


# --- wrappers ---------------------------------------------------------------------------------------
def _clone(layer, **changes):
    config = layer.get_config()
    config.update(changes)
    return type(layer).from_config(config)


def _build_inside(wrapper, subs, shape):
    """Build the wrapped layers; as in Keras, the weights made here have paths under the wrapper's name."""
    for sub in subs:
        if sub.built:
            continue
        sub._maybe_build(shape)
        for w in sub.weights:
            w.path = f"{wrapper.name}/{w.path}"


def _strip(name, prefix):
    return name[len(prefix):] if name.startswith(prefix) else name


class Bidirectional(Layer):
    """Runs a recurrent layer forwards and a copy backwards over the sequence and merges their outputs."""

    _MODES = ("sum", "mul", "ave", "concat", None)

    def __init__(self, layer, merge_mode="concat", weights=None, backward_layer=None, **kwargs):
        if not isinstance(layer, Layer):
            raise ValueError(f"Please initialize `Bidirectional` layer with a `keras.layers.Layer` instance. "
                             f"Received: {layer}")
        if backward_layer is not None and not isinstance(backward_layer, Layer):
            raise ValueError(f"`backward_layer` need to be a `keras.layers.Layer` instance. Received: "
                             f"{backward_layer}")
        if merge_mode not in self._MODES:
            raise ValueError(f"Invalid merge mode. Received: {merge_mode}. Merge mode should be one of "
                             '{"sum", "mul", "ave", "concat", None}')
        super().__init__(weights=weights, **kwargs)
        self.forward_layer = _clone(layer, name="forward_" + _strip(layer.name, "forward_"))
        if backward_layer is None:
            backward_layer = _clone(layer, name="backward_" + _strip(layer.name, "backward_"), go_backwards=True)
        self.backward_layer = backward_layer
        fwd, bwd = self.forward_layer, self.backward_layer
        if fwd.go_backwards == bwd.go_backwards:
            raise ValueError(f"Forward layer and backward layer should have different `go_backwards` value. "
                             f"Received: forward_layer.go_backwards {fwd.go_backwards}, "
                             f"backward_layer.go_backwards={bwd.go_backwards}")
        for attr in ("stateful", "return_sequences", "return_state"):
            if getattr(fwd, attr) != getattr(bwd, attr):
                raise ValueError(f"Forward layer and backward layer are expected to have the same value for "
                                 f'attribute "{attr}", got "{getattr(fwd, attr)}" for forward layer and '
                                 f'"{getattr(bwd, attr)}" for backward layer')
        for sub in (fwd, bwd):  # Keras: masked outputs are zeros when the sequences are returned
            if hasattr(sub, "zero_output_for_mask"):
                sub.zero_output_for_mask = sub.return_sequences
        self.merge_mode = merge_mode
        self.stateful, self.return_sequences, self.return_state = fwd.stateful, fwd.return_sequences, \
            fwd.return_state
        self.supports_masking = True
        self.input_spec = layer.input_spec

    def build(self, sequences_shape, initial_state_shape=None):
        _build_inside(self, [self.forward_layer, self.backward_layer], _shape_tuple(sequences_shape))
        self.built = True

    def _merge(self, y, y_rev):
        if self.merge_mode == "concat":
            return clnet.concat([y, y_rev], -1)
        if self.merge_mode == "sum":
            return y + y_rev
        if self.merge_mode == "ave":
            return (y + y_rev) * 0.5
        if self.merge_mode == "mul":
            return y * y_rev
        return [y, y_rev]

    def call(self, sequences, initial_state=None, mask=None, training=None):
        fwd_state = bwd_state = None
        if initial_state is not None:
            half = len(initial_state) // 2
            fwd_state, bwd_state = list(initial_state[:half]), list(initial_state[half:])
        kwargs = {"training": training}
        if mask is not None:
            kwargs["mask"] = mask
        y = self.forward_layer(sequences, initial_state=fwd_state, **kwargs)
        y_rev = self.backward_layer(sequences, initial_state=bwd_state, **kwargs)
        states = []
        if self.return_state:
            states = list(y[1:]) + list(y_rev[1:])
            y, y_rev = y[0], y_rev[0]
        if self.return_sequences:
            y_rev = clnet.flip(y_rev, [1])
        out = self._merge(y, y_rev)
        if self.return_state:
            return (out if isinstance(out, list) else [out]) + states
        return out

    def compute_output_shape(self, sequences_shape, initial_state_shape=None):
        shape = self.forward_layer.compute_output_shape(sequences_shape)
        states = ()
        if self.return_state:
            shape, states = shape[0], tuple(shape[1:])
        if self.merge_mode == "concat":
            shape = tuple(shape[:-1]) + (None if shape[-1] is None else 2 * shape[-1],)
            outs = [shape]
        elif self.merge_mode is None:
            outs = [tuple(shape), tuple(shape)]
        else:
            outs = [tuple(shape)]
        if self.return_state:
            return tuple(outs) + states + states
        return outs[0] if len(outs) == 1 else outs

    def compute_mask(self, inputs, mask=None):
        if isinstance(mask, (list, tuple)):
            mask = mask[0] if mask else None
        if self.return_sequences:
            out = [mask, mask] if self.merge_mode is None else mask
        else:
            out = [None, None] if self.merge_mode is None else None
        if self.return_state:
            n = 2 * len(getattr(self.forward_layer, "state_size", []))
            return (out if isinstance(out, list) else [out]) + [None] * n
        return out

    def reset_state(self):
        if not self.stateful:
            raise AttributeError("Layer must be stateful.")
        self.forward_layer.reset_state()
        self.backward_layer.reset_state()

    reset_states = reset_state

    def get_config(self):
        return {**super().get_config(), "merge_mode": self.merge_mode, "layer": serialize_layer(self.forward_layer),
                "backward_layer": serialize_layer(self.backward_layer)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layer"] = deserialize_layer(config["layer"])
        if config.get("backward_layer") is not None:
            config["backward_layer"] = deserialize_layer(config["backward_layer"])
        return cls(**config)


class TimeDistributed(Layer):
    """Applies a layer to every temporal slice (axis 1) of the input, with the same weights.

    The slices run as one batch (batch * steps rows), except under layers whose training call depends on the
    batch (BatchNormalization), which see one step at a time as in Keras.
    """

    def __init__(self, layer, **kwargs):
        if not isinstance(layer, Layer):
            raise ValueError(f"Please initialize `TimeDistributed` layer with a `keras.layers.Layer` instance. "
                             f"Received: {layer}")
        super().__init__(**kwargs)
        self.layer = layer
        self.supports_masking = True

    @staticmethod
    def _child_shape(input_shape):
        if not isinstance(input_shape, (tuple, list)) or len(input_shape) < 3:
            raise ValueError(f"`TimeDistributed` Layer should be passed an `input_shape` with at least 3 dimensions, "
                             f"received: {input_shape}")
        return (input_shape[0],) + tuple(input_shape[2:])

    def build(self, input_shape):
        _build_inside(self, [self.layer], self._child_shape(_shape_tuple(input_shape)))
        self.built = True

    def compute_output_shape(self, input_shape):
        child = self.layer.compute_output_shape(self._child_shape(tuple(input_shape)))
        return (child[0], input_shape[1]) + tuple(child[1:])

    def _per_step(self, training):
        return bool(training) and any(isinstance(sub, BatchNormalization) for sub in self.layer._flatten_layers())

    def call(self, inputs, training=None, mask=None):
        if mask is not None:
            if mask.ndim < 2 or tuple(mask.shape[:2]) != tuple(inputs.shape[:2]):
                raise ValueError(f"The `mask` passed to the `TimeDistributed` layer has a shape {tuple(mask.shape)} "
                                 f"that is incompatible with the input shape {tuple(inputs.shape)}. The first two "
                                 "dimensions of the mask (batch size and timesteps) must match the input's first "
                                 f"two dimensions. Expected mask shape prefix: {tuple(inputs.shape[:2])}.")
        names = self.layer._call_params()[0]
        kwargs = {}
        if "training" in names:
            kwargs["training"] = training
        batch, steps = inputs.shape[0], inputs.shape[1]
        if self._per_step(training):
            outs = []
            for t in range(steps):
                if "mask" in names and mask is not None:
                    kwargs["mask"] = mask[:, t]
                outs.append(self.layer(inputs[:, t], **kwargs))
            return clnet.stack(outs, 1)
        if "mask" in names and mask is not None:
            kwargs["mask"] = mask.reshape((batch * steps,) + tuple(mask.shape[2:]))
        folded = inputs.reshape((batch * steps,) + tuple(inputs.shape[2:]))
        out = self.layer(folded, **kwargs)
        return tree.map_structure(lambda o: o.reshape((batch, steps) + tuple(o.shape[1:])), out)

    def get_config(self):
        return {**super().get_config(), "layer": serialize_layer(self.layer)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layer"] = deserialize_layer(config["layer"])
        return cls(**config)

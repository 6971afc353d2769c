"""clnet.keras's sequence layers (Embedding, Masking, SimpleRNN, LSTM, GRU, Bidirectional, TimeDistributed,
MultiHeadAttention, Attention) against real Keras 3 on its PyTorch backend: the same weights (set_weights from
the Keras layer), random inputs, outputs and gradients (of the weights and the inputs, by torch's autograd
through Keras) compared; masks from Embedding(mask_zero=True) and explicit masks, configs, symbolic shapes,
and a small Embedding + LSTM text classifier trained with fit."""
import os
import re

import numpy as np
import pytest

import clnet
from clnet import keras
from clnet.keras import layers

from conftest import assert_close
from keras_test_support import only_small_models_on_simulators  # noqa: F401  (autouse: small models on Oclgrind)

RTOL, ATOL = 2e-4, 2e-5


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.clear_session()
    keras.utils.set_random_seed(0)


@pytest.fixture(scope="module")
def rk():
    """Real Keras 3 on PyTorch (skips when either is missing)."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    pytest.importorskip("torch")
    real = pytest.importorskip("keras")
    if real.backend.backend() != "torch":
        pytest.skip(f"real Keras runs on {real.backend.backend()}; these tests read gradients through PyTorch")
    return real


# --- running a layer in both -------------------------------------------------------------------------
def _flat(x):
    if isinstance(x, (list, tuple)):
        return [y for item in x for y in _flat(item)]
    return [x]


def _torch_inputs(args):
    import torch
    out = []
    for a in args:
        if isinstance(a, (list, tuple)):
            out.append(type(a)(_torch_inputs(a)))
        elif isinstance(a, np.ndarray) and a.dtype.kind == "f":
            out.append(torch.tensor(a, requires_grad=True))
        elif isinstance(a, np.ndarray):
            out.append(torch.tensor(a))
        else:
            out.append(a)
    return out


def _clnet_inputs(args, device):
    out = []
    for a in args:
        if isinstance(a, (list, tuple)):
            out.append(type(a)(_clnet_inputs(a, device)))
        elif isinstance(a, np.ndarray):
            out.append(clnet.tensor(a, device=device, requires_grad=a.dtype.kind == "f"))
        else:
            out.append(a)
    return out


def compare(rk, klayer, clayer, args, kwargs=None, device=None, grads=True, rtol=RTOL, atol=ATOL, seed=5):
    """Call both layers on the same inputs with the Keras layer's weights; compare outputs, then the gradients
    of sum(outputs * random) with respect to every weight and float input."""
    import torch
    kwargs = kwargs or {}
    kargs = _torch_inputs(args)
    cargs = _clnet_inputs(args, device)
    klayer(*kargs, **kwargs)
    clayer(*cargs, **kwargs)  # builds
    assert [w.shape for w in clayer.get_weights()] == [tuple(w.shape) for w in klayer.get_weights()]
    def unnumbered(w):  # real Keras numbers its layer names in its own session: lstm_3 -> lstm
        return re.sub(r"_\d+(?=/|$)", "", w.path)
    assert [unnumbered(w) for w in clayer.weights] == [unnumbered(w) for w in klayer.weights]
    clayer.set_weights(klayer.get_weights())
    kout = _flat(klayer(*kargs, **kwargs))
    cout = _flat(clayer(*cargs, **kwargs))
    assert len(kout) == len(cout)
    for i, (k, c) in enumerate(zip(kout, cout)):
        assert_close(c, k.detach().cpu().numpy(), rtol=rtol, atol=atol, what=f"output {i}")
    if not grads:
        return cout
    rng = np.random.default_rng(seed)
    probes = [rng.standard_normal(tuple(k.shape)).astype(np.float32) for k in kout]
    kloss = sum((k * torch.tensor(p)).sum() for k, p in zip(kout, probes))
    kvars = [w.value for w in klayer.trainable_weights]
    kin = [a for a in _flat(kargs) if isinstance(a, torch.Tensor) and a.requires_grad]
    kgrads = torch.autograd.grad(kloss, kvars + kin, allow_unused=True)
    for w in clayer.weights:
        w.grad = None
    closs = None
    for c, p in zip(cout, probes):
        term = (c * clnet.tensor(p, device=device)).sum()
        closs = term if closs is None else closs + term
    closs.backward()
    cin = [a for a in _flat(cargs) if isinstance(a, clnet.Tensor) and a.requires_grad]
    for i, (t, g) in enumerate(zip(list(clayer.trainable_weights) + cin, kgrads)):
        expected = np.zeros(tuple(t.shape), np.float32) if g is None else g.detach().cpu().numpy()
        got = t.grad if t.grad is not None else np.zeros(tuple(t.shape), np.float32)
        assert_close(got, expected, rtol=rtol, atol=atol * 10, what=f"gradient {i} ({getattr(t, 'path', 'input')})")
    return cout


def _pair(rk, name, *args, **kwargs):
    return getattr(rk.layers, name)(*args, **kwargs), getattr(layers, name)(*args, **kwargs)


def padding_mask(rng, batch, steps, empty_row=True):
    lengths = rng.integers(1, steps + 1, size=batch)
    lengths[0] = steps
    if empty_row and batch > 2:
        lengths[-1] = 0
    return np.arange(steps)[None, :] < lengths[:, None]


# --- recurrent layers --------------------------------------------------------------------------------
RNN_CASES = [
    ("SimpleRNN", {}),  # fused rnn_tanh
    ("SimpleRNN", {"activation": "relu", "return_sequences": True}),  # fused rnn_relu
    ("SimpleRNN", {"activation": "sigmoid", "go_backwards": True}),  # stepwise
    ("LSTM", {}),
    ("LSTM", {"return_sequences": True, "go_backwards": True}),
    ("LSTM", {"recurrent_activation": "hard_sigmoid", "return_sequences": True}),  # stepwise
    ("LSTM", {"use_bias": False, "unit_forget_bias": False, "return_state": True}),
    ("GRU", {}),
    ("GRU", {"reset_after": False, "return_sequences": True}),  # stepwise
    ("GRU", {"use_bias": False, "go_backwards": True, "return_state": True}),
    ("GRU", {"activation": "relu", "return_sequences": True, "return_state": True}),  # stepwise
]


@pytest.mark.parametrize("name,kwargs", RNN_CASES, ids=[f"{n}-{'-'.join(k) or 'default'}" for n, k in RNN_CASES])
def test_recurrent_layer_matches_keras(rk, device, rng, name, kwargs):
    x = rng.standard_normal((3, 5, 4)).astype(np.float32)
    klayer, clayer = _pair(rk, name, 6, **kwargs)
    compare(rk, klayer, clayer, [x], device=device)


@pytest.mark.parametrize("name", ["SimpleRNN", "LSTM", "GRU"])
@pytest.mark.parametrize("kind", ["padding", "holes"])
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_recurrent_masks_match_keras(rk, device, rng, name, kind, go_backwards, return_sequences):
    """Keras's rule: a masked step keeps the states and repeats the last output (zeros before the first valid
    step); padding masks take the packed fused path, masks with holes the stepwise one."""
    batch, steps = 4, 6
    x = rng.standard_normal((batch, steps, 3)).astype(np.float32)
    mask = padding_mask(rng, batch, steps) if kind == "padding" else rng.random((batch, steps)) < 0.6
    klayer, clayer = _pair(rk, name, 5, go_backwards=go_backwards, return_sequences=return_sequences,
                           return_state=True)
    compare(rk, klayer, clayer, [x], {"mask": mask}, device=device)


def test_padding_masks_run_fused_and_holes_stepwise(device, rng, monkeypatch):
    """Which way the masked sequences go (both are checked against Keras above): a padding mask runs the fused
    layer as a packed batch (its running batch sizes), a mask with holes the stepwise cell."""
    from clnet.keras.layers import rnn as rnn_module
    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs.get("batch_sizes"))
        return real(*args, **kwargs)
    real = rnn_module.rnn_layer
    monkeypatch.setattr(rnn_module, "rnn_layer", spy)
    x = rng.standard_normal((3, 5, 2)).astype(np.float32)
    layer = layers.LSTM(3)
    layer(x, mask=np.arange(5)[None, :] < np.array([[5], [2], [0]]))
    assert calls == [[2, 2, 1, 1, 1]]
    layer(x, mask=np.array([[True, False, True, True, True]] * 3))
    assert len(calls) == 1
    layer(x, mask=np.ones((3, 5), bool))
    assert calls[1] is None


@pytest.mark.parametrize("name", ["LSTM", "GRU"])
def test_zero_output_for_mask_and_short_batches_match_keras(rk, device, rng, name):
    """zero_output_for_mask=True zeroes masked outputs; no row reaching the last steps trims the fused run."""
    x = rng.standard_normal((3, 7, 3)).astype(np.float32)
    mask = np.arange(7)[None, :] < np.array([4, 2, 3])[:, None]
    for go_backwards in (False, True):
        for zero in (False, True):
            klayer, clayer = _pair(rk, name, 4, return_sequences=True, go_backwards=go_backwards,
                                   zero_output_for_mask=zero)
            compare(rk, klayer, clayer, [x], {"mask": mask}, device=device)


@pytest.mark.parametrize("name", ["SimpleRNN", "LSTM", "GRU"])
def test_initial_state_matches_keras(rk, device, rng, name):
    x = rng.standard_normal((2, 4, 3)).astype(np.float32)
    n_states = 2 if name == "LSTM" else 1
    states = [rng.standard_normal((2, 5)).astype(np.float32) for _ in range(n_states)]
    klayer, clayer = _pair(rk, name, 5, return_sequences=True, return_state=True)
    compare(rk, klayer, clayer, [x, states], device=device)
    for mask in ([[True, True, False, False], [False, False, False, False]],  # padding: fused, packed
                 [[True, True, False, False], [False, True, True, True]]):  # a hole: stepwise
        for go_backwards in (False, True):
            klayer.go_backwards = clayer.go_backwards = go_backwards
            compare(rk, klayer, clayer, [x, states], {"mask": np.array(mask)}, device=device)


def test_embedding_mask_into_lstm_matches_keras(rk, device, rng):
    """Embedding(mask_zero=True) makes the mask, the LSTM honours it: the same functional model in both,
    outputs and gradients of the embedding table and the LSTM weights."""
    import torch
    ids = rng.integers(1, 20, size=(4, 7))
    ids[1, 4:] = 0  # padding at the end
    ids[2, 2] = 0  # a hole
    ids[3, :] = 0  # nothing at all

    def model(lib):
        inp = lib.Input((7,), dtype="int32")
        emb = lib.layers.Embedding(20, 6, mask_zero=True)
        h = lib.layers.LSTM(5, return_sequences=True)(emb(inp))
        out = lib.layers.LSTM(3)(h)
        return lib.Model(inp, out)
    kmodel, cmodel = model(rk), model(keras)
    cmodel.set_weights(kmodel.get_weights())
    kout = kmodel(torch.tensor(ids, dtype=torch.int32))
    cout = cmodel(ids.astype(np.int32))
    assert_close(cout, kout.detach().numpy(), rtol=RTOL, atol=ATOL)
    probe = rng.standard_normal(kout.shape).astype(np.float32)
    kgrads = torch.autograd.grad((kout * torch.tensor(probe)).sum(), [w.value for w in kmodel.trainable_weights])
    (cout * clnet.tensor(probe, device=device)).sum().backward()
    for w, g in zip(cmodel.trainable_weights, kgrads):
        assert_close(w.grad, g.numpy(), rtol=RTOL, atol=1e-4, what=w.path)
    emb = cmodel.layers[1]
    assert_close(emb.compute_mask(clnet.tensor(ids)), ids != 0)


def test_masked_sequence_loss_matches_keras(rk, device, rng):
    """A tagger (Embedding(mask_zero=True) -> LSTM -> TimeDistributed(Dense)): the mask reaches the outputs and
    the loss leaves the padded steps out, as in Keras."""
    ids = rng.integers(1, 15, size=(6, 5))
    ids[0, 3:] = 0
    ids[4, 1:] = 0
    tags = rng.integers(0, 3, size=(6, 5))

    def model(lib):
        m = lib.Sequential([lib.Input((5,), dtype="int32"), lib.layers.Embedding(15, 4, mask_zero=True),
                            lib.layers.LSTM(4, return_sequences=True),
                            lib.layers.TimeDistributed(lib.layers.Dense(3, activation="softmax"))])
        m.compile(loss="sparse_categorical_crossentropy")
        return m
    kmodel, cmodel = model(rk), model(keras)
    cmodel.set_weights(kmodel.get_weights())
    kloss = kmodel.evaluate(ids.astype(np.int32), tags, verbose=0)
    closs = cmodel.evaluate(ids.astype(np.int32), tags, verbose=0)
    out = cmodel(ids.astype(np.int32))
    assert_close(out._keras_mask, ids != 0)
    assert abs(closs - kloss) < 1e-5 * max(1.0, abs(kloss))


def test_recurrent_dropout_is_training_only(device, rng):
    x = rng.standard_normal((4, 5, 3)).astype(np.float32)
    for name in ("SimpleRNN", "LSTM", "GRU"):
        layer = getattr(layers, name)(4, dropout=0.5, recurrent_dropout=0.5, return_sequences=True)
        plain = getattr(layers, name)(4, return_sequences=True)
        ref = plain(x)
        layer(x)
        layer.set_weights(plain.get_weights())
        assert_close(layer(x), ref.numpy(), rtol=1e-5, atol=1e-6)  # inference: no dropout
        trained = layer(x, training=True)
        assert np.isfinite(trained.numpy()).all()
        assert np.abs(trained.numpy() - ref.numpy()).max() > 1e-3, f"{name}: dropout changed nothing in training"


@pytest.mark.parametrize("name", ["SimpleRNN", "LSTM", "GRU"])
@pytest.mark.parametrize("recurrent", [False, True])
def test_dropout_drops_inputs_and_states(device, rng, name, recurrent):
    """With rates next to 1 every input (and, with recurrent_dropout, every state entry) is dropped in training:
    the layer then computes what it computes on zero inputs (with a zero recurrent kernel). recurrent=False runs
    the fused layer on the dropped inputs, recurrent=True the stepwise cell with one mask per gate (Keras)."""
    x = rng.standard_normal((3, 4, 2)).astype(np.float32)
    rates = {"dropout": 0.9999999, "recurrent_dropout": 0.9999999 if recurrent else 0.0}
    layer = getattr(layers, name)(3, return_sequences=True, bias_initializer="random_normal", **rates)
    plain = getattr(layers, name)(3, return_sequences=True)
    layer(x)
    plain(x)
    weights = layer.get_weights()
    if recurrent:
        weights[1] = np.zeros_like(weights[1])
    plain.set_weights(weights)
    assert_close(layer(x, training=True), plain(np.zeros_like(x)).numpy(), rtol=1e-5, atol=1e-6)


def test_orthogonal_initializer():
    init = keras.initializers.get("orthogonal")
    for shape in ((4, 12), (12, 4), (3, 2, 6)):
        w = init(shape).reshape(-1, shape[-1])
        small = w @ w.T if w.shape[0] < w.shape[1] else w.T @ w
        assert_close(small, np.eye(min(w.shape)), atol=1e-5)
    w = keras.initializers.Orthogonal(gain=2.0, seed=3)((5, 5))
    assert_close(w @ w.T, 4 * np.eye(5), atol=1e-4)
    np.testing.assert_array_equal(w, keras.initializers.Orthogonal(gain=2.0, seed=3)((5, 5)))
    with pytest.raises(ValueError, match="two-dimensional"):
        init((4,))


def test_stateful_lstm_matches_keras(rk, device, rng):
    """stateful=True carries the final states of one call into the next, until reset_state()."""
    x = rng.standard_normal((2, 6, 3)).astype(np.float32)
    klayer, clayer = _pair(rk, "LSTM", 4, stateful=True, return_sequences=True)
    klayer(x[:, :3])
    clayer(x[:, :3])
    clayer.set_weights(klayer.get_weights())
    for _ in range(2):
        klayer.reset_state()
        clayer.reset_state()
        for chunk in (x[:, :3], x[:, 3:]):
            assert_close(clayer(chunk), rk.ops.convert_to_numpy(klayer(chunk)), rtol=RTOL, atol=ATOL)
    whole = layers.LSTM(4, return_sequences=True)
    whole(x)
    whole.set_weights(klayer.get_weights())
    clayer.reset_state()
    parts = np.concatenate([clayer(x[:, :3]).numpy(), clayer(x[:, 3:]).numpy()], 1)
    assert_close(parts, whole(x).numpy(), rtol=1e-5, atol=1e-6)


# --- wrappers ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("merge_mode", ["concat", "sum", "ave", "mul", None])
def test_bidirectional_matches_keras(rk, device, rng, merge_mode):
    x = rng.standard_normal((3, 5, 4)).astype(np.float32)
    klayer = rk.layers.Bidirectional(rk.layers.LSTM(4, return_sequences=True), merge_mode=merge_mode)
    clayer = layers.Bidirectional(layers.LSTM(4, return_sequences=True), merge_mode=merge_mode)
    compare(rk, klayer, clayer, [x], device=device)
    mask = padding_mask(rng, 3, 5)
    compare(rk, klayer, clayer, [x], {"mask": mask}, device=device)


def test_bidirectional_states_and_gru_match_keras(rk, device, rng):
    x = rng.standard_normal((3, 5, 4)).astype(np.float32)
    mask = rng.random((3, 5)) < 0.7
    klayer = rk.layers.Bidirectional(rk.layers.GRU(3, return_state=True))
    clayer = layers.Bidirectional(layers.GRU(3, return_state=True))
    compare(rk, klayer, clayer, [x], device=device)
    compare(rk, klayer, clayer, [x], {"mask": mask}, device=device)
    back_k = rk.layers.SimpleRNN(3, go_backwards=True, activation="relu")
    back_c = layers.SimpleRNN(3, go_backwards=True, activation="relu")
    klayer = rk.layers.Bidirectional(rk.layers.SimpleRNN(3), backward_layer=back_k, merge_mode="sum")
    clayer = layers.Bidirectional(layers.SimpleRNN(3), backward_layer=back_c, merge_mode="sum")
    compare(rk, klayer, clayer, [x], device=device)


def test_time_distributed_matches_keras(rk, device, rng):
    x = rng.standard_normal((2, 4, 5)).astype(np.float32)
    klayer = rk.layers.TimeDistributed(rk.layers.Dense(3, activation="tanh"))
    clayer = layers.TimeDistributed(layers.Dense(3, activation="tanh"))
    compare(rk, klayer, clayer, [x], device=device)
    x4 = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    klayer = rk.layers.TimeDistributed(rk.layers.LSTM(3))
    clayer = layers.TimeDistributed(layers.LSTM(3))
    compare(rk, klayer, clayer, [x4], device=device)


def test_time_distributed_batch_norm_sees_each_step(rk, device, rng):
    """In training, BatchNormalization's statistics come from each step's batch, as Keras loops over steps."""
    x = rng.standard_normal((4, 3, 2)).astype(np.float32) * np.array([1.0, 5.0, 0.2])[None, :, None]
    klayer = rk.layers.TimeDistributed(rk.layers.BatchNormalization())
    clayer = layers.TimeDistributed(layers.BatchNormalization())
    compare(rk, klayer, clayer, [x], {"training": True}, device=device, grads=False)


# --- embedding and masking ---------------------------------------------------------------------------
def test_embedding_matches_keras(rk, device, rng):
    ids = rng.integers(0, 10, size=(3, 4, 2))
    klayer, clayer = _pair(rk, "Embedding", 10, 5, mask_zero=True)
    out = compare(rk, klayer, clayer, [ids], device=device)[0]
    assert_close(out._keras_mask, ids != 0)
    table = rng.standard_normal((10, 5)).astype(np.float32)
    preset = layers.Embedding(10, 5, weights=table)
    assert_close(preset(ids), table[ids])
    with pytest.raises(ValueError, match="input_dim"):
        layers.Embedding(0, 3)


def test_masking_matches_keras(rk, device, rng):
    x = rng.standard_normal((3, 5, 2)).astype(np.float32)
    x[0, 3:] = 0.0
    x[2, 1] = 0.0
    x[1, 2] = 0.5
    for value in (0.0, 0.5):
        klayer, clayer = _pair(rk, "Masking", mask_value=value)
        out = compare(rk, klayer, clayer, [x], device=device)[0]
        assert_close(out._keras_mask, np.any(x != value, -1))
    inp_k, inp_c = rk.Input((5, 2)), keras.Input((5, 2))
    kmodel = rk.Model(inp_k, rk.layers.LSTM(3)(rk.layers.Masking()(inp_k)))
    cmodel = keras.Model(inp_c, layers.LSTM(3)(layers.Masking()(inp_c)))
    cmodel.set_weights(kmodel.get_weights())
    assert_close(cmodel(x), rk.ops.convert_to_numpy(kmodel(x)), rtol=RTOL, atol=ATOL)


# --- attention ---------------------------------------------------------------------------------------
MHA_CASES = [
    ({"num_heads": 2, "key_dim": 3}, {}),
    ({"num_heads": 3, "key_dim": 2, "value_dim": 4, "output_shape": 5}, {"key": True}),
    ({"num_heads": 2, "key_dim": 4, "use_bias": False}, {"use_causal_mask": True}),
    ({"num_heads": 2, "key_dim": 3}, {"attention_mask": True}),
    ({"num_heads": 2, "key_dim": 3}, {"attention_mask": True, "return_attention_scores": True}),
    ({"num_heads": 1, "key_dim": 3, "dropout": 0.3}, {"use_causal_mask": True, "return_attention_scores": True}),
]


@pytest.mark.parametrize("init,call", MHA_CASES, ids=[str(i) for i in range(len(MHA_CASES))])
def test_multi_head_attention_matches_keras(rk, device, rng, init, call):
    q = rng.standard_normal((2, 4, 6)).astype(np.float32)
    v = rng.standard_normal((2, 5, 7)).astype(np.float32)
    if call.get("use_causal_mask"):
        v = v[:, :4]
    args = [q, v]
    call = dict(call)
    if call.pop("key", False):
        args.append(rng.standard_normal(v.shape[:2] + (3,)).astype(np.float32))
    if call.pop("attention_mask", False):
        mask = rng.random((2, 4, v.shape[1])) < 0.7
        mask[..., 0] = True  # every query sees a key
        call["attention_mask"] = mask
    klayer, clayer = _pair(rk, "MultiHeadAttention", **init)
    compare(rk, klayer, clayer, args, call, device=device)


def test_multi_head_attention_keras_masks_match_keras(rk, device, rng):
    """Query and value masks from Embedding(mask_zero=True) join the attention mask; the output keeps the
    query's mask."""
    import torch
    q_ids, v_ids = rng.integers(1, 9, size=(2, 4)), rng.integers(1, 9, size=(2, 5))
    v_ids[0, 3:] = 0
    v_ids[1, 1] = 0
    q_ids[1, 2:] = 0

    def model(lib):
        qi, vi = lib.Input((4,), dtype="int32"), lib.Input((5,), dtype="int32")
        emb = lib.layers.Embedding(9, 6, mask_zero=True)
        out, scores = lib.layers.MultiHeadAttention(2, 3)(emb(qi), emb(vi), return_attention_scores=True)
        return lib.Model([qi, vi], [out, scores])
    kmodel, cmodel = model(rk), model(keras)
    cmodel.set_weights(kmodel.get_weights())
    kout = kmodel([torch.tensor(q_ids, dtype=torch.int32), torch.tensor(v_ids, dtype=torch.int32)])
    cout = cmodel([q_ids.astype(np.int32), v_ids.astype(np.int32)])
    for c, k in zip(cout, kout):
        assert_close(c, k.detach().numpy(), rtol=RTOL, atol=ATOL)
    assert_close(cout[1].numpy()[0, :, :, 3:], np.zeros((2, 4, 2)), atol=1e-7)


ATTENTION_CASES = [
    ({}, {}),
    ({"use_scale": True}, {"key": True, "return_attention_scores": True}),
    ({"score_mode": "concat", "use_scale": True}, {"use_causal_mask": True}),
    ({}, {"mask": True}),
]


@pytest.mark.parametrize("init,call", ATTENTION_CASES, ids=[str(i) for i in range(len(ATTENTION_CASES))])
def test_attention_matches_keras(rk, device, rng, init, call):
    q = rng.standard_normal((2, 4, 3)).astype(np.float32)
    v = rng.standard_normal((2, 4 if call.get("use_causal_mask") else 5, 3)).astype(np.float32)
    inputs = [q, v]
    call = dict(call)
    if call.pop("key", False):
        inputs.append(rng.standard_normal(v.shape).astype(np.float32))
    if call.pop("mask", False):
        v_mask = rng.random((2, v.shape[1])) < 0.6
        v_mask[:, 0] = True
        call["mask"] = [rng.random((2, 4)) < 0.7, v_mask]
    klayer, clayer = _pair(rk, "Attention", **init)
    compare(rk, klayer, clayer, [inputs], call, device=device)


def test_attention_dropout_is_training_only(device, rng):
    """Dropout acts on the attention weights in training only; MultiHeadAttention returns the weights before
    dropout (they sum to 1), Attention the ones after it (as Keras)."""
    q = rng.standard_normal((2, 4, 6)).astype(np.float32)
    v = rng.standard_normal((2, 5, 6)).astype(np.float32)
    mha = layers.MultiHeadAttention(2, 3, dropout=0.5)
    ref = mha(q, v).numpy()
    out, scores = mha(q, v, training=True, return_attention_scores=True)
    assert np.abs(out.numpy() - ref).max() > 1e-4
    assert_close(scores.numpy().sum(-1), np.ones((2, 2, 4)), atol=1e-5)
    assert np.abs(mha(q, v, training=True).numpy() - ref).max() > 1e-4  # the fused path's dropout
    att = layers.Attention(dropout=0.5)
    ref = att([q, v]).numpy()
    out, weights = att([q, v], training=True, return_attention_scores=True)
    assert np.abs(out.numpy() - ref).max() > 1e-4
    w = weights.numpy()
    assert (w == 0).any() and np.abs(w.sum(-1) - 1).max() > 1e-3


# --- configs and symbolic shapes ---------------------------------------------------------------------
def _layers_to_check(lib):
    L = lib.layers
    return [L.Embedding(12, 4, mask_zero=True), L.Masking(0.5), L.SimpleRNN(3, return_sequences=True),
            L.LSTM(3, return_state=True, go_backwards=True), L.GRU(3, reset_after=False, return_sequences=True,
                                                                   return_state=True),
            L.Bidirectional(L.LSTM(3, return_sequences=True), merge_mode="ave"),
            L.Bidirectional(L.GRU(2), merge_mode=None), L.Bidirectional(L.LSTM(2, return_state=True)),
            L.TimeDistributed(L.Dense(2)),
            L.MultiHeadAttention(2, 3, value_dim=4, output_shape=(5,)), L.Attention(use_scale=True)]


def _symbolic_inputs(lib, layer):
    if isinstance(layer, lib.layers.Embedding):
        return [lib.Input((6,), dtype="int32")]
    if isinstance(layer, lib.layers.MultiHeadAttention):
        return [lib.Input((6, 4)), lib.Input((7, 5))]
    if isinstance(layer, lib.layers.Attention):
        return [[lib.Input((6, 4)), lib.Input((7, 4))]]
    return [lib.Input((6, 4))]


def test_symbolic_output_shapes_match_keras(rk):
    for klayer, clayer in zip(_layers_to_check(rk), _layers_to_check(keras)):
        kout = _flat(klayer(*_symbolic_inputs(rk, klayer)))
        cout = _flat(clayer(*_symbolic_inputs(keras, clayer)))
        assert [tuple(t.shape) for t in cout] == [tuple(t.shape) for t in kout], type(clayer).__name__


def test_configs_have_keras_keys_and_round_trip(rk, device, rng):
    x = rng.standard_normal((2, 6, 4)).astype(np.float32)
    for klayer, clayer in zip(_layers_to_check(rk), _layers_to_check(keras)):
        name = type(clayer).__name__
        config = clayer.get_config()
        missing = set(klayer.get_config()) - set(config) - {"dtype"}
        assert not missing, f"{name}: config lacks Keras's keys {missing}"
        args = [x] if name != "Embedding" else [rng.integers(0, 12, size=(2, 6))]
        if name == "MultiHeadAttention":
            args = [x, rng.standard_normal((2, 7, 5)).astype(np.float32)]
        if name == "Attention":
            args = [[x, rng.standard_normal((2, 7, 4)).astype(np.float32)]]
        first = _flat(clayer(*args))
        copy = type(clayer).from_config(config)
        copy(*args)
        copy.set_weights(clayer.get_weights())
        for a, b in zip(_flat(copy(*args)), first):
            assert_close(a, b.numpy(), rtol=1e-6, atol=1e-7, what=name)


def test_model_with_sequence_layers_saves_and_loads(device, rng, tmp_path):
    inp = keras.Input((6,), dtype="int32")
    h = layers.Embedding(10, 4, mask_zero=True)(inp)
    h = layers.Bidirectional(layers.LSTM(3, return_sequences=True))(h)
    h = layers.TimeDistributed(layers.Dense(4))(h)
    h = layers.MultiHeadAttention(2, 2)(h, h)
    out = layers.GRU(2)(h)
    model = keras.Model(inp, out)
    ids = rng.integers(0, 10, size=(3, 6))
    ids[0, 4:] = 0
    ref = model(ids).numpy()
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    assert_close(again(ids), ref, rtol=1e-6, atol=1e-7)


def test_bad_inputs_raise_keras_errors(device, rng):
    with pytest.raises(ValueError, match="units"):
        layers.LSTM(0)
    with pytest.raises(ValueError, match="passed to GRU: {'foo': 1}"):
        layers.GRU(2, foo=1)
    with pytest.raises(ValueError, match="merge mode"):
        layers.Bidirectional(layers.LSTM(2), merge_mode="max")
    with pytest.raises(ValueError, match="expected ndim=3"):
        layers.GRU(2)(rng.standard_normal((2, 3)).astype(np.float32))
    with pytest.raises(ValueError, match="initial state"):
        layers.LSTM(2)(rng.standard_normal((2, 3, 1)).astype(np.float32),
                       initial_state=[np.zeros((2, 2), np.float32)])
    with pytest.raises(ValueError, match="list of inputs"):
        layers.Attention()(rng.standard_normal((2, 3, 1)).astype(np.float32))
    with pytest.raises(ValueError, match="num_heads"):
        layers.MultiHeadAttention(0, 2)


# --- training ----------------------------------------------------------------------------------------
def test_text_classifier_trains_with_fit(device):
    """Embedding(mask_zero=True) + LSTM + Dense learns whether token 1 occurs in a padded sequence."""
    rng = np.random.default_rng(3)
    n, steps = 256, 8
    ids = rng.integers(2, 12, size=(n, steps))
    lengths = rng.integers(2, steps + 1, size=n)
    labels = rng.integers(0, 2, size=n)
    for i in range(n):
        if labels[i]:
            ids[i, rng.integers(0, lengths[i])] = 1
        ids[i, lengths[i]:] = 0
    model = keras.Sequential([keras.Input((steps,), dtype="int32"), layers.Embedding(12, 8, mask_zero=True),
                              layers.LSTM(8), layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.Adam(0.03), loss="binary_crossentropy", metrics=["accuracy"])
    history = model.fit(ids, labels, batch_size=32, epochs=12, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert history.history["accuracy"][-1] > 0.9

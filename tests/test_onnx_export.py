"""clnet.onnx.export: every layer and op family exported, each file run by onnxruntime against clnet's own
output; dynamic_axes honoured (the file run at other sizes); the lecture's ONNX slide; clear errors."""
import io

import numpy as np
import pytest

import clnet
import clnet.nn as nn
import clnet.nn.functional as F

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from conftest import assert_close  # noqa: E402


def as_tuple(v):
    return v if isinstance(v, tuple) else (v,)


def run_onnx(proto, feeds):
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, dict(zip(names, feeds)))


def check(model, args, rtol=1e-5, atol=1e-5, other_args=None, **kwargs):
    """Export, run in onnxruntime on args (and other_args, when given), compare with clnet; the proto."""
    args = as_tuple(args)
    buf = io.BytesIO()
    proto = clnet.onnx.export(model, args, buf, **kwargs)
    assert onnx.load_model_from_string(buf.getvalue()) == proto
    training = getattr(model, "training", None)
    if training:
        model.eval()  # export runs the model in eval mode, as PyTorch's does
    for xs in [args] + ([as_tuple(other_args)] if other_args is not None else []):
        with clnet.no_grad():
            expected = as_tuple(model(*xs))
        got = run_onnx(proto, [x.numpy() for x in xs])
        assert len(got) == len(expected)
        for i, (g, e) in enumerate(zip(got, expected)):
            assert_close(g, e.numpy(), rtol=rtol, atol=atol, what=f"output {i}")
            assert g.dtype == e.dtype, f"output {i}: {g.dtype} != {e.dtype}"
    if training:
        model.train()
    return proto


def ops_of(proto):
    return [n.op_type for n in proto.graph.node]


def test_lecture_two_layer_net_is_gemm_relu_gemm(device):
    N, D_in, H, D_out = 64, 1000, 100, 10
    model = nn.Sequential(nn.Linear(D_in, H), nn.ReLU(), nn.Linear(H, D_out))
    proto = check(model, clnet.randn(N, D_in))
    assert ops_of(proto) == ["Gemm", "Relu", "Gemm"]
    assert sorted(t.name for t in proto.graph.initializer) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [N, D_in]


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.bn = nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.c2 = nn.Conv2d(6, 4, 3, stride=2, padding="valid")
        self.c3 = nn.Conv2d(4, 4, 3, padding="same", dilation=2, bias=False)
        self.pool, self.avg = nn.MaxPool2d(2), nn.AvgPool2d(3, stride=1, padding=1)
        self.drop, self.fc = nn.Dropout(0.3), nn.Linear(16, 5)

    def forward(self, x):
        x = F.relu(self.bn(self.c1(x)))
        x = F.leaky_relu(self.c3(self.c2(x)), 0.2)
        x = self.avg(self.pool(x))
        x = x.view(x.size(0), -1)
        return F.log_softmax(self.fc(self.drop(x)), dim=1), F.softmax(x, -1)


def _randomize_bn(bn, rng):
    with clnet.no_grad():
        bn.running_mean.copy_(clnet.tensor(rng.standard_normal(bn.num_features).astype(np.float32)))
        bn.running_var.copy_(clnet.tensor(rng.uniform(0.5, 2, bn.num_features).astype(np.float32)))


def test_cnn_layers(device, rng):
    model = CNN()
    _randomize_bn(model.bn, rng)
    proto = check(model, clnet.tensor(rng.standard_normal((2, 3, 9, 9)).astype(np.float32)), rtol=1e-4)
    ops = ops_of(proto)
    for op in ("Conv", "BatchNormalization", "MaxPool", "AveragePool", "LeakyRelu", "Gemm", "LogSoftmax", "Softmax"):
        assert op in ops, ops
    assert "Dropout" not in ops and model.training, "eval mode while exporting, the mode restored after"


def test_dynamic_batch_runs_at_other_sizes(device, rng):
    model = CNN().eval()
    _randomize_bn(model.bn, rng)
    x = clnet.tensor(rng.standard_normal((2, 3, 9, 9)).astype(np.float32))
    x5 = clnet.tensor(rng.standard_normal((5, 3, 9, 9)).astype(np.float32))
    proto = check(model, x, rtol=1e-4, other_args=x5, input_names=["image"], output_names=["logp", "p"],
                  dynamic_axes={"image": {0: "batch"}, "logp": {0: "batch"}, "p": [0]})
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, 9, 9]
    assert proto.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert proto.graph.output[1].type.tensor_type.shape.dim[0].dim_param == "p_dynamic_axes_1"


class Shapes(nn.Module):
    """Shape code whose sizes come from the dynamic axes (batch B, sequence T)."""

    def forward(self, x, idx):
        B, T, C = x.shape
        flat = x.reshape(B * T, C)                                 # a product of two dynamic sizes
        a = flat.view(B, T, C).permute(0, 2, 1).transpose(1, 2)
        b = clnet.cat([x, x * 2], dim=2)[:, 1:, ::2]               # slices with steps
        c = clnet.stack([x.sum(-1), x.mean(-1), x.amax(-1)], dim=1)
        d, e = x.chunk(2, dim=2)
        f = x.unsqueeze(1).squeeze(1)[:, :, None, 0].flip(1)
        g = x.index_select(2, idx) + clnet.gather(x, 2, idx.view(1, 1, -1).expand(B, T, -1))
        h = x.narrow(2, 1, C - 1)
        i = x.max(dim=1)[0] + x.argmax(dim=1).float() + x.var(dim=(0, 2), keepdim=True).sum() + x.std()
        j = clnet.where(x > 0, x, x * 0.1).clamp(-0.5, 0.8) ** 2 + clnet.exp(-x.abs()).sqrt()
        k = clnet.matmul(x, x.transpose(1, 2)).softmax(-1) if hasattr(x, "softmax") else \
            F.softmax(clnet.matmul(x, x.transpose(1, 2)), -1)
        m = x.repeat(1, 2, 1)[:, :T] + clnet.arange(C, dtype=clnet.float32) + clnet.zeros(B, T, C)
        n = x[..., -1] - x[:, -1, :] .sum(-1, keepdim=True)
        return a, b, c, d * e, f, g, h, i, j, k, m, n, x.prod(-1), clnet.logsumexp(x, dim=-1)


def test_shape_ops_and_reductions_with_two_dynamic_axes(device, rng):
    model = Shapes()
    x = clnet.tensor(rng.standard_normal((2, 3, 4)).astype(np.float32))
    idx = clnet.tensor(np.array([3, 0, 2], np.int64))
    x2 = clnet.tensor(rng.standard_normal((4, 6, 4)).astype(np.float32))
    check(model, (x, idx), rtol=1e-4, atol=1e-5, other_args=(x2, idx), input_names=["x", "idx"],
          dynamic_axes={"x": {0: "B", 1: "T"}})


def test_activations_and_math(device, rng):
    def fn(x, y):
        return (clnet.sigmoid(x), clnet.tanh(x), F.relu(x) - y, clnet.log1p(x.abs()), clnet.expm1(x) * 0.5,
                x // 0.3, x % 0.7, clnet.maximum(x, y), clnet.minimum(x, 0.1), (x > y).float(), (x != y),
                clnet.rsqrt(x.abs() + 1), clnet.square(x), x / (y.abs() + 1), 2 - x, x.floor() + x.ceil() + x.round(),
                clnet.logical_and(x > 0, y > 0), clnet.sign(x), x.reciprocal(), clnet.sin(x) + clnet.cos(x))
    x = clnet.tensor(rng.standard_normal((3, 5)).astype(np.float32))
    y = clnet.tensor(rng.standard_normal((3, 5)).astype(np.float32))
    check(fn, (x, y), rtol=1e-5, atol=1e-5)


def test_integer_ops(device):
    def fn(i, j):
        return i // j, i % j, i * 3 + j, (i > 2), i.sum(0)
    i = clnet.tensor(np.array([[7, -7, 5], [0, 9, -4]], np.int64))
    j = clnet.tensor(np.array([[2, 2, -3], [5, -4, 3]], np.int64))
    check(fn, (i, j))


def test_pointwise_rows_export_through_their_expressions(device, rng):
    """Pointwise ops without a rule of their own (the losses here) export from their C expressions."""
    def fn(x, t):
        return (F.mse_loss(x, t), F.l1_loss(x, t, reduction="none"),
                F.binary_cross_entropy_with_logits(x, (t > 0).float()), F.leaky_relu(x, 0.3))
    x = clnet.tensor(rng.standard_normal((4, 3)).astype(np.float32))
    t = clnet.tensor(rng.standard_normal((4, 3)).astype(np.float32))
    check(fn, (x, t), rtol=1e-5, atol=1e-5)


def test_round_trip_through_clnet_onnx_load(device, rng, tmp_path):
    model = CNN().eval()
    _randomize_bn(model.bn, rng)
    x = clnet.tensor(rng.standard_normal((2, 3, 9, 9)).astype(np.float32))
    clnet.onnx.export(model, x, tmp_path / "cnn.onnx")
    back = clnet.onnx.load(tmp_path / "cnn.onnx")
    for got, want in zip(back(x), model(x)):
        assert_close(got, want.numpy(), rtol=1e-4, atol=1e-5)
    state = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    assert set(back.state_dict()) == state


def test_opsets(device, rng):
    model = CNN().eval()
    x = clnet.tensor(rng.standard_normal((2, 3, 9, 9)).astype(np.float32))
    for opset in (13, 18, 20):
        proto = check(model, x, rtol=1e-4, opset_version=opset)
        assert proto.opset_import[0].version == opset
    with pytest.raises(ValueError, match="opset_version 9 is not supported"):
        clnet.onnx.export(model, x, io.BytesIO(), opset_version=9)


def test_errors_say_what(device):
    x = clnet.randn(2, 3)
    with pytest.raises(clnet.onnx.UnsupportedOperatorError, match="'nonzero' has no ONNX rule"):
        clnet.onnx.export(lambda v: clnet.nonzero(v > 0), x, io.BytesIO())
    with pytest.raises(ValueError, match="dynamic_axes names 'nope'"):
        clnet.onnx.export(nn.Linear(3, 2), x, io.BytesIO(), dynamic_axes={"nope": [0]})
    with pytest.raises(ValueError, match="3 input names for 1 input"):
        clnet.onnx.export(nn.Linear(3, 2), x, io.BytesIO(), input_names=["a", "b", "c"])

    def loops_over_batch(v):
        return clnet.stack([row * 2 for row in v.unbind(0)])
    with pytest.raises(clnet.onnx.UnsupportedOperatorError, match="different ops when a dynamic axis changes"):
        clnet.onnx.export(loops_over_batch, x, io.BytesIO(), input_names=["v"], dynamic_axes={"v": [0]})
    with pytest.raises(TypeError, match="unsupported arguments"):
        clnet.onnx.export(nn.Linear(3, 2), x, io.BytesIO(), operator_export_typo=1)


def test_constant_folding(device, rng):
    """A weight transposed for MatMul (Linear on 3-D input) is stored transposed: no Transpose of an
    initializer is left in the file, unless do_constant_folding=False."""
    model = nn.Linear(4, 3)
    x = clnet.tensor(rng.standard_normal((2, 5, 4)).astype(np.float32))
    folded = check(model, x)
    assert ops_of(folded) == ["MatMul", "Add"] and "weight.transpose" in {t.name for t in folded.graph.initializer}
    assert "Transpose" in ops_of(check(model, x, do_constant_folding=False))


def test_export_params_false_makes_weights_inputs(device):
    model = nn.Linear(3, 2)
    proto = clnet.onnx.export(model, clnet.randn(4, 3), None, export_params=False)
    assert [i.name for i in proto.graph.input] == ["input", "bias", "weight"] and not proto.graph.initializer


class Sequence(nn.Module):
    """clnet.nn's recurrent, embedding, 1-D, attention and resampling layers in one model."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 6)
        self.lstm = nn.LSTM(6, 5, num_layers=2, bidirectional=True)
        self.gru = nn.GRU(10, 4, batch_first=True)
        self.rnn = nn.RNN(4, 4, nonlinearity="relu")
        self.conv = nn.Conv1d(4, 4, 3, padding=1, groups=2)
        self.attn = nn.MultiheadAttention(4, 2, batch_first=True)
        self.act = nn.GELU()

    def forward(self, tokens):
        x = self.emb(tokens)                                  # (T, B, 6)
        y, (h, c) = self.lstm(x)
        z, hz = self.gru(y.transpose(0, 1))                   # (B, T, 4)
        w, _ = self.rnn(z.transpose(0, 1))
        u = self.act(self.conv(w.permute(1, 2, 0)))           # (B, 4, T)
        v = F.silu(nn.functional.max_pool1d(u, 2)) if hasattr(F, "silu") else u
        a, _ = self.attn(z, z, z)
        return v, a, h, c, hz


def test_recurrent_embedding_attention_layers_with_dynamic_sequence_and_batch(device, rng):
    clnet.manual_seed(0)
    model = Sequence().eval()
    tokens = clnet.tensor(rng.integers(0, 20, (6, 2)))
    longer = clnet.tensor(rng.integers(0, 20, (8, 3)))
    proto = check(model, tokens, rtol=1e-4, atol=1e-5, other_args=longer, input_names=["tokens"],
                  dynamic_axes={"tokens": {0: "T", 1: "B"}})
    ops = ops_of(proto)
    for op in ("Gather", "LSTM", "GRU", "RNN", "Conv", "Erf", "MaxPool", "Softmax"):
        assert op in ops, ops


def test_resampling_and_padding_layers(device, rng):
    model = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear"), nn.ReflectionPad2d(1),
                          nn.Conv2d(2, 3, 3, groups=1), nn.AdaptiveAvgPool2d((2, 2)), nn.ELU(), nn.Hardswish())
    check(model, clnet.tensor(rng.standard_normal((1, 2, 3, 3)).astype(np.float32)), rtol=1e-4, atol=1e-5)


def test_scans_sorting_triangles_einsum_attention(device, rng):
    def fn(x, y, q, k, v):
        return (clnet.cumsum(x, 1), clnet.topk(x, 2, -1)[0], clnet.topk(x, 2, 1, largest=False)[1],
                clnet.sort(x, -1)[0], clnet.argsort(x, 1, descending=True), clnet.tril(x, -1), clnet.triu(x[0]),
                clnet.einsum("bij,bkj->bik", x, y), clnet.erf(x), clnet.atan(x) + clnet.sinh(x), clnet.trunc(x * 3),
                clnet.isfinite(x), clnet.fmod(x, 0.3), F.scaled_dot_product_attention(q, k, v),
                F.scaled_dot_product_attention(q, k[:, :, :3], v[:, :, :3], is_causal=True),
                clnet.outer(x[0, 0], y[0, 0]), clnet.lerp(x, y[:, :3], 0.3), clnet.roll(x, 1, 2))
    t = lambda *s: clnet.tensor(rng.standard_normal(s).astype(np.float32))  # noqa: E731
    check(fn, (t(2, 3, 4), t(2, 5, 4), t(2, 2, 3, 4), t(2, 2, 5, 4), t(2, 2, 5, 6)), rtol=1e-4, atol=1e-5)


class Norms(nn.Module):
    """LayerNorm, GroupNorm, InstanceNorm, ConvTranspose and a Transformer encoder layer."""

    def __init__(self):
        super().__init__()
        self.up = nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1)
        self.gn, self.inorm = nn.GroupNorm(2, 4), nn.InstanceNorm2d(4, affine=True)
        self.ln = nn.LayerNorm(8)
        self.enc = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)

    def forward(self, x, seq):
        y = self.inorm(self.gn(self.up(x)))
        return y, self.enc(self.ln(seq))


@pytest.mark.parametrize("opset", [17, 21, 13])
def test_norm_layers_conv_transpose_and_encoder(device, rng, opset):
    clnet.manual_seed(0)
    model = Norms().eval()
    x = clnet.tensor(rng.standard_normal((2, 3, 4, 4)).astype(np.float32))
    seq = clnet.tensor(rng.standard_normal((2, 5, 8)).astype(np.float32))
    proto = check(model, (x, seq), rtol=1e-4, atol=1e-5, opset_version=opset)
    ops = ops_of(proto)
    assert "ConvTranspose" in ops and "InstanceNormalization" in ops
    assert ("LayerNormalization" in ops) == (opset >= 17) and ("GroupNormalization" in ops) == (opset >= 21)


def test_training_mode_export_keeps_dropout(device, rng):
    """training=TrainingMode.TRAINING exports dropout as a random mask: about p of the outputs are zero and the
    rest scaled by 1/(1-p), different on each run; the model's own mode is restored."""
    model = nn.Sequential(nn.Linear(64, 64), nn.Dropout(0.5)).eval()
    with clnet.no_grad():
        model[0].weight.copy_(clnet.tensor(np.eye(64, dtype=np.float32)))
        model[0].bias.zero_()
    x = np.ones((8, 64), np.float32)
    proto = clnet.onnx.export(model, clnet.tensor(x), None, training=clnet.onnx.TrainingMode.TRAINING)
    assert not model.training
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    a, b = (session.run(None, {"input": x})[0] for _ in range(2))
    assert set(np.unique(a)) <= {0.0, 2.0} and 0.35 < (a == 0).mean() < 0.65
    assert not np.array_equal(a, b)


def test_repeated_and_passed_through_outputs(device, rng):
    """The lecture's MyCell returns new_h twice; an input returned as it is also becomes an output."""
    class Cell(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 4)

        def forward(self, x, h):
            new_h = clnet.tanh(self.linear(x) + h)
            return new_h, new_h, x
    x, h = (clnet.tensor(rng.standard_normal((3, 4)).astype(np.float32)) for _ in range(2))
    proto = check(Cell(), (x, h), output_names=["h1", "h2", "x_again"])
    assert [o.name for o in proto.graph.output] == ["h1", "h2", "x_again"]


def _layer_groups():
    """Every clnet.nn layer that computes (containers and losses aside), grouped by input shape; each group
    is one model returning every layer's output."""
    X4, X3, X2 = (2, 3, 6, 6), (2, 3, 8), (4, 6)
    return {
        "images": (X4, [nn.AdaptiveAvgPool2d((3, 2)), nn.AdaptiveMaxPool2d(3), nn.AvgPool2d(3, 2, 1), nn.BatchNorm2d(3),
                        nn.CircularPad2d(1), nn.ConstantPad2d(1, 0.3), nn.Conv2d(3, 6, 3, groups=3, padding="same"),
                        nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1), nn.Dropout2d(0.5),
                        nn.Flatten(), nn.LPPool2d(2, 2), nn.LocalResponseNorm(2), nn.MaxPool2d(3, 2, 1),
                        nn.PixelUnshuffle(2), nn.ReplicationPad2d(1), nn.Softmax2d(), nn.UpsamplingNearest2d(scale_factor=2),
                        nn.UpsamplingBilinear2d(scale_factor=2), nn.ZeroPad2d((1, 0, 2, 1)), nn.GroupNorm(3, 3),
                        nn.InstanceNorm2d(3, affine=True)]),
        "sequences": (X3, [nn.AdaptiveAvgPool1d(4), nn.AdaptiveMaxPool1d(4), nn.AvgPool1d(3, 2, 1), nn.BatchNorm1d(3),
                           nn.CircularPad1d(2), nn.ConstantPad1d((1, 2), 0.5), nn.Conv1d(3, 4, 3, stride=2, padding=1),
                           nn.ConvTranspose1d(3, 2, 3, stride=2), nn.InstanceNorm1d(3), nn.MaxPool1d(3, 2, 1),
                           nn.ReflectionPad1d(2)]),
        "vectors": (X2, [nn.CELU(0.5), nn.ELU(), nn.GELU("tanh"), nn.GLU(), nn.GRUCell(6, 5), nn.Hardshrink(),
                         nn.Hardsigmoid(), nn.Hardswish(), nn.Hardtanh(), nn.Identity(), nn.LSTMCell(6, 5),
                         nn.LayerNorm([6]), nn.LeakyReLU(0.2), nn.Linear(6, 3), nn.LogSigmoid(), nn.LogSoftmax(1),
                         nn.Mish(), nn.PReLU(), nn.RNNCell(6, 5), nn.ReLU(), nn.ReLU6(), nn.SELU(), nn.SiLU(),
                         nn.Sigmoid(), nn.Softmax(1), nn.Softmin(1), nn.Softplus(2.0), nn.Softshrink(), nn.Softsign(),
                         nn.Tanh(), nn.Tanhshrink(), nn.Threshold(0.1, 20.0), nn.Unflatten(1, (2, 3))]),
    }


class _Parallel(nn.Module):
    def __init__(self, layers):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x):
        outs = []
        for layer in self.layers:
            y = layer(x)
            outs.extend(y if isinstance(y, tuple) else (y,))
        return tuple(outs)


@pytest.mark.parametrize("group", ["images", "sequences", "vectors"])
def test_every_layer_exports(device, rng, group):
    shape, layers = _layer_groups()[group]
    clnet.manual_seed(0)
    model = _Parallel(layers).eval()
    check(model, clnet.tensor(rng.standard_normal(shape).astype(np.float32)), rtol=1e-4, atol=1e-5)


def test_transformer(device, rng):
    clnet.manual_seed(0)
    model = nn.Transformer(8, 2, 1, 1, 16, dropout=0.0, batch_first=True).eval()
    src, tgt = (clnet.tensor(rng.standard_normal(s).astype(np.float32)) for s in ((2, 4, 8), (2, 3, 8)))
    check(model, (src, tgt), rtol=1e-4, atol=1e-5)

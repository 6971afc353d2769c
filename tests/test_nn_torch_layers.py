"""The PyTorch layers of issue 13 side by side with PyTorch (CPU): the same weights, inputs and output
gradients, compared forward and backward (inputs and parameters) in float32; float64 finite differences
where clnet has its own gradient expressions (activations, losses)."""
from __future__ import annotations

import math

import numpy as np
import pytest

import clnet
import clnet.nn as nn
import clnet.nn.functional as F
from conftest import assert_close, gradcheck, simulator_subset

torch = pytest.importorskip("torch")
TF = torch.nn.functional
RTOL, ATOL = 1e-4, 1e-5


def _pair(x):
    x = np.asarray(x, np.float32)
    return torch.tensor(x, requires_grad=True), clnet.tensor(x, requires_grad=True)


def _copy(tm, cm):
    cm.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})


def _check_module(tm, cm, x, rng, rtol=RTOL, atol=ATOL, extra=()):
    """Forward and backward of the same module in both frameworks on input x (and extra inputs)."""
    _copy(tm, cm)
    tx, cx = _pair(x)
    to, co = tm(tx, *extra[0]) if extra else tm(tx), cm(cx, *extra[1]) if extra else cm(cx)
    assert_close(co, to.detach().numpy(), rtol=rtol, atol=atol, what="output")
    g = rng.standard_normal(tuple(to.shape)).astype(np.float32)
    to.backward(torch.tensor(g))
    co.backward(clnet.tensor(g))
    assert_close(cx.grad, tx.grad.numpy(), rtol=rtol, atol=atol, what="input gradient")
    cparams = dict(cm.named_parameters())
    for name, p in tm.named_parameters():
        assert_close(cparams[name].grad, p.grad.numpy(), rtol=rtol, atol=atol, what=f"gradient of {name}")


# --- activations -------------------------------------------------------------------------------------------
ACTS = [("GELU", {}), ("GELU", {"approximate": "tanh"}), ("SiLU", {}), ("ELU", {"alpha": 0.7}), ("SELU", {}),
        ("CELU", {"alpha": 1.3}), ("LeakyReLU", {"negative_slope": 0.2}), ("Softplus", {"beta": 2.0, "threshold": 3}),
        ("Hardtanh", {"min_val": -0.5, "max_val": 1.5}), ("ReLU6", {}), ("Mish", {}), ("Hardsigmoid", {}),
        ("Hardswish", {}), ("LogSigmoid", {}), ("Softsign", {}), ("Tanhshrink", {}), ("Hardshrink", {}),
        ("Softshrink", {"lambd": 0.3}), ("Threshold", {"threshold": 0.1, "value": -2.0}), ("GLU", {}),
        ("LogSoftmax", {"dim": 1}), ("Softmin", {"dim": -1}), ("Softmax2d", {})]


@pytest.mark.parametrize("name,kwargs", simulator_subset(ACTS, {0, 2, 10}, unpack=True),
                         ids=[f"{n}{i}" for i, (n, _) in enumerate(ACTS)])
def test_activations_like_torch(device, rng, name, kwargs):
    x = rng.standard_normal((2, 4, 3, 2)) * 3
    x[np.abs(np.abs(x) - 3) < 0.05] += 0.2  # keep away from the kinks of the piecewise ones
    _check_module(getattr(torch.nn, name)(**kwargs), getattr(nn, name)(**kwargs), x, rng)


@pytest.mark.parametrize("fn", ["gelu", "silu", "elu", "selu", "softplus", "mish", "logsigmoid", "softsign",
                                "hardswish", "celu"])
def test_activation_gradcheck(device, rng, fn):
    x = rng.standard_normal((3, 4)) * 2
    x[np.abs(np.abs(x) - 3) < 0.05] += 0.2
    gradcheck(lambda t: getattr(F, fn)(t), x, device=device)


def test_prelu_like_torch_and_inplace(device, rng):
    _check_module(torch.nn.PReLU(3), nn.PReLU(3), rng.standard_normal((4, 3, 2)), rng)
    _check_module(torch.nn.PReLU(), nn.PReLU(), rng.standard_normal((4, 3)), rng)
    x = clnet.tensor(np.array([-1.0, 2.0], np.float32))
    assert F.silu(x, inplace=True) is x
    assert_close(x, [-1 / (1 + math.e), 2 / (1 + math.exp(-2))], rtol=1e-6)


# --- convolutions ---------------------------------------------------------------------------------------------
CONVS = [
    ("Conv1d", (4, 6, 3), dict(stride=2, padding=1), (2, 4, 9)),
    ("Conv1d", (4, 6, 4), dict(padding="same", dilation=2, groups=2), (2, 4, 8)),
    ("Conv1d", (3, 3, 3), dict(groups=3, padding_mode="reflect", padding=1), (2, 3, 7)),
    ("Conv2d", (4, 8, 3), dict(groups=4, stride=2, padding=1), (2, 4, 7, 6)),       # depthwise, multiplier 2
    ("Conv2d", (4, 6, (3, 2)), dict(groups=2, dilation=(2, 1)), (1, 4, 7, 6)),
    ("Conv2d", (2, 3, 3), dict(padding=1, padding_mode="circular"), (1, 2, 5, 5)),
    ("Conv2d", (2, 3, 3), dict(padding=2, padding_mode="replicate", bias=False), (1, 2, 4, 5)),
    ("ConvTranspose1d", (4, 3, 3), dict(stride=2, padding=1, output_padding=1), (2, 4, 5)),
    ("ConvTranspose2d", (4, 6, 3), dict(stride=2, padding=1, output_padding=1), (2, 4, 4, 3)),
    ("ConvTranspose2d", (4, 6, (2, 3)), dict(stride=(1, 2), groups=2, dilation=2), (1, 4, 3, 4)),
    ("ConvTranspose2d", (3, 2, 4), dict(stride=2, padding=3, bias=False), (2, 3, 5, 5)),
]


@pytest.mark.parametrize("cls,args,kwargs,shape", simulator_subset(CONVS, {0, 3, 8}, unpack=True),
                         ids=[f"{c[0]}{i}" for i, c in enumerate(CONVS)])
def test_convolutions_like_torch(device, rng, cls, args, kwargs, shape):
    torch.manual_seed(0)
    tm = getattr(torch.nn, cls)(*args, **kwargs)
    cm = getattr(nn, cls)(*args, **kwargs)
    assert tuple(cm.weight.shape) == tuple(tm.weight.shape)
    _check_module(tm, cm, rng.standard_normal(shape), rng)


def test_conv_transpose_output_size_and_init(device, rng):
    tm, cm = torch.nn.ConvTranspose2d(2, 3, 3, stride=2), nn.ConvTranspose2d(2, 3, 3, stride=2)
    _copy(tm, cm)
    x = rng.standard_normal((1, 2, 4, 4)).astype(np.float32)
    want = tm(torch.tensor(x), output_size=(10, 10)).detach().numpy()
    assert_close(cm(clnet.tensor(x), output_size=(10, 10)), want, rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError, match="output size"):
        cm(clnet.tensor(x), output_size=(12, 12))
    conv = nn.Conv1d(4, 6, 5)
    bound = 1 / math.sqrt(4 * 5)
    assert np.abs(conv.weight.numpy()).max() <= bound and np.abs(conv.bias.numpy()).max() <= bound
    assert repr(nn.ConvTranspose2d(2, 3, 3, stride=2, groups=1)).startswith("ConvTranspose2d(2, 3, kernel_size=(3, 3)")


# --- pooling, resampling, padding -----------------------------------------------------------------------------
POOLS = [("MaxPool1d", (3,), dict(stride=2, padding=1), (2, 3, 9)), ("AvgPool1d", (2,), {}, (2, 3, 8)),
         ("AdaptiveAvgPool2d", ((3, 2),), {}, (2, 3, 7, 5)), ("AdaptiveAvgPool2d", ((None, 2),), {}, (1, 2, 4, 6)),
         ("AdaptiveAvgPool2d", (1,), {}, (2, 3, 4, 4)), ("AdaptiveMaxPool2d", ((3, 4),), {}, (2, 2, 7, 9)),
         ("AdaptiveMaxPool2d", (2,), {}, (2, 2, 4, 6)), ("AdaptiveAvgPool1d", (3,), {}, (2, 3, 7)),
         ("AdaptiveMaxPool1d", (4,), {}, (2, 3, 10))]


@pytest.mark.parametrize("cls,args,kwargs,shape", simulator_subset(POOLS, {0, 2, 5}, unpack=True),
                         ids=[f"{p[0]}{i}" for i, p in enumerate(POOLS)])
def test_pooling_like_torch(device, rng, cls, args, kwargs, shape):
    _check_module(getattr(torch.nn, cls)(*args, **kwargs), getattr(nn, cls)(*args, **kwargs),
                  rng.standard_normal(shape), rng)


INTERP = [dict(scale_factor=2, mode="nearest"), dict(size=(5, 7), mode="nearest"),
          dict(scale_factor=1.7, mode="nearest-exact"), dict(scale_factor=2, mode="bilinear"),
          dict(size=(3, 8), mode="bilinear", align_corners=True), dict(size=(7, 5), mode="bicubic"),
          dict(scale_factor=(0.6, 1.5), mode="bicubic", align_corners=True), dict(size=(2, 3), mode="area"),
          dict(scale_factor=2.5, mode="bilinear", recompute_scale_factor=True)]


@pytest.mark.parametrize("kwargs", simulator_subset(INTERP, {0, 3, 5}), ids=[f"interp{i}" for i in range(len(INTERP))])
def test_interpolate_like_torch(device, rng, kwargs):
    x = rng.standard_normal((2, 3, 4, 5))
    tx, cx = _pair(x)
    to, co = TF.interpolate(tx, **kwargs), F.interpolate(cx, **kwargs)
    assert_close(co, to.detach().numpy(), rtol=RTOL, atol=ATOL)
    g = rng.standard_normal(tuple(to.shape)).astype(np.float32)
    to.backward(torch.tensor(g))
    co.backward(clnet.tensor(g))
    assert_close(cx.grad, tx.grad.numpy(), rtol=RTOL, atol=ATOL)


def test_upsample_modules_and_linear_mode(device, rng):
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    want = torch.nn.Upsample(scale_factor=3, mode="linear")(torch.tensor(x)).numpy()
    assert_close(nn.Upsample(scale_factor=3, mode="linear")(clnet.tensor(x)), want, rtol=RTOL, atol=ATOL)
    x4 = rng.standard_normal((1, 2, 3, 3)).astype(np.float32)
    for cls in ("UpsamplingNearest2d", "UpsamplingBilinear2d"):
        assert_close(getattr(nn, cls)(scale_factor=2)(clnet.tensor(x4)),
                     getattr(torch.nn, cls)(scale_factor=2)(torch.tensor(x4)).numpy(), rtol=RTOL, atol=ATOL)
    x8 = rng.standard_normal((1, 8, 2, 3)).astype(np.float32)
    assert_close(nn.PixelShuffle(2)(clnet.tensor(x8)), torch.nn.PixelShuffle(2)(torch.tensor(x8)).numpy())
    assert_close(nn.PixelUnshuffle(2)(nn.PixelShuffle(2)(clnet.tensor(x8))), x8)
    with pytest.raises(ValueError, match="exactly one of size or scale_factor"):
        F.interpolate(clnet.tensor(x4))
    with pytest.raises(ValueError, match="align_corners"):
        F.interpolate(clnet.tensor(x4), scale_factor=2, align_corners=True)


PADS = [((1, 2), "constant"), ((1, 2, 2, 0), "reflect"), ((2, 1, 0, 3), "replicate"), ((1, 1, 2, 2), "circular"),
        ((-1, 2, 1, -1), "constant")]


@pytest.mark.parametrize("pad,mode", PADS)
def test_pad_modes_like_torch(device, rng, pad, mode):
    x = rng.standard_normal((2, 3, 4, 5))
    tx, cx = _pair(x)
    to, co = TF.pad(tx, pad, mode=mode), F.pad(cx, pad, mode=mode)
    assert_close(co, to.detach().numpy())
    g = rng.standard_normal(tuple(to.shape)).astype(np.float32)
    to.backward(torch.tensor(g))
    co.backward(clnet.tensor(g))
    assert_close(cx.grad, tx.grad.numpy(), rtol=RTOL, atol=ATOL)


def test_padding_modules(device, rng):
    x = rng.standard_normal((1, 2, 3, 4)).astype(np.float32)
    for cls, args in (("ZeroPad2d", (1,)), ("ConstantPad2d", ((1, 0, 2, 1), 3.5)), ("ReflectionPad2d", (2,)),
                      ("ReplicationPad2d", ((1, 2, 0, 1),)), ("CircularPad2d", (1,)), ("ReflectionPad1d", (2,))):
        xi = x[0] if cls.endswith("1d") else x
        assert_close(getattr(nn, cls)(*args)(clnet.tensor(xi)),
                     getattr(torch.nn, cls)(*args)(torch.tensor(xi)).numpy(), what=cls)


# --- embedding ------------------------------------------------------------------------------------------------
def test_embedding_like_torch(device, rng):
    torch.manual_seed(0)
    tm = torch.nn.Embedding(10, 4, padding_idx=2)
    cm = nn.Embedding(10, 4, padding_idx=2)
    assert np.all(cm.weight.numpy()[2] == 0)
    _copy(tm, cm)
    idx = np.array([[1, 2, 5], [2, 9, 1]], np.int64)
    to, co = tm(torch.tensor(idx)), cm(clnet.tensor(idx))
    assert_close(co, to.detach().numpy())
    g = rng.standard_normal(tuple(to.shape)).astype(np.float32)
    to.backward(torch.tensor(g))
    co.backward(clnet.tensor(g))
    assert_close(cm.weight.grad, tm.weight.grad.numpy(), rtol=1e-5, atol=1e-6)
    mn_t, mn_c = torch.nn.Embedding(6, 3, max_norm=1.0), nn.Embedding(6, 3, max_norm=1.0)
    _copy(mn_t, mn_c)
    idx = np.array([0, 3, 3], np.int64)
    assert_close(mn_c(clnet.tensor(idx)), mn_t(torch.tensor(idx)).detach().numpy(), rtol=1e-5, atol=1e-6)
    assert_close(mn_c.weight, mn_t.weight.detach().numpy(), rtol=1e-5, atol=1e-6)
    pre = nn.Embedding.from_pretrained(clnet.tensor(np.eye(3, dtype=np.float32)))
    assert not pre.weight.requires_grad and pre(clnet.tensor([2])).numpy().tolist() == [[0, 0, 1]]
    with pytest.raises(TypeError, match="integer"):
        cm(clnet.tensor([0.5]))


# --- transformer ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("norm_first,activation,batch_first", simulator_subset(
    [(False, "relu", False), (True, "gelu", True)], {1}, unpack=True))
def test_transformer_like_torch(device, rng, norm_first, activation, batch_first):
    torch.manual_seed(0)
    kw = dict(d_model=8, nhead=2, num_encoder_layers=2, num_decoder_layers=1, dim_feedforward=16, dropout=0.0,
              activation=activation, batch_first=batch_first, norm_first=norm_first)
    tm, cm = torch.nn.Transformer(**kw), nn.Transformer(**kw)
    assert sorted(n for n, _ in cm.named_parameters()) == sorted(n for n, _ in tm.named_parameters())
    _copy(tm, cm)
    S, T, N = 5, 4, 2
    src = rng.standard_normal((N, S, 8) if batch_first else (S, N, 8)).astype(np.float32)
    tgt = rng.standard_normal((N, T, 8) if batch_first else (T, N, 8)).astype(np.float32)
    tmask = torch.nn.Transformer.generate_square_subsequent_mask(T)
    cmask = nn.Transformer.generate_square_subsequent_mask(T)
    assert_close(cmask, tmask.numpy())
    kpm = np.zeros((N, S), bool)
    kpm[1, -1] = True
    t_src, c_src = _pair(src)
    to = tm(t_src, torch.tensor(tgt), tgt_mask=tmask, src_key_padding_mask=torch.tensor(kpm))
    co = cm(c_src, clnet.tensor(tgt), tgt_mask=cmask, src_key_padding_mask=clnet.tensor(kpm))
    assert_close(co, to.detach().numpy(), rtol=1e-4, atol=1e-4)
    g = rng.standard_normal(tuple(to.shape)).astype(np.float32)
    to.backward(torch.tensor(g))
    co.backward(clnet.tensor(g))
    assert_close(c_src.grad, t_src.grad.numpy(), rtol=1e-3, atol=1e-4)
    cparams = dict(cm.named_parameters())
    for name, p in tm.named_parameters():
        assert_close(cparams[name].grad, p.grad.numpy(), rtol=1e-3, atol=1e-4, what=name)


def test_transformer_encoder_causal_and_training_dropout(device, rng):
    torch.manual_seed(0)
    t_layer = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0)
    c_layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0)
    _copy(t_layer, c_layer)
    tenc = torch.nn.TransformerEncoder(t_layer, 2, enable_nested_tensor=False)
    cenc = nn.TransformerEncoder(c_layer, 2)
    _copy(tenc, cenc)
    assert cenc.layers[0].linear1.weight is not cenc.layers[1].linear1.weight
    x = rng.standard_normal((5, 2, 8)).astype(np.float32)
    mask = torch.nn.Transformer.generate_square_subsequent_mask(5)
    want = tenc(torch.tensor(x), mask=mask, is_causal=True).detach().numpy()
    assert_close(cenc(clnet.tensor(x), mask=clnet.tensor(mask.numpy()), is_causal=True), want, rtol=1e-4, atol=1e-4)
    drop = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.5)
    xt = clnet.tensor(x)
    assert not np.allclose(drop(xt).numpy(), drop(xt).numpy())
    drop.eval()
    assert_close(drop(xt), drop(xt).numpy())


# --- losses ---------------------------------------------------------------------------------------------------
LOSSES = [("SmoothL1Loss", {}), ("SmoothL1Loss", {"beta": 0.5, "reduction": "sum"}), ("HuberLoss", {"delta": 0.7}),
          ("KLDivLoss", {"reduction": "batchmean"}), ("KLDivLoss", {"reduction": "none", "log_target": True}),
          ("SoftMarginLoss", {}), ("MultiLabelSoftMarginLoss", {}), ("PoissonNLLLoss", {}),
          ("HuberLoss", {"reduction": "none"})]


@pytest.mark.parametrize("name,kwargs", LOSSES, ids=[f"{n}{i}" for i, (n, _) in enumerate(LOSSES)])
def test_losses_like_torch(device, rng, name, kwargs):
    x = rng.standard_normal((4, 5)).astype(np.float32)
    if name == "KLDivLoss":
        x = np.log(np.abs(x) + 0.1).astype(np.float32)
        y = (np.abs(rng.standard_normal((4, 5))) * (rng.random((4, 5)) > 0.2)).astype(np.float32)
        if kwargs.get("log_target"):
            y = np.log(np.abs(y) + 0.3).astype(np.float32)
    elif name in ("SoftMarginLoss",):
        y = np.sign(rng.standard_normal((4, 5))).astype(np.float32)
    elif name in ("MultiLabelSoftMarginLoss",):
        y = (rng.random((4, 5)) > 0.5).astype(np.float32)
    elif name == "PoissonNLLLoss":
        y = rng.poisson(2.0, (4, 5)).astype(np.float32)
    else:
        y = rng.standard_normal((4, 5)).astype(np.float32)
    tx, cx = _pair(x)
    tl = getattr(torch.nn, name)(**kwargs)(tx, torch.tensor(y))
    cl = getattr(nn, name)(**kwargs)(cx, clnet.tensor(y))
    assert_close(cl, tl.detach().numpy(), rtol=RTOL, atol=ATOL)
    g = rng.standard_normal(tuple(tl.shape)).astype(np.float32)
    tl.backward(torch.tensor(g))
    cl.backward(clnet.tensor(g))
    assert_close(cx.grad, tx.grad.numpy(), rtol=RTOL, atol=ATOL)


def test_loss_gradchecks(device, rng):
    x, y = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    gradcheck(lambda a, b: F.smooth_l1_loss(a, b, reduction="none", beta=0.8), x, y, device=device)
    gradcheck(lambda a, b: F.huber_loss(a, b, reduction="none", delta=0.6), x, y, device=device)
    p = np.abs(y) + 0.1
    gradcheck(lambda a, b: F.kl_div(a, b, reduction="none"), x, p, device=device)
    gradcheck(lambda a, b: F.kl_div(a, b, reduction="none", log_target=True), x, y, device=device)


def test_pair_losses_like_torch(device, rng):
    a, b, c = (rng.standard_normal((4, 6)).astype(np.float32) for _ in range(3))
    y = np.sign(rng.standard_normal(4)).astype(np.float32)
    T, C = torch.tensor, clnet.tensor
    assert_close(F.cosine_embedding_loss(C(a), C(b), C(y), margin=0.1),
                 TF.cosine_embedding_loss(T(a), T(b), T(y), margin=0.1).numpy(), rtol=RTOL, atol=ATOL)
    assert_close(F.triplet_margin_loss(C(a), C(b), C(c)), TF.triplet_margin_loss(T(a), T(b), T(c)).numpy(),
                 rtol=RTOL, atol=ATOL)
    assert_close(F.margin_ranking_loss(C(a[:, 0]), C(b[:, 0]), C(y), margin=0.2),
                 TF.margin_ranking_loss(T(a[:, 0]), T(b[:, 0]), T(y), margin=0.2).numpy(), rtol=RTOL, atol=ATOL)
    assert_close(F.cosine_similarity(C(a), C(b)), TF.cosine_similarity(T(a), T(b)).numpy(), rtol=RTOL, atol=ATOL)
    assert_close(F.normalize(C(a), dim=0), TF.normalize(T(a), dim=0).numpy(), rtol=RTOL, atol=ATOL)
    assert_close(F.pairwise_distance(C(a), C(b)), TF.pairwise_distance(T(a), T(b)).numpy(), rtol=RTOL, atol=ATOL)
    var = np.abs(c) + 0.1
    assert_close(F.gaussian_nll_loss(C(a), C(b), C(var)), TF.gaussian_nll_loss(T(a), T(b), T(var)).numpy(),
                 rtol=RTOL, atol=ATOL)
    assert_close(nn.MSELoss(size_average=False)(C(a), C(b)), ((a - b) ** 2).sum(), rtol=1e-5)


# --- utils and containers ---------------------------------------------------------------------------------------
def test_clip_grad_like_torch(device, rng):
    tm, cm = torch.nn.Linear(5, 3), nn.Linear(5, 3)
    _copy(tm, cm)
    x = rng.standard_normal((4, 5)).astype(np.float32)
    for norm_type in (2.0, 1.0, math.inf):
        tm.zero_grad()
        cm.zero_grad()
        (tm(torch.tensor(x)) ** 2).sum().backward()
        (cm(clnet.tensor(x)) ** 2).sum().backward()
        tn = torch.nn.utils.clip_grad_norm_(tm.parameters(), 0.5, norm_type)
        cn = nn.utils.clip_grad_norm_(cm.parameters(), 0.5, norm_type)
        assert_close(cn, tn.numpy(), rtol=1e-5)
        for (name, p), q in zip(tm.named_parameters(), cm.parameters()):
            assert_close(q.grad, p.grad.numpy(), rtol=1e-5, atol=1e-6, what=name)
    torch.nn.utils.clip_grad_value_(tm.parameters(), 0.01)
    nn.utils.clip_grad_value_(cm.parameters(), 0.01)
    assert_close(cm.weight.grad, tm.weight.grad.numpy(), rtol=1e-5, atol=1e-7)
    vec = nn.utils.parameters_to_vector(cm.parameters())
    assert_close(vec, torch.nn.utils.parameters_to_vector(tm.parameters()).detach().numpy())
    nn.utils.vector_to_parameters(vec * 2, cm.parameters())
    assert_close(cm.bias, tm.bias.detach().numpy() * 2)


def test_parameter_containers_and_module_paths(device, rng):
    plist = nn.ParameterList([nn.Parameter(clnet.randn(2)), clnet.randn(3)])
    plist.append(clnet.zeros(1))
    assert len(plist) == 3 and isinstance(plist[1], nn.Parameter) and plist[-1].shape == (1,)

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.ps = plist
            self.pd = nn.ParameterDict({"a": nn.Parameter(clnet.ones(2))})

    m = M()
    assert [n for n, _ in m.named_parameters()] == ["ps.0", "ps.1", "ps.2", "pd.a"]
    assert "a" in m.pd and list(m.pd.keys()) == ["a"]
    from clnet.nn.modules.conv import Conv2d  # noqa: F401
    from clnet.nn.modules.loss import _Loss, _WeightedLoss  # noqa: F401
    from clnet.nn.modules.activation import MultiheadAttention  # noqa: F401
    from clnet.nn.modules.utils import _pair as pair
    from clnet.nn.utils.rnn import pad_sequence
    assert issubclass(nn.SmoothL1Loss, _Loss) and pair(3) == (3, 3)
    seqs = [clnet.tensor(rng.standard_normal((n, 2)).astype(np.float32)) for n in (3, 1, 2)]
    want = torch.nn.utils.rnn.pad_sequence([torch.tensor(s.numpy()) for s in seqs], batch_first=True,
                                           padding_value=-1.0)
    assert_close(pad_sequence(seqs, batch_first=True, padding_value=-1.0), want.numpy())


def test_init_extras(device):
    from clnet.nn import init
    t = init.trunc_normal_(clnet.empty(200, 50), 0.0, 1.0, -0.5, 1.0).numpy()
    assert t.min() >= -0.5 and t.max() <= 1.0
    assert abs(t.mean() - 0.2066) < 0.03  # (phi(-0.5) - phi(1)) / (Phi(1) - Phi(-0.5))
    for shape in ((6, 10), (10, 3, 2)):
        w = init.orthogonal_(clnet.empty(*shape), gain=2.0).numpy().astype(np.float64).reshape(shape[0], -1)
        small = w @ w.T if shape[0] <= w.shape[1] else w.T @ w
        assert_close(small, 4 * np.eye(min(w.shape)), atol=1e-5)
    s = init.sparse_(clnet.empty(10, 4), 0.3).numpy()
    assert ((s == 0).sum(0) == 3).all()
    tw = torch.empty(4, 2, 3, 3)
    torch.nn.init.dirac_(tw, 2)
    assert_close(init.dirac_(clnet.empty(4, 2, 3, 3), 2), tw.numpy())
    with pytest.raises(NotImplementedError, match="generator"):
        init.normal_(clnet.empty(2), generator=object())

"""keras.ops, keras.random and keras.config: values against numpy (float64 references on random inputs),
gradients of the composed ops against PyTorch, symbolic shapes (the real-Keras ones are in
test_keras_reference.py), and Keras's seed semantics."""
import math

import numpy as np
import pytest

import clnet
from clnet import keras
from clnet.keras import ops

from conftest import assert_close
from keras_test_support import only_small_models_on_simulators  # noqa: F401  (autouse: small models on Oclgrind)

torch = pytest.importorskip("torch")


@pytest.fixture
def x(rng):
    return rng.standard_normal((3, 5)).astype(np.float32)


def _np(t):
    return t.numpy() if isinstance(t, clnet.Tensor) else np.asarray(t)


UNARY = {  # keras.ops name -> numpy reference (inputs kept in each function's domain below)
    "exp": np.exp, "expm1": np.expm1, "log1p": lambda a: np.log1p(np.abs(a)), "sqrt": lambda a: np.sqrt(np.abs(a)),
    "sin": np.sin, "cos": np.cos, "tan": np.tan, "sinh": np.sinh, "cosh": np.cosh, "tanh": np.tanh,
    "arcsinh": np.arcsinh, "arctanh": lambda a: np.arctanh(np.clip(a, -0.9, 0.9)), "square": np.square,
    "sign": np.sign, "floor": np.floor, "ceil": np.ceil, "trunc": np.trunc, "abs": np.abs, "negative": np.negative,
    "log2": lambda a: np.log2(np.abs(a) + 0.1), "log10": lambda a: np.log10(np.abs(a) + 0.1), "exp2": np.exp2,
    "cbrt": np.cbrt, "reciprocal": lambda a: 1.0 / (np.abs(a) + 0.5), "sinc": np.sinc, "deg2rad": np.deg2rad,
    "relu": lambda a: np.maximum(a, 0), "sigmoid": lambda a: 1 / (1 + np.exp(-a)),
    "softplus": lambda a: np.log1p(np.exp(a)), "silu": lambda a: a / (1 + np.exp(-a)),
    "log_sigmoid": lambda a: -np.log1p(np.exp(-a)), "softsign": lambda a: a / (1 + np.abs(a)),
    "elu": lambda a: np.where(a > 0, a, np.expm1(a)), "relu6": lambda a: np.clip(a, 0, 6),
    "hard_sigmoid": lambda a: np.clip(a / 6 + 0.5, 0, 1), "gelu": lambda a: 0.5 * a * (1 + np.tanh(
        np.sqrt(2 / np.pi) * (a + 0.044715 * a ** 3))),
}
DOMAIN = {"log1p": np.abs, "sqrt": np.abs, "arctanh": lambda a: np.clip(a, -0.9, 0.9),
          "log2": lambda a: np.abs(a) + 0.1, "log10": lambda a: np.abs(a) + 0.1,
          "reciprocal": lambda a: np.abs(a) + 0.5}


def test_unary_ops_match_numpy(device, x):
    for name, ref in UNARY.items():
        a = DOMAIN.get(name, lambda v: v)(x)
        got = getattr(ops, name)(a)
        assert_close(_np(got), ref(a.astype(np.float64) if name not in DOMAIN else x.astype(np.float64)),
                     rtol=2e-5, atol=2e-6, what=name)


def test_binary_reductions_and_shape_ops_match_numpy(device, rng, x):
    y = rng.standard_normal((3, 5)).astype(np.float32)
    checks = {
        "add": (ops.add(x, y), x + y), "maximum": (ops.maximum(x, 0.2), np.maximum(x, 0.2)),
        "power": (ops.power(np.abs(x), 1.5), np.abs(x) ** 1.5), "mod": (ops.mod(x, 0.7), np.mod(x, 0.7)),
        "fmod": (ops.fmod(x, 0.7), np.fmod(x, 0.7)), "hypot": (ops.hypot(x, y), np.hypot(x, y)),
        "logaddexp": (ops.logaddexp(x, y), np.logaddexp(x, y)), "arctan2-free divide": (ops.divide(x, 2), x / 2),
        "divide_no_nan": (ops.divide_no_nan(x, np.where(y > 0, y, 0)), np.where(y > 0, x / np.where(y > 0, y, 1), 0)),
        "sum": (ops.sum(x, axis=1), x.sum(1)), "mean": (ops.mean(x, axis=0, keepdims=True), x.mean(0, keepdims=True)),
        "var": (ops.var(x, axis=1), x.var(1)), "std": (ops.std(x), x.std()), "max": (ops.max(x, 0), x.max(0)),
        "prod": (ops.prod(x, axis=1), x.prod(1)), "logsumexp": (ops.logsumexp(x, axis=1),
                                                                 np.log(np.exp(x).sum(1))),
        "argmin": (ops.argmin(x, axis=1), x.argmin(1)), "cumsum": (ops.cumsum(x, axis=1), np.cumsum(x, 1)),
        "cumprod": (ops.cumprod(x, axis=0), np.cumprod(x, 0)), "count_nonzero": (ops.count_nonzero(x > 0),
                                                                                  np.count_nonzero(x > 0)),
        "clip": (ops.clip(x, -0.5, 0.5), np.clip(x, -0.5, 0.5)), "where": (ops.where(x > 0, x, y),
                                                                          np.where(x > 0, x, y)),
        "concatenate": (ops.concatenate([x, y], axis=1), np.concatenate([x, y], 1)),
        "stack": (ops.stack([x, y], axis=-1), np.stack([x, y], -1)), "tile": (ops.tile(x, (2, 1)), np.tile(x, (2, 1))),
        "repeat": (ops.repeat(x, 2, axis=1), np.repeat(x, 2, 1)), "roll": (ops.roll(x, 2, axis=1), np.roll(x, 2, 1)),
        "flip": (ops.flip(x, 1), np.flip(x, 1)), "moveaxis": (ops.moveaxis(x[None], 0, -1), np.moveaxis(x[None], 0, -1)),
        "take": (ops.take(x, np.array([[0, 4], [-1, 2]]), axis=1), np.take(x, [[0, 4], [-1, 2]], axis=1)),
        "take_along_axis": (ops.take_along_axis(x, np.argsort(x, 1), 1), np.take_along_axis(x, np.argsort(x, 1), 1)),
        "tril": (ops.tril(x, -1), np.tril(x, -1)), "triu": (ops.triu(x, 1), np.triu(x, 1)),
        "diagonal": (ops.diagonal(x, 1), np.diagonal(x, 1)), "trace": (ops.trace(x), np.trace(x)),
        "pad": (ops.pad(x, [[1, 0], [2, 1]]), np.pad(x, [[1, 0], [2, 1]])),
        "pad_reflect": (ops.pad(x, [[1, 1], [2, 2]], mode="reflect"), np.pad(x, [[1, 1], [2, 2]], mode="reflect")),
        "pad_symmetric": (ops.pad(x, [[1, 1], [2, 2]], mode="symmetric"), np.pad(x, [[1, 1], [2, 2]],
                                                                                 mode="symmetric")),
        "diff": (ops.diff(x, 2, axis=1), np.diff(x, 2, 1)), "outer": (ops.outer(x[0], y[0]), np.outer(x[0], y[0])),
        "tensordot": (ops.tensordot(x, y.T, axes=1), np.tensordot(x, y.T, 1)),
        "einsum": (ops.einsum("ij,kj->ik", x, y), np.einsum("ij,kj->ik", x, y)),
        "dot": (ops.dot(x, y.T), x @ y.T), "norm": (ops.norm(x, axis=1), np.linalg.norm(x, axis=1)),
        "norm_inf": (ops.norm(x, ord=np.inf, axis=0), np.linalg.norm(x, np.inf, axis=0)),
        "norm_fro": (ops.norm(x), np.linalg.norm(x)), "split": (ops.split(x, [1, 4], axis=1)[1], np.split(x, [1, 4], 1)[1]),
        "swapaxes": (ops.swapaxes(x, 0, 1), x.T), "broadcast_to": (ops.broadcast_to(x[0], (2, 5)),
                                                                   np.broadcast_to(x[0], (2, 5))),
        "isclose": (ops.isclose(x, x + 1e-9), np.isclose(x, x + 1e-9)), "nan_to_num": (
            ops.nan_to_num(np.array([np.nan, np.inf, 1.0], np.float32)), np.array([0, np.finfo(np.float32).max, 1.0])),
        "one_hot": (ops.one_hot(np.array([0, 2, 5]), 4), np.eye(4)[[0, 2, 3]] * np.array([[1], [1], [0]])),
        "softmax": (ops.softmax(x, axis=0), np.exp(x) / np.exp(x).sum(0)), "normalize": (
            ops.normalize(x), x / np.linalg.norm(x, axis=-1, keepdims=True)),
        "top_k": (ops.top_k(x, 2)[0], -np.sort(-x, 1)[:, :2]), "in_top_k": (
            ops.in_top_k(np.array([0, 1, 2]), x, 2), np.array([x[i, i] >= np.sort(x[i])[-2] for i in range(3)])),
        "segment_sum": (ops.segment_sum(x, np.array([0, 0, 1]), 2), np.stack([x[:2].sum(0), x[2]])),
        "segment_max": (ops.segment_max(x, np.array([0, 0, 1]), 2), np.stack([x[:2].max(0), x[2]])),
        "moments_var": (ops.moments(x, [0])[1], x.var(0)), "erf": (ops.erf(x), np.vectorize(math.erf)(x)),
        "slice": (ops.slice(x, (1, 2), (2, 3)), x[1:3, 2:5]),
        "slice_update": (ops.slice_update(x, (1, 1), np.ones((1, 2), np.float32)),
                         np.where(np.pad(np.ones((1, 2)), [[1, 1], [1, 2]]) > 0, 1.0, x)),
        "scatter": (ops.scatter(np.array([[0, 1], [2, 3]]), np.array([5.0, 7.0], np.float32), (3, 4)),
                    np.array([[0, 5, 0, 0], [0, 0, 0, 0], [0, 0, 0, 7.0]])),
        "cast": (ops.cast(x * 3, "int32"), (x * 3).astype(np.int32)), "argsort-free sort via top_k": (
            ops.top_k(x, 5)[1], np.argsort(-x, 1, kind="stable")),
    }
    for name, (got, want) in checks.items():
        assert_close(_np(got).astype(np.float64), np.asarray(want, dtype=np.float64), rtol=2e-5, atol=2e-5, what=name)
    assert ops.shape(x) == (3, 5) and ops.ndim(x) == 2 and ops.size(x) == 15 and ops.dtype(x) == "float32"
    assert ops.argmax(x, axis=1).dtype == clnet.int32 and ops.convert_to_numpy(ops.convert_to_tensor(x)).shape == (3, 5)
    assert ops.convert_to_tensor(1.5).dtype == clnet.float32 and ops.convert_to_tensor(2).dtype == clnet.int32


@pytest.mark.parametrize("name", ["cumsum", "logaddexp", "gelu_exact", "norm", "pad_reflect", "take_along_axis",
                                  "einsum", "top_k", "log_sigmoid", "dot_product_attention"])
def test_composed_ops_gradients_match_pytorch(device, rng, name):
    a = rng.standard_normal((2, 3, 4)).astype(np.float32)
    b = rng.standard_normal((2, 3, 4)).astype(np.float32)
    idx = np.argsort(a, -1)
    cases = {
        "cumsum": (lambda u, v: ops.cumsum(u, axis=1) * v, lambda u, v: torch.cumsum(u, 1) * v),
        "logaddexp": (lambda u, v: ops.logaddexp(u, v), torch.logaddexp),
        "gelu_exact": (lambda u, v: ops.gelu(u, approximate=False) * v,
                       lambda u, v: torch.nn.functional.gelu(u) * v),
        "norm": (lambda u, v: ops.norm(u, axis=-1) * v[..., 0], lambda u, v: torch.linalg.norm(u, dim=-1) * v[..., 0]),
        "pad_reflect": (lambda u, v: ops.pad(u, [[0, 0], [1, 1], [2, 2]], mode="reflect") * 1.5,
                        lambda u, v: torch.nn.functional.pad(u, (2, 2, 1, 1), mode="reflect") * 1.5),
        "take_along_axis": (lambda u, v: ops.take_along_axis(u, idx, -1) * v,
                            lambda u, v: torch.take_along_dim(u, torch.tensor(idx), -1) * v),
        "einsum": (lambda u, v: ops.einsum("bij,bkj->bik", u, v), lambda u, v: torch.einsum("bij,bkj->bik", u, v)),
        "top_k": (lambda u, v: ops.top_k(u, 2)[0] * v[..., :2], lambda u, v: torch.topk(u, 2)[0] * v[..., :2]),
        "log_sigmoid": (lambda u, v: ops.log_sigmoid(u) * v, lambda u, v: torch.nn.functional.logsigmoid(u) * v),
        "dot_product_attention": (lambda u, v: ops.dot_product_attention(u, v, v, is_causal=True),
                                  lambda u, v: torch.nn.functional.scaled_dot_product_attention(
                                      u.permute(0, 2, 1, 3), v.permute(0, 2, 1, 3), v.permute(0, 2, 1, 3),
                                      is_causal=True).permute(0, 2, 1, 3)),
    }
    ours, theirs = cases[name]
    if name == "dot_product_attention":
        a, b = a.reshape(2, 3, 2, 2), b.reshape(2, 3, 2, 2)
    ca, cb = clnet.tensor(a, requires_grad=True), clnet.tensor(b, requires_grad=True)
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    out, ref = ours(ca, cb), theirs(ta, tb)
    assert_close(out.numpy(), ref.detach().numpy(), rtol=1e-4, atol=1e-5, what=name)
    w = rng.standard_normal(tuple(ref.shape)).astype(np.float32)
    (out * clnet.tensor(w)).sum().backward()
    (ref * torch.tensor(w)).sum().backward()
    assert_close(ca.grad.numpy(), ta.grad.numpy(), rtol=1e-4, atol=1e-5, what=f"{name} grad x1")
    if tb.grad is not None:
        assert_close(cb.grad.numpy(), tb.grad.numpy(), rtol=1e-4, atol=1e-5, what=f"{name} grad x2")


def test_ops_record_themselves_in_functional_models(device, rng):
    inputs = keras.Input(shape=(4,))
    h = keras.layers.Dense(3)(inputs)
    out = ops.concatenate([ops.relu(h) * 2.0 - h, ops.expand_dims(ops.sum(h, axis=-1), -1)], axis=-1)
    model = keras.Model(inputs, out)
    xs = rng.standard_normal((5, 4)).astype(np.float32)
    hv = xs @ model.layers[1].get_weights()[0] + model.layers[1].get_weights()[1]
    want = np.concatenate([np.maximum(hv, 0) * 2 - hv, hv.sum(-1, keepdims=True)], -1)
    assert_close(model.predict(xs, verbose=0), want, rtol=1e-5, atol=1e-6)
    assert [type(op).__name__ for op in model.operations][-3:] == ["FunctionOp"] * 3
    assert out.shape == (None, 4)


def test_keras_tensor_misuse_is_explained(device):
    t = keras.Input(shape=(3,))
    for bad in (lambda: np.asarray(t), lambda: bool(t), lambda: float(t), lambda: t.numpy(), lambda: len(t)):
        with pytest.raises(TypeError, match="A KerasTensor is symbolic"):
            bad()
    with pytest.raises(ValueError, match="Cannot broadcast shape"):
        t + keras.Input(shape=(4,))
    with pytest.raises(ValueError, match="Inner dimensions"):
        t @ np.ones((4, 2), np.float32)


def test_random_follows_keras_seed_semantics(device):
    r = keras.random
    assert_close(r.normal((4,), seed=3).numpy(), r.normal((4,), seed=3).numpy())  # an int seed: same numbers
    gen = r.SeedGenerator(5)
    a, b = r.uniform((4,), seed=gen).numpy(), r.uniform((4,), seed=gen).numpy()
    assert not np.allclose(a, b)  # a SeedGenerator advances
    assert_close(r.uniform((4,), seed=r.SeedGenerator(5)).numpy(), a)  # ... reproducibly
    keras.utils.set_random_seed(7)
    c = r.normal((3,)).numpy()
    keras.utils.set_random_seed(7)
    r.normal((2,), seed=1)  # a seeded draw does not move the global stream
    assert_close(r.normal((3,)).numpy(), c)
    big = r.normal((20000,), mean=1.0, stddev=2.0, seed=0).numpy()
    assert abs(big.mean() - 1.0) < 0.05 and abs(big.std() - 2.0) < 0.05
    t = r.truncated_normal((20000,), seed=0).numpy()
    assert np.abs(t).max() <= 2.0 and abs(t.std() - 0.8796) < 0.02
    ints = r.randint((1000,), 2, 5, seed=0).numpy()
    assert ints.dtype == np.int32 and set(np.unique(ints)) == {2, 3, 4}
    d = r.dropout(np.ones(10000, np.float32), 0.25, seed=0).numpy()
    assert np.all(np.isclose(d, 0.0) | np.isclose(d, 1.0 / 0.75)) and abs((d == 0).mean() - 0.25) < 0.03
    assert sorted(r.shuffle(np.arange(10), seed=0).numpy()) == list(range(10))
    draws = r.categorical(np.log(np.array([[0.2, 0.8]], np.float32)), 4000, seed=0).numpy()
    assert draws.shape == (1, 4000) and abs(draws.mean() - 0.8) < 0.03
    g = r.gamma((20000,), 3.0, seed=0).numpy()
    assert abs(g.mean() - 3.0) < 0.1 and abs(g.var() - 3.0) < 0.3
    with pytest.raises(ValueError, match="`seed` must be either an integer or an instance of `SeedGenerator`"):
        r.normal((2,), seed="x")


def test_config(device):
    cfg = keras.config
    assert cfg.floatx() == "float32" and cfg.epsilon() == 1e-7 and cfg.image_data_format() == "channels_last"
    assert cfg.backend() == "clnet" and keras.backend.floatx() == "float32"
    cfg.set_epsilon(1e-5)
    try:
        assert keras.backend.epsilon() == 1e-5
    finally:
        cfg.set_epsilon(1e-7)
    with pytest.raises(ValueError, match="`data_format` argument must be one of"):
        cfg.set_image_data_format("nhwc")
    with pytest.raises(ValueError, match="Unknown `floatx` value"):
        cfg.set_floatx("float8")
    assert not cfg.is_unsafe_deserialization_enabled()

"""TF-style GradientTape and Variable on clnet's tape engine."""
from __future__ import annotations

import numpy as np
import pytest

import clnet
from conftest import assert_close


def test_watch_and_gradient(device):
    x = clnet.tensor([1.0, -2.0, 3.0], device=device)
    with clnet.GradientTape() as tape:
        tape.watch(x)
        y = (x * x).sum()
    g = tape.gradient(y, x)
    assert g.tolist() == [2.0, -4.0, 6.0]
    assert not x.requires_grad and x.grad is None  # watching ends with the tape; nothing accumulates
    assert not (x * 2).requires_grad


def test_unwatched_constant_gets_none(device):
    x = clnet.tensor([1.0, 2.0], device=device)
    w = clnet.Variable([3.0, 4.0], device=device)
    with clnet.GradientTape() as tape:
        y = (x * w).sum()
    gx, gw = tape.gradient(y, [x, w])
    assert gx is None and gw.tolist() == [1.0, 2.0]


def test_sources_as_list_tuple_dict(device):
    a = clnet.Variable([1.0, 2.0], device=device)
    b = clnet.Variable([3.0], device=device)
    with clnet.GradientTape(persistent=True) as tape:
        y = (a * a).sum() * b.sum()
    as_list = tape.gradient(y, [a, b])
    as_tuple = tape.gradient(y, (a, b))
    as_dict = tape.gradient(y, {"a": a, "b": b})
    assert isinstance(as_list, list) and isinstance(as_tuple, tuple) and set(as_dict) == {"a", "b"}
    for ga, gb in (as_list, as_tuple, (as_dict["a"], as_dict["b"])):
        assert ga.tolist() == [6.0, 12.0] and gb.tolist() == [5.0]


def test_non_persistent_tape_can_be_used_once(device):
    x = clnet.Variable([2.0], device=device)
    with clnet.GradientTape() as tape:
        y = x * x
    assert tape.gradient(y, x).tolist() == [4.0]
    with pytest.raises(RuntimeError, match="non-persistent"):
        tape.gradient(y, x)


def test_persistent_tape_several_gradients(device):
    x = clnet.Variable([3.0], device=device)
    with clnet.GradientTape(persistent=True) as tape:
        y = x * x
        z = y * y
    assert tape.gradient(z, x).tolist() == [4 * 27.0]
    assert tape.gradient(y, x).tolist() == [6.0]
    assert tape.gradient(z, y).tolist() == [18.0]  # an intermediate as source
    assert tape.gradient(z, x).tolist() == [108.0]


def test_unconnected_source_and_zero_option(device):
    x = clnet.Variable([1.0, 2.0], device=device)
    u = clnet.Variable([5.0], device=device)
    with clnet.GradientTape(persistent=True) as tape:
        y = (x * 2).sum()
    assert tape.gradient(y, u) is None
    assert tape.gradient(y, u, unconnected_gradients="zero").tolist() == [0.0]
    c = clnet.tensor(1.0, device=device)
    with clnet.GradientTape() as tape2:
        k = c * 2  # nothing watched: the target does not depend on any source
    assert tape2.gradient(k, x) is None


def test_variables_watched_automatically_and_non_trainable_not(device):
    w = clnet.Variable(np.ones((2, 2), dtype=np.float32), device=device)
    frozen = clnet.Variable(np.ones(2, dtype=np.float32), trainable=False, device=device)
    with clnet.GradientTape() as tape:
        y = (w @ frozen).sum()
    gw, gf = tape.gradient(y, [w, frozen])
    assert gw.tolist() == [[1.0, 1.0], [1.0, 1.0]] and gf is None
    assert w.grad is None  # the tape returns gradients instead of accumulating them


def test_non_scalar_target_is_summed_and_output_gradients(device):
    x = clnet.Variable([1.0, 2.0, 3.0], device=device)
    with clnet.GradientTape(persistent=True) as tape:
        y = x * x
    assert tape.gradient(y, x).tolist() == [2.0, 4.0, 6.0]
    seed = clnet.tensor([1.0, 0.0, 0.5], device=device)
    assert tape.gradient(y, x, output_gradients=seed).tolist() == [2.0, 0.0, 3.0]


def test_gradient_inside_the_with_block(device):
    x = clnet.Variable([2.0], device=device)
    with clnet.GradientTape() as tape:
        y = x * x * x
        g = tape.gradient(y, x)
    assert g.tolist() == [12.0]


def test_tape_restores_grad_mode(device):
    with clnet.no_grad():
        with clnet.GradientTape() as tape:
            assert clnet.is_grad_enabled()
            x = clnet.Variable([1.0], device=device)
            y = x * 2
        assert not clnet.is_grad_enabled()
    assert tape.gradient(y, x).tolist() == [2.0]


def test_watch_errors(device):
    with clnet.GradientTape() as tape:
        with pytest.raises(TypeError, match="int64"):
            tape.watch(clnet.tensor([1, 2], device=device))
        with pytest.raises(TypeError, match="tensors"):
            tape.watch([1.0])
    with pytest.raises(TypeError, match="sources"):
        tape.gradient(clnet.tensor(1.0, device=device), [1.0])


def test_variable_assign_family(device):
    v = clnet.Variable([1.0, 2.0], name="v", device=device)
    assert v.requires_grad and v.trainable and v.is_leaf and isinstance(v, clnet.Tensor)
    buf = v._buf
    assert v.assign([5.0, 6.0]) is v and v.tolist() == [5.0, 6.0]
    v.assign_add(clnet.tensor([1.0, 1.0], device=device))
    v.assign_sub(0.5)
    assert v.tolist() == [5.5, 6.5] and v._buf is buf and v._version[0] == 3
    with pytest.raises(ValueError, match="shape"):
        v.assign(clnet.ones(3, device=device))
    assert "numpy" in repr(v) and "'v'" in repr(v)
    assert isinstance(v * 2, clnet.Tensor) and not isinstance(v * 2, clnet.Variable)
    with pytest.raises(TypeError, match="floating"):
        clnet.Variable([1, 2], device=device)
    assert clnet.Variable([1, 2], trainable=False, device=device).dtype == clnet.int64
    assert clnet.Variable(lambda: clnet.zeros(3, device=device)).shape == (3,)


def test_lecture_tensorflow_step_matches_numpy(device, rng):
    """The lecture's 'TensorFlow: Neural Net' gradients against hand-derived numpy float64 ones."""
    N, D, H = 8, 12, 6
    xn = rng.standard_normal((N, D))
    yn = rng.standard_normal((N, D))
    x = clnet.convert_to_tensor(xn, np.float32)
    y = clnet.convert_to_tensor(yn, np.float32)
    w1 = clnet.Variable(clnet.random.uniform((D, H)))
    w2 = clnet.Variable(clnet.random.uniform((H, D)))
    w1n, w2n = w1.numpy().astype(np.float64), w2.numpy().astype(np.float64)
    with clnet.GradientTape() as tape:
        h = clnet.maximum(clnet.matmul(x, w1), 0)
        y_pred = clnet.matmul(h, w2)
        diff = y_pred - y
        loss = clnet.reduce_mean(clnet.reduce_sum(diff ** 2, axis=1))
    gradients = tape.gradient(loss, [w1, w2])
    x64, y64 = x.numpy().astype(np.float64), y.numpy().astype(np.float64)
    hn = np.maximum(x64 @ w1n, 0)
    dn = hn @ w2n - y64
    g_pred = 2 * dn / N
    g_w2 = hn.T @ g_pred
    g_h = (g_pred @ w2n.T) * (hn > 0)
    g_w1 = x64.T @ g_h
    assert_close(loss, (dn ** 2).sum(1).mean(), rtol=1e-5, atol=0)
    assert_close(gradients[0], g_w1, rtol=1e-4, atol=1e-4)
    assert_close(gradients[1], g_w2, rtol=1e-4, atol=1e-4)
    w1.assign(w1 - 1e-3 * gradients[0])
    assert_close(w1, w1n - 1e-3 * g_w1, rtol=1e-5, atol=1e-6)

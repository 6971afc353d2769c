"""Tensor: creation, dtypes, conversions, repr, devices, numpy interop, versions and views."""
from __future__ import annotations

import numpy as np
import pytest

import clnet
from conftest import assert_close


# --- creation ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("fn,value", [("zeros", 0.0), ("ones", 1.0)])
def test_zeros_ones_shapes_as_varargs_or_tuple(device, fn, value):
    make = getattr(clnet, fn)
    for t in (make(2, 3, device=device), make((2, 3), device=device), make([2, 3], device=device)):
        assert t.shape == (2, 3) and t.dtype == clnet.float32 and t.device is device
        np.testing.assert_array_equal(t.numpy(), np.full((2, 3), value))
    assert make(device=device).shape == () and make(0, device=device).shape == (0,)
    assert make(4, dtype=clnet.int32, device=device).dtype == clnet.int32
    assert make(4, dtype=clnet.bool, device=device).tolist() == [bool(value)] * 4


def test_full_empty_arange_eye_linspace(device):
    assert clnet.full((2, 2), 7, device=device).tolist() == [[7, 7], [7, 7]]
    assert clnet.full((2, 2), 7, device=device).dtype == clnet.int64
    assert clnet.full((3,), 2.5, device=device).dtype == clnet.float32
    assert clnet.full((2,), True, device=device).tolist() == [True, True]
    assert clnet.full((2,), 3.7, dtype=clnet.int32, device=device).tolist() == [3, 3]
    assert clnet.empty(3, 4, device=device).shape == (3, 4)
    assert clnet.arange(5, device=device).tolist() == [0, 1, 2, 3, 4]
    assert clnet.arange(5, device=device).dtype == clnet.int64
    np.testing.assert_allclose(clnet.arange(1, 2, 0.25, device=device).numpy(), np.arange(1, 2, 0.25))
    assert clnet.arange(10, 0, -3, device=device).tolist() == [10, 7, 4, 1]
    assert clnet.arange(0, device=device).shape == (0,)
    np.testing.assert_array_equal(clnet.eye(3, device=device).numpy(), np.eye(3))
    np.testing.assert_array_equal(clnet.eye(2, 4, device=device).numpy(), np.eye(2, 4))
    np.testing.assert_allclose(clnet.linspace(-1, 1, 7, device=device).numpy(), np.linspace(-1, 1, 7), rtol=1e-6,
                               atol=1e-7)


def test_like_functions(device):
    x = clnet.ones(2, 3, dtype=clnet.int32, device=device)
    for fn in (clnet.zeros_like, clnet.ones_like, clnet.empty_like):
        y = fn(x)
        assert y.shape == x.shape and y.dtype == clnet.int32 and y.device is device
        assert fn(x, dtype=clnet.float32).dtype == clnet.float32
    assert clnet.full_like(x, 4).tolist() == [[4] * 3] * 2
    r = clnet.randn_like(clnet.zeros(50, 40, device=device))
    assert r.shape == (50, 40) and r.dtype == clnet.float32 and 0.5 < float(r.numpy().std()) < 1.5
    u = clnet.rand_like(clnet.zeros(100, device=device)).numpy()
    assert u.min() >= 0 and u.max() < 1
    g = clnet.zeros_like(x, dtype=clnet.float32, requires_grad=True)
    assert g.requires_grad and g.is_leaf


def test_tensor_from_data(device):
    assert clnet.tensor(3.5, device=device).shape == ()
    assert clnet.tensor(3.5, device=device).dtype == clnet.float32
    assert clnet.tensor([1, 2], device=device).dtype == clnet.int64
    assert clnet.tensor([True, False], device=device).dtype == clnet.bool
    assert clnet.tensor([[1.0, 2.0]], device=device).shape == (1, 2)
    assert clnet.tensor([], device=device).shape == (0,)
    assert clnet.tensor(np.arange(4, dtype=np.int32), device=device).dtype == clnet.int32
    assert clnet.tensor(np.arange(4, dtype=np.int16), device=device).dtype == clnet.int16  # as torch.tensor
    assert clnet.tensor(np.arange(4, dtype=np.uint16), device=device).dtype == clnet.int32
    assert clnet.tensor(np.arange(4, dtype=np.uint8), device=device).dtype == clnet.uint8
    f64 = clnet.tensor(np.array([1.0, 2.0]), device=device)
    assert f64.dtype == (clnet.float64 if device.fp64 else clnet.float32)
    assert clnet.tensor([1, 2], dtype=clnet.float32, device=device).tolist() == [1.0, 2.0]
    src = clnet.tensor([1.0, 2.0], device=device)
    copy = clnet.tensor(src)
    copy += 1
    assert src.tolist() == [1.0, 2.0] and copy.tolist() == [2.0, 3.0]
    assert clnet.tensor(src, dtype=clnet.int32).dtype == clnet.int32
    assert clnet.tensor([clnet.tensor(1.0, device=device), 2.0], device=device).tolist() == [1.0, 2.0]
    assert clnet.from_numpy(np.ones((2, 2), dtype=np.float32), device=device).shape == (2, 2)
    with pytest.raises(RuntimeError, match="floating-point"):
        clnet.tensor([1, 2], requires_grad=True, device=device)
    with pytest.raises(TypeError, match="not supported"):
        clnet.tensor(np.ones(2, dtype=np.complex64), device=device)


def test_convert_to_tensor(device):
    x = clnet.convert_to_tensor(np.random.default_rng(0).standard_normal((3, 4)), np.float32, device=device)
    assert x.dtype == clnet.float32 and x.shape == (3, 4)
    assert clnet.convert_to_tensor(x) is x


def test_shape_errors(device):
    with pytest.raises(ValueError, match="negative dimension"):
        clnet.zeros(2, -1, device=device)
    with pytest.raises(TypeError, match="shape entries must be ints"):
        clnet.zeros(2.5, device=device)
    with pytest.raises(TypeError, match="dtype"):
        clnet.zeros(2, dtype="complex64", device=device)


# --- conversions -------------------------------------------------------------------------------------
def test_numpy_item_asarray_tolist(device, rng):
    a = rng.standard_normal((3, 4)).astype(np.float32)
    t = clnet.tensor(a, device=device)
    np.testing.assert_array_equal(t.numpy(), a)
    np.testing.assert_array_equal(np.asarray(t), a)
    np.testing.assert_array_equal(np.array(t, dtype=np.float64), a.astype(np.float64))
    assert t.tolist() == a.tolist()
    np.testing.assert_array_equal(t.T.numpy(), a.T)  # non-contiguous views copy out correctly
    np.testing.assert_array_equal(t[:, 1::2].numpy(), a[:, 1::2])
    assert t[1, 2].item() == pytest.approx(float(a[1, 2]))
    assert isinstance(t[1, 2].item(), float)
    assert isinstance(clnet.tensor([7], device=device).item(), int)
    assert float(t[0, 0]) == pytest.approx(float(a[0, 0])) and int(clnet.tensor(3, device=device)) == 3
    with pytest.raises(ValueError, match="one-element"):
        t.item()
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(t)
    w = clnet.ones(2, requires_grad=True, device=device)
    assert (w * 2).numpy().tolist() == [2.0, 2.0]  # numpy() works on tensors that require grad


def test_numpy_ufuncs_dispatch_to_device(device, rng):
    a = rng.standard_normal(5).astype(np.float32)
    t = clnet.tensor(a, device=device)
    for got, want in ((np.float64(2.0) * t, 2 * a), (np.exp(t), np.exp(a)), (np.maximum(t, 0), np.maximum(a, 0)),
                      (np.ones(5) - t, 1 - a)):
        assert isinstance(got, clnet.Tensor)
        assert_close(got, want)
    assert isinstance(np.arctan2(t, t), np.ndarray)  # a ufunc clnet lacks runs on a host copy


def test_to_dtype_and_device(device):
    t = clnet.tensor([1.7, -2.2], device=device)
    assert t.to(device) is t and t.to(clnet.float32) is t
    assert t.to(clnet.int32).tolist() == [1, -2]
    assert t.to("int64").dtype == clnet.int64
    assert t.to(float).dtype == clnet.float32
    assert t.int().dtype == clnet.int32 and t.long().dtype == clnet.int64 and t.bool().dtype == clnet.bool
    assert t.to(clnet.arange(2, device=device)).dtype == clnet.int64  # .to(other): its dtype and device
    assert t.cpu().numpy().tolist() == pytest.approx([1.7, -2.2])
    c = t.to(device, copy=True)
    assert c is not t and c._buf is not t._buf and c.tolist() == t.tolist()
    others = [d for d in clnet.devices() if d is not device and (d.is_simulator or d.implementation == "pocl")]
    if others:
        other = others[0]
        moved = t.to(other)
        assert moved.device is other and moved.tolist() == t.tolist()
        assert moved.to(device).device is device
        with pytest.raises(ValueError, match="different devices"):
            t + moved


def test_repr_shows_values_shape_dtype_device(device):
    t = clnet.tensor([[1.5, 2.0]], device=device)
    r = repr(t)
    assert "1.5" in r and "shape=(1, 2)" in r and "dtype=float32" in r and device.spec in r
    assert "requires_grad=True" in repr(clnet.ones(2, requires_grad=True, device=device))
    assert "grad_fn=" in repr(clnet.ones(2, requires_grad=True, device=device) * 2)
    assert "int64" in repr(clnet.arange(3, device=device))
    assert "..." in repr(clnet.zeros(1000, device=device))
    assert f"{clnet.tensor(2.0, device=device):.2f}" == "2.00"


def test_dtypes_of_the_device(device):
    for dt in (clnet.float32, clnet.int32, clnet.int64, clnet.bool):
        t = clnet.ones(3, dtype=dt, device=device)
        assert t.dtype == dt and t.numpy().dtype == dt
        assert (t * t).dtype == dt
    if device.fp64:
        t = clnet.tensor([1e-300, 1.0 + 1e-15], dtype=clnet.float64, device=device)
        assert t.numpy().tolist() == [1e-300, 1.0 + 1e-15]
        assert (t.double() * 1).tolist() == [1e-300, 1.0 + 1e-15]
    else:
        with pytest.raises(clnet.DtypeNotSupportedError, match="float64"):
            clnet.zeros(2, dtype=clnet.float64, device=device)
        with pytest.raises(clnet.DtypeNotSupportedError):
            clnet.tensor([1.0]).to(clnet.float64)
    if not device.profile.fp16:
        with pytest.raises(clnet.DtypeNotSupportedError, match="float16"):
            clnet.tensor([1.0], dtype=clnet.float16, device=device)


# --- views and versions -----------------------------------------------------------------------------
def test_views_share_storage_and_version(device):
    t = clnet.arange(12, dtype=clnet.float32, device=device).reshape(3, 4)
    v = t.T
    assert v._buf is t._buf and not v.is_contiguous() and v._version is t._version
    d = t.detach()
    assert d._buf is t._buf and d._version is t._version and not d.requires_grad
    d[0, 0] = 100.0
    assert t[0, 0].item() == 100.0 and t._version[0] == 1
    t.add_(1)
    assert d._version[0] == 2


def test_detach_alias_does_not_reference_source(device):
    """A node that saves its own output's detached alias must not form a reference cycle."""
    import gc
    import weakref
    x = clnet.ones(4, requires_grad=True, device=device)
    y = x.exp()  # exp's node saves y.detach()
    ref = weakref.ref(y)
    gc.disable()
    try:
        del y
        assert ref() is None, "the output was kept alive by a cycle through its own node"
    finally:
        gc.enable()


def test_requires_grad_flags(device):
    x = clnet.ones(2, device=device)
    assert not x.requires_grad and x.is_leaf and x.grad is None
    assert x.requires_grad_() is x and x.requires_grad
    y = x * 2
    assert y.requires_grad and not y.is_leaf and y.grad_fn is not None
    with pytest.raises(RuntimeError, match="leaf"):
        y.requires_grad_(False)
    with pytest.raises(RuntimeError, match="floating-point"):
        clnet.ones(2, dtype=clnet.int64, device=device).requires_grad_()


def test_len_iter_and_misc(device):
    t = clnet.arange(6, device=device).reshape(2, 3)
    assert len(t) == 2 and [r.tolist() for r in t] == [[0, 1, 2], [3, 4, 5]]
    assert t.ndim == 2 and t.dim() == 2 and t.numel() == 6 and t.size() == (2, 3) and t.size(1) == 3
    assert t.nbytes == 48
    with pytest.raises(TypeError):
        len(clnet.tensor(1.0, device=device))
    with pytest.raises(TypeError, match="picklable"):
        import pickle
        pickle.dumps(t)


def test_reduction_methods_take_axis_and_keepdims(device, rng):
    a = rng.standard_normal((3, 4)).astype(np.float32)
    t = clnet.tensor(a, device=device)
    assert_close(t.sum(axis=1), a.sum(axis=1), rtol=1e-5, atol=1e-5)
    assert_close(t.sum(dim=0, keepdim=True), a.sum(axis=0, keepdims=True), rtol=1e-5, atol=1e-5)
    assert_close(t.mean(axis=0, keepdims=True), a.mean(axis=0, keepdims=True), rtol=1e-5, atol=1e-5)
    assert_close(clnet.reduce_sum(t, axis=1), a.sum(axis=1), rtol=1e-5, atol=1e-5)
    assert_close(clnet.reduce_mean(clnet.reduce_sum(t ** 2, axis=1)), (a.astype(np.float64) ** 2).sum(1).mean(),
                 rtol=1e-5)
    assert_close(np.sum(t), a.sum(), rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match="both"):
        t.sum(dim=0, axis=1)


def test_torch_style_helpers(device):
    import copy
    w = clnet.tensor([1.0, 2.0], requires_grad=True, device=device)
    (w * w).sum().backward()
    w2 = copy.deepcopy(w)
    assert w2._buf is not w._buf and w2.requires_grad and w2.grad.tolist() == [2.0, 4.0]
    with pytest.raises(RuntimeError, match="leaves"):
        copy.deepcopy(w * 2)
    v = clnet.Variable([3.0], name="v", device=device)
    v2 = copy.deepcopy(v)
    assert isinstance(v2, clnet.Variable) and v2.name == "v" and v2.tolist() == [3.0]
    d = w.data
    assert d._buf is w._buf and not d.requires_grad and d._version is not w._version
    d -= 1  # torch's w.data -= ...: allowed on a leaf that requires grad, invisible to autograd
    assert w.tolist() == [0.0, 1.0]
    assert w.new_zeros(2, 3).shape == (2, 3) and w.new_ones((2,)).dtype == clnet.float32
    assert w.new_full((2,), 7).tolist() == [7.0, 7.0] and w.new_tensor([1, 2]).dtype == clnet.float32
    t = clnet.arange(6, device=device).reshape(2, 3)
    assert t.stride() == (3, 1) and t.T.stride(0) == 1 and t[1].storage_offset() == 3
    assert not t.is_floating_point() and t.element_size() == 8
    with pytest.raises(ValueError, match="copies"):
        np.asarray(t, copy=False)


def test_tf_style_random_namespace(device):
    n = 4000
    u = clnet.random.uniform((n,), 2.0, 5.0, device=device)
    assert u.shape == (n,) and u.dtype == clnet.float32
    un = u.numpy()
    assert un.min() >= 2.0 and un.max() < 5.0 and abs(un.mean() - 3.5) < 0.1
    z = clnet.random.normal((2, n // 2), mean=1.0, stddev=3.0, device=device).numpy()
    assert z.shape == (2, n // 2) and abs(z.mean() - 1.0) < 0.2 and abs(z.std() - 3.0) < 0.2
    a = clnet.random.uniform((3, 3), seed=5, device=device).numpy()
    b = clnet.random.uniform((3, 3), seed=5, device=device).numpy()
    np.testing.assert_array_equal(a, b)

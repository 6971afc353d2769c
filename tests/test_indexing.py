"""Advanced indexing, gather/scatter, take, index_select, masks: values vs numpy float64, gradients by
finite differences, errors raised before anything is written."""
from __future__ import annotations

import numpy as np
import pytest

import clnet
from conftest import assert_close, gradcheck, small


def _rand(rng, shape):
    """Random values bounded away from zero (a zero could hide a missed write)."""
    return np.asarray(rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape))


def _layout(a: np.ndarray, device, layout: str, dtype=None):
    """`a` on the device as a contiguous, transposed-storage or strided (every other element) tensor."""
    dtype = dtype or a.dtype
    if layout == "contiguous" or a.ndim == 0:
        return clnet.tensor(a, dtype=dtype, device=device)
    if layout == "transposed":
        t = clnet.tensor(np.ascontiguousarray(a.transpose()), dtype=dtype, device=device)
        return t.permute(tuple(reversed(range(a.ndim))))
    wide = np.repeat(a, 2, axis=-1)
    t = clnet.tensor(wide, dtype=dtype, device=device)
    return t[..., ::2]


LAYOUTS = ["contiguous", "transposed", "strided"]

# (shape, key builder from numpy rng) -> the key used on both numpy and clnet
GETITEM_CASES = [
    ((5,), lambda r: ([0, -1, 2, 2],)),
    ((4, 3), lambda r: ([3, 0, -4, 0],)),
    ((4, 3), lambda r: (slice(None), [2, 0, -1])),
    ((4, 3), lambda r: ([0, 3, 1], [2, -1, 0])),
    ((4, 3), lambda r: (np.array([[0, 1], [3, 3]]),)),
    ((4, 3), lambda r: (np.array([[0], [3]]), np.array([1, 2]))),       # broadcast index arrays
    ((3, 4, 5), lambda r: (Ellipsis, [4, 0])),
    ((3, 4, 5), lambda r: (slice(1, None), [3, 1], slice(None, None, 2))),
    ((3, 4, 5), lambda r: ([2, 0], slice(None), [4, 1])),               # split arrays -> index dims first
    ((3, 4, 5), lambda r: (None, [1, 2], None)),
    ((3, 4, 5), lambda r: ([1, 2], None, [0, 3])),
    ((4, 1, 3), lambda r: ([0, 0, 3], slice(None), slice(None))),       # size-1 dim in the rest
    ((4, 3), lambda r: ([],)),                                          # empty index
    ((0, 3), lambda r: (slice(None), [1, 2])),                          # size-0 dim
    ((4, 3), lambda r: (np.array(2),)),                                 # 0-d index array
]


@pytest.mark.parametrize("case", range(len(GETITEM_CASES)))
@pytest.mark.parametrize("layout", LAYOUTS)
def test_getitem_index_arrays_match_numpy(device, rng, case, layout):
    shape, make_key = GETITEM_CASES[case]
    a = _rand(rng, shape).astype(np.float32)
    key = make_key(rng)
    x = _layout(a, device, layout)
    assert_close(x[key], a[key], what=f"key {key}")


@pytest.mark.parametrize("index_kind", ["list", "numpy", "int64", "int32"])
def test_getitem_index_kinds(device, rng, index_kind):
    a = _rand(rng, (6, 3)).astype(np.float32)

    def as_kind(idx):
        if index_kind == "list":
            return idx
        if index_kind == "numpy":
            return np.array(idx)
        return clnet.tensor(np.array(idx), dtype=getattr(clnet, index_kind), device=device)
    x = clnet.tensor(a, device=device)
    assert_close(x[as_kind([5, -6, 2, 2, 0])], a[[5, -6, 2, 2, 0]])
    assert_close(x[:, as_kind([2, -3])], a[:, [2, -3]])
    assert_close(x[as_kind([[1, 2], [3, 4]]), as_kind([0, -1])], a[[[1, 2], [3, 4]], [0, -1]])


def test_int_with_array_follows_pytorch(device, rng):
    """Ints are applied first (PyTorch), so x[0, :, idx] is (x.shape[1], len(idx)), unlike numpy."""
    a = _rand(rng, (2, 3, 4)).astype(np.float32)
    x = clnet.tensor(a, device=device)
    y = x[0, :, [3, 1, 1]]
    assert y.shape == (3, 3)
    assert_close(y, a[0][:, [3, 1, 1]])
    torch = pytest.importorskip("torch")
    assert tuple(torch.tensor(a)[0, :, [3, 1, 1]].shape) == y.shape


def test_getitem_data_types(device, rng):
    ints = rng.integers(-100, 100, (5, 4))
    for dt in (np.int32, np.int64, np.uint8, np.bool_) + ((np.float64,) if device.fp64 else ()):
        a = (ints % 2 == 0) if dt == np.bool_ else ints.astype(dt)
        x = clnet.tensor(a, device=device)
        np.testing.assert_array_equal(x[[4, 0, 0]].numpy(), a[[4, 0, 0]])
        np.testing.assert_array_equal(x[:, [3, 1]].numpy(), a[:, [3, 1]])
    if device.profile.fp16:
        a = _rand(rng, (5, 4)).astype(np.float16)
        x = clnet.tensor(a, device=device, requires_grad=True)
        np.testing.assert_array_equal(x[[1, 4]].numpy(), a[[1, 4]])
        x[[1, 1, 4]].sum().backward()  # the scatter-add gradient in half (vload_half/vstore_half)
        np.testing.assert_array_equal(x.grad.numpy(), np.array([0, 2, 0, 0, 1], np.float16)[:, None] + 0 * a)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape,mask_ndim", [((7,), 1), ((5, 4), 1), ((5, 4), 2), ((3, 4, 2), 2),
                                              ((1, 1), 2), ((0, 3), 1), ((4, 0), 2)])
def test_getitem_bool_mask_matches_numpy(device, rng, layout, shape, mask_ndim):
    a = _rand(rng, shape).astype(np.float32)
    x = _layout(a, device, layout)
    m = rng.random(shape[:mask_ndim]) < 0.5
    assert_close(x[m], a[m], what="numpy mask")
    dm = _layout(m, device, layout)  # a device mask, possibly non-contiguous
    assert_close(x[dm], a[m], what="device mask")
    assert_close(x[x > 0] if mask_ndim == len(shape) else x[dm], a[a > 0] if mask_ndim == len(shape) else a[m])


def test_mask_counts_across_many_blocks(device, rng):
    n = small(device, 5000, 600)  # several 256-element blocks of the compaction kernels
    a = _rand(rng, (n,)).astype(np.float32)
    x = clnet.tensor(a, device=device)
    for p in (0.0, 0.03, 0.5, 1.0):
        m = rng.random(n) < p
        assert_close(x[clnet.tensor(m, device=device)], a[m], what=f"p={p}")
    np.testing.assert_array_equal(clnet.nonzero(x > 0).numpy(), np.argwhere(a > 0))


def test_mask_with_other_indices(device, rng):
    a = _rand(rng, (4, 5, 3)).astype(np.float32)
    x = clnet.tensor(a, device=device)
    m = rng.random(5) < 0.6
    m[0] = True
    dm = clnet.tensor(m, device=device)
    assert_close(x[:, dm], a[:, m])
    assert_close(x[1:, dm, ::2], a[1:, m, ::2])
    m2 = rng.random((4, 5)) < 0.5
    assert_close(x[clnet.tensor(m2, device=device), 1:], a[m2, 1:])
    assert_close(x[[True, False, True, True]], a[[True, False, True, True]])


def test_bool_scalar_index(device, rng):
    a = _rand(rng, (2, 3)).astype(np.float32)
    x = clnet.tensor(a, device=device)
    assert_close(x[True], a[True])
    assert_close(x[False], a[False])
    assert_close(x[..., True], a[..., True])


def test_nonzero(device, rng):
    a = rng.random((3, 4, 5)) < 0.4
    x = clnet.tensor(a, device=device)
    np.testing.assert_array_equal(clnet.nonzero(x).numpy(), np.argwhere(a))
    for got, want in zip(x.nonzero(as_tuple=True), np.nonzero(a)):
        np.testing.assert_array_equal(got.numpy(), want)
    v = clnet.tensor(rng.integers(-1, 2, (6,)), device=device)
    np.testing.assert_array_equal(clnet.nonzero(v).numpy(), np.argwhere(v.numpy()))
    assert clnet.nonzero(clnet.tensor(np.zeros((0, 2), bool), device=device)).shape == (0, 2)


# --- setitem -------------------------------------------------------------------------------------------
def test_lecture_relu_backward_pattern(device, rng):
    """grad_h = grad_h_relu.clone(); grad_h[h < 0] = 0 (the lecture's two-layer net)."""
    h = _rand(rng, (small(device, 64, 8), small(device, 100, 5)))
    g = _rand(rng, h.shape)
    th, tg = clnet.tensor(h, dtype=clnet.float32, device=device), clnet.tensor(g, dtype=clnet.float32, device=device)
    grad_h = tg.clone()
    grad_h[th < 0] = 0
    expected = g.copy()
    expected[h < 0] = 0
    assert_close(grad_h, expected)
    assert_close(tg, g, what="clone must not alias")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_setitem_advanced_matches_numpy(device, rng, layout):
    a = _rand(rng, (5, 4)).astype(np.float32)
    m = rng.random((5, 4)) < 0.5
    cases = [
        ([4, 0, -2], _rand(rng, (3, 4))),
        ([4, 0, -2], _rand(rng, (4,))),                  # broadcast over the indexed rows
        ((slice(None), [3, 0]), _rand(rng, (5, 2))),
        (([0, 4, 2], [3, 3, -1]), _rand(rng, (3,))),
        (m, _rand(rng, (int(m.sum()),))),               # mask with a tensor of the selected count
        (m[:, 0], _rand(rng, (int(m[:, 0].sum()), 4))),
        ([1, 3], 2.5),
        ((slice(1, None), [0, 2]), -1.5),
        ([1, 1, 3, 1], _rand(rng, (4, 4))),              # duplicates: the last write wins, as numpy
    ]
    for key, value in cases:
        x = _layout(a, device, layout)
        dev_key = tuple(clnet.tensor(k, device=device) if isinstance(k, np.ndarray) else k for k in key) \
            if isinstance(key, tuple) else (clnet.tensor(key, device=device) if isinstance(key, np.ndarray) else key)
        x[dev_key] = clnet.tensor(value, dtype=clnet.float32, device=device) if isinstance(value, np.ndarray) else value
        expected = a.copy()
        expected[key] = value
        assert_close(x, expected, what=f"x[{key}] = value")


def test_setitem_basic_and_mask_forms(device, rng):
    a = _rand(rng, (4, 6)).astype(np.float32)
    x = clnet.tensor(a, device=device)
    v = _rand(rng, (1, 6)).astype(np.float32)
    x[2] = clnet.tensor(v, device=device)               # extra leading 1 dims are allowed, as numpy
    x[:, ::-2] = 7.0
    x[x < -1] = clnet.tensor([3.0], device=device)      # a 1-element tensor value
    x[1:, 1] = clnet.tensor(a[:3, 0], device=device)
    e = a.copy()
    e[2] = v
    e[:, ::-2] = 7.0
    e[e < -1] = 3.0
    e[1:, 1] = a[:3, 0]
    assert_close(x, e)


def test_setitem_overlapping_source(device, rng):
    a = _rand(rng, (9,)).astype(np.float32)
    x = clnet.tensor(a, device=device)
    x[1:] = x[:-1]
    e = a.copy()
    e[1:] = a[:-1].copy()
    assert_close(x, e)
    x = clnet.tensor(a, device=device)
    x[[0, 1, 2]] = x[[2, 1, 0]]
    e = a.copy()
    e[[0, 1, 2]] = a[[2, 1, 0]]
    assert_close(x, e)


def test_setitem_leaf_requiring_grad_raises(device):
    x = clnet.ones(3, 2, device=device, requires_grad=True)
    for key in (0, [0, 2], x > 0):
        with pytest.raises(RuntimeError, match="leaf"):
            x[key] = 0.0
    with clnet.no_grad():
        x[[0, 2]] = 5.0
    assert_close(x, [[5, 5], [1, 1], [5, 5]])


# --- errors: clear messages, nothing written ----------------------------------------------------------
def test_index_errors(device, rng):
    a = _rand(rng, (3, 4)).astype(np.float32)
    x = clnet.tensor(a, device=device)
    with pytest.raises(IndexError, match="index 3 is out of bounds for dimension 0 with size 3"):
        x[[0, 3]]
    with pytest.raises(IndexError, match="index -5 is out of bounds for dimension 1 with size 4"):
        x[:, clnet.tensor([1, -5], device=device)]
    with pytest.raises(IndexError, match="index 4 is out of bounds for dimension 1 with size 4"):
        x[[0, 1], [2, 4]] = 1.0
    with pytest.raises(IndexError, match=r"mask of shape \(4,\) does not match"):
        x[np.ones(4, bool)]
    with pytest.raises(IndexError, match=r"mask of shape \(2, 4\)"):
        x[clnet.tensor(np.ones((2, 4), bool), device=device)] = 1.0
    with pytest.raises(IndexError, match="could not be broadcast"):
        x[[0, 1], [0, 1, 2]]
    with pytest.raises(IndexError, match="float32"):
        x[clnet.tensor([0.0, 1.0], device=device)]
    with pytest.raises(IndexError, match="too many indices"):
        x[[0], 1, 2]
    with pytest.raises(ValueError, match=r"shape mismatch: value tensor of shape \(3,\)"):
        x[[0, 1]] = clnet.tensor([1.0, 2.0, 3.0], device=device)
    assert_close(x, a, what="a failed assignment must not write")


# --- named ops -------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", LAYOUTS)
def test_gather_matches_numpy(device, rng, layout):
    a = _rand(rng, (4, 5, 3)).astype(np.float32)
    x = _layout(a, device, layout)
    for dim in (0, 1, 2, -1):
        shape = list(a.shape)
        shape[dim] = 6
        shape[(dim + 1) % 3] -= 1  # index may be smaller than x outside dim
        idx = rng.integers(0, a.shape[dim], shape)
        sliced = a[tuple(slice(0, s) if i != dim % 3 else slice(None) for i, s in enumerate(shape))]
        expected = np.take_along_axis(sliced, idx, axis=dim)
        assert_close(clnet.gather(x, dim, clnet.tensor(idx, device=device)), expected, what=f"dim {dim}")
    idx32 = clnet.tensor(rng.integers(0, 5, (4, 2, 3)), dtype=clnet.int32, device=device)
    assert_close(x.gather(1, idx32), np.take_along_axis(a, idx32.numpy().astype(np.int64), axis=1))


def test_gather_cross_entropy_pattern(device, rng):
    """logits.gather(1, labels[:, None]) picks each row's label entry."""
    logits = _rand(rng, (small(device, 32, 4), 10)).astype(np.float32)
    labels = rng.integers(0, 10, logits.shape[0])
    got = clnet.tensor(logits, device=device).gather(1, clnet.tensor(labels[:, None], device=device))
    assert_close(got, logits[np.arange(len(labels)), labels][:, None])


def test_gather_errors(device):
    x = clnet.ones(3, 4, device=device)
    with pytest.raises(IndexError, match="index 4 is out of bounds for dimension 1 with size 4"):
        clnet.gather(x, 1, clnet.tensor([[4]], device=device))
    with pytest.raises(IndexError, match="index -1"):
        clnet.gather(x, 1, clnet.tensor([[-1]], device=device))
    with pytest.raises(ValueError, match="as many dims"):
        clnet.gather(x, 1, clnet.tensor([1], device=device))
    with pytest.raises(ValueError, match="exceeds"):
        clnet.gather(x, 1, clnet.tensor(np.zeros((4, 1), np.int64), device=device))
    with pytest.raises(TypeError, match="int64 or int32"):
        clnet.gather(x, 1, clnet.tensor([[1.0]], device=device))


def test_scatter_add_matches_numpy(device, rng):
    a = _rand(rng, (4, 5)).astype(np.float32)
    src = _rand(rng, (3, 6)).astype(np.float32)
    idx = rng.integers(0, 5, (3, 4))  # duplicates along dim 1; index smaller than src
    got = clnet.scatter_add(clnet.tensor(a, device=device), 1, clnet.tensor(idx, device=device),
                            clnet.tensor(src, device=device))
    e = a.astype(np.float64).copy()
    for i in range(3):
        for j in range(4):
            e[i, idx[i, j]] += src[i, j]
    assert_close(got, e)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_index_select_take_masked(device, rng, layout):
    a = _rand(rng, (4, 5)).astype(np.float32)
    x = _layout(a, device, layout)
    idx = np.array([4, 0, -1, 2, 2])
    assert_close(clnet.index_select(x, 1, clnet.tensor(idx, device=device)), np.take(a, idx, axis=1))
    assert_close(x.index_select(-2, [3, 0]), a[[3, 0]])
    assert_close(x.index_select(0, clnet.tensor(2, device=device)), a[[2]])
    tidx = np.array([[0, 19], [-1, 7]])
    assert_close(clnet.take(x, clnet.tensor(tidx, device=device)), np.take(a, tidx))
    m = rng.random((4, 5)) < 0.5
    dm = clnet.tensor(m, device=device)
    assert_close(x.masked_fill(dm, -3.5), np.where(m, -3.5, a))
    assert_close(x.masked_fill(clnet.tensor(m[0], device=device), 2.0), np.where(m[0], 2.0, a))
    assert_close(x.masked_fill(dm, clnet.tensor(1.25, device=device)), np.where(m, 1.25, a))
    assert_close(clnet.masked_select(x, clnet.tensor(m[0], device=device)),
                 a[np.broadcast_to(m[0], a.shape)])
    y = clnet.tensor(a, device=device)
    y.masked_fill_(dm, 0.5)
    assert_close(y, np.where(m, 0.5, a))
    with pytest.raises(TypeError, match="bool"):
        x.masked_fill(clnet.tensor(m.astype(np.int64), device=device), 1.0)
    with pytest.raises(ValueError, match="0-dimensional"):
        x.masked_fill(dm, clnet.tensor([1.0, 2.0], device=device))
    with pytest.raises(IndexError, match="must be 1-D"):
        x.index_select(0, [[1]])


# --- gradients ------------------------------------------------------------------------------------
def test_gradcheck_getitem_advanced(device, rng):
    a = _rand(rng, (4, 3, 2))
    gradcheck(lambda t: t[[3, 0, 3, -1]], a, device=device)                       # duplicates accumulate
    gradcheck(lambda t: t[:, [2, 2, 0], 1:], a, device=device)
    gradcheck(lambda t: t[[0, 1, 1], :, [1, 1, 0]], a, device=device)
    gradcheck(lambda t: t.transpose(0, 2)[np.array([[1, 0], [1, 1]])], a, device=device)
    m = rng.random((4, 3)) < 0.5
    gradcheck(lambda t: t[clnet.tensor(m, device=device)], a, device=device)
    gradcheck(lambda t: t[1:, clnet.tensor(m[0], device=device)], a, device=device)


def test_gradcheck_setitem(device, rng):
    a, v = _rand(rng, (4, 3)), _rand(rng, (2, 3))
    m = rng.random((4, 3)) < 0.5

    def put_rows(t, val):
        t = t * 1.0
        t[[3, 1]] = val
        return t

    def put_mask(t):
        t = t * 1.0
        t[clnet.tensor(m, device=device)] = 0
        return t

    def put_basic(t, val):
        t = t * 1.0
        t[1:3, ::-1] = val
        return t

    def put_mask_values(t, val):
        t = t * 1.0
        t[clnet.tensor(m, device=device)] = val
        return t

    def put_dupes(t, val):
        t = t * 1.0
        t[[1, 1]] = val
        return t
    gradcheck(put_rows, a, v, device=device)
    gradcheck(put_mask, a, device=device)
    gradcheck(put_basic, a, v, device=device)
    gradcheck(put_mask_values, a, _rand(rng, (int(m.sum()),)), device=device)
    gradcheck(put_rows, a, _rand(rng, (3,)), device=device)                       # broadcast value
    gradcheck(lambda t, val: put_basic(t, val), a, _rand(rng, (1, 3)), device=device)
    gradcheck(put_dupes, a, _rand(rng, (3,)), device=device)


def test_gradcheck_named_ops(device, rng):
    a = _rand(rng, (3, 4))
    idx = rng.integers(0, 4, (3, 5))
    gradcheck(lambda t: clnet.gather(t, 1, clnet.tensor(idx, device=device)), a, device=device)
    gradcheck(lambda t: clnet.gather(t.T, 0, clnet.tensor(idx.T[:3], device=device)), a, device=device)
    gradcheck(lambda t: clnet.index_select(t, 1, [3, 3, 0]), a, device=device)
    gradcheck(lambda t: clnet.take(t, [[11, 0], [11, -1]]), a, device=device)
    m = rng.random((3, 4)) < 0.5
    gradcheck(lambda t: clnet.masked_fill(t, clnet.tensor(m, device=device), 2.0), a, device=device)
    gradcheck(lambda t, v: clnet.masked_fill(t, clnet.tensor(m, device=device), v.reshape(())), a,
              _rand(rng, (1,)), device=device)
    sidx = rng.integers(0, 4, (3, 3))
    gradcheck(lambda t, s: clnet.scatter_add(t, 1, clnet.tensor(sidx, device=device), s), a, _rand(rng, (3, 3)),
              device=device)


def test_scatter_gradient_is_deterministic(device, rng):
    """Many duplicates summed in float32: two runs give bit-identical gradients (no atomics)."""
    n = small(device, 4096, 64)
    a = _rand(rng, (8, 3)).astype(np.float32)
    idx = rng.integers(0, 8, n)
    w = clnet.tensor(_rand(rng, (n, 3)).astype(np.float32), device=device)
    grads = []
    for _ in range(2):
        x = clnet.tensor(a, device=device, requires_grad=True)
        (x[idx] * w).sum().backward()
        grads.append(x.grad.numpy())
    np.testing.assert_array_equal(grads[0], grads[1])
    e = np.zeros((8, 3))
    np.add.at(e, idx, w.numpy().astype(np.float64))
    assert_close(grads[0], e, rtol=1e-4, atol=1e-4)


def test_vs_torch(device, rng):
    torch = pytest.importorskip("torch")
    a = _rand(rng, (5, 4))
    idx = [4, 0, 0, 2]
    m = rng.random((5, 4)) < 0.5
    dtype = clnet.float64 if device.fp64 else clnet.float32
    x = clnet.tensor(a, dtype=dtype, device=device, requires_grad=True)
    tx = torch.tensor(a, requires_grad=True)
    y = (x[idx][:, [3, 1]] ** 2).sum() + x[clnet.tensor(m, device=device)].sum() + \
        x.gather(1, clnet.tensor([[1], [0], [3], [3], [2]], device=device)).sum()
    ty = (tx[idx][:, [3, 1]] ** 2).sum() + tx[torch.tensor(m)].sum() + \
        tx.gather(1, torch.tensor([[1], [0], [3], [3], [2]])).sum()
    y.backward()
    ty.backward()
    assert_close(y, ty.detach().numpy(), rtol=1e-5)
    assert_close(x.grad, tx.grad.numpy(), rtol=1e-5)


def test_half_scatter_add_kernel(device, rng):
    """The float16 gradient path (vload_half/vstore_half, core OpenCL 1.2) builds and sums correctly
    even on devices without cl_khr_fp16, where clnet tensors can't be float16."""
    import pyopencl as cl
    from clnet.ops import indexing
    dst = _rand(rng, (4,)).astype(np.float16)
    src = _rand(rng, (5,)).astype(np.float16)
    targets = np.array([0, 2, 3], np.int64)          # unique targets, as _Segments uploads them
    order = np.array([1, 3, 0, 4, 2], np.int64)      # j's sorted by target: 0<-{1,3}, 2<-{0,4}, 3<-{2}
    starts = np.array([0, 2, 4, 5], np.int64)
    mf = cl.mem_flags

    def buf(a):
        return cl.Buffer(device.context, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=a)
    bufs = [buf(a) for a in (dst, src, order, starts, targets)]
    i32, i64 = np.dtype(np.int32), np.dtype(np.int64)
    types = [i32, i32, None, i32, None, i32, i32, None, None, None, i32, i32, i64, i32]
    kern = indexing._kernel(device, "adv_scatter", types, t="half", acc="float", idx="int", rank=0,
                            ix_ts=("long",), mode="add", segmented=True)
    kern(device.queue, (1, 3), None, 3, 1, bufs[0], 0, bufs[1], 0, 1, bufs[2], bufs[3], bufs[4], 0, 1, 4, 1)
    got = np.empty_like(dst)
    cl.enqueue_copy(device.queue, got, bufs[0], is_blocking=True)
    want = dst.astype(np.float64)
    want[0] += src[1] + src[3]
    want[2] += src[0] + src[4]
    want[3] += src[2]
    assert_close(got, want, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (1, 1), (1, 4), (4, 1)], ids=str)
def test_named_ops_on_size_0_and_1_dims(device, rng, shape):
    a = _rand(rng, shape).astype(np.float32)
    x = clnet.tensor(a, device=device)
    for dim in (0, 1):
        n = shape[dim]
        idx = np.array([n - 1, 0, -n] if n else [], dtype=np.int64)
        assert_close(x.index_select(dim, idx), np.take(a, idx, axis=dim), what=f"index_select dim {dim}")
        gshape = list(shape)
        gshape[dim] = 2 if n else 0
        gidx = rng.integers(0, max(n, 1), gshape) if n else np.zeros(gshape, np.int64)
        assert_close(x.gather(dim, gidx), np.take_along_axis(a, gidx, axis=dim), what=f"gather dim {dim}")
    tidx = np.array([0, a.size - 1] if a.size else [], dtype=np.int64)
    assert_close(x.take(tidx), np.take(a, tidx))
    m = rng.random(shape) < 0.5
    assert_close(x.masked_fill(clnet.tensor(m, device=device), 9.0), np.where(m, 9.0, a))
    assert_close(x[clnet.tensor(m, device=device)], a[m])
    y = clnet.tensor(a, device=device)
    y[clnet.tensor(m, device=device)] = clnet.tensor(np.full(int(m.sum()), 4.0, np.float32), device=device)
    e = a.copy()
    e[m] = 4.0
    assert_close(y, e)

"""Views, copies, basic indexing, joining/splitting, flip/repeat/pad: values vs numpy float64, view-or-copy
decisions vs numpy's own no-copy reshape, gradients by finite differences, and error messages."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import clnet
from clnet.ops import movement
from conftest import assert_close, gradcheck, small


def _rand(rng, shape):
    return np.asarray(rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape))


# numpy view builders applied to a base array; the same ops run on a clnet tensor of the same base
VIEWS = {
    "contiguous": lambda a: a,
    "transposed": lambda a: a.transpose(tuple(reversed(range(a.ndim)))),
    "sliced": lambda a: a[(slice(None),) * (a.ndim - 1) + (slice(None, None, 2),)] if a.ndim else a,
    "offset": lambda a: a[(slice(1, None),) + (slice(None),) * (a.ndim - 1)] if a.ndim else a,
    "permuted": lambda a: a.transpose((1, 0) + tuple(range(2, a.ndim))) if a.ndim >= 2 else a,
}
SHAPES = [(), (1,), (5,), (0, 3), (3, 1), (1, 4), (2, 3, 4), (4, 1, 3), (3, 0, 2), (2, 3, 2, 2)]


def _pair(rng, device, shape, view, dtype=np.float32):
    """(numpy view, clnet view) of the same values with the same layout recipe."""
    base_shape = list(shape)
    if view == "sliced" and shape:
        base_shape[-1] *= 2
    if view == "offset" and shape:
        base_shape[0] += 1
    if view in ("transposed",):
        base_shape = base_shape[::-1]
    if view == "permuted" and len(shape) >= 2:
        base_shape[0], base_shape[1] = base_shape[1], base_shape[0]
    base = _rand(rng, base_shape).astype(dtype)
    a = VIEWS[view](base)
    t = clnet.tensor(base, device=device)
    if view == "transposed":
        t = t.permute(tuple(reversed(range(t.ndim))))
    elif view == "sliced" and shape:
        t = t[..., ::2]
    elif view == "offset" and shape:
        t = t[1:]
    elif view == "permuted" and len(shape) >= 2:
        t = t.permute((1, 0) + tuple(range(2, t.ndim)))
    assert t.shape == a.shape == tuple(shape)
    return a, t


def _factorizations(n, parts):
    if parts == 1:
        return [(n,)]
    out = []
    for d in range(1, n + 1):
        if n % d == 0:
            out += [(d,) + rest for rest in _factorizations(n // d, parts - 1)]
    return out


def _numpy_can_view(a, shape):
    v = a.view()
    try:
        v.shape = shape
        return True
    except AttributeError:
        return False


@pytest.mark.parametrize("view", list(VIEWS))
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_reshape_and_view_match_numpy(device, rng, view, shape):
    a, t = _pair(rng, device, shape, view)
    n = a.size
    targets = {(n,), (-1,)} | set(_factorizations(n, 2)[:4]) | set(_factorizations(n, 3)[:4]) if n else \
        {(0,), (0, 5), (2, 0, 1), (-1, 3)}
    if n == 1:
        targets |= {(), (1, 1, 1)}
    for target in targets:
        expected = a.reshape(target)
        assert_close(t.reshape(target), expected, what=f"reshape {shape}->{target}")
        if _numpy_can_view(a, expected.shape) or n == 0:
            v = t.view(target)
            assert v._buf is t._buf, f"view {shape}->{target} copied"
            assert_close(v, expected)
        else:
            with pytest.raises(RuntimeError, match="not compatible"):
                t.view(target)
    if a.ndim:
        assert_close(t.flatten(), a.reshape(-1))
        assert_close(t.contiguous(), a)
        assert t.contiguous().is_contiguous()


def test_view_shares_and_reshape_copies(device, rng):
    a = _rand(rng, (4, 6)).astype(np.float32)
    t = clnet.tensor(a, device=device)
    v = t.view(2, 12)
    v[0, 0] = 100.0
    assert t[0, 0].item() == 100.0, "a view must write through"
    r = t.T.reshape(24)  # needs a copy
    r[0] = -100.0
    assert t[0, 0].item() == 100.0, "a reshape that copies must not write through"
    with pytest.raises(RuntimeError, match=r"view of shape \(24,\) is not compatible .* shape \(6, 4\)"):
        t.T.view(-1)
    with pytest.raises(ValueError, match=r"cannot reshape a tensor of shape \(4, 6\) \(24 elements\) into \(5, -1\)"):
        t.reshape(5, -1)
    with pytest.raises(ValueError, match="only one dimension can be -1"):
        t.reshape(-1, -1)
    with pytest.raises(ValueError, match=r"into \(5, 5\) \(25 elements\)"):
        t.view(5, 5)


@pytest.mark.parametrize("view", ["contiguous", "transposed", "sliced"])
def test_dim_ops_with_negative_dims(device, rng, view):
    a, t = _pair(rng, device, (2, 3, 4), view)
    assert_close(t.permute(-1, 0, -2), a.transpose(2, 0, 1))
    assert_close(t.transpose(-1, -3), np.swapaxes(a, -1, -3))
    assert_close(t.swapaxes(0, 1), np.swapaxes(a, 0, 1))
    assert_close(t.movedim(-1, 0), np.moveaxis(a, -1, 0))
    assert_close(t.movedim((0, 1), (-1, -2)), np.moveaxis(a, (0, 1), (-1, -2)))
    assert_close(t.unsqueeze(-1), a[..., None])
    assert_close(t.unsqueeze(-4), a[None])
    assert_close(t.unsqueeze(1).squeeze(-3), a)
    assert_close(t.flatten(-2), a.reshape(2, 12))
    assert_close(t.flatten(0, -2), a.reshape(6, 4))
    assert_close(t.unflatten(-1, (2, -1)), a.reshape(2, 3, 2, 2))
    assert_close(t[:, :1].squeeze(), a[:, 0])
    assert_close(t[:, :1].squeeze((1, -1)), a[:, 0])
    assert_close(t.T, a.T)
    assert_close(t[0].t(), a[0].T)
    assert_close(t.expand(2, 2, 3, 4), np.broadcast_to(a, (2, 2, 3, 4)))
    assert_close(t[:, :1].expand(-1, 5, -1), np.broadcast_to(a[:, :1], (2, 5, 4)))
    for piece, want in zip(t.unbind(-1), np.moveaxis(a, -1, 0)):
        assert_close(piece, want)
    with pytest.raises(IndexError, match="dim 3 is out of range"):
        t.transpose(0, 3)
    with pytest.raises(ValueError, match="permute needs 3 dims"):
        t.permute(0, 1)
    with pytest.raises(ValueError, match="permutation"):
        t.permute(0, 1, 1)
    with pytest.raises(ValueError, match="-1 is not allowed in a new leading dimension"):
        t.expand(-1, 2, 3, 4)
    with pytest.raises(ValueError, match=r"cannot expand shape \(2, 3, 4\) to \(2, 5, 4\)"):
        t.expand(2, 5, 4)
    with pytest.raises(ValueError, match="start_dim"):
        t.flatten(2, 1)


BASIC_KEYS = [
    (1,), (-1,), (slice(None, None, 2),), (slice(1, -1), 2), (Ellipsis, 1), (None, slice(None), None),
    (slice(None, None, -1),), (slice(None), slice(None, None, -2)), (slice(5, 0, -2), Ellipsis, slice(1, 3)),
    (slice(2, 2),), (0, 0, 0), (Ellipsis,),
]


@pytest.mark.parametrize("key", BASIC_KEYS, ids=str)
@pytest.mark.parametrize("view", ["contiguous", "transposed", "sliced"])
def test_basic_getitem_matches_numpy(device, rng, key, view):
    a, t = _pair(rng, device, (6, 4, 3), view)
    assert_close(t[key], a[key], what=str(key))


def test_basic_getitem_views_and_copies(device, rng):
    a = _rand(rng, (4, 5)).astype(np.float32)
    t = clnet.tensor(a, device=device)
    t[1:3][0, 0] = 42.0             # a slice is a view: writes go through
    assert t[1, 0].item() == 42.0
    r = t[::-1]                     # a negative step gives a copy (PyTorch rejects it; numpy views)
    r[0, 0] = -42.0
    assert t[3, 0].item() != -42.0
    with pytest.raises(IndexError, match="index 4 is out of bounds for dimension 0 with size 4"):
        t[4]
    with pytest.raises(IndexError, match="index -6 is out of bounds for dimension 1 with size 5"):
        t[0, -6]
    with pytest.raises(IndexError, match="too many indices"):
        t[0, 0, 0]
    with pytest.raises(IndexError, match="single ellipsis"):
        t[..., 0, ...]


def test_setitem_basic_matches_numpy(device, rng):
    a = _rand(rng, (5, 4)).astype(np.float32)
    t = clnet.tensor(a, device=device)
    e = a.copy()
    v = _rand(rng, (4,)).astype(np.float32)
    for key, val in [((slice(None), 1), 3.0), ((2,), v), ((slice(None, None, -2), slice(1, 3)), v[:2]),
                     ((Ellipsis, -1), 1), ((slice(3, 1, -1),), v)]:
        t[key] = clnet.tensor(val, device=device) if isinstance(val, np.ndarray) else val
        e[key] = val
        assert_close(t, e, what=str(key))
    b = clnet.tensor(rng.random((3, 2)) < 0.5, device=device)
    b[0] = True
    b[1, 1] = 0
    assert b[0].numpy().all() and not b[1, 1].item()
    i = clnet.tensor(np.arange(6).reshape(2, 3), device=device)
    i[:, 1] = 2.7  # converted to the tensor's dtype
    assert i.numpy()[0, 1] == 2


# --- copies, devices -----------------------------------------------------------------------------
def test_clone_contiguous_to_device(device, rng):
    a, t = _pair(rng, device, (3, 4), "transposed")
    c = t.clone()
    assert c.is_contiguous() and c._buf is not t._buf
    assert_close(c, a)
    others = [d for d in clnet.devices() if d is not device]
    if others:
        other = others[0]
        if not other.fp64 and a.dtype == np.float64:
            pytest.skip("other device lacks fp64")
        moved = t.to(other)
        assert moved.device is other
        assert_close(moved, a)


# --- joining -------------------------------------------------------------------------------------
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_concat_and_stack_match_numpy(device, rng, dim):
    shapes = [(2, 3), (2, 3), (2, 3)]
    if dim == 0:
        shapes = [(2, 3), (0, 3), (1, 3)]
    elif dim in (1, -1):
        shapes = [(2, 1), (2, 4), (2, 0)]
    arrays = [_rand(rng, s).astype(np.float32) for s in shapes]
    tensors = [clnet.tensor(a, device=device) for a in arrays]
    tensors[1] = tensors[1].T.contiguous().T if 0 not in shapes[1] else tensors[1]  # a non-contiguous input
    assert_close(clnet.concat(tensors, dim), np.concatenate(arrays, dim))
    same = [_rand(rng, (2, 3)).astype(np.float32) for _ in range(3)]
    for d in (0, 1, 2, -1, -3):
        assert_close(clnet.stack([clnet.tensor(a, device=device) for a in same], d), np.stack(same, d))


def test_concat_promotes_and_checks(device, rng):
    a = clnet.tensor(np.arange(6, dtype=np.int32).reshape(2, 3), device=device)
    b = clnet.tensor(_rand(rng, (1, 3)).astype(np.float32), device=device)
    c = clnet.concat([a, b])
    assert c.dtype == clnet.float32
    assert_close(c, np.concatenate([a.numpy().astype(np.float64), b.numpy()]))
    with pytest.raises(ValueError, match=r"shapes \[\(2, 3\), \(2, 2\)\] differ outside dimension 0"):
        clnet.concat([a, clnet.zeros(2, 2, device=device)])
    with pytest.raises(ValueError, match="zero-dimensional"):
        clnet.concat([clnet.tensor(1.0, device=device)] * 2)
    with pytest.raises(ValueError, match=r"equal shape, got \[\(2, 3\), \(1, 3\)\]"):
        clnet.stack([a, b])
    with pytest.raises(ValueError, match="at least one"):
        clnet.concat([])
    others = [d for d in clnet.devices() if d is not device]
    if others:
        with pytest.raises(ValueError, match="different devices"):
            clnet.concat([b, clnet.zeros(1, 3, device=others[0])])


# --- splitting, flip, repeat, pad ----------------------------------------------------------------
def test_split_chunk_narrow(device, rng):
    a = _rand(rng, (7, 4)).astype(np.float32)
    t = clnet.tensor(a, device=device)
    pieces = t.split(3)
    assert [p.shape for p in pieces] == [(3, 4), (3, 4), (1, 4)]
    assert_close(clnet.concat(pieces), a)
    pieces = t.split([1, 0, 3], dim=-1)
    assert [p.shape for p in pieces] == [(7, 1), (7, 0), (7, 3)]
    assert_close(pieces[2], a[:, 1:])
    assert [p.shape[0] for p in t.chunk(3)] == [3, 3, 1]
    assert [p.shape[0] for p in clnet.tensor(a[:6], device=device).chunk(4)] == [2, 2, 2]
    assert [p.shape for p in clnet.zeros(0, 3, device=device).chunk(3)] == [(0, 3)] * 3
    assert_close(t.narrow(1, -3, 2), a[:, 1:3])
    assert t.split(3)[0]._buf is t._buf, "split returns views"
    with pytest.raises(ValueError, match=r"sections \[3, 3\] don't add up to dimension 0's size 7"):
        t.split([3, 3])
    with pytest.raises(ValueError, match="positive"):
        t.split(0)
    torch = pytest.importorskip("torch")
    for n, k in itertools.product([0, 1, 5, 6, 7], [1, 2, 3, 4]):
        want = [tuple(c.shape) for c in torch.zeros(n, 2).chunk(k)]
        got = [c.shape for c in clnet.zeros(n, 2, device=device).chunk(k)]
        assert got == want, (n, k)


@pytest.mark.parametrize("view", ["contiguous", "transposed", "sliced"])
def test_flip_repeat_tile_pad(device, rng, view):
    a, t = _pair(rng, device, (3, 1, 4), view)
    for dims in (0, -1, (0, 2), (1,), ()):
        assert_close(t.flip(dims), np.flip(a, dims), what=f"flip {dims}")
    assert_close(t.repeat(2, 3, 1), np.tile(a, (2, 3, 1)))
    assert_close(t.repeat(2, 1, 1, 2), np.tile(a, (2, 1, 1, 2)))
    assert_close(t.repeat(1, 0, 1), np.tile(a, (1, 0, 1)))
    assert_close(t.tile((2,)), np.tile(a, 2))
    assert_close(movement.pad(t, (1, 2)), np.pad(a, ((0, 0), (0, 0), (1, 2))))
    assert_close(movement.pad(t, (0, 1, 2, 0, 1, 1), value=-2.5),
                 np.pad(a, ((1, 1), (2, 0), (0, 1)), constant_values=-2.5))
    assert_close(movement.pad(t, (-1, 2, 0, 0, -1, -1)), np.pad(a[1:2, :, 1:], ((0, 0), (0, 0), (0, 2))))
    with pytest.raises(ValueError, match="twice"):
        t.flip((0, -3))
    with pytest.raises(ValueError, match="at least one per dim"):
        t.repeat(2, 2)
    with pytest.raises(ValueError, match="even number"):
        movement.pad(t, (1,))
    with pytest.raises(NotImplementedError, match="reflect"):
        movement.pad(t, (1, 1), mode="reflect")


# --- gradients -------------------------------------------------------------------------------------
def test_gradcheck_views(device, rng):
    a = _rand(rng, (3, 4, 2))
    gradcheck(lambda t: t.permute(2, 0, 1), a, device=device)
    gradcheck(lambda t: t.transpose(0, 2).reshape(8, 3), a, device=device)       # reshape of non-contiguous
    gradcheck(lambda t: t[:, ::2].reshape(-1), a, device=device)
    gradcheck(lambda t: t[:, :1].expand(3, 5, 2), a, device=device)
    gradcheck(lambda t: t.unsqueeze(1).expand(3, 2, 4, 2).squeeze(), a, device=device)
    gradcheck(lambda t: t.flatten(1).T, a, device=device)
    gradcheck(lambda t: t.movedim(0, -1), a, device=device)


def test_gradcheck_basic_getitem_setitem(device, rng):
    a = _rand(rng, (4, 3))
    gradcheck(lambda t: t[1:, ::2], a, device=device)
    gradcheck(lambda t: t[::-1, 1], a, device=device)
    gradcheck(lambda t: t[None, -1, ..., None], a, device=device)

    def put(t, v):
        t = t * 1.0
        t[1:3, 1] = v
        return t
    gradcheck(put, a, _rand(rng, (2,)), device=device)
    gradcheck(put, a, _rand(rng, (1, 2)), device=device)

    def put_mask(t):
        t = t * 1.0
        t[t < 0] = 0.0
        return t
    gradcheck(put_mask, a, device=device)


def test_gradcheck_join_split(device, rng):
    a, b = _rand(rng, (2, 3)), _rand(rng, (4, 3))
    gradcheck(lambda x, y: clnet.concat([x, y.T.T, x]), a, b, device=device)
    gradcheck(lambda x, y: clnet.concat([x.T, y.T], dim=-1), a, b, device=device)
    gradcheck(lambda x, y: clnet.stack([x, y[1:3]], dim=1), a, b, device=device)
    gradcheck(lambda x: clnet.concat(list(x.split([1, 0, 2], 1))[::-1], 1), a, device=device)
    gradcheck(lambda x: x.chunk(2, 1)[1], a, device=device)


def test_gradcheck_flip_repeat_pad(device, rng):
    a = _rand(rng, (2, 3))
    gradcheck(lambda t: t.flip((0, 1)), a, device=device)
    gradcheck(lambda t: t.T.flip(0), a, device=device)
    gradcheck(lambda t: t.repeat(2, 1, 2), a, device=device)
    gradcheck(lambda t: movement.pad(t, (1, 2, -1, 1)), a, device=device)


def test_lecture_grad_h_pattern(device, rng):
    """The two-layer net's manual ReLU backward (grad_h[h < 0] = 0) on a non-contiguous h vs numpy."""
    n, h = small(device, 64, 4), small(device, 100, 6)
    hn = _rand(rng, (h, n))
    g = _rand(rng, (n, h))
    expected = g.copy()
    expected[hn.T < 0] = 0
    th = clnet.tensor(hn, dtype=clnet.float32, device=device).T
    grad_h_relu = clnet.tensor(g, dtype=clnet.float32, device=device)
    grad_h = grad_h_relu.clone()
    grad_h[th < 0] = 0
    assert_close(grad_h, expected)
    assert_close(grad_h_relu, g)


@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (1, 1), (1, 4), (4, 1)], ids=str)
def test_join_split_flip_repeat_pad_on_size_0_and_1_dims(device, rng, shape):
    a = _rand(rng, shape).astype(np.float32)
    x = clnet.tensor(a, device=device)
    for dim in (0, 1, -1):
        assert_close(clnet.concat([x, x.flip(dim)], dim), np.concatenate([a, np.flip(a, dim)], dim))
        assert_close(clnet.stack([x, x], dim), np.stack([a, a], dim))
        assert_close(clnet.concat(x.split(1, dim), dim), a)
    assert_close(x.repeat(2, 3), np.tile(a, (2, 3)))
    assert_close(movement.pad(x, (1, 0, 0, 2), value=1.5), np.pad(a, ((0, 2), (1, 0)), constant_values=1.5))
    assert_close(x.T.reshape(-1), a.T.reshape(-1))

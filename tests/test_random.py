"""Device random numbers: Philox known answers, distributions, reproducibility, in-place fills, masks."""
from __future__ import annotations

import math

import numpy as np
import pytest

import clnet
from clnet.ops import random as rnd

from conftest import small

# Random123's published known-answer vectors for Philox4x32-10 (tests/kat_vectors).
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.fixture(autouse=True)
def _restore_state():
    state = rnd.get_rng_state()
    yield
    rnd.set_rng_state(state)


def test_host_reference_matches_random123():
    for ctr, key, want in KAT:
        assert rnd.philox4x32_10(ctr, key) == want


@pytest.mark.parametrize("seed,offset", [(0, 0), (0xA4093822299F31D0 & ((1 << 64) - 1), 5),
                                         ((1 << 64) - 1, (1 << 32) - 3)])
def test_device_words_match_the_reference(device, seed, offset):
    rnd.set_rng_state((seed, offset))
    blocks = 6
    words = rnd._bits(4 * blocks - 1, device=device).numpy().view(np.uint32)  # ragged tail on purpose
    key = (seed & 0xFFFFFFFF, seed >> 32)
    want = []
    for i in range(blocks):
        c = offset + i
        want += rnd.philox4x32_10((c & 0xFFFFFFFF, c >> 32, 0, 0), key)
    np.testing.assert_array_equal(words, np.array(want[:4 * blocks - 1], dtype=np.uint32))
    assert rnd.get_rng_state() == (seed, offset + blocks)
    if seed == 0 and offset == 0:
        assert tuple(words[:4]) == KAT[0][2]


def _sizes(device):
    return small(device, 400_000, 4000)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rand_is_uniform_on_0_1(device, dtype):
    if dtype == np.float64 and not device.fp64:
        pytest.skip("no fp64")
    n = _sizes(device)
    clnet.manual_seed(11)
    u = clnet.rand(n, dtype=dtype, device=device)
    assert u.dtype == dtype and u.shape == (n,)
    a = u.numpy().astype(np.float64)
    assert a.min() >= 0.0 and a.max() < 1.0
    se = 1 / math.sqrt(12 * n)
    assert abs(a.mean() - 0.5) < 5 * se
    assert abs(a.var() - 1 / 12) < 5 * math.sqrt(1 / 180 / n)
    counts = np.histogram(a, bins=10, range=(0, 1))[0]
    chi2 = ((counts - n / 10) ** 2 / (n / 10)).sum()
    assert chi2 < 33.7  # 9 degrees of freedom, p = 1e-4
    grid = 2.0 ** (24 if dtype == np.float32 else 53)  # values are multiples of 1/grid
    expected_distinct = grid * -math.expm1(-n / grid)
    assert len(np.unique(a)) > 0.999 * expected_distinct


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_randn_is_standard_normal(device, dtype):
    if dtype == np.float64 and not device.fp64:
        pytest.skip("no fp64")
    n = _sizes(device)
    clnet.manual_seed(12)
    z = clnet.randn(n, dtype=dtype, device=device).numpy().astype(np.float64)
    assert np.isfinite(z).all()
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.var() - 1) < 5 * math.sqrt(2 / n)
    assert abs((z ** 3).mean()) < 5 * math.sqrt(15 / n)
    assert abs((z ** 4).mean() - 3) < 5 * math.sqrt(96 / n)
    inside = (np.abs(z) < 1).mean()
    assert abs(inside - 0.682689) < 5 * math.sqrt(0.2167 / n)


def test_manual_seed_reproduces_and_calls_differ(device):
    clnet.manual_seed(123)
    a = clnet.rand(3, 50, device=device).numpy()
    b = clnet.rand(3, 50, device=device).numpy()
    z1 = clnet.randn((7,), device=device).numpy()
    clnet.manual_seed(123)
    np.testing.assert_array_equal(clnet.rand((3, 50), device=device).numpy(), a)  # tuple == varargs
    np.testing.assert_array_equal(clnet.rand(3, 50, device=device).numpy(), b)
    np.testing.assert_array_equal(clnet.randn(7, device=device).numpy(), z1)
    assert not np.array_equal(a, b)
    clnet.manual_seed(124)
    assert not np.array_equal(clnet.rand(3, 50, device=device).numpy(), a)


def test_the_counter_advances_by_the_blocks_drawn(device):
    clnet.manual_seed(5)
    first = clnet.rand(8, device=device).numpy()
    second = clnet.rand(8, device=device).numpy()
    assert rnd.get_rng_state() == (5, 4)
    clnet.manual_seed(5)
    both = clnet.rand(16, device=device).numpy()
    np.testing.assert_array_equal(both, np.concatenate([first, second]))
    clnet.manual_seed(5)
    clnet.rand(9, device=device)  # 3 blocks of 4: the tail of the last is skipped, never reused
    assert rnd.get_rng_state() == (5, 3)


def test_uniform_bits_are_the_same_on_every_device():
    """(seed, counter) -> words is pure arithmetic, so rand agrees bit for bit across devices."""
    devs = [d for d in clnet.devices()]
    if len(devs) < 2:
        pytest.skip("one device only")
    outs = []
    for d in devs:
        clnet.manual_seed(77)
        outs.append(clnet.rand(1000, device=d).numpy())
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])


def test_uniform_and_normal_fill_in_place(device):
    n = small(device, 200_000, 4000)
    t = clnet.zeros(n, device=device)
    v0 = t._version[0]
    assert rnd.uniform_(t, -3.0, 5.0) is t
    assert t._version[0] > v0
    a = t.numpy().astype(np.float64)
    assert a.min() >= -3.0 and a.max() < 5.0
    assert abs(a.mean() - 1.0) < 5 * 8 / math.sqrt(12 * n)
    rnd.normal_(t, 2.0, 0.5)
    a = t.numpy().astype(np.float64)
    assert abs(a.mean() - 2.0) < 5 * 0.5 / math.sqrt(n) and abs(a.std() - 0.5) < 0.02
    m = clnet.zeros(40, 30, device=device)
    rnd.uniform_(m.T, 1.0, 2.0)  # a non-contiguous target
    a = m.numpy()
    assert a.min() >= 1.0 and a.max() < 2.0 and len(np.unique(a)) > 1100
    rnd.uniform_(m[:, 5], 7.0, 7.0)  # a strided column, low == high
    assert (m.numpy()[:, 5] == 7.0).all() and (m.numpy()[:, 4] < 2.0).all()


def test_in_place_errors(device):
    w = clnet.zeros(3, device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match="in-place"):
        rnd.uniform_(w)
    with clnet.no_grad():
        rnd.normal_(w)
    assert np.isfinite(w.numpy()).all()
    with pytest.raises(TypeError, match="floating"):
        rnd.uniform_(clnet.zeros(3, dtype=clnet.int64, device=device))
    with pytest.raises(ValueError):
        rnd.uniform_(clnet.zeros(3, device=device), 2.0, 1.0)
    with pytest.raises(ValueError):
        rnd.normal_(clnet.zeros(3, device=device), 0.0, -1.0)


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 1.0])
def test_bernoulli_and_dropout_masks(device, p):
    n = small(device, 200_000, 4000)
    m = rnd.bernoulli_mask((n,), p, device=device).numpy()
    assert set(np.unique(m)) <= {0.0, 1.0}
    assert abs(m.mean() - p) < 5 * math.sqrt(max(p * (1 - p), 1e-12) / n) + 1e-12
    b = rnd.bernoulli_mask((4, 5), p, device=device, dtype=clnet.bool)
    assert b.dtype == np.bool_ and b.shape == (4, 5)
    d = rnd.dropout_mask((n,), p, device=device).numpy()
    keep = 1 - p
    if keep == 0:
        assert (d == 0).all()
    else:
        assert set(np.unique(d)) <= {0.0, np.float32(1 / keep)}
        assert abs(d.mean() - 1.0) < 5 * math.sqrt(max(p / keep, 1e-12) / n) + 1e-6
    with pytest.raises(ValueError):
        rnd.dropout_mask((3,), 1.5, device=device)


def test_randint(device):
    n = small(device, 100_000, 4000)
    clnet.manual_seed(3)
    r = rnd.randint(-3, 7, (n,), device=device)
    assert r.dtype == np.int64
    a = r.numpy()
    assert a.min() == -3 and a.max() == 6
    counts = np.bincount(a + 3, minlength=10)
    chi2 = ((counts - n / 10) ** 2 / (n / 10)).sum()
    assert chi2 < 33.7
    clnet.manual_seed(3)
    np.testing.assert_array_equal(rnd.randint(-3, 7, (n,), device=device).numpy(), a)
    r2 = rnd.randint(5, (2, 3), dtype=clnet.int32, device=device)  # randint(high, size)
    assert r2.dtype == np.int32 and r2.shape == (2, 3) and 0 <= r2.numpy().min() and r2.numpy().max() < 5
    big = rnd.randint(0, 2**62, (1000,), device=device).numpy()
    assert big.max() > 2**61 and big.min() >= 0
    with pytest.raises(ValueError):
        rnd.randint(3, 3, (2,), device=device)
    with pytest.raises(TypeError):
        rnd.randint(0, 3, (2,), dtype=clnet.float32, device=device)
    with pytest.raises(ValueError):
        rnd.randint(0, 300, (2,), dtype=clnet.uint8, device=device)


def test_randperm(device):
    clnet.manual_seed(9)
    p = rnd.randperm(1000, device=device).numpy()
    assert p.dtype == np.int64 and sorted(p.tolist()) == list(range(1000))
    assert not np.array_equal(p, np.arange(1000))
    clnet.manual_seed(9)
    np.testing.assert_array_equal(rnd.randperm(1000, device=device).numpy(), p)
    assert not np.array_equal(rnd.randperm(1000, device=device).numpy(), p)
    assert rnd.randperm(0, device=device).shape == (0,)


def test_arguments(device):
    x = clnet.rand(2, 3, device=device, requires_grad=True)
    assert x.requires_grad and x.is_leaf and x.shape == (2, 3)
    assert clnet.randn((), device=device).shape == ()
    assert clnet.rand(0, 4, device=device).shape == (0, 4)
    with pytest.raises(TypeError, match="randint"):
        clnet.rand(3, dtype=clnet.int64, device=device)
    with pytest.raises(TypeError):
        clnet.manual_seed(1.5)
    clnet.manual_seed(-1)  # negative seeds wrap to 64 bits, as PyTorch
    assert rnd.initial_seed() == (1 << 64) - 1
    s = rnd.seed()
    assert rnd.initial_seed() == s


def test_float16(device):
    if not device.profile.fp16:
        pytest.skip("no fp16")
    u = clnet.rand(10000, dtype=clnet.float16, device=device).numpy()
    assert u.dtype == np.float16 and u.min() >= 0 and u.max() < 1 and abs(u.astype(np.float64).mean() - 0.5) < 0.02

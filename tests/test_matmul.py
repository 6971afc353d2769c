"""mm / bmm / matmul / matmul_ex / linear against numpy float64, on every device and every kernel variant.

The kernel variant comes from the device profile; `variant` forces each one (CPU register blocks,
GPU local-memory tiles with several tile shapes, ragged ones included) on every device, so the GPU
variant is exercised on PoCL and under Oclgrind's race and bounds checks too.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import pytest

import clnet
from clnet.backend import profiles, programs
from clnet.backend.devices import all_devices
from clnet.ops import matmul as mmod
from clnet.ops.matmul import linear, matmul_ex

from conftest import assert_close, gradcheck, small

# name -> (profile overrides, whether the CPU kernel packs every operand instead of reading small ones in place)
VARIANTS = {
    "auto": dict(),   # the device's own profile (e.g. the vendor's GPU tiles under CLNET_PROFILE_VENDOR)
    "cpu": dict(matmul_variant="cpu", matmul_tile_m=64, matmul_tile_n=32, matmul_wpt_m=8, matmul_wpt_n=32),
    "cpu-packed": dict(matmul_variant="cpu", matmul_tile_m=64, matmul_tile_n=32, matmul_wpt_m=8, matmul_wpt_n=32,
                       pack=True),
    "cpu-4x16-packed": dict(matmul_variant="cpu", matmul_tile_m=8, matmul_tile_n=16, matmul_wpt_m=4,
                            matmul_wpt_n=16, pack=True),
    "gpu": dict(matmul_variant="gpu", matmul_tile_m=32, matmul_tile_n=32, matmul_tile_k=8,
                matmul_wpt_m=4, matmul_wpt_n=4),
    # tiles whose loads do not divide evenly among the work-items (guarded last round), non-square blocks
    "gpu-ragged": dict(matmul_variant="gpu", matmul_tile_m=8, matmul_tile_n=12, matmul_tile_k=3,
                       matmul_wpt_m=2, matmul_wpt_n=3),
}


@contextmanager
def forced_profile(device, **params):
    """Run with the device's profile changed (and clamped to the device, as profiles always are)."""
    old = device._profile
    device._profile = profiles.clamp(replace(device.profile, **params), device)
    try:
        yield device._profile
    finally:
        device._profile = old


# Mesa's llvmpipe (NIR) takes minutes to tens of minutes to compile gemm_cpu's vector register blocks, so
# its profile picks the tiled variant and only that one runs there; PoCL and Oclgrind run every variant.
LLVMPIPE_VARIANTS = ("auto", "gpu", "gpu-ragged")


@pytest.fixture(params=list(VARIANTS))
def variant(request, device, monkeypatch):
    if device.implementation in ("rusticl", "clover") and request.param not in LLVMPIPE_VARIANTS:
        pytest.skip(f"variant {request.param} is run on PoCL and Oclgrind (llvmpipe compiles it too slowly)")
    params = dict(VARIANTS[request.param])
    if params.pop("pack", False):
        for name in ("_DIRECT_B_BYTES", "_DIRECT_ANY_ELEMS", "_DIRECT_A_ELEMS"):
            monkeypatch.setattr(mmod, name, 0)
    with forced_profile(device, **params) as prof:
        yield prof


def rand(rng, *shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def check(actual, expected, tol=1e-4, what=""):
    """Relative error against the largest reference value (random operands make single entries ~0)."""
    expected = np.asarray(expected, dtype=np.float64)
    scale = max(float(np.abs(expected).max()) if expected.size else 1.0, 1e-30)
    assert_close(actual, expected, rtol=tol, atol=tol * scale, what=what)


# --- values ----------------------------------------------------------------------------------------
SHAPES = [(1, 1, 1), (1, 7, 1), (7, 13, 33), (33, 65, 13), (13, 2, 65), (32, 32, 32), (64, 16, 64),
          (65, 33, 7), (1, 40, 70), (70, 40, 1), (200, 3, 2), (2, 300, 3), (9, 1, 17)]
TINY_SHAPES = [(1, 1, 1), (7, 13, 33), (13, 2, 17), (17, 5, 1), (1, 9, 12)]


def test_mm_shapes(device, variant, rng):
    for M, K, N in small(device, SHAPES, TINY_SHAPES):
        a, b = rand(rng, M, K), rand(rng, K, N)
        check(clnet.tensor(a) @ clnet.tensor(b), a.astype(np.float64) @ b, what=f"{M}x{K} @ {K}x{N}")


def test_big_tile_multiples(device, variant, rng):
    M, K, N = small(device, (128, 96, 160), (24, 9, 24))
    a, b = rand(rng, M, K), rand(rng, K, N)
    check(clnet.mm(clnet.tensor(a), clnet.tensor(b)), a.astype(np.float64) @ b)


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_transposed_views(device, variant, rng, trans_a, trans_b):
    for M, K, N in small(device, [(7, 13, 33), (65, 40, 70), (100, 90, 3)], [(5, 7, 9), (13, 4, 17)]):
        a = rand(rng, K, M) if trans_a else rand(rng, M, K)
        b = rand(rng, N, K) if trans_b else rand(rng, K, N)
        ta, tb = clnet.tensor(a), clnet.tensor(b)
        ta, tb = (ta.T if trans_a else ta), (tb.T if trans_b else tb)
        ref = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b)
        check(ta @ tb, ref, what=f"trans_a={trans_a} trans_b={trans_b} {M}x{K}x{N}")


def test_general_strides(device, variant, rng):
    """Slices with steps (neither row- nor column-major) and offsets."""
    a, b = rand(rng, 20, 31), rand(rng, 26, 45)
    ta, tb = clnet.tensor(a)[1::2, 3::2], clnet.tensor(b)[2:, ::3]   # (10, 14) and (24, 15)
    av, bv = a[1::2, 3::2], b[2:, ::3]
    check(ta @ tb[:14], av.astype(np.float64) @ bv[:14])
    check(tb[:14].T @ ta.T, bv[:14].T.astype(np.float64) @ av.T)


def test_transposes_need_no_copy(device, variant, rng, monkeypatch):
    """x.T @ g and g @ w.T run the matmul kernels on the views: no elementwise copy kernel is launched."""
    x, g, w = rand(rng, 16, 9), rand(rng, 16, 5), rand(rng, 7, 5)
    tx, tg, tw = clnet.tensor(x), clnet.tensor(g), clnet.tensor(w)

    def no_copy(*args, **kwargs):
        raise AssertionError("matmul copied an operand with an elementwise kernel")
    monkeypatch.setattr(clnet.ops.elementwise, "launch", no_copy)
    monkeypatch.setattr(clnet.ops.movement, "launch", no_copy)
    r1, r2 = tx.T @ tg, tg @ tw.T
    monkeypatch.undo()
    check(r1, x.T.astype(np.float64) @ g)
    check(r2, g.astype(np.float64) @ w.T)


def test_ragged_columns_and_accumulate(device, variant, rng):
    """N past a multiple of the CPU kernel's column block (its last block starts early, at N - NR, and stores
    only its own columns), with `out` accumulated (beta: a column stored twice would show), A and B
    transposed or not, batched: equal to numpy."""
    for M, K, N in small(device, [(1000, 64, 100), (37, 300, 45), (9, 5, 70), (64, 1000, 100)], [(19, 7, 35)]):
        for trans_a in (False, True):
            a = rand(rng, K, M) if trans_a else rand(rng, M, K)
            b, c0 = rand(rng, K, N), rand(rng, M, N)
            A = (a.T if trans_a else a).astype(np.float64)
            check((clnet.tensor(a).T if trans_a else clnet.tensor(a)) @ clnet.tensor(b), A @ b, what=f"{M}x{K}x{N}")
            out = clnet.tensor(c0)
            matmul_ex(clnet.tensor(a), clnet.tensor(b), trans_a=trans_a, alpha=0.5, beta=-1.5, out=out)
            check(out, 0.5 * A @ b - 1.5 * c0, what=f"beta {M}x{K}x{N} trans_a={trans_a}")
    xb, gb = rand(rng, 3, 40, 21), rand(rng, 3, 40, 50)
    check(clnet.bmm(clnet.tensor(xb).transpose(1, 2), clnet.tensor(gb)),
          np.matmul(xb.transpose(0, 2, 1).astype(np.float64), gb))


BATCHED = [((3, 5, 4), (3, 4, 6)), ((2, 3, 5, 4), (3, 4, 6)), ((5, 4), (2, 4, 6)), ((2, 5, 4), (4, 6)),
           ((1, 5, 4), (3, 4, 6)), ((2, 1, 5, 4), (1, 3, 4, 6)), ((4,), (4, 6)), ((5, 4), (4,)), ((4,), (4,)),
           ((2, 5, 4), (4,)), ((4,), (3, 4, 6)), ((2, 3, 5, 4), (2, 3, 4, 6))]


def test_batched_broadcast_and_vectors(device, variant, rng):
    for sa, sb in BATCHED:
        a, b = rand(rng, *sa), rand(rng, *sb)
        ref = np.matmul(a.astype(np.float64), b)
        got = clnet.matmul(clnet.tensor(a), clnet.tensor(b))
        assert got.shape == ref.shape, f"{sa} @ {sb}: shape {got.shape} != {ref.shape}"
        check(got, ref, what=f"{sa} @ {sb}")


def test_bmm_transposed_batches(device, variant, rng):
    a, b = rand(rng, 3, 6, 5), rand(rng, 3, 7, 6)
    ta, tb = clnet.tensor(a).transpose(1, 2), clnet.tensor(b).transpose(1, 2)
    check(clnet.bmm(ta, tb), np.matmul(a.transpose(0, 2, 1).astype(np.float64), b.transpose(0, 2, 1)))


def test_empty_and_k_zero(device, variant):
    z = clnet.matmul(clnet.ones(3, 0), clnet.ones(0, 4))
    assert z.shape == (3, 4)
    np.testing.assert_array_equal(z.numpy(), np.zeros((3, 4), np.float32))
    assert clnet.matmul(clnet.ones(0, 3), clnet.ones(3, 4)).shape == (0, 4)
    assert clnet.matmul(clnet.ones(2, 0, 3), clnet.ones(2, 3, 4)).shape == (2, 0, 4)
    y = matmul_ex(clnet.ones(3, 0), clnet.ones(0, 4), bias=clnet.tensor([1.0, -2.0, 3.0, -4.0]),
                  activation="relu")
    np.testing.assert_array_equal(y.numpy(), np.tile([1.0, 0.0, 3.0, 0.0], (3, 1)).astype(np.float32))


def test_float64(device, variant, rng):
    if not device.fp64:
        pytest.skip("no fp64")
    a, b = rng.standard_normal((17, 23)), rng.standard_normal((23, 35))
    got = clnet.tensor(a, dtype=clnet.float64) @ clnet.tensor(np.ascontiguousarray(b.T), dtype=clnet.float64).T
    assert got.dtype == np.float64
    assert_close(got, a @ b, rtol=1e-12, atol=1e-12)


def test_float16_storage(device, variant, rng):
    if not device.profile.fp16:
        pytest.skip("no usable fp16 on this device")
    a, b = rand(rng, 9, 20).astype(np.float16), rand(rng, 20, 18).astype(np.float16)
    got = clnet.tensor(a) @ clnet.tensor(b)
    assert got.dtype == np.float16
    check(got, a.astype(np.float64) @ b.astype(np.float64), tol=2e-3)


def _raw(device, arr):
    """A tensor holding arr's bits on device, made without the dtype check (for half storage tests)."""
    import pyopencl as cl
    from clnet.tensor import Tensor
    arr = np.ascontiguousarray(arr)
    buf = device.pool.allocate(arr.nbytes)
    cl.enqueue_copy(device.queue, buf, arr)
    return Tensor._wrap(buf, arr.shape, arr.dtype, device)


def test_half_storage_kernels(device, variant, rng, monkeypatch):
    """The half-storage kernels (vload_half/vstore_half, float accumulation) need no cl_khr_fp16, so they
    are checked here even where clnet offers no float16 tensors (no device on the CI machine has fp16)."""
    if device.implementation == "pocl" and variant.matmul_variant == "gpu":
        pytest.skip("PoCL 3.1's work-group compiler does not finish gemm_gpu with half loads (no fp16 there)")
    import pyopencl as cl
    a, b = rand(rng, 1, 13, 37).astype(np.float16), rand(rng, 1, 37, 41).astype(np.float16)
    bias = rand(rng, 41).astype(np.float16)
    out = _raw(device, np.zeros((1, 13, 41), np.float16))
    mmod._gemm(_raw(device, a), _raw(device, b), bias=_raw(device, bias), act="relu", out=out)
    got = np.empty((1, 13, 41), np.float16)
    cl.enqueue_copy(device.queue, got, out._buf)
    device.queue.finish()
    check(got, np.maximum(a.astype(np.float64) @ b + bias, 0), tol=2e-3)


# --- fused epilogue ------------------------------------------------------------------------------------
def test_matmul_ex_epilogue(device, variant, rng):
    M, K, N = 13, 21, 37
    for trans_a in (False, True):
        for trans_b in (False, True):
            a = rand(rng, K, M) if trans_a else rand(rng, M, K)
            b = rand(rng, N, K) if trans_b else rand(rng, K, N)
            bias, c0 = rand(rng, N), rand(rng, M, N)
            A, B = (a.T if trans_a else a).astype(np.float64), (b.T if trans_b else b)
            y = matmul_ex(clnet.tensor(a), clnet.tensor(b), trans_a=trans_a, trans_b=trans_b, alpha=0.5,
                          bias=clnet.tensor(bias), activation="relu")
            check(y, np.maximum(0.5 * A @ B + bias, 0), what=f"relu epilogue {trans_a} {trans_b}")
            out = clnet.tensor(c0)
            r = matmul_ex(clnet.tensor(a), clnet.tensor(b), trans_a=trans_a, trans_b=trans_b, alpha=-2.0,
                          beta=0.75, out=out)
            assert r is out
            check(out, -2.0 * A @ B + 0.75 * c0, what=f"beta accumulate {trans_a} {trans_b}")


def test_matmul_ex_batched_bias(device, variant, rng):
    a, b, bias = rand(rng, 2, 3, 5, 4), rand(rng, 6, 4), rand(rng, 6)
    y = matmul_ex(clnet.tensor(a), clnet.tensor(b), trans_b=True, bias=clnet.tensor(bias))
    check(y, np.matmul(a.astype(np.float64), b.T) + bias)


def test_out_overwritten_when_beta_zero(device, variant, rng):
    """beta = 0 never reads out (BLAS rule): NaN garbage there must not leak into the result."""
    a, b = rand(rng, 9, 4), rand(rng, 4, 11)
    out = clnet.full((9, 11), float("nan"))
    matmul_ex(clnet.tensor(a), clnet.tensor(b), out=out)
    check(out, a.astype(np.float64) @ b)


def test_mm_packed(device, variant, rng):
    """pack_b once, then several products with it (bias or not, B transposed or not): equal to numpy float64,
    and B is packed by pack_b only (no pack launch per product)."""
    from clnet.compiler import trace
    for M, K, N in [(3, 7, 13), (6, 33, 65), (1, 40, 70)]:
        for trans in (False, True):
            b = rand(rng, N, K) if trans else rand(rng, K, N)
            tb = clnet.tensor(b).T if trans else clnet.tensor(b)
            ref_b = (b.T if trans else b).astype(np.float64)
            bias = rand(rng, N)
            a_s = [rand(rng, M, K) for _ in range(3)]

            def products():
                p = mmod.pack_b(tb, M)
                return p, [mmod.mm_packed(clnet.tensor(a), p, bias=clnet.tensor(bias) if i % 2 else None)
                           for i, a in enumerate(a_s)]
            graph, (p, got) = trace(products)
            if variant.matmul_variant == "cpu" and mmod._DIRECT_B_BYTES == 0:
                assert p.operand is not None   # the packing variant: B is in panels
            packs = [r for r in graph.kernel_launches if r.name == "pack"]
            assert len(packs) == (1 if p.operand is not None else 0)
            for i, (a, y) in enumerate(zip(a_s, got)):
                check(y, a.astype(np.float64) @ ref_b + (bias if i % 2 else 0), what=f"{M}x{K}x{N} t{trans} {i}")
    with pytest.raises(ValueError, match="does not match the packed operand"):
        mmod.mm_packed(clnet.tensor(rand(rng, 4, 7)), mmod.pack_b(clnet.tensor(rand(rng, 7, 5)), 3))


def test_linear(device, variant, rng):
    x, w, bias = rand(rng, 2, 7, 10), rand(rng, 6, 10), rand(rng, 6)
    check(linear(clnet.tensor(x), clnet.tensor(w), clnet.tensor(bias)), x.astype(np.float64) @ w.T + bias)
    check(linear(clnet.tensor(x[0, 0]), clnet.tensor(w), activation="relu"),
          np.maximum(x[0, 0].astype(np.float64) @ w.T, 0))


# --- gradients -------------------------------------------------------------------------------------
def test_grad_mm(device, rng):
    gradcheck(lambda a, b: a @ b, rng.standard_normal((5, 4)), rng.standard_normal((4, 3)), device=device)


def test_grad_matmul_broadcast_and_vectors(device, rng):
    gradcheck(lambda a, b: clnet.matmul(a, b), rng.standard_normal((2, 3, 4)), rng.standard_normal((4, 2)),
              device=device)
    gradcheck(lambda a, b: clnet.matmul(a, b), rng.standard_normal((3, 4)), rng.standard_normal((2, 4, 2)),
              device=device)
    gradcheck(lambda a, b: clnet.matmul(a, b), rng.standard_normal(4), rng.standard_normal((4, 3)),
              device=device)


def test_grad_transposed(device, variant, rng):
    gradcheck(lambda a, b: a.T @ b.T, rng.standard_normal((4, 5)), rng.standard_normal((3, 4)), device=device)


@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (False, True), (True, False), (True, True)])
def test_grad_matmul_ex(device, rng, trans_a, trans_b):
    a = rng.standard_normal((4, 5) if trans_a else (5, 4))
    b = rng.standard_normal((3, 4) if trans_b else (4, 3))
    bias = rng.standard_normal(3)
    gradcheck(lambda a, b, c: matmul_ex(a, b, trans_a=trans_a, trans_b=trans_b, alpha=1.5, bias=c,
                                        activation="relu"), a, b, bias, device=device)


def test_grad_linear_batched(device, rng):
    gradcheck(lambda x, w, c: linear(x, w, c), rng.standard_normal((2, 3, 4)), rng.standard_normal((5, 4)),
              rng.standard_normal(5), device=device)


# --- errors, caching, profiles ---------------------------------------------------------------------------
def test_shape_errors_name_both_shapes(device):
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(5, 6\)"):
        clnet.ones(3, 4) @ clnet.ones(5, 6)
    with pytest.raises(ValueError, match=r"\(2, 3, 4\).*\(2, 5, 6\)"):
        clnet.bmm(clnet.ones(2, 3, 4), clnet.ones(2, 5, 6))
    with pytest.raises(ValueError, match=r"\(2, 3, 4\).*\(3, 4, 6\)"):
        clnet.matmul(clnet.ones(2, 3, 4), clnet.ones(3, 4, 6))
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(6, 5\)"):
        matmul_ex(clnet.ones(3, 4), clnet.ones(6, 5), trans_b=True)
    with pytest.raises(ValueError, match="bias"):
        matmul_ex(clnet.ones(3, 4), clnet.ones(4, 5), bias=clnet.ones(4))
    with pytest.raises(ValueError, match="0-d"):
        clnet.matmul(clnet.tensor(2.0), clnet.ones(3))
    with pytest.raises(ValueError, match="activation"):
        matmul_ex(clnet.ones(3, 4), clnet.ones(4, 5), activation="gelu")


def test_dtype_errors(device):
    with pytest.raises(TypeError, match="float32.*int64|int64.*float32"):
        clnet.ones(3, 4) @ clnet.ones(4, 2, dtype=clnet.int64)
    with pytest.raises(TypeError, match="floating"):
        clnet.ones(3, 4, dtype=clnet.int32) @ clnet.ones(4, 2, dtype=clnet.int32)
    with pytest.raises(TypeError, match="bias"):
        matmul_ex(clnet.ones(3, 4), clnet.ones(4, 5), bias=clnet.ones(5, dtype=clnet.int32))


def test_device_errors(device):
    others = [d for d in all_devices() if d is not device]
    if not others:
        pytest.skip("needs a second OpenCL device")
    a = clnet.ones(3, 4, device=device)
    b = clnet.ones(4, 2, device=others[0])
    with pytest.raises(ValueError, match="different devices"):
        a @ b
    with pytest.raises(ValueError, match="bias"):
        matmul_ex(a, clnet.ones(4, 2, device=device), bias=clnet.ones(2, device=others[0]))


def test_out_with_autograd_refused(device):
    a = clnet.ones(3, 4, requires_grad=True)
    with pytest.raises(RuntimeError, match="automatic differentiation"):
        matmul_ex(a, clnet.ones(4, 2), out=clnet.zeros(3, 2))


def test_new_shapes_do_not_recompile(device, variant, rng):
    clnet.tensor(rand(rng, 9, 10)) @ clnet.tensor(rand(rng, 10, 40))
    before = programs.built_count()
    for M, K, N in [(11, 12, 41), (17, 3, 50), (23, 30, 70)]:
        clnet.tensor(rand(rng, M, K)) @ clnet.tensor(rand(rng, K, N))
    assert programs.built_count() == before


def test_profile_fits_device(device):
    prof = device.profile
    wg_x, wg_y = profiles.matmul_work_group(prof)
    assert wg_x * wg_y <= device.max_work_group_size
    assert profiles.matmul_local_bytes(prof) <= device.local_mem
    assert prof.matmul_tile_m % prof.matmul_wpt_m == 0 and prof.matmul_tile_n % prof.matmul_wpt_n == 0


def test_clamp_shrinks_big_gpu_tiles(device):
    """A profile asking for more than the device has is clamped, and the clamped kernel still computes."""
    with forced_profile(device, matmul_variant="gpu", matmul_tile_m=256, matmul_tile_n=256, matmul_tile_k=64,
                        matmul_wpt_m=2, matmul_wpt_n=2) as prof:
        wg_x, wg_y = profiles.matmul_work_group(prof)
        assert wg_x * wg_y <= device.max_work_group_size
        assert profiles.matmul_local_bytes(prof) <= device.local_mem
        rng = np.random.default_rng(3)
        a, b = rand(rng, 19, 7), rand(rng, 7, 21)
        check(clnet.tensor(a) @ clnet.tensor(b), a.astype(np.float64) @ b)

"""Runs every test that takes `device` once per OpenCL device present.

CLNET_TEST_DEVICES filters them: a comma-separated list of selection strings ("pocl", "rusticl",
"oclgrind", "gpu", "opencl:1:0"). Without it, every device except simulators (Oclgrind) is used.
Tests size their work with `small(device, big, tiny)` so simulators get small shapes.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import clnet
from clnet.backend.devices import all_devices, get_device

# The shipped profile defaults, not what `clnet tune` stored for this machine (tests/test_tune.py turns it on).
os.environ.setdefault("CLNET_TUNING", "0")
# Kernels build in this process, as they do once a machine's compilers are vetted: tests behave the same on
# the first run and later ones (tests/test_build_worker.py and the thread tests run the build child).
os.environ.setdefault("CLNET_BUILD_WORKER", "0")
# The default device by the fixed rule, never by timing the implementations (tests/test_calibration.py does).
os.environ.setdefault("CLNET_CALIBRATE", "0")


def _selected():
    spec = os.environ.get("CLNET_TEST_DEVICES", "").strip()
    devs = all_devices()
    if not spec:
        return [d for d in devs if not d.is_simulator]
    chosen = []
    for word in spec.split(","):
        word = word.strip()
        if word:
            dev = get_device(word)  # raises, naming the devices present, if an expected one is missing
            if dev not in chosen:
                chosen.append(dev)
    return chosen


DEVICES = _selected()


def pytest_report_header(config):
    return "clnet devices under test: " + ("; ".join(d.describe() for d in DEVICES) or "none")


def exact_size_blocks(dev):
    """On a simulator, give the device a pool whose blocks have exactly the bytes asked for (pyopencl's
    bins with 24 mantissa bits: exact below 16 MiB) instead of sizes rounded up to coarse bins: a read or
    write past a tensor's end then leaves its buffer, which Oclgrind reports, and a block is reused only
    by a tensor of the same size. (With the coarse bins, long Oclgrind runs reported uninitialized reads
    in reduce_outer, gemm_cpu and conv2d_forward that neither reproduce alone nor with exact blocks.)"""
    import pyopencl.tools as cl_tools
    pool = dev.pool
    if not getattr(pool, "exact_size_blocks", False):
        pool._pool = cl_tools.MemoryPool(cl_tools.ImmediateAllocator(dev.queue), leading_bits_in_bin_id=24)
        pool.exact_size_blocks = True


@pytest.fixture(params=DEVICES, ids=[f"{d.implementation}:{d.spec}" for d in DEVICES])
def device(request):
    dev = request.param
    if dev.is_simulator:
        exact_size_blocks(dev)
    clnet.set_default_device(dev)
    yield dev
    clnet.set_default_device(None)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def is_slow_device(device) -> bool:
    """Simulators and Mesa's llvmpipe run kernels 100-1000x slower than PoCL."""
    return device.is_simulator or device.implementation in ("rusticl", "clover")


def small(device, big, tiny):
    """`big` on real devices, `tiny` on slow ones (Oclgrind, llvmpipe)."""
    return tiny if is_slow_device(device) else big


# --- what does not run on the simulator -----------------------------------------------------------------
# Oclgrind simulates every work-item with its checkers on (seconds per launch of a few hundred items), so
# CI runs the tensor, autograd, nn and optim tests there with tiny shapes and without the work that only
# repeats what a smaller case already runs through the same kernels. Such work is marked `big`: skipped,
# with its reason, on simulators; it runs in full on every other device (PoCL, rusticl).
BIG_REASON = "too much simulated work for Oclgrind; runs on PoCL and rusticl"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "big(reason): too much simulated work for Oclgrind (a big shape, a long run, or a grid entry "
        "whose kernels a smaller entry runs there): skipped on simulators, runs on every other device")


def pytest_collection_modifyitems(config, items):
    for item in items:
        mark = item.get_closest_marker("big")
        callspec = getattr(item, "callspec", None)
        dev = callspec.params.get("device") if callspec else None
        if mark is not None and dev is not None and getattr(dev, "is_simulator", False):
            reason = mark.kwargs.get("reason") or (mark.args[0] if mark.args else BIG_REASON)
            item.add_marker(pytest.mark.skip(reason=f"not on the simulator: {reason}"))


def simulator_subset(values, keep, reason="a representative entry of this grid runs on the simulator; "
                     "every entry runs on PoCL and rusticl", unpack=False):
    """A parametrize list whose entries other than those at the indices `keep` are marked `big`.
    unpack=True for several argnames (each value is then a tuple of arguments)."""
    return [value if i in keep else
            pytest.param(*(value if unpack else (value,)), marks=pytest.mark.big(reason=reason))
            for i, value in enumerate(values)]


def float_dtypes(device):
    """The float dtypes the device computes in (float64 for references where it has fp64)."""
    out = [np.float32]
    if device.fp64:
        out.append(np.float64)
    return out


def assert_close(actual, expected, rtol=1e-5, atol=1e-6, what=""):
    actual = actual.numpy() if isinstance(actual, clnet.Tensor) else np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{what} shape {actual.shape} != expected {expected.shape}"
    np.testing.assert_allclose(actual.astype(np.float64), expected.astype(np.float64), rtol=rtol, atol=atol,
                               err_msg=what)


def numeric_grad(f, x: np.ndarray, eps=1e-6) -> np.ndarray:
    """Central finite differences of scalar f at x (float64)."""
    x = x.astype(np.float64).copy()
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        fp = f(x)
        x[i] = old - eps
        fm = f(x)
        x[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


def gradcheck(fn, *arrays, device, rtol=1e-4, atol=1e-6):
    """Compare clnet's gradients of sum(fn(*tensors) * w) with finite differences, in float64."""
    if not device.fp64:
        pytest.skip(f"{device.name} has no float64 for finite differences")
    rng = np.random.default_rng(7)
    xs = [np.asarray(a, dtype=np.float64) for a in arrays]
    probe = fn(*[clnet.tensor(a, device=device) for a in xs])
    w = rng.standard_normal(probe.shape)

    def scalar(i):
        def f(v):
            args = [clnet.tensor(v if j == i else a, device=device) for j, a in enumerate(xs)]
            return float((fn(*args).numpy() * w).sum())
        return f
    ts = [clnet.tensor(a, device=device, requires_grad=True) for a in xs]
    out = fn(*ts)
    (out * clnet.tensor(w, device=device)).sum().backward()
    for i, (t, a) in enumerate(zip(ts, xs)):
        expected = numeric_grad(scalar(i), a)
        assert t.grad is not None, f"input {i} got no gradient"
        assert_close(t.grad, expected, rtol=rtol, atol=atol, what=f"gradient of input {i}")

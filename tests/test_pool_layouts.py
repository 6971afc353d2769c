"""max_pool2d / avg_pool2d on any input layout (NCHW, channels-last views as clnet.keras passes, other strided
views): the same values and gradients as the numpy float64 reference, the channels-last layout kept in the
output and the input gradient, and no copy kernel launched for a permuted input or output gradient."""
from __future__ import annotations

import numpy as np
import pytest

import clnet
from clnet.ops import conv

from conftest import assert_close, gradcheck
from test_conv import ref_pool2d

# (shape, kernel, stride, padding): non-overlapping (scatter backward: 2x2/2, padded, stride > kernel, odd
# sizes leaving rows in no window) and overlapping windows (gather backward)
CASES = [
    ((2, 3, 8, 8), 2, None, 0),
    ((2, 4, 7, 9), 2, 2, 1),
    ((1, 3, 10, 7), 2, 3, 1),
    ((2, 3, 11, 5), (3, 2), (3, 2), 0),
    ((1, 2, 7, 9), 3, 2, 1),
    ((2, 3, 6, 6), (3, 2), (1, 2), (1, 0)),
]
LAYOUTS = ["nchw", "channels_last", "strided"]


def _view(x, layout):
    """x (N, C, H, W) float32 as a clnet tensor laid out as asked (the values are x's)."""
    if layout == "nchw":
        return clnet.tensor(x)
    if layout == "channels_last":
        return clnet.tensor(np.ascontiguousarray(x.transpose(0, 2, 3, 1))).permute(0, 3, 1, 2)
    # every other column of a wider tensor, with H and W swapped in memory
    wide = np.zeros(x.shape[:2] + (x.shape[3], 2 * x.shape[2]), np.float32)
    wide[..., ::2] = x.transpose(0, 1, 3, 2)
    return clnet.tensor(wide)[..., ::2].transpose(2, 3)


def _ref_grad(x, gy, k, s, p, mode):
    """d sum(pool(x) * gy) / dx in float64: each window sends gy to its (first) maximum, or gy / (kh kw)."""
    (kh, kw), (sh, sw), (ph, pw) = (conv._pair(v, "", "") if not isinstance(v, tuple) else v
                                    for v in (k, s if s is not None else k, (p, p) if isinstance(p, int) else p))
    N, C, H, W = x.shape
    gx = np.zeros((N, C, H + 2 * ph, W + 2 * pw))
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf)
    for n, c, i, j in np.ndindex(*gy.shape):
        win = (n, c, slice(i * sh, i * sh + kh), slice(j * sw, j * sw + kw))
        if mode == "max":
            a, b = np.unravel_index(np.argmax(xp[win]), (kh, kw))
            gx[n, c, i * sh + a, j * sw + b] += gy[n, c, i, j]
        else:
            gx[win] += gy[n, c, i, j] / (kh * kw)
    return gx[:, :, ph:ph + H, pw:pw + W]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_pool_layouts_match_numpy(device, rng, case, mode, layout):
    shape, k, s, p = case
    x = rng.standard_normal(shape).astype(np.float32)
    xt = _view(x, layout).requires_grad_(True)
    fn = conv.max_pool2d if mode == "max" else conv.avg_pool2d
    y = fn(xt, k, s, p)
    assert_close(y, ref_pool2d(x, k, s, p, mode), rtol=1e-5, atol=1e-6, what="forward")
    if layout == "channels_last" and shape[1] > 1:
        assert conv._channels_last(y), f"a channels-last input gave strides {y.strides}"
    gy = rng.standard_normal(tuple(y.shape)).astype(np.float32)
    # the output gradient in the other layout than y's (Flatten's backward hands a channels-last one)
    gyt = _view(gy, "nchw" if layout == "channels_last" else "channels_last")
    (gx,) = clnet.autograd.grad([y], [xt], [gyt])
    assert_close(gx, _ref_grad(x, gy, k, s, p, mode), rtol=1e-5, atol=1e-6, what="grad input")
    if layout == "channels_last" and shape[1] > 1:
        assert conv._channels_last(gx), f"the input gradient of a channels-last input has strides {gx.strides}"
    if mode == "max":
        _, idx = conv.max_pool2d(_view(x, layout), k, s, p, return_indices=True)
        _, ref_idx = conv.max_pool2d(clnet.tensor(x), k, s, p, return_indices=True)
        np.testing.assert_array_equal(idx.numpy(), ref_idx.numpy())


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pool_channels_last_gradcheck(device, mode):
    x = np.random.default_rng(7).standard_normal((1, 3, 5, 6))
    fn = conv.max_pool2d if mode == "max" else conv.avg_pool2d
    gradcheck(lambda a: fn(a.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2), 2, 2, 0), x, device=device)


def test_pool_channels_last_launches_no_copy(device):
    """Forward and backward of a channels-last pooling are one kernel each: no transposing copy."""
    x = clnet.tensor(np.random.default_rng(3).standard_normal((2, 5, 6, 4)).astype(np.float32))

    def step(t):
        y = conv.max_pool2d(t.permute(0, 3, 1, 2), 2, 2, 0)
        (g,) = clnet.autograd.grad([y], [t], [clnet.ones_like(y)])
        return g

    info = clnet.compiler.explain(step, x.requires_grad_(True))
    launches = info["graph"].kernel_launches
    names = [launch.name for launch in launches]
    assert names.count("max_pool2d_forward") == 1 and names.count("max_pool2d_backward") == 1, names
    copies = [la for la in launches if la.note is not None and getattr(la.note, "expr", None) == "v0"
              and la.note.strides[0] is not None]  # a tensor copied (not a fill)
    assert not copies, f"copy kernels launched: {[(la.name, la.note.shape) for la in copies]}"

"""keras.ops' neural-network functions: activations, softmax, one-hot, cross-entropies, normalisation,
pooling, convolution and attention, each on clnet.nn.functional / clnet ops (keras.activations and the
layers call these, so each formula is written once)."""
from __future__ import annotations

import math

import numpy as np

import clnet
from clnet import dtypes as _dt
from clnet.nn import functional as F

from .. import _ops, config
from .numpy import _float, clnet_op, float_spec
from .symbolic import KerasTensor, as_tensor, keras_op, same_spec, standardize_dtype


def _act(name, fn, spec=float_spec):
    fn.__name__ = fn.__qualname__ = name
    return keras_op(spec=spec)(fn)


# --- activations ------------------------------------------------------------------------------------
relu = _act("relu", lambda x: clnet.relu(_float(x)))
relu6 = _act("relu6", lambda x: clnet.clamp(_float(x), 0.0, 6.0))
sigmoid = _act("sigmoid", lambda x: clnet.sigmoid(_float(x)))
softsign = _act("softsign", lambda x: _float(x) / (clnet.abs(_float(x)) + 1.0))
silu = _act("silu", lambda x: _float(x) * clnet.sigmoid(_float(x)))
swish = silu
hard_sigmoid = _act("hard_sigmoid", lambda x: clnet.clamp(_float(x) * (1.0 / 6.0) + 0.5, 0.0, 1.0))
hard_silu = _act("hard_silu", lambda x: _float(x) * clnet.clamp(_float(x) * (1.0 / 6.0) + 0.5, 0.0, 1.0))
hard_swish = hard_silu
hard_tanh = _act("hard_tanh", lambda x: clnet.clamp(_float(x), -1.0, 1.0))
tanh_shrink = _act("tanh_shrink", lambda x: _float(x) - clnet.tanh(_float(x)))
selu = _act("selu", lambda x: elu.eager(x, 1.6732632423543772) * 1.0507009873554805)


def _softplus(x):
    t = _float(x)
    return clnet.relu(t) + clnet.log1p(clnet.exp(-clnet.abs(t)))  # stable log(1 + exp(x))


softplus = _act("softplus", _softplus)
log_sigmoid = _act("log_sigmoid", lambda x: -_softplus(-_float(x)))
sparse_plus = _act("sparse_plus", lambda x: clnet.where(_float(x) <= -1.0, 0.0, clnet.where(
    _float(x) >= 1.0, _float(x), (_float(x) + 1.0) * (_float(x) + 1.0) * 0.25)))


@keras_op(spec=float_spec)
def leaky_relu(x, negative_slope=0.2):
    return F.leaky_relu(_float(x), float(negative_slope))


@keras_op(spec=float_spec)
def elu(x, alpha=1.0):
    t = _float(x)
    return clnet.where(t > 0, t, clnet.expm1(t) * float(alpha))


@keras_op(spec=float_spec)
def celu(x, alpha=1.0):
    t = _float(x)
    return clnet.relu(t) + clnet.minimum(clnet.expm1(t * (1.0 / alpha)) * float(alpha), 0.0)


def erf(x):
    """clnet.erf when present; else Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7, below float32's spacing)."""
    fn = getattr(clnet, "erf", None)
    t = _float(x)
    if fn is not None:
        return fn(t)
    a = clnet.abs(t)
    k = 1.0 / (1.0 + 0.3275911 * a)
    poly = k * (0.254829592 + k * (-0.284496736 + k * (1.421413741 + k * (-1.453152027 + k * 1.061405429))))
    return clnet.sign(t) * (1.0 - poly * clnet.exp(-(a * a)))


@keras_op(spec=float_spec)
def gelu(x, approximate=True):
    t = _float(x)
    if approximate:
        inner = (t + 0.044715 * t * t * t) * math.sqrt(2.0 / math.pi)
        return 0.5 * t * (1.0 + clnet.tanh(inner))
    return 0.5 * t * (1.0 + erf(t * (1.0 / math.sqrt(2.0))))


@keras_op(spec=lambda x, axis=-1: KerasTensor(tuple(s // 2 if (i == axis % len(x.shape) and s) else s
                                                      for i, s in enumerate(x.shape)), x.dtype))
def glu(x, axis=-1):
    a, b = clnet.chunk(_float(x), 2, int(axis))
    return a * clnet.sigmoid(b)


@keras_op(spec=float_spec)
def soft_shrink(x, threshold=0.5):
    t = _float(x)
    return clnet.where(t > threshold, t - threshold, clnet.where(t < -threshold, t + threshold, 0.0))


@keras_op(spec=float_spec)
def hard_shrink(x, threshold=0.5):
    t = _float(x)
    return clnet.where(clnet.abs(t) > threshold, t, 0.0)


@keras_op(spec=float_spec)
def threshold(x, threshold, default_value):  # noqa: F811  (Keras's argument name)
    t = _float(x)
    return clnet.where(t > threshold, t, float(default_value))


@keras_op(spec=float_spec)
def squareplus(x, b=4):
    t = _float(x)
    return (t + clnet.sqrt(t * t + float(b))) * 0.5


@keras_op(spec=float_spec)
def softmax(x, axis=-1):
    t = _float(x)
    if isinstance(axis, (tuple, list)):
        axes = [a % t.ndim for a in axis]
        rest = [i for i in range(t.ndim) if i not in axes]
        moved = t.permute(*(rest + axes))
        flat = moved.reshape(tuple(moved.shape[:len(rest)]) + (-1,))
        out = F.softmax(flat, dim=-1).reshape(tuple(moved.shape))
        return out.permute(*[(rest + axes).index(i) for i in range(t.ndim)])
    return F.softmax(t, dim=int(axis))


@keras_op(spec=float_spec)
def log_softmax(x, axis=-1):
    return F.log_softmax(_float(x), dim=int(axis))


# --- encodings --------------------------------------------------------------------------------------
def _one_hot_spec(x, num_classes, axis=-1, dtype=None, sparse=False):
    shape = list(x.shape)
    pos = len(shape) if axis == -1 else axis % (len(shape) + 1)
    shape.insert(pos, int(num_classes))
    return KerasTensor(tuple(shape), standardize_dtype(dtype))


@keras_op(spec=_one_hot_spec)
def one_hot(x, num_classes, axis=-1, dtype=None, sparse=False):
    """(..., ) integer labels -> (..., num_classes) (class axis at `axis`); out-of-range labels give zeros."""
    labels = as_tensor(x).to(dtype=_dt.int64)
    n = int(num_classes)
    classes = clnet.arange(0, n, dtype=_dt.int64, device=labels.device)
    out = clnet.eq(labels.unsqueeze(-1), classes).to(dtype=_dt.as_dtype(standardize_dtype(dtype)))
    if axis not in (-1, out.ndim - 1):
        out = clnet.movedim(out, -1, axis)
    return out


@keras_op(spec=lambda inputs, num_classes, axis=-1, dtype=None, sparse=False: KerasTensor(
    tuple(inputs.shape[:-1]) + (int(num_classes),), standardize_dtype(dtype)))
def multi_hot(inputs, num_classes, axis=-1, dtype=None, sparse=False):
    hot = one_hot.eager(inputs, num_classes, -1, dtype)
    reduced = clnet.amax(hot, -2) if hot.ndim > 1 else hot
    return reduced if axis in (-1, reduced.ndim - 1) else clnet.movedim(reduced, -1, axis)


# --- losses (per-sample values, as keras.losses' functions) -----------------------------------------
def _loss_spec(target, output, *args, **kwargs):
    return KerasTensor(output.shape[:-1], output.dtype)


@keras_op(spec=lambda target, output, from_logits=False: KerasTensor(output.shape, output.dtype))
def binary_crossentropy(target, output, from_logits=False):
    """Elementwise -(t log p + (1 - t) log(1 - p)) (not averaged, as keras.ops)."""
    out, tgt = _float(output), _float(target)
    if from_logits:
        return _ops.binary_cross_entropy_logits(out, tgt)
    eps = config.epsilon()
    p = clnet.clamp(out, eps, 1.0 - eps)
    return -(tgt * clnet.log(p) + (1.0 - tgt) * clnet.log(1.0 - p))


@keras_op(spec=_loss_spec)
def categorical_crossentropy(target, output, from_logits=False, axis=-1):
    out, tgt = _float(output), _float(target)
    if axis not in (-1, out.ndim - 1):
        out, tgt = clnet.movedim(out, axis, -1), clnet.movedim(tgt, axis, -1)
    if from_logits:
        return _ops.cross_entropy_logits(out, tgt)
    p = out / clnet.sum(out, -1, keepdim=True)
    p = clnet.clamp(p, config.epsilon(), 1.0 - config.epsilon())
    return -clnet.sum(tgt * clnet.log(p), -1)


@keras_op(spec=_loss_spec)
def sparse_categorical_crossentropy(target, output, from_logits=False, axis=-1):
    out = _float(output)
    labels = as_tensor(target).to(dtype=_dt.int64)
    if labels.ndim == out.ndim and labels.shape[-1] == 1:
        labels = labels.reshape(tuple(labels.shape[:-1]))
    if from_logits:
        return _ops.cross_entropy_logits(out, labels)
    return categorical_crossentropy.eager(one_hot.eager(labels, out.shape[-1], dtype=standardize_dtype(out.dtype)),
                                          out, False)


# --- normalisation ----------------------------------------------------------------------------------
def moments(x, axes, keepdims=False, synchronized=False):
    """(mean, variance) over `axes` (the biased variance, as Keras)."""
    t = _float(x)
    axes = tuple(axes) if isinstance(axes, (tuple, list)) else (int(axes),)
    mean = clnet.mean(t, axes, keepdim=True)
    var = clnet.mean(clnet.square(t - mean), axes, keepdim=True)
    if not keepdims:
        kept = tuple(n for i, n in enumerate(t.shape) if i not in {a % t.ndim for a in axes})
        mean, var = mean.reshape(kept), var.reshape(kept)
    return mean, var


@keras_op(spec=same_spec)
def batch_normalization(x, mean, variance, axis, offset=None, scale=None, epsilon=1e-3):
    t = _float(x)
    shape = [1] * t.ndim
    shape[int(axis)] = t.shape[int(axis)]

    def view(v):
        v = as_tensor(v)
        return v.reshape(shape) if v.ndim == 1 else v
    out = (t - view(mean)) * clnet.rsqrt(view(variance) + float(epsilon))
    if scale is not None:
        out = out * view(scale)
    if offset is not None:
        out = out + view(offset)
    return out


@keras_op(spec=same_spec)
def layer_normalization(x, gamma=None, beta=None, axis=-1, epsilon=1e-3, **kwargs):
    t = _float(x)
    axes = tuple(a % t.ndim for a in ((axis,) if isinstance(axis, int) else axis))
    layer_norm = getattr(F, "layer_norm", None)
    if layer_norm is not None and axes == tuple(range(t.ndim - len(axes), t.ndim)):
        shape = tuple(t.shape[a] for a in axes)
        return layer_norm(t, shape, _full_shape(gamma, shape), _full_shape(beta, shape), float(epsilon))
    mean = clnet.mean(t, axes, keepdim=True)
    var = clnet.mean(clnet.square(t - mean), axes, keepdim=True)
    out = (t - mean) * clnet.rsqrt(var + float(epsilon))
    if gamma is not None:
        out = out * as_tensor(gamma)
    if beta is not None:
        out = out + as_tensor(beta)
    return out


def _full_shape(v, shape):
    return None if v is None else as_tensor(v).reshape(shape)


@keras_op(spec=same_spec)
def rms_normalization(x, scale=1, axis=-1, epsilon=None):
    t = _float(x)
    eps = config.epsilon() if epsilon is None else float(epsilon)
    out = t * clnet.rsqrt(clnet.mean(clnet.square(t), int(axis), keepdim=True) + eps)
    return out * (scale if isinstance(scale, (int, float)) else as_tensor(scale))


@keras_op(spec=same_spec)
def normalize(x, axis=-1, order=2, epsilon=None):
    t = _float(x)
    eps = 1e-12 if epsilon is None else float(epsilon)
    if order == 2:
        norm = clnet.sqrt(clnet.maximum(clnet.sum(clnet.square(t), int(axis), keepdim=True), eps * eps))
    elif order == 1:
        norm = clnet.maximum(clnet.sum(clnet.abs(t), int(axis), keepdim=True), eps)
    else:
        norm = clnet.maximum(clnet.pow(clnet.sum(clnet.pow(clnet.abs(t), float(order)), int(axis), keepdim=True),
                                       1.0 / order), eps)
    return t / norm


@keras_op(spec=lambda x1, x2, max_val: KerasTensor((), config.floatx()))
def psnr(x1, x2, max_val):
    mse = clnet.mean(clnet.square(_float(x1) - _float(x2)))
    return 20.0 * math.log10(max_val) - 10.0 * clnet.log(mse) * (1.0 / math.log(10.0))


# --- pooling and convolution (channels_last, Keras's default) ----------------------------------------
def _tuple(v, n):
    return (int(v),) * n if isinstance(v, (int, np.integer)) else tuple(int(i) for i in v)


def _spatial(inputs, data_format):
    """(NCHW-like tensor, rank of space, whether to go back to channels_last) for 1-D and 2-D inputs."""
    t = _float(inputs)
    fmt = data_format or config.image_data_format()
    space = t.ndim - 2
    if space not in (1, 2):
        raise NotImplementedError(f"keras.ops pooling/convolution supports 1-D and 2-D inputs, got rank {t.ndim}")
    x = t.permute(0, t.ndim - 1, *range(1, t.ndim - 1)) if fmt == "channels_last" else t
    if space == 1:
        x = x.unsqueeze(2)
    return x, space, fmt == "channels_last"


def _restore(y, space, channels_last):
    if space == 1:
        y = y.squeeze(2)
    return y.permute(0, *range(2, y.ndim), 1) if channels_last else y


def _pool(inputs, pool_size, strides, padding, data_format, op):
    x, space, last = _spatial(inputs, data_format)
    pool = _tuple(pool_size, space)
    stride = pool if strides is None else _tuple(strides, space)
    if space == 1:
        pool, stride = (1,) + pool, (1,) + stride
    return _restore(op(x, pool, stride, str(padding).lower()), space, last)


def max_pool(inputs, pool_size, strides=None, padding="valid", data_format=None):
    return _pool(inputs, pool_size, strides, padding, data_format, _ops.max_pool2d_nchw)


def average_pool(inputs, pool_size, strides=None, padding="valid", data_format=None):
    return _pool(inputs, pool_size, strides, padding, data_format, _ops.avg_pool2d_nchw)


def conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
    """N-D convolution (1-D and 2-D) with a Keras kernel (*spatial, in, out)."""
    x, space, last = _spatial(inputs, data_format)
    k = as_tensor(kernel)
    stride, dil = _tuple(strides, space), _tuple(dilation_rate, space)
    if space == 1:
        k, stride, dil = k.unsqueeze(0), (1,) + stride, (1,) + dil
    return _restore(_ops.conv2d_nchw(x, k, None, stride, str(padding).lower(), dil), space, last)


def depthwise_conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
    """Each input channel convolved with its own `multiplier` filters: kernel (*spatial, in, multiplier)."""
    k = as_tensor(kernel)
    channels = k.shape[-2]
    fmt = data_format or config.image_data_format()
    axis = -1 if fmt == "channels_last" else 1
    outs = []
    for c in range(channels):
        xc = as_tensor(inputs).narrow(axis % as_tensor(inputs).ndim, c, 1)
        kc = k.narrow(k.ndim - 2, c, 1)
        outs.append(conv(xc, kc, strides, padding, data_format, dilation_rate))
    return clnet.concat(outs, axis)


def separable_conv(inputs, depthwise_kernel, pointwise_kernel, strides=1, padding="valid", data_format=None,
                   dilation_rate=1):
    depth = depthwise_conv(inputs, depthwise_kernel, strides, padding, data_format, dilation_rate)
    return conv(depth, pointwise_kernel, 1, "valid", data_format)


def conv_transpose(inputs, kernel, strides=1, padding="valid", output_padding=None, data_format=None,
                   dilation_rate=1):
    fn = getattr(_ops, "conv_transpose", None)
    if fn is None:
        return clnet_op("conv_transpose2d")(inputs, kernel)
    return fn(inputs, kernel, strides, padding, output_padding, data_format, dilation_rate)


# --- attention --------------------------------------------------------------------------------------
def dot_product_attention(query, key, value, bias=None, mask=None, scale=None, is_causal=False, flash_attention=None,
                          attn_logits_soft_cap=None):
    """softmax(q k^T * scale + bias, masked) v over inputs shaped (batch, length, heads, depth), as Keras."""
    q, k, v = _float(query), _float(key), _float(value)
    depth = q.shape[-1]
    scale = 1.0 / math.sqrt(depth) if scale is None else float(scale)
    qh, kh, vh = (t.permute(0, 2, 1, 3) for t in (q, k, v))  # (batch, heads, length, depth)
    logits = clnet.matmul(qh, kh.transpose(-1, -2)) * scale
    if attn_logits_soft_cap is not None:
        logits = clnet.tanh(logits * (1.0 / attn_logits_soft_cap)) * attn_logits_soft_cap
    if bias is not None:
        logits = logits + as_tensor(bias)
    allowed = None
    if mask is not None:
        allowed = as_tensor(mask)
        allowed = allowed if allowed.dtype == _dt.bool_ else allowed != 0
    if is_causal:
        lq, lk = logits.shape[-2], logits.shape[-1]
        causal = clnet.tensor(np.tril(np.ones((lq, lk), dtype=bool)), device=logits.device)
        allowed = causal if allowed is None else clnet.logical_and(allowed, causal)
    if allowed is not None:
        logits = clnet.where(allowed, logits, -1e9)
    weights = F.softmax(logits, dim=-1)
    return clnet.matmul(weights, vh).permute(0, 2, 1, 3)

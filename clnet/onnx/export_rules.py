"""ONNX export's table: clnet op row -> ONNX nodes.

A rule takes the emitter (clnet/onnx/export.py: tensor operands by name, constants, shapes, the builder)
and the row's arguments bound to the op's parameter names (defaults filled in), and returns the ONNX value
name of each tensor the row returned (one name, or a tuple in the result's structure). Integers that
depend on a dynamic axis arrive as `SymInt`s: rules pass shape-like values through `e.shape_input`, which
computes them in the graph; a rule that needs a plain int where a dynamic one arrived says so.
"""
from __future__ import annotations

import numpy as np

from .ops.common import UnsupportedOperatorError

INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1


# --- helpers -----------------------------------------------------------------------------------------------------
def _dims(shape_args) -> list:
    """reshape(x, 2, 3) and reshape(x, (2, 3)) alike."""
    if len(shape_args) == 1 and isinstance(shape_args[0], (tuple, list)):
        return list(shape_args[0])
    return list(shape_args)


def _axis(d, ndim):
    d = int(d)
    return d + ndim if d < 0 else d


def _axes(dim, ndim):
    if dim is None:
        return list(range(ndim))
    dims = dim if isinstance(dim, (tuple, list)) else (dim,)
    return sorted(_axis(d, ndim) for d in dims)


def _pair(v):
    return [int(v), int(v)] if isinstance(v, (int, np.integer)) else [int(x) for x in v]


# --- elementwise ---------------------------------------------------------------------------------------------------
def _binary(op_type, result_bool=False):
    def rule(e, a, out):
        dt = e.common_dtype(a["a"], a["b"])
        y = e.b.node(op_type, [e.x(a["a"], dt), e.x(a["b"], dt)])
        return y if result_bool or e.dtype_of(out) == dt else e.cast(y, e.dtype_of(out))
    return rule


def _not_equal(e, a, out):
    dt = e.common_dtype(a["a"], a["b"])
    return e.b.node("Not", [e.b.node("Equal", [e.x(a["a"], dt), e.x(a["b"], dt)])])


def _logical(op_type):
    def rule(e, a, out):
        return e.b.node(op_type, [e.x(a["a"], np.bool_), e.x(a["b"], np.bool_)])
    return rule


def _div(e, a, out):
    dt = e.dtype_of(out)  # clnet's div is true division: integers become floats first
    return e.b.node("Div", [e.x(a["a"], dt), e.x(a["b"], dt)])


def _floor_divide(e, a, out):
    dt = e.dtype_of(out)
    x, y = e.x(a["a"], dt), e.x(a["b"], dt)
    if np.dtype(dt).kind == "f":
        return e.b.node("Floor", [e.b.node("Div", [x, y])])
    q = e.b.node("Div", [x, y])  # truncates toward zero: step down where the remainder's sign differs from y's
    r = e.b.node("Mod", [x, y], fmod=1)
    zero = e.b.const(np.zeros((), dt))
    adjust = e.b.node("And", [e.b.node("Not", [e.b.node("Equal", [r, zero])]),
                              e.b.node("Xor", [e.b.node("Less", [r, zero]), e.b.node("Less", [y, zero])])])
    return e.b.node("Sub", [q, e.cast(adjust, dt)])


def _remainder(e, a, out):
    dt = e.dtype_of(out)
    x, y = e.x(a["a"], dt), e.x(a["b"], dt)
    if np.dtype(dt).kind != "f":
        return e.b.node("Mod", [x, y])  # ONNX's integer Mod takes the divisor's sign, as Python's %
    return e.b.node("Sub", [x, e.b.node("Mul", [e.b.node("Floor", [e.b.node("Div", [x, y])]), y])])


def _pow(e, a, out):
    dt = e.dtype_of(out)
    return e.b.node("Pow", [e.x(a["a"], dt), e.x(a["b"], dt)])


def _unary(op_type):
    def rule(e, a, out):
        return e.b.node(op_type, [e.x(a["x"])])
    return rule


def _composed(fn):
    def rule(e, a, out):
        x = e.x(a["x"])
        return fn(e, x, e.dtype_of(a["x"]))
    return rule


_UNARY_COMPOSED = {
    "rsqrt": lambda e, x, dt: e.b.node("Reciprocal", [e.b.node("Sqrt", [x])]),
    "square": lambda e, x, dt: e.b.node("Mul", [x, x]),
    "log1p": lambda e, x, dt: e.b.node("Log", [e.b.node("Add", [x, e.b.const(np.ones((), dt))])]),
    "expm1": lambda e, x, dt: e.b.node("Sub", [e.b.node("Exp", [x]), e.b.const(np.ones((), dt))]),
}


def _logical_not(e, a, out):
    return e.b.node("Not", [e.x(a["x"], np.bool_)])


def _clamp(e, a, out):
    dt = e.dtype_of(out)
    y = e.x(a["x"], dt)
    lo, hi = a["min"], a["max"]
    if e.is_tensor(lo) or e.is_tensor(hi):
        if lo is not None:
            y = e.b.node("Max", [y, e.x(lo, dt)])
        if hi is not None:
            y = e.b.node("Min", [y, e.x(hi, dt)])
        return y
    return e.b.node("Clip", [y, e.x(lo, dt) if lo is not None else "", e.x(hi, dt) if hi is not None else ""])


def _where(e, a, out):
    dt = e.dtype_of(out)
    return e.b.node("Where", [e.x(a["cond"], np.bool_), e.x(a["a"], dt), e.x(a["b"], dt)])


def _cast(e, a, out):
    return e.cast(e.x(a["x"]), np.dtype(a["dtype"]))


def _identity(e, a, out):
    return e.b.node("Identity", [e.x(a["x"])])


# --- linear algebra ----------------------------------------------------------------------------------------------------
def _matmul(e, a, out):
    return e.b.node("MatMul", [e.x(a["a"]), e.x(a["b"])])


def _activation(e, y, name):
    if name is None:
        return y
    if name == "relu":
        return e.b.node("Relu", [y])
    raise UnsupportedOperatorError(f"clnet.onnx.export: the fused activation {name!r} has no ONNX rule")


def _linear(e, a, out):
    x, w = a["x"], a["weight"]
    xs = e.shape_of(x)
    bias = e.x(a["bias"]) if a["bias"] is not None else None
    if len(xs) == 2:  # nn.Linear as Gemm, as PyTorch exports it
        y = e.b.node("Gemm", [e.x(x), e.x(w)] + ([bias] if bias else []), transB=1)
    else:
        y = e.b.node("MatMul", [e.x(x), e.b.node("Transpose", [e.x(w)], perm=[1, 0])])
        if bias:
            y = e.b.node("Add", [y, bias])
    return _activation(e, y, a["activation"])


def _last_two_swapped(e, name, ndim):
    perm = list(range(ndim))
    perm[-2:] = perm[-2:][::-1]
    return e.b.node("Transpose", [name], perm=perm)


def _matmul_ex(e, a, out):
    if a.get("out") is not None:
        raise UnsupportedOperatorError("clnet.onnx.export: matmul_ex writing into an existing tensor (out=)")
    x, w = e.x(a["a"]), e.x(a["b"])
    if a["trans_a"]:
        x = _last_two_swapped(e, x, len(e.shape_of(a["a"])))
    if a["trans_b"]:
        w = _last_two_swapped(e, w, len(e.shape_of(a["b"])))
    y = e.b.node("MatMul", [x, w])
    dt = e.dtype_of(out)
    if float(a["alpha"]) != 1.0:
        y = e.b.node("Mul", [y, e.b.const(np.asarray(a["alpha"], dt))])
    if a["bias"] is not None:
        y = e.b.node("Add", [y, e.x(a["bias"])])
    return _activation(e, y, a["activation"])


# --- convolution and pooling -------------------------------------------------------------------------------------------
def _conv_pads(padding, weight_shape, dilation):
    if isinstance(padding, str):
        if padding == "valid":
            return [0, 0, 0, 0]
        if padding == "same":
            total = [d * (k - 1) for d, k in zip(dilation, weight_shape[2:])]
            return [total[0] // 2, total[1] // 2, total[0] - total[0] // 2, total[1] - total[1] // 2]
        raise UnsupportedOperatorError(f"clnet.onnx.export: conv2d padding={padding!r}")
    p = _pair(padding)
    return p + p


def _conv2d(e, a, out):
    ws = e.shape_of(a["weight"])
    dilation = _pair(a["dilation"])
    inputs = [e.x(a["x"]), e.x(a["weight"])] + ([e.x(a["bias"])] if a["bias"] is not None else [])
    return e.b.node("Conv", inputs, kernel_shape=list(ws[2:]), strides=_pair(a["stride"]), dilations=dilation,
                    pads=_conv_pads(a["padding"], ws, dilation), group=1)


def _conv_transpose(e, a, out):
    x_shape, ws = e.shape_of(a["input"]), e.shape_of(a["weight"])
    n = len(x_shape) - 2

    def per_axis(v):
        return [int(v)] * n if isinstance(v, (int, np.integer)) else [int(i) for i in v]
    pads = per_axis(a["padding"])
    inputs = [e.x(a["input"]), e.x(a["weight"])] + ([e.x(a["bias"])] if a["bias"] is not None else [])
    return e.b.node("ConvTranspose", inputs, kernel_shape=list(ws[2:]), strides=per_axis(a["stride"]),
                    pads=pads + pads, output_padding=per_axis(a["output_padding"]), group=int(a["groups"]),
                    dilations=per_axis(a["dilation"]))


def _batch_norm(e, a, out):
    """clnet.ops.batchnorm.batch_norm: BatchNormalization with the running statistics (eval), the batch's
    statistics spelled out (training: what the graph computed), then Relu when fused."""
    x = a["x"]
    shape, dt = e.shape_of(x), e.dtype_of(x)
    C = shape[1]
    scale = e.x(a["weight"]) if a["weight"] is not None else e.b.const(np.ones(C, dt))
    bias = e.x(a["bias"]) if a["bias"] is not None else e.b.const(np.zeros(C, dt))
    if not a["training"]:
        y = e.b.node("BatchNormalization", [e.x(x), scale, bias, e.x(a["running_mean"]), e.x(a["running_var"])],
                     epsilon=float(a["eps"]))
    else:
        axes = [0] + list(range(2, len(shape)))
        cshape = e.b.const(np.asarray([1, C] + [1] * (len(shape) - 2), np.int64))
        xv = e.x(x)
        centred = e.b.node("Sub", [xv, e.reduce("ReduceMean", xv, axes, True)])
        var = e.reduce("ReduceMean", e.b.node("Mul", [centred, centred]), axes, True)
        inv = e.b.node("Reciprocal", [e.b.node("Sqrt", [e.b.node("Add", [var, e.b.const(np.asarray(a["eps"], dt))])])])
        y = e.b.node("Add", [e.b.node("Mul", [e.b.node("Mul", [centred, inv]), e.b.node("Reshape", [scale, cshape])]),
                             e.b.node("Reshape", [bias, cshape])])
    return e.b.node("Relu", [y]) if a.get("relu") else y


def _pool(op_type):
    def rule(e, a, out):
        if a.get("return_indices"):
            raise UnsupportedOperatorError("clnet.onnx.export: max_pool2d with return_indices=True")
        k = _pair(a["kernel_size"])
        s = k if a["stride"] is None or (isinstance(a["stride"], (tuple, list)) and not a["stride"]) \
            else _pair(a["stride"])
        p = _pair(a["padding"])
        extra = {"count_include_pad": 1} if op_type == "AveragePool" else {}
        return e.b.node(op_type, [e.x(a["x"])], kernel_shape=k, strides=s, pads=p + p, **extra)
    return rule


# --- softmax -------------------------------------------------------------------------------------------------------
def _softmax(op_type):
    def rule(e, a, out):
        x = e.x(a["x"], a["dtype"]) if a["dtype"] is not None else e.x(a["x"])
        nd = len(e.shape_of(a["x"]))
        dim = a["dim"] if a["dim"] is not None else (0 if nd in (0, 1, 3) else 1)  # PyTorch's legacy default
        return e.b.node(op_type, [x], axis=_axis(dim, nd))
    return rule


# --- normalisation ------------------------------------------------------------------------------------------------
def _layer_norm(e, a, out):
    """LayerNormalization (opset 17 on) over the trailing normalized_shape; before 17 as reductions."""
    shape = e.shape_of(a["input"])
    normalized = list(a["normalized_shape"]) if isinstance(a["normalized_shape"], (tuple, list)) \
        else [a["normalized_shape"]]
    dt = e.dtype_of(a["input"])
    axis = len(shape) - len(normalized)
    x = e.x(a["input"])
    scale = e.x(a["weight"]) if a["weight"] is not None else e.b.const(np.ones([int(d) for d in normalized], dt))
    if e.b.opset >= 17:
        inputs = [x, scale] + ([e.x(a["bias"])] if a["bias"] is not None else [])
        return e.b.node("LayerNormalization", inputs, axis=axis, epsilon=float(a["eps"]))
    axes = list(range(axis, len(shape)))
    centred = e.b.node("Sub", [x, e.reduce("ReduceMean", x, axes, True)])
    var = e.reduce("ReduceMean", e.b.node("Mul", [centred, centred]), axes, True)
    y = e.b.node("Div", [centred, e.b.node("Sqrt", [e.b.node("Add", [var, e.b.const(np.asarray(a["eps"], dt))])])])
    y = e.b.node("Mul", [y, scale])
    return e.b.node("Add", [y, e.x(a["bias"])]) if a["bias"] is not None else y


def _channel_affine(e, y, weight, bias, ndim):
    """y * weight + bias with per-channel (dim 1) weight and bias."""
    shape = [1, -1] + [1] * (ndim - 2)
    if weight is not None:
        y = e.b.node("Mul", [y, e.b.node("Reshape", [e.x(weight), e.b.ints(shape)])])
    if bias is not None:
        y = e.b.node("Add", [y, e.b.node("Reshape", [e.x(bias), e.b.ints(shape)])])
    return y


def _group_norm(e, a, out):
    """GroupNormalization (opset 21, per-channel scale); before 21 as PyTorch exports it: InstanceNormalization
    over (N, G, -1), reshaped back, then the per-channel affine."""
    shape = e.shape_of(a["input"])
    dt = e.dtype_of(a["input"])
    groups = int(a["num_groups"])
    channels = int(shape[1])
    x = e.x(a["input"])
    if e.b.opset >= 21:
        scale = e.x(a["weight"]) if a["weight"] is not None else e.b.const(np.ones(channels, dt))
        bias = e.x(a["bias"]) if a["bias"] is not None else e.b.const(np.zeros(channels, dt))
        return e.b.node("GroupNormalization", [x, scale, bias], num_groups=groups, epsilon=float(a["eps"]))
    grouped = e.b.node("Reshape", [x, e.b.ints([0, groups, -1])])
    y = e.b.node("InstanceNormalization", [grouped, e.b.const(np.ones(groups, dt)), e.b.const(np.zeros(groups, dt))],
                 epsilon=float(a["eps"]))
    y = e.b.node("Reshape", [y, e.b.node("Shape", [x])])
    return _channel_affine(e, y, a["weight"], a["bias"], len(shape))


def _instance_norm(e, a, out):
    if not a["use_input_stats"]:
        raise UnsupportedOperatorError("clnet.onnx.export: instance_norm with running statistics "
                                       "(track_running_stats=True in eval mode)")
    shape = e.shape_of(a["input"])
    dt = e.dtype_of(a["input"])
    channels = int(shape[1])
    scale = e.x(a["weight"]) if a["weight"] is not None else e.b.const(np.ones(channels, dt))
    bias = e.x(a["bias"]) if a["bias"] is not None else e.b.const(np.zeros(channels, dt))
    return e.b.node("InstanceNormalization", [e.x(a["input"]), scale, bias], epsilon=float(a["eps"]))


# --- reductions ----------------------------------------------------------------------------------------------------
def _dim_keep(a):
    dim = a["dim"] if a.get("dim") is not None else a.get("axis")
    keep = a["keepdim"] if a.get("keepdims") is None else a["keepdims"]
    return dim, bool(keep)


def _reduce(op_type):
    def rule(e, a, out):
        dim, keep = _dim_keep(a)
        x = e.x(a["x"], a["dtype"]) if a.get("dtype") is not None else e.x(a["x"])
        return e.reduce(op_type, x, _axes(dim, len(e.shape_of(a["x"]))), keep)
    return rule


def _max_min(reduce_op, arg_op):
    def rule(e, a, out):
        dim, keep = _dim_keep(a)
        nd = len(e.shape_of(a["x"]))
        x = e.x(a["x"])
        if dim is None:
            return e.reduce(reduce_op, x, list(range(nd)), False)
        d = _axis(dim, nd)
        values = e.reduce(reduce_op, x, [d], keep)
        return values, e.b.node(arg_op, [x], axis=d, keepdims=int(keep))
    return rule


def _arg(op_type):
    def rule(e, a, out):
        dim, keep = _dim_keep(a)
        x = e.x(a["x"])
        if dim is None:
            flat = e.b.node("Reshape", [x, e.b.ints([-1])])
            return e.b.node(op_type, [flat], axis=0, keepdims=0)
        return e.b.node(op_type, [x], axis=_axis(dim, len(e.shape_of(a["x"]))), keepdims=int(keep))
    return rule


def _var_std(take_root):
    def rule(e, a, out):
        dim, keep = _dim_keep(a)
        shape = e.shape_of(a["x"])
        axes = _axes(dim, len(shape))
        correction = a["correction"] if a.get("correction") is not None else (1 if a["unbiased"] else 0)
        x = e.x(a["x"])
        dt = e.dtype_of(a["x"])
        centred = e.b.node("Sub", [x, e.reduce("ReduceMean", x, axes, True)])
        total = e.reduce("ReduceSum", e.b.node("Mul", [centred, centred]), axes, keep)
        divisor = e.b.node("Sub", [e.count(a["x"], axes, dt), e.b.const(np.asarray(correction, dt))])
        y = e.b.node("Div", [total, e.b.node("Max", [divisor, e.b.const(np.zeros((), dt))])])
        return e.b.node("Sqrt", [y]) if take_root else y
    return rule


def _any_all(reduce_op):
    def rule(e, a, out):
        dim, keep = _dim_keep(a)
        x = e.cast(e.x(a["x"], np.bool_), np.int32)
        return e.cast(e.reduce(reduce_op, x, _axes(dim, len(e.shape_of(a["x"]))), keep), np.bool_)
    return rule


# --- shapes ----------------------------------------------------------------------------------------------------------
def _reshape(e, a, out):
    return e.b.node("Reshape", [e.x(a["x"]), e.shape_input(_dims(a["shape"]))])


def _flatten(e, a, out):
    nd = len(e.shape_of(a["x"]))
    if nd == 0:
        return e.b.node("Reshape", [e.x(a["x"]), e.b.ints([1])])
    s, t = _axis(a["start_dim"], nd), _axis(a["end_dim"], nd)
    target = [0] * s + [-1] + [0] * (nd - 1 - t)  # 0 copies the input's size (dynamic axes stay dynamic)
    return e.b.node("Reshape", [e.x(a["x"]), e.b.ints(target)])


def _unflatten(e, a, out):
    shape = list(e.shape_of(a["x"]))
    d = _axis(a["dim"], len(shape))
    target = [0] * d + list(a["sizes"]) + [0] * (len(shape) - d - 1)
    return e.b.node("Reshape", [e.x(a["x"]), e.shape_input(target)])


def _permute(e, a, out):
    nd = len(e.shape_of(a["x"]))
    return e.b.node("Transpose", [e.x(a["x"])], perm=[_axis(d, nd) for d in _dims(a["dims"])])


def _transpose(e, a, out):
    nd = len(e.shape_of(a["x"]))
    perm = list(range(nd))
    i, j = _axis(a["dim0"], nd), _axis(a["dim1"], nd)
    perm[i], perm[j] = perm[j], perm[i]
    return e.b.node("Transpose", [e.x(a["x"])], perm=perm)


def _t(e, a, out):
    nd = len(e.shape_of(a["x"]))
    return e.b.node("Transpose", [e.x(a["x"])], perm=[1, 0]) if nd == 2 else e.b.node("Identity", [e.x(a["x"])])


def _movedim(e, a, out):
    nd = len(e.shape_of(a["x"]))
    src = [_axis(d, nd) for d in (a["source"] if isinstance(a["source"], (tuple, list)) else [a["source"]])]
    dst = [_axis(d, nd) for d in (a["destination"] if isinstance(a["destination"], (tuple, list))
                                  else [a["destination"]])]
    order = [None] * nd
    for s, d in zip(src, dst):
        order[d] = s
    rest = iter(i for i in range(nd) if i not in src)
    return e.b.node("Transpose", [e.x(a["x"])], perm=[o if o is not None else next(rest) for o in order])


def _squeeze(e, a, out):
    shape = e.shape_of(a["x"])
    axes = [i for i in _axes(a["dim"], len(shape)) if shape[i] == 1] if a["dim"] is not None \
        else [i for i, s in enumerate(shape) if s == 1]
    return e.b.node("Squeeze", [e.x(a["x"]), e.b.ints(axes)]) if axes else e.b.node("Identity", [e.x(a["x"])])


def _unsqueeze(e, a, out):
    nd = len(e.shape_of(a["x"])) + 1
    return e.b.node("Unsqueeze", [e.x(a["x"]), e.b.ints([_axis(a["dim"], nd)])])


def _expand(e, a, out):
    dims = _dims(a["shape"])
    shape = e.shape_of(a["x"])
    pad = len(dims) - len(shape)
    target = [1 if (int(d) == -1) else d for d in dims[:pad]] + \
             [1 if int(d) == -1 else d for d in dims[pad:]]  # -1 keeps a size: 1 broadcasts to it in ONNX
    return e.b.node("Expand", [e.x(a["x"]), e.shape_input(target)])


def _concat(e, a, out):
    tensors = list(a["tensors"])
    nd = len(e.shape_of(tensors[0]))
    dt = e.dtype_of(out)
    return e.b.node("Concat", [e.x(t, dt) for t in tensors], axis=_axis(a["dim"], nd))


def _stack(e, a, out):
    tensors = list(a["tensors"])
    d = _axis(a["dim"], len(e.shape_of(tensors[0])) + 1)
    dt = e.dtype_of(out)
    parts = [e.b.node("Unsqueeze", [e.x(t, dt), e.b.ints([d])]) for t in tensors]
    return e.b.node("Concat", parts, axis=d)


def _split_like(e, x, d, sizes):
    names = e.b.node("Split", [e.x(x), e.shape_input(sizes)], n_outputs=len(sizes), axis=d)
    return tuple(names) if isinstance(names, list) else (names,)


def _split(e, a, out):
    shape = e.shape_of(a["x"])
    d = _axis(a["dim"], len(shape))
    return _split_like(e, a["x"], d, [e.shape_of(r)[d] for r in out])


def _chunk(e, a, out):
    shape = e.shape_of(a["x"])
    d = _axis(a["dim"], len(shape))
    return _split_like(e, a["x"], d, [e.shape_of(r)[d] for r in out])


def _unbind(e, a, out):
    shape = e.shape_of(a["x"])
    d = _axis(a["dim"], len(shape))
    parts = _split_like(e, a["x"], d, [1] * shape[d])
    return tuple(e.b.node("Squeeze", [p, e.b.ints([d])]) for p in parts)


def _narrow(e, a, out):
    d = _axis(a["dim"], len(e.shape_of(a["x"])))
    start = a["start"]
    return e.b.node("Slice", [e.x(a["x"]), e.shape_input([start]), e.shape_input([start + a["length"]]),
                              e.b.ints([d])])


def _flip(e, a, out):
    nd = len(e.shape_of(a["x"]))
    dims = a["dims"] if isinstance(a["dims"], (tuple, list)) else [a["dims"]]
    axes = [_axis(d, nd) for d in dims]
    return e.b.node("Slice", [e.x(a["x"]), e.b.ints([-1] * len(axes)), e.b.ints([INT64_MIN] * len(axes)),
                              e.b.ints(axes), e.b.ints([-1] * len(axes))])


def _repeat(e, a, out):
    sizes = _dims(a["sizes"])
    x = e.x(a["x"])
    nd = len(e.shape_of(a["x"]))
    if len(sizes) > nd:
        x = e.b.node("Reshape", [x, e.b.ints([1] * (len(sizes) - nd) + [0] * nd)]) if nd else \
            e.b.node("Reshape", [x, e.b.ints([1] * len(sizes))])
    return e.b.node("Tile", [x, e.shape_input(sizes)])


def _pad(e, a, out):
    if a["mode"] != "constant":
        raise UnsupportedOperatorError(f"clnet.onnx.export: pad mode {a['mode']!r}")
    nd = len(e.shape_of(a["x"]))
    amounts = [int(p) for p in a["pad"]]
    before, after = [0] * nd, [0] * nd
    for i in range(len(amounts) // 2):
        d = nd - 1 - i
        before[d], after[d] = amounts[2 * i], amounts[2 * i + 1]
    dt = e.dtype_of(a["x"])
    return e.b.node("Pad", [e.x(a["x"]), e.b.ints(before + after), e.b.const(np.asarray(a["value"], dt))],
                    mode="constant")


def _getitem(e, a, out):
    """Basic indexing: ints, slices (any step), None and Ellipsis -> Slice, Squeeze, Unsqueeze."""
    key = a["key"] if isinstance(a["key"], tuple) else (a["key"],)
    shape = list(e.shape_of(a["x"]))
    if any(e.is_tensor(k) or isinstance(k, (list, np.ndarray)) or isinstance(k, bool) for k in key):
        return _advanced_getitem(e, a, key, shape)
    n_index = sum(1 for k in key if k is not None and k is not Ellipsis)
    if Ellipsis in key:
        i = key.index(Ellipsis)
        key = key[:i] + (slice(None),) * (len(shape) - n_index) + key[i + 1:]
    key = key + (slice(None),) * (len(shape) - sum(1 for k in key if k is not None))
    starts, ends, axes, steps, squeeze, unsqueeze = [], [], [], [], [], []
    d = 0
    out_pos = 0
    for k in key:
        if k is None:
            unsqueeze.append(out_pos)
            out_pos += 1
            continue
        if isinstance(k, slice):
            if k != slice(None):
                step = 1 if k.step is None else k.step
                lo = k.start if k.start is not None else (0 if step > 0 else -1)
                hi = k.stop if k.stop is not None else (INT64_MAX if step > 0 else INT64_MIN)
                starts.append(lo)
                ends.append(hi)
                axes.append(d)
                steps.append(step)
            out_pos += 1
        else:
            i = int(k)
            starts.append(i)
            ends.append(i + 1 if i != -1 else INT64_MAX)
            axes.append(d)
            steps.append(1)
            squeeze.append(d)
        d += 1
    y = e.x(a["x"])
    if axes:
        y = e.b.node("Slice", [y, e.shape_input(starts), e.shape_input(ends), e.b.ints(axes), e.b.ints(steps)])
    if squeeze:
        y = e.b.node("Squeeze", [y, e.b.ints(squeeze)])
    if unsqueeze:
        y = e.b.node("Unsqueeze", [y, e.b.ints(unsqueeze)])
    return y if axes or squeeze or unsqueeze else e.b.node("Identity", [y])


def _advanced_getitem(e, a, key, shape):
    """One index tensor (or list) along one axis, the rest full slices: a Gather."""
    picks = [i for i, k in enumerate(key) if not (isinstance(k, slice) and k == slice(None))]
    if len(picks) != 1 or Ellipsis in key or None in key:
        raise UnsupportedOperatorError("clnet.onnx.export: indexing with more than one index tensor or with masks")
    d = picks[0]
    k = key[d]
    if e.is_tensor(k) and np.dtype(e.dtype_of(k)) == np.bool_:
        raise UnsupportedOperatorError("clnet.onnx.export: indexing with a boolean mask (the result's size depends "
                                       "on the data)")
    idx = e.x(k, np.int64) if e.is_tensor(k) else e.b.const(np.asarray(k, np.int64))
    return e.b.node("Gather", [e.x(a["x"]), idx], axis=d)


def _index_select(e, a, out):
    d = _axis(a["dim"], len(e.shape_of(a["x"])))
    return e.b.node("Gather", [e.x(a["x"]), e.x(a["index"], np.int64)], axis=d)


def _gather(e, a, out):
    d = _axis(a["dim"], len(e.shape_of(a["x"])))
    return e.b.node("GatherElements", [e.x(a["x"]), e.x(a["index"], np.int64)], axis=d)


def _take(e, a, out):
    flat = e.b.node("Reshape", [e.x(a["x"]), e.b.ints([-1])])
    return e.b.node("Gather", [flat, e.x(a["index"], np.int64)], axis=0)


def _masked_fill(e, a, out):
    dt = e.dtype_of(out)
    return e.b.node("Where", [e.x(a["mask"], np.bool_), e.x(a["value"], dt), e.x(a["x"], dt)])


def _scatter_add(e, a, out):
    d = _axis(a["dim"], len(e.shape_of(a["x"])))
    if e.b.opset < 16:
        raise UnsupportedOperatorError("clnet.onnx.export: scatter_add needs opset_version 16 or higher")
    return e.b.node("ScatterElements", [e.x(a["x"]), e.x(a["index"], np.int64), e.x(a["src"])], axis=d,
                    reduction="add")


# --- making tensors ------------------------------------------------------------------------------------------------
def _full(e, a, out):
    shape = list(a["shape"]) if isinstance(a["shape"], (tuple, list)) else [a["shape"]]
    value = e.b.tensor_attr(np.full((1,), a["fill_value"], e.dtype_of(out)))
    return e.b.node("ConstantOfShape", [e.shape_input(shape)], value=value)


def _arange(e, a, out):
    start, end, step = a["start"], a["end"], a["step"]
    if end is None:
        start, end = 0, start
    dt = e.dtype_of(out)
    return e.b.node("Range", [e.scalar_input(start, dt), e.scalar_input(end, dt), e.scalar_input(step, dt)])


def _eye(e, a, out):
    return e.b.const(np.eye(int(a["n"]), None if a["m"] is None else int(a["m"]), dtype=e.dtype_of(out)))


def _linspace(e, a, out):
    return e.b.const(np.linspace(float(a["start"]), float(a["end"]), int(a["steps"])).astype(e.dtype_of(out)))


def _random(op_type):
    def rule(e, a, out):
        dt = e.dtype_of(out)
        return e.b.node(op_type, [], shape=[int(s) for s in e.shape_of(out)], dtype=e.elem(dt))
    return rule


# --- recurrent layers -----------------------------------------------------------------------------------------------
_RNN = {"lstm": ("LSTM", 4, [0, 3, 1, 2], None), "gru": ("GRU", 3, [1, 0, 2], None),
        "rnn_tanh": ("RNN", 1, [0], ["Tanh"]), "rnn_relu": ("RNN", 1, [0], ["Relu"])}


def _gate_blocks(e, v, gates, order):
    """A PyTorch-ordered (G*H, ...) weight or bias with its gate blocks put in ONNX's order, as (1, G*H, ...):
    a new initializer when the weight is known at export time, else Split + Concat in the graph."""
    if e.is_tensor(v) and v.kind in ("param", "buffer", "const"):
        arr = e.state[v.key] if v.kind != "const" else e.g.constants[v.key]
        blocks = np.split(np.asarray(arr), gates, axis=0)
        return e.b.const(np.concatenate([blocks[k] for k in order], axis=0)[None])
    x = e.x(v)
    if gates > 1:
        parts = e.b.node("Split", [x, e.b.ints([e.shape_of(v)[0] // gates] * gates)], n_outputs=gates, axis=0)
        x = e.b.node("Concat", [parts[k] for k in order], axis=0)
    return e.b.node("Unsqueeze", [x, e.b.ints([0])])


def _rnn_layer(e, a, out):
    """clnet's fused recurrent layer as ONNX's LSTM / GRU (linear_before_reset=1, PyTorch's form) / RNN."""
    op_type, gates, order, activations = _RNN[a["mode"]]
    dt = e.dtype_of(a["x"])
    hidden = e.shape_of(a["w_hh"])[1]
    w = _gate_blocks(e, a["w_ih"], gates, order)
    r = _gate_blocks(e, a["w_hh"], gates, order)
    biases = []
    for b in (a["b_ih"], a["b_hh"]):
        biases.append(_gate_blocks(e, b, gates, order) if b is not None else e.b.const(np.zeros((1, gates * hidden), dt)))
    bias = e.b.node("Concat", biases, axis=1) if a["b_ih"] is not None or a["b_hh"] is not None else ""
    hx = a["hx"]
    h0, c0 = (hx[0], hx[1]) if a["mode"] == "lstm" else (hx, None)
    inputs = [e.x(a["x"]), w, r, bias, "", e.b.node("Unsqueeze", [e.x(h0), e.b.ints([0])])]
    if c0 is not None:
        inputs.append(e.b.node("Unsqueeze", [e.x(c0), e.b.ints([0])]))
    extra = {"linear_before_reset": 1} if op_type == "GRU" else {}
    if activations:
        extra["activations"] = activations
    outs = e.b.node(op_type, inputs, n_outputs=3 if c0 is not None else 2, hidden_size=int(hidden),
                    direction="reverse" if a["reverse"] else "forward", **extra)
    y = e.b.node("Squeeze", [outs[0], e.b.ints([1])])
    states = [e.b.node("Squeeze", [s, e.b.ints([0])]) for s in outs[1:]]
    return (y, *states)


# --- scans, sorting, triangles, einsum ------------------------------------------------------------------------------
def _cumsum(e, a, out):
    d = _axis(a["dim"], len(e.shape_of(a["input"])))
    x = e.x(a["input"], a["dtype"]) if a["dtype"] is not None else e.x(a["input"], e.dtype_of(out))
    return e.b.node("CumSum", [x, e.b.const(np.asarray(d, np.int64))])


def _topk(e, a, out):
    d = _axis(a["dim"], len(e.shape_of(a["input"])))
    values, indices = e.b.node("TopK", [e.x(a["input"]), e.shape_input([a["k"]])], n_outputs=2, axis=d,
                               largest=int(bool(a["largest"])), sorted=1)
    return values, indices


def _sort(e, a, out):
    shape = e.shape_of(a["input"])
    d = _axis(a["dim"], len(shape))
    values, indices = e.b.node("TopK", [e.x(a["input"]), e.shape_input([shape[d]])], n_outputs=2, axis=d,
                               largest=int(bool(a["descending"])), sorted=1)
    return values, indices


def _argsort(e, a, out):
    return _sort(e, a, out)[1]


def _trilu(upper):
    def rule(e, a, out):
        if e.b.opset < 14:
            raise UnsupportedOperatorError("clnet.onnx.export: tril/triu need opset_version 14 or higher (Trilu)")
        return e.b.node("Trilu", [e.x(a["input"]), e.b.const(np.asarray(int(a["diagonal"]), np.int64))],
                        upper=int(upper))
    return rule


def _einsum(e, a, out):
    operands = a["operands"]
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = operands[0]
    return e.b.node("Einsum", [e.x(t) for t in operands], equation=str(a["equation"]).replace(" ", ""))


def _attention_scores(e, q, k, scale, mask, is_causal):
    """softmax(q k^T * scale + mask) over the last axis, the mask boolean (True: attend) or additive."""
    dt = e.dtype_of(q)
    qs, ks = e.shape_of(q), e.shape_of(k)
    scale = 1.0 / float(np.sqrt(int(qs[-1]))) if scale is None else float(scale)
    kt = _last_two_swapped(e, e.x(k), len(ks))
    scores = e.b.node("Mul", [e.b.node("MatMul", [e.x(q), kt]), e.b.const(np.asarray(scale, dt))])
    neg = e.b.const(np.asarray(-np.inf, dt))
    if is_causal:
        ones = e.b.node("ConstantOfShape", [e.shape_input([qs[-2], ks[-2]])],
                        value=e.b.tensor_attr(np.ones(1, np.bool_)))
        keep = e.b.node("Trilu", [ones, e.b.const(np.asarray(0, np.int64))], upper=0)
        scores = e.b.node("Where", [keep, scores, neg])
    if mask is not None:
        if np.dtype(e.dtype_of(mask)) == np.bool_:
            scores = e.b.node("Where", [e.x(mask), scores, neg])
        else:
            scores = e.b.node("Add", [scores, e.x(mask, dt)])
    weights = e.b.node("Softmax", [scores], axis=-1)
    # rows whose every key is masked out get zero weights (softmax of all -inf is NaN), as clnet's kernels do
    return e.b.node("Where", [e.b.node("IsNaN", [weights]), e.b.const(np.zeros((), dt)), weights])


def _sdpa(e, a, out):
    if a.get("enable_gqa") and e.shape_of(a["key"])[-3:-2] != e.shape_of(a["query"])[-3:-2]:
        raise UnsupportedOperatorError("clnet.onnx.export: scaled_dot_product_attention with enable_gqa and fewer "
                                       "key heads than query heads")
    w = _attention_scores(e, a["query"], a["key"], a["scale"], a["attn_mask"], a["is_causal"])
    return e.b.node("MatMul", [w, e.x(a["value"])])


def _attention_with_weights(e, a, out):
    w = _attention_scores(e, a["query"], a["key"], a["scale"], a["mask"], a["is_causal"])
    return e.b.node("MatMul", [w, e.x(a["value"])]), w


def _isfinite(e, a, out):
    x = e.x(a["x"])
    return e.b.node("Not", [e.b.node("Or", [e.b.node("IsInf", [x]), e.b.node("IsNaN", [x])])])


def _trunc(e, a, out):
    x = e.x(a["x"])
    return e.b.node("Mul", [e.b.node("Sign", [x]), e.b.node("Floor", [e.b.node("Abs", [x])])])


def _log_base(base):
    def rule(e, a, out):
        dt = e.dtype_of(a["x"])
        return e.b.node("Div", [e.b.node("Log", [e.x(a["x"])]), e.b.const(np.asarray(np.log(base), dt))])
    return rule


def _exp2(e, a, out):
    return e.b.node("Pow", [e.b.const(np.asarray(2, e.dtype_of(a["x"]))), e.x(a["x"])])


def _erfc(e, a, out):
    dt = e.dtype_of(a["x"])
    return e.b.node("Sub", [e.b.const(np.ones((), dt)), e.b.node("Erf", [e.x(a["x"])])])


def _fmod(e, a, out):
    dt = e.dtype_of(out)
    return e.b.node("Mod", [e.x(a["a"], dt), e.x(a["b"], dt)], fmod=1)


def _uniform_like_shape(e, shape):
    """U[0, 1) float32 values of `shape` (which may hold dynamic sizes)."""
    zeros = e.b.node("ConstantOfShape", [e.shape_input(shape)], value=e.b.tensor_attr(np.zeros(1, np.float32)))
    return e.b.node("RandomUniformLike", [zeros], dtype=e.elem(np.float32), low=0.0, high=1.0)


def _dropout_mask(e, a, out):
    """The inverted-dropout multiplier (a model exported in train mode): 1/(1-p) where U >= p, else 0."""
    dt = e.dtype_of(out)
    p = float(a["p"])
    shape = list(a["shape"]) if isinstance(a["shape"], (tuple, list)) else [a["shape"]]
    keep = e.cast(e.b.node("GreaterOrEqual", [_uniform_like_shape(e, shape), e.b.const(np.asarray(p, np.float32))]),
                  dt)
    return e.b.node("Mul", [keep, e.b.const(np.asarray(1.0 / (1.0 - p) if p < 1 else 0.0, dt))])


def _bernoulli_mask(e, a, out):
    shape = list(a["shape"]) if isinstance(a["shape"], (tuple, list)) else [a["shape"]]
    hit = e.b.node("Less", [_uniform_like_shape(e, shape), e.b.const(np.asarray(float(a["p"]), np.float32))])
    return e.cast(hit, e.dtype_of(out))


# --- losses ------------------------------------------------------------------------------------------------------
def _reduction(e, y, reduction):
    if reduction == "none":
        return y
    return e.reduce("ReduceMean" if reduction == "mean" else "ReduceSum", y, None, False)


def _mse_loss(e, a, out):
    d = e.b.node("Sub", [e.x(a["input"]), e.x(a["target"], e.dtype_of(a["input"]))])
    return _reduction(e, e.b.node("Mul", [d, d]), a["reduction"])


def _l1_loss(e, a, out):
    d = e.b.node("Sub", [e.x(a["input"]), e.x(a["target"], e.dtype_of(a["input"]))])
    return _reduction(e, e.b.node("Abs", [d]), a["reduction"])


def _class_loss(op_type):
    def rule(e, a, out):
        if e.is_tensor(a["target"]) and np.dtype(e.dtype_of(a["target"])).kind == "f":
            raise UnsupportedOperatorError(f"clnet.onnx.export: {op_type} with probability targets")
        if a.get("label_smoothing", 0.0):
            raise UnsupportedOperatorError("clnet.onnx.export: cross_entropy with label_smoothing")
        inputs = [e.x(a["input"]), e.x(a["target"], np.int64)] + ([e.x(a["weight"])] if a["weight"] is not None
                                                                  else [])
        return e.b.node(op_type, inputs, reduction=a["reduction"], ignore_index=int(a["ignore_index"]))
    return rule


RULES = {
    "add": _binary("Add"), "sub": _binary("Sub"), "mul": _binary("Mul"), "div": _div, "pow": _pow,
    "maximum": _binary("Max"), "minimum": _binary("Min"), "floor_divide": _floor_divide, "remainder": _remainder,
    "eq": _binary("Equal", True), "ne": _not_equal, "lt": _binary("Less", True), "le": _binary("LessOrEqual", True),
    "gt": _binary("Greater", True), "ge": _binary("GreaterOrEqual", True),
    "logical_and": _logical("And"), "logical_or": _logical("Or"), "logical_xor": _logical("Xor"),
    "logical_not": _logical_not,
    "abs": _unary("Abs"), "neg": _unary("Neg"), "sign": _unary("Sign"), "exp": _unary("Exp"), "log": _unary("Log"),
    "sqrt": _unary("Sqrt"), "sin": _unary("Sin"), "cos": _unary("Cos"), "tanh": _unary("Tanh"),
    "sigmoid": _unary("Sigmoid"), "relu": _unary("Relu"), "reciprocal": _unary("Reciprocal"),
    "floor": _unary("Floor"), "ceil": _unary("Ceil"), "round": _unary("Round"), "isnan": _unary("IsNaN"),
    "isinf": _unary("IsInf"),
    **{name: _composed(fn) for name, fn in _UNARY_COMPOSED.items()},
    "clamp": _clamp, "where": _where, "cast": _cast, "clone": _identity, "contiguous": _identity,
    "to_device": _identity,
    "matmul": _matmul, "mm": _matmul, "bmm": _matmul, "linear": _linear, "matmul_ex": _matmul_ex,
    "conv2d": _conv2d, "batch_norm": _batch_norm, "conv_transpose2d": _conv_transpose, "conv_transpose1d": _conv_transpose,
    "layer_norm": _layer_norm, "group_norm": _group_norm, "instance_norm": _instance_norm, "max_pool2d": _pool("MaxPool"), "avg_pool2d": _pool("AveragePool"),
    "softmax": _softmax("Softmax"), "log_softmax": _softmax("LogSoftmax"),
    "sum": _reduce("ReduceSum"), "mean": _reduce("ReduceMean"), "amax": _reduce("ReduceMax"),
    "amin": _reduce("ReduceMin"), "prod": _reduce("ReduceProd"), "logsumexp": _reduce("ReduceLogSumExp"),
    "max": _max_min("ReduceMax", "ArgMax"), "min": _max_min("ReduceMin", "ArgMin"),
    "argmax": _arg("ArgMax"), "argmin": _arg("ArgMin"), "var": _var_std(False), "std": _var_std(True),
    "any": _any_all("ReduceMax"), "all": _any_all("ReduceMin"),
    "reshape": _reshape, "view": _reshape, "flatten": _flatten, "unflatten": _unflatten, "permute": _permute,
    "transpose": _transpose, "t": _t, "movedim": _movedim, "squeeze": _squeeze, "unsqueeze": _unsqueeze,
    "expand": _expand, "concat": _concat, "stack": _stack, "split": _split, "chunk": _chunk, "unbind": _unbind,
    "narrow": _narrow, "flip": _flip, "repeat": _repeat, "pad": _pad, "getitem": _getitem,
    "basic_getitem": _getitem, "index_select": _index_select, "gather": _gather, "take": _take,
    "masked_fill": _masked_fill, "scatter_add": _scatter_add,
    "full": _full, "arange": _arange, "eye": _eye, "linspace": _linspace,
    "rand": _random("RandomUniform"), "randn": _random("RandomNormal"), "dropout_mask": _dropout_mask,
    "bernoulli_mask": _bernoulli_mask,
    "rnn_layer": _rnn_layer,
    "erf": _unary("Erf"), "erfc": _erfc, "tan": _unary("Tan"), "asin": _unary("Asin"), "acos": _unary("Acos"),
    "atan": _unary("Atan"), "sinh": _unary("Sinh"), "cosh": _unary("Cosh"), "asinh": _unary("Asinh"),
    "acosh": _unary("Acosh"), "atanh": _unary("Atanh"), "log2": _log_base(2), "log10": _log_base(10),
    "exp2": _exp2, "trunc": _trunc, "isfinite": _isfinite, "fmod": _fmod,
    "cumsum": _cumsum, "topk": _topk, "sort": _sort, "argsort": _argsort, "tril": _trilu(False),
    "triu": _trilu(True), "einsum": _einsum, "scaled_dot_product_attention": _sdpa,
    "attention_with_weights": _attention_with_weights,
    "mse_loss": _mse_loss, "l1_loss": _l1_loss, "cross_entropy": _class_loss("SoftmaxCrossEntropyLoss"),
    "nll_loss": _class_loss("NegativeLogLikelihoodLoss"),
}

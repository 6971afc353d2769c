"""clnet.onnx.load on files PyTorch's exporter wrote: outputs and gradients equal PyTorch's, a fine-tune
step lowers the loss; operator semantics PyTorch's files do not reach (older opsets, SAME padding, peepholes,
...) checked against onnxruntime on hand-made graphs; damaged, tampered or unsupported files raise clear
errors before anything runs."""
import io
import warnings

import numpy as np
import pytest

import clnet

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
import clnet.onnx  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

from conftest import assert_close  # noqa: E402
from onnx_torch_models import MODELS, build  # noqa: E402

_FILES = {}


def exported(tmp_path_factory, name, **kwargs):
    """The ONNX file PyTorch's (TorchScript) exporter writes for model `name` (written once per session)."""
    key = (name, repr(sorted(kwargs.items())))
    if key not in _FILES:
        model, args = build(name)
        path = tmp_path_factory.mktemp("onnx") / f"{name}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, args, str(path), dynamo=False, do_constant_folding=False, **kwargs)
        _FILES[key] = path
    return _FILES[key]


def as_tuple(v):
    return v if isinstance(v, tuple) else (v,)


def clnet_inputs(args, device):
    return [clnet.tensor(a.numpy(), device=device) for a in args]


@pytest.mark.parametrize("name", MODELS)
def test_outputs_equal_pytorch(device, tmp_path_factory, name):
    path = exported(tmp_path_factory, name)
    model, args = build(name)
    with torch.no_grad():
        expected = as_tuple(model(*args))
    imported = clnet.onnx.load(path, device=device)
    assert not imported.training
    got = as_tuple(imported(*clnet_inputs(args, device)))
    assert len(got) == len(expected)
    for i, (g, e) in enumerate(zip(got, expected)):
        assert_close(g, e.numpy(), rtol=1e-4, atol=1e-5, what=f"{name} output {i}")


@pytest.mark.parametrize("name", ["two_layer", "cnn", "recurrent"])
def test_gradients_equal_pytorch(device, tmp_path_factory, name):
    """Parameters keep PyTorch's names and get PyTorch's gradients (eval mode on both sides)."""
    model, args = build(name)
    imported = clnet.onnx.load(exported(tmp_path_factory, name), device=device)
    outs = as_tuple(model(*args))
    rng = np.random.default_rng(3)
    weights = [rng.standard_normal(tuple(o.shape)).astype(np.float32) for o in outs]
    sum(((o * torch.tensor(w)).sum() for o, w in zip(outs, weights))).backward()
    got = as_tuple(imported(*clnet_inputs(args, device)))
    sum(((o * clnet.tensor(w, device=device)).sum() for o, w in zip(got, weights))).backward()
    params = dict(imported.named_parameters())
    for pname, p in model.named_parameters():
        assert pname in params, f"{pname} is not a parameter of the imported model ({sorted(params)})"
        assert_close(params[pname].grad, p.grad.numpy(), rtol=1e-4, atol=1e-5, what=f"gradient of {pname}")


def test_fine_tune_lowers_the_loss(device, tmp_path_factory):
    imported = clnet.onnx.load(exported(tmp_path_factory, "cnn"), device=device).train()
    rng = np.random.default_rng(0)
    x = clnet.tensor(rng.standard_normal((2, 3, 12, 12)).astype(np.float32), device=device)
    y = clnet.tensor(rng.integers(0, 5, 2), device=device)
    running = imported.bn.running_mean.numpy().copy()
    opt = clnet.optim.SGD(imported.parameters(), lr=0.1)
    losses = []
    for _ in range(4):
        opt.zero_grad()
        loss = clnet.nn.functional.nll_loss(imported(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
    assert not np.allclose(imported.bn.running_mean.numpy(), running), "train mode updates BatchNorm's statistics"


def test_dynamic_batch_and_input_checks(device, tmp_path_factory):
    dynamic = exported(tmp_path_factory, "two_layer", input_names=["x"], output_names=["y"],
                       dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    model, _ = build("two_layer")
    x = torch.randn(3, 4, 5)
    imported = clnet.onnx.load(dynamic, device=device)
    assert imported.input_names == ["x"] and imported.output_names == ["y"]
    with torch.no_grad():
        assert_close(imported(x=clnet.tensor(x.numpy(), device=device)), model(x).numpy(), rtol=1e-4, atol=1e-5)
    static = clnet.onnx.load(exported(tmp_path_factory, "two_layer"), device=device)
    with pytest.raises(ValueError, match=r"size 3 in dimension 0, the model needs 6"):
        static(clnet.tensor(x.numpy(), device=device))
    with pytest.raises(TypeError, match="must be float32, got int32"):
        imported(clnet.tensor(x.numpy().astype(np.int32), device=device))
    with pytest.raises(TypeError, match="has no input 'y'"):
        imported(y=clnet.tensor(x.numpy(), device=device))
    with pytest.raises(TypeError, match="needs input"):
        imported()


def test_names_graph_and_file_objects(device, tmp_path_factory):
    path = exported(tmp_path_factory, "cnn")
    imported = clnet.onnx.load(io.BytesIO(path.read_bytes()), device=device)
    model, _ = build("cnn")
    torch_keys = [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
    assert list(imported.state_dict()) == torch_keys
    assert [n for n, _ in imported.named_buffers()] == ["bn.running_mean", "bn.running_var"]
    text = str(imported.graph)
    for op in ("Conv", "BatchNormalization", "MaxPool", "AveragePool", "Gemm", "LogSoftmax"):
        assert op in text
    again = clnet.onnx.load(path.read_bytes(), device=device)
    again.load_state_dict(imported.state_dict())


@pytest.mark.slow
def test_file_from_the_dynamo_exporter(device, tmp_path):
    """torch.onnx.export(dynamo=True), PyTorch's default exporter (slow: it traces with torch.export)."""
    pytest.importorskip("onnxscript")
    model, args = build("cnn")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(tmp_path / "cnn.onnx"), dynamo=True, verbose=False)
    with torch.no_grad():
        expected = model(*args).numpy()
    imported = clnet.onnx.load(tmp_path / "cnn.onnx", device=device)
    assert_close(imported(*clnet_inputs(args, device)), expected, rtol=1e-4, atol=1e-5)


# --- operator semantics on hand-made graphs, against onnxruntime ------------------------------------------------
def graph_model(nodes, inputs, outputs, opset, initializers=()):
    """A one-graph ONNX model: inputs/outputs as (name, elem type, shape)."""
    vi = [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs]
    vo = [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs]
    graph = helper.make_graph(nodes, "g", vi, vo, initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def const(name, arr):
    return onnx.numpy_helper.from_array(np.asarray(arr), name)


F32, I64 = TensorProto.FLOAT, TensorProto.INT64
R = np.random.default_rng(11)
X34 = R.standard_normal((3, 4)).astype(np.float32)
X4D = R.standard_normal((2, 3, 7, 6)).astype(np.float32)

CASES = {
    "slice_negative_steps": (graph_model(
        [helper.make_node("Slice", ["x", "s", "e", "a", "st"], ["y"])],
        [("x", F32, [2, 3, 7, 6])], [("y", F32, None)], 17,
        [const("s", np.array([-1, 5], np.int64)), const("e", np.array([-(2 ** 63), 0], np.int64)),
         const("a", np.array([2, 3], np.int64)), const("st", np.array([-2, -3], np.int64))]), [X4D]),
    "slice_opset9_attributes": (graph_model(
        [helper.make_node("Slice", ["x"], ["y"], starts=[1, -3], ends=[2 ** 62, 100], axes=[0, 1])],
        [("x", F32, [3, 4])], [("y", F32, None)], 9), [X34]),
    "softmax_opset11_coerces_to_2d": (graph_model(
        [helper.make_node("Softmax", ["x"], ["y"], axis=1)], [("x", F32, [2, 3, 7, 6])], [("y", F32, None)], 11),
        [X4D]),
    "squeeze_unsqueeze_opset11": (graph_model(
        [helper.make_node("Unsqueeze", ["x"], ["u"], axes=[0, -1]),
         helper.make_node("Squeeze", ["u"], ["y"], axes=[0])],
        [("x", F32, [3, 4])], [("y", F32, None)], 11), [X34]),
    "split_num_outputs_opset18": (graph_model(
        [helper.make_node("Split", ["x"], ["a", "b", "c"], axis=2, num_outputs=3)],
        [("x", F32, [2, 3, 7, 6])], [("a", F32, None), ("b", F32, None), ("c", F32, None)], 18), [X4D]),
    "reduce_axes_input_and_noop": (graph_model(
        [helper.make_node("ReduceMean", ["x", "ax"], ["m"], keepdims=0),
         helper.make_node("ReduceSum", ["x", "none"], ["s"], noop_with_empty_axes=1),
         helper.make_node("ReduceL2", ["x", "ax"], ["l"]),
         helper.make_node("ReduceLogSumExp", ["x", "ax"], ["lse"])],
        [("x", F32, [2, 3, 7, 6])], [("m", F32, None), ("s", F32, None), ("l", F32, None), ("lse", F32, None)], 18,
        [const("ax", np.array([1, -1], np.int64)), const("none", np.zeros(0, np.int64))]), [X4D]),
    "gemm_transposes_alpha_beta": (graph_model(
        [helper.make_node("Gemm", ["a", "b", "c"], ["y"], transA=1, alpha=0.5, beta=2.0)],
        [("a", F32, [4, 3]), ("b", F32, [4, 5])], [("y", F32, None)], 13,
        [const("c", R.standard_normal((3, 5)).astype(np.float32))]),
        [R.standard_normal((4, 3)).astype(np.float32), R.standard_normal((4, 5)).astype(np.float32)]),
    "pools_same_ceil_and_asymmetric": (graph_model(
        [helper.make_node("MaxPool", ["x"], ["m"], kernel_shape=[3, 2], strides=[2, 2], auto_pad="SAME_UPPER"),
         helper.make_node("AveragePool", ["x"], ["a"], kernel_shape=[3, 3], strides=[2, 2], pads=[0, 1, 2, 1],
                          ceil_mode=1, count_include_pad=1),
         helper.make_node("AveragePool", ["x"], ["b"], kernel_shape=[2, 3], pads=[1, 0, 0, 2])],
        [("x", F32, [2, 3, 7, 6])], [("m", F32, None), ("a", F32, None), ("b", F32, None)], 17), [X4D]),
    "conv_same_lower_and_asymmetric": (graph_model(
        [helper.make_node("Conv", ["x", "w"], ["y"], auto_pad="SAME_LOWER", strides=[2, 1]),
         helper.make_node("Conv", ["x", "w", "b"], ["z"], pads=[0, 2, 1, 0], dilations=[2, 1])],
        [("x", F32, [2, 3, 7, 6])], [("y", F32, None), ("z", F32, None)], 17,
        [const("w", R.standard_normal((4, 3, 2, 3)).astype(np.float32)),
         const("b", R.standard_normal(4).astype(np.float32))]), [X4D]),
    "integer_div_and_fmod": (graph_model(
        [helper.make_node("Div", ["i", "j"], ["q"]), helper.make_node("Mod", ["x", "d"], ["r"], fmod=1),
         helper.make_node("Mod", ["i", "j"], ["m"])],
        [("i", I64, [6]), ("x", F32, [3, 4])], [("q", I64, None), ("r", F32, None), ("m", I64, None)], 13,
        [const("j", np.array([3, -3, 2, -2, 5, 7], np.int64)), const("d", np.float32(0.7))]),
        [np.array([7, 7, -7, -7, 0, 20], np.int64), X34]),
    "lstm_peepholes_clip": (graph_model(
        [helper.make_node("LSTM", ["x", "w", "r", "b", "", "", "", "p"], ["y", "h", "c"], hidden_size=3, clip=0.8)],
        [("x", F32, [2, 4, 5])], [("y", F32, None), ("h", F32, None), ("c", F32, None)], 14,
        [const("w", R.standard_normal((1, 12, 5)).astype(np.float32)),
         const("r", R.standard_normal((1, 12, 3)).astype(np.float32)),
         const("b", R.standard_normal((1, 24)).astype(np.float32)),
         const("p", R.standard_normal((1, 9)).astype(np.float32))]),
        [R.standard_normal((2, 4, 5)).astype(np.float32)]),
    "gru_reverse_initial_state": (graph_model(
        [helper.make_node("GRU", ["x", "w", "r", "b", "", "h0"], ["y", "h"], hidden_size=3, direction="reverse")],
        [("x", F32, [4, 2, 5]), ("h0", F32, [1, 2, 3])], [("y", F32, None), ("h", F32, None)], 14,
        [const("w", R.standard_normal((1, 9, 5)).astype(np.float32)),
         const("r", R.standard_normal((1, 9, 3)).astype(np.float32)),
         const("b", R.standard_normal((1, 18)).astype(np.float32))]),
        [R.standard_normal((4, 2, 5)).astype(np.float32), R.standard_normal((1, 2, 3)).astype(np.float32)]),
    "gru_bidirectional_reset_after_fused": (graph_model(
        [helper.make_node("GRU", ["x", "w", "r", "b", "", "h0"], ["y", "h"], hidden_size=3, direction="bidirectional",
                          linear_before_reset=1),
         helper.make_node("RNN", ["x", "wr", "rr"], ["ry"], hidden_size=3, activations=["Relu"])],
        [("x", F32, [4, 2, 5]), ("h0", F32, [2, 2, 3])], [("y", F32, None), ("h", F32, None), ("ry", F32, None)], 14,
        [const("w", R.standard_normal((2, 9, 5)).astype(np.float32)),
         const("r", R.standard_normal((2, 9, 3)).astype(np.float32)),
         const("b", R.standard_normal((2, 18)).astype(np.float32)),
         const("wr", R.standard_normal((1, 3, 5)).astype(np.float32)),
         const("rr", R.standard_normal((1, 3, 3)).astype(np.float32))]),
        [R.standard_normal((4, 2, 5)).astype(np.float32), R.standard_normal((2, 2, 3)).astype(np.float32)]),
    "constants_and_shape_ops": (graph_model(
        [helper.make_node("Shape", ["x"], ["s"], start=1),
         helper.make_node("ConstantOfShape", ["s"], ["z"], value=helper.make_tensor("v", F32, [1], [0.25])),
         helper.make_node("Range", ["r0", "r1", "r2"], ["rg"]),
         helper.make_node("Cast", ["rg"], ["rgf"], to=F32),
         helper.make_node("Expand", ["rgf", "s"], ["e"]),
         helper.make_node("Add", ["z", "e"], ["ze"]),
         helper.make_node("Tile", ["x", "reps"], ["t"]),
         helper.make_node("Pad", ["x", "pads", "pv", "pax"], ["p"]),
         helper.make_node("Clip", ["x", "lo"], ["cl"]),
         helper.make_node("Where", ["cond", "x", "ze"], ["w"])],
        [("x", F32, [3, 4]), ("cond", TensorProto.BOOL, [3, 4])],
        [("ze", F32, None), ("t", F32, None), ("p", F32, None), ("cl", F32, None), ("w", F32, None)], 18,
        [const("r0", np.int64(0)), const("r1", np.int64(4)), const("r2", np.int64(1)),
         const("reps", np.array([2, 1], np.int64)), const("pads", np.array([1, 2], np.int64)),
         const("pv", np.float32(1.5)), const("pax", np.array([-1], np.int64)), const("lo", np.float32(-0.2))]),
        [X34, R.standard_normal((3, 4)) > 0]),
    "resize_modes": (graph_model(
        [helper.make_node("Resize", ["x", "", "sc"], ["a"], mode="nearest", nearest_mode="floor",
                          coordinate_transformation_mode="asymmetric"),
         helper.make_node("Resize", ["x", "", "", "sz"], ["b"], mode="linear"),
         helper.make_node("Resize", ["x", "", "sc"], ["c"], mode="nearest", nearest_mode="round_prefer_ceil",
                          coordinate_transformation_mode="pytorch_half_pixel")],
        [("x", F32, [2, 3, 7, 6])], [("a", F32, None), ("b", F32, None), ("c", F32, None)], 13,
        [const("sc", np.array([1, 1, 1.7, 0.6], np.float32)), const("sz", np.array([2, 3, 4, 9], np.int64))]),
        [X4D]),
    "conv_transpose_pads_and_output_shape": (graph_model(
        [helper.make_node("ConvTranspose", ["x", "w", "b"], ["a"], strides=[2, 2], pads=[1, 0, 0, 2],
                          output_padding=[1, 1]),
         helper.make_node("ConvTranspose", ["x", "w"], ["c"], strides=[2, 3], output_shape=[15, 16],
                          auto_pad="SAME_UPPER"),
         helper.make_node("ConvTranspose", ["x", "w2"], ["d"], group=3, dilations=[2, 1])],
        [("x", F32, [2, 3, 7, 6])], [("a", F32, None), ("c", F32, None), ("d", F32, None)], 17,
        [const("w", R.standard_normal((3, 2, 3, 3)).astype(np.float32)),
         const("w2", R.standard_normal((3, 1, 2, 3)).astype(np.float32)),
         const("b", R.standard_normal(2).astype(np.float32))]), [X4D]),
    "nonzero_cumsum_variants_trilu": (graph_model(
        [helper.make_node("Greater", ["x", "zero"], ["g"]), helper.make_node("NonZero", ["g"], ["nz"]),
         helper.make_node("CumSum", ["x", "ax"], ["c"], exclusive=1, reverse=1),
         helper.make_node("Trilu", ["x", "k"], ["t"], upper=0)],
        [("x", F32, [3, 4])], [("nz", I64, None), ("c", F32, None), ("t", F32, None)], 17,
        [const("zero", np.float32(0)), const("ax", np.int64(1)), const("k", np.int64(1))]), [X34]),
    "clip_and_dropout_opset10_attributes": (graph_model(
        [helper.make_node("Clip", ["x"], ["c"], min=-0.5, max=0.25),
         helper.make_node("Dropout", ["c"], ["y"], ratio=0.5)],
        [("x", F32, [3, 4])], [("y", F32, None)], 10), [X34]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_operator_semantics_match_onnxruntime(device, case):
    ort = pytest.importorskip("onnxruntime")
    model, inputs = CASES[case]
    names = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, dict(zip(names, inputs)))
    got = as_tuple(clnet.onnx.load(model, device=device)(*[clnet.tensor(a, device=device) for a in inputs]))
    for i, (g, e) in enumerate(zip(got, expected)):
        assert g.dtype == e.dtype, f"{case} output {i}: dtype {g.dtype} != {e.dtype}"
        assert_close(g, e, rtol=1e-5, atol=1e-5, what=f"{case} output {i}")


def test_recurrent_batch_major_layout(device):
    """layout=1 (batch, seq, ...) gives the layout=0 results transposed (onnxruntime has no layout=1 to compare)."""
    model, (x,) = CASES["lstm_peepholes_clip"]
    batch_major = onnx.ModelProto()
    batch_major.CopyFrom(model)
    batch_major.graph.node[0].attribute.append(helper.make_attribute("layout", 1))
    batch_major.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 4
    batch_major.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 2
    y, h, c = clnet.onnx.load(model, device=device)(clnet.tensor(x, device=device))
    yb, hb, cb = clnet.onnx.load(batch_major, device=device)(clnet.tensor(x.transpose(1, 0, 2).copy(), device=device))
    assert_close(yb, y.numpy().transpose(2, 0, 1, 3))
    assert_close(hb, h.numpy().transpose(1, 0, 2))
    assert_close(cb, c.numpy().transpose(1, 0, 2))


# --- files clnet refuses ------------------------------------------------------------------------------------------
def test_unsupported_operators_are_all_named():
    model = graph_model([helper.make_node("Det", ["x"], ["d"]),
                         helper.make_node("Unique", ["x"], ["n"]), helper.make_node("Unique", ["x"], ["n2"])],
                        [("x", F32, [4, 4])], [("d", F32, None), ("n", F32, None), ("n2", F32, None)], 17)
    with pytest.raises(clnet.onnx.UnsupportedOperatorError, match=r"Det \(1 node\), Unique \(2 nodes\)"):
        clnet.onnx.load(model)
    assert issubclass(clnet.onnx.UnsupportedOperatorError, NotImplementedError)


def test_damaged_and_tampered_files(tmp_path, tmp_path_factory):
    good = exported(tmp_path_factory, "two_layer").read_bytes()
    with pytest.raises(FileNotFoundError):
        clnet.onnx.load(tmp_path / "missing.onnx")
    (tmp_path / "garbage.onnx").write_bytes(b"\x08\xff\xff not a protobuf at all")
    with pytest.raises(clnet.FileFormatError, match="garbage.onnx: not a valid ONNX model"):
        clnet.onnx.load(tmp_path / "garbage.onnx")
    (tmp_path / "truncated.onnx").write_bytes(good[:len(good) // 2])
    with pytest.raises(clnet.FileFormatError, match="truncated.onnx"):
        clnet.onnx.load(tmp_path / "truncated.onnx")
    tampered = onnx.load_model_from_string(good)
    tampered.graph.node[-1].input[0] = "never_defined"
    with pytest.raises(clnet.FileFormatError, match="never_defined"):
        clnet.onnx.load(tampered)
    short = onnx.load_model_from_string(good)
    short.graph.initializer[0].raw_data = short.graph.initializer[0].raw_data[:-4]
    with pytest.raises(clnet.FileFormatError, match="initializer 'fc1.weight' cannot be read"):
        clnet.onnx.load(short)
    reordered = onnx.load_model_from_string(good)
    last = reordered.graph.node.pop()
    reordered.graph.node.insert(0, last)
    with pytest.raises(clnet.FileFormatError):
        clnet.onnx.load(reordered)


def test_missing_onnx_package_message(monkeypatch):
    import importlib

    from clnet.onnx import proto
    real = importlib.import_module

    def refuse(name, *args):
        if name == "onnx":
            raise ImportError("No module named 'onnx'")
        return real(name, *args)
    monkeypatch.setattr(importlib, "import_module", refuse)
    with pytest.raises(ImportError, match=r"pip install 'clnet\[onnx\]'"):
        proto.require()

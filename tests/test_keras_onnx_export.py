"""Keras's model.export(path, format="onnx"): the file onnxruntime runs gives model.predict's results, at any
batch size (None dimensions stay dynamic), with the weights named by their Keras paths."""
import numpy as np
import pytest

from clnet import keras

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from keras_test_support import only_small_models_on_simulators  # noqa: F401,E402


def run(path, feeds):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session, session.run(None, feeds)


def test_sequential_convnet(device, tmp_path):
    keras.utils.clear_session()  # layer names start again at conv2d, dense
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(shape=(8, 8, 1)), keras.layers.Conv2D(4, 3, padding="same",
                                                                                activation="relu"),
                              keras.layers.MaxPooling2D(), keras.layers.Flatten(), keras.layers.Dropout(0.3),
                              keras.layers.Dense(10, activation="softmax")])
    proto = model.export(tmp_path / "convnet.onnx", format="onnx", verbose=False)
    names = {t.name for t in proto.graph.initializer}  # Conv's kernel stored transposed (constant folding); Dense
    assert {"conv2d.kernel.transpose", "dense.kernel", "dense.bias"} <= names, names  # multiplies its kernel as is
    assert "Transpose" not in [n.op_type for n in proto.graph.node if set(n.input) & names]
    for batch in (1, 5):
        x = np.random.default_rng(batch).standard_normal((batch, 8, 8, 1)).astype(np.float32)
        session, (y,) = run(tmp_path / "convnet.onnx", {proto.graph.input[0].name: x})
        np.testing.assert_allclose(y, model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_functional_two_inputs_and_errors(device, tmp_path):
    a, b = keras.Input(shape=(3,), name="a"), keras.Input(shape=(4,), name="b")
    h = keras.layers.Concatenate()([keras.layers.Dense(5, activation="tanh")(a), b])
    model = keras.Model([a, b], keras.layers.Dense(2, activation="sigmoid")(h))
    model.export(tmp_path / "f.onnx", format="onnx", verbose=False)
    xa = np.random.default_rng(0).standard_normal((3, 3)).astype(np.float32)
    xb = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    session, (y,) = run(tmp_path / "f.onnx", {"a": xa, "b": xb})
    assert [i.name for i in session.get_inputs()] == ["a", "b"]
    np.testing.assert_allclose(y, model.predict([xa, xb], verbose=0), rtol=1e-5, atol=1e-6)
    with pytest.raises(NotImplementedError, match="use format='onnx'"):
        model.export(tmp_path / "saved")

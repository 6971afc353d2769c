"""model.save / keras.models.load_model / save_weights: exact round trips, no pickle, and clear errors for
files that are truncated, corrupted or tampered with (nothing is executed, the model is left untouched).
The files are Keras 3's (tests/test_keras_interop.py checks them against real Keras); files in clnet's
earlier format (JSON + .npy members) still load."""
import io
import json
import shutil
import zipfile

import numpy as np
import pytest

from clnet import keras
from clnet.keras import layers
from clnet.keras.saving import FileFormatError

from keras_test_support import only_small_models_on_simulators  # noqa: F401  (autouse: small models on Oclgrind)


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.clear_session()
    keras.utils.set_random_seed(0)


def convnet():
    model = keras.Sequential([
        keras.Input(shape=(8, 8, 1)),
        layers.Conv2D(4, 3, padding="same", activation="relu"),
        layers.BatchNormalization(),
        layers.MaxPooling2D(),
        layers.Flatten(),
        layers.Dropout(0.25),
        layers.Dense(3, activation="softmax", kernel_regularizer=keras.regularizers.L2(1e-3)),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def train_and_save(path, rng):
    x = rng.standard_normal((24, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 3, 24)
    model = convnet()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    model.save(path)
    return model, path, x, y


@pytest.fixture
def trained(device, rng, tmp_path):
    return train_and_save(tmp_path / "m.keras", rng)


_SAVED = {}


@pytest.fixture
def saved_file(device, rng, tmp_path, tmp_path_factory):
    """A fresh copy of one trained model's file (trained once per device: the tampering tests only read it)."""
    if device.spec not in _SAVED:
        _SAVED[device.spec] = train_and_save(tmp_path_factory.mktemp("saved") / "m.keras", rng)[1]
    path = tmp_path / "m.keras"
    shutil.copyfile(_SAVED[device.spec], path)
    return path


def rewrite(path, change):
    """Copy the zip at `path` with `change(members)` applied to its {name: bytes} dict."""
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    change(members)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def test_round_trip_gives_identical_predictions_and_continues_training(trained):
    model, path, x, y = trained
    loaded = keras.models.load_model(path)
    assert type(loaded) is keras.Sequential and [type(lay) for lay in loaded.layers] == [type(lay) for lay in
                                                                                      model.layers]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert isinstance(loaded.optimizer, keras.optimizers.Adam) and loaded.optimizer.learning_rate == 0.01
    assert loaded.optimizer.iterations == model.optimizer.iterations == 3
    # the optimizer state came along: one more identical epoch gives identical weights
    keras.utils.set_random_seed(1)
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    keras.utils.set_random_seed(1)
    loaded.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_the_file_is_json_and_a_numeric_hdf5_tree(saved_file):
    h5py = pytest.importorskip("h5py")
    path = saved_file
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
        json.loads(zf.read("config.json"))
        json.loads(zf.read("metadata.json"))
        weights = zf.read("model.weights.h5")
    assert b"pickle" not in weights.lower()
    found = []
    with h5py.File(io.BytesIO(weights), "r") as f:
        f.visititems(lambda name, obj: found.append((name, obj.dtype.kind)) if isinstance(obj, h5py.Dataset) else None)
    assert found and all(kind in "fiu" for _, kind in found)
    assert ("layers/conv2d/vars/0", "f") in found and ("optimizer/vars/0", "i") in found


def test_files_in_clnets_earlier_format_still_load(device, rng, tmp_path):
    from clnet.keras.saving import clnet_format
    model = keras.Sequential([keras.Input(shape=(3,)), layers.Dense(2)])
    x = rng.standard_normal((4, 3)).astype(np.float32)
    manifest, members = clnet_format._weight_members(model.weights)
    config = {"class_name": "Sequential", "config": model.get_config(), "compile_config": None}
    members.update({"metadata.json": clnet_format._json(clnet_format._metadata("model")),
                    "config.json": clnet_format._json(config), "weights.json": clnet_format._json({"weights": manifest})})
    clnet_format._write(tmp_path / "old.keras", members)
    np.testing.assert_array_equal(keras.models.load_model(tmp_path / "old.keras").predict(x, verbose=0),
                                  model.predict(x, verbose=0))


def test_functional_model_and_weights_only_round_trip(device, rng, tmp_path):
    inputs = keras.Input(shape=(5,))
    outputs = layers.Dense(2, activation="sigmoid")(layers.Dense(4, activation="tanh")(inputs))
    model = keras.Model(inputs, outputs)
    x = rng.standard_normal((6, 5)).astype(np.float32)
    model.save(tmp_path / "f.keras")
    loaded = keras.models.load_model(tmp_path / "f.keras")
    assert not loaded.compiled
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))

    rebuilt = keras.models.model_from_json(model.to_json())
    assert [w.shape for w in rebuilt.weights] == [w.shape for w in model.weights] and rebuilt.output_shape == (None, 2)
    model.save_weights(tmp_path / "f.weights.h5")
    other = keras.models.clone_model(model)
    assert not np.array_equal(other.predict(x, verbose=0), model.predict(x, verbose=0))
    other.load_weights(tmp_path / "f.weights.h5")
    np.testing.assert_array_equal(other.predict(x, verbose=0), model.predict(x, verbose=0))
    wrong = keras.Sequential([layers.Dense(4, input_shape=(5,)), layers.Dense(3)])
    before = wrong.get_weights()
    with pytest.raises(FileFormatError, match=r"has shape \(4, 2\) in the file, but the model's dense_\d+/kernel has "
                                              r"shape \(4, 3\)"):
        wrong.load_weights(tmp_path / "f.weights.h5")
    for a, b in zip(wrong.get_weights(), before):  # nothing was assigned
        np.testing.assert_array_equal(a, b)


@keras.saving.register_keras_serializable(package="Test")
class Scale(keras.layers.Layer):
    """A user's layer written the Keras way: build() makes the weight, call() is the math."""

    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="random_normal", name="w")

    def call(self, x):
        return x * self.w * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def test_registered_custom_layer_round_trip(device, rng, tmp_path):
    model = keras.Sequential([keras.Input(shape=(3,)), Scale(3.0), layers.Dense(2)])
    assert [w.shape for w in model.weights] == [(3,), (3, 2), (2,)]
    x = rng.standard_normal((4, 3)).astype(np.float32)
    model.save(tmp_path / "c.keras")
    loaded = keras.models.load_model(tmp_path / "c.keras")
    assert isinstance(loaded.layers[0], Scale) and loaded.layers[0].factor == 3.0
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))

    class Unregistered(Scale):
        pass
    keras.Sequential([keras.Input(shape=(3,)), Unregistered()]).save(tmp_path / "u.keras")  # saves, as Keras
    with pytest.raises(TypeError, match="Could not locate class 'Unregistered'.*register_keras_serializable"):
        keras.models.load_model(tmp_path / "u.keras")
    assert isinstance(keras.models.load_model(tmp_path / "u.keras", custom_objects={"Unregistered": Unregistered})
                      .layers[0], Unregistered)


def test_subclassed_models_and_bad_file_names(device, tmp_path):
    class Net(keras.Model):
        def __init__(self, units=2, **kwargs):
            super().__init__(**kwargs)
            self.d = layers.Dense(units)

        def call(self, x):
            return self.d(x)
    net = Net(3)
    x = np.ones((1, 3), np.float32)
    net(x)
    assert net.get_config()["units"] == 3  # Keras's automatic config from the __init__ arguments
    net.save(tmp_path / "n.keras")
    with pytest.raises(TypeError, match="Could not locate class 'Net'"):
        keras.models.load_model(tmp_path / "n.keras")
    loaded = keras.models.load_model(tmp_path / "n.keras", custom_objects={"Net": Net})
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), net.predict(x, verbose=0))

    class Opaque(keras.Model):
        def __init__(self, layer):
            super().__init__()
            self.d = layer

        def call(self, x):
            return self.d(x)
    opaque = Opaque(layers.Dense(2))
    opaque(x)
    with pytest.raises(NotImplementedError, match="get_config.*save_weights"):
        opaque.save(tmp_path / "o.keras")
    opaque.save_weights(tmp_path / "o.weights.h5")
    model = keras.Sequential([layers.Dense(1, input_shape=(2,))])
    with pytest.raises(ValueError, match=r"\.keras"):
        model.save(tmp_path / "model")
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        model.save_weights(tmp_path / "model.keras")
    with pytest.raises(FileNotFoundError):
        keras.models.load_model(tmp_path / "missing.keras")


def _pickled_npy():
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return buf.getvalue()


def _edit_json(name, fn):
    def change(members):
        value = json.loads(members[name])
        fn(value)
        members[name] = json.dumps(value).encode()
    return change


def _h5(arrays):
    """An HDF5 weights tree {path: [arrays]} as bytes."""
    h5py = pytest.importorskip("h5py")
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        for path, values in arrays.items():
            group = f.create_group(f"{path}/vars")
            for i, v in enumerate(values):
                group.create_dataset(str(i), data=v)
    return buf.getvalue()


def _reshaped_kernel(members):
    h5py = pytest.importorskip("h5py")
    buf = io.BytesIO(members["model.weights.h5"])
    with h5py.File(buf, "a") as f:
        del f["layers/conv2d/vars/0"]
        f["layers/conv2d/vars"].create_dataset("0", data=np.ones((5, 5, 1, 4), np.float32))
    members["model.weights.h5"] = buf.getvalue()


def _linked_weight(members):
    h5py = pytest.importorskip("h5py")
    buf = io.BytesIO(members["model.weights.h5"])
    with h5py.File(buf, "a") as f:
        del f["layers/conv2d/vars/1"]
        f["layers/conv2d/vars/1"] = h5py.ExternalLink("/etc/passwd", "/x")
    members["model.weights.h5"] = buf.getvalue()


def _string_weight(members):
    h5py = pytest.importorskip("h5py")
    buf = io.BytesIO(members["model.weights.h5"])
    with h5py.File(buf, "a") as f:
        del f["layers/conv2d/vars/1"]
        f["layers/conv2d/vars"].create_dataset("1", data=np.array([b"__import__('os')"]))
    members["model.weights.h5"] = buf.getvalue()


TAMPERING = {
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "not a valid zip"),
    "empty": (lambda p: p.write_bytes(b""), "not a valid zip"),
    "not_a_zip": (lambda p: p.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4), "not a valid zip"),
    "path_traversal": (lambda p: rewrite(p, lambda m: m.update({"../../evil.py": b"import os"})), "unexpected member"),
    "absolute_path": (lambda p: rewrite(p, lambda m: m.update({"/tmp/evil": b"x"})), "unexpected member"),
    "extra_member": (lambda p: rewrite(p, lambda m: m.update({"assets/evil.pkl": b"x"})), "unexpected member"),
    "pickled_weights": (lambda p: rewrite(p, lambda m: m.update({"model.weights.h5": _pickled_npy()})),
                        "not a valid HDF5"),
    "garbled_weights": (lambda p: rewrite(p, lambda m: m.update({"model.weights.h5": m["model.weights.h5"][:600]})),
                        "(not a valid HDF5|damaged)"),
    "wrong_shape": (lambda p: rewrite(p, _reshaped_kernel), r"has shape \(5, 5, 1, 4\) in the file"),
    "linked_weight": (lambda p: rewrite(p, _linked_weight), "link"),
    "string_weight": (lambda p: rewrite(p, _string_weight), "only numbers are accepted"),
    "missing_weights": (lambda p: rewrite(p, lambda m: m.pop("model.weights.h5")), "is missing"),
    "missing_layer": (lambda p: rewrite(p, lambda m: m.update({"model.weights.h5": _h5({"layers/conv2d": []})})),
                      "expected 2 variables, but received 0"),
    "unknown_layer_class": (lambda p: rewrite(p, _edit_json("config.json", lambda v: v["config"]["layers"][1].update(
        class_name="os.system"))), "Could not locate class 'os.system'"),
    "unexpected_layer_argument": (lambda p: rewrite(p, _edit_json("config.json", lambda v: v["config"]["layers"][1][
        "config"].update(__reduce__="os.system"))), "cannot rebuild layer Conv2D"),
    "bad_activation": (lambda p: rewrite(p, _edit_json("config.json", lambda v: v["config"]["layers"][1][
        "config"].update(activation="__import__('os')"))), "Unknown activation"),
    "unknown_model_class": (lambda p: rewrite(p, _edit_json("config.json", lambda v: v.update(class_name="Evil"))),
                            "Could not locate class 'Evil'"),
    "not_a_model": (lambda p: rewrite(p, _edit_json("config.json", lambda v: v.update(v["config"]["layers"][1]))),
                    "not a model"),
    "bad_json": (lambda p: rewrite(p, lambda m: m.update({"config.json": b"{not json"})), "not valid JSON"),
}


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_damaged_or_tampered_files_raise_clear_errors(saved_file, case):
    path = saved_file
    damage, message = TAMPERING[case]
    damage(path)
    with pytest.raises(FileFormatError, match=message) as info:
        keras.models.load_model(path)
    assert str(path) in str(info.value)


def test_corrupted_bytes_inside_a_member_are_caught(saved_file):
    path = saved_file
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("model.weights.h5")
    start = info.header_offset + 30 + len(info.filename) + info.file_size // 2  # inside the stored HDF5 data
    data[start:start + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))
    with pytest.raises(FileFormatError, match="damaged"):
        keras.models.load_model(path)

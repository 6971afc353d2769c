"""Files shared with real Keras 3 (issue 14 item 5): `.keras` models, `.weights.h5` weights and legacy `.h5`
models written by Keras load in clnet and the other way round, for Sequential, functional and subclassed
models, with equal weights, equal predictions and the optimizer's state; custom objects (registration,
scopes, custom_objects=, serialize/deserialize) and the errors for unknown classes and lambdas.

Real Keras runs in the test (KERAS_BACKEND=torch); the tests skip when it is not installed."""
import io
import json
import os
import warnings
import zipfile

import numpy as np
import pytest

from clnet import keras
from clnet.keras import layers
from clnet.keras.saving import optimizer_state

from keras_test_support import only_small_models_on_simulators  # noqa: F401  (autouse: small models on Oclgrind)

os.environ.setdefault("KERAS_BACKEND", "torch")
try:
    import keras as real_keras  # the real Keras 3 (clnet's is clnet.keras)
    REAL = real_keras if real_keras.__version__.startswith("3.") else None
except Exception:  # noqa: BLE001  (not installed, or no backend to run it on)
    REAL = None
pytest.importorskip("h5py")
needs_keras = pytest.mark.skipif(REAL is None, reason="real Keras 3 is not installed")


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.clear_session()
    keras.utils.set_random_seed(0)
    if REAL is not None:
        REAL.utils.set_random_seed(0)


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def convnet(k):
    """The same small convnet in either library (`k` is real Keras or clnet.keras)."""
    L = k.layers
    model = k.Sequential([k.Input(shape=(8, 8, 3)), L.Conv2D(4, 3, padding="same", activation="relu"),
                          L.BatchNormalization(), L.MaxPooling2D(), L.Conv2D(3, 3, activation="relu"), L.Flatten(),
                          L.Dropout(0.25), L.Dense(5, activation="softmax")])
    model.compile(optimizer=k.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def two_inputs(k):
    """A functional model with two inputs, shared and merge layers, pooling and a layer used twice."""
    L = k.layers
    a = k.Input(shape=(6, 6, 2), name="image")
    b = k.Input(shape=(5,), name="features")
    h = L.Conv2D(3, 3, padding="same", activation="tanh")(a)
    h = L.AveragePooling2D(2)(h)
    g = L.GlobalAveragePooling2D()(h)
    m = L.GlobalMaxPooling2D()(h)
    shared = L.Dense(3, activation="relu", name="shared")
    f1, f2 = shared(b), shared(L.Dense(5, name="pre")(b))
    merged = L.Concatenate()([L.Add()([g, f1]), L.Multiply()([m, f2]), L.Subtract()([f1, f2])])
    out = L.Dense(2, name="head")(L.BatchNormalization()(merged))
    model = k.Model([a, b], out, name="two_inputs")
    model.compile(optimizer=k.optimizers.SGD(0.05, momentum=0.9), loss="mse")
    return model


def data(rng, n=16):
    x = rng.standard_normal((n, 8, 8, 3)).astype(np.float32)
    return x, rng.integers(0, 5, n)


def data2(rng, n=12):
    return [rng.standard_normal((n, 6, 6, 2)).astype(np.float32), rng.standard_normal((n, 5)).astype(np.float32)], \
        rng.standard_normal((n, 2)).astype(np.float32)


def assert_same_weights(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    assert len(wa) == len(wb)
    for x, y in zip(wa, wb):
        assert x.shape == y.shape
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def one_more_step_agrees(ours, theirs, x, y):
    """One more training step on each side (dropout off: the two libraries draw different masks) gives the
    same weights: the optimizer's state crossed over, not just its config."""
    for model in (ours, theirs):
        for layer in model.layers:
            if type(layer).__name__ == "Dropout":
                layer.rate = 0.0
    theirs.train_on_batch(x, y)
    ours.train_on_batch(x, y)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-6)


def keras_optimizer_state(opt):
    return [np.asarray(v.numpy() if hasattr(v, "numpy") else v) for v in opt.variables]


def clnet_optimizer_state(model):
    return optimizer_state.keras_variables(model.optimizer, model.trainable_variables)


def assert_same_optimizer_state(keras_opt, clnet_model):
    theirs, ours = keras_optimizer_state(keras_opt), clnet_optimizer_state(clnet_model)
    assert len(theirs) == len(ours)
    assert int(theirs[0]) == int(ours[0]) > 0
    for x, y in zip(theirs[1:], ours[1:]):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


# --- Keras -> clnet ---------------------------------------------------------------------------------------
@needs_keras
def test_sequential_saved_by_keras_loads_in_clnet(device, rng, tmp_path):
    x, y = data(rng)
    theirs = convnet(REAL)
    theirs.fit(x, y, batch_size=8, epochs=2, verbose=0)
    theirs.save(tmp_path / "k.keras")
    ours = keras.models.load_model(tmp_path / "k.keras")
    assert type(ours) is keras.Sequential
    assert [type(a).__name__ for a in ours.layers] == [type(b).__name__ for b in theirs.layers]
    assert_same_weights(ours, theirs)
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert isinstance(ours.optimizer, keras.optimizers.Adam) and ours.optimizer.iterations == 4
    assert_same_optimizer_state(theirs.optimizer, ours)
    one_more_step_agrees(ours, theirs, x[:8], y[:8])


@needs_keras
def test_functional_saved_by_keras_loads_in_clnet(device, rng, tmp_path):
    x, y = data2(rng)
    theirs = two_inputs(REAL)
    theirs.fit(x, y, batch_size=4, epochs=1, verbose=0)
    theirs.save(tmp_path / "f.keras")
    ours = keras.models.load_model(tmp_path / "f.keras")
    assert ours.name == "two_inputs" and ours.input_names == ["image", "features"]
    assert_same_weights(ours, theirs)
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    assert isinstance(ours.optimizer, keras.optimizers.SGD) and ours.optimizer.momentum == pytest.approx(0.9)
    assert_same_optimizer_state(theirs.optimizer, ours)


# --- clnet -> Keras ---------------------------------------------------------------------------------------
@needs_keras
def test_sequential_saved_by_clnet_loads_in_keras(device, rng, tmp_path):
    x, y = data(rng)
    ours = convnet(keras)
    ours.fit(x, y, batch_size=8, epochs=2, verbose=0)
    ours.save(tmp_path / "c.keras")
    with zipfile.ZipFile(tmp_path / "c.keras") as zf:
        assert sorted(zf.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
        assert json.loads(zf.read("config.json"))["class_name"] == "Sequential"
    theirs = _quiet(REAL.models.load_model, tmp_path / "c.keras")
    assert type(theirs) is REAL.Sequential
    assert_same_weights(ours, theirs)
    np.testing.assert_allclose(theirs.predict(x, verbose=0), ours.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert isinstance(theirs.optimizer, REAL.optimizers.Adam)
    assert_same_optimizer_state(theirs.optimizer, ours)
    one_more_step_agrees(ours, theirs, x[:8], y[:8])


@needs_keras
def test_functional_saved_by_clnet_loads_in_keras(device, rng, tmp_path):
    x, y = data2(rng)
    ours = two_inputs(keras)
    ours.fit(x, y, batch_size=4, epochs=1, verbose=0)
    ours.save(tmp_path / "f.keras")
    theirs = _quiet(REAL.models.load_model, tmp_path / "f.keras")
    assert [layer.name for layer in theirs.layers] == [layer.name for layer in ours.layers]
    assert_same_weights(ours, theirs)
    np.testing.assert_allclose(theirs.predict(x, verbose=0), ours.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    assert_same_optimizer_state(theirs.optimizer, ours)
    # to_json / model_from_json cross too (architecture only)
    rebuilt = _quiet(REAL.models.model_from_json, ours.to_json())
    rebuilt.set_weights(ours.get_weights())
    np.testing.assert_allclose(rebuilt.predict(x, verbose=0), ours.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    back = keras.models.model_from_json(theirs.to_json())
    back.set_weights(theirs.get_weights())
    np.testing.assert_allclose(back.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-5, atol=1e-5)


@needs_keras
def test_input_shape_on_the_first_layer_becomes_keras_input_layer(device, rng, tmp_path):
    ours = keras.Sequential([layers.Dense(4, activation="relu", input_shape=(3,)), layers.Dense(2)])
    ours.save(tmp_path / "s.keras")
    theirs = _quiet(REAL.models.load_model, tmp_path / "s.keras")
    x = rng.standard_normal((5, 3)).astype(np.float32)
    np.testing.assert_allclose(theirs.predict(x, verbose=0), ours.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    again = keras.models.load_model(tmp_path / "s.keras")
    np.testing.assert_array_equal(again.predict(x, verbose=0), ours.predict(x, verbose=0))


# --- weights files --------------------------------------------------------------------------------------
@needs_keras
def test_weights_h5_both_ways(device, rng, tmp_path):
    x, _ = data2(rng)
    ours, theirs = two_inputs(keras), two_inputs(REAL)
    ours.save_weights(tmp_path / "c.weights.h5")
    theirs.load_weights(tmp_path / "c.weights.h5")
    assert_same_weights(ours, theirs)
    np.testing.assert_allclose(theirs.predict(x, verbose=0), ours.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    fresh = two_inputs(REAL)
    fresh.save_weights(tmp_path / "k.weights.h5")
    ours.load_weights(tmp_path / "k.weights.h5")
    assert_same_weights(ours, fresh)
    # a .keras file also gives its weights to load_weights
    theirs.save(tmp_path / "whole.keras")
    ours.load_weights(tmp_path / "whole.keras")
    assert_same_weights(ours, theirs)
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        ours.save_weights(tmp_path / "w.h5")


def test_weights_h5_refuses_the_wrong_architecture(device, rng, tmp_path):
    model = keras.Sequential([keras.Input((5,)), layers.Dense(4), layers.Dense(2)])
    model.save_weights(tmp_path / "a.weights.h5")
    wrong = keras.Sequential([keras.Input((5,)), layers.Dense(4), layers.Dense(3)])
    before = wrong.get_weights()
    with pytest.raises(keras.saving.FileFormatError, match=r"has shape \(4, 2\) in the file"):
        wrong.load_weights(tmp_path / "a.weights.h5")
    for a, b in zip(wrong.get_weights(), before):  # nothing was assigned
        np.testing.assert_array_equal(a, b)


# --- subclassed models ------------------------------------------------------------------------------------
def make_subclassed(k, package):
    """The same subclassed model in either library, registered under the same name."""
    L = k.layers

    @k.saving.register_keras_serializable(package=package, name="Block")
    class Block(L.Layer):
        def __init__(self, units=3, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.inner = L.Dense(units, activation="tanh")
            self.norm = L.BatchNormalization()

        def call(self, x, training=None):
            return self.norm(self.inner(x), training=training)

        def get_config(self):
            return {**super().get_config(), "units": self.units}

    @k.saving.register_keras_serializable(package=package, name="Net")
    class Net(k.Model):
        def __init__(self, units=4, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.blocks = [L.Dense(units, activation="relu"), L.Dense(units, activation="relu")]
            self.zout = L.Dense(2)
            self._side = L.Dense(2)
            self.block = Block(3)

        def call(self, x, training=None):
            h = x
            for layer in self.blocks:
                h = layer(h)
            return self.zout(h) + self._side(self.block(h, training=training))

        def get_config(self):
            return {**super().get_config(), "units": self.units}

    return Net


@needs_keras
def test_subclassed_models_both_ways(device, rng, tmp_path):
    NetK, NetC = make_subclassed(REAL, "interop"), make_subclassed(keras, "interop")
    x = rng.standard_normal((10, 3)).astype(np.float32)
    y = rng.standard_normal((10, 2)).astype(np.float32)
    theirs = NetK(5)
    theirs.compile(optimizer=REAL.optimizers.RMSprop(0.01, momentum=0.5), loss="mse")
    theirs.fit(x, y, batch_size=5, epochs=1, verbose=0)
    theirs.save(tmp_path / "k.keras")
    ours = keras.models.load_model(tmp_path / "k.keras")
    assert type(ours) is NetC and ours.units == 5
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    assert_same_weights(ours, theirs)
    assert_same_optimizer_state(theirs.optimizer, ours)

    ours2 = NetC(4)
    ours2.compile(optimizer="adam", loss="mse")
    ours2.fit(x, y, batch_size=5, epochs=1, verbose=0)
    ours2.save(tmp_path / "c.keras")
    theirs2 = _quiet(REAL.models.load_model, tmp_path / "c.keras")
    assert type(theirs2) is NetK and theirs2.units == 4
    np.testing.assert_allclose(theirs2.predict(x, verbose=0), ours2.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    assert_same_optimizer_state(theirs2.optimizer, ours2)
    again = keras.models.load_model(tmp_path / "c.keras")
    np.testing.assert_array_equal(again.predict(x, verbose=0), ours2.predict(x, verbose=0))
    # both libraries lay the twin models' variables out under the same paths
    assert h5_paths(tmp_path / "c.keras") == h5_paths(tmp_path / "k.keras")
    assert {"blocks/dense/vars", "blocks/dense_1/vars", "block/inner/vars", "block/norm/vars", "layers/dense_2/vars",
            "layers/dense_3/vars", "vars"} <= h5_paths(tmp_path / "c.keras")


def h5_paths(path):
    """The `vars` groups of a .keras file's weights."""
    h5py = pytest.importorskip("h5py")
    with zipfile.ZipFile(path) as zf:
        data = zf.read("model.weights.h5")
    found = set()
    with h5py.File(io.BytesIO(data), "r") as f:
        f.visit(lambda name: found.add(name) if name.endswith("vars") else None)
    return found


@needs_keras
def test_compile_settings_cross_both_ways(device, rng, tmp_path):
    x = rng.standard_normal((8, 4)).astype(np.float32)
    y = rng.integers(0, 3, 8)
    results = {}
    for k in (REAL, keras):
        model = k.Sequential([k.Input((4,)), k.layers.Dense(3)])
        model.compile(k.optimizers.Adam(k.optimizers.schedules.ExponentialDecay(0.01, 10, 0.9)),
                      loss=k.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=[k.metrics.SparseCategoricalAccuracy(), "accuracy"])
        model.fit(x, y, batch_size=4, verbose=0)
        model.save(tmp_path / f"{k.__name__}.keras")
        results[k.__name__] = model.evaluate(x, y, verbose=0)
    for source, expected in results.items():
        ours = keras.models.load_model(tmp_path / f"{source}.keras")
        theirs = _quiet(REAL.models.load_model, tmp_path / f"{source}.keras")
        assert isinstance(ours.optimizer.learning_rate, float) and ours.optimizer.iterations == 2
        np.testing.assert_allclose(ours.evaluate(x, y, verbose=0), expected, rtol=1e-5)
        np.testing.assert_allclose(theirs.evaluate(x, y, verbose=0), expected, rtol=1e-5)


# --- legacy .h5 ---------------------------------------------------------------------------------------------
@needs_keras
def test_legacy_h5_both_ways(device, rng, tmp_path):
    x, y = data(rng)
    theirs = convnet(REAL)
    theirs.fit(x, y, batch_size=8, epochs=1, verbose=0)
    _quiet(theirs.save, tmp_path / "k.h5")
    ours = keras.models.load_model(tmp_path / "k.h5")
    assert_same_weights(ours, theirs)
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert isinstance(ours.optimizer, keras.optimizers.Adam)

    ours.fit(x, y, batch_size=8, epochs=1, verbose=0)
    ours.save(tmp_path / "c.h5")
    back = _quiet(REAL.models.load_model, tmp_path / "c.h5")
    assert_same_weights(ours, back)
    np.testing.assert_allclose(back.predict(x, verbose=0), ours.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    other = convnet(keras)
    other.load_weights(tmp_path / "k.h5")
    assert_same_weights(other, theirs)


# --- custom objects ---------------------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package="interop_test")
class Scale(keras.layers.Layer):
    """A registered custom layer whose get_config() does not call super() (Keras loads those too)."""

    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="random_normal", name="w")

    def call(self, x):
        return x * self.w * self.factor

    def get_config(self):
        return {"factor": self.factor}


class Shift(keras.layers.Layer):
    """An unregistered custom layer: it loads with custom_objects= or inside custom_object_scope."""

    def __init__(self, amount=1.0, **kwargs):
        super().__init__(**kwargs)
        self.amount = amount

    def call(self, x):
        return x + self.amount

    def get_config(self):
        return {**super().get_config(), "amount": self.amount}


@keras.saving.register_keras_serializable(package="interop_test")
def cube(x):
    return x * x * x


def test_custom_layer_without_super_config_in_a_functional_model(device, rng, tmp_path):
    inputs = keras.Input((3,))
    scaled = Scale(2.0)(inputs)
    model = keras.Model(inputs, layers.Add()([scaled, Scale(0.5)(scaled)]))
    model.save(tmp_path / "f.keras")
    loaded = keras.models.load_model(tmp_path / "f.keras")
    x = rng.standard_normal((4, 3)).astype(np.float32)
    assert [type(layer).__name__ for layer in loaded.layers] == ["InputLayer", "Scale", "Scale", "Add"]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_custom_layers_and_functions_round_trip(device, rng, tmp_path):
    x = rng.standard_normal((4, 3)).astype(np.float32)
    model = keras.Sequential([keras.Input((3,)), Scale(3.0), Shift(0.5), layers.Dense(2, activation=cube)])
    model.save(tmp_path / "c.keras")
    config = json.loads(zipfile.ZipFile(tmp_path / "c.keras").read("config.json"))
    entries = config["config"]["layers"]
    assert entries[1]["registered_name"] == "interop_test>Scale" and entries[1]["config"] == {"factor": 3.0}
    assert entries[2]["class_name"] == "Shift"
    with pytest.raises(TypeError, match="Could not locate class 'Shift'"):
        keras.models.load_model(tmp_path / "c.keras")
    for load in (lambda: keras.models.load_model(tmp_path / "c.keras", custom_objects={"Shift": Shift}),
                 lambda: _in_scope(lambda: keras.models.load_model(tmp_path / "c.keras"), {"Shift": Shift})):
        loaded = load()
        assert isinstance(loaded.layers[0], Scale) and loaded.layers[0].factor == 3.0
        assert loaded.layers[2].activation is cube
        np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def _in_scope(fn, objects):
    with keras.saving.custom_object_scope(objects):
        return fn()


def test_serialize_and_deserialize_keras_objects(device):
    dense = layers.Dense(3, activation="relu", kernel_initializer=keras.initializers.HeNormal(seed=1), name="d")
    entry = keras.saving.serialize_keras_object(dense)
    assert entry["module"] == "keras.layers" and entry["class_name"] == "Dense" and entry["registered_name"] is None
    assert entry["config"]["kernel_initializer"]["module"] == "keras.initializers"
    again = keras.saving.deserialize_keras_object(entry)
    assert isinstance(again, layers.Dense) and again.units == 3 and again.name == "d"
    assert keras.layers.serialize(dense) == entry
    assert keras.layers.deserialize(entry).get_config() == dense.get_config()
    scale = keras.saving.serialize_keras_object(Scale(1.5))
    assert scale["registered_name"] == "interop_test>Scale"
    assert keras.saving.deserialize_keras_object(scale).factor == 1.5
    fn = keras.saving.serialize_keras_object(cube)
    assert fn["class_name"] == "function" and fn["config"] == "interop_test>cube"
    assert keras.saving.deserialize_keras_object(fn) is cube
    opt = keras.saving.serialize_keras_object(keras.optimizers.Adam(0.5))
    assert opt["module"] == "keras.optimizers" and keras.saving.deserialize_keras_object(opt).learning_rate == 0.5
    assert keras.saving.get_registered_name(Scale) == "interop_test>Scale"
    assert keras.saving.get_registered_object("interop_test>Scale") is Scale
    with pytest.raises(TypeError, match="Could not locate class 'Nope'"):
        keras.saving.deserialize_keras_object({"module": "somewhere", "class_name": "Nope", "config": {},
                                               "registered_name": "pkg>Nope"})


@needs_keras
def test_custom_objects_cross_between_keras_and_clnet(device, rng, tmp_path):
    @REAL.saving.register_keras_serializable(package="interop_test")
    class Scale(REAL.layers.Layer):  # noqa: F811  (Keras's twin of the clnet Scale above)
        def __init__(self, factor=2.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1],), initializer="random_normal", name="w")

        def call(self, x):
            return x * self.w * self.factor

        def get_config(self):
            return {"factor": self.factor}

    x = rng.standard_normal((4, 3)).astype(np.float32)
    theirs = REAL.Sequential([REAL.Input((3,)), Scale(3.0), REAL.layers.Dense(2)])
    theirs.save(tmp_path / "k.keras")
    ours = keras.models.load_model(tmp_path / "k.keras")
    assert type(ours.layers[0]).__module__ == __name__ and ours.layers[0].factor == 3.0
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    ours.save(tmp_path / "c.keras")
    back = _quiet(REAL.models.load_model, tmp_path / "c.keras")
    assert isinstance(back.layers[0], Scale)
    np.testing.assert_allclose(back.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


@needs_keras
def test_keras_files_with_lambdas_or_unknown_layers_raise_keras_errors(device, tmp_path):
    model = REAL.Sequential([REAL.Input((3,)), REAL.layers.Lambda(lambda t: t * 2), REAL.layers.Dense(2)])
    _quiet(model.save, tmp_path / "lambda.keras")
    with pytest.raises(ValueError, match="safe_mode=False"):
        keras.models.load_model(tmp_path / "lambda.keras")
    with pytest.raises(ValueError, match="never runs code"):
        keras.models.load_model(tmp_path / "lambda.keras", safe_mode=False)
    with pytest.raises(TypeError, match="Could not locate class 'LayerNormalizationX'"):
        keras.layers.deserialize({"module": "keras.layers", "class_name": "LayerNormalizationX", "config": {},
                                  "registered_name": None})


def test_unsupported_settings_in_a_keras_config_are_named(device):
    entry = {"module": "keras.layers", "class_name": "Dense", "registered_name": None,
             "config": {"units": 2, "kernel_constraint": None, "quantization_config": None, "lora_rank": 4}}
    with pytest.raises(ValueError, match="Unrecognized keyword arguments passed to Dense: {'lora_rank': 4}"):
        keras.layers.deserialize(entry)
    del entry["config"]["lora_rank"]
    assert keras.layers.deserialize(entry).units == 2


# --- files from tf.keras 2 ------------------------------------------------------------------------------
def _tf_keras_2_file(path, config, weights, training_config=None):
    """An HDF5 model file laid out as tf.keras 2 wrote them (`weights`: {layer: {weight name: array}})."""
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = b"2.15.0"
        f.attrs["backend"] = b"tensorflow"
        f.attrs["model_config"] = json.dumps(config).encode()
        if training_config is not None:
            f.attrs["training_config"] = json.dumps(training_config).encode()
        group = f.create_group("model_weights")
        group.attrs["layer_names"] = [name.encode() for name in config["config"]["layers_order"]]
        for name in config["config"]["layers_order"]:
            layer_group = group.create_group(name)
            names = list(weights.get(name, {}))
            layer_group.attrs["weight_names"] = [n.encode() for n in names]
            for n in names:
                layer_group.create_dataset(n, data=weights[name][n])


def _tf2_dense(name, units, activation):
    return {"class_name": "Dense", "config": {
        "name": name, "trainable": True, "dtype": "float32", "units": units, "activation": activation,
        "use_bias": True, "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
        "bias_initializer": {"class_name": "Zeros", "config": {}}, "kernel_regularizer": None,
        "bias_regularizer": None, "activity_regularizer": None, "kernel_constraint": None, "bias_constraint": None}}


@pytest.mark.parametrize("kind", ["Sequential", "Functional"])
def test_tf_keras_2_h5_files_load(device, rng, tmp_path, kind):
    w1, b1 = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    w2, b2 = rng.standard_normal((3, 2)).astype(np.float32), rng.standard_normal(2).astype(np.float32)
    first, second = _tf2_dense("dense", 3, "relu"), _tf2_dense("dense_1", 2, "linear")
    if kind == "Sequential":
        first["config"]["batch_input_shape"] = [None, 4]
        config = {"class_name": "Sequential", "config": {"name": "sequential", "layers": [first, second]}}
        order = ["dense", "dense_1"]
    else:
        inputs = {"class_name": "InputLayer", "name": "input_1", "inbound_nodes": [],
                  "config": {"batch_input_shape": [None, 4], "dtype": "float32", "sparse": False, "ragged": False,
                             "name": "input_1"}}
        first.update(name="dense", inbound_nodes=[[["input_1", 0, 0, {}]]])
        second.update(name="dense_1", inbound_nodes=[[["dense", 0, 0, {}]]])
        config = {"class_name": "Functional", "config": {"name": "model", "layers": [inputs, first, second],
                                                        "input_layers": [["input_1", 0, 0]],
                                                        "output_layers": [["dense_1", 0, 0]]}}
        order = ["input_1", "dense", "dense_1"]
    config["config"]["layers_order"] = order
    weights = {"dense": {"dense/kernel:0": w1, "dense/bias:0": b1}, "dense_1": {"dense_1/kernel:0": w2,
                                                                                "dense_1/bias:0": b2}}
    training = {"loss": "mse", "metrics": ["mae"], "optimizer_config": {"class_name": "Adam", "config": {
        "name": "Adam", "learning_rate": 0.002, "decay": 0.0, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-07,
        "amsgrad": False}}}
    _tf_keras_2_file(tmp_path / "tf2.h5", config, weights, training)
    del config["config"]["layers_order"]
    model = keras.models.load_model(tmp_path / "tf2.h5")
    x = rng.standard_normal((5, 4)).astype(np.float32)
    expected = np.maximum(x @ w1 + b1, 0) @ w2 + b2
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5)
    assert isinstance(model.optimizer, keras.optimizers.Adam) and model.optimizer.learning_rate == 0.002
    model.fit(x, expected, verbose=0)  # compiled from the training config


class Counter(keras.layers.Layer):
    """A layer with a 0-d integer variable (as Normalization's count): its shape must survive the file."""

    def build(self, input_shape):
        self.total = self.add_weight((), "zeros", dtype="int64", trainable=False, name="total")
        self.scale = self.add_weight((input_shape[-1],), "ones", name="scale")

    def call(self, x):
        return x * self.scale


def test_scalar_and_integer_variables_round_trip(device, rng, tmp_path):
    model = keras.Sequential([keras.Input((3,)), Counter()])
    model.layers[0].total.assign(np.array(7, np.int64))
    model.save_weights(tmp_path / "c.weights.h5")
    other = keras.Sequential([keras.Input((3,)), Counter()])
    other.load_weights(tmp_path / "c.weights.h5")
    assert other.layers[0].total.shape == () and int(other.layers[0].total.numpy()) == 7


def make_gated(k, package):
    """A layer keeping its sublayer in a private attribute behind a public property (as Keras's
    MultiHeadAttention does): Keras files name its variables by the property."""
    L = k.layers

    @k.saving.register_keras_serializable(package=package, name="Gated")
    class Gated(L.Layer):
        def __init__(self, units=2, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self._proj = L.Dense(units)

        @property
        def proj(self):
            return self._proj

        def call(self, x):
            return self._proj(x) * 0.5

        def get_config(self):
            return {**super().get_config(), "units": self.units}

    return Gated


@needs_keras
def test_sublayers_behind_properties_use_keras_paths(device, rng, tmp_path):
    GatedK, GatedC = make_gated(REAL, "interop_gated"), make_gated(keras, "interop_gated")
    x = rng.standard_normal((4, 3)).astype(np.float32)
    theirs = REAL.Sequential([REAL.Input((3,)), GatedK(2)])
    theirs.save(tmp_path / "k.keras")
    assert "layers/gated/proj/vars" in h5_paths(tmp_path / "k.keras")
    ours = keras.models.load_model(tmp_path / "k.keras")
    assert isinstance(ours.layers[0], GatedC)
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    ours.save(tmp_path / "c.keras")
    assert h5_paths(tmp_path / "c.keras") == h5_paths(tmp_path / "k.keras")


def test_load_weights_skip_mismatch(device, rng, tmp_path):
    model = keras.Sequential([keras.Input((5,)), layers.Dense(4), layers.Dense(2)])
    keras.models.save_model(model, tmp_path / "m.keras")
    model.save_weights(tmp_path / "a.weights.h5")
    other = keras.Sequential([keras.Input((5,)), layers.Dense(4), layers.Dense(3)])
    kept = other.layers[1].get_weights()
    with pytest.warns(UserWarning, match="Skipping variable loading for layer"):
        other.load_weights(tmp_path / "a.weights.h5", skip_mismatch=True)
    for a, b in zip(other.layers[0].get_weights(), model.layers[0].get_weights()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(other.layers[1].get_weights(), kept):
        np.testing.assert_array_equal(a, b)
    assert keras.models.load_model(tmp_path / "m.keras").count_params() == model.count_params()


@needs_keras
def test_multi_head_attention_files_cross_both_ways(device, rng, tmp_path):
    """MultiHeadAttention is built from three shapes: its build config is Keras's {"shapes_dict": ...}."""
    q, v = keras.Input((5, 8)), keras.Input((7, 6))
    ours = keras.Model([q, v], keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)(q, v))
    x = [rng.standard_normal((2, 5, 8)).astype(np.float32), rng.standard_normal((2, 7, 6)).astype(np.float32)]
    want = ours.predict(x, verbose=0)
    ours.save(tmp_path / "ours.keras")
    theirs = _quiet(REAL.models.load_model, tmp_path / "ours.keras")
    np.testing.assert_allclose(np.asarray(theirs.predict(x, verbose=0)), want, rtol=1e-5, atol=1e-5)
    theirs.save(tmp_path / "theirs.keras")
    back = keras.models.load_model(tmp_path / "theirs.keras")
    np.testing.assert_allclose(back.predict(x, verbose=0), want, rtol=1e-5, atol=1e-5)

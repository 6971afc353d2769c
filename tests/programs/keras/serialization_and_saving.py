"""Follows keras-io guides/serialization_and_saving.py: model.save() / keras.models.load_model() of a
functional model with a registered custom function and a registered custom layer (get_config), reloaded
models that predict the same and can keep training, a custom model class with get_config/from_config,
get_config() / from_config() and to_json() / model_from_json() for the architecture alone,
get_weights() / set_weights() to move weights between models, save_weights() / load_weights() with a
".weights.h5" name, and keras.models.clone_model(). Random data from numpy, seeded by the runner."""
import numpy as np
from clnet import keras
from clnet.keras import layers, ops


@keras.saving.register_keras_serializable(package="my_package", name="custom_fn")
def custom_fn(x):
    return x ** 2


@keras.saving.register_keras_serializable(package="my_package")
class CustomLayer(keras.layers.Layer):
    def __init__(self, factor, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        config = super().get_config()
        config.update({"factor": self.factor})
        return config


def get_model():
    inputs = keras.Input(shape=(32,))
    x = layers.Dense(16, activation=custom_fn)(inputs)
    x = CustomLayer(0.5)(x)
    outputs = layers.Dense(1)(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mean_squared_error")
    return model


x = np.random.random((128, 32)).astype("float32")
y = (x[:, :1] - x[:, 1:2]).astype("float32")
model = get_model()
model.fit(x, y, verbose=0)

model.save("my_model.keras")
reconstructed_model = keras.models.load_model("my_model.keras")
gaps = [float(np.max(np.abs(model.predict(x, verbose=0) - reconstructed_model.predict(x, verbose=0))))]
print("reloaded model's largest difference in predictions:", gaps[-1])
print("reloaded layers:", [type(l).__name__ for l in reconstructed_model.layers])

# the reloaded model keeps training where the saved one stopped (same optimizer state)
model.fit(x, y, epochs=1, verbose=0, shuffle=False)
reconstructed_model.fit(x, y, epochs=1, verbose=0, shuffle=False)
gaps.append(float(np.max(np.abs(model.predict(x, verbose=0) - reconstructed_model.predict(x, verbose=0)))))
print("after one more epoch each:", gaps[-1])


# a custom model class rebuilt from its config
@keras.saving.register_keras_serializable(package="my_package")
class MyDense(keras.Model):
    def __init__(self, hidden_units=(8, 4), **kwargs):
        super().__init__(**kwargs)
        self.hidden_units = list(hidden_units)
        self.dense_layers = [layers.Dense(u) for u in self.hidden_units]

    def call(self, inputs):
        x = inputs
        for layer in self.dense_layers:
            x = layer(x)
        return x

    def get_config(self):
        base = super().get_config()
        base.update({"hidden_units": self.hidden_units})
        return base


sub_model = MyDense([16, 16, 1])
sub_model(x)
sub_model.compile(optimizer="adam", loss="mse")
sub_model.save("custom_model.keras")
reloaded_sub = keras.models.load_model("custom_model.keras")
gaps.append(float(np.max(np.abs(sub_model.predict(x, verbose=0) - reloaded_sub.predict(x, verbose=0)))))
print("custom model class, reloaded:", gaps[-1], reloaded_sub.hidden_units)

# architecture only: config and JSON
sequential = keras.Sequential([keras.Input((32,)), layers.Dense(1)])
config = sequential.get_config()
new_sequential = keras.Sequential.from_config(config)
json_config = model.to_json()
new_model = keras.models.model_from_json(json_config)
print("from JSON:", [type(l).__name__ for l in new_model.layers])

# weights only, between two models of the same architecture
def create_layer():
    layer = layers.Dense(64, activation="relu", name="dense_2")
    layer.build((None, 784))
    return layer


layer_1 = create_layer()
layer_2 = create_layer()
layer_2.set_weights(layer_1.get_weights())
gaps.append(max(float(np.max(np.abs(a - b))) for a, b in zip(layer_1.get_weights(), layer_2.get_weights())))

model.save_weights("my_model.weights.h5")
fresh = get_model()
fresh.load_weights("my_model.weights.h5")
gaps.append(float(np.max(np.abs(model.predict(x, verbose=0) - fresh.predict(x, verbose=0)))))
print("weights file round trip:", gaps[-1])

clone = keras.models.clone_model(model)
clone.set_weights(model.get_weights())
gaps.append(float(np.max(np.abs(model.predict(x, verbose=0) - clone.predict(x, verbose=0)))))
print("clone with the weights copied:", gaps[-1])
largest_gap = max(gaps)
print("largest difference over every round trip:", largest_gap)

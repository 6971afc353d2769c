"""Follows keras-io guides/functional_api.py: an MLP built from keras.Input and layer calls, trained and
evaluated on flattened MNIST digits with a from_logits loss and RMSprop, saved and reloaded, models called
like layers (an ensemble averaged with layers.average), a shared layer, and a custom layer with
get_config() rebuilt through keras.Model.from_config(custom_objects=). MNIST comes from offline_data."""
import numpy as np
from clnet import keras
from clnet.keras import layers

from offline_data import mnist_load_data

inputs = keras.Input(shape=(784,))
img_inputs = keras.Input(shape=(32, 32, 3))
print("input shape/dtype:", inputs.shape, inputs.dtype, "image input:", img_inputs.shape)

dense = layers.Dense(64, activation="relu")
x = dense(inputs)
x = layers.Dense(64, activation="relu")(x)
outputs = layers.Dense(10)(x)
model = keras.Model(inputs=inputs, outputs=outputs, name="mnist_model")
model.summary()

(x_train, y_train), (x_test, y_test) = mnist_load_data(n_train=1200, n_test=300)
x_train = x_train.reshape(-1, 784).astype("float32") / 255
x_test = x_test.reshape(-1, 784).astype("float32") / 255

model.compile(
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    optimizer=keras.optimizers.RMSprop(),
    metrics=["accuracy"],
)
history = model.fit(x_train, y_train, batch_size=64, epochs=5, validation_split=0.2, verbose=2)
test_scores = model.evaluate(x_test, y_test, verbose=2)
print("Test loss:", test_scores[0])
print("Test accuracy:", test_scores[1])
test_accuracy = float(test_scores[1])

# save and reload: the same predictions
model.save("my_model.keras")
del model
model = keras.models.load_model("my_model.keras")
reloaded_accuracy = float(np.mean(np.argmax(model.predict(x_test, verbose=0), axis=1) == y_test))
print("reloaded model's accuracy:", reloaded_accuracy)
assert abs(reloaded_accuracy - test_accuracy) < 1e-6


# all models are callable, just like layers: an ensemble of three
def get_model():
    inputs = keras.Input(shape=(128,))
    outputs = layers.Dense(1)(inputs)
    return keras.Model(inputs, outputs)


model1, model2, model3 = get_model(), get_model(), get_model()
inputs = keras.Input(shape=(128,))
y1, y2, y3 = model1(inputs), model2(inputs), model3(inputs)
outputs = layers.average([y1, y2, y3])
ensemble_model = keras.Model(inputs=inputs, outputs=outputs)
sample = np.random.rand(4, 128).astype("float32")
by_hand = sum(m.predict(sample, verbose=0) for m in (model1, model2, model3)) / 3
ensemble_gap = float(np.max(np.abs(ensemble_model.predict(sample, verbose=0) - by_hand)))
print("ensemble vs. the average by hand:", ensemble_gap)

# a shared layer: one Dense applied to two inputs has one set of weights
shared = layers.Dense(8)
text_a, text_b = keras.Input(shape=(16,)), keras.Input(shape=(16,))
two = keras.Model([text_a, text_b], layers.concatenate([shared(text_a), shared(text_b)]))
print("weights in the shared-layer model:", len(two.weights))
assert len(two.weights) == 2


# a custom layer with a config, usable in the functional API and rebuilt from the model's config
@keras.saving.register_keras_serializable(package="functional_api")
class CustomDense(layers.Layer):
    def __init__(self, units=32, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="random_normal", trainable=True)
        self.b = self.add_weight(shape=(self.units,), initializer="random_normal", trainable=True)

    def call(self, inputs):
        return keras.ops.matmul(inputs, self.w) + self.b

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units})
        return config


inputs = keras.Input((4,))
outputs = CustomDense(10)(inputs)
model = keras.Model(inputs, outputs)
config = model.get_config()
new_model = keras.Model.from_config(config, custom_objects={"CustomDense": CustomDense})
print("rebuilt layers:", [type(l).__name__ for l in new_model.layers])

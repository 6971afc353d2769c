"""Follows the Keras repository's examples/demo_custom_layer_backend_agnostic.py: custom layers written only
with keras.ops, keras.random and initializers (a Dense with add_weight(initializer=...), a Dropout drawing from
a SeedGenerator), a subclassed Model stacking them, compiled with SGD, MeanSquaredError and a
MeanSquaredError metric, trained with fit() and used with predict(). The demo's random regression data is
replaced by a learnable one (targets a fixed random linear map of the inputs plus noise)."""
import numpy as np
from clnet import keras
from clnet.keras import initializers, layers, losses, metrics, ops, optimizers


class MyDense(layers.Layer):
    def __init__(self, units, name=None):
        super().__init__(name=name)
        self.units = units

    def build(self, input_shape):
        input_dim = input_shape[-1]
        self.w = self.add_weight(shape=(input_dim, self.units), initializer=initializers.GlorotNormal(), name="kernel",
                                 trainable=True)
        self.b = self.add_weight(shape=(self.units,), initializer=initializers.Zeros(), name="bias", trainable=True)

    def call(self, inputs):
        return ops.matmul(inputs, self.w) + self.b


class MyDropout(layers.Layer):
    def __init__(self, rate, name=None):
        super().__init__(name=name)
        self.rate = rate
        self.seed_generator = keras.random.SeedGenerator(1337)

    def call(self, inputs):
        # the demo applies dropout on every call, training or not
        return keras.random.dropout(inputs, self.rate, seed=self.seed_generator)


class MyModel(keras.Model):
    def __init__(self, hidden_dim, output_dim):
        super().__init__()
        self.dense1 = MyDense(hidden_dim)
        self.dense2 = MyDense(hidden_dim)
        self.dense3 = MyDense(output_dim)
        self.dp = MyDropout(0.1)

    def call(self, x):
        x1 = self.dense1(x)
        x2 = self.dense2(x)
        x = ops.concatenate([x1, x2], axis=-1)
        x = self.dp(x)
        return self.dense3(x)


model = MyModel(hidden_dim=64, output_dim=4)

x = np.random.normal(size=(2000, 32)).astype("float32")
true_map = np.random.normal(size=(32, 4)).astype("float32") / np.sqrt(32)
y = (x @ true_map + 0.1 * np.random.normal(size=(2000, 4))).astype("float32")
model.compile(
    optimizer=optimizers.SGD(learning_rate=0.01),
    loss=losses.MeanSquaredError(),
    metrics=[metrics.MeanSquaredError()],
)
history = model.fit(x, y, batch_size=32, epochs=5, validation_split=0.2, verbose=2)
print("History:", {k: [round(float(v), 4) for v in vs] for k, vs in history.history.items()})
val_mse = history.history["val_mean_squared_error"][-1]
model.summary()
predictions = model.predict(x[:10], verbose=0)
print("predictions:", predictions.shape)

"""Follows keras-io guides/training_with_built_in_methods.py: fit/evaluate/predict on numpy data with
validation_data, compile() with objects and with strings, a custom loss function and a Loss subclass, a
Metric subclass (CategoricalTruePositives), add_loss() from a layer, validation_split, class_weight and
sample_weight, a two-input two-output model with per-output losses and loss_weights, callbacks
(EarlyStopping, ModelCheckpoint) and a learning-rate schedule. MNIST is replaced by offline_data's digits."""
import numpy as np
from clnet import keras
from clnet.keras import layers, ops

from offline_data import mnist_load_data

inputs = keras.Input(shape=(784,), name="digits")
x = layers.Dense(64, activation="relu", name="dense_1")(inputs)
x = layers.Dense(64, activation="relu", name="dense_2")(x)
outputs = layers.Dense(10, activation="softmax", name="predictions")(x)
model = keras.Model(inputs=inputs, outputs=outputs)

(x_train, y_train), (x_test, y_test) = mnist_load_data(n_train=800, n_test=300)
x_train = x_train.reshape(-1, 784).astype("float32") / 255
x_test = x_test.reshape(-1, 784).astype("float32") / 255
y_train = y_train.astype("float32")
y_test = y_test.astype("float32")
x_val, y_val = x_train[-200:], y_train[-200:]
x_train, y_train = x_train[:-200], y_train[:-200]

model.compile(
    optimizer=keras.optimizers.RMSprop(),
    loss=keras.losses.SparseCategoricalCrossentropy(),
    metrics=[keras.metrics.SparseCategoricalAccuracy()],
)
print("Fit model on training data")
history = model.fit(x_train, y_train, batch_size=64, epochs=4, validation_data=(x_val, y_val), verbose=0)
print("history keys:", sorted(history.history))
results = model.evaluate(x_test, y_test, batch_size=128, verbose=0)
print("test loss, test acc:", results)
test_accuracy = float(results[1])
predictions = model.predict(x_test[:3], verbose=0)
print("predictions shape:", predictions.shape)


def get_uncompiled_model():
    inputs = keras.Input(shape=(784,), name="digits")
    x = layers.Dense(64, activation="relu", name="dense_1")(inputs)
    x = layers.Dense(64, activation="relu", name="dense_2")(x)
    outputs = layers.Dense(10, activation="softmax", name="predictions")(x)
    return keras.Model(inputs=inputs, outputs=outputs)


def get_compiled_model():
    model = get_uncompiled_model()
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy", metrics=["sparse_categorical_accuracy"])
    return model


# a custom loss as a function of (y_true, y_pred)
def custom_mean_squared_error(y_true, y_pred):
    return ops.mean(ops.square(y_true - y_pred), axis=-1)


model = get_uncompiled_model()
model.compile(optimizer=keras.optimizers.Adam(), loss=custom_mean_squared_error)
y_train_one_hot = ops.one_hot(y_train, num_classes=10)
model.fit(x_train, y_train_one_hot, batch_size=64, epochs=1, verbose=0)


# a Loss subclass with a parameter
class CustomMSE(keras.losses.Loss):
    def __init__(self, regularization_factor=0.1, name="custom_mse"):
        super().__init__(name=name)
        self.regularization_factor = regularization_factor

    def call(self, y_true, y_pred):
        mse = ops.mean(ops.square(y_true - y_pred), axis=-1)
        reg = ops.mean(ops.square(0.5 - y_pred), axis=-1)
        return mse + reg * self.regularization_factor


model = get_uncompiled_model()
model.compile(optimizer=keras.optimizers.Adam(), loss=CustomMSE())
model.fit(x_train, y_train_one_hot, batch_size=64, epochs=1, verbose=0)


# a Metric subclass: how many samples were correctly classified as belonging to a given class
class CategoricalTruePositives(keras.metrics.Metric):
    def __init__(self, name="categorical_true_positives", **kwargs):
        super().__init__(name=name, **kwargs)
        self.true_positives = self.add_variable(shape=(), name="ctp", initializer="zeros")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.reshape(ops.argmax(y_pred, axis=1), (-1, 1))
        values = ops.cast(y_true, "int32") == ops.cast(y_pred, "int32")
        values = ops.cast(values, "float32")
        if sample_weight is not None:
            sample_weight = ops.cast(sample_weight, "float32")
            values = ops.multiply(values, sample_weight)
        self.true_positives.assign_add(ops.sum(values))

    def result(self):
        return self.true_positives

    def reset_state(self):
        self.true_positives.assign(0.0)


model = get_uncompiled_model()
model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=1e-3),
              loss=keras.losses.SparseCategoricalCrossentropy(), metrics=[CategoricalTruePositives()])
history = model.fit(x_train, y_train.reshape(-1, 1), batch_size=64, epochs=2, verbose=0)
true_positives = history.history["categorical_true_positives"][-1]
print("categorical true positives in the last epoch:", true_positives, "of", len(x_train))


# a layer that adds a regularization loss
class ActivityRegularizationLayer(layers.Layer):
    def call(self, inputs):
        self.add_loss(ops.sum(inputs) * 0.1)
        return inputs


inputs = keras.Input(shape=(784,), name="digits")
x = layers.Dense(64, activation="relu", name="dense_1")(inputs)
x = ActivityRegularizationLayer()(x)
x = layers.Dense(64, activation="relu", name="dense_2")(x)
outputs = layers.Dense(10, name="predictions")(x)
model = keras.Model(inputs=inputs, outputs=outputs)
model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=1e-3),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
history = model.fit(x_train, y_train, batch_size=64, epochs=1, verbose=0)
print("loss with the activity regularization:", history.history["loss"][-1])

# validation_split
model = get_compiled_model()
model.fit(x_train, y_train, batch_size=64, validation_split=0.2, epochs=1, verbose=0)

# class weights: class 5 counts twice
class_weight = {i: 1.0 for i in range(10)}
class_weight[5] = 2.0
model = get_compiled_model()
model.fit(x_train, y_train, class_weight=class_weight, batch_size=64, epochs=1, verbose=0)

# sample weights: the same through per-sample weights
sample_weight = np.ones(shape=(len(y_train),))
sample_weight[y_train == 5] = 2.0
model = get_compiled_model()
model.fit(x_train, y_train, sample_weight=sample_weight, batch_size=64, epochs=1, verbose=0)

# two inputs, two outputs, a loss and a weight per output
image_input = keras.Input(shape=(16, 16, 3), name="img_input")
timeseries_input = keras.Input(shape=(20, 10), name="ts_input")
x1 = layers.Conv2D(3, 3)(image_input)
x1 = layers.GlobalMaxPooling2D()(x1)
x2 = layers.Flatten()(timeseries_input)
x2 = layers.Dense(8)(x2)
x = layers.concatenate([x1, x2])
score_output = layers.Dense(1, name="score_output")(x)
class_output = layers.Dense(5, name="class_output")(x)
model = keras.Model(inputs=[image_input, timeseries_input], outputs=[score_output, class_output])
model.compile(
    optimizer=keras.optimizers.RMSprop(1e-3),
    loss={"score_output": keras.losses.MeanSquaredError(),
          "class_output": keras.losses.CategoricalCrossentropy(from_logits=True)},
    metrics={"score_output": [keras.metrics.MeanAbsoluteError()],
             "class_output": [keras.metrics.CategoricalAccuracy()]},
    loss_weights={"score_output": 2.0, "class_output": 1.0},
)
img_data = np.random.random_sample(size=(64, 16, 16, 3)).astype("float32")
ts_data = np.random.random_sample(size=(64, 20, 10)).astype("float32")
score_targets = np.random.random_sample(size=(64, 1)).astype("float32")
class_targets = np.eye(5, dtype="float32")[np.random.randint(0, 5, size=64)]
history = model.fit([img_data, ts_data], [score_targets, class_targets], batch_size=32, epochs=1, verbose=0)
print("two-output logs:", sorted(history.history))

# callbacks and a learning-rate schedule
model = get_uncompiled_model()
lr_schedule = keras.optimizers.schedules.ExponentialDecay(1e-3, decay_steps=100, decay_rate=0.96, staircase=True)
model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=lr_schedule),
              loss="sparse_categorical_crossentropy", metrics=["sparse_categorical_accuracy"])
callbacks = [
    keras.callbacks.EarlyStopping(monitor="val_loss", min_delta=1e-2, patience=2, verbose=1),
    keras.callbacks.ModelCheckpoint(filepath="mymodel_{epoch}.keras", save_best_only=True,
                                    monitor="val_loss", verbose=1),
]
model.fit(x_train, y_train, epochs=3, batch_size=64, callbacks=callbacks, validation_split=0.2, verbose=0)

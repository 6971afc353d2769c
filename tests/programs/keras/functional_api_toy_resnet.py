"""Follows the "toy ResNet model" of keras-io guides/functional_api.py: a functional graph with residual
connections (layers.add of a block's input and output), GlobalAveragePooling2D, Dropout, trained on CIFAR10
with one-hot labels, a from_logits categorical cross-entropy and RMSprop, validation_split. CIFAR10 comes from
offline_data (the same uint8 layout, labels (n, 1)); widths and sizes are cut to run in seconds."""
import numpy as np
from clnet import keras
from clnet.keras import layers

from offline_data import cifar10_load_data

inputs = keras.Input(shape=(32, 32, 3), name="img")
x = layers.Conv2D(16, 3, activation="relu")(inputs)
x = layers.Conv2D(16, 3, activation="relu")(x)
block_1_output = layers.MaxPooling2D(3)(x)

x = layers.Conv2D(16, 3, activation="relu", padding="same")(block_1_output)
x = layers.Conv2D(16, 3, activation="relu", padding="same")(x)
block_2_output = layers.add([x, block_1_output])

x = layers.Conv2D(16, 3, activation="relu", padding="same")(block_2_output)
x = layers.Conv2D(16, 3, activation="relu", padding="same")(x)
block_3_output = layers.add([x, block_2_output])

x = layers.Conv2D(16, 3, activation="relu")(block_3_output)
x = layers.GlobalAveragePooling2D()(x)
x = layers.Dense(64, activation="relu")(x)
x = layers.Dropout(0.5)(x)
outputs = layers.Dense(10)(x)

model = keras.Model(inputs, outputs, name="toy_resnet")
model.summary()

(x_train, y_train), (x_test, y_test) = cifar10_load_data(n_train=600, n_test=200)
x_train = x_train.astype("float32") / 255.0
x_test = x_test.astype("float32") / 255.0
y_train = keras.utils.to_categorical(y_train, 10)
y_test = keras.utils.to_categorical(y_test, 10)

model.compile(
    optimizer=keras.optimizers.RMSprop(1e-3),
    loss=keras.losses.CategoricalCrossentropy(from_logits=True),
    metrics=["acc"],
)
model.fit(x_train, y_train, batch_size=32, epochs=8, validation_split=0.2, verbose=2)
loss, test_accuracy = model.evaluate(x_test, y_test, verbose=0)
print("test accuracy:", test_accuracy)

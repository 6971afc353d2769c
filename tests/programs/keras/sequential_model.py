"""Follows keras-io guides/sequential_model.py: building a Sequential model from a list and with add(),
pop(), the weights appearing on first call, summary(), Input shapes, feature extraction with
keras.Model(inputs=model.inputs, outputs=[layer.output ...]), and transfer learning by freezing all layers
but the last. MNIST-like digits come from offline_data; sizes are cut to run in seconds."""
import numpy as np
from clnet import keras
from clnet.keras import layers

from offline_data import mnist_load_data

# a Sequential model from a list, called on a test input
model = keras.Sequential(
    [
        layers.Dense(2, activation="relu", name="layer1"),
        layers.Dense(3, activation="relu", name="layer2"),
        layers.Dense(4, name="layer3"),
    ]
)
x = np.ones((3, 3), dtype="float32")
y = model(x)
print("output shape:", tuple(y.shape), "layers:", len(model.layers))

# the same model built incrementally with add(), and pop()
model = keras.Sequential()
model.add(layers.Dense(2, activation="relu"))
model.add(layers.Dense(3, activation="relu"))
model.add(layers.Dense(4))
model.pop()
print("layers after pop():", len(model.layers))

# a layer has no weights until it sees an input shape
layer = layers.Dense(3)
print("weights before the first call:", len(layer.weights))
x = np.ones((1, 4), dtype="float32")
y = layer(x)
print("weights after:", len(layer.weights), [tuple(w.shape) for w in layer.weights])

# with an Input first, the model is built at once and summary() shows the shapes
model = keras.Sequential()
model.add(keras.Input(shape=(28, 28, 1)))
model.add(layers.Conv2D(8, 5, strides=2, activation="relu"))
model.add(layers.Conv2D(8, 3, activation="relu"))
model.add(layers.MaxPooling2D(2))
model.summary()
model.add(layers.Conv2D(16, 3, activation="relu"))
model.add(layers.GlobalMaxPooling2D())
model.add(layers.Dense(10))
model.summary()

# feature extraction: every layer's output as a model output
feature_extractor = keras.Model(inputs=model.inputs, outputs=[layer.output for layer in model.layers])
features = feature_extractor(np.random.rand(2, 28, 28, 1).astype("float32"))
print("feature shapes:", [tuple(f.shape) for f in features])

# train the whole model a little on digits (the "pre-training")
(x_train, y_train), (x_test, y_test) = mnist_load_data(n_train=1000, n_test=300)
x_train = x_train[..., None].astype("float32") / 255
x_test = x_test[..., None].astype("float32") / 255
model.compile(optimizer=keras.optimizers.Adam(3e-3),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
model.fit(x_train[:600], y_train[:600], batch_size=32, epochs=5, verbose=0)

# transfer learning: freeze every layer but the last, re-initialise nothing, and fine-tune
for layer in model.layers[:-1]:
    layer.trainable = False
frozen_before = [w.copy() for w in model.layers[0].get_weights()]
head_before = [w.copy() for w in model.layers[-1].get_weights()]
model.compile(optimizer=keras.optimizers.Adam(3e-3),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
model.fit(x_train[600:], y_train[600:], batch_size=32, epochs=3, verbose=0)
frozen_moved = max(float(np.max(np.abs(a - b))) for a, b in zip(frozen_before, model.layers[0].get_weights()))
head_moved = max(float(np.max(np.abs(a - b))) for a, b in zip(head_before, model.layers[-1].get_weights()))
print("frozen layer moved by", frozen_moved, "; head moved by", head_moved)
assert frozen_moved == 0.0 and head_moved > 0.0
print("trainable weights:", len(model.trainable_weights), "non-trainable:", len(model.non_trainable_weights))
loss, test_accuracy = model.evaluate(x_test, y_test, verbose=0)
print("test accuracy after fine-tuning the head:", test_accuracy)

"""Follows keras-io examples/vision/mnist_convnet.py ("Simple MNIST convnet"): two Conv2D/MaxPooling2D
stages, Flatten, Dropout and a softmax Dense, trained with fit(validation_split=) on one-hot labels and
scored with evaluate(). MNIST is replaced by offline_data's 28x28 digits; sizes are cut to run in seconds."""
import numpy as np
from clnet import keras
from clnet.keras import layers

from offline_data import mnist_load_data

num_classes = 10
input_shape = (28, 28, 1)

# the data, split between train and test sets (keras.datasets.mnist.load_data() in the original)
(x_train, y_train), (x_test, y_test) = mnist_load_data(n_train=1000, n_test=300)

# scale images to [0, 1] and give them a channel axis
x_train = x_train.astype("float32") / 255
x_test = x_test.astype("float32") / 255
x_train = np.expand_dims(x_train, -1)
x_test = np.expand_dims(x_test, -1)
print("x_train shape:", x_train.shape)
print(x_train.shape[0], "train samples")
print(x_test.shape[0], "test samples")

# class vectors to one-hot matrices
y_train = keras.utils.to_categorical(y_train, num_classes)
y_test = keras.utils.to_categorical(y_test, num_classes)

model = keras.Sequential(
    [
        keras.Input(shape=input_shape),
        layers.Conv2D(8, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(16, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(num_classes, activation="softmax"),
    ]
)
model.summary()

batch_size = 32
epochs = 5
model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, validation_split=0.1, verbose=2)

score = model.evaluate(x_test, y_test, verbose=0)
print("Test loss:", score[0])
print("Test accuracy:", score[1])
test_accuracy = float(score[1])

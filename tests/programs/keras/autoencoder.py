"""Follows keras-io examples/vision/autoencoder.py ("Convolutional autoencoder for image denoising"): MNIST
scaled to [0, 1] with a channel axis, Gaussian noise added and clipped, an encoder of Conv2D + MaxPooling2D
(padding="same") and a decoder of strided Conv2DTranspose layers ending in a sigmoid Conv2D, trained first to
reconstruct clean images, then to map noisy images to clean ones, with binary cross-entropy. MNIST comes from
offline_data; widths and sizes are cut to run in seconds."""
import numpy as np
from clnet import keras
from clnet.keras import layers

from offline_data import mnist_load_data


def preprocess(array):
    """Normalizes the supplied array and reshapes it into the appropriate format."""
    array = array.astype("float32") / 255.0
    return np.reshape(array, (len(array), 28, 28, 1))


def noise(array):
    """Adds random noise to each image in the supplied array."""
    noise_factor = 0.4
    noisy_array = array + noise_factor * np.random.normal(loc=0.0, scale=1.0, size=array.shape)
    return np.clip(noisy_array, 0.0, 1.0).astype("float32")


(train_data, _), (test_data, _) = mnist_load_data(n_train=600, n_test=200)
train_data = preprocess(train_data)
test_data = preprocess(test_data)
noisy_train_data = noise(train_data)
noisy_test_data = noise(test_data)

input = layers.Input(shape=(28, 28, 1))

# Encoder
x = layers.Conv2D(16, (3, 3), activation="relu", padding="same")(input)
x = layers.MaxPooling2D((2, 2), padding="same")(x)
x = layers.Conv2D(16, (3, 3), activation="relu", padding="same")(x)
x = layers.MaxPooling2D((2, 2), padding="same")(x)

# Decoder
x = layers.Conv2DTranspose(16, (3, 3), strides=2, activation="relu", padding="same")(x)
x = layers.Conv2DTranspose(16, (3, 3), strides=2, activation="relu", padding="same")(x)
x = layers.Conv2D(1, (3, 3), activation="sigmoid", padding="same")(x)

autoencoder = keras.Model(input, x)
autoencoder.compile(optimizer="adam", loss="binary_crossentropy")
autoencoder.summary()

autoencoder.fit(x=train_data, y=train_data, epochs=3, batch_size=32, shuffle=True,
                validation_data=(test_data, test_data), verbose=2)
history = autoencoder.fit(x=noisy_train_data, y=train_data, epochs=3, batch_size=32, shuffle=True,
                          validation_data=(noisy_test_data, test_data), verbose=2)
denoised = autoencoder.predict(noisy_test_data, verbose=0)
print("denoised images:", denoised.shape)
denoising_loss = history.history["val_loss"][-1]
print("binary cross-entropy of the denoised test images:", denoising_loss)

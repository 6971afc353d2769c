"""Follows keras-io examples/timeseries/timeseries_classification_from_scratch.py: FordA-style univariate series
reshaped to (samples, timesteps, 1), labels -1/1 mapped to 0/1, shuffled, a fully convolutional network
(three Conv1D + BatchNormalization + ReLU blocks, GlobalAveragePooling1D, softmax Dense), trained with
ModelCheckpoint(save_best_only), ReduceLROnPlateau and EarlyStopping callbacks, and the best checkpoint
reloaded for evaluate(). The UCR download is replaced by offline_data.forda; sizes are cut (and, with about
200 steps instead of the original's 500 epochs, BatchNormalization's momentum is 0.9 so that its moving
statistics get near the data's before the evaluation)."""
import numpy as np
from clnet import keras

from offline_data import forda

(x_train, y_train), (x_test, y_test) = forda(n_train=600, n_test=200, length=128)
x_train = x_train.reshape((x_train.shape[0], x_train.shape[1], 1))
x_test = x_test.reshape((x_test.shape[0], x_test.shape[1], 1))
num_classes = len(np.unique(y_train))

idx = np.random.permutation(len(x_train))
x_train = x_train[idx]
y_train = y_train[idx]
y_train[y_train == -1] = 0
y_test[y_test == -1] = 0


def make_model(input_shape):
    input_layer = keras.layers.Input(input_shape)

    conv1 = keras.layers.Conv1D(filters=16, kernel_size=3, padding="same")(input_layer)
    conv1 = keras.layers.BatchNormalization(momentum=0.9)(conv1)
    conv1 = keras.layers.ReLU()(conv1)

    conv2 = keras.layers.Conv1D(filters=16, kernel_size=3, padding="same")(conv1)
    conv2 = keras.layers.BatchNormalization(momentum=0.9)(conv2)
    conv2 = keras.layers.ReLU()(conv2)

    conv3 = keras.layers.Conv1D(filters=16, kernel_size=3, padding="same")(conv2)
    conv3 = keras.layers.BatchNormalization(momentum=0.9)(conv3)
    conv3 = keras.layers.ReLU()(conv3)

    gap = keras.layers.GlobalAveragePooling1D()(conv3)
    output_layer = keras.layers.Dense(num_classes, activation="softmax")(gap)
    return keras.models.Model(inputs=input_layer, outputs=output_layer)


model = make_model(input_shape=x_train.shape[1:])
model.summary()

epochs = 12
batch_size = 32
callbacks = [
    keras.callbacks.ModelCheckpoint("best_model.keras", save_best_only=True, monitor="val_loss"),
    keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=3, min_lr=0.0001),
    keras.callbacks.EarlyStopping(monitor="val_loss", patience=6, verbose=1),
]
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["sparse_categorical_accuracy"])
history = model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, callbacks=callbacks,
                    validation_split=0.2, verbose=2)

model = keras.models.load_model("best_model.keras")
test_loss, test_acc = model.evaluate(x_test, y_test, verbose=0)
print("Test accuracy", test_acc)
print("Test loss", test_loss)
test_accuracy = float(test_acc)

"""Follows keras-io guides/intro_to_keras_for_engineers.py: a Sequential convnet with GlobalAveragePooling2D
compiled with a loss object, an optimizer object and a metric object, trained with ModelCheckpoint and
EarlyStopping callbacks, saved with model.save() and reloaded with keras.saving.load_model() for predict().
The guide's MNIST download is replaced by offline_data's digits; sizes are cut to run in seconds."""
import numpy as np
from clnet import keras
from clnet.keras import layers

from offline_data import mnist_load_data

(x_train, y_train), (x_test, y_test) = mnist_load_data(n_train=1000, n_test=300)

# scale to [0, 1], add a channel axis
x_train = np.expand_dims(x_train.astype("float32") / 255, -1)
x_test = np.expand_dims(x_test.astype("float32") / 255, -1)
print("x_train shape:", x_train.shape, "y_train shape:", y_train.shape)

num_classes = 10
input_shape = (28, 28, 1)

model = keras.Sequential(
    [
        keras.layers.Input(shape=input_shape),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Conv2D(16, kernel_size=(3, 3), activation="relu"),
        keras.layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dropout(0.3),
        keras.layers.Dense(num_classes, activation="softmax"),
    ]
)
model.summary()

model.compile(
    loss=keras.losses.SparseCategoricalCrossentropy(),
    optimizer=keras.optimizers.Adam(learning_rate=3e-3),
    metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")],
)

batch_size = 32
epochs = 8
callbacks = [
    keras.callbacks.ModelCheckpoint(filepath="model_at_epoch_{epoch}.keras"),
    keras.callbacks.EarlyStopping(monitor="val_loss", patience=3),
]
history = model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, validation_split=0.15,
                    callbacks=callbacks, verbose=2)
score = model.evaluate(x_test, y_test, verbose=0)
print("test loss, test acc:", score)

# the guide saves the final model and reloads it to predict
model.save("final_model.keras")
model = keras.saving.load_model("final_model.keras")
predictions = model.predict(x_test, verbose=0)
test_accuracy = float(np.mean(np.argmax(predictions, axis=1) == y_test))
print("accuracy of the reloaded model's predictions:", test_accuracy)

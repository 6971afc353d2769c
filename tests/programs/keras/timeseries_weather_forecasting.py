"""Follows keras-io examples/timeseries/timeseries_weather_forecasting.py: seven Jena climate columns,
normalised with the training split's mean and std, hourly windows (one reading every `step` hours over
`past` hours) whose target is the temperature `future` hours after the window, an LSTM(32) into Dense(1)
trained with MSE and Adam, ModelCheckpoint(save_best_only, save_weights_only) and EarlyStopping callbacks.
The original builds windows with keras.utils.timeseries_dataset_from_array (a tf.data pipeline); here the same
windows are cut with numpy. The CSV download is replaced by offline_data.jena_climate; sizes are cut."""
import numpy as np
from clnet import keras

from offline_data import jena_climate, JENA_COLUMNS

split_fraction = 0.715
step = 6
past = 120
future = 12
learning_rate = 0.001
batch_size = 64
epochs = 5

features = jena_climate(n=3000)
print("columns:", JENA_COLUMNS)
train_split = int(split_fraction * int(features.shape[0]))


def normalize(data, train_split):
    data_mean = data[:train_split].mean(axis=0)
    data_std = data[:train_split].std(axis=0)
    return (data - data_mean) / data_std


features = normalize(features, train_split)
train_data = features[0:train_split - 1]
val_data = features[train_split:]


def windows(data, start_target):
    """Inputs: `past` hours sampled every `step` hours; target: the temperature `future` hours later."""
    x, y = [], []
    for i in range(0, len(data) - past - future, 4):
        x.append(data[i:i + past:step])
        y.append(data[i + past + future - 1, 1])
    return np.asarray(x, dtype="float32"), np.asarray(y, dtype="float32")[:, None]


x_train, y_train = windows(train_data, past + future)
x_val, y_val = windows(val_data, past + future)
print("Input shape:", x_train.shape, "Target shape:", y_train.shape)

inputs = keras.layers.Input(shape=(x_train.shape[1], x_train.shape[2]))
lstm_out = keras.layers.LSTM(32)(inputs)
outputs = keras.layers.Dense(1)(lstm_out)
model = keras.Model(inputs=inputs, outputs=outputs)
model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss="mse")
model.summary()

path_checkpoint = "model_checkpoint.weights.h5"
es_callback = keras.callbacks.EarlyStopping(monitor="val_loss", min_delta=0, patience=5)
modelckpt_callback = keras.callbacks.ModelCheckpoint(monitor="val_loss", filepath=path_checkpoint, verbose=1,
                                                     save_weights_only=True, save_best_only=True)
history = model.fit(x_train, y_train, epochs=epochs, batch_size=batch_size, validation_data=(x_val, y_val),
                    callbacks=[es_callback, modelckpt_callback], verbose=2)
model.load_weights(path_checkpoint)
val_mse = float(model.evaluate(x_val, y_val, verbose=0))
print("validation MSE of the best checkpoint (normalised temperature):", val_mse)

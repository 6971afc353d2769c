"""Follows keras-io examples/timeseries/timeseries_anomaly_detection.py: a periodic series standardised with
the training mean and std, cut into overlapping windows of TIME_STEPS, a Conv1D / Conv1DTranspose
reconstruction autoencoder with Dropout trained with MSE (validation_split, EarlyStopping), the threshold set
to the largest training reconstruction MAE, and the windows of a second series with an anomaly flagged where
their MAE exceeds it. The NAB downloads are replaced by offline_data.nab_series; sizes are cut."""
import numpy as np
from clnet import keras
from clnet.keras import layers

from offline_data import nab_series

df_small_noise, df_daily_jumpsup = nab_series(n=1200, anomaly_at=900)

training_mean = df_small_noise.mean()
training_std = df_small_noise.std()
df_training_value = (df_small_noise - training_mean) / training_std
print("Number of training samples:", len(df_training_value))

TIME_STEPS = 96


def create_sequences(values, time_steps=TIME_STEPS):
    output = []
    for i in range(len(values) - time_steps + 1):
        output.append(values[i:(i + time_steps)])
    return np.stack(output)


x_train = create_sequences(df_training_value[:, None])[::2]
print("Training input shape: ", x_train.shape)

model = keras.Sequential(
    [
        layers.Input(shape=(x_train.shape[1], x_train.shape[2])),
        layers.Conv1D(filters=16, kernel_size=7, padding="same", strides=2, activation="relu"),
        layers.Dropout(rate=0.2),
        layers.Conv1D(filters=8, kernel_size=7, padding="same", strides=2, activation="relu"),
        layers.Conv1DTranspose(filters=8, kernel_size=7, padding="same", strides=2, activation="relu"),
        layers.Dropout(rate=0.2),
        layers.Conv1DTranspose(filters=16, kernel_size=7, padding="same", strides=2, activation="relu"),
        layers.Conv1DTranspose(filters=1, kernel_size=7, padding="same"),
    ]
)
model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.001), loss="mse")
model.summary()

history = model.fit(x_train, x_train, epochs=12, batch_size=32, validation_split=0.1,
                    callbacks=[keras.callbacks.EarlyStopping(monitor="val_loss", patience=5, mode="min")], verbose=2)

x_train_pred = model.predict(x_train, verbose=0)
train_mae_loss = np.mean(np.abs(x_train_pred - x_train), axis=1)
threshold = np.max(train_mae_loss)
print("Reconstruction error threshold: ", threshold)

df_test_value = (df_daily_jumpsup - training_mean) / training_std
x_test = create_sequences(df_test_value[:, None])
x_test_pred = model.predict(x_test, verbose=0)
test_mae_loss = np.mean(np.abs(x_test_pred - x_test), axis=1).reshape((-1))
anomalies = test_mae_loss > threshold
print("Number of anomaly samples: ", np.sum(anomalies))
anomalous_data_indices = []
for data_idx in range(TIME_STEPS - 1, len(df_test_value) - TIME_STEPS + 1):
    if np.all(anomalies[data_idx - TIME_STEPS + 1: data_idx]):
        anomalous_data_indices.append(data_idx)
# how many flagged windows overlap the inserted anomaly (points 900..959), as a share of all flagged ones
window_starts = np.nonzero(anomalies)[0]
hits = np.sum((window_starts + TIME_STEPS > 900) & (window_starts < 960))
flagged_on_anomaly = float(hits / max(1, len(window_starts)))
print("share of flagged windows that overlap the anomaly:", flagged_on_anomaly, "windows flagged:", len(window_starts))

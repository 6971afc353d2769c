"""Follows keras-io examples/nlp/bidirectional_lstm_imdb.py: IMDB reviews as word-id lists from
imdb.load_data(num_words=), padded with keras.utils.pad_sequences(maxlen=), an Embedding into two stacked
Bidirectional(LSTM) layers (the first with return_sequences=True) and a sigmoid Dense, compiled with
"adam" / "binary_crossentropy" / "accuracy" and fitted with validation_data. keras.datasets.imdb is replaced by
offline_data.imdb_load_data (the same id conventions); sizes are cut to run in seconds."""
import numpy as np
from clnet import keras
from clnet.keras import layers

from offline_data import imdb_load_data

max_features = 60  # only the 60 most frequent words
maxlen = 40  # only the first 40 words of each review

inputs = keras.Input(shape=(None,), dtype="int32")
x = layers.Embedding(max_features, 32)(inputs)
x = layers.Bidirectional(layers.LSTM(16, return_sequences=True))(x)
x = layers.Bidirectional(layers.LSTM(16))(x)
outputs = layers.Dense(1, activation="sigmoid")(x)
model = keras.Model(inputs, outputs)
model.summary()

(x_train, y_train), (x_val, y_val) = imdb_load_data(num_words=max_features, n_train=600, n_test=200)
print(len(x_train), "Training sequences")
print(len(x_val), "Validation sequences")
x_train = keras.utils.pad_sequences(x_train, maxlen=maxlen)
x_val = keras.utils.pad_sequences(x_val, maxlen=maxlen)

model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
history = model.fit(x_train, y_train, batch_size=32, epochs=4, validation_data=(x_val, y_val), verbose=2)
val_accuracy = history.history["val_accuracy"][-1]
print("validation accuracy:", val_accuracy)

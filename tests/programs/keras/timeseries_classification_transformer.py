"""Follows keras-io examples/timeseries/timeseries_classification_transformer.py: transformer encoder blocks
(LayerNormalization, MultiHeadAttention with dropout, a residual add, then a Conv1D feed-forward part with
kernel_size=1 and a second residual), GlobalAveragePooling1D(data_format="channels_first", over the channel axis:
one feature per time step), an MLP head with
Dropout and a softmax output, trained on FordA-style series with sparse categorical cross-entropy and
EarlyStopping(restore_best_weights=True). Data from offline_data.forda; sizes are cut to run in seconds."""
import numpy as np
from clnet import keras
from clnet.keras import layers

from offline_data import forda

(x_train, y_train), (x_test, y_test) = forda(n_train=400, n_test=150, length=64)
x_train = x_train.reshape((x_train.shape[0], x_train.shape[1], 1))
x_test = x_test.reshape((x_test.shape[0], x_test.shape[1], 1))
n_classes = len(np.unique(y_train))
idx = np.random.permutation(len(x_train))
x_train = x_train[idx]
y_train = y_train[idx]
y_train[y_train == -1] = 0
y_test[y_test == -1] = 0


def transformer_encoder(inputs, head_size, num_heads, ff_dim, dropout=0):
    # attention and normalization
    x = layers.MultiHeadAttention(key_dim=head_size, num_heads=num_heads, dropout=dropout)(inputs, inputs)
    x = layers.Dropout(dropout)(x)
    x = layers.LayerNormalization(epsilon=1e-6)(x)
    res = x + inputs

    # feed forward part
    x = layers.Conv1D(filters=ff_dim, kernel_size=1, activation="relu")(res)
    x = layers.Dropout(dropout)(x)
    x = layers.Conv1D(filters=inputs.shape[-1], kernel_size=1)(x)
    x = layers.LayerNormalization(epsilon=1e-6)(x)
    return x + res


def build_model(input_shape, head_size, num_heads, ff_dim, num_transformer_blocks, mlp_units, dropout=0,
                mlp_dropout=0):
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for _ in range(num_transformer_blocks):
        x = transformer_encoder(x, head_size, num_heads, ff_dim, dropout)
    x = layers.GlobalAveragePooling1D(data_format="channels_first")(x)
    for dim in mlp_units:
        x = layers.Dense(dim, activation="relu")(x)
        x = layers.Dropout(mlp_dropout)(x)
    outputs = layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs)


input_shape = x_train.shape[1:]
model = build_model(input_shape, head_size=16, num_heads=2, ff_dim=4, num_transformer_blocks=2, mlp_units=[32],
                    mlp_dropout=0.2, dropout=0.1)
model.compile(loss="sparse_categorical_crossentropy", optimizer=keras.optimizers.Adam(learning_rate=1e-3),
              metrics=["sparse_categorical_accuracy"])
model.summary()
callbacks = [keras.callbacks.EarlyStopping(patience=5, restore_best_weights=True)]
model.fit(x_train, y_train, validation_split=0.2, epochs=8, batch_size=32, callbacks=callbacks, verbose=2)
loss, test_accuracy = model.evaluate(x_test, y_test, verbose=1)
print("test accuracy:", test_accuracy)

"""Follows the "models with multiple inputs and outputs" part of keras-io guides/functional_api.py: a ticket
classifier with three named inputs (title and body word ids, a multi-hot tag vector), Embedding + LSTM encoders
for the texts, concatenate, a priority score output and a department classifier output; compiled with a loss
and a loss weight per output in dicts keyed by the output layers' names, fitted on dicts of numpy arrays
(RMSprop at 1e-2 instead of 1e-3, for fewer epochs). The
guide's random dummy data is kept, with the targets made learnable (they depend on the tags)."""
import numpy as np
from clnet import keras
from clnet.keras import layers

num_tags = 12
num_words = 100
num_departments = 4

title_input = keras.Input(shape=(None,), name="title")
body_input = keras.Input(shape=(None,), name="body")
tags_input = keras.Input(shape=(num_tags,), name="tags")

title_features = layers.Embedding(num_words, 16)(title_input)
body_features = layers.Embedding(num_words, 16)(body_input)
title_features = layers.LSTM(16)(title_features)
body_features = layers.LSTM(8)(body_features)
x = layers.concatenate([title_features, body_features, tags_input])
priority_pred = layers.Dense(1, name="priority")(x)
department_pred = layers.Dense(num_departments, name="department")(x)

model = keras.Model(inputs=[title_input, body_input, tags_input], outputs=[priority_pred, department_pred])
model.summary()

model.compile(
    optimizer=keras.optimizers.RMSprop(1e-2),
    loss={
        "priority": keras.losses.BinaryCrossentropy(from_logits=True),
        "department": keras.losses.CategoricalCrossentropy(from_logits=True),
    },
    loss_weights={"priority": 1.0, "department": 0.2},
)

title_data = np.random.randint(num_words, size=(640, 6))
body_data = np.random.randint(num_words, size=(640, 10))
tags_data = np.random.randint(2, size=(640, num_tags)).astype("float32")
priority_targets = (tags_data[:, :3].sum(axis=1, keepdims=True) >= 2).astype("float32")
department_targets = np.eye(num_departments, dtype="float32")[tags_data[:, 3:7].argmax(axis=1)]

history = model.fit(
    {"title": title_data, "body": body_data, "tags": tags_data},
    {"priority": priority_targets, "department": department_targets},
    epochs=8,
    batch_size=32,
    verbose=2,
)
final_loss = history.history["loss"][-1]
print("weighted total loss per epoch:", [round(float(v), 4) for v in history.history["loss"]])

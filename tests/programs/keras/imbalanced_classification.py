"""Follows keras-io examples/structured_data/imbalanced_classification.py ("Imbalanced classification:
credit card fraud detection"): the last 20% of rows held out, features standardised with the training mean
and std, an MLP with Dropout and a sigmoid output, metrics FalseNegatives / FalsePositives / TrueNegatives /
TruePositives / Precision / Recall, class_weight = 1 / class count, ModelCheckpoint, a large batch. The CSV is
replaced by offline_data.creditcard (same 30 columns, ~2% frauds); sizes are cut to run in seconds."""
import numpy as np
from clnet import keras

from offline_data import creditcard

all_features, all_targets = creditcard(n=3000)
all_targets = all_targets.reshape(-1, 1)
print("all_features.shape:", all_features.shape, "all_targets.shape:", all_targets.shape)

num_val_samples = int(len(all_features) * 0.2)
train_features = all_features[:-num_val_samples]
train_targets = all_targets[:-num_val_samples]
val_features = all_features[-num_val_samples:]
val_targets = all_targets[-num_val_samples:]
print("Number of training samples:", len(train_features))
print("Number of validation samples:", len(val_features))

counts = np.bincount(train_targets[:, 0])
print("Number of positive samples in training data: {} ({:.2f}% of total)".format(
    counts[1], 100 * float(counts[1]) / len(train_targets)))
weight_for_0 = 1.0 / counts[0]
weight_for_1 = 1.0 / counts[1]

mean = np.mean(train_features, axis=0)
train_features -= mean
val_features -= mean
std = np.std(train_features, axis=0)
train_features /= std
val_features /= std

model = keras.Sequential(
    [
        keras.Input(shape=train_features.shape[1:]),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dropout(0.3),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dropout(0.3),
        keras.layers.Dense(1, activation="sigmoid"),
    ]
)
model.summary()

metrics = [
    keras.metrics.FalseNegatives(name="fn"),
    keras.metrics.FalsePositives(name="fp"),
    keras.metrics.TrueNegatives(name="tn"),
    keras.metrics.TruePositives(name="tp"),
    keras.metrics.Precision(name="precision"),
    keras.metrics.Recall(name="recall"),
]
model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy", metrics=metrics)
callbacks = [keras.callbacks.ModelCheckpoint("fraud_model_at_epoch_{epoch}.keras")]
class_weight = {0: weight_for_0, 1: weight_for_1}
history = model.fit(
    train_features,
    train_targets,
    batch_size=512,
    epochs=8,
    verbose=2,
    callbacks=callbacks,
    validation_data=(val_features, val_targets),
    class_weight=class_weight,
)
val_recall = history.history["val_recall"][-1]
val_tp, val_fn = history.history["val_tp"][-1], history.history["val_fn"][-1]
print(f"frauds caught in validation: {val_tp:.0f} of {val_tp + val_fn:.0f} (recall {val_recall:.3f});",
      f"legitimate transactions flagged: {history.history['val_fp'][-1]:.0f}")

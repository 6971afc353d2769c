"""Follows keras-io guides/writing_a_custom_training_loop_in_torch.py (Keras 3, torch backend): a functional
MNIST model trained by a hand-written loop over a DataLoader of TensorDatasets: forward, a Keras loss,
model.zero_grad(), loss.backward(), the gradients read from v.value.grad and applied with
optimizer.apply() under no_grad(); CategoricalAccuracy metrics updated per batch and reset per epoch; a layer
that add_loss()es an activity penalty summed into the loss. MNIST comes from offline_data."""
import numpy as np
import clnet as torch
from clnet import keras

from offline_data import mnist_load_data


def get_model():
    inputs = keras.Input(shape=(784,), name="digits")
    x1 = keras.layers.Dense(64, activation="relu")(inputs)
    x2 = keras.layers.Dense(64, activation="relu")(x1)
    outputs = keras.layers.Dense(10, name="predictions")(x2)
    return keras.Model(inputs=inputs, outputs=outputs)


batch_size = 32
(x_train, y_train), (x_test, y_test) = mnist_load_data(n_train=1000, n_test=200)
x_train = np.reshape(x_train, (-1, 784)).astype("float32") / 255
x_test = np.reshape(x_test, (-1, 784)).astype("float32") / 255
y_train = keras.utils.to_categorical(y_train, 10)
y_test = keras.utils.to_categorical(y_test, 10)
x_val, y_val = x_train[-200:], y_train[-200:]
x_train, y_train = x_train[:-200], y_train[:-200]

train_dataset = torch.utils.data.TensorDataset(torch.from_numpy(x_train), torch.from_numpy(y_train))
val_dataset = torch.utils.data.TensorDataset(torch.from_numpy(x_val), torch.from_numpy(y_val))
train_dataloader = torch.utils.data.DataLoader(train_dataset, batch_size=batch_size, shuffle=True)
val_dataloader = torch.utils.data.DataLoader(val_dataset, batch_size=batch_size, shuffle=False)

# a Keras optimizer and a Keras loss, with accuracy metrics
model = get_model()
optimizer = keras.optimizers.Adam(learning_rate=1e-3)
loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True)
train_acc_metric = keras.metrics.CategoricalAccuracy()
val_acc_metric = keras.metrics.CategoricalAccuracy()

epochs = 3
for epoch in range(epochs):
    print(f"\nStart of epoch {epoch}")
    for step, (inputs, targets) in enumerate(train_dataloader):
        logits = model(inputs)
        loss = loss_fn(targets, logits)

        model.zero_grad()
        trainable_weights = [v for v in model.trainable_weights]
        loss.backward()
        gradients = [v.value.grad for v in trainable_weights]
        with torch.no_grad():
            optimizer.apply(gradients, trainable_weights)

        train_acc_metric.update_state(targets, logits)
        if step % 10 == 0:
            print(f"Training loss (for 1 batch) at step {step}: {loss.detach().numpy():.4f}")
            print(f"Seen so far: {(step + 1) * batch_size} samples")

    train_acc = train_acc_metric.result()
    print(f"Training acc over epoch: {float(train_acc):.4f}")
    train_acc_metric.reset_state()

    for x_batch_val, y_batch_val in val_dataloader:
        val_logits = model(x_batch_val, training=False)
        val_acc_metric.update_state(y_batch_val, val_logits)
    val_acc = val_acc_metric.result()
    val_acc_metric.reset_state()
    print(f"Validation acc: {float(val_acc):.4f}")
val_accuracy = float(val_acc)


# losses tracked by the model: an activity penalty added to the loss of each step
class ActivityRegularizationLayer(keras.layers.Layer):
    def call(self, inputs):
        self.add_loss(1e-4 * keras.ops.sum(inputs))
        return inputs


inputs = keras.Input(shape=(784,), name="digits")
x = keras.layers.Dense(64, activation="relu")(inputs)
x = ActivityRegularizationLayer()(x)
x = keras.layers.Dense(64, activation="relu")(x)
outputs = keras.layers.Dense(10, name="predictions")(x)
model = keras.Model(inputs=inputs, outputs=outputs)
optimizer = keras.optimizers.Adam(learning_rate=1e-3)
penalties = []
for step, (inputs, targets) in enumerate(train_dataloader):
    logits = model(inputs)
    loss = loss_fn(targets, logits)
    if model.losses:
        penalty = sum(model.losses)
        penalties.append(float(penalty.detach()))
        loss = loss + penalty
    model.zero_grad()
    trainable_weights = [v for v in model.trainable_weights]
    loss.backward()
    gradients = [v.value.grad for v in trainable_weights]
    with torch.no_grad():
        optimizer.apply(gradients, trainable_weights)
print("steps with a tracked loss:", len(penalties), "first/last penalty:", penalties[0], penalties[-1])
assert len(penalties) == len(train_dataloader)

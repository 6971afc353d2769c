"""Follows the first loop of keras-io guides/writing_a_custom_training_loop_in_torch.py (Keras 3, torch
backend): a Keras functional model trained by a torch optimizer over model.parameters() with a torch loss
(nn.CrossEntropyLoss, arguments in torch's (input, target) order), model.zero_grad(), loss.backward(),
optimizer.step(). A Keras model is a torch Module there, so this needs clnet.keras models to be
clnet.nn Modules. MNIST comes from offline_data."""
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
(x_train, y_train), (x_test, y_test) = mnist_load_data(n_train=800, n_test=300)
x_train = np.reshape(x_train, (-1, 784)).astype("float32") / 255
x_test = np.reshape(x_test, (-1, 784)).astype("float32") / 255
y_train = keras.utils.to_categorical(y_train, 10)

train_dataset = torch.utils.data.TensorDataset(torch.from_numpy(x_train), torch.from_numpy(y_train))
train_dataloader = torch.utils.data.DataLoader(train_dataset, batch_size=batch_size, shuffle=True)

model = get_model()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
loss_fn = torch.nn.CrossEntropyLoss()

epochs = 3
for epoch in range(epochs):
    for step, (inputs, targets) in enumerate(train_dataloader):
        logits = model(inputs)
        loss = loss_fn(logits, targets)
        model.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 10 == 0:
            print(f"Training loss (for 1 batch) at step {step}: {loss.detach().numpy():.4f}")

test_logits = keras.ops.convert_to_numpy(model(x_test, training=False))
test_accuracy = float(np.mean(np.argmax(test_logits, axis=1) == y_test))
print("test accuracy:", test_accuracy)

"""Follows keras-io guides/writing_your_own_callbacks.py: a Callback that logs every hook of fit, evaluate and
predict with its logs' keys, one that prints the loss and MAE per batch and epoch, EarlyStoppingAtMinLoss
(stops after `patience` epochs without improvement and restores the best weights with get_weights /
set_weights, setting model.stop_training), and a CustomLearningRateScheduler that assigns the optimizer's
learning rate each epoch from a schedule table. The guide's MNIST regression problem uses offline_data."""
import numpy as np
from clnet import keras

from offline_data import mnist_load_data


def get_model():
    model = keras.Sequential()
    model.add(keras.layers.Dense(1))
    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=0.1), loss="mean_squared_error",
                  metrics=["mean_absolute_error"])
    return model


(x_train, y_train), (x_test, y_test) = mnist_load_data(n_train=1000, n_test=300)
x_train = x_train.reshape(-1, 784).astype("float32") / 255.0
x_test = x_test.reshape(-1, 784).astype("float32") / 255.0
y_train, y_test = y_train.astype("float32"), y_test.astype("float32")
x_train, y_train = x_train[:1000], y_train[:1000]
x_test, y_test = x_test[:300], y_test[:300]

hooks = []


class CustomCallback(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        hooks.append("on_train_begin")
        print("Starting training; got log keys: {}".format(list(logs.keys())))

    def on_train_end(self, logs=None):
        hooks.append("on_train_end")
        print("Stop training; got log keys: {}".format(list(logs.keys())))

    def on_epoch_begin(self, epoch, logs=None):
        hooks.append("on_epoch_begin")
        print("Start epoch {} of training; got log keys: {}".format(epoch, list(logs.keys())))

    def on_epoch_end(self, epoch, logs=None):
        hooks.append("on_epoch_end")
        print("End epoch {} of training; got log keys: {}".format(epoch, list(logs.keys())))

    def on_test_begin(self, logs=None):
        hooks.append("on_test_begin")

    def on_test_end(self, logs=None):
        hooks.append("on_test_end")

    def on_predict_begin(self, logs=None):
        hooks.append("on_predict_begin")

    def on_predict_end(self, logs=None):
        hooks.append("on_predict_end")

    def on_train_batch_begin(self, batch, logs=None):
        hooks.append("on_train_batch_begin")

    def on_train_batch_end(self, batch, logs=None):
        hooks.append("on_train_batch_end")

    def on_test_batch_begin(self, batch, logs=None):
        hooks.append("on_test_batch_begin")

    def on_test_batch_end(self, batch, logs=None):
        hooks.append("on_test_batch_end")

    def on_predict_batch_begin(self, batch, logs=None):
        hooks.append("on_predict_batch_begin")

    def on_predict_batch_end(self, batch, logs=None):
        hooks.append("on_predict_batch_end")


model = get_model()
model.fit(x_train, y_train, batch_size=128, epochs=1, verbose=0, validation_split=0.5, callbacks=[CustomCallback()])
res = model.evaluate(x_test, y_test, batch_size=128, verbose=0, callbacks=[CustomCallback()])
res = model.predict(x_test, batch_size=128, callbacks=[CustomCallback()], verbose=0)
counts = {h: hooks.count(h) for h in sorted(set(hooks))}
print("hook calls:", counts)
# 500 training samples / 128 -> 4 batches; 500 validation + 300 test samples -> 4 + 3 test batches
assert counts["on_train_batch_end"] == 4 and counts["on_test_batch_end"] == 7
assert counts["on_predict_batch_end"] == 3 and counts["on_epoch_end"] == 1


class LossAndErrorPrintingCallback(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        print("Up to batch {}, the average loss is {:7.2f}.".format(batch, logs["loss"]))

    def on_test_batch_end(self, batch, logs=None):
        print("Up to batch {}, the average loss is {:7.2f}.".format(batch, logs["loss"]))

    def on_epoch_end(self, epoch, logs=None):
        print("The average loss for epoch {} is {:7.2f} and mean absolute error is {:7.2f}.".format(
            epoch, logs["loss"], logs["mean_absolute_error"]))


model = get_model()
model.fit(x_train, y_train, batch_size=128, epochs=2, verbose=0, callbacks=[LossAndErrorPrintingCallback()])
res = model.evaluate(x_test, y_test, batch_size=128, verbose=0, callbacks=[LossAndErrorPrintingCallback()])


class EarlyStoppingAtMinLoss(keras.callbacks.Callback):
    """Stop when the loss is at its minimum (it has not decreased for `patience` epochs)."""

    def __init__(self, patience=0):
        super().__init__()
        self.patience = patience
        self.best_weights = None

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = np.inf

    def on_epoch_end(self, epoch, logs=None):
        current = logs.get("loss")
        if np.less(current, self.best):
            self.best = current
            self.wait = 0
            self.best_weights = self.model.get_weights()
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.stopped_epoch = epoch
                self.model.stop_training = True
                print("Restoring model weights from the end of the best epoch.")
                self.model.set_weights(self.best_weights)

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")


model = get_model()
stopper = EarlyStoppingAtMinLoss()
model.fit(x_train, y_train, batch_size=64, epochs=30, verbose=0,
          callbacks=[LossAndErrorPrintingCallback(), stopper])
best_loss = float(stopper.best)
print("best training loss before stopping:", best_loss)


class CustomLearningRateScheduler(keras.callbacks.Callback):
    """Sets the learning rate from schedule(epoch, lr) at the start of each epoch."""

    def __init__(self, schedule):
        super().__init__()
        self.schedule = schedule

    def on_epoch_begin(self, epoch, logs=None):
        if not hasattr(self.model.optimizer, "learning_rate"):
            raise ValueError('Optimizer must have a "learning_rate" attribute.')
        lr = self.model.optimizer.learning_rate
        scheduled_lr = self.schedule(epoch, lr)
        self.model.optimizer.learning_rate = scheduled_lr
        print(f"\nEpoch {epoch}: Learning rate is {float(keras.ops.convert_to_numpy(scheduled_lr))}.")


LR_SCHEDULE = [(3, 0.05), (6, 0.01), (9, 0.005), (12, 0.001)]


def lr_schedule(epoch, lr):
    if epoch < LR_SCHEDULE[0][0] or epoch > LR_SCHEDULE[-1][0]:
        return lr
    for i in range(len(LR_SCHEDULE)):
        if epoch == LR_SCHEDULE[i][0]:
            return LR_SCHEDULE[i][1]
    return lr


model = get_model()
model.fit(x_train, y_train, batch_size=64, epochs=8, verbose=0,
          callbacks=[LossAndErrorPrintingCallback(), CustomLearningRateScheduler(lr_schedule)])
final_lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
print("learning rate after the schedule:", final_lr)
assert abs(final_lr - 0.01) < 1e-7
test_mae = float(model.evaluate(x_test, y_test, verbose=0)[1])
print("test MAE:", test_mae)

"""The lecture's "@tf.function: compile static graph" slides on clnet: only `import tensorflow as tf` changed.

The first slide trains the Keras model with a @tf.function forward pass under GradientTape; the next ones
time the same forward pass as a static graph and eagerly (the lecture's figures: 0.039 s vs 0.025 s for 10
calls in TensorFlow on Colab's GPU, 1.17 s vs 2.36 s for 1000). The timings printed here are this
machine's; they are not checked.

    python examples/tf_function.py
"""
import timeit

import numpy as np

import clnet as tf

N, D, H = 64, 1000, 100
x = tf.convert_to_tensor(np.random.randn(N, D), np.float32)
y = tf.convert_to_tensor(np.random.randn(N, D), np.float32)
model = tf.keras.Sequential()
model.add(tf.keras.layers.Dense(H, input_shape=(D,),
                               activation=tf.nn.relu))
model.add(tf.keras.layers.Dense(D))
optimizer = tf.optimizers.SGD(1e-1)


@tf.function
def model_func(x, y):
    y_pred = model(x)
    loss = tf.losses.MeanSquaredError()(y_pred, y)
    return y_pred, loss


for t in range(50):
    with tf.GradientTape() as tape:
        y_pred, loss = model_func(x, y)
    gradients = tape.gradient(
        loss, model.trainable_variables)
    optimizer.apply_gradients(
        zip(gradients, model.trainable_variables))
print("loss after 50 steps:", float(loss))


@tf.function
def model_static(x, y):
    y_pred = model(x)
    loss = tf.losses.MeanSquaredError()(y_pred, y)
    return y_pred, loss


def model_dynamic(x, y):
    y_pred = model(x)
    loss = tf.losses.MeanSquaredError()(y_pred, y)


print("dynamic graph: ", timeit.timeit(lambda: model_dynamic(x, y), number=10))
print("static graph: ", timeit.timeit(lambda: model_static(x, y), number=10))

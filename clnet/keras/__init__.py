"""clnet.keras: the Keras 3 API on clnet (`from clnet import keras`).

    model = keras.Sequential([keras.Input(shape=(784,)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x_train, y_train, batch_size=128, epochs=5, validation_split=0.1)

Layers are thin shells over clnet.nn / clnet.ops (one implementation of every piece of math); images are
channels-last (NHWC) and Dense kernels (in, out), as in Keras. Training runs on clnet's autograd and
clnet.optim's fused updates on the default OpenCL device.
"""
from . import config, tree  # noqa: F401
from . import activations, callbacks, constraints, datasets, initializers, layers, losses, metrics  # noqa: F401
from . import models, ops, optimizers, random, regularizers, saving, utils  # noqa: F401
from . import backend  # noqa: F401
from clnet import distribute  # noqa: F401,E402  (keras.distribute: tf.distribute's strategies, issue 15)
from .layers import Input, InputLayer, InputSpec, Layer  # noqa: F401
from .models import Functional, Model, Sequential, load_model  # noqa: F401
from .ops.symbolic import KerasTensor, Operation  # noqa: F401
from .saving import register_keras_serializable  # noqa: F401
from .variables import Variable  # noqa: F401

__version__ = "3.0.0-clnet"  # the Keras API level this front end follows

__all__ = ["Functional", "Input", "InputLayer", "InputSpec", "KerasTensor", "Layer", "Model", "Operation",
           "Sequential", "Variable", "activations", "backend", "callbacks", "config", "constraints", "datasets",
           "initializers", "layers", "load_model", "losses", "metrics", "models", "ops", "optimizers", "random",
           "regularizers", "saving", "tree", "utils"]

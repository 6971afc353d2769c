"""Follows keras-io guides/understanding_masking_and_padding.py: keras.utils.pad_sequences(padding="post"),
an Embedding with mask_zero=True and its output's mask (compute_mask), the Masking layer on float sequences,
masks propagated through a functional model into an LSTM, a custom layer that splits a tensor and passes a mask
on (compute_mask), a layer that opts in to propagation (supports_masking = True), and a TemporalSoftmax that
takes the `mask` argument in call(). The guide builds these without training; here the masked LSTM model is
also trained on padded variable-length sequences (is the count of token 1 larger than that of token 2?)."""
import numpy as np
from clnet import keras
from clnet.keras import layers, ops

raw_inputs = [
    [711, 632, 71],
    [73, 8, 3215, 55, 927],
    [83, 91, 1, 645, 1253, 927],
]
padded_inputs = keras.utils.pad_sequences(raw_inputs, padding="post")
print(padded_inputs)

embedding = layers.Embedding(input_dim=5000, output_dim=16, mask_zero=True)
masked_output = embedding(padded_inputs)
mask = ops.convert_to_numpy(embedding.compute_mask(padded_inputs))
print("embedding mask:", mask)
assert mask.tolist() == (padded_inputs != 0).tolist()

unmasked_embedding = np.random.rand(3, 6, 4).astype("float32")
unmasked_embedding[padded_inputs == 0] = 0.0
masking_layer = layers.Masking()
masked_embedding = masking_layer(unmasked_embedding)
mask = ops.convert_to_numpy(masking_layer.compute_mask(unmasked_embedding))
print("Masking layer's mask:", mask)
assert mask.tolist() == (padded_inputs != 0).tolist()


class TemporalSplit(keras.layers.Layer):
    """Splits the input tensor into 2 tensors along the time dimension."""

    def call(self, inputs):
        return ops.split(inputs, 2, axis=1)

    def compute_mask(self, inputs, mask=None):
        if mask is None:
            return None
        return ops.split(mask, 2, axis=1)


first_half, second_half = TemporalSplit()(masked_embedding)


class MyActivation(keras.layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs):
        return ops.relu(inputs)


class TemporalSoftmax(keras.layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        assert mask is not None
        broadcast_float_mask = ops.expand_dims(ops.cast(mask, "float32"), -1)
        inputs_exp = ops.exp(inputs) * broadcast_float_mask
        inputs_sum = ops.sum(inputs_exp * broadcast_float_mask, axis=-1, keepdims=True)
        return inputs_exp / inputs_sum


inputs = keras.Input(shape=(None,), dtype="int32")
x = layers.Embedding(input_dim=10, output_dim=32, mask_zero=True)(inputs)
x = MyActivation()(x)
x = layers.Dense(1)(x)
outputs = TemporalSoftmax()(x)
model = keras.Model(inputs, outputs)
y = model(np.random.randint(0, 10, size=(32, 100)))

# a masked LSTM classifier trained on padded sequences of different lengths
inputs = keras.Input(shape=(None,), dtype="int32")
x = layers.Embedding(input_dim=6, output_dim=8, mask_zero=True)(inputs)
x = layers.LSTM(16)(x)
outputs = layers.Dense(1, activation="sigmoid")(x)
model = keras.Model(inputs, outputs)
sequences = [list(np.random.randint(1, 6, size=np.random.randint(3, 16))) for _ in range(800)]
labels = np.array([int(s.count(1) > s.count(2)) for s in sequences])
padded = keras.utils.pad_sequences(sequences, padding="post")
model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy", metrics=["accuracy"])
model.fit(padded[:600], labels[:600], batch_size=32, epochs=6, verbose=2)
loss, test_accuracy = model.evaluate(padded[600:], labels[600:], verbose=0)
print("test accuracy of the masked LSTM:", test_accuracy)

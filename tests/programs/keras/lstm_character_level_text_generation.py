"""Follows keras-io examples/generative/lstm_character_level_text_generation.py: a text cut into overlapping
sequences of maxlen characters (every `step` characters) with the next character as target, one-hot encoded,
an LSTM(128)-style model with a softmax Dense over the characters, RMSprop with categorical cross-entropy,
and after each epoch text sampled with a temperature (sample() on the predicted distribution). The Nietzsche
download is replaced by offline_data.nietzsche_text; sizes are cut to run in seconds."""
import random

import numpy as np
from clnet import keras
from clnet.keras import layers

from offline_data import nietzsche_text

text = nietzsche_text(n_chars=3000)
text = text.replace("\n", " ")
print("Corpus length:", len(text))

chars = sorted(list(set(text)))
print("Total chars:", len(chars))
char_indices = dict((c, i) for i, c in enumerate(chars))
indices_char = dict((i, c) for i, c in enumerate(chars))

maxlen = 20
step = 3
sentences = []
next_chars = []
for i in range(0, len(text) - maxlen, step):
    sentences.append(text[i:i + maxlen])
    next_chars.append(text[i + maxlen])
print("Number of sequences:", len(sentences))

x = np.zeros((len(sentences), maxlen, len(chars)), dtype="bool")
y = np.zeros((len(sentences), len(chars)), dtype="bool")
for i, sentence in enumerate(sentences):
    for t, char in enumerate(sentence):
        x[i, t, char_indices[char]] = 1
    y[i, char_indices[next_chars[i]]] = 1

model = keras.Sequential(
    [
        keras.Input(shape=(maxlen, len(chars))),
        layers.LSTM(64),
        layers.Dense(len(chars), activation="softmax"),
    ]
)
optimizer = keras.optimizers.RMSprop(learning_rate=0.01)
model.compile(loss="categorical_crossentropy", optimizer=optimizer)


def sample(preds, temperature=1.0):
    """Draws an index from a probability array reshaped by the temperature."""
    preds = np.asarray(preds).astype("float64")
    preds = np.log(preds + 1e-12) / temperature
    exp_preds = np.exp(preds)
    preds = exp_preds / np.sum(exp_preds)
    probas = np.random.multinomial(1, preds, 1)
    return np.argmax(probas)


epochs = 4
batch_size = 64
for epoch in range(epochs):
    history = model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)
    print()
    print("Generating text after epoch: %d" % epoch)
    start_index = random.randint(0, len(text) - maxlen - 1)
    for diversity in [0.2, 1.0]:
        print("...Diversity:", diversity)
        generated = ""
        sentence = text[start_index:start_index + maxlen]
        print('...Generating with seed: "' + sentence + '"')
        for i in range(20):
            x_pred = np.zeros((1, maxlen, len(chars)))
            for t, char in enumerate(sentence):
                x_pred[0, t, char_indices[char]] = 1.0
            preds = model.predict(x_pred, verbose=0)[0]
            next_index = sample(preds, diversity)
            next_char = indices_char[next_index]
            sentence = sentence[1:] + next_char
            generated += next_char
        print("...Generated: ", generated)
final_loss = history.history["loss"][-1]
print("loss of the last epoch (nats per character):", final_loss)

"""Follows keras-io examples/nlp/addition_rnn.py ("Sequence to sequence learning for performing number
addition"): questions "a+b" padded with spaces, optionally reversed, one-hot encoded by a CharacterTable
(encode / decode), an LSTM encoder, RepeatVector to the answer length, an LSTM decoder with
return_sequences=True and a softmax Dense over characters, trained with categorical cross-entropy on a 90/10
split, then decoded answers checked on validation samples. The data is generated as in the original (no
download); one-digit numbers instead of three and sizes cut to run in seconds (with so few distinct
questions, repeats are allowed once every question is in)."""
import numpy as np
from clnet import keras
from clnet.keras import layers

TRAINING_SIZE = 1000
DIGITS = 1
REVERSE = True
MAX_KEYS = (10 ** DIGITS) * (10 ** DIGITS + 1) // 2  # distinct questions, up to order
MAXLEN = DIGITS + 1 + DIGITS


class CharacterTable:
    """One-hot encodes strings over a character set, and decodes model outputs back to strings."""

    def __init__(self, chars):
        self.chars = sorted(set(chars))
        self.char_indices = dict((c, i) for i, c in enumerate(self.chars))
        self.indices_char = dict((i, c) for i, c in enumerate(self.chars))

    def encode(self, C, num_rows):
        x = np.zeros((num_rows, len(self.chars)))
        for i, c in enumerate(C):
            x[i, self.char_indices[c]] = 1
        return x

    def decode(self, x, calc_argmax=True):
        if calc_argmax:
            x = x.argmax(axis=-1)
        return "".join(self.indices_char[x] for x in x)


chars = "0123456789+ "
ctable = CharacterTable(chars)

questions = []
expected = []
seen = set()
rng = np.random.default_rng(0)
while len(questions) < TRAINING_SIZE:
    f = lambda: int("".join(str(d) for d in rng.choice(list(range(10)), int(rng.integers(1, DIGITS + 1)))))
    a, b = f(), f()
    key = tuple(sorted((a, b)))
    if key in seen and len(seen) < MAX_KEYS:  # repeats only once every question is in
        continue
    seen.add(key)
    q = "{}+{}".format(a, b)
    query = q + " " * (MAXLEN - len(q))
    ans = str(a + b)
    ans += " " * (DIGITS + 1 - len(ans))
    if REVERSE:
        query = query[::-1]
    questions.append(query)
    expected.append(ans)
print("Total questions:", len(questions))

x = np.zeros((len(questions), MAXLEN, len(chars)), dtype=bool)
y = np.zeros((len(questions), DIGITS + 1, len(chars)), dtype=bool)
for i, sentence in enumerate(questions):
    x[i] = ctable.encode(sentence, MAXLEN)
for i, sentence in enumerate(expected):
    y[i] = ctable.encode(sentence, DIGITS + 1)

indices = np.arange(len(y))
np.random.shuffle(indices)
x, y = x[indices], y[indices]
split_at = len(x) - len(x) // 10
(x_train, x_val) = x[:split_at], x[split_at:]
(y_train, y_val) = y[:split_at], y[split_at:]

num_layers = 1
model = keras.Sequential()
model.add(layers.Input((MAXLEN, len(chars))))
model.add(layers.LSTM(64))
model.add(layers.RepeatVector(DIGITS + 1))
for _ in range(num_layers):
    model.add(layers.LSTM(64, return_sequences=True))
model.add(layers.Dense(len(chars), activation="softmax"))
model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
model.summary()

epochs = 20
batch_size = 64
for epoch in range(1, epochs):
    print("Iteration", epoch)
    history = model.fit(x_train, y_train, batch_size=batch_size, epochs=1, validation_data=(x_val, y_val),
                        verbose=0)
    for i in range(1):
        ind = np.random.randint(0, len(x_val))
        rowx, rowy = x_val[np.array([ind])], y_val[np.array([ind])]
        preds = np.argmax(model.predict(rowx, verbose=0), axis=-1)
        q = ctable.decode(rowx[0])
        correct = ctable.decode(rowy[0])
        guess = ctable.decode(preds[0], calc_argmax=False)
        print("Q", q[::-1] if REVERSE else q, "T", correct, "☑ " + guess if correct == guess else "☒ " + guess)
val_char_accuracy = history.history["val_accuracy"][-1]
# guessing each answer position's most common training character instead
majority = np.eye(len(chars), dtype=bool)[y_train.sum(axis=0).argmax(axis=-1)]
baseline = float(np.mean(np.all(y_val == majority[None], axis=-1)))
print("the most common character per position would score:", baseline)
print("validation accuracy per character:", val_char_accuracy)

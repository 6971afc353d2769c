"""Follows keras-io examples/nlp/text_classification_from_scratch.py: raw review strings standardised
(lower case, "<br />" removed, punctuation stripped), turned into fixed-length integer sequences by a vocabulary
of the most frequent words (the original's TextVectorization layer, which needs TensorFlow, is done here in
Python the same way: 0 = padding, 1 = out of vocabulary), then Embedding, Dropout, two strided Conv1D,
GlobalMaxPooling1D, Dense, Dropout and a sigmoid output trained with binary cross-entropy; evaluated on a test
split. The aclImdb download is replaced by offline_data.review_texts; sizes are cut."""
import re
import string
from collections import Counter

import numpy as np
from clnet import keras
from clnet.keras import layers

from offline_data import review_texts

max_features = 200
embedding_dim = 32
sequence_length = 48

train_texts, train_labels = review_texts(800, seed=0)
val_texts, val_labels = train_texts[640:], train_labels[640:]
train_texts, train_labels = train_texts[:640], train_labels[:640]
test_texts, test_labels = review_texts(200, seed=1)


def custom_standardization(text):
    text = text.lower().replace("<br />", " ")
    return re.sub("[%s]" % re.escape(string.punctuation), "", text)


counts = Counter(w for t in train_texts for w in custom_standardization(t).split())
vocabulary = {w: i + 2 for i, (w, _) in enumerate(counts.most_common(max_features - 2))}


def vectorize_text(texts):
    out = np.zeros((len(texts), sequence_length), dtype="int64")
    for i, text in enumerate(texts):
        ids = [vocabulary.get(w, 1) for w in custom_standardization(text).split()][:sequence_length]
        out[i, :len(ids)] = ids
    return out


x_train, x_val, x_test = vectorize_text(train_texts), vectorize_text(val_texts), vectorize_text(test_texts)
print("vocabulary size:", len(vocabulary) + 2, "example:", x_train[0][:12])

inputs = keras.Input(shape=(None,), dtype="int64")
x = layers.Embedding(max_features, embedding_dim)(inputs)
x = layers.Dropout(0.5)(x)
x = layers.Conv1D(32, 7, padding="valid", activation="relu", strides=3)(x)
x = layers.Conv1D(32, 7, padding="valid", activation="relu", strides=3)(x)
x = layers.GlobalMaxPooling1D()(x)
x = layers.Dense(32, activation="relu")(x)
x = layers.Dropout(0.5)(x)
predictions = layers.Dense(1, activation="sigmoid", name="predictions")(x)
model = keras.Model(inputs, predictions)
model.compile(loss="binary_crossentropy", optimizer="adam", metrics=["accuracy"])

epochs = 6
model.fit(x_train, train_labels, validation_data=(x_val, val_labels), epochs=epochs, batch_size=32, verbose=2)
loss, test_accuracy = model.evaluate(x_test, test_labels, verbose=0)
print("test accuracy:", test_accuracy)

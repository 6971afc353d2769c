"""Follows keras-io examples/structured_data/collaborative_filtering_movielens.py: user and movie ids encoded
to indices, ratings scaled to [0, 1], a subclassed RecommenderNet with user/movie Embedding vectors
(he_normal, an L2 embeddings_regularizer) and per-id bias Embeddings, the match score from
ops.tensordot(user, movie, 2) plus the biases through a sigmoid, binary cross-entropy and Adam, a 90/10
train/validation split, then the top-rated unseen movies for one user. The MovieLens download is replaced by
offline_data.movielens; sizes are cut to run in seconds."""
import numpy as np
from clnet import keras
from clnet.keras import layers, ops

from offline_data import movielens

user_col, movie_col, rating_col = movielens(n_users=600, n_movies=300, n_ratings=6000)
user_ids = sorted(set(user_col.tolist()))
user2user_encoded = {x: i for i, x in enumerate(user_ids)}
movie_ids = sorted(set(movie_col.tolist()))
movie2movie_encoded = {x: i for i, x in enumerate(movie_ids)}
movie_encoded2movie = {i: x for i, x in enumerate(movie_ids)}
users = np.array([user2user_encoded[u] for u in user_col])
movies = np.array([movie2movie_encoded[m] for m in movie_col])
num_users, num_movies = len(user2user_encoded), len(movie_encoded2movie)
min_rating, max_rating = float(rating_col.min()), float(rating_col.max())
print(f"Number of users: {num_users}, Number of Movies: {num_movies}, Min rating: {min_rating}, "
      f"Max rating: {max_rating}")

order = np.random.permutation(len(users))
x = np.stack([users, movies], axis=1)[order]
y = ((rating_col - min_rating) / (max_rating - min_rating))[order].astype("float32")
train_indices = int(0.9 * len(x))
x_train, x_val, y_train, y_val = x[:train_indices], x[train_indices:], y[:train_indices], y[train_indices:]

EMBEDDING_SIZE = 16


class RecommenderNet(keras.Model):
    def __init__(self, num_users, num_movies, embedding_size, **kwargs):
        super().__init__(**kwargs)
        self.num_users = num_users
        self.num_movies = num_movies
        self.embedding_size = embedding_size
        self.user_embedding = layers.Embedding(num_users, embedding_size, embeddings_initializer="he_normal",
                                               embeddings_regularizer=keras.regularizers.l2(1e-6))
        self.user_bias = layers.Embedding(num_users, 1)
        self.movie_embedding = layers.Embedding(num_movies, embedding_size, embeddings_initializer="he_normal",
                                                embeddings_regularizer=keras.regularizers.l2(1e-6))
        self.movie_bias = layers.Embedding(num_movies, 1)

    def call(self, inputs):
        user_vector = self.user_embedding(inputs[:, 0])
        user_bias = self.user_bias(inputs[:, 0])
        movie_vector = self.movie_embedding(inputs[:, 1])
        movie_bias = self.movie_bias(inputs[:, 1])
        dot_user_movie = ops.tensordot(user_vector, movie_vector, 2)
        # the dot product of all the user vectors with all the movie vectors, as the original computes it
        x = dot_user_movie + user_bias + movie_bias
        return ops.nn.sigmoid(x)


model = RecommenderNet(num_users, num_movies, EMBEDDING_SIZE)
model.compile(loss=keras.losses.BinaryCrossentropy(), optimizer=keras.optimizers.Adam(learning_rate=0.001))
history = model.fit(x=x_train, y=y_train, batch_size=64, epochs=10, verbose=2, validation_data=(x_val, y_val))
val_loss = history.history["val_loss"][-1]
# what always predicting the mean training rating scores (BCE with soft targets is not 0 at its best)
mean = float(np.mean(y_train))
baseline = float(np.mean(-(y_val * np.log(mean) + (1 - y_val) * np.log(1 - mean))))
loss_vs_mean = val_loss / baseline
print(f"validation loss {val_loss:.4f}; predicting the mean rating: {baseline:.4f}; ratio {loss_vs_mean:.4f}")

user_id = user_ids[0]
seen = set(movie_col[user_col == user_id].tolist())
not_seen = [m for m in movie_ids if m not in seen]
user_movie_array = np.array([[user2user_encoded[user_id], movie2movie_encoded[m]] for m in not_seen])
ratings = model.predict(user_movie_array, verbose=0).flatten()
top_ratings_indices = ratings.argsort()[-5:][::-1]
print("top 5 movie recommendations for user", user_id, ":",
      [movie_encoded2movie[user_movie_array[i][1]] for i in top_ratings_indices])
print("validation loss:", val_loss)

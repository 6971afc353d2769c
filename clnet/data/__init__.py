"""clnet.data: tf.data's spellings (`import clnet as tf; tf.data.Dataset.from_tensor_slices(...)`).

Dataset.from_tensor_slices / from_tensors / range / from_generator / zip, with map, filter, shuffle, batch,
padded_batch, unbatch, repeat, take, skip, cache, prefetch, shard, concatenate, enumerate. Iterating a
dataset yields clnet tensors; Keras' fit/evaluate/predict take datasets directly (batched, as in Keras).
"""
from types import SimpleNamespace

from .dataset import AUTOTUNE, INFINITE_CARDINALITY, UNKNOWN_CARDINALITY, Dataset
from .options import AutoShardPolicy, Options
from .structure import TensorSpec

experimental = SimpleNamespace(AUTOTUNE=AUTOTUNE, AutoShardPolicy=AutoShardPolicy,
                               INFINITE_CARDINALITY=INFINITE_CARDINALITY, UNKNOWN_CARDINALITY=UNKNOWN_CARDINALITY,
                               cardinality=lambda dataset: dataset.cardinality(),
                               sample_from_datasets=Dataset.sample_from_datasets)

__all__ = ["AUTOTUNE", "AutoShardPolicy", "Dataset", "INFINITE_CARDINALITY", "Options", "TensorSpec",
           "UNKNOWN_CARDINALITY", "experimental"]

"""clnet.distribute: tf.distribute's names (`import clnet as tf; tf.distribute.MirroredStrategy()`), also
`keras.distribute`. See strategy.py for what each strategy does."""
from types import SimpleNamespace

from .strategy import (MirroredStrategy, MultiWorkerMirroredStrategy, ReduceOp, Strategy, get_strategy,
                       has_strategy, in_cross_replica_context)

experimental = SimpleNamespace(MultiWorkerMirroredStrategy=MultiWorkerMirroredStrategy)

__all__ = ["MirroredStrategy", "MultiWorkerMirroredStrategy", "ReduceOp", "Strategy", "experimental",
           "get_strategy", "has_strategy", "in_cross_replica_context"]

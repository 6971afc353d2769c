"""tf.data.Options: accepted so programs that set them run; clnet's pipeline has nothing to tune by them."""
from __future__ import annotations

import enum


class AutoShardPolicy(enum.IntEnum):
    """How a multi-worker strategy splits a dataset (tf.data.experimental.AutoShardPolicy)."""

    OFF = -1
    AUTO = 0
    FILE = 1
    DATA = 2
    HINT = 3


class _Section:
    """A group of options: any attribute may be set and read back."""

    def __repr__(self):
        return f"{type(self).__name__}({vars(self)})"


class DistributeOptions(_Section):
    def __init__(self):
        self.auto_shard_policy = AutoShardPolicy.AUTO
        self.num_devices = None


class Options(_Section):
    """tf.data.Options(): with_options(options) keeps them with the dataset."""

    def __init__(self):
        self.experimental_distribute = DistributeOptions()
        self.experimental_deterministic = None
        self.deterministic = None
        self.experimental_optimization = _Section()
        self.threading = _Section()

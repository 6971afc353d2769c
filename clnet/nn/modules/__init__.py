"""clnet.nn.modules: the import paths PyTorch programs use (`from torch.nn.modules.loss import _Loss`,
`torch.nn.modules.conv`, ...). Each submodule re-exports the layers that live in clnet.nn's own files;
nothing is defined twice."""
from . import (activation, batchnorm, container, conv, dropout, flatten, instancenorm, linear, loss,  # noqa: F401
               module, normalization, padding, pixelshuffle, pooling, rnn, sparse, transformer, upsampling, utils)
from .. import *  # noqa: F401,F403,E402

"""clnet.nn: PyTorch-style modules, layers, losses, initialisation and functional ops.

    import clnet
    model = clnet.nn.Sequential(clnet.nn.Linear(1000, 100), clnet.nn.ReLU(), clnet.nn.Linear(100, 10))
    loss = clnet.nn.functional.mse_loss(model(x), y)
"""
from . import functional, init  # noqa: F401
from .activation import LeakyReLU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from .container import ModuleDict, ModuleList, Sequential
from .conv import Conv2d
from .dropout import Dropout
from .flatten import Flatten, Unflatten
from .linear import Identity, Linear
from .loss import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, MSELoss, NLLLoss
from .module import Module
from .normalization import BatchNorm1d, BatchNorm2d
from .parameter import Parameter
from . import parallel  # noqa: E402  (issue 15: DataParallel, DistributedDataParallel)
from .parallel import DataParallel
from .pooling import AvgPool2d, MaxPool2d

__all__ = ["Module", "Parameter", "Sequential", "ModuleList", "ModuleDict", "Identity", "Linear", "Conv2d",
           "MaxPool2d", "AvgPool2d", "Flatten", "Unflatten", "Dropout", "BatchNorm1d", "BatchNorm2d",
           "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softmax", "LogSoftmax",
           "MSELoss", "L1Loss", "CrossEntropyLoss", "NLLLoss", "BCELoss", "BCEWithLogitsLoss",
           "functional", "init", "parallel", "DataParallel"]

"""keras.callbacks: Keras's hooks (Callback, CallbackList) and the callbacks Keras ships."""
from .base import Callback, CallbackList, History, ProgbarLogger  # noqa: F401
from .tensorboard import TensorBoard  # noqa: F401
from .training import (BackupAndRestore, CSVLogger, EarlyStopping, LambdaCallback, LearningRateScheduler,  # noqa: F401
                       ModelCheckpoint, ReduceLROnPlateau, TerminateOnNaN)

__all__ = ["Callback", "CallbackList", "History", "ProgbarLogger", "EarlyStopping", "ModelCheckpoint", "CSVLogger",
           "LambdaCallback", "TerminateOnNaN", "LearningRateScheduler", "ReduceLROnPlateau", "BackupAndRestore",
           "TensorBoard"]

"""torch.backends on OpenCL: the flags PyTorch programs set (cudnn.benchmark, cuda.matmul.allow_tf32) are
accepted and have no effect; mps.is_available() reports the accelerator, as torch.cuda.is_available()."""
from . import cuda, cudnn, mps  # noqa: F401

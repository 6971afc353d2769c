"""torch.backends.cuda: `torch.backends.cuda.matmul.allow_tf32 = True` is accepted and changes nothing
(clnet's matmul computes in the tensors' own precision)."""
from __future__ import annotations


class _MatmulFlags:
    allow_tf32 = False
    allow_fp16_reduced_precision_reduction = True
    allow_bf16_reduced_precision_reduction = True


matmul = _MatmulFlags()


def is_built() -> bool:
    return False

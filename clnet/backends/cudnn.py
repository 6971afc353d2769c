"""torch.backends.cudnn: programs set these flags; clnet accepts them and they change nothing (there is no
cuDNN; clnet's kernels are deterministic for a fixed device, docs/determinism.md)."""
from __future__ import annotations

enabled = True
benchmark = False
deterministic = False
allow_tf32 = True


def is_available() -> bool:
    return False


def version():
    return None

"""clnet.Generator: a seedable random stream for the host-side choices a training program makes.

Shuffling, sampling and splitting pick indices on the host (they are Python ints that index a dataset),
so a Generator draws with numpy's Philox bit generator, keyed by its seed. As torch.Generator:
`Generator().manual_seed(s)` returns the generator, `initial_seed()` gives the seed back, and
`get_state()`/`set_state()` replay a stream from any point. Code that takes `generator=None` draws a
fresh seed from clnet's global random state instead (`seed_from_global()`), so `clnet.manual_seed(s)`
makes shuffling reproducible as well, as `torch.manual_seed` does.
"""
from __future__ import annotations

import numbers
import os

import numpy as np

from .ops.random import DEFAULT_SEED, _take, philox4x32_10

_MASK64 = (1 << 64) - 1


class Generator:
    """A random stream for samplers, random_split and DataLoader workers (torch.Generator)."""

    def __init__(self, device="cpu"):
        self.device = device  # kept for torch's signature: draws are made on the host either way
        self.manual_seed(DEFAULT_SEED)

    def manual_seed(self, seed) -> "Generator":
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise TypeError(f"manual_seed expects an int, got {type(seed).__name__}")
        self._seed = int(seed) & _MASK64
        self._rng = np.random.Generator(np.random.Philox(key=self._seed))
        return self

    def seed(self) -> int:
        """Reseed from the operating system's entropy; returns the new seed."""
        s = int.from_bytes(os.urandom(8), "little")
        self.manual_seed(s)
        return s

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self) -> np.ndarray:
        """The whole stream position as uint8 bytes (pass it to set_state to replay from here)."""
        st = self._rng.bit_generator.state
        parts = ([self._seed], st["state"]["counter"], st["state"]["key"], st["buffer"],
                 [st["buffer_pos"], st["has_uint32"], st["uinteger"]])
        words = np.concatenate([np.asarray(p, dtype=np.uint64) for p in parts])
        return words.view(np.uint8).copy()

    def set_state(self, state) -> "Generator":
        words = np.asarray(state, dtype=np.uint8).view(np.uint64)
        if words.size != 14:
            raise ValueError(f"set_state expects the {14 * 8} bytes get_state() returned, got {words.size * 8}")
        self.manual_seed(int(words[0]))
        self._rng.bit_generator.state = {
            "bit_generator": "Philox", "state": {"counter": words[1:5].copy(), "key": words[5:7].copy()},
            "buffer": words[7:11].copy(), "buffer_pos": int(words[11]), "has_uint32": int(words[12]),
            "uinteger": int(words[13])}
        return self

    # --- draws (host) -------------------------------------------------------------------------------
    def permutation(self, n: int) -> np.ndarray:
        """A random ordering of 0..n-1 (int64)."""
        return self._rng.permutation(int(n)).astype(np.int64, copy=False)

    def integers(self, low: int, high: int, size=None):
        """Integers in [low, high)."""
        return self._rng.integers(low, high, size=size, dtype=np.int64)

    def random64(self) -> int:
        """One 64-bit value, e.g. a seed for a worker or a new generator."""
        return int(self._rng.integers(0, 2**63 - 1, dtype=np.int64))

    def choice(self, n: int, size: int, replace: bool, p=None) -> np.ndarray:
        return self._rng.choice(int(n), size=int(size), replace=replace, p=p).astype(np.int64, copy=False)

    def __repr__(self):
        return f"<clnet.Generator seed={self._seed}>"


def seed_from_global() -> int:
    """A 63-bit seed drawn from clnet's global (seed, offset) random state, on the host: what code that
    got generator=None uses, so clnet.manual_seed(s) makes it reproducible."""
    k0, k1, c0, c1 = _take(1)
    words = philox4x32_10((c0, c1, 0, 0), (k0, k1))
    return ((words[0] << 32) | words[1]) & ((1 << 63) - 1)


def resolve(generator) -> Generator:
    """`generator` itself, or a new one seeded from the global state when it is None."""
    if generator is None:
        return Generator().manual_seed(seed_from_global())
    if not isinstance(generator, Generator):
        raise TypeError(f"generator must be a clnet.Generator, got {type(generator).__name__}")
    return generator

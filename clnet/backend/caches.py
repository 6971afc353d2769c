"""The one registry of clnet's in-memory caches: one policy, one clear.

Every memo of built things (programs, kernels, launch plans) is a `Cache` made here by `new_cache`, so
`clear()` forgets them all at once (`clnet cache clear`, tests that need first use again) and `sizes()`
shows them. The policy, the same for all: a cache holds at most `limit` entries and starts over when
full (a process that sees ever new shapes re-plans instead of growing without bound; steady training
reuses a few entries, so it never reaches the limit).

Thread safety (docs/threads.md): a lookup is a plain `dict.get`, with no lock, so the hot path costs what
a dict costs. Two ways to fill a cache:
  - build-then-publish: `cache.get(key)`, on a miss build the value and `cache[key] = value`. Two threads
    missing at once both build, and the later store wins; use it only where a duplicate is harmless and
    cheap (a launch plan: plain data around a kernel that `get_or_make` made once).
  - `cache.get_or_make(key, make)`: `make()` runs once per key even when many threads miss at the same
    moment (the others wait for that one build, while builds of other keys go on in parallel); a `make`
    that raises publishes nothing, so the next caller tries again. Programs and kernels use it.
"""
from __future__ import annotations

import threading

DEFAULT_LIMIT = 4096

_REGISTRY: dict = {}
_REGISTRY_LOCK = threading.Lock()


class Cache(dict):
    """A bounded dict of built things, registered by name (see the module docstring for the policy)."""

    __slots__ = ("name", "limit", "_lock", "_making")

    def __init__(self, name: str, limit: int = DEFAULT_LIMIT):
        super().__init__()
        self.name, self.limit = name, int(limit)
        self._lock = threading.Lock()  # guards _making and the start-over below
        self._making: dict = {}        # key -> the lock of the build in progress for that key

    def __setitem__(self, key, value) -> None:
        if len(self) >= self.limit and key not in self:
            with self._lock:
                if len(self) >= self.limit:
                    dict.clear(self)
        dict.__setitem__(self, key, value)

    def get_or_make(self, key, make):
        """The value for `key`, built by `make()` exactly once however many threads ask at once."""
        value = self.get(key)
        if value is not None:
            return value
        with self._lock:
            building = self._making.get(key)
            if building is None:
                building = self._making[key] = threading.Lock()
        with building:
            value = self.get(key)  # built by the thread we waited for
            if value is None:
                try:
                    value = make()
                    self[key] = value
                finally:
                    with self._lock:
                        if self._making.get(key) is building:
                            del self._making[key]
        return value

    def __repr__(self) -> str:
        return f"<Cache {self.name!r}: {len(self)} of {self.limit}>"

    # a Cache is identified by its name, never compared by contents
    __eq__ = object.__eq__
    __hash__ = object.__hash__


def new_cache(name: str, limit: int = DEFAULT_LIMIT) -> Cache:
    """Make and register the cache called `name` (one per name; a module reloaded in tests gets the same)."""
    with _REGISTRY_LOCK:
        cache = _REGISTRY.get(name)
        if cache is None:
            cache = _REGISTRY[name] = Cache(name, limit)
        return cache


def clear() -> None:
    """Forget every registered cache's entries (what is already running keeps its own references)."""
    with _REGISTRY_LOCK:
        caches = list(_REGISTRY.values())
    for cache in caches:
        with cache._lock:
            dict.clear(cache)


def sizes() -> dict:
    """{name: number of entries} of every registered cache."""
    with _REGISTRY_LOCK:
        return {name: len(cache) for name, cache in _REGISTRY.items()}

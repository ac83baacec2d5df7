"""An LRU of prompt-prefix key/value caches, bounded in bytes.

SQLCoder prompts repeat the database schema, so the longest common token
prefix with an earlier prompt usually covers most of a new one. Entries hold
plain per-layer (keys, values) tensors that are never modified in place: a
lookup copies the matching slice into a fresh ``DynamicCache``, so ``generate``
can grow or reorder it without touching the stored entry.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

__all__ = ["PrefixCache", "PrefixEntry", "PrefixLru", "cache_layers", "new_cache"]

E = TypeVar("E")


def cache_layers(cache: Any) -> list[tuple[Any, Any]]:
    """Per-layer (keys, values) tensors of a transformers ``DynamicCache`` (4.x and 5.x layouts)."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache))


def new_cache(layers: Sequence[tuple[Any, Any]], length: int, repeats: int = 1) -> Any:
    """A fresh ``DynamicCache`` holding the first ``length`` positions of ``layers``, repeated per beam."""
    from transformers import DynamicCache

    cache = DynamicCache()
    for i, (k, v) in enumerate(layers):
        k, v = k[..., :length, :], v[..., :length, :]
        if repeats > 1:
            k, v = k.repeat_interleave(repeats, dim=0), v.repeat_interleave(repeats, dim=0)
        # update() concatenates, which copies: the stored tensors stay untouched.
        cache.update(k.clone() if repeats == 1 else k, v.clone() if repeats == 1 else v, i)
    return cache


class PrefixLru(Generic[E]):
    """What both backends' prefix caches share: entries under one lock, least recently used first, their
    total size bounded in bytes, and the counters ``status`` shows. Subclasses look entries up."""

    def __init__(self, max_bytes: int, min_tokens: int = 32):
        self.max_bytes = max_bytes
        self.min_tokens = max(1, min_tokens)
        self._entries: collections.OrderedDict[int, E] = collections.OrderedDict()
        self._next_key = 0
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = self.misses = self.tokens_reused = self.evictions = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def _size(self, entry: E) -> int:
        raise NotImplementedError

    def _add(self, entry: E, redundant: Callable[[E], bool]) -> None:
        """Insert ``entry`` after dropping the entries it makes ``redundant`` (its prefixes), then the least
        recently used ones until it fits; the caller has checked that it fits alone."""
        nbytes = self._size(entry)
        with self._lock:
            for key, old in list(self._entries.items()):
                if redundant(old):
                    self._drop(key)
            while self._entries and self.bytes + nbytes > self.max_bytes:
                self._drop(next(iter(self._entries)))
                self.evictions += 1
            self._entries[self._next_key] = entry
            self._next_key += 1
            self.bytes += nbytes

    def _drop(self, key: int) -> None:
        self.bytes -= self._size(self._entries.pop(key))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.bytes = 0

    def stats(self) -> dict[str, Any]:
        with self._lock:
            lookups = self.hits + self.misses
            return {
                "enabled": self.enabled,
                "entries": len(self._entries),
                "bytes": self.bytes,
                "max_bytes": self.max_bytes,
                "hits": self.hits,
                "misses": self.misses,
                "hit_rate": round(self.hits / lookups, 4) if lookups else None,
                "tokens_reused": self.tokens_reused,
                "evictions": self.evictions,
            }


@dataclasses.dataclass
class PrefixEntry:
    tokens: Any  # 1-D LongTensor on the CPU
    layers: list[tuple[Any, Any]]
    nbytes: int


class PrefixCache(PrefixLru["PrefixEntry"]):
    """Longest-common-prefix lookup over recently seen prompts, evicting least recently used entries."""

    def _size(self, entry: PrefixEntry) -> int:
        return entry.nbytes

    def lookup(self, tokens: Any, limit: int) -> tuple[int, PrefixEntry | None]:
        """The entry sharing the longest prefix with ``tokens`` (at most ``limit`` tokens) and that length."""
        import torch

        best_len, best_key = 0, None
        with self._lock:
            for key, entry in self._entries.items():
                n = min(limit, len(entry.tokens), len(tokens))
                if n < self.min_tokens:
                    continue
                diff = torch.nonzero(entry.tokens[:n] != tokens[:n])
                common = n if len(diff) == 0 else int(diff[0])
                if common > best_len:
                    best_len, best_key = common, key
            if best_key is None or best_len < self.min_tokens:
                self.misses += 1
                return 0, None
            self._entries.move_to_end(best_key)
            self.hits += 1
            self.tokens_reused += best_len
            return best_len, self._entries[best_key]

    def store(self, tokens: Any, layers: list[tuple[Any, Any]]) -> None:
        """Remember ``layers`` as the key/value cache of ``tokens``; drop entries it makes redundant."""
        import torch

        if not self.enabled or len(tokens) < self.min_tokens:
            return
        nbytes = sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in layers)
        if nbytes > self.max_bytes:
            return
        self._add(PrefixEntry(tokens.clone(), layers, nbytes),
                  # a prefix of the new entry: the new one serves it too
                  lambda old: len(old.tokens) <= len(tokens) and torch.equal(old.tokens, tokens[:len(old.tokens)]))

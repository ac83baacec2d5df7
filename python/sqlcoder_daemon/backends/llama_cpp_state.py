"""Saved llama.cpp KV states of earlier prompts, for the ``llama_cpp`` backend's prefix reuse.

llama.cpp keeps one live KV cache: the next prompt reuses whatever prefix it
shares with the previous one. When prompts of several schemas alternate, that
is lost; so after evaluating a prompt the backend saves its sequence state
(``llama_state_seq_get_data``: the KV cells, no logits) here, and a later prompt
restores the entry sharing its longest prefix. An LRU bounded in bytes.
"""

from __future__ import annotations

import collections
import threading
from typing import Any, Callable, Sequence

__all__ = ["StateCache", "common_prefix"]


def common_prefix(a: Sequence[int], b: Sequence[int], limit: int) -> int:
    """Length of the common prefix of ``a`` and ``b``, at most ``limit``."""
    import numpy as np

    n = min(len(a), len(b), limit)
    if n <= 0:
        return 0
    diff = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return n if len(diff) == 0 else int(diff[0])


class StateCache:
    """Token prefixes -> saved sequence states; counts reuse of the live cache too, for ``status``."""

    def __init__(self, max_bytes: int, min_tokens: int = 32):
        self.max_bytes = max_bytes
        self.min_tokens = max(1, min_tokens)
        self._entries: collections.OrderedDict[int, tuple[list[int], bytes]] = collections.OrderedDict()
        self._next_key = 0
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = self.misses = self.tokens_reused = self.evictions = self.restores = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def lookup(self, tokens: Sequence[int], limit: int, live: int) -> tuple[int, bytes | None]:
        """The prefix to reuse: ``(n, state)`` when a saved state beats the ``live`` one, else ``(live, None)``.

        Returns ``(0, None)`` when neither reaches ``min_tokens``.
        """
        with self._lock:
            best, best_key = 0, None
            for key, (saved, _) in self._entries.items():
                n = common_prefix(saved, tokens, limit)
                if n > best:
                    best, best_key = n, key
            if best_key is not None and best > live and best >= self.min_tokens:
                self._entries.move_to_end(best_key)
                self.hits += 1
                self.restores += 1
                self.tokens_reused += best
                return best, self._entries[best_key][1]
            if live >= self.min_tokens:
                self.hits += 1
                self.tokens_reused += live
                return live, None
            self.misses += 1
            return 0, None

    def store(self, tokens: Sequence[int], save: Callable[[], bytes]) -> None:
        """Remember the state ``save()`` returns as that of ``tokens``; drop entries that are its prefixes."""
        if not self.enabled or len(tokens) < self.min_tokens:
            return
        state = save()
        if len(state) > self.max_bytes:
            return
        tokens = list(tokens)
        with self._lock:
            for key, (saved, _) in list(self._entries.items()):
                if len(saved) <= len(tokens) and common_prefix(saved, tokens, len(saved)) == len(saved):
                    self._drop(key)
            while self._entries and self.bytes + len(state) > self.max_bytes:
                self._drop(next(iter(self._entries)))
                self.evictions += 1
            self._entries[self._next_key] = (tokens, state)
            self._next_key += 1
            self.bytes += len(state)

    def _drop(self, key: int) -> None:
        self.bytes -= len(self._entries.pop(key)[1])

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.bytes = 0

    def stats(self) -> dict[str, Any]:
        with self._lock:
            lookups = self.hits + self.misses
            return {"enabled": self.enabled, "entries": len(self._entries), "bytes": self.bytes,
                    "max_bytes": self.max_bytes, "hits": self.hits, "misses": self.misses,
                    "hit_rate": round(self.hits / lookups, 4) if lookups else None,
                    "tokens_reused": self.tokens_reused, "evictions": self.evictions, "restores": self.restores}

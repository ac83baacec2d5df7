"""Saved llama.cpp KV states of earlier prompts, for the ``llama_cpp`` backend's prefix reuse.

llama.cpp keeps one live KV cache: the next prompt reuses whatever prefix it
shares with the previous one. When prompts of several schemas alternate, that
is lost; so after evaluating a prompt the backend saves its sequence state
(``llama_state_seq_get_data``: the KV cells, no logits) here, and a later prompt
restores the entry sharing its longest prefix. An LRU bounded in bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..prefix_cache import PrefixLru

log = logging.getLogger(__name__)

__all__ = ["StateCache", "check_gguf_fits", "common_prefix"]


def common_prefix(a: Sequence[int], b: Sequence[int], limit: int) -> int:
    """Length of the common prefix of ``a`` and ``b``, at most ``limit``."""
    import numpy as np

    n = min(len(a), len(b), limit)
    if n <= 0:
        return 0
    diff = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return n if len(diff) == 0 else int(diff[0])


class StateCache(PrefixLru[tuple[list[int], bytes]]):
    """Token prefixes -> saved sequence states; counts reuse of the live cache too, for ``status``."""

    def __init__(self, max_bytes: int, min_tokens: int = 32):
        super().__init__(max_bytes, min_tokens)
        self.restores = 0

    def _size(self, entry: tuple[list[int], bytes]) -> int:
        return len(entry[1])

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
        saved_tokens = list(tokens)
        self._add((saved_tokens, state),
                  lambda old: len(old[0]) <= len(saved_tokens)
                  and common_prefix(old[0], saved_tokens, len(old[0])) == len(old[0]))

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "restores": self.restores}


def kv_bytes_per_token(path: Path) -> int | None:
    """f16 key/value bytes one token takes, from the GGUF header (None when it cannot be read)."""
    try:
        import gguf

        reader = gguf.GGUFReader(str(path))
        arch = reader.fields["general.architecture"].contents()
        field = {k: reader.fields[f"{arch}.{k}"].contents() for k in
                 ("block_count", "embedding_length", "attention.head_count")}
        kv_heads = reader.fields.get(f"{arch}.attention.head_count_kv")
        heads = field["attention.head_count"]
        kv = kv_heads.contents() if kv_heads is not None else heads
        return int(field["block_count"]) * 2 * int(field["embedding_length"]) // int(heads) * int(kv) * 2
    except Exception:  # noqa: BLE001 - a header gguf cannot read is llama.cpp's to refuse, with its own words
        return None


def check_gguf_fits(path: Path, n_ctx: int, extra_bytes: int) -> dict[str, Any] | None:
    """Raise InsufficientMemory when the file, the KV cache of ``n_ctx`` tokens, the saved-state budget
    and headroom exceed available RAM (llama.cpp would load and then be killed at the first long prompt)."""
    from ..memory import OVERHEAD_MIN, InsufficientMemory, _mem_available, format_bytes

    per_token = kv_bytes_per_token(path)
    if per_token is None or n_ctx <= 0:
        return None
    weights, kv = path.stat().st_size, per_token * n_ctx
    need, have = weights + kv + extra_bytes + OVERHEAD_MIN, _mem_available()
    if need > have:
        raise InsufficientMemory(
            f"{path.name} needs about {format_bytes(need)} ({format_bytes(weights)} of weights, {format_bytes(kv)} "
            f"of KV cache for --llama-n-ctx {n_ctx}, up to {format_bytes(extra_bytes)} of saved prefix states) "
            f"but only {format_bytes(have)} of RAM is free. Try a smaller --llama-n-ctx; or a smaller "
            f"--prefix-cache-bytes; or a smaller quantization of the model (Q4_K_M). "
            f"(--check-memory false skips this check.)")
    log.info("memory estimate for %s: file %s, KV cache %s (%d tokens), saved states up to %s; RAM free %s",
             path, format_bytes(weights), format_bytes(kv), n_ctx, format_bytes(extra_bytes), format_bytes(have))
    return {"weights_bytes": weights, "kv_cache_bytes": kv, "needed_bytes": need, "available_bytes": have,
            "where": "RAM", "prefix_cache_bytes": extra_bytes}

"""The daemon's model as one call sees it: which model it is, token counts, generate.

One :class:`Model` per call wraps that call's :class:`~sqlcoder.client.DaemonClient`,
whose budget (model_timeout_ms) covers every request the call makes. What
the daemon serves (name, context length) is cached per backend and socket
for :data:`STATUS_TTL_S`; a status reply refreshes it and a generate reply
naming another model drops it (another model may want another template).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .client import DaemonClient
from .errors import DaemonError, DaemonNotResponding, DaemonProtocolError

__all__ = ["ModelInfo", "Generated", "Model", "STATUS_TTL_S"]

STATUS_TTL_S = 60.0
_STATUS_TIMEOUT_S = 5.0  # the probe before building a prompt
_COUNT_TIMEOUT_S = 30.0
_COUNT_CHUNK_BYTES = 1 << 20  # well under the daemon's 4 MiB request limit


@dataclass(frozen=True)
class ModelInfo:
    """What the daemon's status says about its model."""

    model: str
    context_length: int | None
    max_new_tokens: int | None


@dataclass(frozen=True)
class Generated:
    """A generate reply: the model's text, the model that wrote it (when the daemon says) and why it ended:
    ``eos``, ``length`` (max_new_tokens), ``repetition`` (the daemon's repetition guard) or ``stop``."""

    text: str
    model: str | None
    finish_reason: str = "eos"
    #: Whether the daemon decoded under the grammar sent with the request (False also when none was sent).
    constrained: bool = False


_cache: dict[str, tuple[float, ModelInfo]] = {}  # socket path -> (expiry, info), per backend


def _positive(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


class Model:
    """The daemon's model through one call's client; ``timeout_s`` is model_timeout_ms in seconds."""

    def __init__(self, client: DaemonClient, timeout_s: float):
        self.client = client
        self.timeout_s = timeout_s

    def status(self, timeout: float) -> dict[str, Any]:
        """The daemon's status object (a DaemonError when it cannot be asked); refreshes the cached info."""
        reply = self.client.request("status", min(timeout, self.timeout_s))
        status = reply.get("status")
        status = status if isinstance(status, dict) else {}
        info = ModelInfo(model=str(status.get("model") or ""), context_length=_positive(status.get("context_length")),
                         max_new_tokens=_positive(status.get("max_new_tokens")))
        _cache[self.client.socket_path] = (time.monotonic() + STATUS_TTL_S, info)
        return status

    def info(self) -> ModelInfo | None:
        """The daemon's model, cached for ``STATUS_TTL_S``; None when it cannot be asked."""
        cached = _cache.get(self.client.socket_path)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        try:
            self.status(_STATUS_TIMEOUT_S)
        except DaemonNotResponding:
            if self.client.budget is not None:
                raise  # asking for SQL: a daemon that does not answer status will not answer generate either
            return None
        except DaemonError:
            return None
        return _cache[self.client.socket_path][1]

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Counts with the daemon's real tokenizer, in requests of at most ``_COUNT_CHUNK_BYTES``
        (4 bytes a character, at worst)."""
        counts: list[int] = []
        chunk: list[str] = []
        size = 0
        for text in texts:
            if chunk and size + 4 * len(text) > _COUNT_CHUNK_BYTES:
                counts += self._count(chunk)
                chunk, size = [], 0
            chunk.append(text)
            size += 4 * len(text)
        if chunk:
            counts += self._count(chunk)
        return counts

    def _count(self, chunk: list[str]) -> list[int]:
        got = self.client.request("count_tokens", min(_COUNT_TIMEOUT_S, self.timeout_s), texts=chunk).get("counts")
        if (not isinstance(got, list) or len(got) != len(chunk)
                or not all(isinstance(c, int) and not isinstance(c, bool) for c in got)):
            raise DaemonError("the sqlcoder daemon's count_tokens reply does not match the request")
        return got

    def generate(self, prompt: str, *, max_new_tokens: int | None = None, num_beams: int | None = None,
                 grammar: dict[str, str] | None = None) -> Generated:
        """One generate request; the daemon is told to give up a little before this client does.

        ``grammar`` (grammar.Grammar.as_request) constrains decoding where the daemon's backend can.
        """
        fields: dict[str, Any] = {"prompt": prompt, "timeout_ms": self.client.daemon_timeout_ms(self.timeout_s)}
        if grammar is not None:
            fields["grammar"] = grammar
        if max_new_tokens:
            fields["max_new_tokens"] = max_new_tokens
        if num_beams:
            fields["num_beams"] = num_beams
        reply = self.client.request("generate", self.timeout_s, **fields)
        model = reply.get("model") if isinstance(reply.get("model"), str) else None
        cached = _cache.get(self.client.socket_path)
        if cached is not None and (model is None or cached[1].model != model):
            del _cache[self.client.socket_path]  # another model may want another template
        text = reply.get("text")
        if not isinstance(text, str):
            raise DaemonProtocolError("the sqlcoder daemon's generate reply has no text")
        finish = reply.get("finish_reason")
        return Generated(text, model, finish if isinstance(finish, str) else "eos", reply.get("constrained") is True)

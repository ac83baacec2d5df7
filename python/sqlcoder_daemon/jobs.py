"""A generate request as it travels through the daemon: its deadline, cancel flag and reply future."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import threading
import time

from .protocol import GenerateRequest

__all__ = ["GenerationResult", "Job"]


@dataclasses.dataclass
class GenerationResult:
    """What a backend returns for one request."""

    text: str
    #: "eos", "length" (max_new_tokens), "repetition" (the repetition guard, repetition.py) or "stop" (cancelled).
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    #: Prompt tokens whose key/value cache came from the prefix cache.
    cached_tokens: int = 0
    #: Decoded under the request's grammar (False when it had none, or the backend could not honour it).
    constrained: bool = False


@dataclasses.dataclass(eq=False)
class Job:
    """One queued or running ``generate``; the connection thread waits on :attr:`future`."""

    request: GenerateRequest
    received: float = dataclasses.field(default_factory=time.monotonic)
    future: concurrent.futures.Future[GenerationResult] = dataclasses.field(default_factory=concurrent.futures.Future)
    cancelled: threading.Event = dataclasses.field(default_factory=threading.Event)
    started: float | None = None
    finished: float | None = None
    #: Where the request came from, for the log line: "socket" or "openai".
    source: str = "socket"
    #: Set when a stop's drain deadline cut the job off (its reply says so, not "cancelled").
    shutdown: bool = False

    @property
    def deadline(self) -> float:
        return self.received + self.request.timeout_ms / 1000.0

    def expired(self, now: float | None = None) -> bool:
        return (now if now is not None else time.monotonic()) >= self.deadline

    def should_stop(self) -> bool:
        """True once nobody wants the result: the client left or the deadline passed."""
        return self.cancelled.is_set() or self.expired()

    def timings(self) -> dict[str, float | None]:
        """``queue_ms`` and ``generate_ms`` of a finished job (None for a phase it never reached)."""
        start = self.started if self.started is not None else self.finished
        queue_ms = None if start is None else round((start - self.received) * 1000, 3)
        gen_ms = (None if self.started is None or self.finished is None
                  else round((self.finished - self.started) * 1000, 3))
        return {"queue_ms": queue_ms, "generate_ms": gen_ms}

    @property
    def batch_key(self) -> tuple[int, int]:
        """Requests with equal keys can share one batched ``generate``."""
        return (self.request.max_new_tokens, self.request.num_beams)

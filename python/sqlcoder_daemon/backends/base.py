"""The one interface every inference backend implements."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

from ..errors import DaemonError
from ..jobs import GenerationResult, Job
from ..settings import Settings

__all__ = ["Backend"]


class Backend(abc.ABC):
    """Loads a model, counts tokens and runs a batch of compatible generate jobs.

    ``generate`` runs on the scheduler's single worker thread, so a backend
    never sees two batches at once; ``count_tokens`` and ``info`` may be called
    from connection threads at any time.
    """

    name: str = "base"

    def __init__(self, settings: Settings):
        self.settings = settings

    @abc.abstractmethod
    def load(self) -> None:
        """Load the model; raise with a clear message when it cannot be served."""

    @abc.abstractmethod
    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Token counts with the model's tokenizer, without the beginning-of-sequence token."""

    @abc.abstractmethod
    def generate(self, jobs: Sequence[Job]) -> list[GenerationResult | DaemonError]:
        """Run ``jobs`` (same ``batch_key``) together; one result or error per job, in order.

        A backend stops early when every job's ``should_stop()`` is true and
        reports it with any result (the scheduler turns it into ``timeout`` or drops it).
        """

    def grammar_support(self) -> dict[str, Any]:
        """For ``status``: whether this backend constrains decoding to a request's grammar, in which format,
        or why not. A request's grammar that a backend cannot honour is ignored and its reply says
        ``constrained: false`` (the extension then raises a NOTICE)."""
        return {"supported": False, "reason": f"the {self.name} backend has no grammar-constrained decoding"}

    def info(self) -> dict[str, Any]:
        """Static facts for ``status``: device, quantization, dtype, context_length."""
        return {}

    def stats(self) -> dict[str, Any]:
        """Live figures for ``status`` (prefix cache, memory)."""
        return {}

    @property
    def context_length(self) -> int | None:
        return self.info().get("context_length")

    def close(self) -> None:  # noqa: B027 - optional hook, most backends have nothing to release
        """Release resources at shutdown."""

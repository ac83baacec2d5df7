"""What connection handlers need from the daemon, as a protocol class.

The socket handler (connection.py) and the HTTP listeners (metrics_listener.py, openai_listener.py)
annotate with :class:`Service` instead of importing :class:`~.daemon.Daemon`,
which imports them: no import cycle, not even one for type checkers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

from .accept import ConnectionSlots
from .backends.base import Backend
from .jobs import GenerationResult, Job
from .metrics import Metrics
from .protocol import Limits
from .settings import Settings

__all__ = ["Service"]


class Service(Protocol):
    """The daemon as its connection handlers see it."""

    settings: Settings
    metrics: Metrics
    backend: Backend
    limits: Limits
    slots: ConnectionSlots
    allowed_uids: set[int]
    closing: threading.Event
    state: str

    @property
    def model_name(self) -> str | None: ...

    def status(self) -> dict[str, Any]: ...

    def run_job(self, job: Job, gone: Callable[[], bool] = ..., peer_uid: int | None = None
                ) -> GenerationResult: ...

    def request_started(self) -> None: ...

    def request_ended(self) -> None: ...

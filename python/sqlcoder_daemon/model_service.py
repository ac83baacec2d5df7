"""The model service: what the request handlers serve with, apart from the loop that accepts connections.

It owns the backend and its scheduler, the request limits, the metrics and the
``status`` reply, the allowlist and connection caps in effect, and the count of
requests read but not yet answered (the drain waits on it). The socket handler
(connection.py) and the HTTP listeners import it directly; daemon.py, which binds
the socket and the listeners, accepts, reloads and stops, imports both.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from . import __version__
from .accept import ConnectionSlots
from .backends import Backend, create_backend
from .errors import Cancelled, DaemonError
from .jobs import GenerationResult, Job
from .metrics import Metrics
from .protocol import PROTOCOL_VERSION, Limits
from .requestlog import log_request
from .scheduler import Scheduler
from .settings import Settings

__all__ = ["ModelService"]

log = logging.getLogger(__name__)


class ModelService:
    """The backend, its scheduler and the limits in effect, as the socket and the listeners use them."""

    def __init__(self, settings: Settings, allowed_uids: set[int], backend: Backend | None = None):
        self.settings = settings
        self.allowed_uids = allowed_uids
        self.metrics = Metrics()
        self.backend = backend or create_backend(settings)
        #: ``loading``, ``ready`` once the socket is bound, ``draining`` once a stop began.
        self.state = "loading"
        self.loaded_at: float | None = None
        self.limits = _limits(settings)
        self.scheduler = Scheduler(self.backend, self.metrics, max_queue=settings.max_queue,
                                   max_batch_size=settings.max_batch_size, batch_wait_ms=settings.batch_wait_ms)
        #: Set when a stop began: connections answer what they have buffered, then close.
        self.closing = threading.Event()
        self._active_lock = threading.Lock()
        #: Requests read but not yet answered, across all connections.
        self.active_requests = 0
        #: One connection cap for the socket and one per HTTP listener: a flood of one leaves the others alone.
        self.slots = ConnectionSlots(settings.max_connections)
        self.listener_slots = {"openai": ConnectionSlots(settings.openai_listen_max_connections),
                               "metrics": ConnectionSlots(settings.metrics_listen_max_connections)}

    @property
    def model_name(self) -> str | None:
        """``--model``, or for the openai backend without one, the model the remote server serves."""
        return self.settings.model or self.backend.info().get("remote_model")

    # -- requests ------------------------------------------------------------
    def run_job(self, job: Job, gone: Callable[[], bool] = lambda: False, peer_uid: int | None = None
                ) -> GenerationResult:
        """Queue ``job`` and wait for it, cancelling it if ``gone()`` reports the client left."""
        outcome = "ok"
        try:
            self.scheduler.submit(job)
            while True:
                try:
                    return job.future.result(timeout=0.05)
                except TimeoutError:
                    pass
                if gone():
                    self.scheduler.cancel(job)
                    raise Cancelled()
                if job.started is None and job.expired():
                    # Still queued behind a long batch: answer now, so a client that gets no reply at
                    # its deadline knows the daemon itself stopped answering.
                    self.scheduler.expire_queued(job)
        except Cancelled:
            outcome = "cancelled"
            raise
        except DaemonError as e:
            outcome = e.code
            raise
        except Exception:
            outcome = "internal"
            raise
        finally:
            log_request(job, outcome, peer_uid, self.settings.log_prompts)

    def request_started(self) -> None:
        with self._active_lock:
            self.active_requests += 1

    def request_ended(self) -> None:
        with self._active_lock:
            self.active_requests -= 1

    def status(self) -> dict[str, Any]:
        """The ``status`` reply: fixed facts, live counters, then the settings in effect."""
        snap = self.metrics.snapshot()
        info = self.backend.info() if self.state != "loading" else {}
        requests = dict(snap.pop("requests"))
        requests["in_flight"] = self.scheduler.in_flight
        requests["queued"] = self.scheduler.queued
        out: dict[str, Any] = {
            "state": self.state,
            "model": self.model_name,
            "backend": self.backend.name,
            "device": info.get("device"),
            "quantization": info.get("quantization"),
            "dtype": info.get("dtype"),
            "context_length": info.get("context_length"),
            "max_new_tokens": self.settings.max_new_tokens,
            "num_beams": self.settings.num_beams,
            "uptime_s": round(time.monotonic() - self.loaded_at, 3) if self.loaded_at else 0.0,
            "requests": requests,
            "queue_depth": requests["queued"],
            "protocol": PROTOCOL_VERSION,
            "version": __version__,
            **snap,
        }
        out["connections"] = {"socket": self.slots.snapshot(),
                              **{name: slots.snapshot() for name, slots in self.listener_slots.items()
                                 if getattr(self.settings, f"{name}_listen")}}
        if self.state != "loading":
            out.update(self.backend.stats())
        out["grammar"] = self.backend.grammar_support()
        for key in ("memory_estimate", "decoding", "token_counting"):  # backend-specific facts
            if key in info:
                out[key] = info[key]
        out["settings"] = self.settings.public()
        return out

    # -- lifecycle -----------------------------------------------------------
    def load(self) -> None:
        t0 = time.monotonic()
        if self.settings.cpu_threads > 0 and self.backend.name in ("transformers", "vllm"):
            import torch  # llama_cpp takes cpu_threads itself and runs without torch

            torch.set_num_threads(self.settings.cpu_threads)
        self.backend.load()
        self.loaded_at = time.monotonic()
        log.info("model ready after %.1f s", self.loaded_at - t0)

    def apply_settings(self, allowed_uids: set[int]) -> None:
        """Take the re-read settings (already in :attr:`settings`) and allowlist into the limits and caps."""
        self.allowed_uids = allowed_uids
        self.limits = _limits(self.settings)
        self.scheduler.max_queue = self.settings.max_queue
        self.scheduler.batch_wait_s = self.settings.batch_wait_ms / 1000.0
        self.slots.cap = self.settings.max_connections
        for name, slots in self.listener_slots.items():
            slots.cap = getattr(self.settings, f"{name}_listen_max_connections")

    def drain(self, timeout_s: float) -> int:
        """Finish queued and running jobs for up to ``timeout_s``, give connection threads a moment to send
        their replies, stop the scheduler; the number of requests cut off."""
        cut = self.scheduler.drain(timeout_s)
        end = time.monotonic() + 5
        while self.active_requests and time.monotonic() < end:
            time.sleep(0.02)
        self.scheduler.stop()
        return cut


def _limits(settings: Settings) -> Limits:
    return Limits(max_new_tokens=settings.max_new_tokens, num_beams=settings.num_beams,
                  max_num_beams=settings.max_num_beams, timeout_ms=settings.timeout_ms,
                  max_grammar_bytes=settings.max_grammar_bytes)

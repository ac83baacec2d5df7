"""The daemon's lifecycle: load the model, then serve the socket until SIGTERM, then drain and clean up."""

from __future__ import annotations

import json
import logging
import selectors
import signal
import threading
import time
from typing import Any, Callable

from . import __version__
from .backends import Backend, create_backend
from .connection import handle_connection
from .errors import Cancelled, DaemonError
from .jobs import GenerationResult, Job
from .metrics import Metrics
from .protocol import PROTOCOL_VERSION, Limits, ok_reply
from .scheduler import Scheduler
from .settings import Settings
from .unixsocket import bind_socket, remove_socket, resolve_allowlist

__all__ = ["Daemon"]

log = logging.getLogger(__name__)
request_log = logging.getLogger("sqlcoder_daemon.requests")


class Daemon:
    """Owns the backend, the scheduler, the socket and any HTTP side listeners."""

    def __init__(self, settings: Settings, backend: Backend | None = None):
        self.settings = settings
        self.metrics = Metrics()
        self.backend = backend or create_backend(settings)
        self.state = "loading"
        self.loaded_at: float | None = None
        self.allowed_uids = resolve_allowlist(settings.allow_uid, settings.allow_user)
        self.limits = Limits(max_new_tokens=settings.max_new_tokens, num_beams=settings.num_beams,
                             max_num_beams=settings.max_num_beams, timeout_ms=settings.timeout_ms)
        self.scheduler = Scheduler(self.backend, self.metrics, max_queue=settings.max_queue,
                                   max_batch_size=settings.max_batch_size, batch_wait_ms=settings.batch_wait_ms)
        self.closing = threading.Event()
        self._listener = None
        self._side_servers: list[Any] = []
        self._conn_threads: set[threading.Thread] = set()
        self._active_lock = threading.Lock()
        #: Requests read but not yet answered, across all connections.
        self.active_requests = 0

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
            self._log_request(job, outcome, peer_uid)

    def generate_reply(self, job: Job, result: GenerationResult) -> dict[str, Any]:
        return ok_reply(
            job.request.id,
            text=result.text,
            model=self.model_name,
            finish_reason=result.finish_reason,
            usage={"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
                   "cached_prompt_tokens": result.cached_tokens},
            timings=_timings(job),
        )

    def _log_request(self, job: Job, outcome: str, peer_uid: int | None) -> None:
        """One structured log line per generate request."""
        res = job.future.result() if job.future.done() and not job.future.exception() else None
        event: dict[str, Any] = {
            "event": "request", "id": job.request.id, "source": job.source, "peer_uid": peer_uid,
            "outcome": outcome, "prompt_chars": len(job.request.prompt),
            "max_new_tokens": job.request.max_new_tokens, "num_beams": job.request.num_beams, **_timings(job),
        }
        if res is not None:
            event.update(prompt_tokens=res.prompt_tokens, completion_tokens=res.completion_tokens,
                         cached_tokens=res.cached_tokens, finish_reason=res.finish_reason)
        if self.settings.log_prompts:
            event["prompt"] = job.request.prompt
        request_log.info(json.dumps(event, ensure_ascii=False))

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
        if self.state != "loading":
            out.update(self.backend.stats())
        if "memory_estimate" in info:
            out["memory_estimate"] = info["memory_estimate"]
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

    def start_side_listeners(self, phase: str) -> None:
        """HTTP listeners on loopback: metrics before loading (status says 'loading'), OpenAI API after."""
        if phase == "early" and self.settings.metrics_listen:
            from .http_listeners import start_metrics_server

            self._side_servers.append(start_metrics_server(self, self.settings.metrics_listen))
        if phase == "ready" and self.settings.openai_listen:
            from .http_listeners import start_openai_server

            self._side_servers.append(start_openai_server(self, self.settings.openai_listen))

    def serve(self) -> None:
        """Bind the socket (only now that the model is loaded) and accept until :meth:`request_stop`."""
        self.scheduler.start()
        self.start_side_listeners("ready")
        self._listener = bind_socket(self.settings.socket, self.settings.socket_group)
        self.state = "ready"
        log.info("listening on %s (allowed uids: %s)", self.settings.socket,
                 ",".join(map(str, sorted(self.allowed_uids))))
        sel = selectors.DefaultSelector()
        sel.register(self._listener, selectors.EVENT_READ)
        try:
            while not self.closing.is_set():
                if not sel.select(timeout=0.2):
                    continue
                try:
                    conn, _ = self._listener.accept()
                except OSError:
                    continue
                t = threading.Thread(target=self._serve_conn, args=(conn,), name="sqlcoder-conn", daemon=True)
                self._conn_threads.add(t)
                t.start()
        finally:
            sel.close()
            self._shutdown()

    def _serve_conn(self, conn) -> None:
        try:
            handle_connection(self, conn)
        finally:
            self._conn_threads.discard(threading.current_thread())

    def request_started(self) -> None:
        with self._active_lock:
            self.active_requests += 1

    def request_ended(self) -> None:
        with self._active_lock:
            self.active_requests -= 1

    def request_stop(self, *_args: Any) -> None:
        """Signal handler: stop accepting; :meth:`serve` then drains and returns."""
        if not self.closing.is_set():
            log.info("stopping: no new connections; finishing in-flight requests")
        self.state = "draining"
        self.closing.set()

    def _shutdown(self) -> None:
        if self._listener is not None:
            self._listener.close()
            remove_socket(self.settings.socket)
        drained = self.scheduler.drain(self.settings.drain_timeout_s)
        if not drained:
            log.warning("drain timeout (%.0f s) reached; remaining requests were cancelled",
                        self.settings.drain_timeout_s)
        # Let connection threads send the replies of the requests that just finished.
        end = time.monotonic() + 5
        while self.active_requests and time.monotonic() < end:
            time.sleep(0.02)
        self.scheduler.stop()
        for srv in self._side_servers:
            srv.shutdown()
            srv.server_close()
        self.backend.close()
        log.info("stopped")

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)


def _timings(job: Job) -> dict[str, float | None]:
    start = job.started if job.started is not None else job.finished
    queue_ms = None if start is None else round((start - job.received) * 1000, 3)
    gen_ms = None if job.started is None or job.finished is None else round((job.finished - job.started) * 1000, 3)
    return {"queue_ms": queue_ms, "generate_ms": gen_ms}

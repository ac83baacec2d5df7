"""The metrics listener: Prometheus ``/metrics``, ``/status`` and ``/healthz`` on loopback.

It starts before the model loads, so ``/status`` can say ``loading`` while the
Unix socket does not exist yet. Its connection cap is its own: a flood of the
OpenAI-compatible listener or of the socket leaves it reachable.
"""

from __future__ import annotations

from .accept import ConnectionSlots
from .http_server import JsonHandler, LoopbackServer, start_listener
from .metrics import prometheus_text
from .model_service import ModelService

__all__ = ["start_metrics_server"]


class _MetricsHandler(JsonHandler):
    def do_GET(self) -> None:
        d = self.server.service
        path = self.path.split("?")[0]
        if path == "/metrics":
            self._send(200, prometheus_text(d.status()).encode(), "text/plain; version=0.0.4")
        elif path == "/status":
            self._json(200, {"status": d.status()})
        elif path == "/healthz":
            self._json(200 if d.state == "ready" else 503, {"state": d.state})
        else:
            self._json(404, {"error": "not found; try /metrics, /status or /healthz"})


def start_metrics_server(service: ModelService, listen: str, slots: ConnectionSlots) -> LoopbackServer:
    return start_listener(listen, _MetricsHandler, service, "metrics", slots)

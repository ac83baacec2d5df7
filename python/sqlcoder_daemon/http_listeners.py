"""Optional HTTP listeners, loopback only: Prometheus metrics + status, and an OpenAI-compatible completions API.

The metrics listener starts before the model loads, so ``/status`` can say
``loading`` while the Unix socket does not exist yet. The OpenAI listener
routes through the same scheduler as the socket, so other tools (or another
sqlcoder daemon with ``--backend openai``) share the loaded model and its batching.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import re
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .accept import OUT_OF_DESCRIPTORS
from .connection import client_gone
from .errors import BadRequest, Busy, Cancelled, DaemonError, ShuttingDown, Timeout, TooLarge
from .jobs import Job
from .metrics import prometheus_text
from .protocol import CountTokensRequest, GenerateRequest, parse_message
from .service import Service

__all__ = ["parse_listen", "start_metrics_server", "start_openai_server"]

log = logging.getLogger(__name__)

_HTTP_STATUS = {BadRequest: 400, TooLarge: 413, Busy: 429, Timeout: 504, ShuttingDown: 503}
_DECIMAL = re.compile(r"[0-9]{1,19}")


def parse_listen(text: str) -> tuple[str, int]:
    """``host:port`` with a loopback host (these listeners have no authentication of their own)."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if host == "localhost":
        host = "127.0.0.1"
    try:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError
    except ValueError:
        raise ValueError(f"{text}: listeners bind only loopback addresses (127.0.0.1, ::1)") from None
    return host, int(port)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], handler: type, daemon: Service):
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        super().__init__(addr, handler)
        self.sqlcoder = daemon

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            return super().get_request()
        except OSError as e:
            if e.errno in OUT_OF_DESCRIPTORS:  # serve_forever would retry at once: a busy spin
                self.sqlcoder.slots.wait_for_release(0.5)
            raise

    def process_request(self, request: Any, client_address: Any) -> None:
        """Count the connection against max_connections (shared with the socket); over it, 503 and close."""
        if not self.sqlcoder.slots.acquire():
            try:
                request.setblocking(False)
                request.send(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.sqlcoder.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.sqlcoder.slots.release()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        # A connection that sends nothing (or never reads) is closed after idle_timeout_s, as on the socket.
        self.timeout = self.server.sqlcoder.settings.idle_timeout_s
        super().setup()

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), fmt % args)

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, obj: Any) -> None:
        self._send(code, json.dumps(obj).encode(), "application/json")


class _MetricsHandler(_Handler):
    def do_GET(self) -> None:
        d = self.server.sqlcoder
        path = self.path.split("?")[0]
        if path == "/metrics":
            self._send(200, prometheus_text(d.status()).encode(), "text/plain; version=0.0.4")
        elif path == "/status":
            self._json(200, {"status": d.status()})
        elif path == "/healthz":
            self._json(200 if d.state == "ready" else 503, {"state": d.state})
        else:
            self._json(404, {"error": "not found; try /metrics, /status or /healthz"})


def _start(addr_text: str, handler: type, daemon: Service, name: str) -> _Server:
    srv = _Server(parse_listen(addr_text), handler, daemon)
    threading.Thread(target=srv.serve_forever, name=name, daemon=True).start()
    log.info("%s listening on http://%s:%d", name, *srv.server_address[:2])
    return srv


def start_metrics_server(daemon: Service, listen: str) -> _Server:
    return _start(listen, _MetricsHandler, daemon, "metrics")


def start_openai_server(daemon: Service, listen: str) -> _Server:
    return _start(listen, _OpenAIHandler, daemon, "openai-api")


class _OpenAIHandler(_Handler):
    """``POST /v1/completions``, ``GET /v1/models`` and vLLM-style ``POST /tokenize``."""

    def _error(self, code: int, message: str, etype: str) -> None:
        self._json(code, {"error": {"message": message, "type": etype, "code": etype}})

    def _authorized(self) -> bool:
        """The bearer key, compared in constant time; no key only with --openai-listen-insecure."""
        settings = self.server.sqlcoder.settings
        key = settings.get("openai_listen_api_key")
        if not key:
            if settings.get("openai_listen_insecure"):
                return True
            self.close_connection = True
            self._error(401, "this listener has no API key configured", "invalid_api_key")
            return False
        given = self.headers.get("Authorization", "").encode("utf-8", "replace")
        if not hmac.compare_digest(given, f"Bearer {key}".encode()):
            self.close_connection = True  # the body (if any) stays unread
            self._error(401, "invalid or missing API key", "invalid_api_key")
            return False
        return True

    def _body(self) -> dict | None:
        """The JSON body, read only with a valid Content-Length within max_request_bytes (the socket's bound)."""
        self.close_connection = True  # after a refusal the stream position is unknown
        if self.headers.get("Transfer-Encoding"):
            self._error(411, "chunked bodies are not supported; send Content-Length", "invalid_request_error")
            return None
        text = self.headers.get("Content-Length")
        if text is None:
            self._error(411, "Content-Length is required", "invalid_request_error")
            return None
        if not _DECIMAL.fullmatch(text.strip()):
            self._error(400, "Content-Length must be a non-negative integer", "invalid_request_error")
            return None
        length = int(text)
        limit = self.server.sqlcoder.settings.max_request_bytes
        if length > limit:
            self._error(413, f"request body exceeds max_request_bytes ({limit})", "too_large")
            return None
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(body, dict):
                raise ValueError
        except (ValueError, RecursionError):
            self._error(400, "body must be a JSON object", "invalid_request_error")
            return None
        except OSError:  # the client stopped sending (idle_timeout_s) or went away
            return None
        self.close_connection = False
        return body

    def do_GET(self) -> None:
        if not self._authorized():
            return
        d = self.server.sqlcoder
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            self._json(200, {"object": "list", "data": [{
                "id": d.model_name, "object": "model", "owned_by": "sqlcoder",
                "max_model_len": d.backend.info().get("context_length")}]})
        else:
            self._error(404, f"no route {self.path}", "not_found")

    def do_POST(self) -> None:
        if not self._authorized():
            return
        path = self.path.split("?")[0].rstrip("/")
        body = self._body()
        if body is None:
            return
        try:
            if path in ("/v1/completions", "/completions"):
                self._completions(body)
            elif path == "/tokenize":
                self._tokenize(body)
            else:
                self._error(404, f"no route {self.path}", "not_found")
        except DaemonError as e:
            self._error(_HTTP_STATUS.get(type(e), 500), e.message, e.code)
        except Cancelled:
            self.close_connection = True
        except Exception:
            log.exception("OpenAI-compatible request failed")
            self._error(500, "internal error; see the daemon's log", "internal")

    def _tokenize(self, body: dict) -> None:
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            raise BadRequest("'prompt' must be a string")
        d = self.server.sqlcoder
        req = parse_message({"v": 1, "id": "tokenize", "op": "count_tokens", "texts": [prompt]}, d.limits)
        assert isinstance(req, CountTokensRequest)
        count = d.backend.count_tokens(list(req.texts))[0] + (1 if body.get("add_special_tokens", True) else 0)
        self._json(200, {"count": count, "max_model_len": d.backend.info().get("context_length")})

    def _completions(self, body: dict) -> None:
        """Map the OpenAI fields onto a socket ``generate`` request and validate it the same way."""
        d = self.server.sqlcoder
        received = time.monotonic()
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if body.get("n", 1) != 1:
            raise BadRequest("only n=1 is supported")
        if body.get("stream"):
            raise BadRequest("streaming is not supported")
        user = body.get("user")
        if user is not None and not isinstance(user, str):
            raise BadRequest("'user' must be a string")
        beams = body.get("num_beams")
        if beams is None and body.get("use_beam_search"):
            beams = body.get("best_of")
        stops = body.get("stop") or []
        stops = [stops] if isinstance(stops, str) else stops
        if not isinstance(stops, list) or len(stops) > 16 or not all(isinstance(x, str) for x in stops):
            raise BadRequest("'stop' must be a string or a list of at most 16 strings")
        req = parse_message({"v": 1, "id": user or uuid.uuid4().hex[:12], "op": "generate", "prompt": prompt,
                             "max_new_tokens": body.get("max_tokens"), "num_beams": 1 if beams is None else beams,
                             "timeout_ms": body.get("timeout_ms")}, d.limits)
        assert isinstance(req, GenerateRequest)
        rid = req.id
        job = Job(req, received=received, source="openai")
        result = d.run_job(job, gone=lambda: client_gone(self.connection))
        text, finish = result.text, result.finish_reason
        for stop in stops:
            if stop and stop in text:
                text, finish = text[: text.index(stop)], "stop"
        self._json(200, {
            "id": f"cmpl-{rid}", "object": "text_completion", "created": int(time.time()), "model": d.model_name,
            "choices": [{"index": 0, "text": text, "logprobs": None,
                         "finish_reason": "length" if finish == "length" else "stop"}],
            "usage": {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
                      "total_tokens": result.prompt_tokens + result.completion_tokens},
        })

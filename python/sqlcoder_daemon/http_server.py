"""What the HTTP side listeners share: loopback-only binding, a connection cap of their own (so a flood
of one listener leaves the socket and the other listener alone), a deadline for each request to arrive
whole, JSON replies, and a thread per listener."""

from __future__ import annotations

import io
import ipaddress
import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .accept import OUT_OF_DESCRIPTORS, ConnectionSlots
from .model_service import ModelService

__all__ = ["JsonHandler", "LoopbackServer", "RequestDeadline", "parse_listen", "start_listener"]

log = logging.getLogger(__name__)


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


class LoopbackServer(ThreadingHTTPServer):
    """A threaded HTTP server on loopback whose connections count against ``slots``, its own cap."""

    daemon_threads = True
    allow_reuse_address = True
    #: The listen backlog, as the socket's (socketserver's default of 5 leaves a flood's clients unanswered
    #: in SYN retries instead of refused at once over the cap).
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], handler: type, service: ModelService, slots: ConnectionSlots):
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        super().__init__(addr, handler)
        self.service = service
        self.slots = slots

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            return super().get_request()
        except OSError as e:
            if e.errno in OUT_OF_DESCRIPTORS:  # serve_forever would retry at once: a busy spin
                self.slots.fd_exhausted += 1
                self.slots.wait_for_release(0.5)
            raise

    def process_request(self, request: Any, client_address: Any) -> None:
        """Count the connection against this listener's cap; over it, 503 and close (nothing is read)."""
        if not self.slots.acquire():
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
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class RequestDeadline(io.RawIOBase):
    """The connection's reads, each given only the time left until the request's deadline.

    A plain socket timeout starts again at every ``recv``, so a client sending one byte
    every few seconds would hold its thread for ever. Here the request line, the
    headers and the body share one deadline, set by :meth:`start` when the handler
    begins to wait for a request (the connection opened, or the previous reply went out).
    Writes keep the whole ``idle_timeout_s``.
    """

    def __init__(self, conn: socket.socket, timeout_s: float, on_expiry: Any):
        super().__init__()
        self.conn = conn
        self.timeout_s = timeout_s
        self.deadline: float | None = None
        self._on_expiry = on_expiry

    def start(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                self._on_expiry()
                raise TimeoutError("the request did not arrive whole within idle_timeout_s")
            self.conn.settimeout(left)
        try:
            return self.conn.recv_into(buffer)
        except TimeoutError:
            self._on_expiry()
            raise
        finally:
            self.conn.settimeout(self.timeout_s)  # for writing the reply


class JsonHandler(BaseHTTPRequestHandler):
    server: LoopbackServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        timeout = self.server.service.settings.idle_timeout_s
        self.connection.settimeout(timeout)
        self.rfile.close()  # the socket stays open: the server closes it
        self._deadline = RequestDeadline(self.connection, timeout, self._expired)
        self.rfile = io.BufferedReader(self._deadline)
        self._expiry_counted = False

    def _expired(self) -> None:
        if not self._expiry_counted:
            self._expiry_counted = True
            self.server.slots.note_idle_close()

    def handle_one_request(self) -> None:
        """One request, which must arrive whole (request line, headers, body) within idle_timeout_s."""
        self._deadline.start(self.server.service.settings.idle_timeout_s)
        super().handle_one_request()

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


def start_listener(addr_text: str, handler: type, service: ModelService, name: str,
                   slots: ConnectionSlots) -> LoopbackServer:
    srv = LoopbackServer(parse_listen(addr_text), handler, service, slots)
    threading.Thread(target=srv.serve_forever, name=name, daemon=True).start()
    log.info("%s listening on http://%s:%d (at most %d connections)", name, *srv.server_address[:2], slots.cap)
    return srv

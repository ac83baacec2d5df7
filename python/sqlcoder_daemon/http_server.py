"""What the HTTP side listeners share: loopback-only binding, the connection cap shared with the socket,
the idle timeout, JSON replies, and a thread per listener."""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .accept import OUT_OF_DESCRIPTORS
from .service import Service

__all__ = ["JsonHandler", "LoopbackServer", "parse_listen", "start_listener"]

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


class JsonHandler(BaseHTTPRequestHandler):
    server: LoopbackServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # A connection that sends nothing (or never reads) is closed after idle_timeout_s, as on the socket.
        self.connection.settimeout(self.server.sqlcoder.settings.idle_timeout_s)

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


def start_listener(addr_text: str, handler: type, daemon: Service, name: str) -> LoopbackServer:
    srv = LoopbackServer(parse_listen(addr_text), handler, daemon)
    threading.Thread(target=srv.serve_forever, name=name, daemon=True).start()
    log.info("%s listening on http://%s:%d", name, *srv.server_address[:2])
    return srv

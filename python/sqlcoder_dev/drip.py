"""Slow clients for tests and benchmarks: connections that drip a request a byte at a time (loopback only).

:class:`DripFlood` keeps many connections open, each sending one more byte of
its request every ``interval_s``, opening a new connection for each one the
server closes, for a bounded number of rounds, in a thread of its own.
:func:`drip_until_closed` drips one request and says when the server closed it.
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["DripFlood", "DripResult", "drip_until_closed", "http_request_bytes", "tcp_connector", "unix_connector"]

Connector = Callable[[], socket.socket]


def tcp_connector(host: str, port: int) -> Connector:
    if not host.startswith("127.") and host != "::1":
        raise ValueError("drip clients connect to loopback only")

    def connect() -> socket.socket:
        s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        s.setblocking(False)
        try:
            s.connect((host, port))
        except BlockingIOError:
            pass
        return s
    return connect


def unix_connector(path: str) -> Connector:
    def connect() -> socket.socket:
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        s.setblocking(False)
        return s
    return connect


def http_request_bytes(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}\r\n".encode() + body


@dataclass
class _Conn:
    sock: socket.socket
    sent: int = 0


@dataclass
class DripFlood:
    """``count`` connections dripping ``payload`` (after sending ``prefix`` at once) one byte per ``interval_s``,
    for ``rounds`` rounds; connections the server closes are replaced (``reconnects`` counts them)."""

    connect: Connector
    payload: bytes
    count: int
    interval_s: float
    rounds: int
    prefix: bytes = b""
    conns: list[_Conn] = field(default_factory=list)
    reconnects: int = 0
    connect_failures: int = 0
    bytes_sent: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _open(self) -> _Conn | None:
        try:
            s = self.connect()
        except OSError:
            self.connect_failures += 1
            return None
        c = _Conn(s)
        if self.prefix:
            self._send(c, self.prefix)
        return c

    def _send(self, c: _Conn, data: bytes) -> bool:
        if not data:
            return True  # all sent: it only waits now
        try:
            n = c.sock.send(data)
        except BlockingIOError:
            return True  # not connected yet or buffer full: try again next round
        except OSError:
            return False
        c.sent += n
        self.bytes_sent += n
        return True

    def _next(self, c: _Conn) -> bytes:
        """The rest of the prefix (its first send can find the connection not yet made), else one byte."""
        if c.sent < len(self.prefix):
            return self.prefix[c.sent:]
        return self.payload[c.sent - len(self.prefix):][:1]

    @staticmethod
    def _closed(c: _Conn) -> bool:
        try:
            while True:
                data = c.sock.recv(65536)
                if not data:
                    return True
        except BlockingIOError:
            return False
        except OSError as e:
            return e.errno != errno.ENOTCONN

    def start(self) -> DripFlood:
        self.conns = [c for c in (self._open() for _ in range(self.count)) if c is not None]
        self._thread = threading.Thread(target=self._run, name="drip-flood", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        for _ in range(self.rounds):
            if self._stop.wait(self.interval_s):
                break
            fresh: list[_Conn] = []
            for c in self.conns:
                if not self._closed(c) and self._send(c, self._next(c)):
                    fresh.append(c)
                    continue
                c.sock.close()
                self.reconnects += 1
                again = self._open()
                if again is not None:
                    fresh.append(again)
            while len(fresh) < self.count:  # connects that failed earlier
                again = self._open()
                if again is None:
                    break
                fresh.append(again)
            self.conns = fresh

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)
        for c in self.conns:
            c.sock.close()

    def __enter__(self) -> DripFlood:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class DripResult:
    closed: bool  # the server closed the connection before the payload ran out
    seconds: float  # from the first byte to the close (or to the end of the payload)
    bytes_sent: int
    reply: bytes


def drip_until_closed(sock: socket.socket, payload: bytes, interval_s: float, prefix: bytes = b"") -> DripResult:
    """Send ``prefix``, then ``payload`` one byte per ``interval_s``, until the server closes the connection."""
    sock.setblocking(True)
    started = time.monotonic()
    reply = b""
    sent = 0
    if prefix:
        sock.sendall(prefix)
        sent = len(prefix)
    for i in range(len(payload) + 1):
        deadline = time.monotonic() + interval_s
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break
            except OSError:
                return DripResult(True, time.monotonic() - started, sent, reply)
            if not data:
                return DripResult(True, time.monotonic() - started, sent, reply)
            reply += data
        if i == len(payload):
            break
        try:
            sock.send(payload[i:i + 1])
            sent += 1
        except OSError:
            return DripResult(True, time.monotonic() - started, sent, reply)
    return DripResult(False, time.monotonic() - started, sent, reply)

"""Client for the model daemon's protocol (docs/protocol.md), standard library only.

A backend waiting on the model must stay cancellable: the socket is polled in
short slices and, between slices, ``check_interrupts`` runs (in PostgreSQL, a
trivial prepared query, which lets the server act on a pending cancel or
statement_timeout). Whatever it raises propagates after the socket is closed,
and closing the socket tells the daemon to drop the request.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import select
import socket
import time
from typing import Any, Callable

from .errors import (DaemonBusy, DaemonConnectionLost, DaemonNotRunning, DaemonPermissionDenied,
                     DaemonProtocolError, DaemonRejected, DaemonReplyTooLarge, DaemonVersionMismatch,
                     ModelServerUnavailable, ModelTimeout)

__all__ = ["PROTOCOL_VERSION", "DaemonClient"]

PROTOCOL_VERSION = 1
_POLL_SECONDS = 0.1
_ids = itertools.count(1)

# What a user can do about the daemon's refusals; other codes keep DaemonRejected's hint.
_REJECTION_HINTS = {
    "bad_request": ("The daemon refused the request's settings: check max_new_tokens and num_beams in "
                    "sqlcoder.config against the daemon's limits (sqlcoder.status() shows them)."),
    "too_large": ("The prompt does not fit the model's context: shorten the question or narrow your search_path; "
                  "a superuser can check context_budget_tokens in sqlcoder.config (empty, or below the context)."),
}


def _no_interrupts() -> None:
    return None


class DaemonClient:
    """One request at a time over a fresh connection to the daemon's Unix socket."""

    def __init__(self, socket_path: str, *, connect_timeout: float = 2.0, max_reply_bytes: int = 1 << 20,
                 check_interrupts: Callable[[], None] = _no_interrupts):
        self.socket_path = socket_path
        self.connect_timeout = connect_timeout
        self.max_reply_bytes = max_reply_bytes
        self.check_interrupts = check_interrupts

    # -- public ------------------------------------------------------------
    def request(self, op: str, timeout: float, **fields: Any) -> dict[str, Any]:
        """Send one request and return the reply object of a successful answer.

        Raises a :class:`~sqlcoder.errors.DaemonError` subclass for every
        failure, and whatever ``check_interrupts`` raises.
        """
        request_id = f"{os.getpid()}-{next(_ids)}"
        line = json.dumps({"v": PROTOCOL_VERSION, "id": request_id, "op": op, **fields},
                          ensure_ascii=False).encode("utf-8") + b"\n"
        deadline = time.monotonic() + timeout
        sock = self._connect()
        try:
            self._send(sock, line, deadline, timeout)
            raw = self._receive_line(sock, deadline, timeout)
        finally:
            sock.close()
        return self._check_reply(raw, request_id)

    # -- steps -------------------------------------------------------------
    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.connect_timeout)
        try:
            sock.connect(self.socket_path)
        except FileNotFoundError:
            sock.close()
            raise DaemonNotRunning(f"the sqlcoder daemon is not running: no socket at {self.socket_path}") from None
        except PermissionError:
            sock.close()
            raise DaemonPermissionDenied(
                f"permission denied connecting to the sqlcoder daemon socket {self.socket_path}") from None
        except ConnectionRefusedError:
            sock.close()
            raise DaemonNotRunning(
                f"the sqlcoder daemon is not running: {self.socket_path} refuses connections") from None
        except socket.timeout:
            sock.close()
            raise DaemonNotRunning(
                f"the sqlcoder daemon at {self.socket_path} did not accept the connection within "
                f"{self.connect_timeout:g} s") from None
        except OSError as exc:
            sock.close()
            if exc.errno in (errno.ENOTSOCK, errno.ENOTDIR, errno.ECONNREFUSED):
                raise DaemonNotRunning(f"{self.socket_path} is not a listening socket ({exc.strerror})") from None
            raise DaemonNotRunning(f"cannot connect to the sqlcoder daemon at {self.socket_path}: {exc}") from None
        sock.setblocking(False)
        return sock

    def _wait(self, sock: socket.socket, deadline: float, timeout: float, *, write: bool) -> None:
        """Block for at most one poll slice, checking interrupts and the deadline."""
        while True:
            self.check_interrupts()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ModelTimeout(f"the model did not answer within {timeout:g} s")
            slice_ = min(_POLL_SECONDS, remaining)
            if write:
                _, ready, _ = select.select([], [sock], [], slice_)
            else:
                ready, _, _ = select.select([sock], [], [], slice_)
            if ready:
                return

    def _send(self, sock: socket.socket, data: bytes, deadline: float, timeout: float) -> None:
        view = memoryview(data)
        while view:
            self._wait(sock, deadline, timeout, write=True)
            try:
                sent = sock.send(view)
            except BlockingIOError:
                continue
            except OSError as exc:
                raise DaemonConnectionLost(f"the sqlcoder daemon closed the connection: {exc.strerror}") from None
            view = view[sent:]

    def _receive_line(self, sock: socket.socket, deadline: float, timeout: float) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            self._wait(sock, deadline, timeout, write=False)
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError as exc:
                raise DaemonConnectionLost(f"lost the connection to the sqlcoder daemon: {exc.strerror}") from None
            if not chunk:
                if size:
                    raise DaemonProtocolError("the sqlcoder daemon sent a truncated reply (no newline before EOF)")
                raise DaemonConnectionLost("the sqlcoder daemon closed the connection before answering")
            newline = chunk.find(b"\n")
            if newline >= 0:
                chunks.append(chunk[:newline])
                size += newline
            else:
                chunks.append(chunk)
                size += len(chunk)
            if size > self.max_reply_bytes:
                raise DaemonReplyTooLarge(
                    f"the sqlcoder daemon's reply exceeds max_reply_bytes ({self.max_reply_bytes} bytes)")
            if newline >= 0:
                return b"".join(chunks)

    def _check_reply(self, raw: bytes, request_id: str) -> dict[str, Any]:
        try:
            reply = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise DaemonProtocolError("the sqlcoder daemon sent a reply that is not JSON",
                                      detail=repr(raw[:200])) from None
        if not isinstance(reply, dict):
            raise DaemonProtocolError("the sqlcoder daemon sent a reply that is not a JSON object",
                                      detail=repr(raw[:200]))
        if reply.get("v") != PROTOCOL_VERSION:
            raise DaemonVersionMismatch(
                f"the sqlcoder daemon speaks protocol version {str(reply.get('v'))[:20]}, this extension speaks "
                f"{PROTOCOL_VERSION}")
        if reply.get("ok") is True:
            if reply.get("id") != request_id:
                raise DaemonProtocolError("the sqlcoder daemon answered another request than the one sent")
            return reply
        error = reply.get("error")
        if reply.get("ok") is not False or not isinstance(error, dict):
            raise DaemonProtocolError("the sqlcoder daemon sent a reply without ok/error",
                                      detail=repr(raw[:200]))
        # The daemon's words go into a PostgreSQL error: bounded, and without NUL (text cannot hold it).
        code = str(error.get("code"))[:50].replace("\x00", "")
        message = str(error.get("message", ""))[:500].replace("\x00", "")
        if code == "busy":
            raise DaemonBusy(f"the sqlcoder daemon is busy: {message}")
        if code == "unavailable":
            raise ModelServerUnavailable(f"the sqlcoder daemon's model server is unavailable: {message}")
        if code == "timeout":
            raise ModelTimeout(f"the model did not answer in time: {message}")
        if code == "forbidden":
            raise DaemonPermissionDenied(f"the sqlcoder daemon refused this database server: {message}",
                                         hint="Start the daemon with --allow-user for the database server's OS user.")
        if code == "unsupported_version":
            raise DaemonVersionMismatch(f"the sqlcoder daemon does not speak protocol {PROTOCOL_VERSION}: {message}")
        raise DaemonRejected(f"the sqlcoder daemon answered with an error ({code}): {message}",
                             hint=_REJECTION_HINTS.get(code))

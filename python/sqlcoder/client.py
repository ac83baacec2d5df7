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
import stat
import time
from collections.abc import Callable
from typing import Any

from .errors import (
    DaemonBusy,
    DaemonConnectionLost,
    DaemonNotResponding,
    DaemonNotRunning,
    DaemonPermissionDenied,
    DaemonProtocolError,
    DaemonRejected,
    DaemonReplyTooLarge,
    DaemonShuttingDown,
    DaemonVersionMismatch,
    ModelServerUnavailable,
    ModelTimeout,
)

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


_SPENT_HINT = ("The status probe and token counting used up model_timeout_ms before the model was asked; "
               "a superuser can raise model_timeout_ms in sqlcoder.config, or set context_budget_tokens so the "
               "schema need not be counted.")


def _no_interrupts() -> None:
    return None


def _not_a_socket(path: str) -> str | None:
    """What is at ``path`` when it is not a socket ("a regular file", ...); None for a socket or nothing."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISSOCK(mode):
        return None
    return "a directory" if stat.S_ISDIR(mode) else "a regular file" if stat.S_ISREG(mode) else "a special file"


class DaemonClient:
    """One request at a time over a fresh connection to the daemon's Unix socket.

    With ``budget`` (seconds; model_timeout_ms), every request made through this client,
    connecting included, ends within that time from its first request: the status
    probe and token counting come out of the same budget as the generate request.
    """

    def __init__(self, socket_path: str, *, connect_timeout: float = 2.0, max_reply_bytes: int = 1 << 20,
                 check_interrupts: Callable[[], None] = _no_interrupts, budget: float | None = None):
        self.socket_path = socket_path
        self.connect_timeout = connect_timeout
        self.max_reply_bytes = max_reply_bytes
        self.check_interrupts = check_interrupts
        self.budget = budget
        #: Set by the first request: reading the catalog before it is not the daemon's time.
        self.call_deadline: float | None = None

    # -- public ------------------------------------------------------------
    def daemon_timeout_ms(self, timeout: float) -> int:
        """The ``timeout_ms`` to send: a little less than this client waits, so a daemon that is alive
        answers with its own ``timeout`` error before the client gives up on it."""
        left = timeout if self.call_deadline is None else min(timeout, self.call_deadline - time.monotonic())
        return max(1, int((left - min(1.0, 0.2 * left)) * 1000))

    def request(self, op: str, timeout: float, **fields: Any) -> dict[str, Any]:
        """Send one request and return the reply object of a successful answer.

        Raises a :class:`~sqlcoder.errors.DaemonError` subclass for every
        failure, and whatever ``check_interrupts`` raises.
        """
        request_id = f"{os.getpid()}-{next(_ids)}"
        line = json.dumps({"v": PROTOCOL_VERSION, "id": request_id, "op": op, **fields},
                          ensure_ascii=False).encode("utf-8") + b"\n"
        deadline = time.monotonic() + timeout
        if self.budget is not None and self.call_deadline is None:
            self.call_deadline = time.monotonic() + self.budget
        if self.call_deadline is not None:
            if self.call_deadline <= time.monotonic():
                raise ModelTimeout(f"model_timeout_ms ({self.budget:g} s) ran out before the {op} request "
                                   "could be sent", hint=_SPENT_HINT)
            if self.call_deadline < deadline:
                deadline, timeout = self.call_deadline, self.budget or timeout
        sock = self._connect(deadline)
        try:
            try:
                self._send(sock, line, deadline, timeout)
            except DaemonConnectionLost:
                raw = self._pending_reply(sock)  # a daemon that refused us (busy) and closed first
                if raw is None:
                    raise
            else:
                raw = self._receive_line(sock, deadline, timeout)
        finally:
            sock.close()
        return self._check_reply(raw, request_id)

    # -- steps -------------------------------------------------------------
    def _connect(self, call_deadline: float) -> socket.socket:
        """Connect, retrying while the daemon's listen backlog is full (EAGAIN) for up to connect_timeout."""
        deadline = min(time.monotonic() + self.connect_timeout, call_deadline)
        pause = 0.005
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)  # a Unix socket connect never waits: EAGAIN means the backlog is full
            try:
                sock.connect(self.socket_path)
                return sock
            except BlockingIOError:
                sock.close()
            except OSError as exc:
                sock.close()
                raise self._connect_error(exc) from None
            left = deadline - time.monotonic()
            if left <= 0:
                raise DaemonBusy(
                    f"the sqlcoder daemon at {self.socket_path} accepted no connection within "
                    f"{self.connect_timeout:g} s: its listen backlog is full",
                    hint=("The daemon is not accepting connections: stopped (SIGSTOP), hung, or out of file "
                          "descriptors. Check its process and log; raise connect_timeout_ms only if it is merely "
                          "busy."))
            self.check_interrupts()
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.1)

    def _connect_error(self, exc: OSError) -> Exception:
        path = self.socket_path
        if isinstance(exc, FileNotFoundError):
            return DaemonNotRunning(f"the sqlcoder daemon is not running: no socket at {path}")
        kind = _not_a_socket(path)
        if kind and isinstance(exc, (PermissionError, ConnectionRefusedError)):
            return DaemonNotRunning(
                f"{path} is {kind}, not the daemon's socket",
                hint=("Something other than the daemon's socket is at socket_path: remove it and restart the "
                      "daemon (it refuses to start while it is there), or fix socket_path in sqlcoder.config."))
        if isinstance(exc, PermissionError):
            return DaemonPermissionDenied(f"permission denied connecting to the sqlcoder daemon socket {path}")
        if isinstance(exc, ConnectionRefusedError):
            return DaemonNotRunning(f"the sqlcoder daemon is not running: {path} refuses connections")
        if exc.errno in (errno.ENOTSOCK, errno.ENOTDIR, errno.ECONNREFUSED):
            return DaemonNotRunning(f"{path} is not a listening socket ({exc.strerror})")
        return DaemonNotRunning(f"cannot connect to the sqlcoder daemon at {path}: {exc}")

    def _pending_reply(self, sock: socket.socket) -> bytes | None:
        """A reply line the daemon sent before closing, if any (read without waiting)."""
        try:
            data = sock.recv(self.max_reply_bytes + 1)
        except OSError:
            return None
        newline = data.find(b"\n")
        return data[:newline] if newline >= 0 else None

    def _wait(self, sock: socket.socket, deadline: float, timeout: float, *, write: bool) -> None:
        """Block for at most one poll slice, checking interrupts and the deadline."""
        while True:
            self.check_interrupts()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DaemonNotResponding(f"the sqlcoder daemon did not answer within {timeout:g} s, not even "
                                          "with its own timeout error")
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
        if code == "shutting_down":
            raise DaemonShuttingDown(f"the sqlcoder daemon is shutting down: {message}")
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

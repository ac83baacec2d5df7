"""One client connection on the Unix socket: peer check, request lines in, reply lines out."""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

from .errors import Cancelled, DaemonError, Forbidden, Internal
from .jobs import Job
from .protocol import (
    CountTokensRequest,
    GenerateRequest,
    StatusRequest,
    count_tokens_reply,
    encode,
    error_reply,
    generate_reply,
    parse_request,
    status_reply,
)
from .service import Service
from .unixsocket import IdleTimeout, LineReader, client_gone, peer_uid

__all__ = ["handle_connection", "refuse_connection"]

log = logging.getLogger(__name__)


def handle_connection(daemon: Service, conn: socket.socket) -> None:
    """Serve one connection until it closes; no exception escapes (one top-level handler)."""
    uid = None
    try:
        with conn:
            uid = peer_uid(conn)
            if uid not in daemon.allowed_uids:
                daemon.metrics.count("forbidden")
                log.warning("refused a connection from uid %d (not in the allowlist)", uid)
                _send(conn, error_reply(None, Forbidden(f"uid {uid} is not allowed to use this daemon")))
                _linger(conn)
                return
            reader = LineReader(conn, daemon.settings.max_request_bytes,
                                idle_timeout=daemon.settings.idle_timeout_s)
            while not daemon.closing.is_set() or reader.has_buffered():
                try:
                    line = reader.readline()
                except DaemonError as e:  # oversize line
                    daemon.metrics.count("bad_request")
                    _send(conn, error_reply(None, e))
                    return
                except IdleTimeout:
                    daemon.slots.note_idle_close()
                    log.debug("closed a connection (uid %d) that sent no request for %g s", uid,
                              daemon.settings.idle_timeout_s)
                    return
                if line is None:
                    return
                daemon.request_started()
                try:
                    reply, close = _answer(daemon, conn, line, uid)
                    if reply is None:
                        return  # the client went away mid-request
                    if not _send(conn, reply) or close:
                        return
                finally:
                    daemon.request_ended()
    except Exception:
        log.exception("connection handler failed (peer uid %s)", uid)


def refuse_connection(conn: socket.socket, err: DaemonError) -> None:
    """Answer a connection the daemon will not serve (over the cap) with one error line, without blocking."""
    try:
        conn.setblocking(False)
        conn.send(encode(error_reply(None, err)))
    except OSError:
        pass
    finally:
        conn.close()


def _linger(conn: socket.socket, seconds: float = 1.0, limit: int = 1 << 16) -> None:
    """Half-close, then briefly read what the client sends, so its request write does not fail before it
    reads our reply (writing to a closed Unix socket raises EPIPE)."""
    try:
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(seconds)
        got = 0
        while got < limit:
            chunk = conn.recv(4096)
            if not chunk:
                break
            got += len(chunk)
    except OSError:
        pass


def _send(conn: socket.socket, reply: dict[str, Any]) -> bool:
    try:
        conn.sendall(encode(reply))
        return True
    except OSError:  # the client vanished mid-reply: nothing to do
        return False


def _answer(daemon: Service, conn: socket.socket, line: bytes, uid: int) -> tuple[dict[str, Any] | None, bool]:
    """The reply to one request line, and whether to close the connection afterwards."""
    received = time.monotonic()
    try:
        req = parse_request(line, daemon.limits)
    except DaemonError as e:
        daemon.metrics.count("bad_request")
        return error_reply(getattr(e, "request_id", None), e), e.close
    try:
        if isinstance(req, StatusRequest):
            return status_reply(req.id, daemon.status()), False
        if isinstance(req, CountTokensRequest):
            return count_tokens_reply(req.id, daemon.backend.count_tokens(req.texts)), False
        if isinstance(req, GenerateRequest):
            job = Job(req, received=received)
            try:
                result = daemon.run_job(job, gone=lambda: client_gone(conn), peer_uid=uid)
            except Cancelled:
                return None, True
            return generate_reply(req.id, text=result.text, model=daemon.model_name,
                                  finish_reason=result.finish_reason, prompt_tokens=result.prompt_tokens,
                                  completion_tokens=result.completion_tokens, cached_tokens=result.cached_tokens,
                                  timings=job.timings(), constrained=result.constrained), False
        raise AssertionError(f"unhandled request type {type(req).__name__}")
    except DaemonError as e:
        return error_reply(req.id, e), e.close
    except Exception:
        log.exception("request %r (%s) failed", req.id, req.op)
        return error_reply(req.id, Internal("internal error; see the daemon's log")), False

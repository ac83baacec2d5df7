"""How the page is served: uvicorn, with a deadline for each request and a connection cap that sheds slow clients.

uvicorn brings an idle timeout between requests (``timeout_keep_alive``) and a
limit on the headers' size (h11's ``max_incomplete_event_size``), both used
here. It has no deadline for a request to arrive, and a client that sends one
byte of its body now and then holds its connection for ever (2,500 of them once
held the server at its descriptor limit, so a normal page load timed out); its
``limit_concurrency`` answers 503 to the *newest* connection, which would turn
such a flood into a refusal of everyone else. So the HTTP protocol is uvicorn's
h11 one with two additions:

- **A deadline per request.** From the moment the connection opens, or the next
  request's first byte arrives on a kept-alive one, the request line, headers
  and body must arrive within ``request_timeout_s``, however slowly they drip;
  otherwise the client gets ``408 Request Timeout`` (if it sent part of a
  request) and the connection is closed. Between requests, uvicorn's
  keep-alive timer closes an idle connection. A request that has arrived and
  is being answered (a question waiting on the model) has no deadline.
- **A cap that sheds the slowest.** Past ``max_connections`` open connections, a
  new one closes (408) the connection that has waited longest for its request,
  if that one has waited at least :data:`SHED_AFTER_S`. A connection younger
  than that is never shed: the new one is let in, up to half as many again as
  the cap, and refused (503) beyond. A normal page load sends its request at
  once, so a flood of slow clients cannot keep it out unless it opens more
  than that many connections within :data:`SHED_AFTER_S`.

The listen backlog is 128 (uvicorn's default of 2,048 is also how many
connections asyncio accepts in one go, each holding a descriptor before the cap
sees it). The soft descriptor limit is raised to fit the cap's ceiling, one
backlog's burst, the sessions' database connections and the server's own files.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import sys
from typing import Any, ClassVar

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .settings import WebSettings

__all__ = ["FD_RESERVE", "LISTEN_BACKLOG", "MAX_HEADER_BYTES", "SHED_AFTER_S", "ServerLimits", "ceiling",
           "protocol_for", "raise_fd_limit", "serve"]

log = logging.getLogger(__name__)

#: Descriptors besides HTTP connections: two database connections per session, static files, logs.
FD_RESERVE = 256
#: Request line and headers together (h11's limit for an incomplete event).
MAX_HEADER_BYTES = 16 * 1024
#: The listen backlog, which asyncio also takes as how many connections to accept at once: accepted
#: connections hold descriptors before the cap sees them, so a burst must stay small beside the cap.
LISTEN_BACKLOG = 128
#: A connection waiting for its request this long may be shed at the cap; a younger one (a normal client whose
#: request is on its way, accepted in the same burst as a flood's) never is.
SHED_AFTER_S = 0.5
_ARRIVED = (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR)


def _reply(status: int, reason: str, text: str) -> bytes:
    body = text.encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


_TIMED_OUT = _reply(408, "Request Timeout", "The request did not arrive in time; reload the page.")
_FULL = _reply(503, "Service Unavailable", "The server is answering as many requests as it can; try again.")


class ServerLimits:
    """One server's shared state: open connections, and those waiting for a request, oldest first."""

    def __init__(self, max_connections: int, request_timeout_s: float):
        self.max_connections = max_connections
        self.ceiling = ceiling(max_connections)
        self.request_timeout_s = request_timeout_s
        self.open: set[BoundedH11Protocol] = set()
        #: Connections waiting for (the rest of) a request, with the time they began to wait, oldest first.
        self.waiting: dict[BoundedH11Protocol, float] = {}
        self.timed_out = 0
        self.shed = 0
        self.refused = 0


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline per request and a cap that closes the slowest first."""

    limits: ClassVar[ServerLimits]

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        #: Between requests on a kept-alive connection: sheddable, closed by uvicorn's keep-alive timer.
        self._idle = False
        #: Some of the awaited request has arrived (only then does a closed client get a 408 to read).
        self._partial = False

    # -- the deadline ------------------------------------------------------------------
    def _await_request(self) -> None:
        """Start the deadline for a request: from the connection's opening, or the next request's first byte."""
        self._stop_waiting()
        self.limits.waiting[self] = self.loop.time()
        self._deadline = self.loop.call_later(self.limits.request_timeout_s, self._expire)

    def _stop_waiting(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._idle = self._partial = False
        self.limits.waiting.pop(self, None)

    def _expire(self) -> None:
        self.limits.timed_out += 1
        self._close_with(_TIMED_OUT)

    def _close_with(self, reply: bytes, always: bool = False) -> None:
        """Close, first answering ``reply`` when part of a request came (or ``always``) and no response has
        begun; the application, if it is reading the body, sees the client gone and its replies are dropped.
        A connection that sent nothing of a request is closed silently, as uvicorn's keep-alive timer does:
        a client about to reuse it must not read an answer to a request it has not sent."""
        partial = self._partial
        self._stop_waiting()
        self.limits.open.discard(self)
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if (partial or always) and (cycle is None or cycle.response_complete or not cycle.response_started):
            self.transport.write(reply)
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()

    # -- uvicorn's protocol callbacks ----------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        limits = self.limits
        limits.open.add(self)
        if len(limits.open) > limits.max_connections:
            oldest = next(iter(limits.waiting.items()), None)
            if oldest is not None and self.loop.time() - oldest[1] >= SHED_AFTER_S:
                limits.shed += 1
                oldest[0]._close_with(_TIMED_OUT)
            elif len(limits.open) > limits.ceiling:  # all answering, or all just arrived
                limits.refused += 1
                self._close_with(_FULL, always=True)
                return
        self._await_request()

    def data_received(self, data: bytes) -> None:
        if self._idle:
            self._await_request()  # the next request: its deadline counts from its first byte
        if self._deadline is not None:
            self._partial = True
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state in _ARRIVED and self._deadline is not None:
            self._stop_waiting()  # the whole request is here: answering it has no deadline

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing() or self._deadline is not None or self._idle:
            return
        if self.conn.their_state is h11.IDLE and not self.conn.trailing_data[0]:
            self.limits.waiting[self] = self.loop.time()  # idle: sheddable, no deadline of ours
            self._idle = True
        elif self.conn.their_state in (h11.IDLE, h11.SEND_BODY):
            self._await_request()  # a pipelined request begun, or a body still coming

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        self.limits.open.discard(self)
        super().connection_lost(exc)


def ceiling(max_connections: int) -> int:
    """Most connections ever open: the cap, and room for a burst of new ones while nothing can be shed."""
    return max_connections + max_connections // 2


def protocol_for(limits: ServerLimits) -> type[BoundedH11Protocol]:
    """A protocol class bound to one server's limits (uvicorn instantiates the class it is given)."""
    return type("SqlcoderH11Protocol", (BoundedH11Protocol,), {"limits": limits})


def raise_fd_limit(settings: WebSettings) -> None:
    """Raise the soft descriptor limit to fit the connection cap, up to the hard limit; warn when it cannot."""
    want = ceiling(settings.max_connections) + LISTEN_BACKLOG + 2 * settings.max_sessions + FD_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= want:
        return
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as e:
        target = soft
        log.warning("cannot raise the descriptor limit to %d: %s", want, e)
    if target < want:
        print(f"sqlcoder-web: WARNING: the descriptor limit ({target}) is below what --max-connections "
              f"{settings.max_connections} needs ({want}); raise it (ulimit -n, LimitNOFILE) or lower "
              "--max-connections", file=sys.stderr, flush=True)


def serve(app: Any, settings: WebSettings) -> None:
    """Run ``app`` until interrupted, with the limits above and uvicorn's own."""
    raise_fd_limit(settings)
    limits = ServerLimits(settings.max_connections, settings.request_timeout_s)
    # access_log off: uvicorn's would write query strings (questions, a single-user token);
    # security.SecurityMiddleware logs method, path and status instead.
    uvicorn.run(app, host=settings.host, port=settings.port, root_path=settings.root_path,
                proxy_headers=True, forwarded_allow_ips=settings.forwarded_allow_ips,
                http=protocol_for(limits), ws="none", timeout_keep_alive=settings.keep_alive_s,
                h11_max_incomplete_event_size=MAX_HEADER_BYTES, backlog=LISTEN_BACKLOG,
                access_log=False, server_header=False, log_level="info")

"""What every response and request goes through: security headers, a body size limit, CSRF checks.

The page loads nothing from another origin (scripts, styles and the chart
library come from the package's own static files), so the Content-Security-Policy
allows only ``'self'``. Every POST must carry the session's CSRF token in its
form (login: a double-submit cookie) and, when the browser sends an Origin, come
from this very host.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request

__all__ = ["SecurityMiddleware", "origin_ok", "MAX_BODY_BYTES", "CSP"]

log = logging.getLogger("sqlcoder_web.access")

MAX_BODY_BYTES = 256 * 1024  # a question, a SQL text and a token fit many times over
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),  # no-referrer would make Chrome send "Origin: null" on POSTs
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def _reply(send: Send, status: int, text: str) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), *_HEADERS]})
    await send({"type": "http.response.body", "body": text.encode()})


class SecurityMiddleware:
    """Adds the security headers (and no-store for pages), refuses oversize bodies, logs one line per request
    without its query string (questions stay out of the log)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status_seen: list[int] = []
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            await _reply(send, 413, "request body too large")
            return
        received = 0

        async def limited_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > MAX_BODY_BYTES:  # a chunked body without Content-Length: the handler answers 413
                raise HTTPException(413, "request body too large")
            return message

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status_seen.append(message["status"])
                extra = list(_HEADERS)
                if not scope["path"].startswith("/static/"):
                    extra.append((b"cache-control", b"no-store"))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except ClientDisconnect:  # gone, or closed by the server at its request deadline: nobody to answer
            pass
        finally:
            log.info("%s %s %s %.0f ms", scope["method"], scope["path"], status_seen[0] if status_seen else "-",
                     (time.monotonic() - started) * 1000)


def origin_ok(request: Request) -> bool:
    """No Origin header (older browsers, curl), or one whose host:port is this request's Host."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin != "null" and urlsplit(origin).netloc.lower() == host.lower()

"""The HTTP side of the ``openai`` backend: a small abortable JSON client, what each server's errors mean,
and how each server counts tokens.

Servers differ (tested against llama-cpp-python's server, written for vLLM, TGI
and llama.cpp's own as documented by them): only the completions endpoint takes
a raw SQLCoder prompt; a tokenizer endpoint exists under four names and shapes;
a prompt over the context is HTTP 400, 413 or 422 with different words.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import Busy, DaemonError, TooLarge, Unavailable

__all__ = ["Remote", "TokenCounter", "abort", "error_for", "message", "read_events", "read_json"]

#: Longest reply body read from a server: a completion of --max-new-tokens is far smaller.
MAX_REPLY_BYTES = 16 << 20

_CONTEXT_WORDS = re.compile(r"context|too long|exceed|maximum.*tokens|tokens.*(must|less than)", re.I)


class Remote:
    """A minimal HTTP/JSON client over ``http.client`` whose connections can be aborted from another thread."""

    def __init__(self, base_url: str, api_key: str | None, timeout: float):
        url = urllib.parse.urlsplit(base_url.rstrip("/"))
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ValueError(f"--openai-url must be http(s)://host:port/...; got {base_url!r}")
        self.base_url = base_url
        self.scheme, self.netloc, self.path = url.scheme, url.netloc, url.path
        #: The server's root, for the non-OpenAI endpoints (/tokenize, /extras/...).
        self.root = self.path[: -len("/v1")] if self.path.endswith("/v1") else self.path
        self.api_key = api_key
        self.timeout = timeout

    def connection(self, timeout: float | None = None) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        return cls(self.netloc, timeout=timeout or self.timeout)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             conn: http.client.HTTPConnection | None = None, timeout: float | None = None) -> tuple[int, Any]:
        """``(status, parsed JSON)``; a body that is not JSON comes back as ``{"error": {"message": ...}}``.

        With ``timeout`` the whole exchange takes at most that long (a server
        dribbling a byte at a time would defeat a per-read timeout); without it,
        the caller aborts the connection when its request's deadline passes.
        Raises :class:`OSError` / :class:`http.client.HTTPException` when the server cannot be reached.
        """
        own = conn is None
        conn = conn or self.connection(timeout)
        timer, fired = None, threading.Event()
        if timeout is not None:
            def expire() -> None:
                fired.set()
                abort(conn)

            timer = threading.Timer(timeout, expire)
            timer.daemon = True
            timer.start()
        try:
            return read_json(self.send(conn, method, path, body))
        except (OSError, http.client.HTTPException) as e:
            if fired.is_set():
                raise TimeoutError(f"no complete answer within {timeout:g} s") from e
            raise
        finally:
            if timer is not None:
                timer.cancel()
            if own:
                conn.close()


    def send(self, conn: http.client.HTTPConnection, method: str, path: str,
             body: dict[str, Any] | None = None) -> http.client.HTTPResponse:
        """Send one request on ``conn``; the response, its body still unread."""
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        conn.request(method, path, body=json.dumps(body).encode() if body is not None else None, headers=headers)
        # getresponse() drops conn.sock when the reply ends the connection (Connection: close, as
        # event streams often do) and reads from the socket's file: keep the socket to abort it.
        conn._sqlcoder_sock = conn.sock  # type: ignore[attr-defined]
        return conn.getresponse()


def read_json(resp: http.client.HTTPResponse) -> tuple[int, Any]:
    """``(status, parsed body)``, reading at most :data:`MAX_REPLY_BYTES`."""
    data = resp.read(MAX_REPLY_BYTES + 1)
    if len(data) > MAX_REPLY_BYTES:
        return resp.status, {"error": {"message": f"reply over {MAX_REPLY_BYTES} bytes"}}
    try:
        return resp.status, json.loads(data or b"null")
    except ValueError:
        return resp.status, {"error": {"message": "not JSON: " + data[:200].decode(errors="replace")}}


def read_events(resp: http.client.HTTPResponse) -> Iterator[Any]:
    """The JSON objects of a server-sent event stream (``data: {...}`` lines), up to ``data: [DONE]``.

    Raises ValueError for a line that is not JSON or a stream over :data:`MAX_REPLY_BYTES`.
    """
    total = 0
    while True:
        line = resp.readline(MAX_REPLY_BYTES + 1)
        if not line:
            return
        total += len(line)
        if total > MAX_REPLY_BYTES:
            raise ValueError(f"stream over {MAX_REPLY_BYTES} bytes")
        line = line.strip()
        if not line.startswith(b"data:"):
            continue  # blank separators, comments (": ping"), event names
        data = line[5:].strip()
        if data == b"[DONE]":
            return
        yield json.loads(data)


def abort(conn: http.client.HTTPConnection) -> None:
    """Break a connection another thread is waiting on (the server sees the client leave)."""
    sock = conn.sock or getattr(conn, "_sqlcoder_sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def message(body: Any) -> str:
    """The server's error text, short and printable."""
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            return str(err.get("message", ""))[:300]
        if isinstance(err, str):  # TGI: {"error": "...", "error_type": "..."}
            return err[:300]
        if "detail" in body:  # FastAPI validation errors
            return str(body["detail"])[:300]
    return str(body)[:300]


def error_for(status: int, body: Any) -> DaemonError:
    """The daemon error a non-200 reply stands for."""
    text = message(body)
    if status == 429 or status == 503 and "overload" in text.lower():
        return Busy(f"the model server is busy: {text}")
    if status in (400, 413, 422) and _CONTEXT_WORDS.search(text):
        return TooLarge(f"the model server refused the prompt's length: {text}")
    if status == 404:
        return Unavailable(f"the model server has no such endpoint (HTTP 404: {text}); the openai backend needs "
                           "the completions API (…/v1/completions), not only chat")
    if status in (401, 403):
        return Unavailable(f"the model server refused the API key (HTTP {status}); check --openai-api-key")
    return Unavailable(f"the model server answered HTTP {status}: {text}")


def _list_length(reply: Any) -> int:
    if not isinstance(reply, list):
        raise TypeError("not a list of tokens")
    return len(reply)


class TokenCounter:
    """Counts tokens with whichever tokenizer endpoint the server has, found once by probing.

    ``(name, path, body(text), count(reply))``; counts that may include a
    beginning-of-sequence token are corrected by the count of an empty string.
    """

    DIALECTS: tuple[tuple[str, str, Callable[[str, str | None], dict[str, Any]], Callable[[Any], int]], ...] = (
        ("vllm", "/tokenize", lambda t, m: {"model": m, "prompt": t, "add_special_tokens": False},
         lambda r: int(r["count"])),
        ("llama-cpp-python", "/extras/tokenize/count", lambda t, m: {"input": t}, lambda r: int(r["count"])),
        ("llama.cpp", "/tokenize", lambda t, m: {"content": t, "add_special": False}, lambda r: len(r["tokens"])),
        ("tgi", "/tokenize", lambda t, m: {"inputs": t}, lambda r: _list_length(r)),
    )

    def __init__(self, remote: Remote, model: str | None):
        self.remote, self.model = remote, model
        self.dialect: tuple[Any, ...] | None = None
        self.offset = 0

    def _count(self, dialect: tuple[Any, ...], text: str, timeout: float = 10.0) -> int:
        _, path, body, count = dialect
        status, reply = self.remote.call("POST", self.remote.root + path, body(text, self.model), timeout=timeout)
        if status != 200:
            raise ValueError(status)
        return int(count(reply))

    def probe(self, budget_s: float = 10.0) -> str | None:
        """Find the server's tokenizer endpoint within ``budget_s``; its name, or None when it has none."""
        end = time.monotonic() + budget_s
        for dialect in self.DIALECTS:
            if time.monotonic() >= end:
                break
            try:
                empty = self._count(dialect, "", max(0.1, end - time.monotonic()))
                if self._count(dialect, "SELECT 1", max(0.1, end - time.monotonic())) <= empty:
                    continue
            except (ValueError, KeyError, TypeError, OSError, http.client.HTTPException):
                continue
            self.dialect, self.offset = dialect, empty
            return dialect[0]
        return None

    def count(self, text: str) -> int:
        if self.dialect is None:
            raise Unavailable("the model server cannot count tokens; give --model a local tokenizer directory")
        try:
            return max(0, self._count(self.dialect, text) - self.offset) if text else 0
        except (ValueError, KeyError, TypeError) as e:
            raise Unavailable(f"the model server's tokenizer answered badly ({e.__class__.__name__})") from None
        except (OSError, http.client.HTTPException) as e:
            raise Unavailable(f"the model server cannot be reached ({e.__class__.__name__})") from None

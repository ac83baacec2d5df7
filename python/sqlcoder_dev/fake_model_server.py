"""A stand-in OpenAI-compatible model server that misbehaves on purpose, for the ``openai`` backend's tests.

It lists one model, then answers ``POST`` (completions, tokenize) as
:attr:`ModelServerStandIn.mode` says. Loopback only; every wait is bounded.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["MODES", "ModelServerStandIn"]

#: mode -> what a POST gets
MODES = {
    "garbage": "HTTP 200 with an HTML page",
    "error": "HTTP 500 with a FastAPI-style JSON error",
    "shape": "HTTP 200 with JSON that is not a completion",
    "hang": "accepts the request and never answers (until stopped, at most 60 s)",
    "huge": "HTTP 200 with a 40 MiB body",
    "dribble": "HTTP 200 that sends one byte per 0.2 s (at most 60 s)",
    "sql": "a well-formed completion whose text is ModelServerStandIn.text",
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "ModelServerStandIn"

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, code: int, body: bytes, length: int | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._send(200, json.dumps({"object": "list", "data": [{"id": "stand-in", "object": "model"}]}).encode())

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        mode, stop = self.server.mode, self.server.stopping
        try:
            if mode == "hang":
                stop.wait(60)
            elif mode == "huge":
                chunk = b"x" * (1 << 20)
                self._send(200, b"", length=40 * len(chunk))
                for _ in range(40):
                    self.wfile.write(chunk)
            elif mode == "dribble":
                self._send(200, b"", length=1000)
                end = time.monotonic() + 60
                while not stop.wait(0.2) and time.monotonic() < end:
                    self.wfile.write(b" ")
                    self.wfile.flush()
            elif mode == "sql":
                reply = {"choices": [{"index": 0, "text": self.server.text, "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 1, "completion_tokens": 1}}
                self._send(200, json.dumps(reply).encode())
            else:
                self._send(*{"garbage": (200, b"<html>502 Bad Gateway</html>"),
                             "error": (500, b'{"detail": "boom"}'),
                             "shape": (200, b'{"choices": "none"}')}[mode])
        except OSError:
            pass  # the daemon hung up on us, as it should


class ModelServerStandIn(ThreadingHTTPServer):
    """``with ModelServerStandIn() as s: s.mode = "garbage"; ... s.url``"""

    daemon_threads = True

    def __init__(self, mode: str = "garbage"):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode = mode
        self.text = " SELECT 1;"
        self.stopping = threading.Event()
        self.url = f"http://127.0.0.1:{self.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def __enter__(self) -> "ModelServerStandIn":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()

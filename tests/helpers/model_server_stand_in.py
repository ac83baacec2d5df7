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
    "list-finish": "that completion with a finish_reason that is a JSON list (not even hashable)",
    "stream": "ModelServerStandIn.text as an event stream, a character per chunk (whole JSON if not asked to stream)",
    "stream-forever": "an event stream of 'x' chunks every 10 ms until the client leaves (at most 60 s)",
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ModelServerStandIn

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

    def _events(self, chunks) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Connection", "close")
        self.end_headers()
        for chunk in chunks:
            self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\r\n\r\n")
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\r\n\r\n")
        self.close_connection = True

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        mode, stop = self.server.mode, self.server.stopping
        self.server.requests += 1
        streaming = mode.startswith("stream") and body.get("stream")
        try:
            if streaming and mode == "stream":
                self._events([{"choices": [{"text": ch, "finish_reason": None}]} for ch in self.server.text]
                             + [{"choices": [{"text": "", "finish_reason": "stop"}]}])
            elif streaming:
                def forever():
                    end = time.monotonic() + 60
                    while not stop.wait(0.01) and time.monotonic() < end:
                        yield {"choices": [{"text": "x", "finish_reason": None}]}
                self._events(forever())
            elif mode == "hang":
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
            elif mode in ("sql", "stream", "list-finish"):
                finish: Any = ["stop"] if mode == "list-finish" else "stop"
                reply = {"choices": [{"index": 0, "text": self.server.text, "finish_reason": finish}],
                         "usage": {"prompt_tokens": 1, "completion_tokens": 1}}
                self._send(200, json.dumps(reply).encode())
            else:
                self._send(*{"garbage": (200, b"<html>502 Bad Gateway</html>"),
                             "error": (500, b'{"detail": "boom"}'),
                             "shape": (200, b'{"choices": "none"}')}[mode])
        except OSError:
            self.server.disconnects += 1  # the daemon hung up on us, as it should


class ModelServerStandIn(ThreadingHTTPServer):
    """``with ModelServerStandIn() as s: s.mode = "garbage"; ... s.url``"""

    daemon_threads = True

    def __init__(self, mode: str = "garbage"):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode = mode
        self.text = " SELECT 1;"
        self.requests = 0  # POSTs received
        self.disconnects = 0  # replies the client left in the middle of
        self.stopping = threading.Event()
        self.url = f"http://127.0.0.1:{self.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def __enter__(self) -> ModelServerStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()

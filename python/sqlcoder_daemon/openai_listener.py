"""The OpenAI-compatible completions API on loopback (``--openai-listen``).

It routes through the same scheduler as the socket, so other tools (or another
sqlcoder daemon with ``--backend openai``) share the loaded model and its batching.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
import uuid
from typing import Any

from .accept import ConnectionSlots
from .errors import BadRequest, Busy, Cancelled, DaemonError, ShuttingDown, Timeout, TooLarge
from .http_server import JsonHandler, LoopbackServer, start_listener
from .jobs import Job
from .protocol import CountTokensRequest, GenerateRequest, parse_message
from .service import Service
from .unixsocket import client_gone

__all__ = ["start_openai_server"]

log = logging.getLogger(__name__)

_HTTP_STATUS = {BadRequest: 400, TooLarge: 413, Busy: 429, Timeout: 504, ShuttingDown: 503}
_DECIMAL = re.compile(r"[0-9]{1,19}")


def start_openai_server(daemon: Service, listen: str, slots: ConnectionSlots) -> LoopbackServer:
    return start_listener(listen, _OpenAIHandler, daemon, "openai-api", slots)


class _OpenAIHandler(JsonHandler):
    """``POST /v1/completions``, ``GET /v1/models`` and vLLM-style ``POST /tokenize``."""

    def _error(self, code: int, message: str, etype: str) -> None:
        self._json(code, {"error": {"message": message, "type": etype, "code": etype}})

    def _authorized(self) -> bool:
        """The bearer key, compared in constant time; no key only with --openai-listen-insecure."""
        settings = self.server.sqlcoder.settings
        key = settings.openai_listen_api_key
        if not key:
            if settings.openai_listen_insecure:
                return True
            self.close_connection = True
            self._error(401, "this listener has no API key configured", "invalid_api_key")
            return False
        given = self.headers.get("Authorization", "").encode("utf-8", "replace")
        if not hmac.compare_digest(given, f"Bearer {key}".encode()):
            self.close_connection = True  # the body (if any) stays unread
            self._error(401, "invalid or missing API key", "invalid_api_key")
            return False
        return True

    def _body(self) -> dict[str, Any] | None:
        """The JSON body, read only with a valid Content-Length within max_request_bytes (the socket's bound)."""
        self.close_connection = True  # after a refusal the stream position is unknown
        if self.headers.get("Transfer-Encoding"):
            self._error(411, "chunked bodies are not supported; send Content-Length", "invalid_request_error")
            return None
        text = self.headers.get("Content-Length")
        if text is None:
            self._error(411, "Content-Length is required", "invalid_request_error")
            return None
        if not _DECIMAL.fullmatch(text.strip()):
            self._error(400, "Content-Length must be a non-negative integer", "invalid_request_error")
            return None
        length = int(text)
        limit = self.server.sqlcoder.settings.max_request_bytes
        if length > limit:
            self._error(413, f"request body exceeds max_request_bytes ({limit})", "too_large")
            return None
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(body, dict):
                raise ValueError
        except (ValueError, RecursionError):
            self._error(400, "body must be a JSON object", "invalid_request_error")
            return None
        except OSError:  # the body did not arrive whole within idle_timeout_s, or the client went away
            return None
        self.close_connection = False
        return body

    def do_GET(self) -> None:
        if not self._authorized():
            return
        d = self.server.sqlcoder
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            self._json(200, {"object": "list", "data": [{
                "id": d.model_name, "object": "model", "owned_by": "sqlcoder",
                "max_model_len": d.backend.info().get("context_length")}]})
        else:
            self._error(404, f"no route {self.path}", "not_found")

    def do_POST(self) -> None:
        if not self._authorized():
            return
        path = self.path.split("?")[0].rstrip("/")
        body = self._body()
        if body is None:
            return
        try:
            if path in ("/v1/completions", "/completions"):
                self._completions(body)
            elif path == "/tokenize":
                self._tokenize(body)
            else:
                self._error(404, f"no route {self.path}", "not_found")
        except DaemonError as e:
            self._error(_HTTP_STATUS.get(type(e), 500), e.message, e.code)
        except Cancelled:
            self.close_connection = True
        except Exception:
            log.exception("OpenAI-compatible request failed")
            self._error(500, "internal error; see the daemon's log", "internal")

    def _tokenize(self, body: dict[str, Any]) -> None:
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            raise BadRequest("'prompt' must be a string")
        d = self.server.sqlcoder
        req = parse_message({"v": 1, "id": "tokenize", "op": "count_tokens", "texts": [prompt]}, d.limits)
        assert isinstance(req, CountTokensRequest)
        count = d.backend.count_tokens(list(req.texts))[0] + (1 if body.get("add_special_tokens", True) else 0)
        self._json(200, {"count": count, "max_model_len": d.backend.info().get("context_length")})

    def _completions(self, body: dict[str, Any]) -> None:
        """Map the OpenAI fields onto a socket ``generate`` request and validate it the same way."""
        d = self.server.sqlcoder
        received = time.monotonic()
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if body.get("n", 1) != 1:
            raise BadRequest("only n=1 is supported")
        if body.get("stream"):
            raise BadRequest("streaming is not supported")
        user = body.get("user")
        if user is not None and not isinstance(user, str):
            raise BadRequest("'user' must be a string")
        beams = body.get("num_beams")
        if beams is None and body.get("use_beam_search"):
            beams = body.get("best_of")
        stops = body.get("stop") or []
        stops = [stops] if isinstance(stops, str) else stops
        if not isinstance(stops, list) or len(stops) > 16 or not all(isinstance(x, str) for x in stops):
            raise BadRequest("'stop' must be a string or a list of at most 16 strings")
        req = parse_message({"v": 1, "id": user or uuid.uuid4().hex[:12], "op": "generate", "prompt": prompt,
                             "max_new_tokens": body.get("max_tokens"), "num_beams": 1 if beams is None else beams,
                             "timeout_ms": body.get("timeout_ms")}, d.limits)
        assert isinstance(req, GenerateRequest)
        rid = req.id
        job = Job(req, received=received, source="openai")
        result = d.run_job(job, gone=lambda: client_gone(self.connection))
        text, finish = result.text, result.finish_reason
        for stop in stops:
            if stop and stop in text:
                text, finish = text[: text.index(stop)], "stop"
        self._json(200, {
            "id": f"cmpl-{rid}", "object": "text_completion", "created": int(time.time()), "model": d.model_name,
            "choices": [{"index": 0, "text": text, "logprobs": None,
                         "finish_reason": "length" if finish == "length" else "stop"}],
            "usage": {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
                      "total_tokens": result.prompt_tokens + result.completion_tokens},
        })

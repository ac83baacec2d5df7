"""A backend that forwards to any OpenAI-compatible completions endpoint (vLLM, TGI, llama.cpp, Ollama, or
another sqlcoder daemon's ``--openai-listen``).

The base URL and key come only from the daemon's own settings, never from SQL.
Each job is one HTTP request; when its client leaves or its deadline passes,
the HTTP connection is closed, which a well-behaved server takes as cancellation.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, Sequence

from ..errors import Busy, DaemonError, Internal, TooLarge
from ..jobs import GenerationResult, Job
from ..settings import Settings
from .base import Backend

__all__ = ["OpenAIBackend"]

log = logging.getLogger(__name__)


class _Remote:
    """A minimal HTTP/JSON client over ``http.client`` that can be aborted from another thread."""

    def __init__(self, base_url: str, api_key: str | None, timeout: float):
        url = urllib.parse.urlsplit(base_url.rstrip("/"))
        if url.scheme not in ("http", "https"):
            raise ValueError(f"--openai-url must be http(s)://...; got {base_url!r}")
        self.scheme, self.netloc, self.path = url.scheme, url.netloc, url.path
        self.api_key = api_key
        self.timeout = timeout

    def connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        return cls(self.netloc, timeout=self.timeout)

    def call(self, method: str, path: str, body: dict | None = None,
             conn: http.client.HTTPConnection | None = None) -> tuple[int, Any]:
        own = conn is None
        conn = conn or self.connection()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        try:
            conn.request(method, path, body=json.dumps(body).encode() if body is not None else None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            try:
                return resp.status, json.loads(data or b"null")
            except ValueError:
                return resp.status, {"error": {"message": data[:200].decode(errors="replace")}}
        finally:
            if own:
                conn.close()


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.remote = _Remote(settings.openai_url, settings.get("openai_api_key"),
                              settings.get("openai_timeout_s", 600))
        self.remote_model = settings.get("openai_model") or settings.model
        self.tokenizer = None
        self._tok_lock = threading.Lock()
        self._info: dict[str, Any] = {}

    def load(self) -> None:
        """Check the server answers ``/models``; use a local tokenizer when ``--model`` is a directory."""
        status, body = self.remote.call("GET", f"{self.remote.path}/models")
        if status != 200:
            raise OSError(f"{self.settings.openai_url}/models answered HTTP {status}: {_message(body)}")
        models = body.get("data") or [] if isinstance(body, dict) else []
        if not self.remote_model and models:
            self.remote_model = models[0].get("id")
        entry = next((m for m in models if m.get("id") == self.remote_model), models[0] if models else {})
        if self.settings.model and Path(self.settings.model).is_dir():
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(self.settings.model)
        self._info = {
            "device": f"remote:{self.settings.openai_url}",
            "quantization": "remote",
            "dtype": "remote",
            "context_length": entry.get("max_model_len")
            or (self.tokenizer.model_max_length if self.tokenizer else None),
            "remote_model": self.remote_model,
        }
        log.info("forwarding to %s (model %s)", self.settings.openai_url, self.remote_model)

    def info(self) -> dict[str, Any]:
        return dict(self._info)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if self.tokenizer is not None:
            with self._tok_lock:
                return [len(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
        root = self.remote.path[: -len("/v1")] if self.remote.path.endswith("/v1") else self.remote.path
        counts = []
        for text in texts:  # vLLM's /tokenize; other servers need a local tokenizer (--model DIR)
            status, body = self.remote.call("POST", f"{root}/tokenize",
                                            {"model": self.remote_model, "prompt": text, "add_special_tokens": False})
            if status != 200 or not isinstance(body, dict) or "count" not in body:
                raise Internal("the remote server cannot count tokens; give --model a local tokenizer directory")
            counts.append(int(body["count"]))
        return counts

    def generate(self, jobs: Sequence[Job]) -> list[GenerationResult | DaemonError]:
        results: list[GenerationResult | DaemonError | None] = [None] * len(jobs)
        threads = []
        conns = []
        for i, job in enumerate(jobs):
            conn = self.remote.connection()
            conns.append(conn)
            t = threading.Thread(target=self._one, args=(job, conn, results, i), daemon=True)
            threads.append(t)
            t.start()
        while any(t.is_alive() for t in threads):
            for job, conn, t in zip(jobs, conns, threads):
                if t.is_alive() and job.should_stop():
                    _abort(conn)  # the remote server sees the disconnect and stops generating
            time.sleep(0.02)
        return [r if r is not None else Internal("no result") for r in results]

    def _one(self, job: Job, conn: http.client.HTTPConnection, results: list, i: int) -> None:
        req = job.request
        body = {"model": self.remote_model, "prompt": req.prompt, "max_tokens": req.max_new_tokens,
                "temperature": 0, "n": 1}
        if req.num_beams > 1:
            body["num_beams"] = req.num_beams  # understood by sqlcoder's listener; others decode greedily
        try:
            status, reply = self.remote.call("POST", f"{self.remote.path}/completions", body, conn=conn)
        except (OSError, http.client.HTTPException) as e:
            results[i] = Internal(f"remote server: {e.__class__.__name__}") if not job.should_stop() else \
                GenerationResult("", "stop", 0, 0)
            return
        finally:
            conn.close()
        if status == 429:
            results[i] = Busy(f"remote server is busy: {_message(reply)}")
        elif status == 413:
            results[i] = TooLarge(f"remote server: {_message(reply)}")
        elif status != 200:
            log.warning("remote server answered HTTP %d: %s", status, _message(reply))
            results[i] = Internal(f"remote server answered HTTP {status}")
        else:
            choice = (reply.get("choices") or [{}])[0]
            usage = reply.get("usage") or {}
            finish = {"stop": "eos", "length": "length"}.get(choice.get("finish_reason"), "stop")
            results[i] = GenerationResult(text=choice.get("text", ""), finish_reason=finish,
                                          prompt_tokens=int(usage.get("prompt_tokens", 0)),
                                          completion_tokens=int(usage.get("completion_tokens", 0)))


def _abort(conn: http.client.HTTPConnection) -> None:
    import socket

    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _message(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message", ""))[:300]
    return str(body)[:300]

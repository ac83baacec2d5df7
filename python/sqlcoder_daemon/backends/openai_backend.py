"""A backend that forwards to an OpenAI-compatible completions endpoint: vLLM, TGI, llama.cpp's server,
llama-cpp-python's server, Ollama, or another sqlcoder daemon's ``--openai-listen``.

The base URL and key come only from the daemon's own settings, never from SQL.
Each job is one HTTP request to ``/v1/completions`` (SQLCoder takes a raw
prompt; chat endpoints would wrap it in a chat template). Decoding is pinned
to greedy on every server: ``temperature`` 0, ``top_k`` 1 and no repetition
penalty (llama-cpp-python's server applies 1.1 by default, even when greedy).
Completions are streamed where the server streams: when a job's client
leaves or its deadline passes, the HTTP connection is closed, and a server
notices that reliably only while streaming (llama-cpp-python's runs a whole
reply to ``max_tokens``). A server that is down or answers garbage gives the
caller ``unavailable``.
"""

from __future__ import annotations

import http.client
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import DaemonError, Internal, Unavailable
from ..jobs import GenerationResult, Job
from ..settings import Settings
from .base import Backend
from .openai_remote import Remote, TokenCounter, abort, error_for, message, read_events, read_json

__all__ = ["OpenAIBackend"]

log = logging.getLogger(__name__)

#: Seconds the start-up checks wait for the server (a hung server must not hang the daemon's start).
LOAD_TIMEOUT_S = 10.0


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self, settings: Settings):
        super().__init__(settings)
        if not settings.openai_url:
            raise ValueError("--backend openai needs --openai-url")
        self.remote = Remote(settings.openai_url, settings.openai_api_key, settings.openai_timeout_s)
        self.remote_model = settings.openai_model or settings.model
        self.tokenizer: Any = None  # a transformers tokenizer once loaded from a local --model directory
        self.counter: TokenCounter | None = None
        #: Stream completions until the server says it cannot (sqlcoder's own listener does not).
        self.stream = True
        self._tok_lock = threading.Lock()
        self._info: dict[str, Any] = {}

    def load(self) -> None:
        """Check the server answers ``/models``; count tokens locally (``--model DIR``) or find its tokenizer."""
        url = self.settings.openai_url
        try:
            status, body = self.remote.call("GET", f"{self.remote.path}/models", timeout=LOAD_TIMEOUT_S)
        except (OSError, http.client.HTTPException) as e:
            raise OSError(f"--openai-url {url}: cannot reach the model server ({e.__class__.__name__}: {e})") from None
        if status != 200:
            raise OSError(f"--openai-url {url}: GET /models answered HTTP {status}: {message(body)}")
        models = body.get("data") if isinstance(body, dict) else None
        if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
            raise OSError(f"--openai-url {url}: GET /models did not answer an OpenAI model list: {message(body)}")
        ids = [m.get("id") for m in models]
        named = self.settings.openai_model
        if models and (not self.remote_model or (self.remote_model not in ids and not named)):
            self.remote_model = ids[0]  # --model named a local tokenizer, not the served name
        entry = next((m for m in models if m.get("id") == self.remote_model), models[0] if models else {})
        if self.settings.model and Path(self.settings.model).is_dir():
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(self.settings.model)
            counting = "local tokenizer"
        else:
            self.counter = TokenCounter(self.remote, self.remote_model)
            counting = self.counter.probe() or "none (give --model a local tokenizer directory)"
        meta = entry.get("meta")
        if not isinstance(meta, dict):
            meta = {}
        self._info = {
            "device": f"remote:{url}",
            "quantization": "remote",
            "dtype": "remote",
            "context_length": entry.get("max_model_len") or meta.get("n_ctx_train")
            or (self.tokenizer.model_max_length if self.tokenizer else None),
            "remote_model": self.remote_model,
            "token_counting": counting,
        }
        log.info("forwarding to %s (model %s, token counting: %s)", url, self.remote_model, counting)

    def info(self) -> dict[str, Any]:
        return dict(self._info)

    def grammar_support(self) -> dict[str, Any]:
        field = self.settings.openai_grammar
        if field == "none":
            return {"supported": False, "reason": "--openai-grammar none: the model server takes no grammar"}
        return {"supported": True, "format": "gbnf", "parameter": field, "beam_search": False}

    def _with_grammar(self, body: dict[str, Any], job: Job) -> bool:
        """Put the job's GBNF grammar where the server reads it (``--openai-grammar``); whether it was sent."""
        grammar = job.request.grammar
        field = self.settings.openai_grammar
        if grammar is None or not grammar.gbnf or field == "none":
            return False
        body[field] = {"grammar": grammar.gbnf} if field == "structured_outputs" else grammar.gbnf
        return True

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if self.tokenizer is not None:
            with self._tok_lock:
                return [len(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False,
                                                                  split_special_tokens=True)["input_ids"]]
        if self.counter is None:
            raise Internal("the openai backend is not loaded")
        return [self.counter.count(t) for t in texts]

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
        while True:
            alive = [t for t in threads if t.is_alive()]
            if not alive:
                break
            alive[0].join(0.02)  # returns as soon as that request is answered
            for job, conn, t in zip(jobs, conns, threads):
                if t.is_alive() and job.should_stop():
                    abort(conn)  # the remote server sees the disconnect
        return [r if r is not None else Internal("no result") for r in results]

    def _one(self, job: Job, conn: http.client.HTTPConnection, results: list[Any], i: int) -> None:
        req = job.request
        body = {"model": self.remote_model, "prompt": req.prompt, "max_tokens": req.max_new_tokens,
                "temperature": 0, "top_k": 1, "repeat_penalty": 1.0, "n": 1}
        if req.num_beams > 1:
            body["num_beams"] = req.num_beams  # understood by sqlcoder's listener; others decode greedily
        constrained = self._with_grammar(body, job)
        try:
            results[i] = self._completion(conn, body)
            if constrained and isinstance(results[i], GenerationResult):
                results[i].constrained = True
        except (OSError, http.client.HTTPException) as e:
            results[i] = Unavailable(f"the model server cannot be reached ({e.__class__.__name__})")
        finally:
            conn.close()
        if job.should_stop():  # we hung up on the server: whatever came back is cut short
            results[i] = GenerationResult("", "stop", 0, 0)

    def _completion(self, conn: http.client.HTTPConnection, body: dict[str, Any]) -> GenerationResult | DaemonError:
        """One completion, streamed where the server streams: a server stops generating only when a
        streamed client leaves (llama-cpp-python's finishes non-streamed requests regardless)."""
        path = f"{self.remote.path}/completions"
        if self.stream:
            resp = self.remote.send(conn, "POST", path, dict(body, stream=True,
                                                              stream_options={"include_usage": True}))
            if "text/event-stream" in (resp.getheader("Content-Type") or ""):
                return _parse_stream(resp) if resp.status == 200 else error_for(resp.status, {})
            status, reply = read_json(resp)
            if status in (400, 422) and "stream" in message(reply).lower():
                log.info("the model server does not stream; sending whole completions from now on")
                self.stream = False
                conn.close()
                return self._completion(self.remote.connection(), body)
        else:
            status, reply = read_json(self.remote.send(conn, "POST", path, dict(body, stream=False)))
        if status != 200:
            log.warning("model server answered HTTP %d: %s", status, message(reply))
            return error_for(status, reply)
        return _parse_completion(reply)


def _parse_stream(resp: http.client.HTTPResponse) -> GenerationResult | DaemonError:
    """A streamed completion: the text of every chunk, the last finish_reason, usage when the server sends it."""
    parts: list[str] = []
    finish, usage = None, {}
    try:
        for event in read_events(resp):
            if isinstance(event, dict) and isinstance(event.get("usage"), dict):
                usage = event["usage"]
            choices = event.get("choices") if isinstance(event, dict) else None
            if not isinstance(choices, list) or not choices:
                continue
            choice = choices[0]
            if not isinstance(choice, dict) or not isinstance(choice.get("text", ""), str):
                raise ValueError("a chunk without text")
            parts.append(choice.get("text") or "")
            finish = choice.get("finish_reason") or finish
    except ValueError as e:
        log.warning("model server sent an invalid stream: %s", e)
        return Unavailable("the model server sent a reply without a completion text")
    if finish is None:
        return Unavailable("the model server's stream ended before the completion did")
    # Without usage (llama-cpp-python's server sends none when streaming): one token per chunk with text.
    reply = {"choices": [{"text": "".join(parts), "finish_reason": finish}],
             "usage": usage or {"completion_tokens": sum(1 for p in parts if p)}}
    return _parse_completion(reply)


def _parse_completion(reply: Any) -> GenerationResult | DaemonError:
    """The first choice of a completions reply; a reply of another shape is the server's fault."""
    choices = reply.get("choices") if isinstance(reply, dict) else None
    choice = choices[0] if isinstance(choices, list) and choices else None
    if not isinstance(choice, dict) or not isinstance(choice.get("text"), str):
        log.warning("model server sent an invalid completion: %.300r", reply)
        return Unavailable("the model server sent a reply without a completion text")
    usage = reply.get("usage") if isinstance(reply.get("usage"), dict) else {}
    reason = choice.get("finish_reason")  # any JSON value: a list or object would not even hash
    finish = {"stop": "eos", "length": "length"}.get(reason, "stop") if isinstance(reason, str) else "stop"
    try:
        prompt_tokens, completion_tokens = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
    except (TypeError, ValueError):
        prompt_tokens = completion_tokens = 0
    return GenerationResult(text=choice["text"], finish_reason=finish, prompt_tokens=prompt_tokens,
                            completion_tokens=completion_tokens)

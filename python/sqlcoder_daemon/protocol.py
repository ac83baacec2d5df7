"""Parsing requests and building and encoding every reply of protocol version 1 (docs/protocol.md); no I/O,
so it can be fuzzed."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from .errors import BadRequest, DaemonError, UnsupportedVersion

__all__ = [
    "GRAMMAR_FORMATS", "MAX_ID_CHARS", "OPS", "PROTOCOL_VERSION", "SUPPORTED_VERSIONS", "CountTokensRequest",
    "GenerateRequest", "Grammar",
    "Limits", "Request", "StatusRequest", "count_tokens_reply", "encode", "error_reply", "generate_reply", "ok_reply",
    "parse_message", "parse_request", "status_reply",
]

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = (1,)
MAX_ID_CHARS = 200
OPS = ("generate", "count_tokens", "status")
#: The forms a request's grammar may come in: GBNF (llama.cpp's format) and Lark (llguidance's).
GRAMMAR_FORMATS = ("gbnf", "lark")


@dataclasses.dataclass(frozen=True)
class Limits:
    """The daemon's bounds that a request is checked against."""

    max_new_tokens: int = 300
    num_beams: int = 4
    max_num_beams: int = 8
    timeout_ms: int = 600_000
    max_texts: int = 1024
    max_grammar_bytes: int = 1 << 20


@dataclasses.dataclass(frozen=True)
class Grammar:
    """What a generate request's answer must match, in each form the client sent (None: not sent)."""

    gbnf: str | None = None
    lark: str | None = None


@dataclasses.dataclass(frozen=True)
class Request:
    id: str
    op: str


@dataclasses.dataclass(frozen=True)
class GenerateRequest(Request):
    prompt: str
    max_new_tokens: int
    num_beams: int
    timeout_ms: int
    grammar: Grammar | None = None


@dataclasses.dataclass(frozen=True)
class CountTokensRequest(Request):
    texts: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class StatusRequest(Request):
    pass


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int_field(msg: dict[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    v = msg.get(name)
    if v is None:
        return default
    if not _is_int(v):
        raise BadRequest(f"'{name}' must be an integer")
    if not lo <= v <= hi:
        raise BadRequest(f"'{name}' must be between {lo} and {hi}")
    return int(v)


def parse_request(line: bytes | str, limits: Limits = Limits()) -> Request:
    """Turn one request line into a :class:`Request`, or raise a :class:`DaemonError`.

    The error's ``request_id`` attribute holds the id to echo (``None`` when
    the line could not be parsed); ``close`` is set for lines that are not JSON.
    """
    try:
        text = line.decode("utf-8") if isinstance(line, (bytes, bytearray)) else line
        msg = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _with_id(BadRequest("request is not valid UTF-8 JSON", close=True), None) from None
    if not isinstance(msg, dict):
        raise _with_id(BadRequest("request must be a JSON object"), None)
    rid = msg.get("id")
    echo = rid if isinstance(rid, str) and len(rid) <= MAX_ID_CHARS else None
    try:
        return parse_message(msg, limits)
    except DaemonError as e:
        raise _with_id(e, echo) from None


def _with_id(err: DaemonError, rid: str | None) -> DaemonError:
    err.request_id = rid  # type: ignore[attr-defined]
    return err


def parse_message(msg: dict[str, Any], limits: Limits) -> Request:
    """Validate a decoded request object; the OpenAI-compatible listener maps its fields onto one and
    comes here too, so both doors check every field the same way."""
    v = msg.get("v")
    if "v" not in msg:
        raise BadRequest("missing 'v' (protocol version)")
    if not _is_int(v) or v not in SUPPORTED_VERSIONS:
        raise UnsupportedVersion(
            f"protocol version {v!r} is not supported", extra={"supported": list(SUPPORTED_VERSIONS)}
        )
    rid = msg.get("id")
    if not isinstance(rid, str):
        raise BadRequest("'id' must be a string")
    if len(rid) > MAX_ID_CHARS:
        raise BadRequest(f"'id' is longer than {MAX_ID_CHARS} characters")
    op = msg.get("op")
    if op == "generate":
        prompt = msg.get("prompt")
        if not isinstance(prompt, str):
            raise BadRequest("'prompt' must be a string")
        if not prompt:
            raise BadRequest("'prompt' is empty")
        return GenerateRequest(
            id=rid,
            op=op,
            prompt=prompt,
            max_new_tokens=_int_field(msg, "max_new_tokens", limits.max_new_tokens, 1, limits.max_new_tokens),
            num_beams=_int_field(msg, "num_beams", limits.num_beams, 1, limits.max_num_beams),
            timeout_ms=_int_field(msg, "timeout_ms", limits.timeout_ms, 1, 24 * 3600 * 1000),
            grammar=_grammar_field(msg, limits),
        )
    if op == "count_tokens":
        texts = msg.get("texts")
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise BadRequest("'texts' must be an array of strings")
        if len(texts) > limits.max_texts:
            raise BadRequest(f"'texts' has more than {limits.max_texts} items")
        return CountTokensRequest(id=rid, op=op, texts=tuple(texts))
    if op == "status":
        return StatusRequest(id=rid, op=op)
    if not isinstance(op, str):
        raise BadRequest("'op' must be a string")
    raise BadRequest(f"unknown op {op[:50]!r}; expected one of {', '.join(OPS)}")


def _grammar_field(msg: dict[str, Any], limits: Limits) -> Grammar | None:
    """``grammar``: an object of strings by format, each bounded; a backend that cannot parse one says so
    when it runs the request (the reply's ``constrained`` is false)."""
    raw = msg.get("grammar")
    if raw is None:
        return None
    if not isinstance(raw, dict) or not raw:
        raise BadRequest(f"'grammar' must be an object with one or more of {', '.join(GRAMMAR_FORMATS)}")
    forms: dict[str, str] = {}
    for name, text in raw.items():
        if name not in GRAMMAR_FORMATS:
            raise BadRequest(f"unknown grammar format {str(name)[:50]!r}; expected {', '.join(GRAMMAR_FORMATS)}")
        if not isinstance(text, str) or not text.strip():
            raise BadRequest(f"'grammar.{name}' must be a non-empty string")
        if "\x00" in text:
            raise BadRequest(f"'grammar.{name}' contains a NUL character")
        if len(text.encode("utf-8", "surrogatepass")) > limits.max_grammar_bytes:
            raise BadRequest(f"'grammar.{name}' is longer than max_grammar_bytes ({limits.max_grammar_bytes})")
        forms[name] = text
    return Grammar(**forms)


def ok_reply(rid: str | None, **fields: Any) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "id": rid, "ok": True, **fields}


def status_reply(rid: str, status: dict[str, Any]) -> dict[str, Any]:
    return ok_reply(rid, status=status)


def count_tokens_reply(rid: str, counts: list[int]) -> dict[str, Any]:
    return ok_reply(rid, counts=counts)


def generate_reply(rid: str, *, text: str, model: str | None, finish_reason: str, prompt_tokens: int,
                   completion_tokens: int, cached_tokens: int, timings: dict[str, float | None],
                   constrained: bool = False) -> dict[str, Any]:
    """A ``generate`` reply (the caller passes a finished job's result and timings: this module stays
    free of the job types, which import it)."""
    return ok_reply(rid, text=text, model=model, finish_reason=finish_reason,
                    usage={"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                           "cached_prompt_tokens": cached_tokens},
                    timings=timings, constrained=constrained)


def error_reply(rid: str | None, err: DaemonError) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "id": rid, "ok": False, "error": err.to_error()}


def encode(reply: dict[str, Any]) -> bytes:
    """One reply line: compact JSON, ASCII-safe, newline-terminated (JSON escapes any newline inside)."""
    return json.dumps(reply, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8") + b"\n"

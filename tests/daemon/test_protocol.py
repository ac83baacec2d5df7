"""The protocol-1 request parser and reply encoder (docs/protocol.md), including a hypothesis fuzz."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sqlcoder_daemon.errors import DaemonError
from sqlcoder_daemon.protocol import (
    CountTokensRequest,
    GenerateRequest,
    Limits,
    StatusRequest,
    encode,
    error_reply,
    parse_request,
)

LIMITS = Limits(max_new_tokens=300, num_beams=4, max_num_beams=8, timeout_ms=1000)


def line(obj) -> bytes:
    return json.dumps(obj).encode()


def err(raw: bytes | str) -> DaemonError:
    with pytest.raises(DaemonError) as info:
        parse_request(raw, LIMITS)
    return info.value


def test_generate_defaults_come_from_the_daemon() -> None:
    r = parse_request(line({"v": 1, "id": "7", "op": "generate", "prompt": "p", "extra": {"ignored": True}}), LIMITS)
    assert r == GenerateRequest(id="7", op="generate", prompt="p", max_new_tokens=300, num_beams=4, timeout_ms=1000)


def test_generate_explicit_fields() -> None:
    r = parse_request(line({"v": 1, "id": "", "op": "generate", "prompt": "p", "max_new_tokens": 5, "num_beams": 1,
                            "timeout_ms": 20}), LIMITS)
    assert (r.max_new_tokens, r.num_beams, r.timeout_ms) == (5, 1, 20)


def test_count_tokens_and_status() -> None:
    assert parse_request(line({"v": 1, "id": "a", "op": "count_tokens", "texts": ["x", ""]}), LIMITS) == \
        CountTokensRequest(id="a", op="count_tokens", texts=("x", ""))
    assert parse_request(line({"v": 1, "id": "a", "op": "status"}), LIMITS) == StatusRequest(id="a", op="status")


@pytest.mark.parametrize("raw", [b"", b"{", b"\xff\xfe", b"nul", b'{"v": 1,}'])
def test_not_json_closes_with_null_id(raw: bytes) -> None:
    e = err(raw)
    assert e.code == "bad_request" and e.close and e.request_id is None


@pytest.mark.parametrize("obj", [[], 1, "s", None])
def test_not_an_object_keeps_open(obj) -> None:
    e = err(line(obj))
    assert e.code == "bad_request" and not e.close and e.request_id is None


def test_unsupported_version_lists_supported() -> None:
    e = err(line({"v": 2, "id": "q", "op": "status"}))
    assert e.code == "unsupported_version" and e.extra == {"supported": [1]} and e.request_id == "q"
    assert err(line({"v": True, "id": "q", "op": "status"})).code == "unsupported_version"
    assert err(line({"v": "1", "id": "q", "op": "status"})).code == "unsupported_version"
    assert err(line({"id": "q", "op": "status"})).code == "bad_request"


@pytest.mark.parametrize("obj, word", [
    ({"v": 1, "op": "status"}, "id"),
    ({"v": 1, "id": 5, "op": "status"}, "id"),
    ({"v": 1, "id": "x" * 201, "op": "status"}, "200"),
    ({"v": 1, "id": "a", "op": "launch"}, "unknown op"),
    ({"v": 1, "id": "a"}, "op"),
    ({"v": 1, "id": "a", "op": "generate", "prompt": 3}, "prompt"),
    ({"v": 1, "id": "a", "op": "generate", "prompt": ""}, "prompt"),
    ({"v": 1, "id": "a", "op": "generate", "prompt": "p", "max_new_tokens": 301}, "max_new_tokens"),
    ({"v": 1, "id": "a", "op": "generate", "prompt": "p", "max_new_tokens": 0}, "max_new_tokens"),
    ({"v": 1, "id": "a", "op": "generate", "prompt": "p", "num_beams": 9}, "num_beams"),
    ({"v": 1, "id": "a", "op": "generate", "prompt": "p", "num_beams": True}, "num_beams"),
    ({"v": 1, "id": "a", "op": "generate", "prompt": "p", "timeout_ms": 1.5}, "timeout_ms"),
    ({"v": 1, "id": "a", "op": "count_tokens", "texts": "x"}, "texts"),
    ({"v": 1, "id": "a", "op": "count_tokens", "texts": ["x", 1]}, "texts"),
])
def test_ill_typed_fields_are_bad_requests(obj, word) -> None:
    e = err(line(obj))
    assert e.code == "bad_request" and not e.close and word in e.message
    assert e.request_id == (obj["id"] if isinstance(obj.get("id"), str) and len(obj["id"]) <= 200 else None)


def test_reply_encoding_is_one_line() -> None:
    out = encode({"v": 1, "id": "1", "ok": True, "text": "a\nb\u2028"})
    assert out.endswith(b"\n") and out.count(b"\n") == 1
    assert json.loads(out)["text"] == "a\nb\u2028"
    e = err(line({"v": 9, "id": "z", "op": "status"}))
    assert error_reply("z", e)["error"] == {"code": "unsupported_version", "message": e.message, "supported": [1]}


# Cheap strategies (sampled values, spliced bytes) keep 11,000 examples to a few seconds.
_VALUES = [None, True, False, 0, 1, -1, 2, 4, 8, 9, 300, 301, 10**12, 1.5, float("inf"), "", "1", "x", "x" * 201,
           "\u2028\n\"", [], ["a"], ["a", 1], {}, {"v": 1}]
_KEYS = ["v", "id", "op", "prompt", "max_new_tokens", "num_beams", "timeout_ms", "texts", "extra"]
_OPS = ["generate", "count_tokens", "status", "other", ""]
_MISSING = object()
_FIELD = {"v": [1, 1, 2, "1", True, None], "id": ["a", "", 3, "x" * 201], "op": _OPS + [1]}
_requestish = st.tuples(*[st.sampled_from(_FIELD.get(k, []) + _VALUES + [_MISSING] * 4) for k in _KEYS]).map(
    lambda values: {k: v for k, v in zip(_KEYS, values) if v is not _MISSING})
_VALID = [json.dumps(o).encode() for o in (
    {"v": 1, "id": "42", "op": "generate", "prompt": "SELECT", "max_new_tokens": 5, "num_beams": 1},
    {"v": 1, "id": "c", "op": "count_tokens", "texts": ["a", "b"]},
    {"v": 1, "id": "s", "op": "status"},
)]
_spliced = st.tuples(st.sampled_from(_VALID), st.integers(0, 90), st.integers(0, 4), st.binary(max_size=4)).map(
    lambda t: t[0][: t[1]] + t[3] + t[0][t[1] + t[2]:])


def _check(raw: bytes) -> None:
    """Every line either parses into a valid request or raises a DaemonError with a protocol code."""
    try:
        req = parse_request(raw, LIMITS)
    except DaemonError as e:
        assert e.code in ("bad_request", "unsupported_version")
        assert e.request_id is None or (isinstance(e.request_id, str) and len(e.request_id) <= 200)
        reply = json.loads(encode(error_reply(e.request_id, e)))
        assert reply["ok"] is False and reply["error"]["code"] == e.code
        return
    assert req.op in ("generate", "count_tokens", "status") and isinstance(req.id, str) and len(req.id) <= 200
    if isinstance(req, GenerateRequest):
        assert req.prompt and 1 <= req.max_new_tokens <= 300 and 1 <= req.num_beams <= 8 and req.timeout_ms >= 1


@pytest.mark.slow
@settings(max_examples=6000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(_requestish)
def test_fuzz_request_objects(obj) -> None:
    _check(json.dumps(obj).encode())


@pytest.mark.slow
@settings(max_examples=4000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(_spliced | st.binary(max_size=40))
def test_fuzz_arbitrary_lines(raw: bytes) -> None:
    _check(raw)

"""``sqlcoder.history`` rows that survive the caller's transaction rolling back.

A failing ``run`` raises an error, and an error aborts the caller's
transaction: a row inserted in it would vanish (and a ``BEGIN READ ONLY``
transaction cannot insert at all). So each row is queued in shared memory
for its database's one history writer (``src/history_writer.c``), a
background worker that writes it in its own transaction as
``sqlcoder_history_writer``, a role that may only insert history rows. It
connects by OID to the current database, so nothing the caller names or sets
decides where the row goes or what runs with it; the row's role is the
caller's ``current_user``, found by the server, never taken from the input.

The caller waits at most ``history_timeout_ms``. A row that cannot be queued
or written is counted (``sqlcoder.status()`` shows the counters) and logged
with its reason, at most a line every ten seconds; it never becomes the
caller's error. Identical refusals within a second are folded into one row
with a ``repeat_count``. A call its backend leaves (terminated, or the client
went away) is written at exit with the outcome ``terminated`` or
``abandoned``. The C functions take the token ``sqlcoder_internal._invoke`` made for
this call (:func:`call_token`), so no role can call them on its own.
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from . import _spi
from ._spi import Plpy
from .errors import (
    ClientGone,
    DaemonBusy,
    DaemonError,
    FeedbackError,
    FeedbackReadOnly,
    ModelTimeout,
    SqlcoderError,
    SqlRefused,
    TimeLimitExceeded,
)

__all__ = ["Entry", "Limits", "begin", "record", "recording", "stats", "feedback", "call_token", "COLUMNS",
           "FOLDED_OUTCOMES", "MAX_TEXT"]

COLUMNS = ("role", "operation", "question", "sql", "model", "model_ms", "query_ms", "latency_ms",
           "row_count", "truncated", "outcome", "error_sqlstate", "error", "repeat_count", "attempts", "output")

MAX_TEXT = 100_000  # a 1 MB question or a 10 MB reply is recorded shortened, and so is corrected SQL
# Refusals are cheap to provoke in a loop; one row a second each is enough.
FOLDED_OUTCOMES = frozenset({"refused", "busy"})

_BEGIN = "SELECT sqlcoder_internal._history_begin($1, $2::pg_catalog.jsonb, $3)"
_WRITE = "SELECT sqlcoder_internal._history_write($1, $2::pg_catalog.jsonb, $3, $4, $5) AS status"

# The token of the sqlcoder_internal._invoke call in progress (the interpreter lives as long as the backend).
_token: list[str | None] = [None]


@contextmanager
def call_token(token: str | None) -> Iterator[None]:
    """Make ``token`` the one the history functions are called with until the block ends."""
    saved = _token[0]
    _token[0] = token
    try:
        yield
    finally:
        _token[0] = saved


@dataclass
class Entry:
    """One call of ask, run or execute, filled in as it goes."""

    operation: str
    question: str | None = None
    sql: str | None = None
    model: str | None = None
    model_ms: float | None = None
    query_ms: float | None = None
    latency_ms: float | None = None
    row_count: int | None = None
    truncated: bool | None = None
    outcome: str = "error"
    error_sqlstate: str | None = None
    error: str | None = None
    attempts: list[dict[str, Any]] | None = None  # every attempt, when the first was sent back for correction
    output: str | None = None  # the model's own text of the last answer, accepted or not

    def failed(self, outcome: str, sqlstate: str | None, message: str) -> None:
        self.outcome, self.error_sqlstate, self.error = outcome, sqlstate, message


@dataclass(frozen=True)
class Limits:
    """How long a call waits for its row, and how long the worker may try."""

    timeout_ms: int  # history_timeout_ms
    write_timeout_ms: int  # history_write_timeout_ms


def _clean(value: Any) -> Any:
    """Texts without NUL and at most MAX_TEXT characters, also inside lists and objects (attempts)."""
    if isinstance(value, str):
        value = value.replace("\x00", "\\0")
        if len(value) > MAX_TEXT:
            value = value[:MAX_TEXT] + f"... ({len(value)} characters)"
    elif isinstance(value, list):
        value = [_clean(v) for v in value[:10]]
    elif isinstance(value, dict):
        value = {str(k)[:100]: _clean(v) for k, v in value.items()}
    return value


def _payload(entry: Entry) -> str:
    return json.dumps({k: _clean(v) for k, v in asdict(entry).items()})


def _fold_key(entry: Entry) -> str | None:
    if entry.outcome not in FOLDED_OUTCOMES:
        return None
    return json.dumps([entry.operation, entry.outcome, entry.error_sqlstate, entry.error, entry.question, entry.sql])


def begin(plpy: Plpy, entry: Entry, limits: Limits) -> None:
    """Remember the call, so that it is written as terminated or abandoned if the backend exits during it."""
    pending = Entry(entry.operation, question=entry.question, sql=entry.sql, outcome="terminated")
    plpy.execute(_spi.plan(plpy, _BEGIN, ["text", "text", "int4"]),
                 [_token[0], _payload(pending), limits.write_timeout_ms])


def record(plpy: Plpy, entry: Entry, limits: Limits) -> str:
    """Have ``entry`` written for the calling role; returns what happened ('written', 'folded', 'lost: ...')."""
    plan = _spi.plan(plpy, _WRITE, ["text", "text", "text", "int4", "int4"])
    try:
        with plpy.subtransaction():
            status: str = plpy.execute(plan, [_token[0], _payload(entry), _fold_key(entry), limits.timeout_ms,
                                              limits.write_timeout_ms])[0]["status"]
            return status
    except plpy.SPIError as exc:  # counted nowhere else: say so in the log, never to the caller
        plpy.log(f"sqlcoder: a history row was not written: {exc}")
        return f"lost: {exc}"


def stats(plpy: Plpy) -> dict[str, Any]:
    """Rows asked for, written, folded and lost since the server started, with the last failure's reason."""
    raw = plpy.execute(_spi.plan(plpy, "SELECT sqlcoder_internal._history_stats()::text AS s"))[0]["s"]
    counts: dict[str, Any] = json.loads(raw)
    return counts


def _outcome(exc: BaseException) -> str:
    if isinstance(exc, ClientGone):
        return "abandoned"
    if isinstance(exc, SqlRefused):
        return "refused"
    if isinstance(exc, DaemonBusy):
        return "busy"
    if isinstance(exc, (TimeLimitExceeded, ModelTimeout)):
        return "timeout"
    if isinstance(exc, DaemonError):
        return "daemon_error"
    if _spi.is_canceled(exc):
        return "canceled"
    return "error"


@contextmanager
def recording(plpy: Plpy, entry: Entry, limits: Limits) -> Iterator[Entry]:
    """Record ``entry`` when the block ends, however it ends; the block's own error still propagates."""
    started = time.monotonic()
    begin(plpy, entry, limits)
    try:
        yield entry
    except SqlcoderError as exc:
        entry.failed(_outcome(exc), exc.sqlstate, exc.message)
        raise
    except plpy.SPIError as exc:
        spi = _spi.fields(exc)
        entry.failed(_outcome(exc), spi.sqlstate, spi.message)
        raise
    except Exception as exc:
        entry.failed("error", "XX000", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        entry.latency_ms = (time.monotonic() - started) * 1000
        record(plpy, entry, limits)


_FEEDBACK = ("UPDATE sqlcoder.history SET correct = $2, corrected_sql = $3, feedback_at = pg_catalog.now() "
             "WHERE id = $1 RETURNING id")


def feedback(plpy: Plpy, history_id: Any, correct: Any, corrected_sql: Any) -> None:
    """Store a verdict (and corrected SQL) on one history row; row-level security limits it to your own."""
    if history_id is None:
        raise FeedbackError("the history id must not be NULL")
    if correct is None:
        raise FeedbackError("say whether the SQL was correct (true or false)",
                            hint="sqlcoder.feedback(id, false, 'SELECT ...') stores a correction.")
    if isinstance(corrected_sql, str) and "\x00" in corrected_sql:
        raise FeedbackError("the corrected SQL contains a NUL character", hint=None)
    if isinstance(corrected_sql, str) and len(corrected_sql) > MAX_TEXT:
        raise FeedbackError(f"the corrected SQL is {len(corrected_sql)} characters long; the limit is {MAX_TEXT}",
                            hint="Store a shorter query; history keeps at most that much of any text.")
    try:
        rows = plpy.execute(_spi.plan(plpy, _FEEDBACK, ["bigint", "boolean", "text"]),
                            [history_id, correct, corrected_sql])
    except plpy.SPIError as exc:
        spi = _spi.fields(exc)
        if spi.sqlstate == "25006":  # BEGIN READ ONLY, or a standby
            raise FeedbackReadOnly("sqlcoder.feedback cannot store the verdict: the transaction is read-only",
                                   detail=spi.message) from None
        raise
    if not rows:
        raise FeedbackError(f"no sqlcoder.history entry {history_id} of yours")

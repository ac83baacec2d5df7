"""``sqlcoder.history`` rows that survive the caller's transaction rolling back.

A failing ``run`` raises an error, and an error aborts the caller's
transaction: a row inserted through SPI would vanish with it (and a
``BEGIN READ ONLY`` transaction cannot insert at all). So each row is written
in its own transaction, over a short loopback connection made with libpq
(loaded with ctypes, as dblink and postgres_fdw load it): by default to the
server's own Unix socket, as the server's OS user (peer or trust
authentication), or with the DBA's ``history_conninfo``. The values go as
query parameters; the role recorded is the caller's ``current_user``, found
by the server, never taken from the caller's input.

If the loopback connection fails (no Unix socket, authentication refused, no
free connection slot), the row is inserted through SPI instead, in a
subtransaction: it is then kept only if the caller's transaction commits, and
the reason goes to the server log.
"""

from __future__ import annotations

import ctypes
import json
import os
import pwd
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from .errors import (ClientGone, DaemonError, FeedbackError, ModelTimeout, SqlcoderError, SqlRefused,
                     TimeLimitExceeded)

__all__ = ["Entry", "record", "recording", "feedback", "COLUMNS"]

COLUMNS = ("role", "operation", "question", "sql", "model", "model_ms", "query_ms", "latency_ms",
           "row_count", "truncated", "outcome", "error_sqlstate", "error", "attempts")

_INSERT = ("INSERT INTO sqlcoder.history (" + ", ".join(COLUMNS) + ") VALUES ("
           + ", ".join(f"${i + 1}" for i in range(len(COLUMNS))) + ") RETURNING id")
_TYPES = ["name", "text", "text", "text", "text", "float8", "float8", "float8", "int8", "bool", "text", "text",
          "text", "jsonb"]
_MAX_TEXT = 100_000  # a 1 MB question or a 10 MB reply is recorded shortened
_CONNECT_TIMEOUT_S = 2
_OPTIONS = "-c statement_timeout=5000 -c lock_timeout=2000 -c search_path=pg_catalog"


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

    def failed(self, outcome: str, sqlstate: str | None, message: str) -> None:
        self.outcome, self.error_sqlstate, self.error = outcome, sqlstate, message


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        value = value.replace("\x00", "\\0")
        if len(value) > _MAX_TEXT:
            value = value[:_MAX_TEXT] + f"... ({len(value)} characters)"
    return value


def _values(entry: Entry, role: str) -> list[Any]:
    values = [_clean(v) for v in (role, entry.operation, entry.question, entry.sql, entry.model, entry.model_ms,
                                  entry.query_ms, entry.latency_ms, entry.row_count, entry.truncated, entry.outcome,
                                  entry.error_sqlstate, entry.error)]
    # Attempts hold SQL already cut to correction.MAX_SHOWN_CHARS: the JSON is never shortened (it would not parse).
    values.append(None if entry.attempts is None else json.dumps(entry.attempts))
    return values


# -- libpq through ctypes ------------------------------------------------------

_libpq: Any = None


def _lib() -> Any:
    global _libpq
    if _libpq is None:
        lib = ctypes.CDLL("libpq.so.5")
        p, i, s = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p
        lib.PQconnectdbParams.restype = p
        lib.PQconnectdbParams.argtypes = [ctypes.POINTER(s), ctypes.POINTER(s), i]
        lib.PQstatus.restype, lib.PQstatus.argtypes = i, [p]
        lib.PQerrorMessage.restype, lib.PQerrorMessage.argtypes = s, [p]
        lib.PQexecParams.restype = p
        lib.PQexecParams.argtypes = [p, s, i, p, ctypes.POINTER(s), p, p, i]
        lib.PQresultStatus.restype, lib.PQresultStatus.argtypes = i, [p]
        lib.PQresultErrorMessage.restype, lib.PQresultErrorMessage.argtypes = s, [p]
        lib.PQgetvalue.restype, lib.PQgetvalue.argtypes = s, [p, i, i]
        lib.PQclear.restype, lib.PQclear.argtypes = None, [p]
        lib.PQfinish.restype, lib.PQfinish.argtypes = None, [p]
        _libpq = lib
    return _libpq


def _text(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return b"true" if value else b"false"
    return str(value).encode("utf-8", "replace")


def _server_socket() -> tuple[str, str]:
    """The server's first Unix socket directory and port, from postmaster.pid.

    A backend's working directory is the data directory; reading the file
    needs no database privilege (``unix_socket_directories`` does).
    """
    with open("postmaster.pid", encoding="utf-8") as f:
        lines = f.read().splitlines()
    if len(lines) < 5 or not lines[4].strip():
        raise OSError("the server has no Unix socket (unix_socket_directories is empty); set history_conninfo")
    return lines[4].strip(), lines[3].strip()


def _loopback_params(plpy: Any, conninfo: str) -> list[tuple[str, str]]:
    database = plpy.execute("SELECT pg_catalog.current_database() AS db")[0]["db"]
    params: list[tuple[str, str]] = []
    if conninfo:
        params.append(("dbname", conninfo))
    else:
        directory, port = _server_socket()
        params += [("host", directory), ("port", port), ("user", pwd.getpwuid(os.geteuid()).pw_name)]
    params += [("dbname", database), ("application_name", "sqlcoder history"),
               ("connect_timeout", str(_CONNECT_TIMEOUT_S)), ("options", _OPTIONS)]
    return params


def _insert_loopback(params: list[tuple[str, str]], values: list[Any]) -> int:
    lib = _lib()
    keys = (ctypes.c_char_p * (len(params) + 1))(*[k.encode() for k, _ in params], None)
    vals = (ctypes.c_char_p * (len(params) + 1))(*[v.encode() for _, v in params], None)
    conn = lib.PQconnectdbParams(keys, vals, 1)
    if not conn:
        raise OSError("libpq could not allocate a connection")
    try:
        if lib.PQstatus(conn) != 0:  # CONNECTION_OK
            raise OSError((lib.PQerrorMessage(conn) or b"").decode("utf-8", "replace").strip())
        args = (ctypes.c_char_p * len(values))(*[_text(v) for v in values])
        res = lib.PQexecParams(conn, _INSERT.encode(), len(values), None, args, None, None, 0)
        try:
            if lib.PQresultStatus(res) != 2:  # PGRES_TUPLES_OK
                raise OSError((lib.PQresultErrorMessage(res) or b"").decode("utf-8", "replace").strip())
            return int(lib.PQgetvalue(res, 0, 0))
        finally:
            lib.PQclear(res)
    finally:
        lib.PQfinish(conn)


def _insert_spi(plpy: Any, values: list[Any]) -> int | None:
    try:
        with plpy.subtransaction():
            return plpy.execute(plpy.prepare(_INSERT, _TYPES), values)[0]["id"]
    except plpy.SPIError as exc:
        if getattr(exc, "sqlstate", None) == "57014":
            raise
        plpy.log(f"sqlcoder: could not record history in the caller's transaction either: {exc}")
        return None


def record(plpy: Any, entry: Entry, conninfo: str = "") -> int | None:
    """Write ``entry`` for the calling role; return its id (None if it could not be written)."""
    role = plpy.execute("SELECT current_user AS role")[0]["role"]
    values = _values(entry, role)
    try:
        return _insert_loopback(_loopback_params(plpy, conninfo), values)
    except OSError as exc:
        plpy.log(f"sqlcoder: history loopback connection failed ({exc}); recording in the caller's transaction")
    return _insert_spi(plpy, values)


def _outcome(exc: BaseException) -> str:
    if isinstance(exc, ClientGone):
        return "abandoned"
    if isinstance(exc, SqlRefused):
        return "refused"
    if isinstance(exc, (TimeLimitExceeded, ModelTimeout)):
        return "timeout"
    if isinstance(exc, DaemonError):
        return "daemon_error"
    if getattr(exc, "sqlstate", None) == "57014":
        return "canceled"
    return "error"


@contextmanager
def recording(plpy: Any, entry: Entry, conninfo: str = "") -> Iterator[Entry]:
    """Record ``entry`` when the block ends, however it ends; the block's own error still propagates."""
    started = time.monotonic()
    try:
        yield entry
    except SqlcoderError as exc:
        entry.failed(_outcome(exc), exc.sqlstate, exc.message)
        raise
    except plpy.SPIError as exc:
        entry.failed(_outcome(exc), getattr(exc, "sqlstate", None), str(exc.args[0]) if exc.args else str(exc))
        raise
    except Exception as exc:
        entry.failed("error", "XX000", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        entry.latency_ms = (time.monotonic() - started) * 1000
        record(plpy, entry, conninfo)


_FEEDBACK = ("UPDATE sqlcoder.history SET correct = $2, corrected_sql = $3, feedback_at = pg_catalog.now() "
             "WHERE id = $1 RETURNING id")


def feedback(plpy: Any, history_id: Any, correct: Any, corrected_sql: Any) -> None:
    """Store a verdict (and corrected SQL) on one history row; row-level security limits it to your own."""
    if history_id is None:
        raise FeedbackError("the history id must not be NULL")
    if correct is None:
        raise FeedbackError("say whether the SQL was correct (true or false)",
                            hint="sqlcoder.feedback(id, false, 'SELECT ...') stores a correction.")
    if isinstance(corrected_sql, str) and "\x00" in corrected_sql:
        raise FeedbackError("the corrected SQL contains a NUL character", hint=None)
    rows = plpy.execute(plpy.prepare(_FEEDBACK, ["bigint", "boolean", "text"]), [history_id, correct, corrected_sql])
    if not rows:
        raise FeedbackError(f"no sqlcoder.history entry {history_id} of yours")

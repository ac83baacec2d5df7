"""The page's calls into the extension's SQL API, on the logged-in role's own connection.

Nothing here runs SQL of its own making beyond reading the caller's own
``sqlcoder.history`` rows and ``current_user``: questions go through
``sqlcoder.ask``, SQL through ``sqlcoder.execute`` (guard, read-only, row and
byte caps), feedback through ``sqlcoder.feedback``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row

from .sessions import SessionBusy

__all__ = ["Problem", "HistoryItem", "Who", "problem_from", "whoami", "ask", "execute", "feedback",
           "history", "history_item", "prompt", "status"]


@dataclass(frozen=True)
class Problem:
    """Something that went wrong, in the words PostgreSQL used.

    ``kind``: ``query`` (PostgreSQL or the extension refused or failed the
    question or SQL), ``daemon`` (the model daemon is the cause), ``database``
    (the database cannot be reached), ``busy`` (the session's own other requests
    hold its connections).
    """

    kind: str
    message: str
    hint: str | None = None
    detail: str | None = None
    sqlstate: str | None = None


@dataclass(frozen=True)
class HistoryItem:
    """One of the caller's own questions, from ``sqlcoder.history``."""

    id: int
    created_at: datetime
    question: str | None
    sql: str | None
    outcome: str
    correct: bool | None
    corrected_sql: str | None


@dataclass(frozen=True)
class Who:
    role: str
    granted: bool
    superuser: bool


# SQLSTATEs of the extension's daemon errors (python/sqlcoder/errors.py): the
# page shows the daemon's status beside them. 57014 is also a query timeout.
_DAEMON_STATES = {"08000", "08001", "08004", "08006", "08P01", "53000", "57014", "58000"}


def problem_from(exc: BaseException) -> Problem:
    """An exception from psycopg or its pool as a :class:`Problem` (never a traceback)."""
    if isinstance(exc, psycopg.Error) and exc.sqlstate and not exc.sqlstate.startswith("57P"):
        diag = exc.diag
        kind = "daemon" if exc.sqlstate in _DAEMON_STATES else "query"
        return Problem(kind, diag.message_primary or str(exc), diag.message_hint, diag.message_detail, exc.sqlstate)
    if isinstance(exc, SessionBusy):
        return Problem("busy", "Your other questions are still running (in other tabs or windows).",
                       "Try again when one of them has finished.")
    # No SQLSTATE: the connection itself failed or was lost, or the pool gave up waiting for one;
    # 57P01-57P05: the server is shutting down, restarting or not yet accepting connections.
    return Problem("database", "The database cannot be reached right now.",
                   "The page reconnects by itself: try again in a moment, or ask the DBA whether the server is up.")


@contextlib.asynccontextmanager
async def notices(conn: psycopg.AsyncConnection) -> AsyncIterator[list[str]]:
    """Collect the NOTICEs (row cap, byte cap, schema cut) the server sends during the block."""
    seen: list[str] = []

    def handler(diag: psycopg.errors.Diagnostic) -> None:
        if len(seen) < 20:
            text = diag.message_primary or ""
            seen.append(text + (f" ({diag.message_hint})" if diag.message_hint else ""))

    conn.add_notice_handler(handler)
    try:
        yield seen
    finally:
        conn.remove_notice_handler(handler)


async def whoami(conn: psycopg.AsyncConnection) -> Who:
    cur = await conn.execute(
        # From the catalogs, not to_regprocedure: naming a function in a schema without USAGE raises.
        "SELECT current_user::text, "
        "coalesce((SELECT pg_catalog.has_schema_privilege(n.oid, 'USAGE') "
        "                 AND pg_catalog.has_function_privilege(p.oid, 'EXECUTE') "
        "          FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace "
        "          WHERE n.nspname = 'sqlcoder' AND p.proname = 'ask' LIMIT 1), false), "
        "(SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)")
    role, granted, superuser = await cur.fetchone()
    return Who(role, bool(granted), bool(superuser))


async def _latest_ask_id(conn: psycopg.AsyncConnection, after: int | None) -> int | None:
    """The history row of the ask just made: the caller's newest ask row after ``after``.

    Not matched by question text: history may keep a shortened copy of a long
    question. Rows are written in their own transaction, so visible at once, or
    a moment later where a background writer records them.
    """
    for delay in (0, 0.05, 0.1, 0.2, 0.4, 0.8):
        await asyncio.sleep(delay)
        cur = await conn.execute(
            "SELECT max(id) FROM sqlcoder.history WHERE operation = 'ask' AND role = current_user AND id > %s",
            (after or 0,))
        row = await cur.fetchone()
        if row and row[0] is not None:
            return int(row[0])
    return None


async def _max_history_id(conn: psycopg.AsyncConnection) -> int | None:
    try:
        cur = await conn.execute("SELECT max(id) FROM sqlcoder.history")
        row = await cur.fetchone()
        return row[0] if row else None
    except psycopg.errors.InsufficientPrivilege:
        return None


async def ask(conn: psycopg.AsyncConnection, question: str) -> tuple[str, int | None, list[str]]:
    """``sqlcoder.ask``: the SQL, the id of its history row (for feedback), the notices."""
    before = await _max_history_id(conn)
    async with notices(conn) as seen:
        cur = await conn.execute("SELECT sqlcoder.ask(%s)", (question,))
        sql = (await cur.fetchone())[0]
    return sql, await _latest_ask_id(conn, before), seen


async def execute(conn: psycopg.AsyncConnection, sql: str) -> tuple[list[list[tuple[str, Any]]], list[str]]:
    """``sqlcoder.execute``: rows as (column, value) pairs in column order (duplicate names kept), notices."""
    async with notices(conn) as seen:
        cur = await conn.execute("SELECT r::text FROM sqlcoder.execute(%s) AS r", (sql,))
        texts = await cur.fetchall()
    rows = [[(name, _plain(value)) for name, value in json.loads(t[0], object_pairs_hook=_Pairs,
                                                                parse_float=Decimal)] for t in texts]
    return rows, seen


class _Pairs(list):
    """A JSON object as its (key, value) pairs: a row keeps duplicate column names and their order."""


def _plain(value: Any) -> Any:
    """Objects inside a cell (json columns) back to dicts."""
    if isinstance(value, _Pairs):
        return {k: _plain(v) for k, v in value}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


async def feedback(conn: psycopg.AsyncConnection, history_id: int, correct: bool,
                   corrected_sql: str | None) -> None:
    await conn.execute("SELECT sqlcoder.feedback(%s, %s, %s)", (history_id, correct, corrected_sql))


_HISTORY_COLUMNS = "id, created_at, question, sql, outcome, correct, corrected_sql"


async def history(conn: psycopg.AsyncConnection, limit: int) -> list[HistoryItem]:
    """The caller's own latest questions (row-level security shows no one else's)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {_HISTORY_COLUMNS} FROM sqlcoder.history WHERE operation = 'ask' "
                          "AND role = current_user ORDER BY id DESC LIMIT %s", (limit,))
        return [HistoryItem(**r) for r in await cur.fetchall()]


async def history_item(conn: psycopg.AsyncConnection, history_id: int) -> HistoryItem | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {_HISTORY_COLUMNS} FROM sqlcoder.history WHERE id = %s "
                          "AND role = current_user", (history_id,))
        row = await cur.fetchone()
    return HistoryItem(**row) if row else None


async def prompt(conn: psycopg.AsyncConnection, question: str) -> str:
    cur = await conn.execute("SELECT sqlcoder.prompt(%s)", (question,))
    return (await cur.fetchone())[0]


async def status(conn: psycopg.AsyncConnection) -> dict[str, Any]:
    cur = await conn.execute("SELECT sqlcoder.status()::text")
    return json.loads((await cur.fetchone())[0])

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
           "history", "history_item", "plain_words", "prompt", "status", "status_summary", "suggestions",
           "MAX_SUGGESTIONS"]

MAX_SUGGESTIONS = 6


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


# What the person who asked reads first, by SQLSTATE (python/sqlcoder/errors.py); PostgreSQL's
# own words, HINT and DETAIL stay one click away under it.
_PLAIN = {
    "22000": "The assistant could not write SQL for that question. Try asking it another way.",
    "22023": "That question could not be used. Ask it again in a sentence.",
    "42501": "You are not allowed to read some of the data this needs. Your database administrator can give "
             "you access.",
    "42601": "The SQL has a mistake in it. Ask the question another way, or correct the SQL and run it again.",
    "42P01": "The question names a table you cannot see. Try other words, or ask your database administrator.",
    "42703": "The question names a column that is not there. Try other words for it.",
    "42000": "That SQL is not allowed here: only questions that read data can be answered.",
    "25006": "Only questions that read data can be answered here: nothing can be changed.",
    "54000": "The answer is too large to show. Ask for fewer rows or columns, for example \"the top 10\".",
    "57014": "That took too long and was stopped. Try a simpler question, or try again later.",
}
_PLAIN_KIND = {
    "daemon": "The assistant that writes SQL is not available right now. Try again in a few minutes; if it "
              "keeps happening, tell your database administrator.",
    "database": "The database cannot be reached right now. Try again in a moment.",
    "busy": "Your other questions are still running (in other tabs or windows). Try again when one has finished.",
    "query": "The database could not answer that. Try asking the question another way.",
}


def plain_words(problem: Problem) -> str:
    """The problem for someone who does not know SQL: no SQLSTATEs, settings, paths or function names."""
    if problem.kind == "query" and problem.sqlstate in _PLAIN:
        return _PLAIN[problem.sqlstate]
    if problem.kind == "query" and problem.sqlstate is None:
        return problem.message  # the page's own words (an empty question, oversize SQL)
    return _PLAIN_KIND.get(problem.kind, _PLAIN_KIND["query"])


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


async def ask(conn: psycopg.AsyncConnection, question: str,
              follow_up: int | None = None) -> tuple[str, int | None, list[str]]:
    """``sqlcoder.ask``: the SQL, the id of its history row (for feedback), the notices. ``follow_up``: the
    history id of the caller's earlier answer this question refines (sqlcoder checks it is the caller's)."""
    before = await _max_history_id(conn)
    async with notices(conn) as seen:
        cur = await conn.execute("SELECT sqlcoder.ask(%s, follow_up => %s)", (question, follow_up))
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
    """The caller's own latest questions, each question once (its latest asking; case and spacing aside);
    row-level security shows no one else's."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_HISTORY_COLUMNS} FROM ("
            f"  SELECT DISTINCT ON (pg_catalog.lower(pg_catalog.regexp_replace(pg_catalog.btrim(question), "
            f"                      '\\s+', ' ', 'g'))) {_HISTORY_COLUMNS}"
            "   FROM sqlcoder.history WHERE operation = 'ask' AND role = current_user"
            "   ORDER BY pg_catalog.lower(pg_catalog.regexp_replace(pg_catalog.btrim(question), '\\s+', ' ', 'g')),"
            "            id DESC) latest "
            "ORDER BY id DESC LIMIT %s", (limit,))
        return [HistoryItem(**r) for r in await cur.fetchall()]


async def suggestions(conn: psycopg.AsyncConnection) -> list[str]:
    """Questions of golden examples the caller may read (the table's row-level security decides: every
    table an example reads must be readable), newest first; none when the role may not read examples."""
    try:
        cur = await conn.execute("SELECT question FROM sqlcoder.examples ORDER BY id DESC LIMIT %s",
                                 (MAX_SUGGESTIONS,))
        return [str(r[0])[:300] for r in await cur.fetchall()]
    except psycopg.errors.InsufficientPrivilege:
        return []


async def history_items(conn: psycopg.AsyncConnection, ids: list[int]) -> list[HistoryItem]:
    """The caller's own rows among ``ids``, oldest first (another role's id is simply not there)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {_HISTORY_COLUMNS} FROM sqlcoder.history WHERE id = ANY(%s) "
                          "AND role = current_user ORDER BY id", (ids,))
        return [HistoryItem(**r) for r in await cur.fetchall()]


async def history_item(conn: psycopg.AsyncConnection, history_id: int) -> HistoryItem | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {_HISTORY_COLUMNS} FROM sqlcoder.history WHERE id = %s "
                          "AND role = current_user", (history_id,))
        row = await cur.fetchone()
    return HistoryItem(**row) if row else None


async def prompt(conn: psycopg.AsyncConnection, question: str, follow_up: int | None = None) -> str:
    cur = await conn.execute("SELECT sqlcoder.prompt(%s, follow_up => %s)", (question, follow_up))
    return (await cur.fetchone())[0]


def status_summary(daemon: dict[str, Any] | None) -> str:
    """The daemon's status in one sentence for anyone: up or not, nothing of sockets, uids or paths."""
    if not daemon:
        return "The assistant's status is unknown."
    if not daemon.get("reachable"):
        return "The assistant that writes SQL is not available right now."
    inner = daemon.get("daemon") or {}
    queued = (inner.get("requests") or {}).get("queued", 0)
    waiting = f", {queued} question{'s' if queued != 1 else ''} waiting" if queued else ""
    return f"The assistant that writes SQL is up{waiting}."


async def status(conn: psycopg.AsyncConnection) -> dict[str, Any]:
    cur = await conn.execute("SELECT sqlcoder.status()::text")
    return json.loads((await cur.fetchone())[0])

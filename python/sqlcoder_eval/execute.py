"""Execute evaluation queries safely: read-only, with a statement timeout and a row cap."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from ._sqltokens import tokenize
from .compare import ResultSet

__all__ = ["QueryError", "run_query", "run_statements", "set_timeout", "statement_count"]


class QueryError(Exception):
    """A query failed (syntax, runtime error, timeout, too many rows); the message is what gets reported."""


def _freeze(v: Any) -> Any:
    """Make a value hashable and comparable: arrays become tuples, JSON documents canonical text."""
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True)
    return v


def set_timeout(conn: psycopg.Connection, seconds: float) -> None:
    """Set ``statement_timeout`` on ``conn`` (0 means none)."""
    conn.execute("SELECT pg_catalog.set_config('statement_timeout', %s, false)", (f"{int(seconds * 1000)}ms",))


def statement_count(sql: str) -> int:
    """How many statements ``sql`` holds (``;`` outside literals and comments separates them)."""
    count, pending = 0, False
    for t in tokenize(sql):
        if t.kind in ("ws", "comment"):
            continue
        if t.text == ";":
            count, pending = count + pending, False
        else:
            pending = True
    return count + pending


# Statements that would end or split the read-only transaction the answer runs in.
_TRANSACTION_CONTROL = {"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE", "PREPARE"}


def run_query(conn: psycopg.Connection, sql: str, max_rows: int = 100_000) -> ResultSet:
    """Run one statement in a read-only transaction that is always rolled back, so a generated
    query cannot change the data the next question is judged on (a second statement could end
    that transaction: it is refused). ``conn`` must be in autocommit mode."""
    n = statement_count(sql)
    if n != 1:
        raise QueryError("no statement" if n == 0 else f"{n} statements; only one query is judged")
    return run_statements(conn, [sql], max_rows)


def run_statements(conn: psycopg.Connection, statements: list[str], max_rows: int = 100_000) -> ResultSet:
    """Run ``statements`` in turn in one read-only, rolled-back transaction; the last one's result
    (what psycopg2 returns for a multi-statement string). Transaction control is refused."""
    if not statements:
        raise QueryError("no statement")
    for statement in statements:
        first = next((t for t in tokenize(statement) if t.kind not in ("ws", "comment")), None)
        if first is not None and first.is_word(*_TRANSACTION_CONTROL):
            raise QueryError(f"transaction control ({first.text}) is not run")
    try:
        with conn.transaction(force_rollback=True):
            conn.execute("SET TRANSACTION READ ONLY")
            with conn.cursor() as cur:
                for statement in statements:
                    cur.execute(statement)
                if cur.description is None:
                    raise QueryError("the statement returned no result set")
                rows = cur.fetchmany(max_rows + 1)
                columns = [d.name for d in cur.description]
    except psycopg.errors.QueryCanceled as e:
        raise QueryError(f"timeout: {str(e).strip()}") from e
    except psycopg.Error as e:
        raise QueryError(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__) from e
    if len(rows) > max_rows:
        raise QueryError(f"more than {max_rows} rows")
    return ResultSet.of(columns, [tuple(_freeze(v) for v in row) for row in rows])

"""Put a database's join pairs and glossary where the extension reads them.

The extension (0.2.0, issue #3) manages ``sqlcoder.join_hints`` and
``sqlcoder.instructions`` through ``sqlcoder.add_join_hint(regclass, name,
regclass, name)`` and ``sqlcoder.add_instruction(text, name)``, which check the
caller's privileges; going through them keeps the loader to the rules a DBA
follows. When a function is missing (no extension, or an older version) nothing
is inserted, and the returned line says why.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

__all__ = ["insert_glossary", "insert_join_hints"]

ADD_JOIN_HINT = "sqlcoder.add_join_hint(regclass,name,regclass,name)"
ADD_INSTRUCTION = "sqlcoder.add_instruction(text,name)"


def _exists(conn: psycopg.Connection, signature: str) -> bool:
    row = conn.execute("SELECT pg_catalog.to_regprocedure(%s) IS NOT NULL", (signature,)).fetchone()
    return bool(row and row[0])


def _split(qualified_column: str) -> tuple[str, str]:
    """``"t.c"`` -> (quoted table name, column): the metadata names tables unqualified, in public."""
    table, _, column = qualified_column.rpartition(".")
    return sql.Identifier(*table.split(".")).as_string(), column


def insert_join_hints(conn: psycopg.Connection, pairs: list[tuple[str, str]]) -> str:
    """Add ``("t1.c1", "t2.c2")`` pairs with ``sqlcoder.add_join_hint``; returns what was done."""
    if not pairs:
        return "join hints: none in the metadata"
    if not _exists(conn, ADD_JOIN_HINT):
        return f"join hints: skipped, {ADD_JOIN_HINT} does not exist (extension not installed, or older than 0.2.0)"
    # One at a time, each in its own savepoint: the metadata can name a column
    # the dump does not have (geography's mountain.state_nem), and one bad
    # pair must not lose the others.
    refused = []
    for left, right in pairs:
        try:
            with conn.transaction():
                conn.execute("SELECT sqlcoder.add_join_hint(%s::regclass, %s, %s::regclass, %s)",
                             (*_split(left), *_split(right)))
        except psycopg.Error as exc:
            refused.append(f"{left} = {right} ({exc.diag.message_primary})")
    done = f"join hints: {len(pairs) - len(refused)} added"
    return done + (f"; refused {len(refused)}: " + "; ".join(refused) if refused else "")


def insert_glossary(conn: psycopg.Connection, glossary: str) -> str:
    """Add each non-empty glossary line with ``sqlcoder.add_instruction`` (for every caller of the
    database: the loader is its DBA); returns what was done."""
    lines = [line.strip() for line in glossary.splitlines() if line.strip()]
    if not lines:
        return "glossary: empty"
    if not _exists(conn, ADD_INSTRUCTION):
        return f"glossary: skipped, {ADD_INSTRUCTION} does not exist (extension not installed, or older than 0.2.0)"
    with conn.cursor() as cur:
        cur.executemany("SELECT sqlcoder.add_instruction(%s)", [(line,) for line in lines])
    return f"glossary: {len(lines)} lines added"

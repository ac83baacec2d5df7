"""Put a database's join pairs and glossary where the extension reads them.

The extension's tables are ``sqlcoder.join_hints`` and ``sqlcoder.instructions``
(issue #3). Their exact columns may still move, so this module finds the table's
columns in the catalog and fills whichever known layout it recognises; when the
table is missing (no extension, or an older one) or its layout is unknown, it
inserts nothing and says why, and the caller reports it.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

__all__ = ["insert_glossary", "insert_join_hints"]

# Known layouts, most specific first: the column names each expects.
_JOIN_LAYOUTS = (
    ("left_table", "left_column", "right_table", "right_column"),
    ("from_table", "from_column", "to_table", "to_column"),
    ("table1", "column1", "table2", "column2"),
    ("left_col", "right_col"),
    ("left_column", "right_column"),
)
_INSTRUCTION_COLUMNS = ("instruction", "body", "text", "rule", "content")


def _table_columns(conn: psycopg.Connection, qualified: str) -> list[str] | None:
    row = conn.execute("SELECT pg_catalog.to_regclass(%s)::oid", (qualified,)).fetchone()
    if row is None or row[0] is None:
        return None
    return [r[0] for r in conn.execute(
        "SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped"
        " ORDER BY attnum", (row[0],))]


def _split(qualified_column: str) -> tuple[str, str]:
    table, _, column = qualified_column.rpartition(".")
    return table, column


def insert_join_hints(conn: psycopg.Connection, pairs: list[tuple[str, str]]) -> str:
    """Insert ``("t1.c1", "t2.c2")`` pairs into ``sqlcoder.join_hints``; returns what was done."""
    if not pairs:
        return "join hints: none in the metadata"
    columns = _table_columns(conn, "sqlcoder.join_hints")
    if columns is None:
        return "join hints: skipped, sqlcoder.join_hints does not exist (extension not installed?)"
    layout = next((lay for lay in _JOIN_LAYOUTS if set(lay) <= set(columns)), None)
    if layout is None:
        return f"join hints: skipped, unknown layout of sqlcoder.join_hints {columns}"
    rows = []
    for left, right in pairs:
        rows.append((*_split(left), *_split(right)) if len(layout) == 4 else (left, right))
    stmt = sql.SQL("INSERT INTO sqlcoder.join_hints ({}) VALUES ({})").format(
        sql.SQL(", ").join(map(sql.Identifier, layout)), sql.SQL(", ").join(sql.Placeholder() * len(layout)))
    with conn.cursor() as cur:
        cur.executemany(stmt, rows)
    return f"join hints: {len(rows)} inserted"


def insert_glossary(conn: psycopg.Connection, glossary: str) -> str:
    """Insert each non-empty glossary line into ``sqlcoder.instructions``; returns what was done."""
    lines = [line.strip() for line in glossary.splitlines() if line.strip()]
    if not lines:
        return "glossary: empty"
    columns = _table_columns(conn, "sqlcoder.instructions")
    if columns is None:
        return "glossary: skipped, sqlcoder.instructions does not exist (extension not installed?)"
    column = next((c for c in _INSTRUCTION_COLUMNS if c in columns), None)
    if column is None:
        return f"glossary: skipped, unknown layout of sqlcoder.instructions {columns}"
    stmt = sql.SQL("INSERT INTO sqlcoder.instructions ({}) VALUES (%s)").format(sql.Identifier(column))
    with conn.cursor() as cur:
        cur.executemany(stmt, [(line,) for line in lines])
    return f"glossary: {len(lines)} lines inserted"

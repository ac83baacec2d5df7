"""Put a database's join pairs and glossary where the extension reads them.

The extension manages ``sqlcoder.join_hints`` and
``sqlcoder.instructions`` through ``sqlcoder.add_join_hint(regclass, name,
regclass, name)`` and ``sqlcoder.add_instruction(text, name)``, which check the
caller's privileges; going through them keeps the loader to the rules a DBA
follows. When a function is missing (no extension, or an older version) nothing
is inserted, and the returned line says why.
"""

from __future__ import annotations

import re

import psycopg

from .names import resolve_qualified_column

__all__ = ["glossary_entries", "insert_glossary", "insert_join_hints"]

ADD_JOIN_HINT = "sqlcoder.add_join_hint(regclass,name,regclass,name)"
ADD_INSTRUCTION = "sqlcoder.add_instruction(text,name)"
_BULLET = re.compile(r"^(?:[-*\u2022]|\d+[.)])\s+")


def _exists(conn: psycopg.Connection, signature: str) -> bool:
    row = conn.execute("SELECT pg_catalog.to_regprocedure(%s) IS NOT NULL", (signature,)).fetchone()
    return bool(row and row[0])


def insert_join_hints(conn: psycopg.Connection, pairs: list[tuple[str, str]]) -> tuple[str, list[str]]:
    """Add ``("t1.c1", "s.t2.c2")`` pairs with ``sqlcoder.add_join_hint``, names resolved as PostgreSQL
    reads them; returns the summary line and the pairs not placed, each with the reason."""
    if not pairs:
        return "join hints: none in the metadata", []
    if not _exists(conn, ADD_JOIN_HINT):
        return (f"join hints: skipped, {ADD_JOIN_HINT} does not exist (extension not installed, or older than "
                "0.2.0)"), []
    # One at a time, each in its own savepoint: the metadata can name a column
    # the dump does not have (geography's mountain.state_nem), and one bad
    # pair must not lose the others.
    refused = []
    for left, right in pairs:
        (lcol, lwhy), (rcol, rwhy) = resolve_qualified_column(conn, left), resolve_qualified_column(conn, right)
        if lcol is None or rcol is None:
            refused.append(f"{left} = {right} ({lwhy or rwhy})")
            continue
        try:
            with conn.transaction():
                conn.execute("SELECT sqlcoder.add_join_hint(%s::oid::regclass, %s, %s::oid::regclass, %s)",
                             (lcol.table.oid, lcol.name, rcol.table.oid, rcol.name))
        except psycopg.Error as exc:
            refused.append(f"{left} = {right} ({exc.diag.message_primary})")
    done = f"join hints: {len(pairs) - len(refused)} of {len(pairs)} added"
    return done + (f"; refused {len(refused)}: " + "; ".join(refused) if refused else ""), refused


def glossary_entries(glossary: str) -> list[str]:
    """One instruction per top-level line, its own bullet removed (the prompt adds one); indented lines
    (nested bullets) stay under their parent as continuation lines with their indentation."""
    entries: list[list[str]] = []
    for raw in glossary.expandtabs(4).splitlines():
        if not raw.strip():
            continue
        indent = len(raw) - len(raw.lstrip())
        if indent and entries:
            entries[-1].append(" " * indent + raw.strip())
        else:
            entries.append([_BULLET.sub("", raw.strip()) or raw.strip()])
    return ["\n".join(lines) for lines in entries]


def insert_glossary(conn: psycopg.Connection, glossary: str) -> str:
    """Add each glossary entry with ``sqlcoder.add_instruction`` (for every caller of the database: the
    loader is its DBA); returns what was done."""
    entries = glossary_entries(glossary)
    if not entries:
        return "glossary: empty"
    if not _exists(conn, ADD_INSTRUCTION):
        return f"glossary: skipped, {ADD_INSTRUCTION} does not exist (extension not installed, or older than 0.2.0)"
    with conn.cursor() as cur:
        cur.executemany("SELECT sqlcoder.add_instruction(%s)", [(e,) for e in entries])
    return f"glossary: {len(entries)} entries added"

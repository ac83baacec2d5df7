"""``sqlcoder-eval load``: create each database of a data folder the way a DBA would describe it.

Metadata names are resolved as PostgreSQL reads them (:mod:`.names`); every
description or join pair that cannot be placed is reported by name and counted
(``comments: 25 of 27 described; not placed: ...``), and what was placed is read
back from the catalog, so nothing is dropped without a word: a description that
was placed but is not there afterwards is a :class:`LoadError`. Schemas of the
dump other than ``public`` go on the database's search_path, so the evaluating
role sees their tables (the extension shows the caller only its search path).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from .dataset import Database
from .hints import insert_glossary, insert_join_hints
from .names import resolve_column, resolve_table

__all__ = ["LoadError", "LoadResult", "database_conninfo", "dump_schemas", "load_database"]

# Schemas that are not the dump's own: the system's, and the extension's.
_NOT_DUMP = ("pg_catalog", "information_schema", "public", "sqlcoder", "sqlcoder_internal")


class LoadError(RuntimeError):
    """Loading lost metadata it claimed to have placed."""


@dataclass
class LoadResult:
    """What loading one database did, in lines for the user; ``unplaced`` names what was not placed."""

    name: str
    notes: list[str] = field(default_factory=list)
    unplaced: list[str] = field(default_factory=list)
    schemas: list[str] = field(default_factory=list)


def database_conninfo(conninfo: str, dbname: str) -> str:
    """``conninfo`` pointed at ``dbname`` (libpq environment variables fill in the rest)."""
    return make_conninfo(conninfo, dbname=dbname)


def _create(conninfo: str, name: str, replace: bool) -> None:
    with psycopg.connect(conninfo, autocommit=True) as admin:
        if replace:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def dump_schemas(conn: psycopg.Connection) -> list[str]:
    """The schemas the dump created that hold relations, other than ``public``, by name."""
    rows = conn.execute(
        "SELECT DISTINCT n.nspname FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_class c"
        " ON c.relnamespace = n.oid WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')"
        " AND n.nspname <> ALL (%s) AND n.nspname !~ '^pg_' ORDER BY 1", (list(_NOT_DUMP),)).fetchall()
    return [r[0] for r in rows]


def _search_path(conn: psycopg.Connection, dbname: str, schemas: list[str]) -> str:
    """Put the dump's schemas on the database's search_path (every role's default there) and this session's."""
    path = sql.SQL(", ").join([sql.Identifier("$user"), sql.Identifier("public"), *map(sql.Identifier, schemas)])
    conn.execute(sql.SQL("ALTER DATABASE {} SET search_path = {}").format(sql.Identifier(dbname), path))
    conn.execute(sql.SQL("SET search_path = {}").format(path))
    return "search_path: " + ", ".join(['"$user"', "public", *schemas])


def _comment_columns(conn: psycopg.Connection, db: Database, result: LoadResult) -> str:
    """``COMMENT ON COLUMN`` for every description that can be placed; returns the summary line."""
    placed: list[tuple[int, str, str]] = []
    missing: list[str] = []
    total = 0
    for table_name, columns in db.descriptions.items():
        table = resolve_table(conn, table_name)
        for column_name, description in columns:
            if not description:
                continue
            total += 1
            column = resolve_column(conn, table, column_name) if table else None
            if column is None:
                missing.append(f"{table_name}.{column_name} (no table {table_name})" if table is None
                               else f"{table_name}.{column_name} (no column {column_name})")
                continue
            conn.execute(sql.SQL("COMMENT ON COLUMN {} IS {}").format(
                sql.Identifier(table.schema, table.name, column.name), sql.Literal(description)))
            placed.append((table.oid, column.name, description))
    there = sum(1 for oid, name, text in placed if conn.execute(
        "SELECT pg_catalog.col_description(attrelid, attnum) = %s FROM pg_catalog.pg_attribute"
        " WHERE attrelid = %s AND attname = %s", (text, oid, name)).fetchone()[0])
    if there != len(placed):
        raise LoadError(f"{db.name}: {len(placed) - there} column comments were set but are not in the catalog")
    result.unplaced += missing
    line = f"comments: {len(placed)} of {total} described"
    return line + (f"; not placed {len(missing)}: " + "; ".join(missing) if missing else "")


def _configure(conn: psycopg.Connection, settings: dict[str, str]) -> list[str]:
    """Set ``sqlcoder.config`` values (e.g. socket_path, num_beams): the settings are per database."""
    notes = []
    for key, value in settings.items():
        cur = conn.execute("UPDATE sqlcoder.config SET value = %s WHERE key = %s", (value, key))
        notes.append(f"config: {key} = {value}" if cur.rowcount else f"config: unknown setting {key!r}, ignored")
    return notes


def load_database(conninfo: str, db: Database, extension: bool = True, replace: bool = False,
                  settings: dict[str, str] | None = None, glossary: bool = False) -> LoadResult:
    """Create database ``db.name`` on the server ``conninfo`` names (its dbname is the maintenance
    database), load the dump, put its schemas on the search_path, comment the columns and, with
    ``extension``, install the extension, apply ``settings`` to ``sqlcoder.config`` and fill its
    join hints (and, with ``glossary``, its instructions)."""
    result = LoadResult(db.name)
    _create(conninfo, db.name, replace)
    with psycopg.connect(database_conninfo(conninfo, db.name), autocommit=True) as conn:
        # Without parameters psycopg sends the whole dump as one simple query: all of it loads, or none.
        conn.execute(db.dump.read_text(encoding="utf-8"))
        result.schemas = dump_schemas(conn)
        if result.schemas:
            result.notes.append(_search_path(conn, db.name, result.schemas))
        result.notes.append(_comment_columns(conn, db, result))
        if extension:
            conn.execute("CREATE EXTENSION IF NOT EXISTS sqlcoder CASCADE")
            result.notes += _configure(conn, settings or {})
            note, refused = insert_join_hints(conn, db.join_hints)
            result.notes.append(note)
            result.unplaced += refused
            result.notes.append(insert_glossary(conn, db.glossary) if glossary else
                                "glossary: left out (sql-eval's prompt had none; --glossary adds it)")
        else:
            result.notes.append("extension: not installed (--no-extension); join hints and glossary skipped")
    return result

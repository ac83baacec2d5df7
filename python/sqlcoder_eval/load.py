"""``sqlcoder-eval load``: create each database of a data folder the way a DBA would describe it."""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from .dataset import Database
from .hints import insert_glossary, insert_join_hints

__all__ = ["LoadResult", "database_conninfo", "load_database"]


@dataclass
class LoadResult:
    """What loading one database did, in lines for the user."""

    name: str
    notes: list[str] = field(default_factory=list)


def database_conninfo(conninfo: str, dbname: str) -> str:
    """``conninfo`` pointed at ``dbname`` (libpq environment variables fill in the rest)."""
    return make_conninfo(conninfo, dbname=dbname)


def _create(conninfo: str, name: str, replace: bool) -> None:
    with psycopg.connect(conninfo, autocommit=True) as admin:
        if replace:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _comment_columns(conn: psycopg.Connection, db: Database) -> int:
    """``COMMENT ON COLUMN`` for every described column that exists; returns how many."""
    done = 0
    for table, columns in db.descriptions.items():
        for column, description in columns:
            if not description:
                continue
            exists = conn.execute(
                "SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = pg_catalog.to_regclass(%s)"
                " AND attname = %s AND NOT attisdropped",
                (sql.Identifier(table).as_string(conn), column)).fetchone()
            if exists:
                conn.execute(sql.SQL("COMMENT ON COLUMN {}.{} IS {}").format(
                    sql.Identifier(table), sql.Identifier(column), sql.Literal(description)))
                done += 1
    return done


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
    database), load the dump, comment the columns and, with ``extension``, install the extension,
    apply ``settings`` to ``sqlcoder.config`` and fill its join hints and instructions."""
    result = LoadResult(db.name)
    _create(conninfo, db.name, replace)
    with psycopg.connect(database_conninfo(conninfo, db.name), autocommit=True) as conn:
        # Without parameters psycopg sends the whole dump as one simple query: all of it loads, or none.
        conn.execute(db.dump.read_text(encoding="utf-8"))
        result.notes.append(f"comments: {_comment_columns(conn, db)} columns described")
        if extension:
            conn.execute("CREATE EXTENSION IF NOT EXISTS sqlcoder CASCADE")
            result.notes += _configure(conn, settings or {})
            result.notes.append(insert_join_hints(conn, db.join_hints))
            result.notes.append(insert_glossary(conn, db.glossary) if glossary else
                                "glossary: left out (sql-eval's prompt had none; --glossary adds it)")
        else:
            result.notes.append("extension: not installed (--no-extension); join hints and glossary skipped")
    return result


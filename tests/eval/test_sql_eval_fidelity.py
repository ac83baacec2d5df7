"""Fidelity on real schemas: the sql-eval databases render with all of their metadata.

Each database is loaded the way a DBA would describe it (``sqlcoder-eval``'s
loader: the dump, its schemas on the search_path, ``COMMENT ON COLUMN`` per
description, ``add_join_hint`` per join pair); the schema ``sqlcoder.prompt()``
renders is parsed back and compared with the metadata: every table, column,
type, description and join pair. Names are compared as PostgreSQL reads them
(unquoted metadata names fold to lower case, ``schema.table`` splits) and types
after PostgreSQL's own normalisation (``format_type`` of the metadata's type
name). What the loader reports it could not place is left out, and printed.

The suite's own databases (``tests/eval/data``, one of them outside ``public``)
are always checked; the shared data folder (``--sql-eval-data``,
``$SQL_EVAL_DATA``, or ``../shared/sql-eval`` next to the checkout) too when it
is there.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import pytest

from helpers.paths import ROOT
from sqlcoder_dev.pgcluster import Cluster

SMALL = Path(__file__).parent / "data"
DEFAULT_DATA = ROOT.parent / "shared" / "sql-eval"


def _data_dir(config: pytest.Config) -> Path | None:
    chosen = config.getoption("--sql-eval-data", default=None) or os.environ.get("SQL_EVAL_DATA")
    path = Path(chosen) if chosen else DEFAULT_DATA
    return path if (path / "databases").is_dir() else None


def _names(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "databases").iterdir() if (p / f"{p.name}.json").is_file())


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "sql_eval_db" in metafunc.fixturenames:
        roots = [SMALL] + [r for r in [_data_dir(metafunc.config)] if r is not None]
        metafunc.parametrize("sql_eval_db", [pytest.param((root, n), id=f"{root.name}/{n}")
                                             for root in roots for n in _names(root)])


# -- parsing the rendered schema back ------------------------------------------

_IDENT = r'(?:"(?:[^"]|"")*"|[^\s.,()"]+)'
_COLUMN = re.compile(rf"  (?P<name>{_IDENT}) (?P<ddl>.*?)(?P<comma>,?)(?: --(?P<comment>.*))?$")
_CONSTRAINTS = re.compile(r"(?: (?:PRIMARY KEY|NOT NULL|UNIQUE|GENERATED (?:ALWAYS|BY DEFAULT) AS .*))+$")
_JOIN = re.compile(rf"-- (?P<left>{_IDENT}(?:\.{_IDENT})+) can be joined with (?P<right>{_IDENT}(?:\.{_IDENT})+)$")


def unquote(identifier: str) -> str:
    return identifier[1:-1].replace('""', '"') if identifier.startswith('"') else identifier


def _parts(name: str) -> tuple[str, ...]:
    return tuple(unquote(p) for p in re.findall(_IDENT, name))


def parse_schema(text: str) -> tuple[dict[tuple[str, ...], list[tuple[str, str, str]]], set[frozenset]]:
    """{table name parts: [(column, type, comment)]} and the join pairs {{(table, column), ...}}."""
    tables: dict[tuple[str, ...], list[tuple[str, str, str]]] = {}
    joins: set[frozenset] = set()
    current: list[tuple[str, str, str]] | None = None
    for line in text.splitlines():
        if current is not None:
            if line == ");":
                current = None
            elif not line.startswith(("  PRIMARY KEY (", "  UNIQUE (")):
                m = _COLUMN.match(line)
                assert m, f"unparsable column line {line!r}"
                current.append((unquote(m["name"]), _CONSTRAINTS.sub("", m["ddl"]), m["comment"] or ""))
        elif line.startswith("CREATE TABLE ") and line.endswith(" ("):
            current = tables.setdefault(_parts(line[len("CREATE TABLE "):-2]), [])
        elif (m := _JOIN.match(line)) is not None:
            joins.add(frozenset(_parts(side)[-2:] for side in (m["left"], m["right"])))
    return tables, joins


def normalised_types(conn, types: set[str]) -> dict[str, str | None]:
    """PostgreSQL's spelling (``format_type``) of each metadata type name; None when it names no type."""
    out: dict[str, str | None] = {}
    for t in sorted(types):
        try:
            with conn.transaction():
                conn.execute(f"CREATE TEMP TABLE _fidelity_type (c {t})")
                out[t] = conn.execute("SELECT pg_catalog.format_type(atttypid, atttypmod) FROM pg_catalog.pg_attribute"
                                      " WHERE attrelid = '_fidelity_type'::regclass AND attname = 'c'").fetchone()[0]
                conn.execute("DROP TABLE _fidelity_type")
        except Exception:  # noqa: BLE001 - the metadata names a type PostgreSQL does not have
            out[t] = None
    return out


def test_sql_eval_database_renders_with_all_its_metadata(pg: Cluster, sql_eval_db: tuple[Path, str]) -> None:
    from sqlcoder_eval.dataset import Dataset
    from sqlcoder_eval.hints import insert_join_hints
    from sqlcoder_eval.load import load_database
    from sqlcoder_eval.names import resolve_column, resolve_qualified_column, resolve_table

    root, name = sql_eval_db
    db = dataclasses.replace(Dataset(root).database(name), name=f"fidelity_{name}")
    meta = json.loads((root / "databases" / name / f"{name}.json").read_text())["table_metadata"]
    loaded = load_database(pg.conninfo(), db, extension=False, replace=True)
    problems: list[str] = []
    wanted_joins: set[frozenset] = set()
    try:
        with pg.connect(db.name) as conn:
            conn.execute("CREATE EXTENSION sqlcoder CASCADE")
            _, refused = insert_join_hints(conn, db.join_hints)
            text = conn.execute("SELECT sqlcoder.prompt('fidelity check')").fetchone()[0]
            rendered, joins = parse_schema(text.split("the following schema:\n", 1)[1].split("\n\n### Answer\n")[0])
            by_relname = {parts[-1]: cols for parts, cols in rendered.items()}
            types = normalised_types(conn, {c["data_type"] for cols in meta.values() for c in cols})
            for table_name, columns in meta.items():
                table = resolve_table(conn, table_name)
                if table is None or table.name not in by_relname:
                    problems.append(f"table {table_name} not in the database or not rendered")
                    continue
                shown = {c: (t, comment) for c, t, comment in by_relname[table.name]}
                for col in columns:
                    described = " ".join((col.get("column_description") or "").split())
                    column = resolve_column(conn, table, col["column_name"])
                    if column is None:
                        # Not placed: the loader must have said so (nothing is dropped silently).
                        if described and not any(u.startswith(f"{table_name}.{col['column_name']} ")
                                                 for u in loaded.unplaced):
                            problems.append(f"{table_name}.{col['column_name']}: dropped without a report")
                        continue
                    want = (types[col["data_type"]], described)
                    if shown.get(column.name) != want:
                        problems.append(f"{table_name}.{col['column_name']}: rendered {shown.get(column.name)}, "
                                        f"metadata {want}")
            for left, right in db.join_hints:
                (lc, _), (rc, _) = resolve_qualified_column(conn, left), resolve_qualified_column(conn, right)
                if lc and rc:
                    wanted_joins.add(frozenset(((lc.table.name, lc.name), (rc.table.name, rc.name))))
                elif not any(r.startswith(f"{left} = {right} ") for r in refused):
                    problems.append(f"join {left} = {right} dropped without a report")
    finally:
        pg.psql(f'DROP DATABASE "{db.name}" WITH (FORCE)')
    problems += [f"join {sorted(p)} missing" for p in wanted_joins if p not in joins]
    print(f"sql-eval fidelity: {name}: {len(meta)} tables, {sum(map(len, meta.values()))} columns, "
          f"{len(wanted_joins)} join pairs checked; schemas {loaded.schemas or ['public']}"
          + "".join(f"; reported, not placed: {r}" for r in [*loaded.unplaced, *refused]))
    assert not problems, "\n".join(problems)

"""Fidelity on real schemas: the sql-eval databases render with all of their metadata.

Each database is loaded the way a DBA would describe it (``sqlcoder-eval``'s
loader: the dump, ``COMMENT ON COLUMN`` per description, ``add_join_hint``
per join pair); the schema ``sqlcoder.prompt()`` renders is parsed back and
compared with the metadata: every table, column, type, description and join
pair. The data folder comes from ``--sql-eval-data``, ``$SQL_EVAL_DATA``, or
``../shared/sql-eval`` next to the checkout; without one the test says so.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import psycopg
import pytest

from sqlcoder_dev.pgcluster import Cluster

from fixtures.pg import ROOT

DEFAULT_DATA = ROOT.parent / "shared" / "sql-eval"


def _data_dir(config: pytest.Config) -> Path | None:
    chosen = config.getoption("--sql-eval-data", default=None) or os.environ.get("SQL_EVAL_DATA")
    path = Path(chosen) if chosen else DEFAULT_DATA
    return path if (path / "databases").is_dir() else None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "sql_eval_db" in metafunc.fixturenames:
        root = _data_dir(metafunc.config)
        names = sorted(p.name for p in (root / "databases").iterdir() if (p / f"{p.name}.json").is_file()) if root else []
        params = [pytest.param((root, n), id=n) for n in names] or [pytest.param(
            None, id="no-data", marks=pytest.mark.skip(
                reason="no sql-eval data folder: pass --sql-eval-data PATH or set SQL_EVAL_DATA"))]
        metafunc.parametrize("sql_eval_db", params)


# -- parsing the rendered schema back ------------------------------------------

_IDENT = r'(?:"(?:[^"]|"")*"|[^\s.,()"]+)'
_COLUMN = re.compile(rf"  (?P<name>{_IDENT}) (?P<ddl>.*?)(?P<comma>,?)(?: --(?P<comment>.*))?$")
_CONSTRAINTS = re.compile(r"(?: (?:PRIMARY KEY|NOT NULL|UNIQUE|GENERATED (?:ALWAYS|BY DEFAULT) AS .*))+$")
_JOIN = re.compile(rf"-- (?P<left>{_IDENT}(?:\.{_IDENT})+) can be joined with (?P<right>{_IDENT}(?:\.{_IDENT})+)$")


def unquote(identifier: str) -> str:
    return identifier[1:-1].replace('""', '"') if identifier.startswith('"') else identifier


def parse_schema(text: str) -> tuple[dict[str, list[tuple[str, str, str]]], set[frozenset[str]]]:
    """{table: [(column, type, comment)]} and the join pairs {"t.c", "t2.c2"} of a rendered schema."""
    tables: dict[str, list[tuple[str, str, str]]] = {}
    joins: set[frozenset[str]] = set()
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
            current = tables.setdefault(unquote(line[len("CREATE TABLE "):-2]), [])
        elif (m := _JOIN.match(line)) is not None:
            joins.add(frozenset(".".join(unquote(p) for p in re.findall(_IDENT, side)) for side in (m["left"], m["right"])))
    return tables, joins


def test_sql_eval_database_renders_with_all_its_metadata(pg: Cluster, sql_eval_db: tuple[Path, str]) -> None:
    from sqlcoder_eval.dataset import Dataset
    from sqlcoder_eval.load import load_database

    root, name = sql_eval_db
    db = dataclasses.replace(Dataset(root).database(name), name=f"fidelity_{name}")
    # The loader comments the columns; the hints are added one by one here, so that a pair
    # naming a column the dump does not have is reported rather than ending the load.
    load_database(pg.conninfo(), db, extension=False, replace=True)
    absent = set()
    try:
        with pg.connect(db.name) as conn:
            conn.execute("CREATE EXTENSION sqlcoder CASCADE")
            for left, right in db.join_hints:
                try:
                    conn.execute("SELECT sqlcoder.add_join_hint(%s, %s, %s, %s)",
                                 (*left.rsplit(".", 1), *right.rsplit(".", 1)))
                except (psycopg.errors.UndefinedColumn, psycopg.errors.UndefinedTable):
                    absent.add(frozenset((left, right)))
            text = conn.execute("SELECT sqlcoder.prompt('fidelity check')").fetchone()[0]
    finally:
        pg.psql(f'DROP DATABASE "{db.name}" WITH (FORCE)')
    rendered, joins = parse_schema(text.split("the following schema:\n", 1)[1].split("\n\n### Answer\n")[0])
    meta = json.loads((root / "databases" / name / f"{name}.json").read_text())["table_metadata"]
    problems = []
    for table, columns in meta.items():
        if table not in rendered:
            problems.append(f"table {table} missing")
            continue
        shown = {c: (t, comment) for c, t, comment in rendered[table]}
        for col in columns:
            got = shown.get(col["column_name"])
            want = (col["data_type"], " ".join((col.get("column_description") or "").split()))
            if got != want:
                problems.append(f"{table}.{col['column_name']}: rendered {got}, metadata {want}")
    pairs = json.loads((root / "databases" / name / f"{name}.joins.json").read_text())["join_hints"]
    problems += [f"join {a} = {b} missing" for a, b in pairs
                 if frozenset((a, b)) not in joins and frozenset((a, b)) not in absent]
    print(f"sql-eval fidelity: {name}: {len(meta)} tables, {sum(map(len, meta.values()))} columns, "
          f"{len(pairs) - len(absent)} join pairs checked"
          + "".join(f"; metadata pair {' = '.join(sorted(p))} names a column the database lacks" for p in absent))
    assert not problems, "\n".join(problems)

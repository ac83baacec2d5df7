"""The ``sql-eval`` profile's prompt against sql-eval's own, byte for byte.

``data/sql_eval_prompts.jsonl`` holds the prompt defog-ai/sql-eval built at commit
aa8f045 for every question of ``data/questions_gen_postgres.csv`` (its
``generate_prompt`` with ``prompts/prompt.md`` and ``--num_columns 0``; written by
``scripts/sql_eval_reference_prompts.py``, the command is in ``data/README.md``).
Each database is loaded as ``sqlcoder-eval load`` loads it and the extension
renders the same question with the template the profile picks for a model that
has no SQLCoder template (``sql-eval-prompt-md``). sql-eval printed its metadata
file, the extension prints the live catalog: what the catalog cannot say is
listed in :data:`CATALOG_DIFFERENCES`, and every other byte must match.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
from pathlib import Path

import pytest

from sqlcoder_dev.pgcluster import Cluster
from sqlcoder_eval.dataset import Dataset
from sqlcoder_eval.load import load_database

SMALL = Path(__file__).parent / "data"
REFERENCE = SMALL / "sql_eval_prompts.jsonl"

#: Per database, what the live catalog renders differently from sql-eval's metadata, and why.
CATALOG_DIFFERENCES: dict[str, str] = {
    # Mixed-case names the metadata writes unquoted fold to lower case in PostgreSQL (quoted ones stay,
    # quoted); the loader puts sales and hr on the search_path, so their tables show unqualified and sort
    # by their own names; the metadata spells types in upper case and has a column the dump lacks; the
    # join lines follow the catalog's order.
    "retail": "case folding, search_path, type spelling, a column not in the dump, join order",
}


def _reference() -> list[dict[str, str]]:
    return [json.loads(line) for line in REFERENCE.read_text(encoding="utf-8").splitlines()]


def test_the_reference_covers_every_question_once() -> None:
    questions = Dataset(SMALL).questions()
    assert [(r["db_name"], r["question"]) for r in _reference()] == [(q.db_name, q.question) for q in questions]


@pytest.fixture(scope="module")
def rendered(pg: Cluster) -> dict[tuple[str, str], str]:
    """(database, question) -> the extension's prompt under the sql-eval profile's generic template."""
    data = Dataset(SMALL)
    out: dict[tuple[str, str], str] = {}
    by_db: dict[str, list] = {}
    for q in data.questions():
        by_db.setdefault(q.db_name, []).append(q)
    for name, questions in by_db.items():
        db = dataclasses.replace(data.database(name), name=f"prompt_{name}_{os.getpid()}".lower())
        try:
            load_database(pg.conninfo(), db, extension=True, replace=True,
                          settings={"socket_path": "/nonexistent/sqlcoder.sock", "template": "sql-eval-prompt-md"})
            with pg.connect(db.name) as conn:
                for q in questions:
                    out[(name, q.question)] = conn.execute("SELECT sqlcoder.prompt(%s, %s)",
                                                           (q.question, q.instructions or None)).fetchone()[0]
        finally:
            pg.psql(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)')
    return out


def _diff(ours: str, theirs: str) -> str:
    return "".join(difflib.unified_diff(theirs.splitlines(True), ours.splitlines(True), "sql-eval", "sqlcoder", n=1))


def test_the_sql_eval_profile_prompt_is_sql_evals_byte_for_byte(rendered: dict[tuple[str, str], str]) -> None:
    identical, problems = 0, []
    for row in _reference():
        ours = rendered[(row["db_name"], row["question"])]
        if ours == row["prompt"]:
            identical += 1
        elif row["db_name"] not in CATALOG_DIFFERENCES:
            problems.append(f"{row['db_name']}: {row['question']}\n{_diff(ours, row['prompt'])}")
    assert not problems, "\n".join(problems)
    expected = sum(r["db_name"] not in CATALOG_DIFFERENCES for r in _reference())
    assert identical == expected


def test_where_the_catalog_differs_only_the_schema_does(rendered: dict[tuple[str, str], str]) -> None:
    """In a database of :data:`CATALOG_DIFFERENCES` everything around the schema (task, instructions,
    answer) still matches byte for byte, and the same tables are shown."""
    for row in _reference():
        if row["db_name"] not in CATALOG_DIFFERENCES:
            continue
        ours, theirs = (_sections(p) for p in (rendered[(row["db_name"], row["question"])], row["prompt"]))
        assert (ours[0], ours[2]) == (theirs[0], theirs[2])
        assert ours[1] != theirs[1] and _tables(ours[1]) == _tables(theirs[1])


def _sections(prompt: str) -> tuple[str, str, str]:
    head, rest = prompt.split("### Database Schema\n", 1)
    schema, tail = rest.split("\n### Answer\n", 1)
    return head, schema, tail


def _tables(schema: str) -> set[str]:
    return {m.replace('"', "").lower().rsplit(".", 1)[-1] for m in re.findall(r"^CREATE TABLE (\S+) \($", schema, re.M)}

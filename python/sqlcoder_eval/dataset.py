"""Read a defog-data style folder: sql-eval questions and the databases they ask about.

Layout (as in ``../shared/sql-eval``)::

    questions_gen_postgres.csv      question, query, db_name, query_category[, instructions]
    databases/NAME/NAME.sql         plain SQL dump (CREATE TABLE + INSERT)
    databases/NAME/NAME.json        {"table_metadata": {table: [{column_name, data_type,
                                     column_description}]}, "glossary": "..."}
    databases/NAME/NAME.joins.json  {"join_hints": [["t1.c1", "t2.c2"], ...]}
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CATEGORY_ORDER", "DATA_ENV", "Database", "Dataset", "Question", "resolve_data_dir"]

DATA_ENV = "SQL_EVAL_DATA"
QUESTIONS_FILE = "questions_gen_postgres.csv"
# The model card's column order (date, group_by, order_by, ratio, join, where/instruct).
CATEGORY_ORDER = ("date_functions", "group_by", "order_by", "ratio", "table_join", "instruct")


@dataclass(frozen=True)
class Question:
    """One sql-eval question; ``id`` is its 0-based row in the CSV (stable for ``--resume``)."""

    id: int
    question: str
    gold: str
    db_name: str
    category: str
    instructions: str = ""


@dataclass(frozen=True)
class Database:
    """One database of the folder, with what a DBA would add to its catalog."""

    name: str
    dump: Path
    # table -> [(column, description)]
    descriptions: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    join_hints: list[tuple[str, str]] = field(default_factory=list)
    glossary: str = ""


def resolve_data_dir(path: str | os.PathLike | None) -> Path:
    """The data folder: ``path``, else ``$SQL_EVAL_DATA``; raises when neither names a folder."""
    chosen = path or os.environ.get(DATA_ENV)
    if not chosen:
        raise FileNotFoundError(f"no sql-eval data folder: pass --data or set {DATA_ENV}")
    root = Path(chosen)
    if not (root / "databases").is_dir():
        raise FileNotFoundError(f"{root} has no databases/ folder (expected a defog-data style folder)")
    return root


class Dataset:
    """A data folder: ``Dataset(path).questions()`` and ``.databases()``."""

    def __init__(self, root: str | os.PathLike, questions_file: str | os.PathLike | None = None):
        self.root = Path(root)
        self.questions_file = Path(questions_file) if questions_file else self.root / QUESTIONS_FILE

    def questions(self) -> list[Question]:
        with open(self.questions_file, newline="", encoding="utf-8") as f:
            return [Question(id=i, question=row["question"], gold=row["query"], db_name=row["db_name"],
                             category=row["query_category"], instructions=(row.get("instructions") or "").strip())
                    for i, row in enumerate(csv.DictReader(f))]

    def database_names(self) -> list[str]:
        return sorted(p.name for p in (self.root / "databases").iterdir() if (p / f"{p.name}.sql").is_file())

    def database(self, name: str) -> Database:
        folder = self.root / "databases" / name
        meta_path, joins_path = folder / f"{name}.json", folder / f"{name}.joins.json"
        meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}
        joins = json.loads(joins_path.read_text(encoding="utf-8")) if joins_path.exists() else {}
        descriptions = {table: [(c["column_name"], c.get("column_description") or "") for c in columns]
                        for table, columns in (meta.get("table_metadata") or {}).items()}
        return Database(name=name, dump=folder / f"{name}.sql", descriptions=descriptions,
                        join_hints=[(a, b) for a, b in joins.get("join_hints") or []],
                        glossary=(meta.get("glossary") or "").strip())

    def databases(self, names: list[str] | None = None) -> list[Database]:
        return [self.database(n) for n in (names or self.database_names())]

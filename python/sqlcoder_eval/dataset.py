"""Read a defog-data style folder: sql-eval questions and the databases they ask about.

Layout (as in ``../shared/sql-eval``)::

    questions_gen_postgres.csv      question, query, db_name, query_category[, instructions]
                                    (any of sql-eval's PostgreSQL question files: columns in
                                     any order, extra columns such as full_instructions ignored)
    databases/NAME/NAME.sql         plain SQL dump (CREATE TABLE + INSERT)
    databases/NAME/NAME.json        {"table_metadata": {table: [{column_name, data_type,
                                     column_description}]}, "glossary": "..."}
    databases/NAME/NAME.joins.json  {"join_hints": [["t1.c1", "t2.c2"], ...]}
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CATEGORY_ORDER", "DATA_ENV", "Database", "Dataset", "Question", "resolve_data_dir"]

DATA_ENV = "SQL_EVAL_DATA"
QUESTIONS_FILE = "questions_gen_postgres.csv"
# The model card's column order (date, group_by, order_by, ratio, join, where/instruct).
CATEGORY_ORDER = ("date_functions", "group_by", "order_by", "ratio", "table_join", "instruct")


@dataclass(frozen=True)
class Question:
    """One sql-eval question. ``id`` numbers the questions of all files read, in order (stable for
    ``--resume``); ``source`` is the file's name and ``row`` the 0-based row in it."""

    id: int
    question: str
    gold: str
    db_name: str
    category: str
    instructions: str = ""
    source: str = QUESTIONS_FILE
    row: int = -1


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


REQUIRED_COLUMNS = ("question", "query", "db_name", "query_category")


def read_questions(path: Path, first_id: int = 0) -> list[Question]:
    """The questions of one sql-eval CSV; a file without sql-eval's columns is refused by name."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path.name}: not a sql-eval question file, no column {', '.join(missing)}")
        return [Question(id=first_id + i, question=row["question"], gold=row["query"], db_name=row["db_name"],
                         category=row["query_category"], instructions=(row.get("instructions") or "").strip(),
                         source=path.name, row=i)
                for i, row in enumerate(reader)]


class Dataset:
    """A data folder: ``Dataset(path).questions()`` and ``.databases()``; ``questions_file`` may name
    several question files (read in order, numbered on from one file to the next)."""

    def __init__(self, root: str | os.PathLike,
                 questions_file: str | os.PathLike | Sequence[str | os.PathLike] | None = None):
        self.root = Path(root)
        if questions_file is None:
            files: list[Path] = [self.root / QUESTIONS_FILE]
        elif isinstance(questions_file, (str, os.PathLike)):
            files = [Path(questions_file)]
        else:
            files = [Path(p) for p in questions_file]
        self.questions_files = files
        self.questions_file = files[0]

    def questions(self) -> list[Question]:
        out: list[Question] = []
        for path in self.questions_files:
            out += read_questions(path, len(out))
        return out

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

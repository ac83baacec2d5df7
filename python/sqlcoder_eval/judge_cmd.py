"""``sqlcoder-eval judge``: one judge's verdict on hand-written answer pairs, one line per case.

The cases file is a CSV with columns ``db_name, question, gold, answer`` (and,
optionally, ``query_category``: ordering depends on it); ``gold`` is in
sql-eval's notation. Each case prints ``JUDGE <row> exact=<bool> subset=<bool>``
(``row`` is the 0-based data row; ``subset`` is sql-eval's second verdict, exact
or a superset), and a failed answer or gold query also a ``NOTE <row>`` line on
stderr. Without ``--dsn`` the databases the cases name are loaded from the data
folder into a throwaway cluster, as ``check`` does.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import psycopg

from .dataset import Dataset
from .execute import QueryError, run_query, set_timeout
from .goldsql import expand_gold
from .judges import GoldResult, Outcome, execute_answer, verdict
from .load import database_conninfo, load_database

__all__ = ["Case", "judge_case", "read_cases", "run_judge"]

CASE_COLUMNS = ("db_name", "question", "gold", "answer")


@dataclass(frozen=True)
class Case:
    row: int
    db_name: str
    question: str
    gold: str
    answer: str
    category: str = ""


def read_cases(path: str | Path) -> list[Case]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in CASE_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: a cases file needs the columns {', '.join(CASE_COLUMNS)}; "
                             f"missing {', '.join(missing)}")
        return [Case(i, r["db_name"], r["question"], r["gold"], r["answer"],
                     r.get("query_category") or r.get("category") or "") for i, r in enumerate(reader)]


def judge_case(conn: psycopg.Connection, case: Case, judge: str, max_rows: int = 100_000) -> Outcome:
    """Run the answer and the gold variants of ``case`` on ``conn`` and judge them."""
    try:
        result = execute_answer(conn, judge, case.answer, max_rows)
    except QueryError as e:
        return Outcome(False, False, f"answer failed: {e}")
    gold: list[GoldResult] = []
    for sql in expand_gold(case.gold):
        try:
            gold.append((sql, run_query(conn, sql, max_rows)))
        except QueryError as e:
            gold.append((sql, e))
    return verdict(judge, case.gold, gold, case.answer, result, case.category, case.question,
                   rerun=lambda sql: execute_answer(conn, judge, sql, max_rows))


def _lower(b: bool) -> str:
    return "true" if b else "false"


def _judge_all(conninfo: str, cases: list[Case], judge: str, timeout_s: float, out: TextIO,
               err: TextIO) -> None:
    conns: dict[str, psycopg.Connection] = {}
    try:
        for case in cases:
            if case.db_name not in conns:
                conns[case.db_name] = psycopg.connect(database_conninfo(conninfo, case.db_name), autocommit=True)
                set_timeout(conns[case.db_name], timeout_s)
            outcome = judge_case(conns[case.db_name], case, judge)
            print(f"JUDGE {case.row} exact={_lower(outcome.exact)} subset={_lower(outcome.correct)}", file=out)
            if outcome.error:
                print(f"NOTE {case.row} {outcome.error}", file=err)
    finally:
        for conn in conns.values():
            conn.close()


def _throwaway(data: Path, names: list[str]) -> Iterator[str]:
    from sqlcoder_dev.pgcluster import Cluster  # developer tooling, as for check

    dataset = Dataset(data)
    with Cluster() as pg:
        conninfo = pg.conninfo("postgres")
        for db in dataset.databases(names):
            load_database(conninfo, db, extension=False)
        yield conninfo


def run_judge(cases_file: str | Path, judge: str, data: Path | None = None, dsn: str | None = None,
              timeout_s: float = 10.0, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Judge every case; the databases are on ``dsn``'s server, or loaded from ``data`` into a throwaway one."""
    out, err = out or sys.stdout, err or sys.stderr
    cases = read_cases(cases_file)
    if dsn is not None:
        _judge_all(dsn, cases, judge, timeout_s, out, err)
        return 0
    if data is None:
        raise FileNotFoundError("judge needs --data (databases to load) or --dsn (a server that has them)")
    for conninfo in _throwaway(data, sorted({c.db_name for c in cases})):
        _judge_all(conninfo, cases, judge, timeout_s, out, err)
    return 0

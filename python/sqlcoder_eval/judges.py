"""The two judges a run can be scored by.

``sql-eval`` (:mod:`.sqleval_judge`) reproduces sql-eval's verdicts, quirks
included: its numbers are on the model card's scale. ``strict`` (:mod:`.compare`)
is this project's reading of what sql-eval means to check, and is stricter: an
empty answer never matches a one-row gold, duplicate column names are dropped
rather than fatal, every gold variant must run, exact matches allow float
tolerance, ORDER BY is read from the variant that is compared, and an answer is
one statement, run as written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import psycopg

from . import sqleval_judge
from .compare import ResultSet, compare_results
from .execute import QueryError, run_query, run_statements

__all__ = ["DEFAULT_JUDGE", "JUDGES", "GoldResult", "Outcome", "execute_answer", "verdict"]

JUDGES = ("sql-eval", "strict")
DEFAULT_JUDGE = "sql-eval"

# One executed gold variant: its SQL and its result, or why it failed.
GoldResult = tuple[str, ResultSet | QueryError]


@dataclass(frozen=True)
class Outcome:
    """One judge's verdict on one answer; ``error`` when the answer (or a gold variant) failed."""

    exact: bool
    correct: bool
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check(judge: str) -> None:
    if judge not in JUDGES:
        raise ValueError(f"unknown judge {judge!r}; choose from {', '.join(JUDGES)}")


def execute_answer(conn: psycopg.Connection, judge: str, sql: str, max_rows: int) -> ResultSet:
    """Run the answer as the judge's harness would: ``strict`` runs exactly one statement; ``sql-eval``
    rewrites ``%`` as sql-eval and psycopg2 did and keeps the last result of several statements."""
    _check(judge)
    if judge == "strict":
        return run_query(conn, sql, max_rows)
    try:
        statements = sqleval_judge.query_text(sql)
    except sqleval_judge.JudgeError as e:
        raise QueryError(str(e)) from None
    return run_statements(conn, statements, max_rows)


def verdict(judge: str, gold_text: str, gold: Sequence[GoldResult], gen_sql: str, gen: ResultSet,
            category: str, question: str, policy: str = "sql-eval",
            rerun: Callable[[str], ResultSet] | None = None) -> Outcome:
    """Judge an executed answer against the executed gold variants of ``gold_text``. The ``sql-eval``
    judge runs a gold variant that holds ``%`` again through ``rerun`` (sql-eval's harness rewrites
    gold queries as it rewrites answers; see :func:`execute_answer`)."""
    _check(judge)
    failed = [(sql, r) for sql, r in gold if isinstance(r, QueryError)]
    if judge == "strict":
        if failed:
            return Outcome(False, False, f"gold query failed: {failed[0][1]}")
        v = compare_results([(s, r) for s, r in gold if isinstance(r, ResultSet)], gen_sql, gen, category,
                            question, policy)
        return Outcome(v.exact, v.correct)
    by_sql = dict(gold)

    def run_gold(sql: str) -> ResultSet:
        result = by_sql[sql]
        if "%" in sql and rerun is not None:
            try:
                result = rerun(sql)
            except QueryError as e:
                result = e
        if isinstance(result, QueryError):
            raise sqleval_judge.JudgeError(f"gold query failed: {result}")
        return result

    try:
        v = sqleval_judge.judge(gold_text, gen, category, question, gen_sql, run_gold)
    except sqleval_judge.JudgeError as e:
        return Outcome(False, False, str(e))
    return Outcome(v.exact, v.correct)

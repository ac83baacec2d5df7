"""One round of self-correction: the model sees its refused SQL and PostgreSQL's error, and tries again.

Only refusals the model can fix are sent back: PostgreSQL's parser or
analyzer rejected the SQL (``InvalidSql``) with a syntax error or access rule
violation (class 42: unknown column, table or function, type mismatch,
grouping error) or a data exception found while analyzing (class 22, e.g. a
malformed date literal). A permission denied (42501), several statements, a
write, or a cost over the ceiling are not: another try would not change what
the caller may run. Nothing is executed to validate: the verdict is the
guard's (parse analysis, no EXPLAIN ANALYZE).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from .errors import InvalidSql, SqlcoderError

__all__ = ["Attempt", "fixable", "render", "failure", "as_json", "MAX_SHOWN_CHARS"]

MAX_SHOWN_CHARS = 4000  # of the failed SQL, in the prompt and in DETAIL
_PREFIX = "sqlcoder refused the SQL: "


@dataclass(frozen=True)
class Attempt:
    """One model answer and the guard's verdict on it (sqlstate and error None when accepted)."""

    sql: str
    sqlstate: str | None
    error: str | None
    model_ms: float | None


def fixable(exc: BaseException) -> bool:
    """A refusal another model answer could avoid (see the module docstring)."""
    if not isinstance(exc, InvalidSql):
        return False
    return exc.sqlstate[:2] in ("42", "22") and exc.sqlstate != "42501"


def postgres_message(exc: SqlcoderError) -> str:
    """PostgreSQL's own message inside a guard refusal."""
    return exc.message[len(_PREFIX):] if exc.message.startswith(_PREFIX) else exc.message


def _shown(sql: str) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= MAX_SHOWN_CHARS else text[:MAX_SHOWN_CHARS] + " ..."


def render(sql: str, error: str) -> str:
    """The block that follows the schema (and examples) in a correction request."""
    return ("\n\n### Previous attempt\n"
            "This query was written for the question, and PostgreSQL refused it:\n"
            f"{_shown(sql)};\n"
            f"PostgreSQL's error: {' '.join(error.split())}\n"
            "Write a query that avoids this error.")


def failure(first: SqlcoderError, attempts: Sequence[Attempt]) -> SqlcoderError:
    """The first attempt's error, with every attempt's SQL and error in DETAIL."""
    lines = []
    for n, attempt in enumerate(attempts, 1):
        lines.append(f"attempt {n}: SQL: {_shown(attempt.sql)}")
        lines.append(f"attempt {n}: error: {attempt.error}" + (f" (SQLSTATE {attempt.sqlstate})"
                                                               if attempt.sqlstate else ""))
    first.detail = "\n".join(lines)
    return first


def as_json(attempts: Sequence[Attempt]) -> list[dict[str, object]]:
    """What ``sqlcoder.history.attempts`` holds."""
    return [{**asdict(a), "sql": _shown(a.sql)} for a in attempts]

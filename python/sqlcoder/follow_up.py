"""Follow-up questions: a question that refines an earlier one of the caller's, and how the model sees it.

The earlier question and its SQL come from one of the caller's own rows of
``sqlcoder.history`` (by id), or from the caller's latest successful ``ask``
or ``run`` of this session (``follow_up => 0``), which this backend remembers
per role. A row is read only where ``role = current_user``, on top of the
table's row-level security, so a superuser or a BYPASSRLS role cannot follow
another role's question either; an id that is not the caller's gets the same
error as one that does not exist. Both texts are cut in SQL before they reach
Python (``MAX_EARLIER_SQL_CHARS``, ``max_question_chars``), with a NOTICE.

How the model sees it: SQLCoder models know a question only in their own
template's markup, and an answer only as the SQL their template asks for. So
the earlier turn is written in that same markup, after the schema (where
sql-eval puts its k-shot question/query pairs, ``k_shot_prompt``): for the
``[QUESTION]`` templates of sqlcoder-70b-alpha and sqlcoder-7b-2 (Defog's
sqlcoder ``prompt.md`` and model cards) the question between ``[QUESTION]``
tags and its SQL between ``[SQL]`` and ``[/SQL]``, the marks the model writes
around its own answer; for sqlcoder-34b-alpha and llama-3-sqlcoder-8b (their
model cards) the question in backticks and its SQL in a ``sql`` code fence.
The new question stays the template's question.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import _spi, bounds
from ._spi import Plpy
from .errors import FollowUpError

__all__ = ["Earlier", "LATEST", "MAX_EARLIER_SQL_CHARS", "resolve", "remember", "forget", "render",
           "relevance_text"]

LATEST = 0  # follow_up => 0: the caller's latest successful ask or run in this session
MAX_EARLIER_SQL_CHARS = 4000  # of the earlier SQL in the prompt, as for a refused attempt (correction.py)

_ROW_SQL = """
SELECT h.id, pg_catalog.left(h.question, $2) AS question, pg_catalog.length(h.question) AS question_chars,
       pg_catalog.left(h.sql, $3) AS sql, pg_catalog.length(h.sql) AS sql_chars
FROM sqlcoder.history h
WHERE h.id = $1 AND h.role = current_user
"""
_ROLE_SQL = "SELECT r.oid::pg_catalog.int8 AS oid FROM pg_catalog.pg_roles r WHERE r.rolname = current_user"

# This backend's latest successful ask or run, per role (SET ROLE switches between them).
_latest: dict[int, Earlier] = {}


@dataclass(frozen=True)
class Earlier:
    """The question a follow-up refines and the SQL that answered it (both already bounded)."""

    question: str | None
    sql: str
    history_id: int | None = None


def _role(plpy: Plpy) -> int:
    return int(plpy.execute(_spi.plan(plpy, _ROLE_SQL))[0]["oid"])


def _bounded(text: str | None, limit: int) -> str | None:
    return None if text is None else text[:limit]


def remember(plpy: Plpy, question: str | None, sql: str | None, max_question_chars: int) -> None:
    """The call just succeeded: it is what ``follow_up => 0`` refines next in this session."""
    if sql:
        _latest[_role(plpy)] = Earlier(_bounded(question, max_question_chars),
                                       sql[:MAX_EARLIER_SQL_CHARS])


def forget() -> None:
    """Tests: a fresh session."""
    _latest.clear()


def resolve(plpy: Plpy, follow_up: Any, max_question_chars: int) -> Earlier | None:
    """What ``follow_up`` names: None, the session's latest (0), or one of the caller's history rows."""
    if follow_up is None:
        return None
    if isinstance(follow_up, bool) or not isinstance(follow_up, int):
        raise FollowUpError("follow_up must be the id of one of your sqlcoder.history rows, or 0")
    if follow_up == LATEST:
        earlier = _latest.get(_role(plpy))
        if earlier is None:
            raise FollowUpError("there is no earlier question of yours in this session to follow up",
                                hint="Ask a first question with sqlcoder.ask or run, or pass the id of one of "
                                     "your sqlcoder.history rows: follow_up => id.")
        return earlier
    if follow_up < 0:
        raise FollowUpError(f"no sqlcoder.history entry {follow_up} of yours")
    rows = plpy.execute(_spi.plan(plpy, _ROW_SQL, ["int8", "int4", "int4"]),
                        [follow_up, max_question_chars, MAX_EARLIER_SQL_CHARS])
    if not rows:
        raise FollowUpError(f"no sqlcoder.history entry {follow_up} of yours")
    row = rows[0]
    if not row["sql"] or not row["sql"].strip():
        raise FollowUpError(f"sqlcoder.history entry {follow_up} has no SQL to refine",
                            hint="Follow up a question that got SQL (its sql column is not empty).")
    cut = []
    if row["question_chars"] is not None and int(row["question_chars"]) > max_question_chars:
        cut.append(f"the question of history entry {follow_up}")
    if int(row["sql_chars"]) > MAX_EARLIER_SQL_CHARS:
        cut.append(f"the SQL of history entry {follow_up}")
    bounds.notice_cut(plpy, cut)
    return Earlier(row["question"], row["sql"], int(row["id"]))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _sql(earlier: Earlier) -> str:
    return _one_line(earlier.sql).rstrip(";").rstrip() + ";"


# Templates whose question sits in [QUESTION] tags and whose answer follows [SQL].
_TAGGED = frozenset({"sqlcoder-70b", "sqlcoder-7b-2", "sql-eval-sqlcoder-70b"})


def render(earlier: Earlier | None, template: str) -> str:
    """The block that follows the schema (and examples) for a follow-up ('' for none)."""
    if earlier is None:
        return ""
    question = _one_line(earlier.question) if earlier.question else None
    if template in _TAGGED:
        asked = f"[QUESTION]{question}[/QUESTION]\n" if question else ""
        return ("\n\n### Previous question\n"
                "This question follows up an earlier one, answered by the query below; "
                "change that query as this question asks:\n"
                f"{asked}[SQL]\n{_sql(earlier)}\n[/SQL]")
    asked = f"Earlier question: `{question}`\n" if question else ""
    return ("\n\nThis question follows up an earlier one, answered by the query below; "
            "change that query as this question asks:\n"
            f"{asked}```sql\n{_sql(earlier)}\n```")


def relevance_text(question: str, earlier: Earlier | None) -> str:
    """What pruning and example choice score tables by: a follow-up ("only the top 3") names no table."""
    if earlier is None:
        return question
    return " ".join(part for part in (earlier.question, earlier.sql, question) if part)

"""Decide whether a SQL text may run, with PostgreSQL's own parser, analyzer and planner.

No regular expression decides anything here. The steps, each a PostgreSQL
call that executes nothing of the query, all inside the caller's
rolled-back subtransaction (:func:`sqlcoder.execute.in_caller_context`):

1. ``sqlcoder_internal._query_objects(sql)`` (C, read-only): the text is exactly one
   statement, a plain query (SELECT, VALUES, TABLE, WITH without
   data-modifying parts, no SELECT INTO), and it parses and analyzes as the
   caller; a failure keeps PostgreSQL's SQLSTATE and message. It returns
   every function the analyzed and rewritten query can call.
2. The function policy (:mod:`sqlcoder.policy`) on those OIDs: 42501 for
   the first refused one, before anything is planned.
3. The statement, put inside ``FROM ( ... )`` with the row cap as its LIMIT,
   is what runs: what was checked is what executes.
4. ``EXPLAIN (FORMAT JSON)`` of that text, through the read-only helper
   ``sqlcoder_internal._readonly_explain`` (planning folds immutable and stable
   functions), gives the planner's cost, compared with the DBA's ceiling.

The function policy also holds at run time: before step 1 the policy's
lists go to the C hooks (:func:`sqlcoder.policy.hand_to_hooks`), which
check every function PostgreSQL is about to call while steps 1 and 4 and
the run itself analyze, plan and execute the query (src/policy_hook.c).
Steps 1-2 stay the early refusal, with every refused function found before
anything runs; the hooks refuse what only planning or execution reaches.

Read-only execution (:mod:`sqlcoder.execute`) is the second, independent
line: even a query that passes the guard cannot write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from . import _spi, policy
from ._spi import Plpy
from .errors import (
    EmptySql,
    FunctionRefused,
    InvalidSql,
    MultipleStatements,
    NotAPlainQuery,
    QueryTooExpensive,
    query_failed,
)

__all__ = ["CheckedQuery", "QueryObjects", "query_objects", "check", "strip_sql", "detail_for", "hook_refusal"]

_ALIAS = "sqlcoder_q"
_MAX_DETAIL_CHARS = 4000

# Constraint names sqlcoder's C code gives its refusals (src/query_objects.c, src/function_policy.c).
_ONE_STATEMENT = "sqlcoder_one_statement"
_PLAIN_QUERY = "sqlcoder_plain_query"
_FUNCTION_POLICY = "sqlcoder_function_policy"


@dataclass(frozen=True)
class CheckedQuery:
    """A statement that passed the guard, and the exact text that will run."""

    sql: str
    runnable: str
    cost: float


@dataclass(frozen=True)
class QueryObjects:
    """What one statement uses, as PostgreSQL's parse analysis resolved it (OIDs).

    ``functions``: every pg_proc OID it can call (see src/query_objects.c);
    ``relations``: every pg_class OID in its range tables (views as named and
    what they read); ``opaque``: the functions among ``functions`` whose body
    could not be read (procedural languages), whose volatility is only a label.
    """

    functions: frozenset[int]
    relations: frozenset[int]
    opaque: frozenset[int] = frozenset()


def query_objects(plpy: Plpy, sql: str) -> QueryObjects:
    """Functions and relations of one plain query, analyzed as the current role with its search_path.

    Nothing is planned or executed. Raises ``plpy.SPIError``: 42601 for not
    exactly one statement, 25006 for anything but a plain query, or
    PostgreSQL's own error when the text does not parse or analyze.
    """
    found: dict[str, set[int]] = {"function": set(), "relation": set(), "opaque": set()}
    plan = _spi.plan(plpy, "SELECT kind, objid FROM sqlcoder_internal._query_objects($1)", ["text"])
    for row in plpy.execute(plan, [sql]):
        found[row["kind"]].add(int(row["objid"]))
    return QueryObjects(functions=frozenset(found["function"]), relations=frozenset(found["relation"]),
                        opaque=frozenset(found["opaque"]))


def detail_for(sql: str, extra: str | None = None) -> str:
    """DETAIL text carrying the refused SQL (shortened: a reply may be megabytes)."""
    shown = sql if len(sql) <= _MAX_DETAIL_CHARS else sql[:_MAX_DETAIL_CHARS] + f"... ({len(sql)} characters)"
    text = f"SQL: {shown}"
    return f"{extra}\n{text}" if extra else text


def strip_sql(sql: Any) -> str:
    """The statement without surrounding blanks and trailing semicolons; refuses NULL, empty and NUL."""
    if sql is None:
        raise EmptySql("the SQL must not be NULL")
    if not isinstance(sql, str):
        raise EmptySql("the SQL must be text")
    if "\x00" in sql:
        raise EmptySql("the SQL contains a NUL character", detail=detail_for(sql.replace("\x00", "\\0")))
    text = sql.strip()
    while text.endswith(";"):
        text = text[:-1].rstrip()
    if not text:
        raise EmptySql("the SQL is empty")
    return text


def check(plpy: Plpy, sql: Any, *, max_rows: int, max_cost: float | None, search_path: str,
          functions: policy.FunctionLists = policy.FunctionLists(), typed: bool = False) -> CheckedQuery:
    """Run the guard's steps; raise a :class:`~sqlcoder.errors.SqlRefused` subclass on refusal.

    Call it with the caller's search_path in force (``search_path`` is the
    same path, for the read-only EXPLAIN helper), inside a subtransaction
    the caller rolls back. PostgreSQL errors other than refusals (a cancel,
    a statement_timeout) propagate as ``plpy.SPIError``.
    """
    text = strip_sql(sql)
    policy.hand_to_hooks(plpy, functions)
    objects = _analyze(plpy, text)
    policy.check_functions(plpy, objects.functions, objects.opaque, functions, detail=detail_for(text))
    # The query's own columns: _run_readonly turns each row into its row_to_json text (src/row_json.c),
    # counted before it is built, unless ``typed`` keeps the columns and types (run_typed, execute_typed).
    runnable = f"SELECT {_ALIAS}.* FROM (\n{text}\n) AS {_ALIAS} LIMIT {int(max_rows) + 1}"
    cost = _cost(plpy, runnable, search_path, text)
    if max_cost is not None and cost > max_cost:
        raise QueryTooExpensive(
            f"the query's estimated cost {cost:.0f} is over the ceiling max_query_cost = {max_cost:g}",
            detail=detail_for(text))
    return CheckedQuery(sql=text, runnable=runnable, cost=cost)


def hook_refusal(exc: BaseException, text: str) -> FunctionRefused | None:
    """The function policy's refusal from the C hooks (a function PostgreSQL was about to call), if ``exc`` is one."""
    spi = _spi.fields(exc)
    if spi.constraint != _FUNCTION_POLICY:
        return None
    return FunctionRefused(spi.message, detail=detail_for(text, spi.detail), hint=spi.hint)


def _analyze(plpy: Plpy, text: str) -> QueryObjects:
    """Step 1: one plain query that analyzes, and what it calls; refusals as sqlcoder errors."""
    try:
        return query_objects(plpy, text)
    except plpy.SPIError as exc:
        if _spi.is_interrupt(exc):
            raise
        spi = _spi.fields(exc)
        sqlstate, message = spi.sqlstate, spi.message
        if spi.constraint == _ONE_STATEMENT:
            raise MultipleStatements("sqlcoder runs exactly one SQL statement; this text holds several (or none)",
                                     detail=detail_for(text, f"PostgreSQL: {message}")) from None
        refused = hook_refusal(exc, text)  # e.g. a literal's domain CHECK, refused before it ran
        if refused is not None:
            raise refused from None
        if spi.constraint == _PLAIN_QUERY:  # "...: this is a DELETE", from C
            raise NotAPlainQuery(message, detail=detail_for(text)) from None
        raise InvalidSql(f"sqlcoder refused the SQL: {message}", sqlstate=sqlstate or "42601",
                         detail=detail_for(text)) from None


def _cost(plpy: Plpy, runnable: str, search_path: str, text: str) -> float:
    """Step 4: the planner's total cost, planned read-only; a planning error keeps PostgreSQL's SQLSTATE."""
    explain = _spi.plan(plpy, "SELECT sqlcoder_internal._readonly_explain($1, $2) AS plan", ["text", "text"])
    try:
        plan = plpy.execute(explain, [runnable, search_path])[0]["plan"]
    except plpy.SPIError as exc:
        if _spi.is_interrupt(exc):  # a cancel or timeout is not a verdict on the SQL
            raise
        refused = hook_refusal(exc, text)  # code planning would have run: folded constants, index expressions
        if refused is not None:
            raise refused from None
        spi = _spi.fields(exc)
        if spi.sqlstate == "53200":  # planning (folded constants) passed max_memory_bytes
            raise query_failed(spi.message, sqlstate=spi.sqlstate, detail=detail_for(text), hint=spi.hint) from None
        raise InvalidSql(f"sqlcoder refused the SQL: {spi.message}", sqlstate=spi.sqlstate or "42000",
                         detail=detail_for(text)) from None
    document = json.loads(plan) if isinstance(plan, str) else plan
    return float(document[0]["Plan"]["Total Cost"])

"""Decide whether a SQL text may run, with PostgreSQL's own parser and planner.

No regular expression decides anything here. The steps, each a PostgreSQL
call that executes nothing:

1. ``plpy.prepare(sql)``: the parser and analyzer accept it (syntax, names,
   types); a failure keeps PostgreSQL's SQLSTATE and message.
2. ``plpy.cursor(plan)``: SPI opens a cursor only on a plan of exactly one
   statement that returns rows (it refuses "multi-query plans", DDL, DML
   without RETURNING, SELECT INTO, utility commands); the portal is closed
   before any row is fetched.
3. The statement, put inside ``FROM ( ... )``, must still analyze: only a plain
   query (SELECT, VALUES, TABLE, WITH without data-modifying parts) can stand
   there, which rules out INSERT/UPDATE/DELETE ... RETURNING, data-modifying
   WITH, EXPLAIN, SHOW, FETCH, EXECUTE and CALL. This wrapped text, with the
   row cap as its LIMIT, is what runs: what was checked is what executes.
4. ``EXPLAIN (FORMAT JSON)`` of that text gives the planner's cost, compared
   with the DBA's ceiling.

Read-only execution (:mod:`sqlcoder.execute`) is the second, independent
line: even a query that passes the guard cannot write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .errors import EmptySql, InvalidSql, MultipleStatements, NotAPlainQuery, QueryTooExpensive

__all__ = ["CheckedQuery", "QueryObjects", "query_objects", "check", "strip_sql", "detail_for", "is_interrupt"]

_ALIAS = "sqlcoder_q"
_MAX_DETAIL_CHARS = 4000


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


_objects_plan: Any = None  # prepared once per backend; the name is schema-qualified


def query_objects(plpy: Any, sql: str) -> QueryObjects:
    """Functions and relations of one plain query, analyzed as the current role with its search_path.

    Nothing is planned or executed. Raises ``plpy.SPIError``: 42601 for not
    exactly one statement, 25006 for anything but a plain query, or
    PostgreSQL's own error when the text does not parse or analyze.
    """
    global _objects_plan
    if _objects_plan is None:
        _objects_plan = plpy.prepare("SELECT kind, objid FROM sqlcoder._query_objects($1)", ["text"])
    found: dict[str, set[int]] = {"function": set(), "relation": set(), "opaque": set()}
    for row in plpy.execute(_objects_plan, [sql]):
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


def _spi_fields(exc: Exception) -> tuple[str | None, str]:
    message = str(exc.args[0]) if exc.args else str(exc)
    return getattr(exc, "sqlstate", None), message


def check(plpy: Any, sql: Any, *, max_rows: int, max_cost: float | None) -> CheckedQuery:
    """Run the guard's four steps; raise a :class:`~sqlcoder.errors.SqlRefused` subclass on refusal.

    Call it with the caller's search_path in force, inside a subtransaction
    the caller rolls back. PostgreSQL errors other than refusals (a cancel,
    a statement_timeout) propagate as ``plpy.SPIError``.
    """
    text = strip_sql(sql)
    plan = _prepare(plpy, text, text)
    _one_row_returning_statement(plpy, plan, text)
    runnable = (f"SELECT pg_catalog.row_to_json({_ALIAS}.*) FROM (\n{text}\n) AS {_ALIAS} "
                f"LIMIT {int(max_rows) + 1}")
    try:
        plpy.prepare(runnable)
    except plpy.SPIError as exc:
        if is_interrupt(exc):
            raise
        _, message = _spi_fields(exc)
        raise NotAPlainQuery("sqlcoder runs only a plain query (SELECT, VALUES, TABLE, or WITH without "
                             "INSERT/UPDATE/DELETE)", detail=detail_for(text, f"PostgreSQL: {message}")) from None
    cost = _cost(plpy, runnable)
    if max_cost is not None and cost > max_cost:
        raise QueryTooExpensive(
            f"the query's estimated cost {cost:.0f} is over the ceiling max_query_cost = {max_cost:g}",
            detail=detail_for(text))
    return CheckedQuery(sql=text, runnable=runnable, cost=cost)


def is_interrupt(exc: Exception) -> bool:
    # A cancel or timeout that lands during a guard step is not a verdict on the SQL.
    return getattr(exc, "sqlstate", None) in ("57014", "57P01", "57P02", "57P03", "40001", "40P01", "55P03")


def _prepare(plpy: Any, text: str, shown: str) -> Any:
    try:
        return plpy.prepare(text)
    except plpy.SPIError as exc:
        if is_interrupt(exc):
            raise
        sqlstate, message = _spi_fields(exc)
        raise InvalidSql(f"sqlcoder refused the SQL: {message}", sqlstate=sqlstate or "42601",
                         detail=detail_for(shown)) from None


def _one_row_returning_statement(plpy: Any, plan: Any, text: str) -> None:
    try:
        cursor = plpy.cursor(plan)
    except plpy.SPIError as exc:
        if is_interrupt(exc):
            raise
        sqlstate, message = _spi_fields(exc)
        if sqlstate not in ("42P11", "34000"):  # not SPI's cursor verdict: e.g. permission denied at executor start
            raise InvalidSql(f"sqlcoder refused the SQL: {message}", sqlstate=sqlstate or "42000",
                             detail=detail_for(text)) from None
        if "multi-query" in message:
            raise MultipleStatements("sqlcoder runs exactly one SQL statement; this text holds several (or none)",
                                     detail=detail_for(text, f"PostgreSQL: {message}")) from None
        raise NotAPlainQuery("sqlcoder runs only a plain query (SELECT, VALUES, TABLE, or WITH without "
                             "INSERT/UPDATE/DELETE)", detail=detail_for(text, f"PostgreSQL: {message}")) from None
    cursor.close()


def _cost(plpy: Any, runnable: str) -> float:
    rows = plpy.execute("EXPLAIN (FORMAT JSON) " + runnable)
    plan = rows[0]["QUERY PLAN"]
    document = json.loads(plan) if isinstance(plan, str) else plan
    return float(document[0]["Plan"]["Total Cost"])

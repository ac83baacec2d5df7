"""The ``strict`` judge: a generated query's result against the gold results, by sql-eval's rules
as they are meant rather than as its code runs (:mod:`.sqleval_judge` has those, quirks included).

Modelled on defog-ai/sql-eval's ``compare_query_results``, ``compare_df``,
``normalize_table`` and ``subset_df``, without pandas:

- every gold variant (see :mod:`goldsql`) is tried in turn; the answer is *exact*
  when its result equals a variant's result, and *correct* when it is exact or when
  every column of a variant's result is found among the answer's columns (the
  subset rule: extra columns are allowed, column names are not compared);
- results are compared after normalising: duplicate rows and duplicate column
  names dropped, columns sorted by name, rows sorted unless the category is
  ``order_by`` or the question asks for an order (``order``/``sort``/``arrange``);
- numbers are compared with pandas' default tolerance (relative 1e-5, absolute
  1e-8), ``Decimal`` and ``float`` alike, and NULL equals NULL.

Ordered questions follow one of two policies. ``sql-eval`` (the default) copies
sql-eval's code: when the query has an ORDER BY, rows are re-sorted by the first
ORDER BY key (when it is an output column) and then every other column, descending
unless that key says ``ASC``, and that key's column moves last; without an ORDER
BY the returned order is kept. ``strict`` keeps the returned row order for every
ordered question, which is what sql-eval's README describes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

__all__ = [
    "ORDER_POLICIES",
    "ResultSet",
    "Verdict",
    "asks_for_order",
    "compare_df",
    "compare_results",
    "normalize",
    "subset_df",
    "values_equal",
]

ORDER_POLICIES = ("sql-eval", "strict")
REL_TOL = 1e-5
ABS_TOL = 1e-8

_ORDER_WORDS = re.compile(r"\b(order|sort|arrange)\b", re.IGNORECASE)
_ORDER_BY = re.compile(r"ORDER\s+BY\s(.*?)(?=;|,|\)|$)", re.IGNORECASE | re.DOTALL)
_NOT_COLUMNS = {"desc", "asc", "nulls", "last", "first", "limit"}


@dataclass(frozen=True)
class ResultSet:
    """A query result: column names and rows of Python values (as psycopg returns them)."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]

    @classmethod
    def of(cls, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> ResultSet:
        return cls(tuple(columns), tuple(tuple(r) for r in rows))

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.rows), len(self.columns))

    def column(self, index: int) -> list[Any]:
        return [row[index] for row in self.rows]

    def select(self, indices: Sequence[int], names: Sequence[str] | None = None) -> ResultSet:
        names = [self.columns[i] for i in indices] if names is None else names
        return ResultSet.of(names, [[row[i] for i in indices] for row in self.rows])


@dataclass(frozen=True)
class Verdict:
    """``exact``: equal to some gold variant; ``correct``: exact or a superset by the subset rule."""

    exact: bool
    correct: bool


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, Decimal)) and not isinstance(v, bool)


def _is_null(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, Decimal) and v.is_nan())


def values_equal(a: Any, b: Any) -> bool:
    """Cell equality: NULL (or NaN) equals NULL, numbers within pandas' default tolerance."""
    if _is_null(a) or _is_null(b):
        return _is_null(a) and _is_null(b)
    if _is_number(a) and _is_number(b):
        fa, fb = float(a), float(b)
        if math.isinf(fa) or math.isinf(fb):
            return fa == fb
        return abs(fa - fb) <= ABS_TOL + REL_TOL * abs(fb)
    return a == b


def _cells_equal(a: ResultSet, b: ResultSet) -> bool:
    """Same shape and equal cell by cell (column names are not compared)."""
    return a.shape == b.shape and all(
        values_equal(x, y) for ra, rb in zip(a.rows, b.rows) for x, y in zip(ra, rb))


def _sort_key(v: Any) -> tuple:
    """A total order over one column's non-null values, whatever their types."""
    if _is_number(v) or isinstance(v, bool):
        return (0, float(v))
    if isinstance(v, str):
        return (1, v)
    return (2, type(v).__name__, str(v))


def _sort_rows(rows: list[tuple], keys: Sequence[int], ascending: bool) -> list[tuple]:
    """Stable multi-key sort with NULLs last in either direction (pandas' ``sort_values``)."""
    for k in reversed(keys):
        present = [r for r in rows if not _is_null(r[k])]
        nulls = [r for r in rows if _is_null(r[k])]
        rows = sorted(present, key=lambda r: _sort_key(r[k]), reverse=not ascending) + nulls
    return rows


def _hashable(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return ("nan",)
    try:
        hash(v)
        return v
    except TypeError:
        return repr(v)


def _drop_duplicate_rows(rows: Sequence[tuple]) -> list[tuple]:
    seen: set = set()
    out = []
    for r in rows:
        key = tuple(_hashable(v) for v in r)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def asks_for_order(category: str, question: str) -> bool:
    """sql-eval's test for an ordered answer: the ``order_by`` category or an ordering word."""
    return category == "order_by" or bool(_ORDER_WORDS.search(question))


def _first_order_key(sql: str) -> tuple[list[str], bool] | None:
    """sql-eval's reading of an ORDER BY: the words of its first key, and whether it is ascending."""
    clause = _ORDER_BY.search(" ".join(sql.split()))
    if clause is None:
        return None
    words = [w.strip().rsplit(".", 1)[-1] for w in clause.group(1).split()]
    upper = [w.upper() for w in words]
    ascending = "DESC" not in upper and "ASC" in upper
    words = [w.replace(",", "").replace("(", "") for w in words]
    return [w for w in words if w.lower() not in _NOT_COLUMNS], ascending


def normalize(result: ResultSet, category: str, question: str, sql: str | None = None,
              policy: str = "sql-eval") -> ResultSet:
    """sql-eval's ``normalize_table``: dedupe rows and columns, sort columns, sort rows unless ordered."""
    if policy not in ORDER_POLICIES:
        raise ValueError(f"unknown order policy {policy!r}; choose from {ORDER_POLICIES}")
    first_of_name: dict[str, int] = {}
    for i, name in enumerate(result.columns):
        first_of_name.setdefault(name, i)
    order = sorted(first_of_name.values(), key=lambda i: result.columns[i])
    columns = [result.columns[i] for i in order]
    rows = _drop_duplicate_rows([tuple(row[i] for i in order) for row in result.rows])

    if not asks_for_order(category, question):
        return ResultSet.of(columns, _sort_rows(rows, range(len(columns)), ascending=True))
    key = _first_order_key(sql) if (sql and policy == "sql-eval") else None
    if key is None:
        return ResultSet.of(columns, rows)
    words, ascending = key
    others = [c for c in columns if c not in words]
    keyed = [w for w in words if w in columns]
    final = others + list(dict.fromkeys(keyed))
    index = [columns.index(c) for c in final]
    rows = _sort_rows(rows, [columns.index(c) for c in keyed + others], ascending)
    return ResultSet.of(final, [tuple(r[i] for i in index) for r in rows])


def compare_df(gold: ResultSet, gen: ResultSet, category: str, question: str,
               gold_sql: str | None = None, gen_sql: str | None = None, policy: str = "sql-eval") -> bool:
    """Exact match: equal as returned, or equal once both are normalised."""
    if _cells_equal(gold, gen):
        return True
    return _cells_equal(normalize(gold, category, question, gold_sql, policy),
                        normalize(gen, category, question, gen_sql, policy))


def _sorted_column(values: list[Any]) -> list[Any]:
    present = sorted((v for v in values if not _is_null(v)), key=_sort_key)
    return present + [v for v in values if _is_null(v)]


def _columns_equal(a: list[Any], b: list[Any]) -> bool:
    return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b))


def subset_df(sub: ResultSet, sup: ResultSet, category: str, question: str,
              sup_sql: str | None = None, sub_sql: str | None = None, policy: str = "sql-eval") -> bool:
    """The subset rule: each column of ``sub`` matches a distinct column of ``sup`` (values compared
    as sorted lists, names ignored), and ``sub`` equals those columns of ``sup`` once normalised."""
    if not sub.rows or not sub.columns:
        return False
    remaining = list(range(len(sup.columns)))
    sorted_sup = {k: _sorted_column(sup.column(k)) for k in remaining}
    matched: list[int] = []
    for j in range(len(sub.columns)):
        wanted = _sorted_column(sub.column(j))
        hit = next((k for k in remaining if _columns_equal(wanted, sorted_sup[k])), None)
        if hit is None:
            return False
        matched.append(hit)
        remaining.remove(hit)
    sub_n = normalize(sub, category, question, sub_sql, policy)
    sup_n = normalize(sup.select(matched, sub.columns), category, question, sup_sql, policy)
    return sub_n.columns == sup_n.columns and _cells_equal(sub_n, sup_n)


def compare_results(gold: Sequence[tuple[str, ResultSet]], gen_sql: str, gen: ResultSet, category: str,
                    question: str, policy: str = "sql-eval") -> Verdict:
    """sql-eval's ``compare_query_results`` over already-executed gold variants ``(sql, result)``."""
    correct = False
    for gold_sql, gold_result in gold:
        if compare_df(gold_result, gen, category, question, gold_sql, gen_sql, policy):
            return Verdict(exact=True, correct=True)
        if subset_df(gold_result, gen, category, question, gen_sql, gold_sql, policy):
            correct = True
    return Verdict(exact=False, correct=correct)

"""Value hints: the most common values of text columns with few distinct values, from ``pg_stats``.

The model has to guess how a value is spelled (``'NY'`` or ``'New York'``);
PostgreSQL's statistics already know. For every shown column of a string type
(``typcategory = 'S'``: text, varchar, char, name, domains over them; enum
columns already show their labels) whose estimated number of distinct values
is at most ``value_hints_max_distinct``, the ``most_common_vals`` ANALYZE kept
are added to the column's comment, most common first, in the form Defog's
metadata descriptions use (``e.g. 'DE', 'US'``). Nothing reads a table: only
the statistics. ``pg_stats`` shows a row only for columns the caller may
SELECT, and none for a table whose row-level security applies to the caller,
so a hint never shows a value the caller could not read.

A cached schema remembers how many times its candidate tables were analyzed
(``pg_stat_get_analyze_count`` plus the autovacuum count); a newer ANALYZE
makes it re-read the hints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from .catalog import Schema

__all__ = ["HintSettings", "attach", "analyze_version", "MAX_VALUE_CHARS"]

MAX_VALUE_CHARS = 40  # longer values are prose, not categories

# Tables with a column of a string type: the ones whose ANALYZE matters.
_CANDIDATES_SQL = """
SELECT DISTINCT a.attrelid::pg_catalog.int8 AS oid
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = ANY ($1::pg_catalog.oid[]) AND a.attnum > 0 AND NOT a.attisdropped AND t.typcategory = 'S'
"""

# One row per column of a string type, with its statistics if any
# (inherited ones first: a parent's own rows say nothing about its partitions).
_HINTS_SQL = """
WITH cand AS (
  SELECT c.oid, c.relname, n.nspname, c.reltuples, a.attname
  FROM pg_catalog.unnest($1::pg_catalog.oid[]) AS r(oid)
  JOIN pg_catalog.pg_class c ON c.oid = r.oid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
  WHERE t.typcategory = 'S'
)
SELECT DISTINCT ON (c.oid, c.attname)
       c.oid::pg_catalog.int8 AS oid, pg_catalog.quote_ident(c.attname) AS col, c.reltuples,
       s.n_distinct, s.most_common_vals::text::text[] AS vals
FROM cand c
LEFT JOIN pg_catalog.pg_stats s ON s.schemaname = c.nspname AND s.tablename = c.relname AND s.attname = c.attname
ORDER BY c.oid, c.attname, s.inherited DESC
"""

_VERSION_SQL = """
SELECT coalesce(pg_catalog.sum(pg_catalog.pg_stat_get_analyze_count(o)
                               + pg_catalog.pg_stat_get_autoanalyze_count(o)), 0)::pg_catalog.int8 AS v
FROM pg_catalog.unnest($1::pg_catalog.oid[]) AS o
"""
_plans: dict[str, Any] = {}


@dataclass(frozen=True)
class HintSettings:
    """``value_hints_max_values`` and ``value_hints_max_distinct`` (part of the schema cache key)."""

    max_values: int
    max_distinct: int


def _plan(plpy: Any, key: str, sql: str, types: Sequence[str]) -> Any:
    plan = _plans.get(key)
    if plan is None:
        plan = _plans[key] = plpy.prepare(sql, list(types))
    return plan


def analyze_version(plpy: Any, oids: Sequence[int]) -> int:
    """How many times (manually or by autovacuum) these tables were analyzed, summed."""
    if not oids:
        return 0
    return int(plpy.execute(_plan(plpy, "version", _VERSION_SQL, ["oid[]"]), [list(oids)])[0]["v"])


def _distinct(n_distinct: float | None, reltuples: float | None) -> float | None:
    """pg_stats' n_distinct as a count (negative values are a fraction of the rows)."""
    if n_distinct is None or n_distinct == 0:
        return None
    if n_distinct > 0:
        return n_distinct
    return -n_distinct * max(reltuples or 0.0, 0.0)


def usable(value: Any) -> bool:
    """A value worth showing: short, on one line, without control characters."""
    return (isinstance(value, str) and 0 < len(value) <= MAX_VALUE_CHARS
            and not any(ord(ch) < 32 or ord(ch) == 127 for ch in value))


def attach(plpy: Any, schema: Schema, settings: HintSettings) -> tuple[list[int], int]:
    """Set ``Column.values`` from pg_stats; return the candidate tables and their analyze version."""
    oids = [t.oid for t in schema.tables]
    if not oids:
        return [], 0
    candidates = sorted(int(r["oid"]) for r in plpy.execute(_plan(plpy, "candidates", _CANDIDATES_SQL, ["oid[]"]),
                                                             [oids]))
    # The version before the statistics: an ANALYZE in between is then seen as newer next time.
    version = analyze_version(plpy, candidates)
    if not candidates:
        return [], version
    rows = plpy.execute(_plan(plpy, "hints", _HINTS_SQL, ["oid[]"]), [candidates])
    by_oid = schema.by_oid()
    for r in rows:
        distinct = _distinct(r["n_distinct"], r["reltuples"])
        if not r["vals"] or distinct is None or distinct > settings.max_distinct:
            continue
        values = [v for v in r["vals"] if usable(v)][:settings.max_values]
        table = by_oid.get(int(r["oid"]))
        if not values or table is None:
            continue
        for column in table.columns:
            if column.name == r["col"] and not column.enum_labels:
                column.values = values
    return candidates, version

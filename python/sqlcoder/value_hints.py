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

A cached schema remembers how many times its tables were analyzed
(``pg_stat_get_analyze_count`` plus the autovacuum count: shared memory, no
table read, about 0.3 µs a table); a newer ANALYZE makes it re-read the hints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import _spi
from ._spi import Plpy
from .catalog import Schema

__all__ = ["HintSettings", "attach", "analyze_version", "MAX_VALUE_CHARS"]

MAX_VALUE_CHARS = 40  # longer values are prose, not categories

# The statistics with common values of those tables' string columns. pg_stats
# is read once, for the tables' schemas (materialized: joined row by row it
# would be evaluated again per column); inherited rows first, as a parent's
# own rows say nothing about its partitions.
_HINTS_SQL = """
WITH rel AS (
  SELECT c.oid, c.relname, n.nspname, c.reltuples
  FROM pg_catalog.unnest($1::pg_catalog.oid[]) AS r(oid)
  JOIN pg_catalog.pg_class c ON c.oid = r.oid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
), st AS MATERIALIZED (
  SELECT s.schemaname, s.tablename, s.attname, s.inherited, s.n_distinct,
         s.most_common_vals::text::text[] AS vals
  FROM pg_catalog.pg_stats s
  WHERE s.schemaname = ANY (ARRAY(SELECT DISTINCT rel.nspname FROM rel)) AND s.most_common_vals IS NOT NULL
)
SELECT DISTINCT ON (rel.oid, st.attname)
       rel.oid::pg_catalog.int8 AS oid, pg_catalog.quote_ident(st.attname) AS col, rel.reltuples,
       st.n_distinct, st.vals
FROM rel
JOIN st ON st.schemaname = rel.nspname AND st.tablename = rel.relname
JOIN pg_catalog.pg_attribute a ON a.attrelid = rel.oid AND a.attname = st.attname
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
WHERE t.typcategory = 'S'
ORDER BY rel.oid, st.attname, st.inherited DESC
"""

_VERSION_SQL = """
SELECT coalesce(pg_catalog.sum(pg_catalog.pg_stat_get_analyze_count(o)
                               + pg_catalog.pg_stat_get_autoanalyze_count(o)), 0)::pg_catalog.int8 AS v
FROM pg_catalog.unnest($1::pg_catalog.oid[]) AS o
"""


@dataclass(frozen=True)
class HintSettings:
    """``value_hints_max_values`` and ``value_hints_max_distinct`` (part of the schema cache key)."""

    max_values: int
    max_distinct: int


def analyze_version(plpy: Plpy, oids: Sequence[int]) -> int:
    """How many times (manually or by autovacuum) these tables were analyzed, summed."""
    if not oids:
        return 0
    return int(plpy.execute(_spi.plan(plpy, _VERSION_SQL, ["oid[]"]), [list(oids)])[0]["v"])


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


def attach(plpy: Plpy, schema: Schema, settings: HintSettings) -> tuple[list[int], int]:
    """Set ``Column.values`` from pg_stats; return the tables watched for a newer ANALYZE, and their version."""
    oids = [t.oid for t in schema.tables]
    if not oids:
        return [], 0
    # The version before the statistics: an ANALYZE in between is then seen as newer next time.
    version = analyze_version(plpy, oids)
    rows = plpy.execute(_spi.plan(plpy, _HINTS_SQL, ["oid[]"]), [oids])
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
    return oids, version

"""What the caller may see of the database, read from ``pg_catalog`` (rendered by :mod:`sqlcoder.ddl`).

Only relations in the caller's search path, and only the tables and columns
the caller has SELECT on (table- or column-level), are read: the model is
never shown more than the caller could query. ``pg_catalog`` is queried
directly because the ``information_schema`` views are one to three orders of
magnitude slower on large catalogs. Names come back quoted by ``quote_ident``,
so every identifier rendered is valid SQL.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from . import SCHEMAS, _spi, bounds
from ._spi import Plpy

__all__ = ["Column", "Table", "Join", "Schema", "EXCLUDED_SCHEMAS", "read_schema", "schemas_off_path",
           "MAX_SCHEMAS_NAMED"]

EXCLUDED_SCHEMAS = ("pg_catalog", "information_schema", *SCHEMAS)

# One row per relation in the caller's path: ordinary and partitioned tables
# (parents only), views, materialized views, foreign tables, in path order.
# `shadowed`: a relation of the same name in an earlier path schema (pg_catalog
# and pg_temp included) would catch the bare name, so this one is qualified.
# A relation's columns come as one text (fields split by U+001F, columns by
# U+001E, enum labels by U+001D; those characters are blanked in user text):
# one row per table, and splitting a string in Python costs far less than
# PL/Python converting a row per column or parsing JSON. Keys and foreign keys
# (few per table) come as JSON. Per-column privileges are checked only on
# tables the caller cannot select as a whole.
_SCHEMA_SQL = """
WITH path AS (
  SELECT nspname, ord FROM pg_catalog.unnest($1::name[]) WITH ORDINALITY AS p(nspname, ord)
), rels AS (
  SELECT c.oid, c.relname, c.relkind, n.nspname, p.ord, pg_catalog.has_table_privilege(c.oid, 'SELECT') AS whole
  FROM path p
  JOIN pg_catalog.pg_namespace n ON n.nspname = p.nspname
  JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid
  WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
    AND NOT c.relispartition
    AND n.nspname <> ALL ($2::name[])
    AND n.nspname !~ '^pg_toast'
    AND pg_catalog.has_any_column_privilege(c.oid, 'SELECT')
), earlier AS (
  -- Names of schemas before the last one with a shown relation: only those
  -- can shadow (usually just pg_catalog's few hundred).
  SELECT c.relname, pg_catalog.min(p.ord) AS ord
  FROM path p
  JOIN pg_catalog.pg_namespace n ON n.nspname = p.nspname
  JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid
  WHERE p.ord < (SELECT pg_catalog.max(r.ord) FROM rels r)
  GROUP BY c.relname
), enums AS (
  SELECT enumtypid,
         pg_catalog.string_agg(pg_catalog.translate(enumlabel, E'\\x1d\\x1e\\x1f', '   '), E'\\x1d'
                               ORDER BY enumsortorder) AS labels
  FROM pg_catalog.pg_enum GROUP BY enumtypid
), vcols AS (
  SELECT a.attrelid, a.attnum, a.attname, a.atttypid, a.atttypmod, a.attnotnull, a.attidentity, a.attgenerated,
         r.whole
  FROM rels r
  JOIN pg_catalog.pg_attribute a ON a.attrelid = r.oid
  WHERE a.attnum > 0 AND NOT a.attisdropped
    AND (r.whole OR pg_catalog.has_column_privilege(a.attrelid, a.attnum, 'SELECT'))
), types AS (
  -- format_type qualifies types outside pg_catalog (this function pins its
  -- search_path); the prefix is dropped again where the caller's path would
  -- find the type by its bare name. A subquery per distinct type: index
  -- lookups, where a join would scan all of pg_type (two rows per table).
  SELECT u.atttypid AS oid,
         (SELECT pg_catalog.quote_ident(n.nspname) || '.'
          FROM pg_catalog.pg_type t
          JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
          JOIN path p ON p.nspname = n.nspname
          WHERE t.oid = u.atttypid AND n.nspname <> 'pg_catalog'
            AND NOT EXISTS (SELECT 1 FROM path p2
                            JOIN pg_catalog.pg_namespace n2 ON n2.nspname = p2.nspname
                            JOIN pg_catalog.pg_type t2 ON t2.typnamespace = n2.oid AND t2.typname = t.typname
                            WHERE p2.ord < p.ord)) AS prefix
  FROM (SELECT DISTINCT atttypid FROM vcols) u
), cols AS (
  SELECT a.attrelid,
         pg_catalog.string_agg(pg_catalog.concat_ws(E'\\x1f',
           a.attnum, pg_catalog.quote_ident(a.attname),
           CASE WHEN pg_catalog.starts_with(ft.ft, ty.prefix)
                THEN pg_catalog.substr(ft.ft, pg_catalog.length(ty.prefix) + 1)
                ELSE ft.ft END,
           a.attnotnull, a.attidentity,
           CASE WHEN a.attgenerated = '' THEN ''
                -- The expression names columns: shown only when the caller may select all of them.
                WHEN NOT a.whole AND EXISTS (
                  SELECT 1 FROM pg_catalog.pg_depend dep
                  WHERE dep.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND dep.objid = ad.oid
                    AND dep.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
                    AND dep.refobjid = a.attrelid AND dep.refobjsubid > 0
                    AND NOT pg_catalog.has_column_privilege(a.attrelid, dep.refobjsubid::pg_catalog.int2,
                                                            'SELECT')) THEN '?'
                ELSE pg_catalog.translate(pg_catalog.left(pg_catalog.pg_get_expr(ad.adbin, ad.adrelid), $3 + 1),
                                          E'\\x1c\\x1d\\x1e\\x1f', '    ') END,
           pg_catalog.translate(pg_catalog.left(COALESCE(d.description, ''), $3), E'\\x1c\\x1d\\x1e\\x1f', '    ')
             || CASE WHEN pg_catalog.length(d.description) > $3
                     THEN E'\\x1c' || (pg_catalog.length(d.description) - $3)::text ELSE '' END,
           COALESCE(pg_catalog.left(e.labels, $3 + 1), '')), E'\\x1e' ORDER BY a.attnum) AS columns
  FROM vcols a
  CROSS JOIN LATERAL (SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) AS ft) ft
  LEFT JOIN types ty ON ty.oid = a.atttypid
  LEFT JOIN pg_catalog.pg_attrdef ad ON a.attgenerated <> '' AND ad.adrelid = a.attrelid AND ad.adnum = a.attnum
  LEFT JOIN pg_catalog.pg_description d
    ON d.objoid = a.attrelid AND d.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objsubid = a.attnum
  LEFT JOIN enums e ON e.enumtypid = a.atttypid
  GROUP BY a.attrelid
), keys AS (
  -- Primary keys and unique constraints or indexes on plain columns.
  SELECT i.indrelid,
         pg_catalog.json_agg(pg_catalog.json_build_array(i.indisprimary, i.indkey::int2[])
                             ORDER BY NOT i.indisprimary, i.indexrelid) AS keys
  FROM rels r
  JOIN pg_catalog.pg_index i ON i.indrelid = r.oid
  WHERE i.indisunique AND i.indisvalid AND i.indexprs IS NULL AND i.indpred IS NULL
  GROUP BY i.indrelid
), fks AS (
  SELECT k.conrelid,
         pg_catalog.json_agg(pg_catalog.json_build_array(k.conkey, k.confrelid, k.confkey)
                             ORDER BY k.conname) AS fks
  FROM rels r
  JOIN pg_catalog.pg_constraint k ON k.conrelid = r.oid AND k.contype = 'f'
  GROUP BY k.conrelid
)
SELECT r.oid::pg_catalog.int8 AS oid,
       pg_catalog.quote_ident(r.nspname) AS schema,
       pg_catalog.quote_ident(r.relname) AS name,
       r.relkind AS kind,
       pg_catalog.left(d.description, $3) AS comment,
       GREATEST(pg_catalog.length(d.description) - $3, 0) AS comment_cut,
       COALESCE(e.ord < r.ord, false) AS shadowed,
       cols.columns,
       keys.keys::text AS keys,
       fks.fks::text AS fks
FROM rels r
JOIN cols ON cols.attrelid = r.oid
LEFT JOIN earlier e ON e.relname = r.relname
LEFT JOIN keys ON keys.indrelid = r.oid
LEFT JOIN fks ON fks.conrelid = r.oid
LEFT JOIN pg_catalog.pg_description d
  ON d.objoid = r.oid AND d.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objsubid = 0
ORDER BY r.ord, r.relname
"""

# A DBA's join hints; only those between columns the caller sees are kept.
_JOIN_HINTS_SQL = """
SELECT h.left_table::pg_catalog.oid::pg_catalog.int8 AS left_oid,
       pg_catalog.quote_ident(h.left_column) AS left_column,
       h.right_table::pg_catalog.oid::pg_catalog.int8 AS right_oid,
       pg_catalog.quote_ident(h.right_column) AS right_column
FROM sqlcoder.join_hints h
ORDER BY h.id
"""


# Schemas off the caller's path where the caller could see a relation: the
# first few by name, each found by one EXISTS that stops at its first match.
_OFF_PATH_SQL = """
SELECT pg_catalog.quote_ident(n.nspname) AS name
FROM pg_catalog.pg_namespace n
WHERE n.nspname <> ALL ($1::name[]) AND n.nspname <> ALL ($2::name[])
  AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
  AND pg_catalog.has_schema_privilege(n.oid, 'USAGE')
  AND EXISTS (SELECT 1 FROM pg_catalog.pg_class c
              WHERE c.relnamespace = n.oid AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition
                AND pg_catalog.has_any_column_privilege(c.oid, 'SELECT'))
ORDER BY n.nspname
LIMIT $3
"""
MAX_SCHEMAS_NAMED = 10


@dataclass(slots=True)
class Column:
    """One column as the caller sees it; ``name`` and ``type`` are ready to print."""

    name: str
    type: str
    not_null: bool = False
    primary_key: bool = False
    unique: bool = False
    identity: str = ""
    generated: str = ""
    comment: str | None = None
    enum_labels: Sequence[str] | None = None
    values: Sequence[str] | None = None  # most common values from pg_stats (value_hints.py)


@dataclass
class Table:
    """A relation the caller may select from, with only the columns they may select."""

    oid: int
    schema: str
    name: str
    kind: str = "r"
    qualified: bool = False
    comment: str | None = None
    columns: list[Column] = field(default_factory=list)
    primary_key: tuple[str, ...] = ()
    unique_keys: list[tuple[str, ...]] = field(default_factory=list)

    @property
    def display_name(self) -> str:
        return f"{self.schema}.{self.name}" if self.qualified else self.name


@dataclass(frozen=True)
class Join:
    """Columns of two tables that can be joined: a foreign key (maybe multi-column) or a DBA's hint."""

    left: int
    left_columns: tuple[str, ...]
    right: int
    right_columns: tuple[str, ...]


@dataclass
class Schema:
    tables: list[Table]
    joins: list[Join]
    cut: list[str] = field(default_factory=list)  # objects whose text was cut ("comment on table x")

    def by_oid(self) -> dict[int, Table]:
        return {t.oid: t for t in self.tables}


def _labels(raw: str, max_chars: int) -> list[str] | None:
    if not raw:
        return None
    if len(raw) <= max_chars:
        return raw.split("\x1d")
    kept = raw[:max_chars].split("\x1d")[:-1]  # the last one may be cut in the middle
    return kept + [bounds.marker_text("more labels")]


def _table_from_row(row: dict[str, Any], max_chars: int, cut: list[str]) -> tuple[Table, dict[int, str], list[Any]]:
    comment = row["comment"]
    label = f"{row['schema']}.{row['name']}"
    if row["comment_cut"]:
        comment = bounds.marked(comment, int(row["comment_cut"]))
        cut.append(f"the comment on {label}")
    table = Table(int(row["oid"]), row["schema"], row["name"], row["kind"], bool(row["shadowed"]), comment)
    names: dict[int, str] = {}
    columns = table.columns
    for record in row["columns"].split("\x1e"):
        attnum, name, type_, not_null, identity, generated, comment, labels = record.split("\x1f")
        names[int(attnum)] = name
        if "\x1c" in comment:
            comment, more = comment.split("\x1c")
            comment = bounds.marked(comment, int(more))
            cut.append(f"the comment on column {label}.{name}")
        if generated == "?":  # it names a column the caller may not select
            generated = ""
        elif len(generated) > max_chars:
            generated = bounds.marked(generated[:max_chars], None)
            cut.append(f"the generation expression of column {label}.{name}")
        column_labels = _labels(labels, max_chars)
        if labels and len(labels) > max_chars:
            cut.append(f"the labels of the type of column {label}.{name}")
        columns.append(Column(name, type_, not_null == "t", False, False, identity, generated, comment or None,
                              column_labels))
    if row["keys"]:
        for primary, attnums in json.loads(row["keys"]):
            # A key is shown only when the caller sees all its columns.
            if not attnums or any(n not in names for n in attnums):
                continue
            key = tuple(names[n] for n in attnums)
            if primary:
                table.primary_key = key
            elif key not in table.unique_keys:
                table.unique_keys.append(key)
        by_name = {c.name: c for c in columns}
        if len(table.primary_key) == 1:
            by_name[table.primary_key[0]].primary_key = True
        for key in table.unique_keys:
            if len(key) == 1:
                by_name[key[0]].unique = True
    return table, names, json.loads(row["fks"]) if row["fks"] else []


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while building: the many small objects made at 10,000 tables
    would set off collections that each walk everything built so far (quadratic)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def read_schema(plpy: Plpy, caller_path: Sequence[str], max_chars: int) -> Schema:
    """Introspect the relations the caller can see through ``caller_path`` (``current_schemas(true)``).

    Comments, enum label lists and generated-column expressions (text their
    owners wrote) are cut to ``max_chars`` in SQL, so a 5 MB comment never
    leaves the server's catalog; ``Schema.cut`` names what was cut.
    """
    with _gc_paused():
        return _read_schema(plpy, caller_path, max_chars)


def _read_schema(plpy: Plpy, caller_path: Sequence[str], max_chars: int) -> Schema:
    rows = plpy.execute(_spi.plan(plpy, _SCHEMA_SQL, ["name[]", "name[]", "int4"]),
                        [list(caller_path), list(EXCLUDED_SCHEMAS), max_chars])
    tables: list[Table] = []
    attnames: dict[int, dict[int, str]] = {}
    raw_fks: list[tuple[int, list[Any]]] = []
    cut: list[str] = []
    for row in rows:
        table, names, fks = _table_from_row(row, max_chars, cut)
        tables.append(table)
        attnames[table.oid] = names
        raw_fks.append((table.oid, fks))
    joins: list[Join] = []
    for oid, fks in raw_fks:
        for conkey, target, confkey in fks:
            target_names = attnames.get(int(target))
            if target_names is None:
                continue
            if all(n in attnames[oid] for n in conkey) and all(n in target_names for n in confkey):
                joins.append(Join(oid, tuple(attnames[oid][n] for n in conkey),
                                  int(target), tuple(target_names[n] for n in confkey)))
    visible = {oid: set(names.values()) for oid, names in attnames.items()}
    seen = set(joins)
    for r in plpy.execute(_spi.plan(plpy, _JOIN_HINTS_SQL)):
        left, right = int(r["left_oid"]), int(r["right_oid"])
        if r["left_column"] in visible.get(left, ()) and r["right_column"] in visible.get(right, ()):
            join = Join(left, (r["left_column"],), right, (r["right_column"],))
            if join not in seen and Join(right, join.right_columns, left, join.left_columns) not in seen:
                seen.add(join)
                joins.append(join)
    return Schema(tables=tables, joins=joins, cut=cut)


def schemas_off_path(plpy: Plpy, caller_path: Sequence[str]) -> tuple[list[str], bool]:
    """Schemas not on ``caller_path`` holding a relation the caller may select from (quoted), at most
    ``MAX_SCHEMAS_NAMED``; and whether there are more."""
    rows = plpy.execute(_spi.plan(plpy, _OFF_PATH_SQL, ["name[]", "name[]", "int4"]),
                        [list(caller_path), list(EXCLUDED_SCHEMAS), MAX_SCHEMAS_NAMED + 1])
    names = [r["name"] for r in rows]
    return names[:MAX_SCHEMAS_NAMED], len(names) > MAX_SCHEMAS_NAMED

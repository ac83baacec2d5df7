"""What the caller may see of the database, read from ``pg_catalog``, rendered as DDL.

Only relations in the caller's search path, and only the tables and columns
the caller has SELECT on, are read: the model is never shown more than the
caller could query. Names come back already quoted by ``quote_ident``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

__all__ = ["Column", "Table", "JoinHint", "Schema", "read_schema", "render_schema"]

EXCLUDED_SCHEMAS = ("pg_catalog", "information_schema", "sqlcoder", "pg_toast")

# Relations in the caller's path: ordinary, partitioned (parents only), views,
# materialized views, foreign tables. `qualified` when the bare name would
# resolve to another relation (one of the same name earlier in the path).
_TABLES_SQL = """
WITH path AS (
  SELECT nspname, ord FROM unnest($1::name[]) WITH ORDINALITY AS p(nspname, ord)
)
SELECT c.oid AS oid,
       quote_ident(n.nspname) AS schema,
       quote_ident(c.relname) AS name,
       c.relkind AS kind,
       obj_description(c.oid, 'pg_class') AS comment,
       EXISTS (SELECT 1 FROM pg_class c2
               JOIN pg_namespace n2 ON n2.oid = c2.relnamespace
               JOIN path p2 ON p2.nspname = n2.nspname
               WHERE c2.relname = c.relname AND p2.ord < p.ord) AS shadowed
FROM path p
JOIN pg_namespace n ON n.nspname = p.nspname
JOIN pg_class c ON c.relnamespace = n.oid
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND NOT c.relispartition
  AND n.nspname <> ALL ($2::name[])
  AND n.nspname NOT LIKE 'pg\\_toast%'
  AND has_any_column_privilege(c.oid, 'SELECT')
ORDER BY p.ord, c.relname
"""

_COLUMNS_SQL = """
SELECT a.attrelid AS oid,
       quote_ident(a.attname) AS name,
       format_type(a.atttypid, a.atttypmod) AS type,
       a.attnotnull AS not_null,
       a.attidentity AS identity,
       a.attgenerated AS generated,
       col_description(a.attrelid, a.attnum) AS comment,
       CASE WHEN t.typtype = 'e' THEN
         (SELECT array_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid)
       END AS enum_labels,
       EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = a.attrelid AND k.contype = 'p'
               AND k.conkey = ARRAY[a.attnum]) AS primary_key,
       EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = a.attrelid AND k.contype = 'u'
               AND k.conkey = ARRAY[a.attnum]) AS unique_key
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = ANY ($1::oid[])
  AND a.attnum > 0 AND NOT a.attisdropped
  AND has_column_privilege(a.attrelid, a.attnum, 'SELECT')
ORDER BY a.attrelid, a.attnum
"""

# Foreign keys between visible relations, one row per column pair.
_FOREIGN_KEYS_SQL = """
SELECT k.conrelid AS from_oid, quote_ident(fa.attname) AS from_column,
       k.confrelid AS to_oid, quote_ident(ta.attname) AS to_column
FROM pg_constraint k
CROSS JOIN LATERAL unnest(k.conkey, k.confkey) WITH ORDINALITY AS u(from_attnum, to_attnum, ord)
JOIN pg_attribute fa ON fa.attrelid = k.conrelid AND fa.attnum = u.from_attnum
JOIN pg_attribute ta ON ta.attrelid = k.confrelid AND ta.attnum = u.to_attnum
WHERE k.contype = 'f'
  AND k.conrelid = ANY ($1::oid[]) AND k.confrelid = ANY ($1::oid[])
  AND has_column_privilege(k.conrelid, u.from_attnum, 'SELECT')
  AND has_column_privilege(k.confrelid, u.to_attnum, 'SELECT')
ORDER BY k.conrelid, k.conname, u.ord
"""


@dataclass
class Column:
    name: str
    type: str
    not_null: bool = False
    primary_key: bool = False
    unique: bool = False
    identity: str = ""
    generated: str = ""
    comment: str | None = None
    enum_labels: Sequence[str] | None = None


@dataclass
class Table:
    oid: int
    schema: str
    name: str
    kind: str
    qualified: bool
    comment: str | None = None
    columns: list[Column] = field(default_factory=list)

    @property
    def display_name(self) -> str:
        return f"{self.schema}.{self.name}" if self.qualified else self.name


@dataclass(frozen=True)
class JoinHint:
    left: str
    right: str


@dataclass
class Schema:
    tables: list[Table]
    joins: list[JoinHint]


def read_schema(plpy: Any, caller_path: Sequence[str]) -> Schema:
    """Introspect the relations the caller can see through ``caller_path``."""
    plan = plpy.prepare(_TABLES_SQL, ["name[]", "name[]"])
    tables = [
        Table(oid=int(r["oid"]), schema=r["schema"], name=r["name"], kind=r["kind"],
              qualified=bool(r["shadowed"]), comment=r["comment"])
        for r in plpy.execute(plan, [list(caller_path), list(EXCLUDED_SCHEMAS)])
    ]
    by_oid = {t.oid: t for t in tables}
    if not tables:
        return Schema(tables=[], joins=[])
    oids = list(by_oid)
    for r in plpy.execute(plpy.prepare(_COLUMNS_SQL, ["oid[]"]), [oids]):
        by_oid[int(r["oid"])].columns.append(Column(
            name=r["name"], type=r["type"], not_null=bool(r["not_null"]),
            primary_key=bool(r["primary_key"]), unique=bool(r["unique_key"]),
            identity=r["identity"] or "", generated=r["generated"] or "",
            comment=r["comment"], enum_labels=r["enum_labels"]))
    joins = [
        JoinHint(f"{by_oid[int(r['from_oid'])].display_name}.{r['from_column']}",
                 f"{by_oid[int(r['to_oid'])].display_name}.{r['to_column']}")
        for r in plpy.execute(plpy.prepare(_FOREIGN_KEYS_SQL, ["oid[]"]), [oids])
    ]
    return Schema(tables=[t for t in tables if t.columns], joins=joins)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _render_column(col: Column) -> tuple[str, str]:
    parts = [col.name, col.type]
    if col.primary_key:
        parts.append("PRIMARY KEY")
    else:
        if col.not_null:
            parts.append("NOT NULL")
        if col.unique:
            parts.append("UNIQUE")
    if col.identity:
        parts.append("GENERATED ALWAYS AS IDENTITY" if col.identity == "a" else "GENERATED BY DEFAULT AS IDENTITY")
    notes = []
    if col.comment:
        notes.append(_one_line(col.comment))
    if col.enum_labels:
        notes.append("one of " + ", ".join(f"'{label}'" for label in col.enum_labels))
    if col.generated:
        notes.append("generated column")
    return " ".join(parts), "; ".join(notes)


def render_schema(schema: Schema) -> str:
    """``CREATE TABLE`` DDL with ``--`` comments, then foreign-key join hints."""
    blocks = []
    for table in schema.tables:
        lines = []
        if table.comment:
            lines.append(f"-- {_one_line(table.comment)}")
        lines.append(f"CREATE TABLE {table.display_name} (")
        rendered = [_render_column(c) for c in table.columns]
        for i, (ddl, note) in enumerate(rendered):
            comma = "," if i < len(rendered) - 1 else ""
            lines.append(f"  {ddl}{comma}" + (f" --{note}" if note else ""))
        lines.append(");")
        blocks.append("\n".join(lines))
    text = "\n\n".join(blocks)
    if schema.joins:
        text += "\n\n" + "\n".join(f"-- {j.left} can be joined with {j.right}" for j in schema.joins)
    return text

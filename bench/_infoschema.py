"""The same schema as ``sqlcoder.catalog.read_schema``, read the straightforward way: ``information_schema``.

The benchmark's baseline. It runs inside the server as a PL/Python function
(its source becomes the function's body), so both readers are timed through
the same call path and render with the same code. ``joined=True`` joins the
views in SQL the textbook way (key_column_usage with table_constraints or
referential_constraints), which PostgreSQL plans badly on large catalogs;
``joined=False`` reads each view once and joins in Python, a charitable
baseline. Comments have no
``information_schema`` view, so ``col_description``/``obj_description`` fill in;
enum labels and generated expressions, absent from the synthetic schema, are
left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlcoder import catalog

__all__ = ["read_schema_infoschema"]

_TABLES = """
SELECT t.table_schema, t.table_name, quote_ident(t.table_schema) AS qschema, quote_ident(t.table_name) AS qname,
       t.table_type,
       obj_description((quote_ident(t.table_schema) || '.' || quote_ident(t.table_name))::regclass, 'pg_class')
         AS comment
FROM information_schema.tables t
WHERE t.table_schema = ANY ($1::text[]) AND t.table_schema <> ALL ($2::text[])
"""

_COLUMNS = """
SELECT c.table_schema, c.table_name, quote_ident(c.column_name) AS name, c.data_type, c.udt_schema, c.udt_name,
       c.character_maximum_length, c.numeric_precision, c.numeric_scale, c.datetime_precision,
       c.is_nullable, c.is_identity, c.identity_generation,
       col_description((quote_ident(c.table_schema) || '.' || quote_ident(c.table_name))::regclass,
                       c.ordinal_position::int) AS comment
FROM information_schema.columns c
WHERE c.table_schema = ANY ($1::text[]) AND c.table_schema <> ALL ($2::text[])
ORDER BY c.table_schema, c.table_name, c.ordinal_position
"""

_KEYS = """
SELECT tc.table_schema, tc.table_name, tc.constraint_type, tc.constraint_name,
       quote_ident(k.column_name) AS column_name, k.ordinal_position
FROM information_schema.table_constraints tc
JOIN information_schema.key_column_usage k
  ON k.constraint_schema = tc.constraint_schema AND k.constraint_name = tc.constraint_name
 AND k.table_schema = tc.table_schema AND k.table_name = tc.table_name
WHERE tc.constraint_type IN ('PRIMARY KEY', 'UNIQUE')
  AND tc.table_schema = ANY ($1::text[]) AND tc.table_schema <> ALL ($2::text[])
ORDER BY tc.table_schema, tc.table_name, tc.constraint_name, k.ordinal_position
"""

_FOREIGN_KEYS = """
SELECT k.table_schema, k.table_name, quote_ident(k.column_name) AS column_name,
       u.table_schema AS ref_schema, u.table_name AS ref_table, quote_ident(u.column_name) AS ref_column,
       k.constraint_name, k.ordinal_position
FROM information_schema.referential_constraints r
JOIN information_schema.key_column_usage k
  ON k.constraint_schema = r.constraint_schema AND k.constraint_name = r.constraint_name
JOIN information_schema.key_column_usage u
  ON u.constraint_schema = r.unique_constraint_schema AND u.constraint_name = r.unique_constraint_name
 AND u.ordinal_position = k.position_in_unique_constraint
WHERE k.table_schema = ANY ($1::text[]) AND k.table_schema <> ALL ($2::text[])
ORDER BY k.table_schema, k.table_name, k.constraint_name, k.ordinal_position
"""


# The same, one view at a time.
_KEY_COLUMNS = """
SELECT k.constraint_schema, k.constraint_name, k.table_schema, k.table_name, quote_ident(k.column_name) AS column_name,
       k.ordinal_position, k.position_in_unique_constraint
FROM information_schema.key_column_usage k
WHERE k.table_schema = ANY ($1::text[]) AND k.table_schema <> ALL ($2::text[])
ORDER BY k.table_schema, k.table_name, k.constraint_name, k.ordinal_position
"""
_CONSTRAINTS = """
SELECT tc.constraint_schema, tc.constraint_name, tc.constraint_type
FROM information_schema.table_constraints tc
WHERE tc.table_schema = ANY ($1::text[]) AND tc.table_schema <> ALL ($2::text[])
"""
_REFERENCES = """
SELECT r.constraint_schema, r.constraint_name, r.unique_constraint_schema, r.unique_constraint_name
FROM information_schema.referential_constraints r
"""


def _type(r: dict[str, Any]) -> str:
    data_type = r["data_type"]
    if data_type == "USER-DEFINED":
        return r["udt_name"]
    if data_type == "ARRAY":
        return r["udt_name"].lstrip("_") + "[]"
    if data_type in ("character varying", "character") and r["character_maximum_length"]:
        return f"{data_type}({r['character_maximum_length']})"
    if data_type == "numeric" and r["numeric_precision"] is not None:
        return f"numeric({r['numeric_precision']},{r['numeric_scale']})"
    return data_type


def read_schema_infoschema(plpy: Any, caller_path: Sequence[str], joined: bool = True) -> catalog.Schema:
    excluded = list(catalog.EXCLUDED_SCHEMAS)
    path = [s for s in caller_path]
    order = {s: i for i, s in enumerate(path)}
    args = [path, excluded]
    rows = plpy.execute(plpy.prepare(_TABLES, ["text[]", "text[]"]), args)
    rows = sorted(rows, key=lambda r: (order[r["table_schema"]], r["table_name"]))
    seen: dict[str, int] = {}
    tables: dict[tuple[str, str], catalog.Table] = {}
    for i, r in enumerate(rows):
        kind = {"VIEW": "v", "FOREIGN": "f"}.get(r["table_type"], "r")
        tables[(r["table_schema"], r["table_name"])] = catalog.Table(
            oid=i, schema=r["qschema"], name=r["qname"], kind=kind,
            qualified=r["table_name"] in seen, comment=r["comment"])
        seen.setdefault(r["table_name"], i)
    for r in plpy.execute(plpy.prepare(_COLUMNS, ["text[]", "text[]"]), args):
        table = tables.get((r["table_schema"], r["table_name"]))
        if table is not None:
            table.columns.append(catalog.Column(
                name=r["name"], type=_type(r), not_null=r["is_nullable"] == "NO",
                identity={"ALWAYS": "a", "BY DEFAULT": "d"}.get(r["identity_generation"] or "", ""),
                comment=r["comment"]))
    keys: dict[tuple[str, str, str], tuple[str, list[str]]] = {}
    fks: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    if joined:
        for r in plpy.execute(plpy.prepare(_KEYS, ["text[]", "text[]"]), args):
            keys.setdefault((r["table_schema"], r["table_name"], r["constraint_name"]),
                            (r["constraint_type"], []))[1].append(r["column_name"])
        for r in plpy.execute(plpy.prepare(_FOREIGN_KEYS, ["text[]", "text[]"]), args):
            fks.setdefault((r["table_schema"], r["table_name"], r["constraint_name"]), []).append(r)
    else:
        kinds = {(r["constraint_schema"], r["constraint_name"]): r["constraint_type"]
                 for r in plpy.execute(plpy.prepare(_CONSTRAINTS, ["text[]", "text[]"]), args)}
        refs = {(r["constraint_schema"], r["constraint_name"]):
                (r["unique_constraint_schema"], r["unique_constraint_name"])
                for r in plpy.execute(_REFERENCES)}
        usage: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in plpy.execute(plpy.prepare(_KEY_COLUMNS, ["text[]", "text[]"]), args):
            usage.setdefault((r["constraint_schema"], r["constraint_name"]), []).append(r)
        for constraint, parts in sorted(usage.items(),
                                        key=lambda kv: (kv[1][0]["table_schema"], kv[1][0]["table_name"], kv[0][1])):
            kind, first = kinds.get(constraint), parts[0]
            if kind in ("PRIMARY KEY", "UNIQUE"):
                keys[(first["table_schema"], first["table_name"], constraint[1])] = (
                    kind, [p["column_name"] for p in parts])
            elif kind == "FOREIGN KEY" and refs.get(constraint) in usage:
                target = usage[refs[constraint]]
                fks[(first["table_schema"], first["table_name"], constraint[1])] = [
                    dict(p, ref_schema=target[0]["table_schema"], ref_table=target[0]["table_name"],
                         ref_column=target[p["position_in_unique_constraint"] - 1]["column_name"]) for p in parts]
    for (schema, name, _), (kind, columns) in keys.items():
        table = tables[(schema, name)]
        if kind == "PRIMARY KEY":
            table.primary_key = tuple(columns)
        else:
            table.unique_keys.append(tuple(columns))
        if len(columns) == 1:
            column = next(c for c in table.columns if c.name == columns[0])
            if kind == "PRIMARY KEY":
                column.primary_key = True
            else:
                column.unique = True
    joins = []
    for (schema, name, _), parts in fks.items():
        left, right = tables.get((schema, name)), tables.get((parts[0]["ref_schema"], parts[0]["ref_table"]))
        if left is not None and right is not None:
            joins.append(catalog.Join(left.oid, tuple(p["column_name"] for p in parts),
                                      right.oid, tuple(p["ref_column"] for p in parts)))
    return catalog.Schema(tables=[t for t in tables.values() if t.columns], joins=joins)

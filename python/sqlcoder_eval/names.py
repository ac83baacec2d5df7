"""Find the relation and column a metadata name means, the way PostgreSQL reads names.

defog-data's metadata names tables as written in the dump: ``sbCustomer``
(created unquoted, so really ``sbcustomer``) or ``consumer_div.users``. A name
is split on dots outside double quotes; an unquoted part folds to lower case, a
quoted one is taken as written. When the folded name finds nothing, the exact
spelling is tried too: a table created as ``"OrderLine"`` can only be meant by
metadata that writes ``OrderLine``. An unqualified table is looked up along the
session's search_path, which the loader sets to every schema of the dump.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

__all__ = ["Column", "Table", "resolve_column", "resolve_qualified_column", "resolve_table", "split_name"]


@dataclass(frozen=True)
class Table:
    oid: int
    schema: str
    name: str


@dataclass(frozen=True)
class Column:
    table: Table
    name: str


def split_name(text: str) -> list[tuple[str, bool]]:
    """``a."B c".d`` -> [("a", False), ("B c", True), ("d", False)]: parts and whether each was quoted."""
    parts: list[tuple[str, bool]] = []
    i, n = 0, len(text)
    while i <= n:
        if i < n and text[i] == '"':
            j, buf = i + 1, []
            while j < n:
                if text[j] == '"':
                    if text[j + 1:j + 2] == '"':
                        buf.append('"')
                        j += 2
                        continue
                    break
                buf.append(text[j])
                j += 1
            parts.append(("".join(buf), True))
            i = j + 1
        else:
            j = text.find(".", i)
            j = n if j == -1 else j
            parts.append((text[i:j].strip(), False))
            i = j
        if i < n and text[i] == ".":
            i += 1
            continue
        break
    return parts


def _spellings(part: str, quoted: bool) -> list[str]:
    """PostgreSQL's reading first (folded unless quoted), then the name exactly as written."""
    return [part] if quoted or part.lower() == part else [part.lower(), part]


_IN_SCHEMA = """
SELECT c.oid, n.nspname, c.relname FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
"""
_ON_PATH = """
SELECT c.oid, n.nspname, c.relname FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = pg_catalog.to_regclass(pg_catalog.quote_ident(%s)) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
"""


def resolve_table(conn: psycopg.Connection, name: str) -> Table | None:
    """The relation ``name`` (``table`` or ``schema.table``) means, or None."""
    parts = split_name(name)
    if len(parts) == 1:
        for spelling in _spellings(*parts[0]):
            row = conn.execute(_ON_PATH, (spelling,)).fetchone()
            if row:
                return Table(*row)
        return None
    if len(parts) != 2:
        return None
    for schema in _spellings(*parts[0]):
        for table in _spellings(*parts[1]):
            row = conn.execute(_IN_SCHEMA, (schema, table)).fetchone()
            if row:
                return Table(*row)
    return None


def resolve_column(conn: psycopg.Connection, table: Table, column: str) -> Column | None:
    """The column of ``table`` that ``column`` (one name, maybe quoted) means, or None."""
    parts = split_name(column)
    if len(parts) != 1:
        return None
    for spelling in _spellings(*parts[0]):
        row = conn.execute("SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = %s AND attname = %s"
                           " AND attnum > 0 AND NOT attisdropped", (table.oid, spelling)).fetchone()
        if row:
            return Column(table, row[0])
    return None


def resolve_qualified_column(conn: psycopg.Connection, name: str) -> tuple[Column | None, str]:
    """``table.column`` or ``schema.table.column`` -> the column, or None and why not."""
    parts = split_name(name)
    if len(parts) not in (2, 3):
        return None, "not a table.column name"
    quote = ['"' + p.replace('"', '""') + '"' if q else p for p, q in parts]
    table = resolve_table(conn, ".".join(quote[:-1]))
    if table is None:
        return None, f"no table {'.'.join(quote[:-1])}"
    column = resolve_column(conn, table, quote[-1])
    if column is None:
        return None, f"no column {quote[-1]} in {table.schema}.{table.name}"
    return column, ""

"""The caller's rendered schema, cached for the life of the backend.

An entry is keyed by database, role, the roles whose privileges that role has
(GRANT role does not fire event triggers) and the caller's effective search
path. It remembers the snapshot it was read under; it is stale as soon as
``sqlcoder.catalog_changes`` holds a transaction that snapshot could not see.
DDL, GRANT/REVOKE, COMMENT and join hint changes add such rows (event
triggers and a table trigger in the extension script), and because the check
goes by snapshot visibility, a change is noticed exactly when it commits.
A schema read inside a transaction that itself changed the catalog is never
cached: that transaction may still roll back.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import _spi, catalog, ddl, value_hints
from ._spi import Plpy
from .pruning import RelevanceIndex

__all__ = ["CachedSchema", "get", "clear", "MAX_ENTRIES"]

MAX_ENTRIES = 8

_PROBE_SQL = """
SELECT (SELECT d.oid FROM pg_catalog.pg_database d
        WHERE d.datname = pg_catalog.current_database())::pg_catalog.int8 AS db,
       (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = current_user)::pg_catalog.int8 AS role,
       (SELECT pg_catalog.array_agg(r.oid ORDER BY r.oid) FROM pg_catalog.pg_roles r
        WHERE pg_catalog.pg_has_role(r.oid, 'USAGE'))::text AS roles,
       pg_catalog.pg_current_snapshot()::text AS snapshot,
       EXISTS (SELECT 1 FROM sqlcoder.catalog_changes c
               WHERE c.xid = pg_catalog.pg_current_xact_id_if_assigned()) AS own_change
"""

_CHANGED_SQL = """
SELECT EXISTS (SELECT 1 FROM sqlcoder.catalog_changes c
               WHERE c.xid >= pg_catalog.pg_snapshot_xmin($1::pg_catalog.pg_snapshot)
                 AND NOT pg_catalog.pg_visible_in_snapshot(c.xid, $1::pg_catalog.pg_snapshot)) AS changed
"""


@dataclass
class CachedSchema:
    """A schema with what is derived from it lazily: DDL text per table, joins, relevance index, token counts."""

    schema: catalog.Schema
    snapshot: str = ""
    _blocks: list[str] | None = None
    _joins: list[tuple[int, int, str]] | None = None
    _text: str | None = None
    _index: RelevanceIndex | None = None
    token_counts: dict[str, tuple[list[int], list[int]]] = field(default_factory=dict)
    stats_tables: list[int] = field(default_factory=list)  # tables whose ANALYZE changes the value hints
    stats_version: int = 0
    derived: dict[str, Any] = field(default_factory=dict)  # what other modules keep per entry (examples)

    @property
    def blocks(self) -> list[str]:
        """``CREATE TABLE`` text per table, in schema order."""
        if self._blocks is None:
            self._blocks = [ddl.render_table(t) for t in self.schema.tables]
        return self._blocks

    @property
    def joins(self) -> list[tuple[int, int, str]]:
        """(left position, right position, rendered line) per join."""
        if self._joins is None:
            tables = self.schema.by_oid()
            position = {t.oid: i for i, t in enumerate(self.schema.tables)}
            self._joins = [(position[j.left], position[j.right], ddl.render_join(j, tables))
                           for j in self.schema.joins]
        return self._joins

    @property
    def text(self) -> str:
        """The whole schema."""
        if self._text is None:
            self._text = self.render(range(len(self.schema.tables)))
        return self._text

    @property
    def index(self) -> RelevanceIndex:
        if self._index is None:
            self._index = RelevanceIndex.build(self.schema)
        return self._index

    def render(self, positions: Sequence[int] | range) -> str:
        """The tables at ``positions`` (schema order) and the joins among them."""
        keep = set(positions)
        return ddl.layout((self.blocks[i] for i in sorted(keep)),
                          (line for left, right, line in self.joins if left in keep and right in keep))

    def counts(self, model: str, count: Callable[[list[str]], list[int]]) -> tuple[list[int], list[int]]:
        """Token counts of every table block and join line, counted once per model."""
        if model not in self.token_counts:
            counted = count(self.blocks + [line for _, _, line in self.joins])
            n = len(self.blocks)
            self.token_counts[model] = (counted[:n], counted[n:])
        return self.token_counts[model]


_entries: OrderedDict[tuple[Any, ...], CachedSchema] = OrderedDict()


def _read(plpy: Plpy, caller_path: Sequence[str], hints: value_hints.HintSettings | None, max_chars: int,
          snapshot: str = "", schema: catalog.Schema | None = None) -> CachedSchema:
    """A new entry: the schema read from the catalog (or given), with value hints when asked for."""
    entry = CachedSchema(schema or catalog.read_schema(plpy, caller_path, max_chars), snapshot=snapshot)
    if hints is not None:
        entry.stats_tables, entry.stats_version = value_hints.attach(plpy, entry.schema, hints)
    return entry


def get(plpy: Plpy, caller_path: Sequence[str], hints: value_hints.HintSettings | None,
        max_chars: int) -> CachedSchema:
    """The caller's schema: from the cache when still current, else read and (usually) cached.

    ``hints``: show value hints with these settings (None: none). A newer
    ANALYZE of one of its tables renews the hints, not the schema.
    ``max_chars``: other roles' comments and expressions are cut to this.
    """
    probe = plpy.execute(_spi.plan(plpy, _PROBE_SQL))[0]
    if probe["own_change"]:
        return _read(plpy, caller_path, hints, max_chars)
    key = (probe["db"], probe["role"], probe["roles"], tuple(caller_path), hints, max_chars)
    entry = _entries.get(key)
    if entry is not None:
        changed = plpy.execute(_spi.plan(plpy, _CHANGED_SQL, ["text"]), [entry.snapshot])[0]["changed"]
        if not changed:
            if entry.stats_tables and value_hints.analyze_version(plpy, entry.stats_tables) != entry.stats_version:
                for table in entry.schema.tables:
                    for column in table.columns:
                        column.values = None
                entry = _entries[key] = _read(plpy, caller_path, hints, max_chars, entry.snapshot, entry.schema)
            _entries.move_to_end(key)
            return entry
        del _entries[key]
    entry = _read(plpy, caller_path, hints, max_chars, probe["snapshot"])
    _entries[key] = entry
    while len(_entries) > MAX_ENTRIES:
        _entries.popitem(last=False)
    return entry


def clear() -> None:
    """Forget every cached schema (tests, benchmarks)."""
    _entries.clear()

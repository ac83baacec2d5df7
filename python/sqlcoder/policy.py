"""Which functions a guarded query may call, decided on the OIDs PostgreSQL's analyzer resolved.

The facts come from ``sqlcoder_internal._query_objects`` (every function the query,
the views and policies it reads and the SQL functions it calls can run);
this module looks each one up in ``pg_proc`` and applies, in this order:

1. a function in the ``sqlcoder`` or ``sqlcoder_internal`` schema or of the sqlcoder extension:
   refused, always (recursion: a query that asks the model again);
2. the DBA's ``denied_functions``: refused;
3. the DBA's ``allowed_functions``: allowed;
4. the shipped deny list (:data:`DENIED`): refused whatever its volatility;
5. the shipped allow list (:data:`ALLOWED`): allowed although volatile;
6. volatile: refused;
7. opaque (a procedural-language body whose owner is not a superuser):
   refused, because its volatility is a label, not a guarantee;
8. everything else (immutable and stable): allowed.

Shipped lists name functions of ``pg_catalog`` (only a superuser can create
there, so a pg_catalog name is as exact as its OID, across versions) and
whole extensions (by ``pg_depend`` membership, wherever they are installed).

The same rules run in C (src/function_policy.c) for every function
PostgreSQL is about to call while the guard analyzes, plans and runs the
query: :func:`hand_to_hooks` gives it these lists as OIDs, once per call.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import SCHEMAS, _spi
from ._spi import Plpy
from .errors import ConfigError, FunctionRefused

__all__ = ["DENIED", "DENIED_PREFIXES", "DENIED_EXTENSIONS", "ALLOWED", "FunctionLists", "load_lists",
           "check_functions", "verdict", "hand_to_hooks"]

# Reason shown in the refusal -> pg_catalog function names (every signature).
DENIED: dict[str, frozenset[str]] = {
    # They run SQL text (or whole tables, schemas, databases) through SPI,
    # out of the guard's sight: the functions of views they read go unchecked.
    "it runs SQL the guard cannot see": frozenset({
        "query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema", "cursor_to_xml",
        "cursor_to_xmlschema", "table_to_xml", "table_to_xmlschema", "table_to_xml_and_xmlschema",
        "schema_to_xml", "schema_to_xmlschema", "schema_to_xml_and_xmlschema", "database_to_xml",
        "database_to_xmlschema", "database_to_xml_and_xmlschema", "ts_stat"}),
    "it reads files on the server": frozenset({
        "pg_read_file", "pg_read_binary_file", "pg_stat_file", "pg_current_logfile", "pg_hba_file_rules",
        "pg_ident_file_mappings", "pg_show_all_file_settings"}),
    "it signals another process": frozenset({
        "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile", "pg_promote",
        "pg_log_backend_memory_contexts"}),
    "it writes WAL or server state a rollback does not undo": frozenset({
        "pg_logical_emit_message", "pg_switch_wal", "pg_create_restore_point", "pg_backup_start",
        "pg_backup_stop", "pg_drop_replication_slot", "pg_replication_slot_advance",
        "pg_logical_slot_get_changes", "pg_logical_slot_get_binary_changes", "pg_logical_slot_peek_changes",
        "pg_logical_slot_peek_binary_changes", "brin_summarize_new_values", "brin_summarize_range",
        "brin_desummarize_range", "gin_clean_pending_list", "pg_import_system_collations",
        "pg_wal_replay_pause", "pg_wal_replay_resume", "pg_stat_clear_snapshot"}),
    # Visible to other roles while the query runs (pg_stat_activity, pg_locks):
    # a channel for the caller's data. Session settings and locks outlive it.
    "it changes settings or session state other sessions can see": frozenset({
        "set_config", "setseed", "pg_notify", "pg_export_snapshot"}),
    "it takes an advisory lock": frozenset({
        "pg_advisory_lock", "pg_advisory_lock_shared", "pg_advisory_xact_lock", "pg_advisory_xact_lock_shared",
        "pg_try_advisory_lock", "pg_try_advisory_lock_shared", "pg_try_advisory_xact_lock",
        "pg_try_advisory_xact_lock_shared", "pg_advisory_unlock", "pg_advisory_unlock_shared",
        "pg_advisory_unlock_all"}),
    # An XID is consumed for good (wraparound pressure) and shows in pg_stat_activity.
    "it assigns a transaction id": frozenset({"txid_current", "pg_current_xact_id"}),
    "it uses a sequence": frozenset({"nextval", "setval", "currval", "lastval"}),
    "it holds the connection idle (pg_sleep)": frozenset({"pg_sleep", "pg_sleep_for", "pg_sleep_until"}),
    # libxml2's XPath engine never checks for interrupts, and a crafted document
    # and path cost time superlinear in their size: no cancel, no terminate, no
    # time limit acts until it returns. XMLTABLE is reported as xpath.
    "it evaluates XPath in libxml2, which no cancel or time limit interrupts (XMLTABLE too)": frozenset({
        "xpath", "xpath_exists", "xmlexists"}),
}

# Reason -> pg_catalog name prefixes (families too long to list one by one).
DENIED_PREFIXES: dict[str, tuple[str, ...]] = {
    "it uses large objects (server files, data outside the query)": ("lo_", "loread", "lowrite"),
    "it lists directories on the server": ("pg_ls_",),
    "it writes WAL or server state a rollback does not undo": (
        "pg_create_", "pg_copy_", "pg_replication_origin_", "pg_stat_reset"),
}

# Every function of these extensions, in whatever schema they are installed.
DENIED_EXTENSIONS: dict[str, str] = {
    "dblink": "it connects to another server or database",
    "postgres_fdw": "it connects to another server or database",
    "file_fdw": "it reads files or runs programs on the server",
    "adminpack": "it writes files on the server",
    "pg_prewarm": "it loads relations into shared memory",
}

# Volatile pg_catalog functions that change nothing outside the query.
ALLOWED: frozenset[str] = frozenset({
    "random",              # a number from the session's generator; the seed is not settable here (setseed is denied)
    "clock_timestamp",     # reads the clock
    "timeofday",           # reads the clock, as text
    "gen_random_uuid",     # random bytes from the OS
    "bernoulli", "system",  # TABLESAMPLE methods' handlers: they pick which rows or pages a scan reads
    "pg_lock_status",      # the pg_locks view: reads shared lock tables
    "pg_prepared_xact",    # the pg_prepared_xacts view: reads the two-phase state
    "pg_sequence_last_value",  # the pg_sequences view: reads a sequence (SELECT/USAGE checked), moves nothing
    "pg_stat_get_xact_numscans", "pg_stat_get_xact_tuples_returned", "pg_stat_get_xact_tuples_fetched",
    "pg_stat_get_xact_tuples_inserted", "pg_stat_get_xact_tuples_updated", "pg_stat_get_xact_tuples_deleted",
    "pg_stat_get_xact_tuples_hot_updated", "pg_stat_get_xact_function_calls",
    "pg_stat_get_xact_function_total_time", "pg_stat_get_xact_function_self_time",
    # the pg_stat_xact_* views: this transaction's own counters
})

_SHIPPED_SQL = ("SELECT p.oid::pg_catalog.int8 AS oid, p.proname::pg_catalog.text AS name "
                "FROM pg_catalog.pg_proc p WHERE p.pronamespace = 'pg_catalog'::pg_catalog.regnamespace "
                "AND (p.proname OPERATOR(pg_catalog.=) ANY ($1) OR p.proname OPERATOR(pg_catalog.~~) ANY ($2))")
_HAND_SQL = "SELECT sqlcoder_internal._guard_policy($1, $2, $3, $4, $5, $6, $7)"
_HAND_TYPES = ["oid[]", "oid[]", "oid[]", "text[]", "oid[]", "text[]", "text[]"]

# The shipped pg_catalog lists as OIDs, once per backend (pg_catalog changes only with PostgreSQL itself).
_shipped: tuple[list[int], list[str], list[int]] | None = None

_FACTS_SQL = ("SELECT oid::pg_catalog.int8 AS oid, qualified, arguments AS args, schema, name, volatility, language, "
              "owner_superuser, extension FROM sqlcoder_internal._function_facts($1)")


@dataclass(frozen=True)
class FunctionLists:
    """The DBA's lists, resolved to OIDs (with the pinned search_path, never the caller's)."""

    allowed: frozenset[int] = frozenset()
    denied: frozenset[int] = frozenset()


def load_lists(plpy: Plpy, allowed: Iterable[str], denied: Iterable[str]) -> FunctionLists:
    """Resolve signatures to OIDs; call it with sqlcoder's pinned search_path (pg_catalog, pg_temp).

    A signature naming no function (dropped since) is skipped; one that does
    not parse is a :class:`ConfigError`.
    """
    resolved = []
    for key, signatures in (("allowed_functions", tuple(allowed)), ("denied_functions", tuple(denied))):
        oids: set[int] = set()
        for signature in signatures:
            try:
                row = plpy.execute(_spi.plan(plpy, "SELECT pg_catalog.to_regprocedure($1)::pg_catalog.int8 AS oid",
                                             ["text"]), [signature])
            except plpy.SPIError as exc:
                raise ConfigError(f"invalid sqlcoder.config value for {key}: {signature!r} "
                                  f"({_spi.fields(exc).message})") from None
            if row[0]["oid"] is not None:
                oids.add(int(row[0]["oid"]))
        resolved.append(frozenset(oids))
    return FunctionLists(allowed=resolved[0], denied=resolved[1])


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "%"


def _shipped_oids(plpy: Plpy) -> tuple[list[int], list[str], list[int]]:
    """(refused OIDs, their reasons, harmless OIDs) of the shipped pg_catalog lists."""
    global _shipped
    if _shipped is None:
        names = sorted(set().union(*DENIED.values()) | ALLOWED)
        prefixes = [_like_prefix(p) for group in DENIED_PREFIXES.values() for p in group]
        refused: list[int] = []
        reasons: list[str] = []
        harmless: list[int] = []
        for row in plpy.execute(_spi.plan(plpy, _SHIPPED_SQL, ["text[]", "text[]"]), [names, prefixes]):
            reason = _shipped_denial("pg_catalog", row["name"], None)
            if reason is not None:
                refused.append(int(row["oid"]))
                reasons.append(reason)
            elif row["name"] in ALLOWED:
                harmless.append(int(row["oid"]))
        _shipped = (refused, reasons, harmless)
    return _shipped


def hand_to_hooks(plpy: Plpy, lists: FunctionLists) -> None:
    """Give the C hooks the policy's lists for the rest of the current subtransaction (the guard's)."""
    refused, reasons, harmless = _shipped_oids(plpy)
    plpy.execute(_spi.plan(plpy, _HAND_SQL, _HAND_TYPES),
                 [sorted(lists.allowed), sorted(lists.denied), refused, reasons, harmless,
                  list(DENIED_EXTENSIONS), list(DENIED_EXTENSIONS.values())])


def _shipped_denial(schema: str, name: str, extension: str | None) -> str | None:
    if extension in DENIED_EXTENSIONS:
        return DENIED_EXTENSIONS[extension]
    if schema != "pg_catalog":
        return None
    for reason, names in DENIED.items():
        if name in names:
            return reason
    for reason, prefixes in DENIED_PREFIXES.items():
        if name.startswith(prefixes):
            return reason
    return None


def verdict(facts: dict[str, Any], opaque: bool, lists: FunctionLists) -> str | None:
    """Why the function is refused, or None when it is allowed (the order in the module docstring)."""
    oid, schema, name = int(facts["oid"]), facts["schema"], facts["name"]
    if schema in SCHEMAS or facts["extension"] == "sqlcoder":
        return "sqlcoder does not call itself from generated SQL"
    if oid in lists.denied:
        return "a superuser denied it (denied_functions)"
    if oid in lists.allowed:
        return None
    shipped = _shipped_denial(schema, name, facts["extension"])
    if shipped:
        return shipped
    if schema == "pg_catalog" and name in ALLOWED:
        return None
    if facts["volatility"] == "v":
        return "it is volatile: it may change something outside the query"
    if opaque and not facts["owner_superuser"]:
        return (f"its body is {facts['language']} code owned by a role that is not a superuser: "
                "its volatility is a label, not a guarantee")
    return None


def check_functions(plpy: Plpy, functions: frozenset[int], opaque: frozenset[int], lists: FunctionLists,
                    detail: str | None = None) -> None:
    """Raise :class:`FunctionRefused` for the first refused function (lowest OID first: a stable order)."""
    if not functions:
        return
    rows = plpy.execute(_spi.plan(plpy, _FACTS_SQL, ["oid[]"]), [sorted(functions)])
    for facts in sorted(rows, key=lambda r: int(r["oid"])):
        reason = verdict(facts, int(facts["oid"]) in opaque, lists)
        if reason is None:
            continue
        signature = f'{facts["qualified"]}({facts["args"]})'
        if facts["schema"] in SCHEMAS or facts["extension"] == "sqlcoder":
            hint = "Calls into sqlcoder's own schemas are always refused; run sqlcoder functions yourself."
        else:
            literal = signature.replace("'", "''")
            hint = (f"A superuser can allow it: SELECT sqlcoder.allow_function('{literal}'); "
                    "see docs/security.md for what that permits.")
        raise FunctionRefused(f"sqlcoder refused the query: it calls {signature}, and {reason}",
                              detail=detail, hint=hint)

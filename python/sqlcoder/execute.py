"""Run one guarded query read-only, as the caller, and undo everything it did.

The query runs through ``sqlcoder_internal._run_readonly(query, search_path, max_rows,
max_bytes, as_json)`` (C, src/result_rows.c), declared ``SET transaction_read_only =
on``: PostgreSQL itself refuses every write in the very SPI call that runs the
query (a ``SET LOCAL`` in its own ``plpy.execute`` would be undone when
PL/Python's internal subtransaction ends). Its rows never enter Python: each
row the executor produces is counted in bytes (for run and execute: the exact
length of its row_to_json text, checked before that text is built) and kept in a tuplestore
(work_mem, then a temporary file) that survives the rollback below, and the
executor is stopped as soon as ``max_rows`` or ``max_result_bytes`` is passed.
The SQL wrapper then returns them with ``sqlcoder_internal._result_rows(token)``. Guard and
query run inside an explicit subtransaction that is always rolled back, so temp
tables, transaction-level locks, NOTIFYs and the search_path we set vanish, and the caller's transaction stays as it was
(writable, or its own ``BEGIN READ ONLY``). Session-level advisory locks
survive any rollback, so those the query took are released by hand.

All of it runs under a :class:`~sqlcoder.watchdog.Watchdog`: the wall-clock
limit covers planning, execution and building the result, and the watchdog
escalates (repeated cancels, then terminating the backend) against code that
catches the cancel. First thing inside the rolled-back subtransaction,
``sqlcoder_internal._limit_call`` (C, src/call_limits.c) bounds the backend's address
space (``max_memory_bytes``) and temporary files (``max_temp_bytes``) until
that subtransaction ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from . import _spi, guard, policy
from ._spi import Plpy
from .errors import ResultTooLarge, SuperuserRefused, TimeLimitExceeded, query_failed
from .watchdog import Watchdog, absorb_pending_cancel

__all__ = ["QueryResult", "search_path_of", "in_caller_context", "run_query", "guard_only", "refuse_superuser"]

T = TypeVar("T")

_ADVISORY_SQL = """
SELECT classid::bigint AS classid, objid::bigint AS objid, objsubid::int AS objsubid, mode
FROM pg_catalog.pg_locks
WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid() AND granted
  AND database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
"""


_RUN_SQL = ("SELECT token, row_count, bytes, truncated, exceeded "
            "FROM sqlcoder_internal._run_readonly($1, $2, $3, $4, $5)")


@dataclass(frozen=True)
class QueryResult:
    """Where the rows wait (``sqlcoder_internal._result_rows(token)``), how many, and what it cost."""

    sql: str
    token: int
    row_count: int
    bytes: int
    truncated: bool
    query_ms: float
    cost: float


def search_path_of(caller_path: Sequence[str] | None) -> str:
    """A search_path value equal to the caller's effective path (``current_schemas(true)``)."""
    parts = []
    for name in caller_path or []:
        if name.startswith("pg_temp_"):
            name = "pg_temp"  # the caller's own temporary schema
        parts.append('"' + name.replace('"', '""') + '"')
    return ", ".join(parts)


def in_caller_context(plpy: Plpy, caller_path: Sequence[str] | None, timeout_s: float, work: Callable[[], T], *,
                      max_memory_bytes: int | None = None, max_temp_bytes: int | None = None) -> T:
    """Run ``work`` with the caller's search_path, in a rolled-back subtransaction, under the watchdog.

    A cancel the watchdog sent becomes :class:`TimeLimitExceeded`; any other
    cancel (``pg_cancel_backend``, the caller's ``statement_timeout``) is
    re-raised untouched. The memory and temporary-file limits (None: none of
    sqlcoder's) hold until the subtransaction's rollback.
    """
    set_path = _spi.plan(plpy, "SELECT pg_catalog.set_config('search_path', $1, true)", ["text"])
    limit = _spi.plan(plpy, "SELECT sqlcoder_internal._limit_call($1, $2)", ["bigint", "bigint"])

    def in_path() -> T:
        if max_memory_bytes is not None or max_temp_bytes is not None:
            plpy.execute(limit, [max_memory_bytes, max_temp_bytes])
        plpy.execute(set_path, [search_path_of(caller_path)])
        return work()

    dog = Watchdog(timeout_s).start()
    try:
        outcome = _spi.rolled_back(plpy, in_path)
    except plpy.SPIError as exc:
        fired = dog.stop()
        if fired:
            absorb_pending_cancel(plpy)
            if _spi.is_canceled(exc):
                raise TimeLimitExceeded(f"sqlcoder: the query exceeded its time limit of {timeout_s:g} s "
                                        "(query_timeout_ms)") from None
        raise
    except BaseException:
        if dog.stop():
            absorb_pending_cancel(plpy)
        raise
    if dog.stop():
        absorb_pending_cancel(plpy)
    return outcome


def _advisory_locks(plpy: Plpy) -> set[tuple[int, int, int, str]]:
    return {(r["classid"], r["objid"], r["objsubid"], r["mode"]) for r in plpy.execute(_ADVISORY_SQL)}


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >= 1 << (bits - 1) else value


def _release_advisory(plpy: Plpy, locks: set[tuple[int, int, int, str]]) -> None:
    """Release session-level advisory locks the query took (each may be held many times over)."""
    for classid, objid, objsubid, mode in locks:
        function = "pg_advisory_unlock_shared" if mode == "ShareLock" else "pg_advisory_unlock"
        if objsubid == 1:
            args, types = [_signed((classid << 32) | objid, 64)], ["bigint"]
        else:
            args, types = [_signed(classid, 32), _signed(objid, 32)], ["integer", "integer"]
        placeholders = ", ".join(f"${i + 1}" for i in range(len(args)))
        # Unlock in batches until released; the one failing unlock per batch would
        # warn, so warnings are silenced for this subtransaction only.
        plan = _spi.plan(plpy, f"SELECT pg_catalog.bool_and(pg_catalog.{function}({placeholders})) AS all_held "
                         "FROM pg_catalog.generate_series(1, 1000)", types)

        def unlock(plan: Any = plan, args: list[int] = args) -> None:
            plpy.execute("SELECT pg_catalog.set_config('client_min_messages', 'error', true)")
            while plpy.execute(plan, args)[0]["all_held"]:
                pass

        _spi.rolled_back(plpy, unlock)


def run_query(plpy: Plpy, sql: Any, *, caller_path: Sequence[str] | None, max_rows: int,
              max_cost: float | None, timeout_s: float, max_bytes: int,
              functions: policy.FunctionLists = policy.FunctionLists(), typed: bool = False,
              max_memory_bytes: int | None = None, max_temp_bytes: int | None = None) -> QueryResult:
    """Guard ``sql``, run it read-only with at most ``max_rows`` rows and ``max_bytes`` bytes, undo its effects."""
    locks_before = _advisory_locks(plpy)
    helper = _spi.plan(plpy, _RUN_SQL, ["text", "text", "bigint", "bigint", "boolean"])
    started = time.monotonic()

    def work() -> tuple[guard.CheckedQuery, dict[str, Any]]:
        checked = guard.check(plpy, sql, max_rows=max_rows, max_cost=max_cost,
                              search_path=search_path_of(caller_path), functions=functions, typed=typed)
        try:
            kept = plpy.execute(helper, [checked.runnable, search_path_of(caller_path), max_rows, max_bytes,
                                         not typed])[0]
        except plpy.SPIError as exc:
            if _spi.is_interrupt(exc):
                raise
            refused = guard.hook_refusal(exc, checked.sql)
            if refused is not None:
                raise refused from None
            spi = _spi.fields(exc)
            raise query_failed(spi.message, sqlstate=spi.sqlstate, detail=guard.detail_for(checked.sql, spi.detail),
                               hint=spi.hint) from None
        if kept["exceeded"]:
            raise ResultTooLarge(f"sqlcoder: the result is larger than max_result_bytes ({max_bytes} bytes); "
                                 f"it was stopped after {kept['row_count']} rows",
                                 detail=guard.detail_for(checked.sql))
        return checked, kept

    try:
        checked, kept = in_caller_context(plpy, caller_path, timeout_s, work, max_memory_bytes=max_memory_bytes,
                                          max_temp_bytes=max_temp_bytes)
    finally:
        leaked = _advisory_locks(plpy) - locks_before
        if leaked:
            _release_advisory(plpy, leaked)
    elapsed = (time.monotonic() - started) * 1000
    return QueryResult(sql=checked.sql, token=kept["token"], row_count=kept["row_count"], bytes=kept["bytes"],
                       truncated=kept["truncated"], query_ms=elapsed, cost=checked.cost)


def guard_only(plpy: Plpy, sql: str, *, caller_path: Sequence[str] | None, max_cost: float | None,
               timeout_s: float, functions: policy.FunctionLists = policy.FunctionLists(),
               max_memory_bytes: int | None = None) -> guard.CheckedQuery:
    """The guard's verdict on ``sql`` as the caller would run it; nothing is executed."""
    return in_caller_context(plpy, caller_path, timeout_s,
                             lambda: guard.check(plpy, sql, max_rows=1, max_cost=max_cost,
                                                 search_path=search_path_of(caller_path), functions=functions),
                             max_memory_bytes=max_memory_bytes)


def refuse_superuser(plpy: Plpy, allowed: bool) -> None:
    """Superusers pass every privilege check, so generated SQL runs only for ordinary roles unless allowed."""
    if allowed:
        return
    row = plpy.execute(_spi.plan(plpy, "SELECT r.rolsuper AS super FROM pg_catalog.pg_roles r "
                                       "WHERE r.rolname = current_user"))
    if row and row[0]["super"]:
        raise SuperuserRefused("sqlcoder does not run SQL as a superuser")

"""SPI plumbing shared by the package: the ``plpy`` type, prepared plans, SPI errors, rolled-back work.

PL/Python hands every function the module ``plpy``; :class:`Plpy` is the
part of it this package uses, so each module is typed against one protocol
(tests may pass a stand-in). Plans are prepared once per backend and kept
here, keyed by their text and argument types, rather than in one cache per
module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

__all__ = ["Plpy", "Rows", "plan", "SpiFields", "fields", "CANCELED", "is_canceled", "is_interrupt", "rolled_back"]

T = TypeVar("T")

#: What ``plpy.execute`` returns: a sequence of rows, each a column -> value mapping.
Rows = Sequence[Mapping[str, Any]]


class Plpy(Protocol):
    """The part of PL/Python's ``plpy`` module sqlcoder calls."""

    SPIError: type[Exception]

    def execute(self, query: Any, args: Sequence[Any] = ..., limit: int = ...) -> Any: ...

    def prepare(self, query: str, argtypes: Sequence[str] = ...) -> Any: ...

    def subtransaction(self) -> AbstractContextManager[Any]: ...

    def notice(self, message: str, **fields: Any) -> None: ...

    def log(self, message: str) -> None: ...


_plans: dict[tuple[str, tuple[str, ...]], Any] = {}  # prepared once per backend


def plan(plpy: Plpy, sql: str, types: Sequence[str] = ()) -> Any:
    """``sql`` prepared with argument ``types``, once per backend (plans survive transactions)."""
    key = (sql, tuple(types))
    prepared = _plans.get(key)
    if prepared is None:
        prepared = _plans[key] = plpy.prepare(sql, list(types))
    return prepared


# SQLSTATE 57014 query_canceled: a cancel, statement_timeout, or our watchdog.
CANCELED = "57014"
# A cancel or timeout, a shutdown, a serialization failure or deadlock, a lock
# not available: what lands on a statement from outside, never a verdict on it.
_INTERRUPTS = frozenset({CANCELED, "57P01", "57P02", "57P03", "40001", "40P01", "55P03"})


@dataclass(frozen=True)
class SpiFields:
    """What PostgreSQL said in an error raised inside an SPI call."""

    sqlstate: str | None
    message: str
    detail: str | None
    hint: str | None
    constraint: str | None = None  # the error's constraint name: sqlcoder's C code names its refusals so


# PL/Python's SPIError.spidata: (sqlerrcode, detail, hint, query, position, schema_name, table_name,
# column_name, datatype_name, constraint_name).
_SPIDATA_CONSTRAINT = 9


def fields(exc: BaseException) -> SpiFields:
    """SQLSTATE, primary message, DETAIL, HINT and constraint name of a ``plpy.SPIError`` (any exception
    reads as one)."""
    # SPIError's args[0] is the server's primary message (str() is the same text).
    message = str(exc.args[0]) if exc.args else str(exc)
    spidata = getattr(exc, "spidata", None)
    if not (isinstance(spidata, tuple) and len(spidata) > _SPIDATA_CONSTRAINT):
        spidata = (None,) * (_SPIDATA_CONSTRAINT + 1)
    return SpiFields(getattr(exc, "sqlstate", None), message, getattr(exc, "detail", None) or spidata[1],
                     getattr(exc, "hint", None) or spidata[2], spidata[_SPIDATA_CONSTRAINT])


def is_canceled(exc: BaseException) -> bool:
    return getattr(exc, "sqlstate", None) == CANCELED


def is_interrupt(exc: BaseException) -> bool:
    """A cancel, timeout or shutdown that lands during a statement: not the statement's fault."""
    return getattr(exc, "sqlstate", None) in _INTERRUPTS


class _Rollback(Exception):
    """Raised to leave ``plpy.subtransaction()`` through its rollback path."""


def rolled_back(plpy: Plpy, work: Callable[[], T]) -> T:
    """``work()``'s result, run in a subtransaction that is always rolled back (its effects vanish)."""
    outcome: list[T] = []
    try:
        with plpy.subtransaction():
            outcome.append(work())
            raise _Rollback
    except _Rollback:
        pass
    return outcome[0]

"""Settings from the view ``sqlcoder.config``: each key's parser and type here, its default in SQL.

A setting is declared once: its default and description are the extension
scripts' row in ``sqlcoder.config_default`` (the view merges a DBA's value
over it, and a DELETE resets to it), so Python holds no second copy of a
default. Here each key has its parser and a typed field in :class:`Settings`.
Read at every call (a scan of a few rows), so a DBA's UPDATE applies to the
next call of every session without a reconnect.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from . import _spi
from ._spi import Plpy
from .errors import ConfigError
from .prompt import TEMPLATE_SETTINGS

__all__ = ["Settings", "SETTINGS", "parse_settings", "load", "split_signatures"]


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _optional_positive_int(raw: str) -> int | None:
    return None if raw.strip() == "" else _positive_int(raw)


def _optional_positive_float(raw: str) -> float | None:
    if raw.strip() == "":
        return None
    value = float(raw)
    if not value > 0 or value == float("inf"):
        raise ValueError("must be a positive number")
    return value


def _on_off(raw: str) -> bool:
    value = raw.strip().lower()
    if value not in ("on", "off", "true", "false"):
        raise ValueError("must be on or off")
    return value in ("on", "true")


def _int_up_to(most: int) -> Callable[[str], int]:
    """A positive integer at most ``most`` (the C side refuses anything beyond, rather than overflow)."""
    def parse(raw: str) -> int:
        value = _positive_int(raw)
        if value > most:
            raise ValueError(f"must be at most {most}")
        return value
    return parse


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be zero or a positive integer")
    return value


def _socket_path(raw: str) -> str:
    if not raw.startswith("/"):
        raise ValueError("must be an absolute path")
    return raw


def _template(raw: str) -> str:
    if raw.strip() not in TEMPLATE_SETTINGS:
        raise ValueError("must be one of " + ", ".join(TEMPLATE_SETTINGS))
    return raw.strip()


def split_signatures(raw: str) -> tuple[str, ...]:
    """``a(integer); b(text)`` -> its function signatures; a ``;`` inside double quotes belongs to a name."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in raw:
        if char == '"':
            quoted = not quoted
        if char == ";" and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return tuple(p.strip() for p in parts if p.strip())


def _interval(raw: str) -> str:
    # A PostgreSQL interval of days, hours, minutes or seconds ("90 days"); the purge casts it in SQL.
    parts = raw.split()
    units = ("day", "days", "hour", "hours", "minute", "minutes", "second", "seconds")
    if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) <= 0 or parts[1].lower() not in units:
        raise ValueError("must be a positive interval such as '90 days'")
    return raw


def _key(parse: Callable[[str], Any]) -> Any:
    """A setting's field: its parser from the raw ``sqlcoder.config`` text to the field's type."""
    return field(metadata={"parse": parse})


@dataclass(frozen=True)
class Settings:
    """One field per ``sqlcoder.config`` key, typed; defaults are the rows of ``sqlcoder.config_default``."""

    socket_path: str = _key(_socket_path)
    connect_timeout_ms: int = _key(_positive_int)
    model_timeout_ms: int = _key(_positive_int)
    max_question_chars: int = _key(_positive_int)
    max_reply_bytes: int = _key(_positive_int)
    max_new_tokens: int | None = _key(_optional_positive_int)
    num_beams: int | None = _key(_optional_positive_int)
    template: str = _key(_template)
    context_budget_tokens: int | None = _key(_optional_positive_int)
    # Running generated SQL.
    max_rows: int = _key(_positive_int)
    query_timeout_ms: int = _key(_positive_int)
    max_query_cost: float | None = _key(_optional_positive_float)
    allow_superuser_run: bool = _key(_on_off)
    guard_ask: bool = _key(_on_off)
    # The guard's function policy: ';'-separated function signatures.
    allowed_functions: tuple[str, ...] = _key(split_signatures)
    denied_functions: tuple[str, ...] = _key(split_signatures)
    # History, retention and bounded text.
    history_timeout_ms: int = _key(_int_up_to(60_000))
    history_write_timeout_ms: int = _key(_int_up_to(600_000))
    history_retention: str = _key(_interval)
    history_max_rows: int = _key(_positive_int)
    history_max_bytes_per_role: int = _key(_positive_int)
    lock_timeout_ms: int = _key(_int_up_to(3_600_000))
    max_comment_chars: int = _key(_positive_int)
    max_instructions_chars: int = _key(_positive_int)
    # Results bounded in bytes.
    max_result_bytes: int = _key(_positive_int)
    # What one guarded call may take from its backend (sqlcoder_internal._limit_call).
    max_memory_bytes: int = _key(_positive_int)
    max_temp_bytes: int = _key(_positive_int)
    # Golden examples, self-correction, value hints.
    max_examples: int = _key(_non_negative_int)
    self_correct: bool = _key(_on_off)
    max_corrections: int = _key(_non_negative_int)
    value_hints: bool = _key(_on_off)
    value_hints_max_values: int = _key(_positive_int)
    value_hints_max_distinct: int = _key(_positive_int)
    # Schema-constrained decoding: the model may write only SQL over the schema its prompt shows (grammar.py).
    constrained_decoding: bool = _key(_on_off)

    # Durations in seconds, for the socket, the watchdog and the model budget.
    @property
    def connect_timeout_s(self) -> float:
        return self.connect_timeout_ms / 1000

    @property
    def model_timeout_s(self) -> float:
        return self.model_timeout_ms / 1000

    @property
    def query_timeout_s(self) -> float:
        return self.query_timeout_ms / 1000


#: key -> parser, from :class:`Settings`' fields: every key sqlcoder.config must have.
SETTINGS: dict[str, Callable[[str], Any]] = {f.name: f.metadata["parse"] for f in fields(Settings)}


def parse_settings(rows: Mapping[str, str]) -> Settings:
    """Typed settings from raw ``key -> value`` rows (every key in SETTINGS); unknown keys are ignored."""
    values = {}
    for key, parse in SETTINGS.items():
        raw = rows.get(key)
        if raw is None:  # the view has a row for every key the scripts declare
            raise ConfigError(f"sqlcoder.config has no value for {key}",
                              hint="Every key has a row in sqlcoder.config_default, which the extension's "
                                   "scripts fill; one was deleted by hand. docs/operations.md gives its default: "
                                   "a superuser can INSERT it back, or reinstall the extension.")
        try:
            values[key] = parse(raw)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"invalid sqlcoder.config value for {key}: {raw!r} ({exc})") from None
    return Settings(**values)


def load(plpy: Plpy) -> Settings:
    """Read ``sqlcoder.config`` with the caller's privileges, and bound every lock wait of the call after it.

    ``lock_timeout`` is set local: the entry point's own ``SET lock_timeout``
    clause (which bounds this read) makes PostgreSQL undo it when the call returns.
    """
    rows = plpy.execute(_spi.plan(plpy, "SELECT key, value FROM sqlcoder.config"))
    settings = parse_settings({r["key"]: r["value"] for r in rows})
    plpy.execute(_spi.plan(plpy, "SELECT pg_catalog.set_config('lock_timeout', $1, true)", ["text"]),
                 [f"{settings.lock_timeout_ms}ms"])
    return settings

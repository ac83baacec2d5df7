"""Settings from the superuser-owned table ``sqlcoder.config``, declared once with their types.

Read at every call (a primary-key scan of a few rows), so a DBA's UPDATE
applies to the next call of every session without a reconnect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .errors import ConfigError

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
    # Kept in step with sqlcoder.prompt.TEMPLATES (config must not import prompt).
    names = ("auto", "sql-eval", "sqlcoder-70b", "sqlcoder-7b-2", "sqlcoder-34b", "llama-3-sqlcoder-8b",
             "sql-eval-sqlcoder-70b", "sql-eval-llama-3-sqlcoder-8b")
    if raw.strip() not in names:
        raise ValueError("must be one of " + ", ".join(names))
    return raw.strip()


def split_signatures(raw: str) -> tuple[str, ...]:
    """``a(integer); b(text)`` -> its function signatures; a ``;`` inside double quotes belongs to a name."""
    parts, current, quoted = [], [], False
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


# key -> (parser, default). Defaults match the rows the extension script inserts,
# so a row a DBA deleted falls back to them.
SETTINGS: dict[str, tuple[Callable[[str], Any], str]] = {
    "socket_path": (_socket_path, "/run/sqlcoder/sqlcoder.sock"),
    "connect_timeout_ms": (_positive_int, "2000"),
    "model_timeout_ms": (_positive_int, "120000"),
    "max_question_chars": (_positive_int, "4000"),
    "max_reply_bytes": (_positive_int, "1048576"),
    "max_new_tokens": (_optional_positive_int, ""),
    "num_beams": (_optional_positive_int, ""),
    "template": (_template, "auto"),
    "context_budget_tokens": (_optional_positive_int, ""),
    # Running generated SQL (issue #5).
    "max_rows": (_positive_int, "1000"),
    "query_timeout_ms": (_positive_int, "30000"),
    "max_query_cost": (_optional_positive_float, ""),
    "allow_superuser_run": (_on_off, "off"),
    "guard_ask": (_on_off, "on"),
    # The guard's function policy (issue #10): ';'-separated function signatures.
    "allowed_functions": (split_signatures, ""),
    "denied_functions": (split_signatures, ""),
    # History, retention and bounded text (issue #11).
    "history_timeout_ms": (_positive_int, "200"),
    "history_write_timeout_ms": (_positive_int, "5000"),
    "history_retention": (_interval, "90 days"),
    "history_max_rows": (_positive_int, "1000000"),
    "max_comment_chars": (_positive_int, "1000"),
    "max_instructions_chars": (_positive_int, "4000"),
    # Results bounded in bytes (issue #10).
    "max_result_bytes": (_positive_int, "67108864"),
    # Golden examples, self-correction, value hints (issue #14).
    "max_examples": (_non_negative_int, "3"),
    "self_correct": (_on_off, "on"),
    "max_corrections": (_non_negative_int, "1"),
    "value_hints": (_on_off, "on"),
    "value_hints_max_values": (_positive_int, "10"),
    "value_hints_max_distinct": (_positive_int, "50"),
}


@dataclass(frozen=True)
class Settings:
    socket_path: str
    connect_timeout_ms: int
    model_timeout_ms: int
    max_question_chars: int
    max_reply_bytes: int
    max_new_tokens: int | None
    num_beams: int | None
    template: str
    context_budget_tokens: int | None
    max_rows: int
    query_timeout_ms: int
    max_query_cost: float | None
    allow_superuser_run: bool
    guard_ask: bool
    allowed_functions: tuple[str, ...]
    denied_functions: tuple[str, ...]
    history_timeout_ms: int
    history_write_timeout_ms: int
    history_retention: str
    history_max_rows: int
    max_comment_chars: int
    max_instructions_chars: int
    max_result_bytes: int
    max_examples: int
    self_correct: bool
    max_corrections: int
    value_hints: bool
    value_hints_max_values: int
    value_hints_max_distinct: int


def parse_settings(rows: Mapping[str, str]) -> Settings:
    """Typed settings from raw ``key -> value`` rows; unknown keys are ignored."""
    values = {}
    for key, (parse, default) in SETTINGS.items():
        raw = rows.get(key, default)
        try:
            values[key] = parse(raw)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"invalid sqlcoder.config value for {key}: {raw!r} ({exc})") from None
    return Settings(**values)


def load(plpy: Any) -> Settings:
    """Read ``sqlcoder.config`` with the caller's privileges."""
    rows = plpy.execute("SELECT key, value FROM sqlcoder.config")
    return parse_settings({r["key"]: r["value"] for r in rows})

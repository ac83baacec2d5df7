"""Settings from the superuser-owned table ``sqlcoder.config``, declared once with their types.

Read at every call (a primary-key scan of a few rows), so a DBA's UPDATE
applies to the next call of every session without a reconnect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .errors import ConfigError

__all__ = ["Settings", "SETTINGS", "parse_settings", "load"]


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
    # History, retention and bounded text (issue #11).
    "history_timeout_ms": (_positive_int, "200"),
    "history_write_timeout_ms": (_positive_int, "5000"),
    "history_retention": (_interval, "90 days"),
    "history_max_rows": (_positive_int, "1000000"),
    "max_comment_chars": (_positive_int, "1000"),
    "max_instructions_chars": (_positive_int, "4000"),
    # Results bounded in bytes (issue #10).
    "max_result_bytes": (_positive_int, "67108864"),
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
    history_timeout_ms: int
    history_write_timeout_ms: int
    history_retention: str
    history_max_rows: int
    max_comment_chars: int
    max_instructions_chars: int
    max_result_bytes: int


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

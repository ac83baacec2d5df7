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


def _socket_path(raw: str) -> str:
    if not raw.startswith("/"):
        raise ValueError("must be an absolute path")
    return raw


def _template(raw: str) -> str:
    # Kept in step with sqlcoder.prompt.TEMPLATES (config must not import prompt).
    names = ("auto", "sqlcoder-70b", "sqlcoder-7b-2", "sqlcoder-34b", "llama-3-sqlcoder-8b")
    if raw.strip() not in names:
        raise ValueError("must be one of " + ", ".join(names))
    return raw.strip()


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

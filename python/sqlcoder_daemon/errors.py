"""The protocol's error codes as one exception tree (docs/protocol.md, "Errors").

DaemonError(code, message)
├── BadRequest          bad_request
├── UnsupportedVersion  unsupported_version  (reply carries "supported")
├── TooLarge            too_large
├── Forbidden           forbidden
├── Busy                busy
├── Timeout             timeout
├── ShuttingDown        shutting_down        (the daemon is stopping: drain over, or no new work)
├── Unavailable         unavailable          (the openai backend's model server is down or answers garbage)
└── Internal            internal             (message is generic; details go to the log)
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BadRequest", "Busy", "Cancelled", "DaemonError", "Forbidden", "Internal", "ShuttingDown", "Timeout", "TooLarge",
    "Unavailable", "UnsupportedVersion",
]


class DaemonError(Exception):
    """An error the daemon answers with ``{"ok": false, "error": {"code": ..., "message": ...}}``."""

    code = "internal"

    def __init__(self, message: str, *, close: bool = False, extra: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        #: Whether the connection is closed after the reply.
        self.close = close
        #: Extra top-level keys of the error object (e.g. ``supported``).
        self.extra = extra or {}

    def to_error(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.extra}


class BadRequest(DaemonError):
    code = "bad_request"


class UnsupportedVersion(DaemonError):
    code = "unsupported_version"


class TooLarge(DaemonError):
    code = "too_large"


class Forbidden(DaemonError):
    code = "forbidden"


class Busy(DaemonError):
    code = "busy"


class Timeout(DaemonError):
    code = "timeout"


class ShuttingDown(DaemonError):
    code = "shutting_down"


class Unavailable(DaemonError):
    code = "unavailable"


class Internal(DaemonError):
    code = "internal"


class Cancelled(Exception):
    """The client went away; nothing is sent back (there is nobody to send it to)."""

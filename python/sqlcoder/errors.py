"""Every failure a user can meet, each with one name, one SQLSTATE and one hint.

Exception tree::

    SqlcoderError                     XX000  (base; never raised itself)
    ├── InvalidQuestion               22023  NULL, empty or oversize question
    │   └── NullQuestion              22004
    ├── ConfigError                   F0000  a bad value in sqlcoder.config
    ├── VersionMismatch               55000  package and extension versions differ
    ├── DaemonError                   08000  (base for talking to the daemon)
    │   ├── DaemonNotRunning          08001  socket missing or refusing
    │   ├── DaemonPermissionDenied    08004  socket exists, no permission
    │   ├── DaemonConnectionLost      08006  connection dropped mid-request
    │   ├── DaemonProtocolError       08P01  garbage, truncated or oversize reply
    │   ├── DaemonBusy                53000  the daemon's queue is full
    │   ├── ModelTimeout              57014  model_timeout_ms passed
    │   └── DaemonRejected            58000  the daemon answered with an error
    └── NoSQLGenerated                22000  the model gave no SQL ("I do not know")

They are plain Python exceptions so the package can be tested without a
server; :mod:`sqlcoder.api` turns them into PostgreSQL errors.
"""

from __future__ import annotations

__all__ = [
    "SqlcoderError", "InvalidQuestion", "NullQuestion", "ConfigError", "VersionMismatch",
    "DaemonError", "DaemonNotRunning", "DaemonPermissionDenied", "DaemonConnectionLost",
    "DaemonProtocolError", "DaemonBusy", "ModelTimeout", "DaemonRejected", "NoSQLGenerated",
]


class SqlcoderError(Exception):
    """Base class: a message, an optional detail, and the class's SQLSTATE and hint."""

    sqlstate = "XX000"
    hint: str | None = None

    def __init__(self, message: str, *, detail: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.detail = detail
        if hint is not None:
            self.hint = hint


class InvalidQuestion(SqlcoderError):
    sqlstate = "22023"
    hint = "Pass the question as a non-empty text, for example sqlcoder.ask('how many orders were placed last week?')."


class NullQuestion(InvalidQuestion):
    sqlstate = "22004"


class ConfigError(SqlcoderError):
    sqlstate = "F0000"
    hint = "A superuser can fix it with UPDATE sqlcoder.config SET value = ... WHERE key = ...;"


class VersionMismatch(SqlcoderError):
    sqlstate = "55000"
    hint = "Run ALTER EXTENSION sqlcoder UPDATE; then reconnect."


class DaemonError(SqlcoderError):
    sqlstate = "08000"


class DaemonNotRunning(DaemonError):
    sqlstate = "08001"
    hint = ("Start the model daemon (sqlcoder-daemon --model ... --socket PATH), or ask a superuser to point "
            "sqlcoder.config's socket_path at the socket it listens on.")


class DaemonPermissionDenied(DaemonError):
    sqlstate = "08004"
    hint = ("The database server's OS user cannot use the daemon's socket: start the daemon with "
            "--socket-group postgres (socket mode 0660) and --allow-user postgres.")


class DaemonConnectionLost(DaemonError):
    sqlstate = "08006"
    hint = "The daemon stopped or restarted while answering; check its log, then try again."


class DaemonProtocolError(DaemonError):
    sqlstate = "08P01"
    hint = ("Whatever listens on socket_path does not speak the sqlcoder protocol this extension expects; "
            "check that it is sqlcoder-daemon and that its version matches the extension's.")


class DaemonBusy(DaemonError):
    sqlstate = "53000"
    hint = "The model daemon's queue is full; try again in a moment."


class ModelTimeout(DaemonError):
    sqlstate = "57014"
    hint = "The model took longer than model_timeout_ms in sqlcoder.config; a superuser can raise it."


class DaemonRejected(DaemonError):
    sqlstate = "58000"
    hint = "See the daemon's log for details."


class NoSQLGenerated(SqlcoderError):
    sqlstate = "22000"
    hint = ("Rephrase the question, or make sure the tables it is about are visible to you "
            "(search_path and SELECT privileges); see sqlcoder.prompt(question).")

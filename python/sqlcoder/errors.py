"""Every failure a user can meet, each with one name, one SQLSTATE and one hint.

Exception tree::

    SqlcoderError                     XX000  (base; raised itself only for an unknown internal operation)
    ├── InvalidQuestion               22023  NULL, empty or oversize question
    │   └── NullQuestion              22004
    ├── ConfigError                   F0000  a bad value in sqlcoder.config
    ├── VersionMismatch               55000  package and extension versions differ
    ├── DaemonError                   08000  (base for talking to the daemon)
    │   ├── DaemonNotRunning          08001  socket missing or refusing
    │   ├── DaemonPermissionDenied    08004  socket exists, no permission
    │   ├── DaemonConnectionLost      08006  connection dropped mid-request
    │   ├── DaemonProtocolError       08P01  garbage, truncated or oversize reply
    │   │   ├── DaemonReplyTooLarge   08P01  reply over max_reply_bytes
    │   │   └── DaemonVersionMismatch 08P01  daemon speaks another protocol version
    │   ├── DaemonBusy                53000  the daemon's queue or connections are full, or its backlog
    │   ├── ModelServerUnavailable    08001  the daemon's model server (openai backend) is down or answers garbage
    │   ├── DaemonShuttingDown        57P03  the daemon is stopping (drain deadline, or no new work)
    │   ├── ModelTimeout              57014  model_timeout_ms passed
    │   │   └── DaemonNotResponding   57014  no reply at all, not even the daemon's own timeout error
    │   └── DaemonRejected            58000  the daemon answered with an error
    ├── NoSQLGenerated                22000  the model gave no SQL ("I do not know")
    ├── AnswerTruncated               22001  the answer ran to max_new_tokens before its query ended
    │   └── AnswerRepeats             22001  the daemon stopped an answer that kept repeating itself
    ├── SqlRefused                    42000  the guard refused the SQL (DETAIL holds it)
    │   ├── InvalidSql                (PostgreSQL's own, e.g. 42601, 42P01) does not parse/analyze
    │   ├── EmptySql                  22023  NULL, empty, or a NUL character
    │   ├── MultipleStatements        42601  not exactly one statement
    │   ├── NotAPlainQuery            25006  DML, DDL, utility, data-modifying WITH, SELECT INTO
    │   ├── QueryTooExpensive         54000  planner cost over max_query_cost
    │   ├── FunctionRefused           42501  the query calls a function the policy refuses
    │   ├── ResultTooLarge            54000  the result passed max_result_bytes while it was fetched
    │   └── SuperuserRefused          42501  a superuser may not run generated SQL
    ├── TimeLimitExceeded             57014  query_timeout_ms passed (the watchdog cancelled it)
    ├── QueryFailed                   (PostgreSQL's own) the query failed while running; DETAIL adds the SQL
    │   ├── MemoryLimitExceeded       53200  the guarded call passed max_memory_bytes (out of memory)
    │   └── TempFilesLimitExceeded    53400  its temporary files passed max_temp_bytes
    ├── FeedbackError                 22023  no history entry of yours with that id, a NULL argument
    │   └── FeedbackReadOnly          25006  feedback inside a read-only transaction
    ├── ClientGone                    08006  the client disconnected while the call waited on the model
    ├── InvalidExample                22023  a golden example without a question, or reading no table
    │   └── ExampleNotOwner           42501  the adder does not own every table the example reads
    ├── FollowUpError                 22023  follow_up names no history row of yours, or one without SQL
    └── NothingVisible                42P01  no table on the caller's search_path is visible to the caller

They are plain Python exceptions so the package can be tested without a
server; :mod:`sqlcoder.api` turns them into PostgreSQL errors.
"""

from __future__ import annotations

__all__ = [
    "SqlcoderError", "InvalidQuestion", "NullQuestion", "ConfigError", "VersionMismatch",
    "DaemonError", "DaemonNotRunning", "DaemonPermissionDenied", "DaemonConnectionLost",
    "DaemonProtocolError", "DaemonBusy", "DaemonShuttingDown", "ModelServerUnavailable", "ModelTimeout",
    "DaemonNotResponding", "DaemonRejected", "NoSQLGenerated", "AnswerTruncated", "AnswerRepeats",
    "DaemonReplyTooLarge", "DaemonVersionMismatch", "SqlRefused", "InvalidSql", "EmptySql",
    "MultipleStatements", "NotAPlainQuery", "QueryTooExpensive", "FunctionRefused", "SuperuserRefused",
    "TimeLimitExceeded", "FeedbackError", "FeedbackReadOnly", "QueryFailed", "MemoryLimitExceeded",
    "TempFilesLimitExceeded", "ResultTooLarge", "ClientGone",
    "InvalidExample", "ExampleNotOwner", "FollowUpError", "NothingVisible",
]


# A lock wait past lock_timeout_ms (PostgreSQL's own lock_not_available), on any table a call reads.
LOCK_TIMEOUT_SQLSTATE = "55P03"
LOCK_TIMEOUT_HINT = ("Another session holds a lock on a table this call reads (pg_locks shows which); try again "
                     "when it is released, or ask a DBA to raise lock_timeout_ms in sqlcoder.config.")


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
    hint = ("The model daemon's queue is full, or it has max_connections connections open; try again in a "
            "moment.")


class DaemonShuttingDown(DaemonError):
    sqlstate = "57P03"
    hint = ("The model daemon is being stopped or restarted (SIGTERM, systemctl stop/restart); try again once it "
            "is back. Requests still running when its drain_timeout_s passes get this error too.")


class ModelServerUnavailable(DaemonError):
    sqlstate = "08001"
    hint = ("The daemon forwards to a model server (backend openai: vLLM, TGI, llama.cpp) that is down, unreachable "
            "or answered garbage: check that server and the daemon's openai_url; the daemon's log has its reply.")


class ModelTimeout(DaemonError):
    sqlstate = "57014"
    hint = "The model took longer than model_timeout_ms in sqlcoder.config; a superuser can raise it."


class DaemonNotResponding(ModelTimeout):
    hint = ("The daemon accepted the connection but sent nothing back, not even its own timeout error: it is "
            "stopped (SIGSTOP), hung or swapping. Check its process and log (systemctl status sqlcoder-daemon); "
            "sqlcoder.status() says whether it answers.")


class DaemonRejected(DaemonError):
    sqlstate = "58000"
    hint = "See the daemon's log for details."


class NoSQLGenerated(SqlcoderError):
    sqlstate = "22000"
    hint = ("Rephrase the question, or make sure the tables it is about are visible to you "
            "(search_path and SELECT privileges); see sqlcoder.prompt(question).")


class AnswerTruncated(SqlcoderError):
    """The model was still writing its query when max_new_tokens ran out: the text is cut, so PostgreSQL's
    verdict on it ("syntax error at end of input") would only mislead. DETAIL holds the model's text."""

    sqlstate = "22001"  # string_data_right_truncation
    hint = ("The model's answer ran to max_new_tokens before the query ended: a superuser can raise max_new_tokens "
            "in sqlcoder.config (up to the daemon's --max-new-tokens), or rephrase the question more narrowly.")


class AnswerRepeats(AnswerTruncated):
    hint = ("The model kept repeating itself, so the daemon stopped it (--repetition-guard-tokens) before the "
            "query ended: rephrase the question, or serve a larger model; see sqlcoder.prompt(question).")


# -- Running generated SQL -----------------------------------------

class DaemonReplyTooLarge(DaemonProtocolError):
    hint = ("The reply was larger than max_reply_bytes in sqlcoder.config; a superuser can raise it, or lower "
            "max_new_tokens so the model writes less.")


class DaemonVersionMismatch(DaemonProtocolError):
    hint = ("The daemon and the extension speak different protocol versions: install matching versions of "
            "sqlcoder-daemon and the sqlcoder extension.")


class SqlRefused(SqlcoderError):
    """The guard refused a statement before it ran; DETAIL holds the SQL."""

    sqlstate = "42000"
    hint = ("sqlcoder runs exactly one plain query (SELECT, WITH without data changes, VALUES or TABLE), "
            "read-only, with your privileges.")


class InvalidSql(SqlRefused):
    """PostgreSQL's parser or analyzer rejected it: keep PostgreSQL's own SQLSTATE."""

    hint = "Check the SQL in DETAIL; sqlcoder.prompt(question) shows what the model was told."

    def __init__(self, message: str, *, sqlstate: str | None = None, detail: str | None = None,
                 hint: str | None = None):
        super().__init__(message, detail=detail, hint=hint)
        if sqlstate:
            self.sqlstate = sqlstate


class EmptySql(SqlRefused):
    sqlstate = "22023"
    hint = "Pass one SQL query as a non-empty text without NUL characters."


class MultipleStatements(SqlRefused):
    sqlstate = "42601"


class NotAPlainQuery(SqlRefused):
    sqlstate = "25006"
    hint = ("sqlcoder only reads: SELECT, VALUES, TABLE, or WITH without INSERT/UPDATE/DELETE. Run other "
            "statements yourself, outside sqlcoder.")


class QueryTooExpensive(SqlRefused):
    sqlstate = "54000"
    hint = ("The planner's cost estimate is over max_query_cost in sqlcoder.config: narrow the question (filters, "
            "LIMIT), or ask a superuser to raise the ceiling.")


class FunctionRefused(SqlRefused):
    """The function policy (sqlcoder.policy) refused a function the analyzed query calls."""

    sqlstate = "42501"
    hint = ("A superuser can allow a function with SELECT sqlcoder.allow_function('schema.name(argument types)'); "
            "see docs/security.md.")


class SuperuserRefused(SqlRefused):
    sqlstate = "42501"
    hint = ("A superuser bypasses every privilege check, and read-only mode does not stop functions such as "
            "lo_export or pg_terminate_backend: connect as an ordinary role granted sqlcoder access "
            "(sqlcoder.grant_access), or have a superuser set allow_superuser_run = on in sqlcoder.config.")


class TimeLimitExceeded(SqlcoderError):
    sqlstate = "57014"
    hint = ("The query ran longer than query_timeout_ms in sqlcoder.config; narrow it, "
            "or ask a superuser to raise the limit.")


class FeedbackError(SqlcoderError):
    # An error class (22: data exception), not 02000 "no data", a completion class drivers do not raise.
    sqlstate = "22023"
    hint = "Pass the id of one of your own rows in sqlcoder.history."


class FeedbackReadOnly(FeedbackError):
    sqlstate = "25006"
    hint = ("feedback writes to sqlcoder.history: call it in a read-write transaction (outside BEGIN READ ONLY, "
            "or after SET TRANSACTION READ WRITE), on the primary.")


class QueryFailed(SqlcoderError):
    """PostgreSQL refused the query while running it (read-only, privileges, ...): its SQLSTATE, plus the SQL."""

    def __init__(self, message: str, *, sqlstate: str | None = None, detail: str | None = None,
                 hint: str | None = None):
        super().__init__(message, detail=detail, hint=hint)
        self.sqlstate = sqlstate or "XX000"


class MemoryLimitExceeded(QueryFailed):
    """An allocation passed the guarded call's address-space limit (sqlcoder_internal._limit_call):
    PostgreSQL's 53200."""

    sqlstate = "53200"

    hint = ("The query needed more memory than max_memory_bytes in sqlcoder.config allows one call: select fewer "
            "or narrower columns, or ask a superuser to raise max_memory_bytes.")


class TempFilesLimitExceeded(QueryFailed):
    """A sort, hash or materialisation spilled more than the call's temp_file_limit: PostgreSQL's 53400."""

    sqlstate = "53400"

    hint = ("The query wrote more temporary files than max_temp_bytes in sqlcoder.config allows one call "
            "(a large sort, DISTINCT, hash or CTE): narrow it, or ask a superuser to raise max_temp_bytes.")


_LIMIT_FAILURES: dict[str, type[QueryFailed]] = {"53200": MemoryLimitExceeded, "53400": TempFilesLimitExceeded}


def query_failed(message: str, *, sqlstate: str | None, detail: str | None, hint: str | None) -> QueryFailed:
    """PostgreSQL's error from a guarded query; out of memory and temp_file_limit name sqlcoder's setting.

    Recognised by SQLSTATE alone; PostgreSQL's own HINT, where it gave one
    ("out of shared memory" names max_locks_per_transaction), is kept.
    """
    cls = _LIMIT_FAILURES.get(sqlstate or "", QueryFailed)
    return cls(message, sqlstate=sqlstate, detail=detail, hint=hint or cls.hint)


# -- Result bytes and abandoned calls ------------------------------

class ResultTooLarge(SqlRefused):
    """Counted row by row as the query ran; it was stopped as soon as the limit was passed."""

    sqlstate = "54000"
    hint = ("Select fewer or narrower columns, aggregate, or add a LIMIT; a superuser can raise max_result_bytes "
            "in sqlcoder.config.")


class ClientGone(SqlcoderError):
    """Nobody reads this error: it ends the call, cancels the daemon request and is recorded in history."""

    sqlstate = "08006"
    hint = "The client closed its connection (killed, or a pool's timeout) while sqlcoder waited on the model."


# -- Golden examples -------------------------------------------------

class InvalidExample(SqlcoderError):
    sqlstate = "22023"
    hint = ("A golden example is a non-empty question and one plain query (SELECT, WITH, VALUES or TABLE) "
            "that reads at least one table: sqlcoder.add_example('how many orders?', 'SELECT count(*) FROM orders').")


class ExampleNotOwner(InvalidExample):
    sqlstate = "42501"
    hint = ("Only a superuser or the owner of every table the SQL reads can add it as an example: ask them to run "
            "sqlcoder.add_example.")


# -- Follow-up questions, and a path that shows nothing -----------------------

class FollowUpError(SqlcoderError):
    sqlstate = "22023"
    hint = ("Pass follow_up => the id of one of your own sqlcoder.history rows (SELECT id, question FROM "
            "sqlcoder.history ORDER BY id DESC LIMIT 5), or 0 for your latest question of this session.")


class NothingVisible(SqlcoderError):
    """Raised before the model is called: a prompt without a table can only produce a wrong query."""

    sqlstate = "42P01"
    hint = ("Ask a DBA to GRANT you USAGE on the schema and SELECT on its tables, or SET search_path to the "
            "schema that holds them.")

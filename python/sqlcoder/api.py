"""Entry points behind the SQL functions: one dispatcher, one function per operation.

``entry`` never lets an exception escape: it returns the composite
``sqlcoder_internal._reply`` as ``{"value": text, "error": None}`` or
``{"value": None, "error": json}``, and ``sqlcoder_internal._result`` raises the error
from PL/pgSQL, so a user sees SQLSTATE, message, DETAIL and HINT, never a
Python traceback. Errors PostgreSQL raised inside our SPI calls (a cancel, a
statement_timeout, a failing query) keep their own SQLSTATE and message.
Text results go back as they are: no JSON envelope around a large prompt.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

from . import (
    __version__,
    _spi,
    assemble,
    config,
    correction,
    examples,
    execute,
    follow_up,
    grammar,
    guard,
    history,
    policy,
)
from ._spi import Plpy
from .client import DaemonClient
from .errors import (
    LOCK_TIMEOUT_HINT,
    LOCK_TIMEOUT_SQLSTATE,
    AnswerTruncated,
    ClientGone,
    DaemonError,
    InvalidQuestion,
    NoSQLGenerated,
    SqlcoderError,
    SqlRefused,
    VersionMismatch,
)
from .model import Model
from .prompt import extract_sql
from .request import Request, read_request

__all__ = ["entry"]

# Versions whose entry point (sqlcoder._call) returned jsonb, {"error": {...}}:
# a database not yet updated must still get a clean "run ALTER EXTENSION" error.
_JSONB_ENVELOPE_VERSIONS = frozenset({"0.1.0"})


def entry(plpy: Plpy, extension_version: str, op: str, params: Any,
          token: str | None = None) -> dict[str, str | None] | str:
    """Run operation ``op``; the reply is what ``sqlcoder_internal._result`` expects.

    ``token`` is what ``sqlcoder_internal._invoke`` made for this call; the history functions take nothing else.
    """
    if extension_version != __version__:
        exc = _version_mismatch(extension_version)
        if extension_version in _JSONB_ENVELOPE_VERSIONS:
            return json.dumps({"error": _error_fields(exc.sqlstate, exc.message, exc.detail, exc.hint)})
        return _error(exc.sqlstate, exc.message, exc.detail, exc.hint)
    try:
        handler = _OPERATIONS.get(op)
        if handler is None:
            raise SqlcoderError(f"unknown sqlcoder operation {op!r}")
        kwargs = json.loads(params) if isinstance(params, str) else (params or {})
        if "caller_path" in kwargs:
            kwargs["caller_path"] = visible_path(plpy, kwargs["caller_path"])
        with history.call_token(token):
            return {"value": _as_text(handler(plpy, **kwargs)), "error": None}
    except SqlcoderError as exc:
        return _error(exc.sqlstate, exc.message, exc.detail, exc.hint)
    except plpy.SPIError as exc:
        spi = _spi.fields(exc)
        if spi.sqlstate == LOCK_TIMEOUT_SQLSTATE and not spi.hint:
            return _error(spi.sqlstate, spi.message, spi.detail, LOCK_TIMEOUT_HINT)
        return _error(spi.sqlstate or "XX000", spi.message, spi.detail, spi.hint)
    except Exception as exc:  # a bug: log the traceback on the server, not to the client
        plpy.log("sqlcoder internal error:\n" + traceback.format_exc())
        return _error("XX000", f"sqlcoder internal error: {type(exc).__name__}: {exc}", None,
                      "The server log has the traceback; please report it as a bug.")


def _version_key(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return ()


def _version_mismatch(extension_version: str) -> VersionMismatch:
    """The extension and the package this session loaded differ: after ``ALTER EXTENSION sqlcoder UPDATE``
    a session keeps the package it imported before, so the cure is a new session, not another update."""
    if _version_key(extension_version) > _version_key(__version__):
        return VersionMismatch(
            f"this session loaded sqlcoder's Python package {__version__} before the extension was updated to "
            f"{extension_version}",
            hint=f"Reconnect: a new session loads the {extension_version} package. The update itself is done.")
    return VersionMismatch(f"sqlcoder extension version {extension_version} does not match the installed "
                           f"package version {__version__}",
                           hint=f"Run ALTER EXTENSION sqlcoder UPDATE TO '{__version__}'; then reconnect.")


def _as_text(value: Any) -> str | None:
    """Text stays text; anything else (status, rows) goes as JSON for the SQL wrapper to cast."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)


def _error(sqlstate: str, message: str, detail: str | None, hint: str | None) -> dict[str, str | None]:
    return {"value": None, "error": json.dumps(_error_fields(sqlstate, message, detail, hint))}


def _error_fields(sqlstate: str, message: str, detail: str | None, hint: str | None) -> dict[str, str | None]:
    return {"sqlstate": sqlstate, "message": message, "detail": detail, "hint": hint}


# The path the SQL wrappers pass is current_schemas(true), but anyone can call
# the entry point with any list: keep only schemas the current role may use.
_VISIBLE_PATH_SQL = """
SELECT pg_catalog.array_agg(p.nspname ORDER BY p.ord)::text[] AS path
FROM pg_catalog.unnest($1::pg_catalog.name[]) WITH ORDINALITY AS p(nspname, ord)
JOIN pg_catalog.pg_namespace n ON n.nspname = p.nspname
WHERE pg_catalog.has_schema_privilege(n.oid, 'USAGE')
"""


def visible_path(plpy: Plpy, caller_path: Any) -> list[str]:
    """``caller_path`` without the schemas the current role has no USAGE on (or that do not exist)."""
    if caller_path is None:
        return []
    if not isinstance(caller_path, list) or not all(isinstance(n, str) for n in caller_path):
        raise InvalidQuestion("caller_path must be an array of schema names",
                              hint="Call sqlcoder.ask, prompt, run or execute; they pass current_schemas(true).")
    return plpy.execute(_spi.plan(plpy, _VISIBLE_PATH_SQL, ["text[]"]), [caller_path])[0]["path"] or []


@dataclass
class Call:
    """One call of ask, run or execute: the session, the DBA's settings, and the history row it fills."""

    plpy: Plpy
    settings: config.Settings
    entry: history.Entry

    def function_lists(self) -> policy.FunctionLists:
        """The DBA's allowed/denied functions, resolved here, in sqlcoder's pinned search_path."""
        return policy.load_lists(self.plpy, self.settings.allowed_functions, self.settings.denied_functions)


def _request(plpy: Plpy, settings: config.Settings, question: Any, instructions: Any, caller_path: Any,
             follow_up_id: Any) -> Request:
    """The SQL arguments, checked: the earlier answer a follow-up names first, then the question."""
    earlier = follow_up.resolve(plpy, follow_up_id, settings.max_question_chars)
    return read_request(settings, question, instructions, caller_path, earlier)


def _checker(plpy: Plpy) -> Callable[[], None]:
    """Between socket polls: let PostgreSQL act on a pending cancel or statement_timeout, and give up
    when the client has gone away (the socket to the daemon is then closed, which cancels the request)."""
    plan = _spi.plan(plpy, "SELECT sqlcoder_internal._client_connected() AS connected")

    def check() -> None:
        if not plpy.execute(plan)[0]["connected"]:
            raise ClientGone("sqlcoder: the client disconnected while waiting for the model; the request was "
                             "cancelled")
    return check


def _model(plpy: Plpy, settings: config.Settings, budget: float | None = None) -> Model:
    """The daemon's model for one call; with ``budget``, every request of the call shares it."""
    client = DaemonClient(settings.socket_path, connect_timeout=settings.connect_timeout_s,
                          max_reply_bytes=settings.max_reply_bytes, check_interrupts=_checker(plpy), budget=budget)
    return Model(client, settings.model_timeout_s)


def _recording(call: Call) -> AbstractContextManager[history.Entry]:
    return history.recording(call.plpy, call.entry, history.Limits(call.settings.history_timeout_ms,
                                                                   call.settings.history_write_timeout_ms))


def op_prompt(plpy: Plpy, question: Any = None, instructions: Any = None, caller_path: Any = None,
              follow_up: Any = None) -> str:
    """Exactly the prompt ask would send, a follow-up's earlier question and SQL included."""
    settings = config.load(plpy)
    request = _request(plpy, settings, question, instructions, caller_path, follow_up)
    return assemble.build_call_prompt(plpy, settings, request, _model(plpy, settings)).text


def op_ask(plpy: Plpy, question: Any = None, instructions: Any = None, caller_path: Any = None,
           follow_up: Any = None) -> str:
    """Generate SQL, guarded (when guard_ask is on) so that ``\\gexec`` gets one plain query; recorded."""
    call = Call(plpy, config.load(plpy), history.Entry("ask", question=question))
    with _recording(call):
        request = _request(plpy, call.settings, question, instructions, caller_path, follow_up)

        def check(sql: str) -> str:
            if call.settings.guard_ask:
                execute.guard_only(plpy, sql, caller_path=caller_path, max_cost=call.settings.max_query_cost,
                                   timeout_s=call.settings.query_timeout_s, functions=call.function_lists(),
                                   max_memory_bytes=call.settings.max_memory_bytes)
            return sql

        sql = _generate_checked(call, request, check)
        call.entry.outcome = "ok"
        _remember(call, request, sql)
        return sql


def _remember(call: Call, request: Request, sql: str | None) -> None:
    follow_up.remember(call.plpy, request.question, sql, call.settings.max_question_chars)


T = TypeVar("T")


def _generate_checked(call: Call, request: Request, check: Callable[[str], T]) -> T:
    """Generate SQL and pass it to ``check`` (the guard, or guard and run); on a refusal the model
    can fix, ask again with the SQL and PostgreSQL's error, up to ``max_corrections`` times."""
    settings, entry = call.settings, call.entry
    rounds = settings.max_corrections if settings.self_correct else 0
    # One budget, model_timeout_ms, for every daemon request of the call, corrections included.
    model = _model(call.plpy, settings, budget=settings.model_timeout_s)
    sql, ms = _timed_generate(call, request, model)
    attempts: list[correction.Attempt] = []
    first: SqlcoderError | None = None
    while True:
        try:
            result = check(sql)
        except SqlRefused as exc:
            message = correction.postgres_message(exc)
            attempts.append(correction.Attempt(sql, exc.sqlstate, message, ms))
            first = first or exc
            if len(attempts) > rounds or not correction.fixable(exc):
                _give_up(entry, attempts, first)
            try:
                sql, ms = _timed_generate(call, request, model, correction.render(sql, message))
            # e.g. the call's budget ran out
            except (NoSQLGenerated, AnswerTruncated, SqlRefused, DaemonError) as again:
                attempts.append(correction.Attempt("", again.sqlstate, again.message, None))
                _give_up(entry, attempts, first)
            continue
        if attempts:
            attempts.append(correction.Attempt(sql, None, None, ms))
            entry.attempts = correction.as_json(attempts)
        return result


def _give_up(entry: history.Entry, attempts: list[correction.Attempt], first: SqlcoderError) -> NoReturn:
    """End with the first attempt's error; after a correction, DETAIL and history hold every attempt."""
    if len(attempts) == 1:
        raise first
    entry.sql = attempts[0].sql
    entry.attempts = correction.as_json(attempts)
    raise correction.failure(first, attempts)


def _timed_generate(call: Call, request: Request, model: Model, correction_block: str = "") -> tuple[str, float]:
    started = time.monotonic()
    try:
        sql = _generate(call, request, model, correction_block)
    finally:
        elapsed = (time.monotonic() - started) * 1000
        call.entry.model_ms = (call.entry.model_ms or 0.0) + elapsed
    call.entry.sql = sql
    guard.strip_sql(sql)  # NUL bytes in model output: refused here, whatever guard_ask says
    return sql, elapsed


def _generate(call: Call, request: Request, model: Model, correction_block: str = "") -> str:
    """One generate request through ``model``, whose client's budget (model_timeout_ms) covers the whole
    call: status probe, token counts, generate, and any correction's requests."""
    plpy, settings = call.plpy, call.settings
    built = assemble.build_call_prompt(plpy, settings, request, model, correction_block)
    wire = _grammar(call, request, built)
    generated = model.generate(built.text, max_new_tokens=settings.max_new_tokens, num_beams=settings.num_beams,
                               grammar=wire)
    if generated.model is not None:
        call.entry.model = generated.model
    call.entry.output = generated.text
    if wire is not None and not generated.constrained:
        plpy.notice("sqlcoder: the model daemon's backend cannot constrain decoding to the schema's grammar; this "
                    "answer was generated unconstrained (the guard checks it as always)",
                    hint="sqlcoder.status() shows the backend's grammar support; docs/daemon.md lists which backends "
                         "and model servers honour it.")
    try:
        return extract_sql(generated.text, generated.finish_reason)
    except AnswerTruncated as exc:
        # history.attempts keeps the finish reason and what the model wrote (no SQL column change needed).
        call.entry.attempts = [{"sql": None, "sqlstate": exc.sqlstate, "error": exc.message, "model_ms": None,
                                "finish_reason": generated.finish_reason,
                                "output": generated.text[:correction.MAX_SHOWN_CHARS]}]
        raise


#: Largest grammar sent (each form); the daemon's default max_grammar_bytes.
MAX_GRAMMAR_BYTES = 1 << 20
_OVERRIDE_SQL = "SELECT pg_catalog.current_setting('sqlcoder.constrained_decoding', true) AS override"


def constrained(plpy: Plpy, settings: config.Settings) -> bool:
    """``constrained_decoding``, or the superuser-only option ``sqlcoder.constrained_decoding`` (on/off) when
    set. The entry point (C, sqlcoder_internal._invoke) loads the library, which defines that option before this
    reads it, so a value a non-superuser set before it was defined is dropped (with PostgreSQL's WARNING)."""
    override: str | None = plpy.execute(_spi.plan(plpy, _OVERRIDE_SQL))[0]["override"]
    if override in ("on", "off"):
        return override == "on"
    return settings.constrained_decoding


def _grammar(call: Call, request: Request, built: assemble.CallPrompt) -> dict[str, str] | None:
    """The call's grammar for the daemon, or None when decoding is not to be constrained."""
    plpy, settings = call.plpy, call.settings
    if not constrained(plpy, settings):
        return None
    made = grammar.for_prompt(plpy, built.cached, built.tables, request.caller_path,
                              settings.allowed_functions, settings.denied_functions)
    if max(len(made.gbnf.encode()), len(made.lark.encode())) > MAX_GRAMMAR_BYTES:
        plpy.notice(f"sqlcoder: the schema's grammar is over {MAX_GRAMMAR_BYTES} bytes; this answer was generated "
                    "unconstrained", hint="Narrow the search_path, or leave tables out of it.")
        return None
    return made.as_request()


# -- Running SQL read-only, history, feedback ------------------------

def _max_rows(settings: config.Settings, requested: Any) -> int:
    if requested is None:
        return settings.max_rows
    if not isinstance(requested, int) or requested <= 0:
        raise InvalidQuestion("max_rows must be a positive integer", hint="Leave max_rows NULL for the DBA's cap.")
    return min(requested, settings.max_rows)


def _run_recorded(call: Call, sql: Any, caller_path: Any, max_rows: int, typed: bool) -> int:
    """Run guarded SQL read-only; callers have already refused a superuser (refuse_superuser).

    Returns the token under which the rows wait for the SQL wrapper (``sqlcoder_internal._result_rows``, or
    for ``typed`` rows with the query's own columns, ``run_typed``/``execute_typed`` in C).
    """
    plpy, settings, entry = call.plpy, call.settings, call.entry
    result = execute.run_query(plpy, sql, caller_path=caller_path, max_rows=max_rows,
                               max_cost=settings.max_query_cost, timeout_s=settings.query_timeout_s,
                               max_bytes=settings.max_result_bytes, functions=call.function_lists(),
                               typed=typed, max_memory_bytes=settings.max_memory_bytes,
                               max_temp_bytes=settings.max_temp_bytes)
    entry.sql, entry.query_ms = result.sql, result.query_ms
    entry.row_count, entry.truncated, entry.outcome = result.row_count, result.truncated, "ok"
    if result.truncated:
        plpy.notice(f"sqlcoder: the result was cut to its first {max_rows} rows",
                    hint="Pass max_rows (up to max_rows in sqlcoder.config), or narrow the query.")
    return result.token


def op_run(plpy: Plpy, question: Any = None, instructions: Any = None, caller_path: Any = None,
           max_rows: Any = None, typed: Any = False, follow_up: Any = None) -> int:
    """Generate SQL and run it read-only; the rows' token for ``sqlcoder_internal._result_rows``."""
    call = Call(plpy, config.load(plpy), history.Entry("run", question=question))
    with _recording(call):
        limit = _max_rows(call.settings, max_rows)
        execute.refuse_superuser(plpy, call.settings.allow_superuser_run)  # before spending model time
        request = _request(plpy, call.settings, question, instructions, caller_path, follow_up)
        token = _generate_checked(call, request,
                                  lambda sql: _run_recorded(call, sql, caller_path, limit, typed is True))
        _remember(call, request, call.entry.sql)
        return token


def op_execute(plpy: Plpy, sql: Any = None, caller_path: Any = None, max_rows: Any = None, typed: Any = False) -> int:
    """Run SQL a user reviewed under the same guard and read-only execution as run."""
    call = Call(plpy, config.load(plpy), history.Entry("execute", sql=sql))
    with _recording(call):
        limit = _max_rows(call.settings, max_rows)
        execute.refuse_superuser(plpy, call.settings.allow_superuser_run)
        return _run_recorded(call, sql, caller_path, limit, typed is True)


def op_feedback(plpy: Plpy, id: Any = None, correct: Any = None, corrected_sql: Any = None) -> None:
    """Mark one of the caller's history rows right or wrong, with corrected SQL for later use as an example."""
    history.feedback(plpy, id, correct, corrected_sql)


def op_status(plpy: Plpy) -> dict[str, Any]:
    settings = config.load(plpy)
    result: dict[str, Any] = {"extension_version": __version__, "socket_path": settings.socket_path,
                              "history": history.stats(plpy)}
    try:
        daemon = _model(plpy, settings).status(10.0)
    except DaemonError as exc:
        result.update(reachable=False, error=exc.message, hint=exc.hint)
        return result
    result.update(reachable=True, daemon=daemon)
    return result


def op_check_example(plpy: Plpy, question: Any = None, sql: Any = None, search_path: Any = None) -> dict[str, Any]:
    """The trigger on sqlcoder.examples: guard the SQL as the inserting role and list its relations."""
    return examples.check_new(plpy, question, sql, search_path)


_OPERATIONS: dict[str, Callable[..., Any]] = {
    "ask": op_ask,
    "prompt": op_prompt,
    "status": op_status,
    "run": op_run,
    "execute": op_execute,
    "feedback": op_feedback,
    "check_example": op_check_example,
}

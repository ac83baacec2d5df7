"""Where the SQL under evaluation comes from: the extension's ``sqlcoder.ask``, the gold query
itself (must score 100%), or a deliberately broken gold query (must score 0%)."""

from __future__ import annotations

import ast
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg

from .compare import ResultSet, compare_df
from .dataset import Question
from .execute import QueryError, run_query, set_timeout
from .perturb import candidates

__all__ = ["PREDICTORS", "AskPredictor", "Context", "GoldPredictor", "PerturbedPredictor", "Prediction",
           "Predictor", "make_predictor"]


@dataclass
class Context:
    """What a predictor may use for one question: its session, the executed gold variants, settings."""

    conn: psycopg.Connection
    question: Question
    gold: list[tuple[str, ResultSet]]
    timeout_s: float
    max_rows: int
    policy: str
    session: dict[str, Any] = field(default_factory=dict)  # per-connection state a predictor may cache


@dataclass
class Prediction:
    """The SQL to judge; ``skipped`` removes the question from the score (with the reason)."""

    sql: str | None
    latency_ms: float | None = None
    note: str = ""
    skipped: str | None = None
    error: str | None = None
    #: The model's own text the SQL was cut from (accepted or refused), and a refusal's SQLSTATE.
    raw_output: str | None = None
    sqlstate: str | None = None


_OUTPUT = "model output: "  # sqlcoder.prompt.MODEL_OUTPUT_DETAIL (the in-database package is not importable here)


def refused_answer(detail: str | None) -> tuple[str | None, str | None]:
    """(SQL, model text) from the DETAIL of a refused ``ask``: the guard's ``SQL: ...`` line (the first
    attempt's, after a correction) and the extension's ``model output: '...'`` literal."""
    sql = raw = None
    for line in (detail or "").splitlines():
        body = line.split(": ", 1)[1] if line.startswith("attempt ") and ": " in line else line
        if sql is None and body.startswith("SQL: "):
            sql = body[len("SQL: "):]
        elif raw is None and line.startswith(_OUTPUT):
            try:
                value = ast.literal_eval(line[len(_OUTPUT):])
            except (ValueError, SyntaxError):
                value = line[len(_OUTPUT):]
            raw = value if isinstance(value, str) else None
    return sql, raw


class Predictor(Protocol):
    name: str

    def predict(self, ctx: Context) -> Prediction: ...


class GoldPredictor:
    """Answers with the first gold variant: checks loading, execution and comparison end to end."""

    name = "gold"

    def predict(self, ctx: Context) -> Prediction:
        return Prediction(ctx.gold[0][0])


class PerturbedPredictor:
    """Answers with the first perturbation of the first gold variant whose result differs from
    every gold variant's (as :func:`compare_df` sees it: another alternative may well be what the
    perturbation produced). The full comparison, subset rule included, must then score it wrong."""

    name = "perturbed"

    def predict(self, ctx: Context) -> Prediction:
        q = ctx.question
        for p in candidates(ctx.gold[0][0], start=q.id):
            try:
                result = run_query(ctx.conn, p.sql, ctx.max_rows)
            except QueryError:
                continue
            if not any(compare_df(gold, result, q.category, q.question, gold_sql, p.sql, ctx.policy)
                       for gold_sql, gold in ctx.gold):
                return Prediction(p.sql, note=f"{p.kind}: {p.description}")
        return Prediction(None, skipped="no result-changing perturbation")


class AskPredictor:
    """Calls ``sqlcoder.ask(question[, instructions])`` in the question's database: the whole
    in-database path (schema introspection, prompt, daemon, cleanup) is what gets evaluated."""

    name = "ask"

    def __init__(self, ask_timeout_s: float = 0):
        self.ask_timeout_s = ask_timeout_s

    @staticmethod
    def _has_two_arg_form(ctx: Context) -> bool:
        if "ask2" not in ctx.session:
            # ask(text, text) until 0.3.0, ask(text, text, bigint) with follow_up since.
            row = ctx.conn.execute(
                "SELECT pg_catalog.to_regprocedure('sqlcoder.ask(text,text)') IS NOT NULL "
                "OR pg_catalog.to_regprocedure('sqlcoder.ask(text,text,bigint)') IS NOT NULL").fetchone()
            ctx.session["ask2"] = bool(row and row[0])
        return ctx.session["ask2"]

    @staticmethod
    def _recorded_output(ctx: Context, sql: str, since: Any) -> str | None:
        """The model's text of the ask that answered ``sql`` at or after ``since`` (its statement's start),
        from ``sqlcoder.history.output``: None where history is off, the row was lost, or the extension
        predates that column."""
        if "history_output" not in ctx.session:
            row = ctx.conn.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attname = 'output' AND NOT attisdropped"
                " AND attrelid = pg_catalog.to_regclass('sqlcoder.history'))").fetchone()
            ctx.session["history_output"] = bool(row and row[0])
        if not ctx.session["history_output"]:
            return None
        try:
            row = ctx.conn.execute(
                "SELECT output FROM sqlcoder.history WHERE role = current_user AND operation = 'ask'"
                " AND question = %s AND sql = %s AND created_at >= %s ORDER BY id DESC LIMIT 1",
                (ctx.question.question, sql, since)).fetchone()
        except psycopg.Error:
            return None
        return row[0] if row else None

    def predict(self, ctx: Context) -> Prediction:
        q = ctx.question
        note = ""
        if q.instructions and self._has_two_arg_form(ctx):
            stmt, params = "SELECT sqlcoder.ask(%s, %s), pg_catalog.statement_timestamp()", (q.question, q.instructions)
        else:
            stmt, params = "SELECT sqlcoder.ask(%s), pg_catalog.statement_timestamp()", (q.question,)
            note = "instructions not passed: no sqlcoder.ask(text, text)" if q.instructions else ""
        set_timeout(ctx.conn, self.ask_timeout_s)
        start = time.perf_counter()
        try:
            row = ctx.conn.execute(stmt, params).fetchone()
        except psycopg.Error as e:
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            latency = (time.perf_counter() - start) * 1000
            set_timeout(ctx.conn, ctx.timeout_s)
            sql, raw = refused_answer(e.diag.message_detail)
            # A refusal's history row waits for its folding window: DETAIL holds the model's text.
            return Prediction(sql, latency, note, error=f"ask failed: {first_line}", raw_output=raw,
                              sqlstate=e.sqlstate)
        latency = (time.perf_counter() - start) * 1000
        set_timeout(ctx.conn, ctx.timeout_s)
        sql = row[0] if row else None
        if not sql:
            return Prediction(None, latency, note, error="ask returned no SQL")
        return Prediction(sql, latency, note, raw_output=self._recorded_output(ctx, sql, row[1]))


PREDICTORS = ("ask", "gold", "perturbed")


def make_predictor(name: str, ask_timeout_s: float = 0) -> Predictor:
    if name == "ask":
        return AskPredictor(ask_timeout_s)
    if name == "gold":
        return GoldPredictor()
    if name == "perturbed":
        return PerturbedPredictor()
    raise ValueError(f"unknown predictions {name!r}; choose from {PREDICTORS}")

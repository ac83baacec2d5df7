"""``sqlcoder-eval run``: judge every question, several sessions at a time, resumable.

Each finished question is appended to a JSON-lines results file at once, so an
interrupted run loses at most the questions in flight; ``resume`` skips the
questions of the same run already in the file.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from .dataset import Question
from .execute import QueryError, run_query, set_timeout
from .goldsql import expand_gold
from .judges import DEFAULT_JUDGE, GoldResult, Outcome, execute_answer, verdict
from .load import database_conninfo
from .predictors import Context, Predictor
from .progress import Progress

__all__ = ["RunOptions", "evaluate_question", "read_records", "run"]


@dataclass
class RunOptions:
    """How to run: the server, the run's name, sessions, limits, the judges and the ordering policy
    (``strict`` judge only). The first judge scores the run; every judge's verdict is recorded."""

    conninfo: str = ""
    run_name: str = "run"
    parallel: int = 1
    timeout_s: float = 10.0
    max_rows: int = 100_000
    policy: str = "sql-eval"
    judges: tuple[str, ...] = (DEFAULT_JUDGE,)
    prompt_profile: str = ""  # as set by --prompt-profile ('' = the databases' own setting)
    resume: bool = False
    progress: bool = True


def _error_text(e: Exception) -> str:
    return str(e).strip() or type(e).__name__


def _judge_all(conn: psycopg.Connection, q: Question, gold: list[GoldResult], sql: str,
               opts: RunOptions) -> dict[str, dict[str, Any]]:
    """Every judge's verdict on ``sql``: each runs the answer its own way (see :func:`execute_answer`)."""
    verdicts: dict[str, dict[str, Any]] = {}
    for judge in opts.judges:
        try:
            result = execute_answer(conn, judge, sql, opts.max_rows)
        except QueryError as e:
            verdicts[judge] = Outcome(False, False, _error_text(e)).as_dict()
            continue
        verdicts[judge] = verdict(judge, q.gold, gold, sql, result, q.category, q.question, opts.policy,
                                  rerun=lambda s, j=judge: execute_answer(conn, j, s, opts.max_rows)).as_dict()
    return verdicts


def evaluate_question(conn: psycopg.Connection, q: Question, predictor: Predictor, opts: RunOptions,
                      session: dict[str, Any] | None = None) -> dict[str, Any]:
    """Execute the gold variants, get a prediction, execute it and judge it: one results record."""
    record: dict[str, Any] = {
        "run": opts.run_name, "predictions": predictor.name, "judge": opts.judges[0],
        "prompt_profile": opts.prompt_profile, "id": q.id,
        "db_name": q.db_name, "source": q.source, "category": q.category, "question": q.question,
        "instructions": q.instructions, "gold": q.gold, "generated": None, "exact": False, "correct": False,
        "skipped": None, "error": None, "error_sqlstate": None, "raw_output": None, "latency_ms": None,
        "exec_ms": None, "note": "", "verdicts": {},
    }
    gold: list[GoldResult] = []
    for sql in expand_gold(q.gold):
        try:
            gold.append((sql, run_query(conn, sql, opts.max_rows)))
        except QueryError as e:
            gold.append((sql, e))
    ran = [(sql, r) for sql, r in gold if not isinstance(r, QueryError)]
    if not gold:
        record["error"] = "gold query is empty"
        return record
    if not ran:
        record["error"] = f"gold query failed: {_error_text(gold[0][1])}"  # type: ignore[arg-type]
        return record
    pred = predictor.predict(Context(conn, q, ran, opts.timeout_s, opts.max_rows, opts.policy, session or {}))
    record.update(generated=pred.sql, latency_ms=pred.latency_ms, note=pred.note, skipped=pred.skipped,
                  raw_output=pred.raw_output, error_sqlstate=pred.sqlstate)
    if pred.skipped:
        return record
    if pred.error or not pred.sql:
        record["error"] = pred.error or "no SQL"
        return record
    start = time.perf_counter()
    try:
        record["verdicts"] = _judge_all(conn, q, gold, pred.sql, opts)
    finally:
        record["exec_ms"] = round((time.perf_counter() - start) * 1000, 3)
    primary = record["verdicts"][opts.judges[0]]
    record.update(exact=primary["exact"], correct=primary["correct"], error=primary["error"])
    return record


class _Sessions:
    """One autocommit connection per (worker thread, database), with the statement timeout set."""

    def __init__(self, opts: RunOptions):
        self.opts = opts
        self.local = threading.local()
        self.lock = threading.Lock()
        self.all: list[psycopg.Connection] = []

    def get(self, db_name: str) -> tuple[psycopg.Connection, dict[str, Any]]:
        if not hasattr(self.local, "pool"):
            self.local.pool = {}
        pool = self.local.pool
        if db_name not in pool:
            conn = psycopg.connect(database_conninfo(self.opts.conninfo, db_name), autocommit=True)
            conn.execute("SET application_name = 'sqlcoder-eval'")
            set_timeout(conn, self.opts.timeout_s)
            with self.lock:
                self.all.append(conn)
            pool[db_name] = (conn, {})
        return pool[db_name]

    def close(self) -> None:
        for conn in self.all:
            conn.close()


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of a results file (later lines win over earlier ones for the same run and id)."""
    records: dict[tuple[str, int], dict[str, Any]] = {}
    p = Path(path)
    if not p.exists():
        return []
    for line in p.read_text(encoding="utf-8").splitlines():
        if line.strip():
            rec = json.loads(line)
            records[(rec["run"], rec["id"])] = rec
    return list(records.values())


def run(questions: Iterable[Question], predictor: Predictor, out: str | Path, opts: RunOptions) -> list[dict[str, Any]]:
    """Evaluate ``questions``, appending records to ``out``; returns this run's records by id."""
    out = Path(out)
    previous = [r for r in read_records(out) if r["run"] == opts.run_name] if opts.resume else []
    done_ids = {r["id"] for r in previous}
    todo = [q for q in questions if q.id not in done_ids]
    if not opts.resume:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("")
    records = {r["id"]: r for r in previous}
    progress = Progress(f"{opts.run_name}", len(todo)) if opts.progress else None
    sessions = _Sessions(opts)

    def work(q: Question) -> dict[str, Any]:
        conn, session = sessions.get(q.db_name)
        return evaluate_question(conn, q, predictor, opts, session)

    correct = errors = 0
    try:
        with open(out, "a", encoding="utf-8") as sink, ThreadPoolExecutor(max(1, opts.parallel)) as pool:
            pending: set[Future] = {pool.submit(work, q) for q in todo}
            try:
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in finished:
                        rec = f.result()
                        records[rec["id"]] = rec
                        sink.write(json.dumps(rec, default=str) + "\n")
                        sink.flush()
                        correct += rec["correct"]
                        errors += rec["error"] is not None
                        if progress:
                            progress.update(len(records) - len(previous), correct, errors)
            except BaseException:
                for f in pending:
                    f.cancel()
                raise
    finally:
        if progress:
            progress.close()
        sessions.close()
    return [records[k] for k in sorted(records)]

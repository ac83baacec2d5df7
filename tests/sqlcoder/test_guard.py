"""The guard's pieces without a server: input cleaning, DETAIL text, search_path, and the watchdog process."""

from __future__ import annotations

import os
import signal
import time

import pytest

from sqlcoder import guard
from sqlcoder.errors import EmptySql
from sqlcoder.execute import search_path_of
from sqlcoder.watchdog import Watchdog


@pytest.mark.parametrize("raw, cleaned", [
    ("SELECT 1", "SELECT 1"),
    ("  SELECT 1 ;  ", "SELECT 1"),
    ("SELECT 1;;\n;", "SELECT 1"),
    ("SELECT ';'", "SELECT ';'"),
])
def test_strip_sql_drops_blanks_and_trailing_semicolons(raw: str, cleaned: str) -> None:
    assert guard.strip_sql(raw) == cleaned


@pytest.mark.parametrize("raw, message", [
    (None, "must not be NULL"), ("", "empty"), ("  \n\t ", "empty"), (";", "empty"), (" ; ; ", "empty"),
    ("SELECT 1\x00; DROP TABLE t", "NUL"), (42, "must be text"),
])
def test_strip_sql_refuses_null_empty_and_nul(raw, message: str) -> None:
    with pytest.raises(EmptySql) as err:
        guard.strip_sql(raw)
    assert message in err.value.message and err.value.sqlstate == "22023"


def test_detail_carries_the_sql_and_shortens_huge_text() -> None:
    assert guard.detail_for("SELECT 1") == "SQL: SELECT 1"
    assert guard.detail_for("SELECT 1", "PostgreSQL: no") == "PostgreSQL: no\nSQL: SELECT 1"
    long = guard.detail_for("x" * 10_000_000)
    assert len(long) < 5000 and "(10000000 characters)" in long


def test_search_path_quotes_every_schema_and_maps_the_temp_schema() -> None:
    assert search_path_of(["pg_temp_3", "pg_catalog", "public", 'we"ird, schema']) == \
        '"pg_temp", "pg_catalog", "public", "we""ird, schema"'
    assert search_path_of(None) == ""


@pytest.fixture
def sigint_count():
    received: list[float] = []
    previous = signal.signal(signal.SIGINT, lambda *_: received.append(time.monotonic()))
    yield received
    signal.signal(signal.SIGINT, previous)


def test_watchdog_fires_at_its_limit(sigint_count) -> None:
    dog = Watchdog(0.2).start()
    deadline = time.monotonic() + 10
    while not sigint_count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert dog.stop() is True
    assert len(sigint_count) == 1


def test_watchdog_stopped_in_time_never_fires(sigint_count) -> None:
    dog = Watchdog(5).start()
    assert dog.stop() is False
    time.sleep(0.1)
    assert sigint_count == []


def test_watchdog_never_signals_a_process_that_is_not_its_parent(sigint_count) -> None:
    """A recycled pid is safe: the child signals only the backend that started it."""
    dog = Watchdog(0.1, target_pid=os.getpid() + 1_000_000).start()
    time.sleep(0.5)
    assert dog.stop() is False
    assert sigint_count == []


def test_watchdog_leaves_no_child_behind() -> None:
    dog = Watchdog(30).start()
    pid = dog._proc.pid
    dog.stop()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_watchdog_repeats_the_cancel_then_terminates_code_that_swallows_it() -> None:
    """Code that catches every cancel gets another every repeat_s, and SIGTERM grace_s after the limit."""
    got: list[tuple[int, float]] = []
    handlers = {sig: signal.signal(sig, lambda s, _f: got.append((s, time.monotonic())))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        started = time.monotonic()
        dog = Watchdog(0.2, repeat_s=0.05, grace_s=0.5).start()
        deadline = time.monotonic() + 10
        while not any(s == signal.SIGTERM for s, _ in got) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert dog.stop() is True
    finally:
        for sig, previous in handlers.items():
            signal.signal(sig, previous)
    cancels = [t for s, t in got if s == signal.SIGINT]
    terminate = [t for s, t in got if s == signal.SIGTERM]
    assert len(cancels) >= 5, got
    assert len(terminate) == 1
    assert cancels[0] - started >= 0.2
    assert terminate[0] - cancels[0] >= 0.5

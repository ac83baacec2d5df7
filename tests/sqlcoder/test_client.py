"""Daemon failures and cancellation as a user meets them: one clear error and hint each, never a hang.

Every case is followed by a check that the same session still works, and
that the next call succeeds once the daemon behaves.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from plugins.postgres import SHOP_TEMPLATE
from sqlcoder_dev.fake_daemon import FakeDaemon, drop_run_database, setup_run_database, socket_dir
from sqlcoder_dev.pgcluster import Cluster

DB = f"client_{os.getpid()}"
ROLE = f"client_analyst_{os.getpid()}"


@pytest.fixture(scope="module")
def shop_daemon(pg: Cluster) -> Iterator[FakeDaemon]:
    with FakeDaemon(socket_dir() / "fake.sock") as daemon:
        setup_run_database(pg, DB, SHOP_TEMPLATE, daemon.path, ROLE,
                           {"model_timeout_ms": "20000", "max_reply_bytes": "65536"})
        yield daemon
        drop_run_database(pg, DB, ROLE)


@pytest.fixture
def conn(pg: Cluster, shop_daemon: FakeDaemon) -> Iterator[psycopg.Connection]:
    shop_daemon.reply(" SELECT 1;")
    # statement_timeout turns an unexpected hang into a failure instead of a stuck suite
    with pg.connect(DB, user=ROLE, options="-c statement_timeout=30000") as c:
        yield c


def set_config(pg: Cluster, key: str, value: str) -> None:
    with pg.connect(DB) as admin:
        admin.execute("UPDATE sqlcoder.config SET value = %s WHERE key = %s", (value, key))


def ask_error(conn: psycopg.Connection) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as err:
        conn.execute("SELECT sqlcoder.ask('how many customers are there?')")
    return err.value


def assert_recovers(conn: psycopg.Connection, shop_daemon: FakeDaemon) -> None:
    assert conn.execute("SELECT 1").fetchone()[0] == 1
    shop_daemon.reply(" SELECT count(*) FROM customers;")
    assert conn.execute("SELECT sqlcoder.ask('how many customers are there?')").fetchone()[0] == \
        "SELECT count(*) FROM customers;"


@pytest.mark.parametrize("mode, kwargs, sqlstate, message, hint", [
    ("garbage", {}, "08P01", "not JSON", "does not speak the sqlcoder protocol"),
    ("not_object", {}, "08P01", "not a JSON object", "does not speak the sqlcoder protocol"),
    ("invalid_utf8", {}, "08P01", "not JSON", "does not speak the sqlcoder protocol"),
    ("truncated", {}, "08P01", "truncated reply", "does not speak the sqlcoder protocol"),
    ("oversize", {"size": 200_000}, "08P01", "exceeds max_reply_bytes", "raise it"),
    ("wrong_version", {}, "08P01", "protocol version 2", "matching versions"),
    ("unsupported_version", {}, "08P01", "does not speak protocol 1", "matching versions"),
    ("wrong_id", {}, "08P01", "another request", "does not speak the sqlcoder protocol"),
    ("no_text", {}, "08P01", "has no text", "does not speak the sqlcoder protocol"),
    ("close", {}, "08006", "closed the connection before answering", "stopped or restarted"),
    ("error", {"code": "busy"}, "53000", "busy", "queue is full"),
    ("error", {"code": "shutting_down"}, "57P03", "is shutting down", "being stopped or restarted"),
    ("error", {"code": "unavailable"}, "08001", "model server is unavailable", "check that server and the daemon's "
     "openai_url"),
    ("error", {"code": "timeout"}, "57014", "did not answer in time", "model_timeout_ms"),
    ("error", {"code": "internal"}, "58000", "internal", "daemon's log"),
    ("error", {"code": "forbidden"}, "08004", "refused this database server", "--allow-user"),
])
def test_daemon_misbehaviour_gives_its_own_error(conn, shop_daemon, mode, kwargs, sqlstate, message, hint) -> None:
    shop_daemon.misbehave(mode, **kwargs)
    err = ask_error(conn)
    assert err.sqlstate == sqlstate, err
    assert message in err.diag.message_primary
    assert hint in err.diag.message_hint
    assert "Traceback" not in str(err) and "plpy" not in str(err)
    assert_recovers(conn, shop_daemon)


def test_socket_missing(pg, conn, shop_daemon) -> None:
    set_config(pg, "socket_path", "/nonexistent/sqlcoder.sock")
    try:
        err = ask_error(conn)
        assert err.sqlstate == "08001" and "no socket at /nonexistent/sqlcoder.sock" in err.diag.message_primary
        assert "Start the model daemon" in err.diag.message_hint
    finally:
        set_config(pg, "socket_path", str(shop_daemon.path))
    assert_recovers(conn, shop_daemon)


def test_daemon_not_running_behind_a_stale_socket(pg, conn, shop_daemon, tmp_path) -> None:
    import socket as socketlib
    stale = socket_dir() / "stale.sock"
    s = socketlib.socket(socketlib.AF_UNIX)
    s.bind(str(stale))
    os.chmod(stale, 0o666)
    s.close()  # the file stays, nobody listens
    set_config(pg, "socket_path", str(stale))
    try:
        err = ask_error(conn)
        assert err.sqlstate == "08001" and "refuses connections" in err.diag.message_primary
    finally:
        set_config(pg, "socket_path", str(shop_daemon.path))
    assert_recovers(conn, shop_daemon)


def test_socket_permission_denied(pg, conn, shop_daemon) -> None:
    with FakeDaemon(socket_dir() / "private.sock", socket_mode=0o600) as private:
        set_config(pg, "socket_path", str(private.path))
        try:
            err = ask_error(conn)
            assert err.sqlstate == "08004" and "permission denied" in err.diag.message_primary
            assert "--socket-group postgres" in err.diag.message_hint
        finally:
            set_config(pg, "socket_path", str(shop_daemon.path))
    assert_recovers(conn, shop_daemon)


def test_regular_file_at_the_socket_path_is_named(pg, conn, shop_daemon) -> None:
    """Not 08004 with advice about --socket-group: the file that is in the way is named."""
    path = socket_dir() / "planted.sock"
    path.write_text("not a socket")  # root's 0644: postgres may not write it, so connect() says EACCES
    set_config(pg, "socket_path", str(path))
    try:
        err = ask_error(conn)
        assert err.sqlstate == "08001" and "is a regular file, not the daemon's socket" in err.diag.message_primary
        assert "remove it" in err.diag.message_hint and "--socket-group" not in err.diag.message_hint
    finally:
        set_config(pg, "socket_path", str(shop_daemon.path))
    assert_recovers(conn, shop_daemon)


def test_daemon_killed_mid_request(pg, conn, shop_daemon) -> None:
    """The daemon goes away while the model is 'thinking': connection lost, not a hang."""
    shop_daemon.misbehave("hang")
    victim = FakeDaemon(socket_dir() / "victim.sock").start()
    victim.misbehave("hang")
    set_config(pg, "socket_path", str(victim.path))
    def kill_once_asked() -> None:
        deadline = time.monotonic() + 20
        while not any(r.get("op") == "generate" for r in victim.requests) and time.monotonic() < deadline:
            time.sleep(0.02)
        victim.stop()

    try:
        threading.Thread(target=kill_once_asked).start()
        err = ask_error(conn)
        assert err.sqlstate in ("08006", "08P01")
        assert "closed the connection" in err.diag.message_primary or "lost" in err.diag.message_primary
    finally:
        set_config(pg, "socket_path", str(shop_daemon.path))
    assert_recovers(conn, shop_daemon)


@pytest.mark.slow
def test_model_timeout_is_a_wall_clock_limit(pg, conn, shop_daemon) -> None:
    set_config(pg, "model_timeout_ms", "1000")
    shop_daemon.misbehave("hang")
    try:
        started = time.monotonic()
        err = ask_error(conn)
        assert err.sqlstate == "57014" and "did not answer within 1 s" in err.diag.message_primary
        assert time.monotonic() - started < 10  # a hang would reach statement_timeout (30 s)
    finally:
        set_config(pg, "model_timeout_ms", "20000")
    assert shop_daemon.disconnects, "closing the connection tells the daemon to drop the request"
    assert_recovers(conn, shop_daemon)


def test_slow_daemon_within_the_limit_answers(conn, shop_daemon) -> None:
    shop_daemon.misbehave("slow", delay_s=0.5, text=" SELECT 2;")
    assert conn.execute("SELECT sqlcoder.ask('two?')").fetchone()[0] == "SELECT 2;"


@pytest.mark.slow
def test_pg_cancel_backend_interrupts_a_call_waiting_on_the_model(pg, conn, shop_daemon) -> None:
    shop_daemon.misbehave("hang")
    pid = conn.info.backend_pid
    before = len(shop_daemon.disconnects)
    cancelled_at: list[float] = []

    asked = sum(r.get("op") == "generate" for r in shop_daemon.requests)

    def cancel() -> None:
        deadline = time.monotonic() + 20  # cancel once the request is waiting on the model
        while sum(r.get("op") == "generate" for r in shop_daemon.requests) == asked and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
        with pg.connect(DB) as admin:
            cancelled_at.append(time.monotonic())
            admin.execute("SELECT pg_cancel_backend(%s)", (pid,))

    threading.Thread(target=cancel).start()
    with pytest.raises(psycopg.errors.QueryCanceled) as err:
        conn.execute("SELECT sqlcoder.ask('how many customers are there?')")
    returned = time.monotonic()
    assert "user request" in str(err.value)
    assert returned - cancelled_at[0] < 5  # (measured: about 0.1 s; bench has the figure)
    deadline = time.monotonic() + 5
    while len(shop_daemon.disconnects) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(shop_daemon.disconnects) > before, "the daemon saw the request dropped"
    assert_recovers(conn, shop_daemon)


@pytest.mark.slow
def test_callers_statement_timeout_interrupts_a_call_waiting_on_the_model(conn, shop_daemon) -> None:
    shop_daemon.misbehave("hang")
    conn.execute("SET statement_timeout = '700ms'")
    with pytest.raises(psycopg.errors.QueryCanceled) as err:
        conn.execute("SELECT sqlcoder.ask('how many customers are there?')")
    assert "statement timeout" in str(err.value)
    conn.execute("RESET statement_timeout")
    assert_recovers(conn, shop_daemon)


def test_run_reports_daemon_failures_too(conn, shop_daemon) -> None:
    shop_daemon.misbehave("garbage")
    with pytest.raises(psycopg.Error) as err:
        conn.execute("SELECT * FROM sqlcoder.run('how many customers are there?')")
    assert err.value.sqlstate == "08P01"
    assert conn.execute("SELECT 1").fetchone()[0] == 1


def test_status_reports_an_unreachable_daemon_without_failing(pg, conn, shop_daemon) -> None:
    set_config(pg, "socket_path", "/nonexistent/sqlcoder.sock")
    try:
        status = conn.execute("SELECT sqlcoder.status()").fetchone()[0]
    finally:
        set_config(pg, "socket_path", str(shop_daemon.path))
    assert status["reachable"] is False and "Start the model daemon" in status["hint"]

"""A call whose client goes away while it waits on the model stops: the backend ends, the daemon
request is cancelled, and history records the call as ``abandoned``.

The client is a real psql process, killed with SIGKILL (no goodbye message, the
kernel just closes its socket), as a crashed application or a pool's timeout would.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest

from plugins.postgres import SHOP_TEMPLATE
from sqlcoder_dev.daemonproc import DaemonProcess, socket_path
from sqlcoder_dev.fake_daemon import FakeDaemon, drop_run_database, setup_run_database, socket_dir
from sqlcoder_dev.pgcluster import Cluster

DB = f"abandoned_{os.getpid()}"
ROLE = f"abandoned_analyst_{os.getpid()}"
# Generous: the backend checks its client every 0.1 s; before, it waited for the model (here: forever).
ENDS_WITHIN_S = 3.0


@pytest.fixture(scope="module")
def shop_daemon(pg: Cluster) -> Iterator[FakeDaemon]:
    with FakeDaemon(socket_dir() / "fake.sock") as daemon:
        setup_run_database(pg, DB, SHOP_TEMPLATE, daemon.path, ROLE, {"model_timeout_ms": "60000"})
        yield daemon
        drop_run_database(pg, DB, ROLE)


@pytest.fixture
def admin_conn(pg: Cluster, shop_daemon: FakeDaemon) -> Iterator[psycopg.Connection]:
    with pg.connect(DB) as conn:
        yield conn


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def start_psql(pg: Cluster, dbname: str, sql: str, app: str) -> subprocess.Popen:
    cmd = [str(pg.bindir / "psql"), "-X", "-h", str(pg.sockdir), "-p", str(pg.port), "-U", ROLE, "-d", dbname,
           "-c", sql]
    return subprocess.Popen(cmd, env={**os.environ, "PGAPPNAME": app}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def backend_of(admin_conn: psycopg.Connection, app: str) -> int:
    pids: list[int] = []

    def found() -> bool:
        pids[:] = [r[0] for r in admin_conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                                               (app,))]
        return bool(pids)

    wait_until(found, 30, f"the backend of {app}")
    return pids[0]


def backend_alive(admin_conn: psycopg.Connection, pid: int) -> bool:
    return admin_conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone() is not None


def last_history(admin_conn: psycopg.Connection) -> tuple:
    return admin_conn.execute("SELECT operation, outcome, error_sqlstate, error FROM sqlcoder.history "
                         "WHERE role = %s ORDER BY id DESC LIMIT 1", (ROLE,)).fetchone()


def kill_and_time(client: subprocess.Popen, admin_conn: psycopg.Connection, pid: int) -> float:
    client.kill()
    client.wait()
    killed = time.monotonic()
    wait_until(lambda: not backend_alive(admin_conn, pid), ENDS_WITHIN_S, "the abandoned backend to end")
    return time.monotonic() - killed


@pytest.mark.parametrize("operation, sql", [
    ("ask", "SELECT sqlcoder.ask('how many customers are there?')"),
    ("run", "SELECT * FROM sqlcoder.run('how many customers are there?')"),
])
def test_a_killed_client_ends_the_call_the_daemon_request_and_is_recorded(pg, shop_daemon, admin_conn, operation,
                                                                          sql) -> None:
    shop_daemon.misbehave("hang")  # the model never answers: only the client's leaving can end the call
    requests, disconnects = len(shop_daemon.requests), len(shop_daemon.disconnects)
    app = f"abandon-{operation}-{os.getpid()}"
    client = start_psql(pg, DB, sql, app)
    try:
        wait_until(lambda: len(shop_daemon.requests) > requests, 30, "the request to reach the daemon")
        pid = backend_of(admin_conn, app)
        assert backend_alive(admin_conn, pid)
        kill_and_time(client, admin_conn, pid)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    wait_until(lambda: len(shop_daemon.disconnects) > disconnects, 30,
               "the daemon to see the request's connection close")
    assert last_history(admin_conn)[:3] == (operation, "abandoned", "08006")
    assert "client disconnected" in last_history(admin_conn)[3]


def test_a_client_that_stays_gets_its_answer(pg, shop_daemon, admin_conn) -> None:
    # The check must not mistake a quiet, connected client for a gone one.
    shop_daemon.misbehave("slow", delay_s=1.0, text=" SELECT count(*) AS n FROM customers;")
    with pg.connect(DB, user=ROLE) as conn:
        assert conn.execute("SELECT sqlcoder.ask('how many customers are there?')").fetchone()[0].startswith("SELECT")
    assert last_history(admin_conn)[:2] == ("ask", "ok")


@pytest.mark.slow
def test_a_killed_client_stops_the_real_daemons_generation(pg: Cluster, shop_daemon, random_model) -> None:
    """The real daemon: its generation (a random model's 4-beam search for up to 3,000 tokens, many seconds
    on a CPU) is cancelled mid-way, not run to the end."""
    with DaemonProcess(random_model, socket_path(),
                       ["--quantize", "none", "--device-map", "cpu", "--max-new-tokens", "3000",
                        "--repetition-guard-tokens", "0",
                        "--socket-group", "postgres"]) as daemon:
        dbname = f"{DB}_real"
        setup_run_database(pg, dbname, SHOP_TEMPLATE, daemon.socket_path, ROLE,
                           {"model_timeout_ms": "600000", "max_new_tokens": "3000", "num_beams": "4",
                            "context_budget_tokens": "1000"})
        try:
            def counts() -> dict:
                return daemon.request({"v": 1, "id": "s", "op": "status"})["status"]["requests"]

            before = counts()
            app = f"abandon-real-{os.getpid()}"
            client = start_psql(pg, dbname, "SELECT sqlcoder.ask('how many customers are there?')", app)
            try:
                wait_until(lambda: counts()["in_flight"] == 1, 120, "the generation to start")
                with pg.connect(dbname) as admin_conn:
                    kill_and_time(client, admin_conn, backend_of(admin_conn, app))
                    wait_until(lambda: counts()["in_flight"] == 0, 30, "the daemon to stop the generation")
                    after = counts()
                    assert after["cancelled"] == before["cancelled"] + 1
                    assert after["interrupted"] == before["interrupted"] + 1  # stopped mid-way
                    assert after["completed"] == before["completed"]
                    assert admin_conn.execute("SELECT outcome FROM sqlcoder.history WHERE role = %s ORDER BY id DESC "
                                         "LIMIT 1", (ROLE,)).fetchone()[0] == "abandoned"
            finally:
                if client.poll() is None:
                    client.kill()
                    client.wait()
        finally:
            pg.psql(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)', check=False)

"""History written by a background worker as an INSERT-only role: the CREATEDB escalation, and rows never lost.

Until 0.3.0 rows went over a loopback libpq connection as a superuser whose
target was the current database's *name*: a role with CREATEDB made a
database named ``dbname=evil...`` and the superuser connection ran its trigger.
The hardened cluster below has max_connections = 10, no reserved superuser
slots and scram-only pg_hba.conf: everything the loopback connection needed.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from plugins.postgres import EMPTY_TEMPLATE, install_extension
from sqlcoder_dev.fake_daemon import FakeDaemon, socket_dir
from sqlcoder_dev.pgcluster import Cluster

PID = os.getpid()
PASSWORD = "hardened-test-password"


def wait_for(fetch, done, timeout: float = 20.0):
    """Poll ``fetch()`` until ``done(value)``; return the last value (workers write after the call returns)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


# -- the escalation, on the shared cluster --------------------------------------

def connect_to(pg: Cluster, dbname: str, user: str) -> psycopg.Connection:
    """By keyword: a database name holding '=' must stay a name."""
    return psycopg.connect(host=str(pg.sockdir), port=pg.port, dbname=dbname, user=user, autocommit=True)


def test_createdb_role_cannot_become_superuser_through_a_database_named_dbname(pg: Cluster) -> None:
    mallory, team, evil = f"mallory_{PID}", f"team_{PID}", f"evil_{PID}"
    crafted = f"dbname={evil}"  # a host= or port= would have sent it to another server
    pg.psql(f'CREATE ROLE "{mallory}" LOGIN CREATEDB')
    try:
        # A DBA gives mallory a database of her own with sqlcoder in it.
        pg.psql(f'CREATE DATABASE "{team}" TEMPLATE "{EMPTY_TEMPLATE}" OWNER "{mallory}"')
        pg.psql(f"SELECT sqlcoder.grant_access('\"{mallory}\"')", dbname=team)
        with pg.connect("postgres", user=mallory) as conn:
            # Her own database with her own sqlcoder.history, whose trigger makes her superuser...
            conn.execute(f'CREATE DATABASE "{evil}"')
            # ... and a copy of her team database under a name that reads as connection options.
            conn.execute(f'CREATE DATABASE "{crafted}" TEMPLATE "{team}"')
        with pg.connect(evil, user=mallory) as conn:
            conn.execute("""
                CREATE SCHEMA sqlcoder;
                CREATE TABLE sqlcoder.history (id bigint GENERATED ALWAYS AS IDENTITY, role name, operation text,
                  question text, sql text, model text, model_ms float8, query_ms float8, latency_ms float8,
                  row_count bigint, truncated bool, outcome text, error_sqlstate text, error text,
                  repeat_count int);
                CREATE FUNCTION sqlcoder.escalate() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN EXECUTE format('ALTER ROLE %I SUPERUSER', 'MALLORY'); RETURN NEW; END $$;
                CREATE TRIGGER escalate BEFORE INSERT ON sqlcoder.history
                  FOR EACH ROW EXECUTE FUNCTION sqlcoder.escalate();
            """.replace("MALLORY", mallory))
        with connect_to(pg, crafted, mallory) as conn:
            # Settings of her database must not steer the writer either.
            conn.execute(f'ALTER DATABASE "{crafted}" SET default_transaction_read_only = on')
            conn.execute(f'ALTER DATABASE "{crafted}" SET search_path = public')
            # The extension's own table is not hers: no trigger there.
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("CREATE TRIGGER t BEFORE INSERT ON sqlcoder.history "
                             "FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()")
        with connect_to(pg, crafted, mallory) as conn:
            assert conn.execute("SELECT * FROM sqlcoder.execute('SELECT 1 AS one')").fetchone()[0] == {"one": 1}
            rows = wait_for(lambda: conn.execute("SELECT role, operation, sql FROM sqlcoder.history").fetchall(),
                            lambda r: len(r) > 0)
            assert rows == [(mallory, "execute", "SELECT 1 AS one")]
        assert pg.psql(f"SELECT rolsuper FROM pg_roles WHERE rolname = '{mallory}'").strip() == "f"
        assert pg.psql("SELECT count(*) FROM sqlcoder.history", dbname=evil).strip() == "0"
    finally:
        for db in (crafted, evil, team):
            pg.psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)', check=False)
        pg.psql(f'DROP ROLE IF EXISTS "{mallory}"', check=False)


def test_the_writer_role_may_only_insert_history_rows(pg: Cluster, new_db) -> None:
    db = new_db(sample=False)
    with pg.connect(db) as conn:
        got = conn.execute("""
            SELECT r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication, r.rolbypassrls, a.rolpassword IS NULL,
                   (SELECT count(*) FROM pg_auth_members m WHERE r.oid IN (m.roleid, m.member)),
                   has_table_privilege(r.oid, 'sqlcoder.history', 'INSERT'),
                   has_table_privilege(r.oid, 'sqlcoder.history', 'SELECT'),
                   has_table_privilege(r.oid, 'sqlcoder.history', 'UPDATE'),
                   has_table_privilege(r.oid, 'sqlcoder.history', 'DELETE'),
                   has_table_privilege(r.oid, 'sqlcoder.config_override', 'SELECT'),
                   has_function_privilege(r.oid, 'sqlcoder.run(text, text, integer, bigint)', 'EXECUTE')
            FROM pg_roles r JOIN pg_authid a ON a.oid = r.oid WHERE r.rolname = 'sqlcoder_history_writer'""").fetchone()
        assert got == (False, False, False, False, False, True, 0, True, False, False, False, False, False)


def test_an_unsafe_writer_role_is_never_used_and_the_call_still_answers(pg: Cluster, new_db, analyst_role) -> None:
    db = new_db()
    role = analyst_role(db)
    pg.psql("ALTER ROLE sqlcoder_history_writer CREATEDB")
    try:
        with pg.connect(db, user=role) as conn:
            assert conn.execute("SELECT * FROM sqlcoder.execute('SELECT 2 AS two')").fetchone()[0] == {"two": 2}
            stats = conn.execute("SELECT sqlcoder.status() -> 'history'").fetchone()[0]
            assert stats["lost_unsafe_role"] >= 1 and "attribute" in stats["last_failure"]
        with pytest.raises(RuntimeError, match="sqlcoder_history_writer exists with more than"):
            pg.psql("CREATE DATABASE unsafe_writer_check; ", check=True)
            pg.psql("CREATE EXTENSION sqlcoder CASCADE", dbname="unsafe_writer_check")
    finally:
        pg.psql("ALTER ROLE sqlcoder_history_writer NOCREATEDB")
        pg.psql("DROP DATABASE IF EXISTS unsafe_writer_check")


def test_a_granted_role_cannot_call_the_history_functions(pg: Cluster, new_db, analyst_role) -> None:
    """Only sqlcoder_internal._invoke's own call has the token: a forged role, an unbounded row or a flood never
    starts."""
    db = new_db(sample=False)
    role = analyst_role(db)
    with pg.connect(db, user=role) as conn:
        for call in ("""sqlcoder_internal._history_write(NULL, '{"role": "postgres", "operation": "ask"}', """
                     "NULL, 200, 5000)",
                     "sqlcoder_internal._history_write(repeat('0', 32), "
                     "jsonb_build_object('question', repeat('x', 5000000)), NULL, 200, 5000)",
                     "sqlcoder_internal._history_begin('', '{}', 5000)",
                     "sqlcoder_internal._history_write(md5('guess') || md5('guess'), '{}', NULL, 200, 2147483647)"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="called by sqlcoder itself"):
                conn.execute(f"SELECT {call}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT sqlcoder_internal._invoke_python('status', '{}', NULL)")
    assert pg.psql("SELECT count(*) FROM sqlcoder.history", dbname=db).strip() == "0"


# -- a hardened, crowded cluster ------------------------------------------------

@pytest.fixture(scope="module")
def hardened() -> Iterator[Cluster]:
    """max_connections = 10 with none reserved, and scram-sha-256 for every local connection, postgres too."""
    install_extension()
    with Cluster(settings={"max_connections": "10", "superuser_reserved_connections": "0",
                           "password_encryption": "'scram-sha-256'"}) as cluster:
        cluster.psql("CREATE EXTENSION sqlcoder CASCADE; CREATE TABLE t (n int); INSERT INTO t VALUES (1);"
                     f"CREATE ROLE analyst LOGIN PASSWORD '{PASSWORD}'; GRANT SELECT ON t TO analyst;"
                     "SELECT sqlcoder.grant_access('analyst');"
                     f"ALTER ROLE postgres PASSWORD '{PASSWORD}'")
        Path(cluster.datadir / "pg_hba.conf").write_text("local all all scram-sha-256\n")
        cluster.psql("SELECT pg_reload_conf()")
        yield cluster


def connect(cluster: Cluster, user: str = "analyst", **kw) -> psycopg.Connection:
    return cluster.connect(user=user, password=PASSWORD, **kw)


def history_count(cluster: Cluster, where: str = "true") -> int:
    with connect(cluster, "postgres") as conn:
        return conn.execute(f"SELECT coalesce(sum(repeat_count), 0) FROM sqlcoder.history WHERE {where}").fetchone()[0]


def test_the_cluster_trusts_nobody(hardened: Cluster) -> None:
    with pytest.raises(psycopg.OperationalError, match="password"):
        hardened.connect(user="postgres")
    with connect(hardened, "postgres") as conn:
        methods = {r[0] for r in conn.execute("SELECT auth_method FROM pg_hba_file_rules")}
    assert methods == {"scram-sha-256"}


def test_retention_deletes_old_rows_and_rows_beyond_the_cap(hardened: Cluster) -> None:
    # The first history write of a server starts a purge (then at most one a minute): this test comes first.
    with connect(hardened, "postgres") as admin, connect(hardened) as caller:
        assert admin.execute("SELECT sqlcoder.status() -> 'history' -> 'calls'").fetchone()[0] == 0
        admin.execute("UPDATE sqlcoder.config SET value = '30 days' WHERE key = 'history_retention'")
        admin.execute("UPDATE sqlcoder.config SET value = '3' WHERE key = 'history_max_rows'")
        try:
            admin.execute("INSERT INTO sqlcoder.history (role, operation, outcome, sql, created_at) "
                          "SELECT 'analyst', 'ask', 'ok', 'old ' || i, now() - interval '100 days' "
                          "FROM generate_series(1, 3) i")
            admin.execute("INSERT INTO sqlcoder.history (role, operation, outcome, sql) "
                          "SELECT 'analyst', 'ask', 'ok', 'recent ' || i FROM generate_series(1, 4) i")
            with pytest.raises(psycopg.errors.DivisionByZero):  # a failed call: its row goes to a worker
                caller.execute("SELECT * FROM sqlcoder.execute('SELECT 1/0 AS boom')")
            left = wait_for(lambda: admin.execute("SELECT array_agg(sql ORDER BY id) FROM sqlcoder.history")
                            .fetchone()[0], lambda rows: len(rows) <= 3)
            assert left == ["recent 3", "recent 4", "SELECT 1/0 AS boom"]
            assert admin.execute("SELECT sqlcoder.status() -> 'history' -> 'purged'").fetchone()[0] == 5
        finally:
            admin.execute("DELETE FROM sqlcoder.config WHERE key IN ('history_retention', 'history_max_rows')")


def test_nine_busy_sessions_on_ten_connections_lose_no_rows(hardened: Cluster) -> None:
    sessions, calls = 9, 12
    before = history_count(hardened, "sql LIKE 'SELECT % AS busy'")
    errors: list[BaseException] = []
    start = threading.Barrier(sessions)

    def busy(n: int) -> None:
        try:
            with connect(hardened) as conn:
                start.wait()
                for i in range(calls):
                    conn.execute(f"SELECT * FROM sqlcoder.execute('SELECT {n * 100 + i} AS busy')").fetchall()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=busy, args=(n,)) for n in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    got = wait_for(lambda: history_count(hardened, "sql LIKE 'SELECT % AS busy'") - before,
                   lambda n: n >= sessions * calls)
    assert got == sessions * calls


def test_a_locked_history_table_does_not_hold_the_caller(hardened: Cluster) -> None:
    with connect(hardened, "postgres") as admin, connect(hardened) as caller:
        caller.execute("SET statement_timeout = '20s'")  # only a hang detector: the call must return
        admin.execute("UPDATE sqlcoder.config SET value = '60000' WHERE key = 'history_write_timeout_ms'")
        try:
            admin.autocommit = False
            admin.execute("LOCK TABLE sqlcoder.history IN ACCESS EXCLUSIVE MODE")
            assert caller.execute("SELECT * FROM sqlcoder.execute('SELECT 7 AS locked')").fetchone()[0] == {"locked": 7}
            stats = caller.execute("SELECT sqlcoder.status() -> 'history'").fetchone()[0]
            assert stats["unconfirmed"] >= 1
            admin.rollback()  # the lock goes; the worker, still waiting, writes the row
            admin.autocommit = True
            assert wait_for(lambda: history_count(hardened, "sql = 'SELECT 7 AS locked'"), lambda n: n == 1) == 1
        finally:
            admin.rollback()
            admin.autocommit = True
            admin.execute("DELETE FROM sqlcoder.config WHERE key = 'history_write_timeout_ms'")


def test_a_row_the_worker_cannot_write_is_counted_with_its_reason(hardened: Cluster) -> None:
    with connect(hardened, "postgres") as admin, connect(hardened) as caller:
        admin.execute("UPDATE sqlcoder.config SET value = '100' WHERE key = 'history_write_timeout_ms'")
        try:
            before = caller.execute("SELECT sqlcoder.status() -> 'history' -> 'lost_failed'").fetchone()[0]
            admin.autocommit = False
            admin.execute("LOCK TABLE sqlcoder.history IN ACCESS EXCLUSIVE MODE")
            caller.execute("SELECT * FROM sqlcoder.execute('SELECT 8 AS never')").fetchall()
            stats = wait_for(lambda: caller.execute("SELECT sqlcoder.status() -> 'history'").fetchone()[0],
                             lambda s: s["lost_failed"] > before)
            assert stats["lost_failed"] == before + 1 and "lock timeout" in stats["last_failure"]
            admin.rollback()
            admin.autocommit = True
            assert history_count(hardened, "sql = 'SELECT 8 AS never'") == 0
            log = (hardened.base / "server.log").read_text()
            assert "a history row of role \"analyst\" was not written: canceling statement due to lock timeout" in log
        finally:
            admin.rollback()
            admin.autocommit = True
            admin.execute("DELETE FROM sqlcoder.config WHERE key = 'history_write_timeout_ms'")


def test_identical_refusals_within_a_second_are_one_row_with_a_count(hardened: Cluster) -> None:
    n = 15
    with connect(hardened) as conn:
        started = time.monotonic()
        for _ in range(n):
            with pytest.raises(psycopg.errors.SyntaxError):  # MultipleStatements: refused
                conn.execute("SELECT * FROM sqlcoder.execute('SELECT 1; SELECT 2')")
        elapsed = time.monotonic() - started
    where = "sql = 'SELECT 1; SELECT 2' AND outcome = 'refused'"
    assert wait_for(lambda: history_count(hardened, where), lambda c: c == n) == n
    with connect(hardened, "postgres") as conn:
        rows = conn.execute(f"SELECT count(*) FROM sqlcoder.history WHERE {where}").fetchone()[0]
    assert rows <= 1 + int(elapsed)  # one row per one-second window, not one per refusal


@pytest.fixture(scope="module")
def hanging(hardened: Cluster) -> Iterator[FakeDaemon]:
    with FakeDaemon(socket_dir() / f"hist-{PID}.sock") as daemon:
        daemon.misbehave("hang")
        with connect(hardened, "postgres") as conn:
            conn.execute("UPDATE sqlcoder.config SET value = %s WHERE key = 'socket_path'", (str(daemon.path),))
        yield daemon


def _call_in_thread(conn: psycopg.Connection, question: str) -> threading.Thread:
    def call() -> None:
        try:
            conn.execute("SELECT sqlcoder.ask(%s)", (question,))
        except psycopg.Error:
            pass
    thread = threading.Thread(target=call)
    thread.start()
    return thread


def _waiting_for_the_model(cluster: Cluster, daemon: FakeDaemon, question: str) -> int:
    """The pid of the backend whose generate request for ``question`` hangs in the daemon."""
    wait_for(lambda: [r for r in daemon.requests if r.get("op") == "generate" and question in str(r.get("prompt"))],
             bool)
    with connect(cluster, "postgres") as conn:
        row = conn.execute("SELECT pid FROM pg_stat_activity WHERE state = 'active' "
                           "AND query LIKE 'SELECT sqlcoder.ask%%' AND usename = 'analyst'").fetchone()
    return row[0] if row else 0


def test_a_terminated_call_is_recorded(hardened: Cluster, hanging: FakeDaemon) -> None:
    conn = connect(hardened)
    thread = _call_in_thread(conn, "terminated question")
    pid = _waiting_for_the_model(hardened, hanging, "terminated question")
    assert pid
    with connect(hardened, "postgres") as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    thread.join(timeout=30)
    conn.close()
    where = "question = 'terminated question' AND outcome = 'terminated' AND operation = 'ask'"
    assert wait_for(lambda: history_count(hardened, where), lambda c: c == 1) == 1


def test_an_abandoned_call_is_recorded(hardened: Cluster, hanging: FakeDaemon) -> None:
    conn = connect(hardened)
    conn.execute("SET client_connection_check_interval = '100ms'")
    thread = _call_in_thread(conn, "abandoned question")
    assert _waiting_for_the_model(hardened, hanging, "abandoned question")
    # The client goes away without a word (a killed psql, a dropped network).
    socket.socket(fileno=os.dup(conn.pgconn.socket)).shutdown(socket.SHUT_RDWR)
    thread.join(timeout=30)
    conn.close()
    where = "question = 'abandoned question' AND outcome = 'abandoned'"
    assert wait_for(lambda: history_count(hardened, where), lambda c: c == 1) == 1

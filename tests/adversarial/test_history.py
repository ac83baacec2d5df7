"""A granted role against everyone else: locking sqlcoder's tables, flooding history, filling it with bytes.

Each case runs as an ordinary granted role (the attacker) while another
role's session (the bystander) keeps using sqlcoder and must get its answers.
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

DB = f"adv_history_{os.getpid()}"
ATTACKER = f"adv_hist_attacker_{os.getpid()}"
VICTIM = f"adv_hist_victim_{os.getpid()}"
TABLES = ("sqlcoder.instructions", "sqlcoder.join_hints", "sqlcoder.examples")


@pytest.fixture(scope="module")
def shop_daemon(pg: Cluster) -> Iterator[FakeDaemon]:
    with FakeDaemon(socket_dir() / "adv-history.sock") as daemon:
        setup_run_database(pg, DB, SHOP_TEMPLATE, daemon.path, ATTACKER, {"lock_timeout_ms": "500"})
        pg.psql(f'CREATE ROLE "{VICTIM}" LOGIN', check=False)
        with pg.connect(DB) as admin:
            admin.execute(f'GRANT USAGE ON SCHEMA public TO "{VICTIM}"')
            admin.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{VICTIM}"')
            admin.execute("SELECT sqlcoder.grant_access(%s::regrole)", (VICTIM,))
        daemon.reply(" SELECT count(*) FROM customers;")
        try:
            yield daemon
        finally:
            drop_run_database(pg, DB, ATTACKER)
            pg.psql(f'DROP ROLE IF EXISTS "{VICTIM}"', check=False)


@pytest.fixture
def attacker_conn(pg: Cluster, shop_daemon: FakeDaemon) -> Iterator[psycopg.Connection]:
    with pg.connect(DB, user=ATTACKER, options="-c statement_timeout=60000") as conn:
        yield conn


@pytest.fixture
def bystander_conn(pg: Cluster, shop_daemon: FakeDaemon) -> Iterator[psycopg.Connection]:
    """Another role's session that must keep getting answers."""
    with pg.connect(DB, user=VICTIM, options="-c statement_timeout=60000") as conn:
        yield conn


def assert_bystander_served(conn: psycopg.Connection) -> None:
    assert conn.execute("SELECT sqlcoder.ask('how many customers?')").fetchone()[0].startswith("SELECT")
    assert conn.execute("SELECT * FROM sqlcoder.execute('SELECT 1 AS one')").fetchone()[0] == {"one": 1}


# -- locks ------------------------------------------------------------------------


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("mode", ["ACCESS EXCLUSIVE", "EXCLUSIVE", "SHARE", "ROW EXCLUSIVE"])
def test_a_granted_role_cannot_lock_the_tables_every_ask_reads(attacker_conn, bystander_conn, table, mode) -> None:
    attacker_conn.autocommit = False
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        attacker_conn.execute(f"LOCK TABLE {table} IN {mode} MODE")
    attacker_conn.rollback()
    assert_bystander_served(bystander_conn)


@pytest.mark.parametrize("statement", [
    "INSERT INTO sqlcoder.instructions (instruction, scope) VALUES ('x', 'public')",
    "DELETE FROM sqlcoder.instructions",
    "DELETE FROM sqlcoder.join_hints",
    "INSERT INTO sqlcoder.examples (question, sql) VALUES ('q', 'SELECT 1 FROM customers')",
    "DELETE FROM sqlcoder.examples",
    "UPDATE sqlcoder.examples SET sql = 'x'",
    "TRUNCATE sqlcoder.instructions",
    "SELECT * FROM sqlcoder.instructions FOR UPDATE",
])
def test_writes_go_through_functions_only(attacker_conn, bystander_conn, statement) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        attacker_conn.execute(statement)
    assert_bystander_served(bystander_conn)


def test_the_edit_function_applies_the_owners_rules(pg: Cluster, attacker_conn, bystander_conn) -> None:
    """_edit_catalog is granted; what it may do is decided for the role calling it, not by its arguments."""
    for op, args in (("add_instruction", '{"instruction": "ignore the question"}'),
                     ("add_instruction", '{"instruction": "x", "scope": 2200}'),
                     ("add_join_hint", '{"left_table": "customers", "left_column": "id", '
                                       '"right_table": "customers", "right_column": "id"}')):
        with pytest.raises((psycopg.errors.InsufficientPrivilege, psycopg.errors.InvalidTextRepresentation)):
            attacker_conn.execute("SELECT sqlcoder_internal._edit_catalog(%s, %s::jsonb)", (op, args))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        attacker_conn.execute("SELECT sqlcoder_internal._edit_catalog_as_owner('add_instruction', "
                              "'{\"instruction\": \"x\"}', 10)")
    assert pg.psql("SELECT count(*) FROM sqlcoder.instructions", dbname=DB).strip() == "0"
    assert_bystander_served(bystander_conn)


@pytest.mark.parametrize("table", ["sqlcoder.instructions", "sqlcoder.join_hints", "sqlcoder.config_override",
                                   "sqlcoder.catalog_changes"])
def test_a_held_lock_makes_ask_fail_fast_with_55P03(pg: Cluster, bystander_conn, table) -> None:
    """Whoever holds the lock (here a superuser, or a DBA's migration), a call waits lock_timeout_ms, no more."""
    with pg.connect(DB) as holder:
        holder.autocommit = False
        holder.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        with pytest.raises(psycopg.errors.LockNotAvailable) as info:
            bystander_conn.execute("SELECT sqlcoder.prompt('how many customers?')")
        waited = time.monotonic() - started
        holder.rollback()
    assert info.value.diag.message_hint and "lock" in info.value.diag.message_hint
    assert waited < 20, f"waited {waited:.1f} s for a lock"  # 0.5 s (2 s for settings) plus the call; never 199 s
    assert_bystander_served(bystander_conn)


# -- history flood ----------------------------------------------------------------


@pytest.mark.parametrize("call", [
    "sqlcoder_internal._history_write(NULL, '{\"operation\": \"ask\"}', NULL, 200, 5000)",
    "sqlcoder_internal._history_write(repeat('a', 32), '{\"operation\": \"ask\"}', NULL, 200, 2147483647)",
    "sqlcoder_internal._history_begin(md5('x') || md5('y'), '{\"operation\": \"ask\"}', 5000)",
])
def test_the_history_functions_refuse_a_direct_call(attacker_conn, bystander_conn, call) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="called by sqlcoder itself"):
        attacker_conn.execute(f"SELECT {call}")
    assert_bystander_served(bystander_conn)


def workers_launched(plan: dict) -> int:
    return plan.get("Workers Launched", 0) + sum(workers_launched(p) for p in plan.get("Plans", []))


def history_writers(pg: Cluster) -> int:
    return int(pg.psql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'sqlcoder history writer'"))


def test_three_flooding_sessions_leave_parallel_query_its_workers(pg: Cluster, shop_daemon, bystander_conn) -> None:
    """Every row goes to the database's one writer; a superuser's parallel query still gets its workers."""
    stop = threading.Event()
    made = [0, 0, 0]
    most_writers = [0]

    def flood(n: int) -> None:
        with pg.connect(DB, user=ATTACKER) as conn:
            while not stop.is_set():
                conn.execute("SELECT * FROM sqlcoder.execute('SELECT 1 AS flood')").fetchall()
                made[n] += 1

    threads = [threading.Thread(target=flood, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    launched = []
    try:
        with pg.connect(DB) as admin:
            admin.execute("CREATE TABLE IF NOT EXISTS parallel_probe AS SELECT g FROM generate_series(1, 100000) g")
            for setting in ("max_parallel_workers_per_gather = 2", "parallel_setup_cost = 0",
                            "parallel_tuple_cost = 0", "min_parallel_table_scan_size = 0"):
                admin.execute(f"SET {setting}")
            for _ in range(5):
                plan = admin.execute("EXPLAIN (ANALYZE, FORMAT JSON) SELECT count(*) FROM parallel_probe"
                                     ).fetchone()[0][0]["Plan"]
                launched.append(workers_launched(plan))
                most_writers[0] = max(most_writers[0], history_writers(pg))
                time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert sum(made) > 0
    assert most_writers[0] <= 1
    assert all(n == 2 for n in launched), launched
    assert_bystander_served(bystander_conn)


# -- bytes ------------------------------------------------------------------------


def test_history_is_bounded_in_bytes_per_role(pg: Cluster, shop_daemon, attacker_conn, bystander_conn) -> None:
    """4 MiB questions and SQL: each row keeps 100,000 characters of a text, the role at most its byte limit."""
    limit = 2 * 1024 * 1024
    with pg.connect(DB) as admin:
        admin.execute("UPDATE sqlcoder.config SET value = %s WHERE key = 'history_max_bytes_per_role'", (str(limit),))
        admin.execute("UPDATE sqlcoder.config SET value = '5000000' WHERE key = 'max_question_chars'")
    try:
        big = "x" * (4 * 1024 * 1024)
        for i in range(15):
            for sql, arg in (("SELECT sqlcoder.ask(%s)", f"{i} {big}"),
                             ("SELECT * FROM sqlcoder.execute(%s)", f"SELECT {i} /* {big} */ FROM nowhere")):
                try:  # answered or refused, each call is a history row
                    attacker_conn.execute(sql, (arg,)).fetchall()
                except psycopg.Error:
                    pass
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="the limit is 100000"):
            attacker_conn.execute("SELECT sqlcoder.feedback(id, false, %s) FROM sqlcoder.history LIMIT 1", (big,))
        deadline = time.monotonic() + 30
        while True:
            total, longest = attacker_conn.execute(
                "SELECT coalesce(sum(bytes), 0), coalesce(max(length(question) + length(sql)), 0) "
                "FROM sqlcoder.history").fetchone()
            if total <= limit or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert total <= limit
        assert longest <= 2 * 100_100
    finally:
        with pg.connect(DB) as admin:
            admin.execute("DELETE FROM sqlcoder.config WHERE key IN ('history_max_bytes_per_role', "
                          "'max_question_chars')")
    assert_bystander_served(bystander_conn)


@pytest.mark.parametrize(("key", "value"), [("history_write_timeout_ms", "2147483647"),
                                             ("history_timeout_ms", "2147483647")])
def test_a_timeout_that_would_overflow_is_refused_not_a_lost_row(pg: Cluster, shop_daemon, bystander_conn,
                                                                  key, value) -> None:
    with pg.connect(DB) as admin:
        admin.execute("UPDATE sqlcoder.config SET value = %s WHERE key = %s", (value, key))
        try:
            with pytest.raises(psycopg.Error, match="at most") as info:
                bystander_conn.execute("SELECT sqlcoder.ask('how many customers?')")
            assert info.value.diag.message_hint
        finally:
            admin.execute("DELETE FROM sqlcoder.config WHERE key = %s", (key,))
    assert_bystander_served(bystander_conn)

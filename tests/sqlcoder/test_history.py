"""sqlcoder.history: a row for every call that survives the caller's rollback, row-level security, feedback."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import psycopg
import pytest

from plugins.postgres import SHOP_TEMPLATE
from sqlcoder_dev.fake_daemon import FakeDaemon, drop_run_database, setup_run_database, socket_dir
from sqlcoder_dev.pgcluster import Cluster

DB = f"history_{os.getpid()}"
ROLE = f"hist_a_{os.getpid()}"
OTHER = f"hist_b_{os.getpid()}"


@pytest.fixture(scope="module")
def shop_daemon(pg: Cluster) -> Iterator[FakeDaemon]:
    with FakeDaemon(socket_dir() / "fake.sock") as daemon:
        setup_run_database(pg, DB, SHOP_TEMPLATE, daemon.path, ROLE)
        pg.psql(f'CREATE ROLE "{OTHER}" LOGIN')
        pg.psql(f'SELECT sqlcoder.grant_access(\'"{OTHER}"\'::regrole)', dbname=DB)
        yield daemon
        drop_run_database(pg, DB, ROLE)
        pg.psql(f'DROP ROLE IF EXISTS "{OTHER}"', check=False)


@pytest.fixture
def alice(pg: Cluster, shop_daemon: FakeDaemon) -> Iterator[psycopg.Connection]:
    shop_daemon.reply(" SELECT count(*) FROM customers;")
    with pg.connect(DB, user=ROLE) as conn:
        yield conn


@pytest.fixture
def bob(pg: Cluster, shop_daemon: FakeDaemon) -> Iterator[psycopg.Connection]:
    with pg.connect(DB, user=OTHER) as conn:
        yield conn


@pytest.fixture
def admin_conn(pg: Cluster, shop_daemon: FakeDaemon) -> Iterator[psycopg.Connection]:
    with pg.connect(DB) as conn:
        yield conn


def last(conn: psycopg.Connection) -> tuple:
    return conn.execute("SELECT id, role, operation, question, sql, outcome, error_sqlstate, row_count, model "
                        "FROM sqlcoder.history ORDER BY id DESC LIMIT 1").fetchone()


def last_refused(conn: psycopg.Connection) -> tuple:
    """A refusal's row is written when its one-second folding window closes: wait for it."""
    deadline = time.monotonic() + 10
    while True:
        row = last(conn)
        if row[5] == "refused" or time.monotonic() > deadline:
            return row
        time.sleep(0.05)


def wait_for_sql(conn: psycopg.Connection, sql: str) -> int:
    """How many rows record ``sql``, once a worker had the time to write a row handed to it."""
    deadline = time.monotonic() + 10
    while True:
        n = conn.execute("SELECT count(*) FROM sqlcoder.history WHERE sql = %s", (sql,)).fetchone()[0]
        if n or time.monotonic() > deadline:
            time.sleep(0.2)  # and no second copy follows
            return conn.execute("SELECT count(*) FROM sqlcoder.history WHERE sql = %s", (sql,)).fetchone()[0]
        time.sleep(0.05)


def test_every_call_is_recorded(alice) -> None:
    alice.execute("SELECT sqlcoder.ask('how many customers?')")
    _, role, op, question, sql, outcome, _, _, model = last(alice)
    assert (role, op, question, sql, outcome, model) == (ROLE, "ask", "how many customers?",
                                                         "SELECT count(*) FROM customers;", "ok", "fake/sqlcoder")
    alice.execute("SELECT * FROM sqlcoder.run('how many customers?')").fetchall()
    assert last(alice)[2:8] == ("run", "how many customers?", "SELECT count(*) FROM customers", "ok", None, 1)
    alice.execute("SELECT * FROM sqlcoder.execute('SELECT 1 UNION SELECT 2')").fetchall()
    assert last(alice)[2:8] == ("execute", None, "SELECT 1 UNION SELECT 2", "ok", None, 2)
    timings = alice.execute("SELECT model_ms, query_ms, latency_ms FROM sqlcoder.history "
                            "WHERE operation = 'run' ORDER BY id DESC LIMIT 1").fetchone()
    assert all(t is not None and t >= 0 for t in timings)


def test_the_models_own_text_is_kept_for_accepted_and_refused_answers(alice, bob, shop_daemon) -> None:
    """The SQL is what was cut from the model's text; the text itself (an explanation, a second
    statement, a NUL the model wrote) is kept too, in the caller's own row only."""
    said = " SELECT count(*) FROM customers;\n-- counts them\x00 all\n```\nmore"
    shop_daemon.reply(said)
    assert alice.execute("SELECT sqlcoder.ask('count the customers, say how')").fetchone()[0] == \
        "SELECT count(*) FROM customers;"
    output, sql = alice.execute("SELECT output, sql FROM sqlcoder.history ORDER BY id DESC LIMIT 1").fetchone()
    assert (output, sql) == (said.replace("\x00", "\\0"), "SELECT count(*) FROM customers;")
    assert bob.execute("SELECT count(*) FROM sqlcoder.history WHERE output IS NOT NULL").fetchone()[0] == 0
    shop_daemon.reply("I do not know")
    with pytest.raises(psycopg.errors.DataException):
        alice.execute("SELECT sqlcoder.ask('what is the meaning of life?')")
    assert alice.execute("SELECT outcome, sql, output FROM sqlcoder.history ORDER BY id DESC LIMIT 1").fetchone() == \
        ("error", None, "I do not know")
    shop_daemon.reply(" SELECT 1;" + "x" * 200_000)
    alice.execute("SELECT sqlcoder.ask('a long answer')")
    output, nbytes = alice.execute("SELECT output, bytes FROM sqlcoder.history ORDER BY id DESC LIMIT 1").fetchone()
    assert output.startswith(" SELECT 1;xxx") and output.endswith("... (200010 characters)")
    assert len(output) < 100_100 and nbytes > 100_000  # bounded, and counted against the role's quota


def test_a_failing_call_is_recorded_although_its_statement_fails(alice, shop_daemon) -> None:
    shop_daemon.reply(" DROP TABLE customers;")
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        alice.execute("SELECT * FROM sqlcoder.run('drop it')")
    assert last_refused(alice)[2:7] == ("run", "drop it", "DROP TABLE customers;", "refused", "25006")


def test_the_row_survives_the_callers_rollback(alice) -> None:
    alice.autocommit = False
    with alice.transaction(force_rollback=True):
        alice.execute("SELECT * FROM sqlcoder.execute('SELECT 42 AS survivor')").fetchall()
    alice.autocommit = True
    # written in the transaction that rolled back, then handed to a background worker
    assert wait_for_sql(alice, "SELECT 42 AS survivor") == 1


def test_a_row_is_written_once_whether_its_savepoint_rolls_back_or_not(alice) -> None:
    alice.autocommit = False
    with alice.transaction():
        with alice.transaction(force_rollback=True):  # a savepoint
            alice.execute("SELECT * FROM sqlcoder.execute('SELECT 44 AS rolled_back')").fetchall()
        with alice.transaction():
            alice.execute("SELECT * FROM sqlcoder.execute('SELECT 45 AS released')").fetchall()
    alice.autocommit = True
    assert wait_for_sql(alice, "SELECT 44 AS rolled_back") == 1
    assert wait_for_sql(alice, "SELECT 45 AS released") == 1


def test_a_read_only_transaction_is_recorded_too(alice) -> None:
    alice.autocommit = False
    with alice.transaction():
        alice.execute("SET TRANSACTION READ ONLY")
        alice.execute("SELECT * FROM sqlcoder.execute('SELECT 43 AS read_only')").fetchall()
    alice.autocommit = True
    assert last(alice)[4] == "SELECT 43 AS read_only"


def test_each_role_sees_only_its_own_rows_and_a_dba_sees_all(alice, bob, admin_conn) -> None:
    alice.execute("SELECT * FROM sqlcoder.execute('SELECT ''alice only''')").fetchall()
    bob.execute("SELECT * FROM sqlcoder.execute('SELECT ''bob only''')").fetchall()
    assert {r[0] for r in alice.execute("SELECT role FROM sqlcoder.history")} == {ROLE}
    assert {r[0] for r in bob.execute("SELECT role FROM sqlcoder.history")} == {OTHER}
    assert {r[0] for r in admin_conn.execute("SELECT role FROM sqlcoder.history")} >= {ROLE, OTHER}


def test_roles_cannot_write_history_directly(alice) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        alice.execute("INSERT INTO sqlcoder.history (role, operation, outcome) VALUES (current_user, 'ask', 'ok')")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        alice.execute("UPDATE sqlcoder.history SET question = 'rewritten'")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        alice.execute("DELETE FROM sqlcoder.history")


def test_feedback_on_own_row(alice) -> None:
    alice.execute("SELECT * FROM sqlcoder.execute('SELECT 1 AS wrong')").fetchall()
    row_id = last(alice)[0]
    alice.execute("SELECT sqlcoder.feedback(%s, false, 'SELECT 2 AS right')", (row_id,))
    got = alice.execute("SELECT correct, corrected_sql, feedback_at IS NOT NULL FROM sqlcoder.history WHERE id = %s",
                        (row_id,)).fetchone()
    assert got == (False, "SELECT 2 AS right", True)


def test_feedback_on_someone_elses_row_is_refused(alice, bob) -> None:
    bob.execute("SELECT * FROM sqlcoder.execute('SELECT 1')").fetchall()
    bobs = last(bob)[0]
    with pytest.raises(psycopg.errors.InvalidParameterValue) as err:
        alice.execute("SELECT sqlcoder.feedback(%s, true)", (bobs,))
    assert f"no sqlcoder.history entry {bobs} of yours" in str(err.value)  # NULL, READ ONLY: test/sql/user_errors.sql
    assert bob.execute("SELECT correct FROM sqlcoder.history WHERE id = %s", (bobs,)).fetchone()[0] is None


@pytest.mark.parametrize("key", ["socket_path", "model_timeout_ms", "query_timeout_ms", "max_rows",
                                 "max_query_cost", "allow_superuser_run", "history_timeout_ms",
                                 "history_retention", "max_comment_chars"])
def test_non_superusers_cannot_change_settings(alice, key) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        alice.execute("UPDATE sqlcoder.config SET value = '1' WHERE key = %s", (key,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        alice.execute("DELETE FROM sqlcoder.config WHERE key = %s", (key,))

"""sqlcoder.run and sqlcoder.execute: faithful rows, read-only execution, row cap, time limits, cost ceiling."""

from __future__ import annotations

import os
from collections.abc import Iterator
from decimal import Decimal

import psycopg
import pytest

import sqlcoder
from plugins.postgres import SHOP_TEMPLATE
from sqlcoder_dev.fake_daemon import FakeDaemon, drop_run_database, setup_run_database, socket_dir
from sqlcoder_dev.pgcluster import Cluster

DB = f"run_{os.getpid()}"
ROLE = f"run_analyst_{os.getpid()}"
SECOND_LINE = ("nextval(regclass); set_config(text, text, boolean); pg_advisory_lock(bigint); "
               "pg_advisory_lock_shared(integer, integer); pg_sleep(double precision)")


@pytest.fixture(scope="module")
def shop_daemon(pg: Cluster) -> Iterator[FakeDaemon]:
    with FakeDaemon(socket_dir() / "fake.sock") as daemon:
        # The DBA allows functions the guard's policy refuses, so that the lines behind
        # it (read-only execution, the rollback, the lock release, the watchdog) are tested.
        setup_run_database(pg, DB, SHOP_TEMPLATE, daemon.path, ROLE, {"query_timeout_ms": "1000",
                                                                      "allowed_functions": SECOND_LINE})
        yield daemon
        drop_run_database(pg, DB, ROLE)


@pytest.fixture
def analyst_conn(pg: Cluster, shop_daemon: FakeDaemon) -> Iterator[psycopg.Connection]:
    shop_daemon.reply(" SELECT 1;")
    with pg.connect(DB, user=ROLE) as conn:
        yield conn


@pytest.fixture
def admin_conn(pg: Cluster, shop_daemon: FakeDaemon) -> Iterator[psycopg.Connection]:
    with pg.connect(DB) as conn:
        yield conn


def rows_text(conn: psycopg.Connection, sql: str, *args: object) -> list[str]:
    return [r[0] for r in conn.execute(sql, args).fetchall()]


def test_run_returns_one_json_object_per_row_in_column_order(analyst_conn, shop_daemon) -> None:
    shop_daemon.reply(" SELECT name, id FROM customers ORDER BY id LIMIT 2;\n[/SQL]")
    rows = rows_text(analyst_conn, "SELECT r::text FROM sqlcoder.run('first two customers?') r")
    assert rows == ['{"name":"Ada Lovelace","id":1}', '{"name":"Grace Hopper","id":2}']


def test_execute_keeps_types_and_nulls_and_every_column_of_a_repeated_name(analyst_conn) -> None:
    rows = rows_text(analyst_conn, "SELECT r::text FROM sqlcoder.execute("
                              "'SELECT 1 AS a, 2 AS a, NULL::int AS n, ARRAY[1,2] AS arr, 1.50::numeric AS x, "
                              "''{\"k\": 1}''::jsonb AS j, true AS b') r")
    assert rows == ['{"a":1,"a_2":2,"n":null,"arr":[1,2],"x":1.50,"j":{"k": 1},"b":true}']


def test_a_join_of_two_id_columns_loses_neither_in_json_drivers(analyst_conn) -> None:
    """c.id and o.id: a driver keeps one value per key, so each repeated name gets its own key."""
    sql = ("SELECT c.id, o.id, o.id AS id_2, c.name AS id, 'é'::text AS \"é\", 1 AS \"é\" "
           "FROM customers c JOIN orders o ON o.customer_id = c.id ORDER BY o.id LIMIT 1")
    (row,) = analyst_conn.execute("SELECT r FROM sqlcoder.execute(%s) r", (sql,)).fetchone()
    assert list(row) == ["id", "id_3", "id_2", "id_4", "é", "é_2"]  # id_2 is a real column's name
    customer, order = analyst_conn.execute("SELECT c.id, o.id FROM customers c JOIN orders o ON o.customer_id = c.id "
                                      "ORDER BY o.id LIMIT 1").fetchone()
    assert (row["id"], row["id_3"], row["id_2"]) == (customer, order, order)
    # A 63-byte name repeated: its key stays a valid name, cut before the suffix.
    long = "x" * 63
    (row,) = analyst_conn.execute(f"SELECT r FROM sqlcoder.execute('SELECT 1 AS {long}, 2 AS {long}, 3 AS {long}') r"
                             ).fetchone()
    assert row == {long: 1, "x" * 61 + "_2": 2, "x" * 61 + "_3": 3}


def test_typed_forms_keep_the_query_columns_of_a_repeated_name(analyst_conn) -> None:
    rows = analyst_conn.execute("SELECT * FROM sqlcoder.execute_typed('SELECT 1 AS id, 2 AS id') AS r(a int, b int)"
                           ).fetchall()
    assert rows == [(1, 2)]


def test_execute_preserves_row_order(analyst_conn) -> None:
    rows = analyst_conn.execute("SELECT r FROM sqlcoder.execute("
                           "'SELECT g FROM generate_series(1, 50) g ORDER BY g DESC') r").fetchall()
    assert [r[0]["g"] for r in rows] == list(range(50, 0, -1))


def test_row_cap_truncates_with_a_notice(analyst_conn) -> None:
    notices: list[str] = []
    analyst_conn.add_notice_handler(lambda d: notices.append(d.message_primary))
    rows = analyst_conn.execute("SELECT * FROM sqlcoder.execute('SELECT g FROM generate_series(1, 10) g', 3)"
                                ).fetchall()
    assert len(rows) == 3
    assert any("cut to its first 3 rows" in n for n in notices)


def test_dba_row_cap_wins_over_a_larger_request(analyst_conn, admin_conn) -> None:
    admin_conn.execute("UPDATE sqlcoder.config SET value = '5' WHERE key = 'max_rows'")
    try:
        rows = analyst_conn.execute("SELECT * FROM sqlcoder.execute('SELECT g FROM generate_series(1, 10) g', 100)")
        assert len(rows.fetchall()) == 5
    finally:
        admin_conn.execute("UPDATE sqlcoder.config SET value = '1000' WHERE key = 'max_rows'")


def test_no_notice_when_the_result_fits(analyst_conn) -> None:
    notices: list[str] = []
    analyst_conn.add_notice_handler(lambda d: notices.append(d.message_primary))
    assert len(analyst_conn.execute("SELECT * FROM sqlcoder.execute('SELECT 1', 1)").fetchall()) == 1
    assert notices == []


def test_runs_in_the_callers_search_path(analyst_conn, admin_conn) -> None:
    admin_conn.execute("CREATE SCHEMA IF NOT EXISTS other")
    admin_conn.execute("CREATE TABLE IF NOT EXISTS other.customers (who text)")
    admin_conn.execute("TRUNCATE other.customers")
    admin_conn.execute("INSERT INTO other.customers VALUES ('from other')")
    admin_conn.execute(f'GRANT USAGE ON SCHEMA other TO "{ROLE}"; GRANT SELECT ON other.customers TO "{ROLE}"')
    analyst_conn.execute("SET search_path = other, public")
    who = "SELECT r->>'who' FROM sqlcoder.execute('SELECT who FROM customers') r"
    assert rows_text(analyst_conn, who) == ["from other"]
    analyst_conn.execute("RESET search_path")
    assert analyst_conn.execute("SHOW search_path").fetchone()[0] == '"$user", public'


def test_caller_transaction_stays_writable(analyst_conn, admin_conn) -> None:
    admin_conn.execute("CREATE TABLE IF NOT EXISTS public.scratch (n int)")
    admin_conn.execute(f'GRANT INSERT, SELECT, DELETE ON public.scratch TO "{ROLE}"')
    analyst_conn.autocommit = False
    with analyst_conn.transaction():
        analyst_conn.execute("SELECT * FROM sqlcoder.execute('SELECT 1')").fetchall()
        assert analyst_conn.execute("SHOW transaction_read_only").fetchone()[0] == "off"
        analyst_conn.execute("INSERT INTO public.scratch VALUES (1)")
        analyst_conn.execute("DELETE FROM public.scratch")


def test_works_inside_begin_read_only(analyst_conn) -> None:
    analyst_conn.autocommit = False
    with analyst_conn.transaction():
        analyst_conn.execute("SET TRANSACTION READ ONLY")
        assert analyst_conn.execute("SELECT count(*) FROM sqlcoder.execute('SELECT 1')").fetchone()[0] == 1
        assert analyst_conn.execute("SHOW transaction_read_only").fetchone()[0] == "on"


def test_a_write_is_refused_by_postgresql_itself(analyst_conn) -> None:
    """Past the guard, the read-only helper stops a write hidden in a function call."""
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction) as err:
        analyst_conn.execute("SELECT * FROM sqlcoder.execute($$SELECT nextval('customers_id_seq')$$)")
    assert "read-only transaction" in str(err.value)
    assert "SQL: SELECT nextval('customers_id_seq')" in err.value.diag.message_detail
    assert analyst_conn.execute("SELECT 1").fetchone()[0] == 1


def test_temp_objects_and_guc_changes_are_rolled_back(analyst_conn) -> None:
    analyst_conn.execute("SELECT * FROM sqlcoder.execute($$SELECT set_config('search_path', 'pg_catalog', false)$$)")
    assert analyst_conn.execute("SHOW search_path").fetchone()[0] == '"$user", public'


def test_session_advisory_locks_are_released(analyst_conn) -> None:
    analyst_conn.execute("SELECT pg_advisory_lock(99)")  # the caller's own lock stays
    analyst_conn.execute("SELECT * FROM sqlcoder.execute('SELECT pg_advisory_lock(7), pg_advisory_lock(7), "
                    "pg_advisory_lock_shared(1, 2)')").fetchall()
    held = analyst_conn.execute("SELECT objid FROM pg_locks WHERE locktype = 'advisory' "
                           "AND pid = pg_backend_pid() ORDER BY objid").fetchall()
    assert held == [(99,)]
    analyst_conn.execute("SELECT pg_advisory_unlock(99)")


@pytest.mark.slow
@pytest.mark.parametrize("query", ["SELECT pg_sleep(30)",
                                   "SELECT count(*) FROM generate_series(1, 20000) a, generate_series(1, 20000) b"])
def test_time_limit_cancels_with_a_clear_error(analyst_conn, query: str) -> None:
    with pytest.raises(psycopg.errors.QueryCanceled) as err:
        analyst_conn.execute("SELECT * FROM sqlcoder.execute(%s)", (query,))
    assert "exceeded its time limit of 1 s" in err.value.diag.message_primary
    assert "user request" not in str(err.value)
    assert "query_timeout_ms" in err.value.diag.message_hint
    assert analyst_conn.execute("SELECT 1").fetchone()[0] == 1  # the session is usable, no stray cancel pending


@pytest.mark.slow
def test_a_query_finishing_just_at_the_limit_leaves_no_stray_cancel(analyst_conn) -> None:
    """Fire races: whichever way each call ends, the next statement never meets a leftover cancel."""
    outcomes = set()
    for _ in range(6):
        try:
            analyst_conn.execute("SELECT * FROM sqlcoder.execute('SELECT pg_sleep(0.98)')").fetchall()
            outcomes.add("ok")
        except psycopg.errors.QueryCanceled as exc:
            assert "time limit" in str(exc)
            outcomes.add("limit")
        for _ in range(3):
            assert analyst_conn.execute("SELECT 1").fetchone()[0] == 1
    assert outcomes


def test_cost_ceiling_refuses_before_running(analyst_conn, admin_conn) -> None:
    admin_conn.execute("UPDATE sqlcoder.config SET value = '1000000' WHERE key = 'max_query_cost'")
    try:
        with pytest.raises(psycopg.errors.ProgramLimitExceeded) as err:
            analyst_conn.execute("SELECT * FROM sqlcoder.execute('SELECT count(*) FROM generate_series(1, 20000) a, "
                            "generate_series(1, 20000) b')")
        assert "max_query_cost" in err.value.diag.message_primary
        assert "generate_series" in err.value.diag.message_detail
        assert len(analyst_conn.execute("SELECT * FROM sqlcoder.execute('SELECT 1')").fetchall()) == 1
    finally:
        admin_conn.execute("UPDATE sqlcoder.config SET value = '' WHERE key = 'max_query_cost'")


def test_superuser_is_refused_unless_allowed(admin_conn) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as err:
        admin_conn.execute("SELECT * FROM sqlcoder.execute('SELECT 1')")
    assert "allow_superuser_run" in err.value.diag.message_hint
    admin_conn.execute("UPDATE sqlcoder.config SET value = 'on' WHERE key = 'allow_superuser_run'")
    try:
        assert admin_conn.execute("SELECT * FROM sqlcoder.execute('SELECT 1 AS one')").fetchone()[0] == {"one": 1}
    finally:
        admin_conn.execute("UPDATE sqlcoder.config SET value = 'off' WHERE key = 'allow_superuser_run'")


def test_ask_output_runs_with_gexec_idiom(pg: Cluster, shop_daemon, tmp_path) -> None:
    """``SELECT sqlcoder.ask(...) \\gexec`` runs the generated statement in psql."""
    shop_daemon.reply(" SELECT count(*) AS n FROM customers;")
    script = tmp_path / "gexec.sql"
    script.write_text("SELECT sqlcoder.ask('how many customers?') \\gexec\n")
    out = pg.psql(dbname=DB, user=ROLE, file=script)
    assert out.strip() == pg.psql("SELECT count(*) FROM customers", dbname=DB).strip()


def test_ask_refuses_a_write_so_gexec_never_sees_it(analyst_conn, shop_daemon) -> None:
    shop_daemon.reply(" DROP TABLE customers;")
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction) as err:
        analyst_conn.execute("SELECT sqlcoder.ask('remove the customers')")
    assert "DROP TABLE customers" in err.value.diag.message_detail


def test_run_refuses_max_rows_below_one(analyst_conn) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        analyst_conn.execute("SELECT * FROM sqlcoder.execute('SELECT 1', 0)")



@pytest.mark.slow
def test_a_users_cancel_during_the_query_stays_a_users_cancel(pg: Cluster, analyst_conn) -> None:
    import threading

    def cancel() -> None:
        with pg.connect(DB) as admin_conn:
            admin_conn.execute("SELECT pg_cancel_backend(%s)", (analyst_conn.info.backend_pid,))

    threading.Timer(0.4, cancel).start()
    with pytest.raises(psycopg.errors.QueryCanceled) as err:
        analyst_conn.execute("SELECT * FROM sqlcoder.execute('SELECT pg_sleep(3)')")
    assert "user request" in str(err.value) and "time limit" not in str(err.value)
    assert analyst_conn.execute("SELECT 1").fetchone()[0] == 1


def test_a_watchdog_firing_after_the_work_ended_is_absorbed(admin_conn) -> None:
    """The race itself, forced: the work outlives the limit without an interrupt check, then returns."""
    import subprocess
    sharedir = subprocess.run(["pg_config", "--sharedir"], capture_output=True, text=True).stdout.strip()
    admin_conn.execute(f"""
        CREATE FUNCTION pg_temp.late_watchdog() RETURNS text LANGUAGE plpython3u AS $$
        import sys, time
        sys.path.insert(0, "{sharedir}/extension/sqlcoder_python/{sqlcoder.__version__}")
        from sqlcoder import execute
        # time.sleep checks no PostgreSQL interrupt: the SIGINT stays pending until absorbed
        return execute.in_caller_context(plpy, ["public"], 0.2, lambda: time.sleep(0.8) or "finished")
        $$""")
    assert admin_conn.execute("SELECT pg_temp.late_watchdog()").fetchone()[0] == "finished"
    assert admin_conn.execute("SELECT 1").fetchone()[0] == 1


@pytest.mark.slow
def test_run_through_the_real_daemon_matches_the_gold_sql(pg: Cluster, new_db, tiny_daemon) -> None:
    """End to end: the trained tiny model's SQL, run read-only, gives the same rows as the reference SQL."""
    from sqlcoder_dev import shop
    item = shop.sample_questions()[0]
    db = new_db(socket=tiny_daemon.socket_path)  # the schema the tiny model was trained on, unchanged
    with pg.connect(db) as admin_conn:
        admin_conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{ROLE}"')
        admin_conn.execute("SELECT sqlcoder.grant_access(%s::regrole)", (ROLE,))
    with pg.connect(db, user=ROLE) as conn:
        got = [r[0] for r in conn.execute("SELECT r::text FROM sqlcoder.run(%s) r", (item["question"],))]
        expected = [r[0] for r in conn.execute(f"SELECT row_to_json(q)::text FROM ({item['sql'].rstrip(';')}) q")]
    assert got == expected and got
    pg.psql(f'DROP OWNED BY "{ROLE}"', dbname=db)


# -- typed results: run_typed and execute_typed keep PostgreSQL's types --------

def test_execute_typed_keeps_bigint_and_numeric_digits(analyst_conn) -> None:
    rows = analyst_conn.execute(
        "SELECT * FROM sqlcoder.execute_typed('SELECT 9007199254740993::bigint AS big, "
        "12345678901234567890.123456789::numeric AS exact, NULL::int AS n, ARRAY[1,2] AS arr') "
        "AS r(big bigint, exact numeric, n int, arr int[])").fetchall()
    # JSON through a driver: 2^53 + 1 becomes a float or is rounded; here it stays an int and a Decimal.
    assert rows == [(9007199254740993, Decimal("12345678901234567890.123456789"), None, [1, 2])]


def test_run_typed_runs_the_models_sql_with_the_callers_column_list(analyst_conn, shop_daemon) -> None:
    shop_daemon.reply(" SELECT id, name FROM customers ORDER BY id LIMIT 2;\n[/SQL]")
    rows = analyst_conn.execute("SELECT * FROM sqlcoder.run_typed('first two customers?') AS r(id int, name text)"
                           ).fetchall()
    assert rows == [(1, "Ada Lovelace"), (2, "Grace Hopper")]


def test_execute_typed_converts_through_text_and_caps_rows(analyst_conn) -> None:
    notices: list[str] = []
    analyst_conn.add_notice_handler(lambda d: notices.append(d.message_primary))
    rows = analyst_conn.execute("SELECT * FROM sqlcoder.execute_typed("
                           "'SELECT g, g * 1.25 AS x FROM generate_series(1, 10) g', 2) "
                           "AS r(g text, x numeric(10,1))").fetchall()
    assert rows == [("1", Decimal("1.3")), ("2", Decimal("2.5"))]
    assert any("cut to its first 2 rows" in n for n in notices)


def test_execute_typed_column_mismatch_names_the_querys_columns(analyst_conn) -> None:
    with pytest.raises(psycopg.errors.DatatypeMismatch) as err:
        analyst_conn.execute("SELECT * FROM sqlcoder.execute_typed('SELECT 1 AS a, ''x'' AS b') AS r(a int)")
    assert err.value.diag.message_detail == "The query's columns: a integer, b text."
    assert "AS r(a integer, b text)" in err.value.diag.message_hint


def test_execute_typed_keeps_toasted_values_and_is_guarded(analyst_conn, admin_conn) -> None:
    admin_conn.execute("CREATE TABLE IF NOT EXISTS public.big_text (t text)")
    admin_conn.execute("TRUNCATE public.big_text")
    admin_conn.execute("INSERT INTO public.big_text "
                       "SELECT string_agg(md5(g::text), '') FROM generate_series(1, 20000) g")
    admin_conn.execute(f"GRANT SELECT ON public.big_text TO {ROLE}")
    admin_conn.commit()
    got = analyst_conn.execute("SELECT length(t) FROM sqlcoder.execute_typed('SELECT t FROM big_text') AS r(t text)"
                          ).fetchone()
    assert got == (640000,)
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        analyst_conn.execute("SELECT * FROM sqlcoder.execute_typed('DELETE FROM big_text') AS r(t text)")

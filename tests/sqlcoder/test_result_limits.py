"""Results bounded in bytes with bounded backend memory, rows returned as plain json values.

run and execute keep the rows outside Python (src/result_rows.c): counted in
bytes of their JSON text as the executor produces them, stopped as soon as
max_result_bytes is passed, and handed to the caller one json value per row.
Backend memory is read from /proc (VmHWM, the backend's peak resident set).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import psycopg
import pytest

from plugins.postgres import SHOP_TEMPLATE
from sqlcoder_daemon.memory import proc_bytes
from sqlcoder_dev.fake_daemon import FakeDaemon, drop_run_database, setup_run_database, socket_dir
from sqlcoder_dev.pgcluster import Cluster

DB = f"result_limits_{os.getpid()}"
ROLE = f"result_analyst_{os.getpid()}"
MiB = 1 << 20
DEFAULT_LIMIT = 64 * MiB


@pytest.fixture(scope="module")
def shop_daemon(pg: Cluster) -> Iterator[FakeDaemon]:
    with FakeDaemon(socket_dir() / "fake.sock") as daemon:
        setup_run_database(pg, DB, SHOP_TEMPLATE, daemon.path, ROLE,
                           {"query_timeout_ms": "20000", "max_rows": "100000"})
        yield daemon
        drop_run_database(pg, DB, ROLE)


@pytest.fixture
def admin_conn(pg: Cluster, shop_daemon: FakeDaemon) -> Iterator[psycopg.Connection]:
    with pg.connect(DB) as conn:
        yield conn
        conn.execute("DELETE FROM sqlcoder.config WHERE key IN ('max_result_bytes', 'query_timeout_ms')")


@pytest.fixture
def analyst_conn(pg: Cluster, shop_daemon: FakeDaemon) -> Iterator[psycopg.Connection]:
    with pg.connect(DB, user=ROLE, options="-c statement_timeout=60000") as conn:
        yield conn


def set_limit(admin_conn: psycopg.Connection, value: int) -> None:
    admin_conn.execute("UPDATE sqlcoder.config SET value = %s WHERE key = 'max_result_bytes'", (str(value),))


def wide_rows(rows: int, row_bytes: int) -> str:
    return f"SELECT repeat('x', {row_bytes}) AS s FROM generate_series(1, {rows})"


def last_history(admin_conn: psycopg.Connection, expect: tuple | None = None) -> tuple:
    """The role's newest history row; a refusal's row is written when its one-second folding window
    closes, so with ``expect`` wait (up to 10 s) for a newest row that starts with it."""
    deadline = time.monotonic() + 10
    while True:
        row = admin_conn.execute("SELECT operation, outcome, error_sqlstate, row_count FROM sqlcoder.history "
                            "WHERE role = %s ORDER BY id DESC LIMIT 1", (ROLE,)).fetchone()
        if expect is None or (row and row[:len(expect)] == expect) or time.monotonic() > deadline:
            return row
        time.sleep(0.05)


def test_a_result_over_the_limit_is_refused_with_the_limit_named(analyst_conn, admin_conn) -> None:
    set_limit(admin_conn, MiB)
    with pytest.raises(psycopg.errors.ProgramLimitExceeded) as info:
        analyst_conn.execute("SELECT * FROM sqlcoder.execute(%s)", (wide_rows(10, 200_000),)).fetchall()
    diag = info.value.diag
    assert diag.sqlstate == "54000"
    assert "max_result_bytes (1048576 bytes)" in diag.message_primary
    assert "stopped after 5 rows" in diag.message_primary  # 5 x 200,008 bytes fit, the 6th passes the limit
    assert "max_result_bytes" in diag.message_hint and "LIMIT" in diag.message_hint
    assert "repeat('x', 200000)" in diag.message_detail
    assert analyst_conn.execute("SELECT 1").fetchone()[0] == 1
    assert last_history(admin_conn, ("execute", "refused", "54000"))[:3] == ("execute", "refused", "54000")


def test_the_limit_counts_the_json_text_exactly(analyst_conn, admin_conn) -> None:
    row = len('{"s":"' + "x" * 1000 + '"}')  # what each row is, as json text
    set_limit(admin_conn, 3 * row)
    sql = "SELECT * FROM sqlcoder.execute(%s)"
    assert len(analyst_conn.execute(sql, (wide_rows(3, 1000),)).fetchall()) == 3
    with pytest.raises(psycopg.errors.ProgramLimitExceeded):
        analyst_conn.execute(sql, (wide_rows(4, 1000),)).fetchall()
    set_limit(admin_conn, 3 * row - 1)
    with pytest.raises(psycopg.errors.ProgramLimitExceeded):
        analyst_conn.execute(sql, (wide_rows(3, 1000),)).fetchall()


def test_run_is_bounded_too(analyst_conn, admin_conn, shop_daemon) -> None:
    set_limit(admin_conn, MiB)
    shop_daemon.reply(" " + wide_rows(100, 100_000) + ";")
    with pytest.raises(psycopg.errors.ProgramLimitExceeded):
        analyst_conn.execute("SELECT * FROM sqlcoder.run('everything, twice over')").fetchall()
    assert last_history(admin_conn, ("run", "refused", "54000"))[:3] == ("run", "refused", "54000")
    shop_daemon.reply(" SELECT name FROM customers ORDER BY id LIMIT 2;")
    assert [r[0] for r in analyst_conn.execute("SELECT r->>'name' FROM sqlcoder.run('two names') r")] == \
        ["Ada Lovelace", "Grace Hopper"]


def peak_of_a_fresh_backend(pg: Cluster, sql: str) -> tuple[str | int, int]:
    """(rows, or the SQLSTATE), and the backend's peak resident memory in bytes."""
    with pg.connect(DB, user=ROLE) as conn:
        pid = conn.info.backend_pid
        try:
            outcome: str | int = len(conn.execute("SELECT * FROM sqlcoder.execute(%s)", (sql,)).fetchall())
        except psycopg.Error as exc:
            outcome = exc.sqlstate or "?"
        peak = proc_bytes(f"/proc/{pid}/status", "VmHWM")
        assert peak is not None, "no VmHWM in /proc (not Linux?)"
        return outcome, peak


COMPUTED_100MB = "SELECT repeat('x', 100000000 + g - g) AS s FROM generate_series(1, {n}) g"


@pytest.mark.parametrize("sql, expected", [
    (wide_rows(256, MiB), "54000"),  # 4x the limit in many rows
    (wide_rows(32, 8 * MiB), "54000"),  # 4x the limit in wide rows
    (wide_rows(60, MiB), 60),  # just under the limit: accepted
    (wide_rows(1, 30 * MiB), 1),  # one wide row, accepted: built once at its exact length
    (wide_rows(2, 40 * MiB), "54000"),  # the second wide row cannot fit
    # One value over the limit, computed per row (not folded by the planner): refused from its
    # size before its JSON text is built (this was 515 MiB).
    (COMPUTED_100MB.format(n=10), "54000"),
    (COMPUTED_100MB.format(n=1), "54000"),
], ids=["256x1MiB", "32x8MiB", "60x1MiB", "1x30MiB", "2x40MiB", "10x100MB", "1x100MB"])
def test_backend_peak_memory_stays_within_twice_the_limit(pg, admin_conn, sql, expected) -> None:
    outcome, peak = peak_of_a_fresh_backend(pg, sql)
    assert outcome == expected
    assert peak <= 2 * DEFAULT_LIMIT + 64 * MiB, f"backend peak {peak / MiB:.0f} MiB"


def test_a_constant_value_over_the_limit_costs_what_planning_it_costs(pg, admin_conn) -> None:
    # The planner folds repeat('x', 100000000) into a 100 MB constant before anything runs,
    # holding it twice for a moment (PostgreSQL's own cost: a bare SELECT length(repeat(...))
    # peaks the same). Nothing after that copies it: it was 515 MiB.
    outcome, peak = peak_of_a_fresh_backend(pg, "SELECT repeat('x', 100000000) AS s FROM generate_series(1, 10)")
    assert outcome == "54000"
    assert peak <= 2 * 100_000_000 + 64 * MiB, f"backend peak {peak / MiB:.0f} MiB"


def test_a_toasted_value_over_the_limit_is_refused_without_being_read(pg, admin_conn) -> None:
    # 100 MB of text stored compressed: its size is read from the TOAST pointer, the value never fetched.
    admin_conn.execute("CREATE TABLE big_text AS SELECT repeat('x', 100000000) AS s")
    try:
        admin_conn.execute(f"GRANT SELECT ON big_text TO {ROLE}")
        outcome, peak = peak_of_a_fresh_backend(pg, "SELECT s FROM big_text")
    finally:
        admin_conn.execute("DROP TABLE big_text")
    assert outcome == "54000"
    assert peak < 100_000_000, f"backend peak {peak / MiB:.0f} MiB: the value was fetched"


# Each row's JSON text is built in C (src/row_json.c): text-like values escaped from the datum,
# json copied, every other type through row_to_json of that column; all must equal row_to_json.
SAME_AS_ROW_TO_JSON = [
    "SELECT E'\\b\\f\\n\\r\\t \\\" \\\\ /' || chr(1) || chr(31) || chr(127) || ' ü € 😀' AS t, "
    "'ab'::varchar(5) AS v, 'ab'::char(5) AS c, 'ab'::name AS n, NULL::text AS nt, ''::text AS empty",
    "SELECT '\\x00ff5c22'::bytea AS b, ' {\"a\" :  [1, 2.50, \"x\\\\u0041\"]} '::json AS j, "
    "'{\"b\": 2, \"a\": [1.50, null]}'::jsonb AS jb, NULL::json AS nj, NULL::bytea AS nb",
    "SELECT 1.50::numeric AS x, 'NaN'::numeric AS nan, 'Infinity'::float8 AS inf, -0.0::float8 AS z, true AS ok, "
    "'2026-12-01 11:40:31+00'::timestamptz AS ts, '1 day 2 hours'::interval AS i, 42::bigint AS big, "
    "NULL::int AS ni",
    "SELECT ARRAY['a\"b', NULL, 'c'] AS ta, ARRAY[[1, 2], [3, 4]] AS ia, ROW(1, 'x\\y', NULL)::record AS r, "
    "'<a x=\"1\">é</a>'::xml AS x, '<?xml version=\"1.0\"?><a/>'::xml AS xd, ARRAY['{\"k\":  1}'::json] AS ja",
    "SELECT 1 AS a, 'two' AS b, 3 AS \"we\"\"ird\\\\key\", 'x' AS \"ü\", 'tab' AS \"t\tb\"",
    "SELECT g, repeat(chr(9) || 'y\"', g) AS s, CASE WHEN g % 2 = 0 THEN NULL ELSE g::text END AS odd "
    "FROM generate_series(1, 5) g",
    "SELECT FROM generate_series(1, 2)",
    "SELECT c.*, c AS whole FROM customers c ORDER BY c.id",
]


@pytest.mark.parametrize("query", SAME_AS_ROW_TO_JSON)
@pytest.mark.parametrize("bytea_output", ["hex", "escape"])
def test_each_row_is_exactly_row_to_json(analyst_conn, query, bytea_output) -> None:
    analyst_conn.execute(f"SET bytea_output = {bytea_output}")
    got = [r[0] for r in analyst_conn.execute("SELECT r::text FROM sqlcoder.execute(%s) r", (query,))]
    direct = [r[0] for r in analyst_conn.execute(f"SELECT row_to_json(q)::text FROM ({query}) q")]
    assert got == direct and got


def test_a_domain_over_text_is_escaped_like_text(analyst_conn, admin_conn) -> None:
    admin_conn.execute("DROP DOMAIN IF EXISTS public.shouty; CREATE DOMAIN public.shouty AS text")
    query = "SELECT E'a\"b\\\\c\\n'::shouty AS d, ARRAY['x']::shouty[] AS da"
    got = analyst_conn.execute("SELECT r::text FROM sqlcoder.execute(%s) r", (query,)).fetchone()[0]
    assert got == analyst_conn.execute(f"SELECT row_to_json(q)::text FROM ({query}) q").fetchone()[0]
    assert got == '{"d":"a\\"b\\\\c\\n","da":["x"]}'


def test_a_result_larger_than_work_mem_comes_back_whole_and_in_order(analyst_conn) -> None:
    analyst_conn.execute("SET work_mem = '64kB'")  # the kept rows go to a temporary file
    rows = analyst_conn.execute("SELECT (r->>'g')::int, length(r->>'s') FROM sqlcoder.execute("
                           "'SELECT g, repeat(''y'', 1000) AS s FROM generate_series(1, 5000) g ORDER BY g DESC') r"
                           ).fetchall()
    assert rows == [(g, 1000) for g in range(5000, 0, -1)]


def test_two_calls_in_one_statement_keep_their_own_rows(analyst_conn) -> None:
    assert analyst_conn.execute(
        "SELECT (SELECT count(*) FROM sqlcoder.execute('SELECT 1 FROM generate_series(1, 3)')), "
        "(SELECT count(*) FROM sqlcoder.execute('SELECT 1 FROM generate_series(1, 5)')), "
        "(SELECT count(*) FROM sqlcoder.execute('SELECT 1 WHERE false'))").fetchone() == (3, 5, 0)


def test_the_select_list_form_and_an_early_stop(analyst_conn) -> None:
    assert [r[0]["g"] for r in analyst_conn.execute(
        "SELECT sqlcoder.execute('SELECT g FROM generate_series(1, 4) g')")] == [1, 2, 3, 4]
    assert len(analyst_conn.execute("SELECT sqlcoder.execute('SELECT g FROM generate_series(1, 100000) g') "
                               "LIMIT 2").fetchall()) == 2
    assert analyst_conn.execute("SELECT 1").fetchone()[0] == 1


def test_rows_not_taken_are_freed_at_commit_without_a_warning(analyst_conn) -> None:
    notices: list[str] = []
    analyst_conn.add_notice_handler(lambda d: notices.append(d.message_primary))
    analyst_conn.execute("SET work_mem = '64kB'")
    analyst_conn.autocommit = False
    with analyst_conn.transaction():
        token = analyst_conn.execute(
            "SELECT sqlcoder_internal._result(sqlcoder_internal._invoke('execute', jsonb_build_object('sql', "
            "'SELECT repeat(''z'', 1000) FROM generate_series(1, 1000)', 'caller_path', current_schemas(true))))"
        ).fetchone()[0]
        assert int(token) > 0
    analyst_conn.autocommit = True
    assert notices == []
    with pytest.raises(psycopg.errors.UndefinedObject) as info:
        analyst_conn.execute("SELECT * FROM sqlcoder_internal._result_rows(%s)", (int(token),)).fetchall()
    assert "no result" in info.value.diag.message_primary and info.value.diag.message_hint


def test_results_never_taken_are_capped(analyst_conn) -> None:
    # Each waiting result may hold work_mem: a loop over the internals must not pile them up.
    analyst_conn.autocommit = False
    with pytest.raises(psycopg.errors.ProgramLimitExceeded) as info:
        with analyst_conn.transaction():
            for _ in range(9):
                analyst_conn.execute("SELECT sqlcoder_internal._result(sqlcoder_internal._invoke('execute', "
                                     "jsonb_build_object('sql', 'SELECT 1', 'caller_path', current_schemas(true))))")
    analyst_conn.autocommit = True
    assert "8 results of this transaction were never returned" in info.value.diag.message_primary
    assert len(analyst_conn.execute("SELECT * FROM sqlcoder.execute('SELECT 1')").fetchall()) == 1


def test_rows_are_taken_once(analyst_conn) -> None:
    analyst_conn.autocommit = False
    with analyst_conn.transaction():
        token = analyst_conn.execute(
            "SELECT sqlcoder_internal._result(sqlcoder_internal._invoke('execute', "
            "jsonb_build_object('sql', 'SELECT 1 AS one', 'caller_path', current_schemas(true))))").fetchone()[0]
        rows = analyst_conn.execute("SELECT r::text FROM sqlcoder_internal._result_rows(%s) r", (int(token),))
        assert rows.fetchall() == [('{"one":1}',)]
        with pytest.raises(psycopg.errors.UndefinedObject):
            analyst_conn.execute("SELECT * FROM sqlcoder_internal._result_rows(%s)", (int(token),))
    analyst_conn.autocommit = True


def test_the_time_limit_covers_building_the_result(analyst_conn, admin_conn) -> None:
    admin_conn.execute("UPDATE sqlcoder.config SET value = '1000' WHERE key = 'query_timeout_ms'")
    # the function policy refuses pg_sleep unless the DBA allows it
    admin_conn.execute("SELECT sqlcoder.allow_function('pg_catalog.pg_sleep(double precision)')")
    try:
        with pytest.raises(psycopg.errors.QueryCanceled) as info:
            analyst_conn.execute("SELECT * FROM sqlcoder.execute("
                            "'SELECT g, pg_sleep(0.01) FROM generate_series(1, 1000) g')").fetchall()
    finally:
        admin_conn.execute("SELECT sqlcoder.reset_function('pg_catalog.pg_sleep(double precision)')")
    assert "query_timeout_ms" in info.value.diag.message_primary
    assert analyst_conn.execute("SELECT 1").fetchone()[0] == 1

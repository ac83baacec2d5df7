"""Limits nothing in a guarded query can swallow: code that catches the cancel, XPath that never checks
for interrupts, temporary files, backend memory (docs/security.md, "Limits nothing can swallow").

Each case runs through ``sqlcoder.execute`` and, as model output, through ``sqlcoder.run``, by an
ordinary granted role, with a superuser's bystander session and a second session of the same role
that must both survive; after each, the invariants of tests/adversarial/test_hostile_sql.py hold (nothing written,
the session unchanged unless the case ends it) and the call's limits are gone from the session.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from helpers.adversarial import DB, ROLE, assert_unharmed, fingerprint, outcome_of
from sqlcoder_dev.fake_daemon import FakeDaemon
from sqlcoder_dev.pgcluster import Cluster

MiB = 1 << 20
LIMIT_S = 1.0  # query_timeout_ms of the adversarial database
GRACE_S = 2.0  # sqlcoder.watchdog.GRACE_S
MEMORY_DEFAULT = 512 * MiB  # max_memory_bytes' default


def _through(conn: psycopg.Connection, shop_daemon: FakeDaemon, how: str, sql: str) -> str | list:
    """The SQLSTATE (or rows) of ``sql`` sent through execute, or as the model's answer through run."""
    if how == "execute":
        return outcome_of(conn, "SELECT * FROM sqlcoder.execute(%s)", sql)
    shop_daemon.reply(" " + sql + ";")
    return outcome_of(conn, "SELECT * FROM sqlcoder.run('show me')")


def _error(conn: psycopg.Connection, shop_daemon: FakeDaemon, how: str, sql: str) -> psycopg.Error:
    if how == "execute":
        call, args = "SELECT * FROM sqlcoder.execute(%s)", (sql,)
    else:
        shop_daemon.reply(" " + sql + ";")
        call, args = "SELECT * FROM sqlcoder.run('show me')", ()
    with pytest.raises(psycopg.Error) as caught:
        conn.execute(call, args).fetchall()
    assert "Traceback" not in str(caught.value)
    return caught.value


def _others_alive(pg: Cluster, bystander_conn: psycopg.Connection, sibling_conn: psycopg.Connection) -> None:
    assert bystander_conn.execute("SELECT 1").fetchone() == (1,), "the superuser's session was ended"
    assert sibling_conn.execute("SELECT 1").fetchone() == (1,), "the caller's other session was ended"
    assert pg.psql("SELECT 1").strip() == "1"


def _limits_gone(conn: psycopg.Connection) -> None:
    """After the call: no temp_file_limit and no address-space limit of sqlcoder's left in the session."""
    assert conn.execute("SHOW temp_file_limit").fetchone() == ("-1",)
    pid = conn.info.backend_pid
    limits = open(f"/proc/{pid}/limits").read()
    line = next(x for x in limits.splitlines() if x.startswith("Max address space"))
    assert line.split()[3] == "unlimited", line


# ===== The time limit against code that catches the cancel =====

# Superuser-owned, so the policy trusts their STABLE labels (a DBA's function, or one a DBA allowed).
CATCHERS = """
CREATE SCHEMA dba_limits;
GRANT USAGE ON SCHEMA dba_limits TO {role};
CREATE FUNCTION dba_limits.swallow_every_cancel() RETURNS bigint LANGUAGE plpgsql STABLE AS $$
DECLARE caught bigint := 0;
BEGIN
  LOOP
    BEGIN
      PERFORM count(*) FROM generate_series(1, 100000);
    EXCEPTION WHEN query_canceled THEN
      caught := caught + 1;
    END;
  END LOOP;
END $$;
CREATE FUNCTION dba_limits.swallow_nested() RETURNS bigint LANGUAGE plpgsql STABLE AS $$
BEGIN
  LOOP
    BEGIN
      BEGIN
        PERFORM count(*) FROM generate_series(1, 100000);
      EXCEPTION WHEN query_canceled THEN
        PERFORM count(*) FROM generate_series(1, 100000);
      END;
    EXCEPTION WHEN query_canceled OR others THEN
      NULL;
    END;
  END LOOP;
END $$;
CREATE FUNCTION dba_limits.swallow_three() RETURNS bigint LANGUAGE plpgsql STABLE AS $$
DECLARE caught int := 0;
BEGIN
  LOOP
    BEGIN
      PERFORM count(*) FROM generate_series(1, 100000);
    EXCEPTION WHEN query_canceled THEN
      caught := caught + 1;
      IF caught >= 3 THEN RAISE; END IF;
    END;
  END LOOP;
END $$;
CREATE FUNCTION dba_limits.swallow_python() RETURNS bigint LANGUAGE plpython3u STABLE AS $$
while True:
    try:
        plpy.execute("SELECT count(*) FROM generate_series(1, 100000)")
    except plpy.SPIError:
        pass
$$;
CREATE VIEW dba_limits.v_swallow AS SELECT dba_limits.swallow_every_cancel() AS n;
GRANT SELECT ON dba_limits.v_swallow TO {role};
CREATE VIEW dba_limits.v_xpath AS
  SELECT xpath('//a//a', ('<a>' || repeat('<a>', 300) || repeat('</a>', 300) || '</a>')::xml) AS x;
GRANT SELECT ON dba_limits.v_xpath TO {role};
"""


@pytest.fixture(scope="module")
def dba_functions(pg: Cluster, shop_daemon: FakeDaemon) -> Iterator[None]:
    with pg.connect(DB) as admin:
        admin.execute(CATCHERS.format(role=f'"{ROLE}"'))
    yield
    with pg.connect(DB) as admin:
        admin.execute("DROP SCHEMA dba_limits CASCADE")


CATCHING = [
    ("catch-every-cancel", "SELECT dba_limits.swallow_every_cancel() AS n"),
    ("catch-nested-and-others", "SELECT dba_limits.swallow_nested() AS n"),
    ("catch-plpython", "SELECT dba_limits.swallow_python() AS n"),
    ("catch-through-view", "SELECT n FROM dba_limits.v_swallow"),
]


@pytest.mark.parametrize("how", ["execute", "run"])
@pytest.mark.parametrize("case, sql", CATCHING, ids=[c[0] for c in CATCHING])
def test_code_that_catches_every_cancel_is_ended(pg, shop_daemon, dba_functions, analyst_conn, bystander_conn,
                                                 sibling_conn, baseline,
                                                 case, sql, how) -> None:
    """Repeated cancels, then SIGTERM GRACE_S after the limit: the call ends, within the grace period.

    A repeated cancel that lands while the handler runs (outside its protected block) ends the call with
    57014 and the session lives on; otherwise SIGTERM ends the call and its session (57P01).
    """
    pid = analyst_conn.info.backend_pid
    started = time.monotonic()
    got = _through(analyst_conn, shop_daemon, how, sql)
    took = time.monotonic() - started
    assert got in ("57P01", "57014", "?"), got
    assert took < LIMIT_S + GRACE_S + 3, f"{case}: {took:.1f} s with a {LIMIT_S:g} s limit"
    if got == "57014":
        assert_unharmed(pg, analyst_conn, baseline)
    else:
        deadline = time.monotonic() + 5
        while bystander_conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            assert time.monotonic() < deadline, "the backend went on"
            time.sleep(0.02)
        assert fingerprint(pg) == baseline
    _others_alive(pg, bystander_conn, sibling_conn)


@pytest.mark.parametrize("how", ["execute", "run"])
def test_code_that_catches_a_few_cancels_gets_the_time_limit(pg, shop_daemon, dba_functions, analyst_conn,
                                                             bystander_conn, sibling_conn,
                                                             baseline, how) -> None:
    """The repeated cancel alone ends code that gives up after a few: 57014, the session lives on."""
    started = time.monotonic()
    error = _error(analyst_conn, shop_daemon, how, "SELECT dba_limits.swallow_three() AS n")
    took = time.monotonic() - started
    assert error.sqlstate == "57014"
    assert "query_timeout_ms" in str(error)
    assert took < LIMIT_S + GRACE_S, f"{took:.1f} s"
    _others_alive(pg, bystander_conn, sibling_conn)
    assert_unharmed(pg, analyst_conn, baseline)


# ===== XPath: libxml2 never checks for interrupts =====

DOC = "('<a>' || repeat('<a>', 2000) || repeat('</a>', 2000) || '</a>')::xml"
XPATH = [
    ("xpath", f"SELECT xpath('//a//a//a', {DOC}) AS x"),
    ("xpath-namespaces", f"SELECT xpath('//a//a//a', {DOC}, ARRAY[ARRAY['n', 'urn:n']]) AS x"),
    ("xpath-exists", f"SELECT xpath_exists('//a//a//a[1]', {DOC}) AS x"),
    ("xmlexists", f"SELECT XMLEXISTS('//a//a//a' PASSING BY REF ({DOC})) AS x"),
    ("xmltable", f"SELECT count(*) FROM XMLTABLE('//a//a//a' PASSING ({DOC}) COLUMNS d text PATH '.') t"),
    ("xmltable-lateral", f"SELECT t.d FROM (SELECT {DOC} AS doc) s, "
                         "XMLTABLE('//a' PASSING s.doc COLUMNS d text PATH 'count(//a//a)') t"),
    ("xpath-in-view", "SELECT x FROM dba_limits.v_xpath"),
]


@pytest.mark.parametrize("how", ["execute", "run"])
@pytest.mark.parametrize("case, sql", XPATH, ids=[c[0] for c in XPATH])
def test_xpath_family_is_refused_with_a_hint(pg, shop_daemon, dba_functions, analyst_conn, bystander_conn,
                                             sibling_conn, baseline,
                                             case, sql, how) -> None:
    started = time.monotonic()
    error = _error(analyst_conn, shop_daemon, how, sql)
    assert error.sqlstate == "42501", (case, error)
    assert "XPath" in error.diag.message_primary
    assert "sqlcoder.allow_function('pg_catalog." in (error.diag.message_hint or "")
    assert time.monotonic() - started < LIMIT_S, "refused before it ran"
    _others_alive(pg, bystander_conn, sibling_conn)
    assert_unharmed(pg, analyst_conn, baseline)


def test_a_dba_may_allow_xpath_as_the_hint_says(pg, shop_daemon, analyst_conn) -> None:
    """The HINT's command works, and allowing xpath allows XMLTABLE (the same engine) too."""
    with pg.connect(DB) as admin:
        admin.execute("SELECT sqlcoder.allow_function('pg_catalog.xpath(text, xml, text[])')")
    try:
        got = outcome_of(analyst_conn, "SELECT * FROM sqlcoder.execute(%s)",
                         "SELECT count(*) AS n FROM XMLTABLE('/r/i' PASSING ('<r><i/><i/></r>'::xml) "
                         "COLUMNS v text PATH '.') t")
        assert got == [({"n": 2},)] or got == [('{"n":2}',)], got
    finally:
        with pg.connect(DB) as admin:
            admin.execute("SELECT sqlcoder.reset_function('pg_catalog.xpath(text, xml, text[])')")


# ===== Temporary files =====

SPILLS = [
    ("spill-sort", "SELECT max(r) AS r FROM (SELECT row_number() OVER (ORDER BY md5(g::text)) AS r "
                   "FROM generate_series(1, 3000000) g) s"),
    ("spill-distinct", "SELECT count(*) AS n FROM (SELECT DISTINCT md5(g::text) FROM generate_series(1, 3000000) g) s"),
    ("spill-count-distinct", "SELECT count(DISTINCT md5(g::text)) AS n FROM generate_series(1, 3000000) g"),
    ("spill-function-scan", "SELECT count(*) AS n FROM generate_series(1, 10000000) g"),
]


@pytest.fixture
def small_temp_limit(pg: Cluster, shop_daemon: FakeDaemon) -> Iterator[None]:
    """16 MiB of temporary files a call, and ten seconds, so that the file limit, not the clock, decides."""
    with pg.connect(DB) as admin:
        admin.execute("UPDATE sqlcoder.config SET value = '16777216' WHERE key = 'max_temp_bytes'")
        admin.execute("UPDATE sqlcoder.config SET value = '10000' WHERE key = 'query_timeout_ms'")
    yield
    with pg.connect(DB) as admin:
        admin.execute("DELETE FROM sqlcoder.config_override WHERE key = 'max_temp_bytes'")
        admin.execute("UPDATE sqlcoder.config SET value = '1000' WHERE key = 'query_timeout_ms'")


@pytest.mark.parametrize("how", ["execute", "run"])
@pytest.mark.parametrize("case, sql", SPILLS, ids=[c[0] for c in SPILLS])
def test_temporary_files_past_max_temp_bytes_are_refused(pg, shop_daemon, small_temp_limit, analyst_conn,
                                                         bystander_conn, sibling_conn,
                                                         baseline, case, sql, how) -> None:
    error = _error(analyst_conn, shop_daemon, how, sql)
    assert error.sqlstate == "53400", (case, error)
    assert "max_temp_bytes" in (error.diag.message_hint or "")
    _limits_gone(analyst_conn)
    _others_alive(pg, bystander_conn, sibling_conn)
    assert_unharmed(pg, analyst_conn, baseline)


def test_a_lower_temp_file_limit_of_the_server_stays(pg, shop_daemon, small_temp_limit, bystander_conn) -> None:
    with pg.connect(DB) as admin:
        admin.execute(f'ALTER ROLE "{ROLE}" SET temp_file_limit = \'2MB\'')
    try:
        with pg.connect(DB, user=ROLE) as conn:
            error = _error(conn, shop_daemon, "execute", SPILLS[0][1])
            assert error.sqlstate == "53400"
            assert "2048kB" in error.diag.message_primary
            assert conn.execute("SHOW temp_file_limit").fetchone() == ("2MB",)
    finally:
        with pg.connect(DB) as admin:
            admin.execute(f'ALTER ROLE "{ROLE}" RESET temp_file_limit')


def test_the_caller_cannot_raise_its_own_temp_file_limit(pg, shop_daemon, analyst_conn) -> None:
    """sqlcoder_internal._limit_call only ever lowers: called directly with a huge value it changes nothing."""
    analyst_conn.execute("BEGIN")
    analyst_conn.execute("SELECT sqlcoder_internal._limit_call(NULL, 4611686018427387904)")
    assert analyst_conn.execute("SHOW temp_file_limit").fetchone() == ("-1",)
    analyst_conn.execute("SELECT sqlcoder_internal._limit_call(NULL, 1048576)")
    assert analyst_conn.execute("SHOW temp_file_limit").fetchone() == ("1MB",)
    analyst_conn.execute("ROLLBACK")
    assert analyst_conn.execute("SHOW temp_file_limit").fetchone() == ("-1",)
    assert outcome_of(analyst_conn, "SELECT sqlcoder_internal._limit_call(-1, NULL)") == "22023"


# ===== Backend memory =====

def _columns(expr: str, n: int) -> str:
    return ", ".join(f"{expr} AS c{i}" for i in range(1, n + 1))


MEMORY = [
    # The executor builds a row whole before it is counted: 24 x 100 MB (4.6 GB peak before).
    ("wide-computed-columns",
     "SELECT " + _columns("repeat(md5(g::text), 3125000)", 24) + " FROM generate_series(1, 2) g"),
    # The planner folds constants while the guard's EXPLAIN plans: 24 x 100 MB before anything runs.
    ("wide-folded-columns", "SELECT " + _columns("repeat(md5('y'), 3125000)", 24)),
    # An aggregate's state: 2,000 values of 1 MB held at once, one small result row.
    ("aggregate-state", "SELECT cardinality(array_agg(repeat(md5(g::text), 31250))) AS n "
                        "FROM generate_series(1, 2000) g"),
    # One text grown to 900 MB (its buffer doubles to 1 GB), one small result row.
    ("string-aggregate", "SELECT length(string_agg(repeat(md5(g::text), 31250), '')) AS n "
                         "FROM generate_series(1, 900) g"),
]


@pytest.fixture
def roomy_time_limit(pg: Cluster, shop_daemon: FakeDaemon) -> Iterator[None]:
    with pg.connect(DB) as admin:
        admin.execute("UPDATE sqlcoder.config SET value = '20000' WHERE key = 'query_timeout_ms'")
    yield
    with pg.connect(DB) as admin:
        admin.execute("UPDATE sqlcoder.config SET value = '1000' WHERE key = 'query_timeout_ms'")


@pytest.mark.parametrize("how", ["execute", "run"])
@pytest.mark.parametrize("case, sql", MEMORY, ids=[c[0] for c in MEMORY])
def test_memory_past_max_memory_bytes_is_a_clean_53200(pg, shop_daemon, roomy_time_limit, analyst_conn,
                                                       bystander_conn, sibling_conn,
                                                       baseline, case, sql, how) -> None:
    from sqlcoder_daemon.memory import proc_bytes

    error = _error(analyst_conn, shop_daemon, how, sql)
    peak = proc_bytes(f"/proc/{analyst_conn.info.backend_pid}/status", "VmHWM")
    assert error.sqlstate in ("53200", "54000"), (case, error)
    if error.sqlstate == "53200":
        assert "max_memory_bytes" in (error.diag.message_hint or "")
    assert peak is not None and peak <= MEMORY_DEFAULT + 96 * MiB, f"{case}: peak {peak / MiB:.0f} MiB"
    _limits_gone(analyst_conn)
    _others_alive(pg, bystander_conn, sibling_conn)
    assert_unharmed(pg, analyst_conn, baseline)


def test_memory_limit_holds_for_typed_results(pg, shop_daemon, roomy_time_limit, analyst_conn, bystander_conn,
                                              sibling_conn,
                                              baseline) -> None:
    from sqlcoder_daemon.memory import proc_bytes

    sql = MEMORY[0][1]
    cols = ", ".join(f"c{i} text" for i in range(1, 25))
    with pytest.raises(psycopg.Error) as caught:
        analyst_conn.execute(f"SELECT * FROM sqlcoder.execute_typed(%s) AS r({cols})", (sql,)).fetchall()
    assert caught.value.sqlstate == "53200"
    peak = proc_bytes(f"/proc/{analyst_conn.info.backend_pid}/status", "VmHWM")
    assert peak is not None and peak <= MEMORY_DEFAULT + 96 * MiB
    _limits_gone(analyst_conn)
    _others_alive(pg, bystander_conn, sibling_conn)
    assert_unharmed(pg, analyst_conn, baseline)


def test_the_session_works_normally_after_a_memory_refusal(pg, shop_daemon, roomy_time_limit, analyst_conn,
                                                           baseline) -> None:
    """Once the call is over, the session may use memory as before (the limit went with the call)."""
    assert _error(analyst_conn, shop_daemon, "execute", MEMORY[0][1]).sqlstate == "53200"
    got = analyst_conn.execute("SELECT length(string_agg(repeat(md5(g::text), 31250), '')) "
                          "FROM generate_series(1, 600) g").fetchone()
    assert got == (600_000_000,)
    assert_unharmed(pg, analyst_conn, baseline)

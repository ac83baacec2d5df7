"""sqlcoder_internal._query_objects: the functions and relations PostgreSQL's analyzer resolved for one plain query.

The contract other parts build on (guard.query_objects, the golden
examples): OIDs as PostgreSQL chose them, views as named, relations in
subqueries and CTEs, functions behind operators, casts, aggregates, views
and SQL bodies; errors with SQLSTATEs for anything but one plain query.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import psycopg
import pytest

import sqlcoder
from sqlcoder_dev.pgcluster import Cluster

SETUP = """
CREATE TABLE public.t (id integer, v character varying);
CREATE TABLE public.u (id integer);
CREATE VIEW public.tv AS SELECT id, pg_catalog.random() AS r FROM public.u;
CREATE FUNCTION public.lower(character varying) RETURNS text LANGUAGE plpgsql STABLE
  AS $$ BEGIN RETURN pg_catalog.upper($1::text); END $$;
CREATE FUNCTION public.body() RETURNS integer LANGUAGE sql STABLE BEGIN ATOMIC SELECT pg_catalog.pg_backend_pid(); END;
CREATE FUNCTION public.opfn(integer, integer) RETURNS boolean LANGUAGE sql STABLE
  AS $$ SELECT pg_catalog.clock_timestamp() IS NOT NULL $$;
CREATE OPERATOR public.=== (LEFTARG = integer, RIGHTARG = integer, FUNCTION = public.opfn);
CREATE FUNCTION public.step(integer, integer) RETURNS integer LANGUAGE sql IMMUTABLE AS $$ SELECT $1 + $2 $$;
CREATE AGGREGATE public.total(integer) (SFUNC = public.step, STYPE = integer, INITCOND = '0');
"""


@pytest.fixture(scope="module")
def db(pg: Cluster) -> Iterator[str]:
    name = "query_objects_test"
    pg.psql(f'CREATE DATABASE "{name}" TEMPLATE sqlcoder_empty_template')
    pg.psql(SETUP, dbname=name)
    pg.psql('DO $$BEGIN CREATE ROLE qo_reader LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END$$')
    pg.psql("GRANT SELECT ON ALL TABLES IN SCHEMA public TO qo_reader; SELECT sqlcoder.grant_access('qo_reader')",
            dbname=name)
    yield name
    pg.psql(f'DROP DATABASE "{name}" WITH (FORCE)')
    pg.psql("DROP ROLE IF EXISTS qo_reader", check=False)


@pytest.fixture
def reader(pg: Cluster, db: str) -> Iterator[psycopg.Connection]:
    with pg.connect(db, user="qo_reader") as conn:
        yield conn


def objects(conn: psycopg.Connection, sql: str, kind: str) -> set[str]:
    cast = "regclass" if kind == "relation" else "regprocedure"
    return {r[0] for r in conn.execute(
        f"SELECT objid::{cast}::text FROM sqlcoder_internal._query_objects(%s) WHERE kind = %s", (sql, kind))}


def test_relations_as_named_in_subqueries_and_ctes_and_inside_views(reader) -> None:
    sql = "WITH c AS (SELECT id FROM u) SELECT * FROM tv WHERE id IN (SELECT id FROM t) AND EXISTS (SELECT 1 FROM c)"
    assert objects(reader, sql, "relation") == {"t", "u", "tv"}


def test_functions_resolved_as_postgresql_chose_them(reader) -> None:
    got = objects(reader, "SELECT lower(v), lower(v::text), body(), 1 === 2, count(*) OVER (), '5'::text::integer "
                          "FROM t, generate_series(1, 2) g", "function")
    got |= objects(reader, "SELECT total(id) FROM t", "function")
    assert {"lower(character varying)", "lower(text)", "body()", "pg_backend_pid()", "opfn(integer,integer)",
            "clock_timestamp()", "total(integer)", "step(integer,integer)", "int4pl(integer,integer)",
            "count()", "int4in(cstring)", "textout(text)", "generate_series(integer,integer)"} <= got
    assert objects(reader, "SELECT lower(v) FROM t", "opaque") == {"lower(character varying)"}


def test_a_view_is_expanded(reader) -> None:
    assert "random()" in objects(reader, "SELECT r FROM tv", "function")


def test_the_caller_needs_nothing_more_than_its_grants(pg: Cluster, db: str) -> None:
    pg.psql('DO $$BEGIN CREATE ROLE qo_other LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END$$')
    try:
        with pg.connect(db, user="qo_other") as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT * FROM sqlcoder_internal._query_objects('SELECT 1')")
    finally:
        pg.psql("DROP ROLE qo_other", check=False)


@pytest.mark.parametrize("sql, sqlstate", [
    ("SELECT 1; SELECT 2", "42601"),
    ("-- nothing", "42601"),
    ("DELETE FROM t", "25006"),
    ("SELECT 1 INTO x", "25006"),
    ("WITH d AS (DELETE FROM t RETURNING id) SELECT id FROM d", "25006"),
    ("EXPLAIN SELECT 1", "25006"),
    ("SELECT * FROM nosuch", "42P01"),
    ("SELECT (", "42601"),
])
def test_anything_but_one_plain_query_is_an_error(reader, sql: str, sqlstate: str) -> None:
    with pytest.raises(psycopg.Error) as err:
        reader.execute("SELECT * FROM sqlcoder_internal._query_objects(%s)", (sql,))
    assert err.value.sqlstate == sqlstate
    assert reader.execute("SELECT current_setting('transaction_read_only')").fetchone()[0] == "off"


def test_python_wrapper_returns_oid_sets(pg: Cluster, db: str) -> None:
    share = subprocess.run(["pg_config", "--sharedir"], capture_output=True, text=True).stdout.strip()
    with pg.connect(db) as admin:
        admin.execute(f"""
            CREATE FUNCTION pg_temp.qo(sql text) RETURNS text LANGUAGE plpython3u AS $$
            import sys
            sys.path.insert(0, "{share}/extension/sqlcoder_python/{sqlcoder.__version__}")
            from sqlcoder import guard
            o = guard.query_objects(plpy, sql)
            import json
            return json.dumps([sorted(o.functions), sorted(o.relations), sorted(o.opaque)])
            $$""")
        got = admin.execute("SELECT pg_temp.qo('SELECT lower(v) FROM t')").fetchone()[0]
        lower = admin.execute("SELECT 'public.lower(varchar)'::regprocedure::oid::int").fetchone()[0]
        t = admin.execute("SELECT 't'::regclass::oid::int").fetchone()[0]
        functions, relations, opaque = json.loads(got)
        assert lower in functions and relations == [t] and opaque == [lower]

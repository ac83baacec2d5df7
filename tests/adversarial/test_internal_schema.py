"""The internal functions' schema, sqlcoder_internal, as an attacker sees it (docs/security.md, "Planted objects").

Moving the internals out of ``sqlcoder`` must give nobody more than before: a role that is not granted
reaches none of them, a granted role exactly the ones its backend calls, the history writer its three.
Every reference names the schema, so nothing planted earlier in a search path is picked up, and a schema
of that name made beforehand stops the install and the update instead of being used.
"""

from __future__ import annotations

import os

import psycopg
import pytest

from helpers.paths import ROOT
from sqlcoder_dev.pgcluster import Cluster

# What each role could execute of the internal functions while they lived in schema sqlcoder (0.4.0 as
# developed before the move, computed from has_function_privilege): the move keeps it exactly.
GRANTED = sorted([
    "_check_hint_column(regclass,name)", "_client_connected()", "_edit_catalog(text,jsonb)",
    "_example_permitted(text,name[])", "_function_facts(oid[])",
    "_guard_policy(oid[],oid[],oid[],text[],oid[],text[],text[])", "_history_begin(text,jsonb,integer)",
    "_history_stats()", "_history_write(text,jsonb,text,integer,integer)", "_invoke(text,jsonb)",
    "_limit_call(bigint,bigint)", "_promote_example(bigint,name[])", "_query_objects(text)",
    "_readonly_explain(text,text)", "_result(_reply)", "_result_rows(bigint)",
    "_run_readonly(text,text,bigint,bigint,boolean)"])
WRITER = ["_history_purge()", "_history_role_bytes(name)", "_history_trim_role(name)"]

_EXECUTABLE = """
    SELECT coalesce(pg_catalog.array_agg(pg_catalog.replace(p.oid::regprocedure::text, 'sqlcoder_internal.', '')
                                         ORDER BY 1), '{}')
    FROM pg_catalog.pg_proc p
    WHERE p.pronamespace = 'sqlcoder_internal'::regnamespace AND has_function_privilege(%s, p.oid, 'EXECUTE')"""


def _executable(conn: psycopg.Connection, role: str) -> list[str]:
    return sorted(conn.execute(_EXECUTABLE, (role,)).fetchone()[0])


@pytest.fixture
def outsider(pg: Cluster):
    """A role that may log in and nothing more (never granted sqlcoder)."""
    role = f"outsider_{os.getpid()}"
    pg.psql(f'DROP ROLE IF EXISTS "{role}"; CREATE ROLE "{role}" LOGIN')
    yield role
    databases = pg.psql("SELECT datname FROM pg_database WHERE datname LIKE 'test_%' OR datname LIKE 'internal_%'")
    for db in databases.split():
        pg.psql(f'DROP OWNED BY "{role}" CASCADE', dbname=db, check=False)
    pg.psql(f'DROP ROLE IF EXISTS "{role}"', check=False)


def _privileges_hold(pg: Cluster, db: str, granted: str, outsider: str) -> None:
    with pg.connect(db) as admin:
        assert _executable(admin, granted) == GRANTED
        assert _executable(admin, "sqlcoder_history_writer") == WRITER
        assert _executable(admin, outsider) == []
        usage = admin.execute("SELECT has_schema_privilege(%s, 'sqlcoder_internal', 'USAGE'), "
                              "has_schema_privilege(%s, 'sqlcoder_internal', 'USAGE')", (granted, outsider)).fetchone()
        assert usage == (True, False)
        # nobody but the owner may create there: no grantee holds CREATE
        creators = admin.execute(
            "SELECT count(*) FROM pg_namespace n, aclexplode(n.nspacl) a WHERE n.nspname = 'sqlcoder_internal' "
            "AND a.privilege_type = 'CREATE' AND a.grantee <> n.nspowner").fetchone()[0]
        assert creators == 0
    with pg.connect(db, user=outsider) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT sqlcoder_internal._invoke('status', '{}')")
    with pg.connect(db, user=granted) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT sqlcoder_internal._invoke_python('status', '{}', NULL)")


def test_the_move_gives_no_role_an_internal_function_it_could_not_call(pg, new_db, analyst_role, outsider) -> None:
    db = new_db(sample=False)
    _privileges_hold(pg, db, analyst_role(db), outsider)


def test_a_role_granted_before_the_update_keeps_what_it_had(pg: Cluster, outsider) -> None:
    db = "internal_update"
    role = f"internal_granted_{os.getpid()}"
    pg.psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    pg.createdb(db)
    pg.psql(f'DROP ROLE IF EXISTS "{role}"; CREATE ROLE "{role}" LOGIN')
    try:
        pg.psql("CREATE EXTENSION sqlcoder VERSION '0.3.0' CASCADE", dbname=db)
        pg.psql(f"SELECT sqlcoder.grant_access('{role}')", dbname=db)
        pg.psql("ALTER EXTENSION sqlcoder UPDATE", dbname=db)
        _privileges_hold(pg, db, role, outsider)
    finally:
        pg.psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)', check=False)
        pg.psql(f'DROP ROLE IF EXISTS "{role}"', check=False)


def test_functions_planted_earlier_in_the_path_are_never_called(pg, new_db, analyst_role, outsider) -> None:
    """A role with CREATE on public plants every internal function's name and signature there; a granted
    role with public first in its path asks, runs, edits hints and examples and makes DDL: none runs."""
    db = new_db(sample=True)
    victim = analyst_role(db)
    with pg.connect(db) as admin:
        admin.execute(f'GRANT CREATE, USAGE ON SCHEMA public TO "{outsider}"')
        admin.execute(f'GRANT USAGE ON SCHEMA sqlcoder_internal TO "{outsider}"')  # to name the _reply type
        admin.execute(f'GRANT CREATE ON SCHEMA public TO "{victim}"')
        signatures = admin.execute(
            "SELECT p.proname, pg_get_function_identity_arguments(p.oid), pg_get_function_result(p.oid) "
            "FROM pg_proc p WHERE p.pronamespace = 'sqlcoder_internal'::regnamespace").fetchall()
    with pg.connect(db, user=outsider) as attacker:
        for name, args, result in signatures:
            if result.startswith("TABLE") or result in ("trigger", "event_trigger") or "OUT " in args:
                args, result = args.replace("OUT ", "x_out "), "void"  # planted under the name, any shape
                args = ", ".join(a for a in args.split(", ") if not a.startswith("x_out"))
            attacker.execute(f"CREATE FUNCTION public.{name}({args}) RETURNS {result} LANGUAGE plpgsql "
                             f"AS $$ BEGIN RAISE EXCEPTION 'planted {name} ran'; END $$")
            attacker.execute(f"GRANT EXECUTE ON FUNCTION public.{name}({args}) TO PUBLIC")
        planted = attacker.execute("SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace "
                                   "AND proname LIKE '\\_%'").fetchone()[0]
        assert planted == len(signatures) >= 30
    with pg.connect(db, user=victim) as conn:
        conn.execute("SET search_path = public, sqlcoder_internal, sqlcoder")
        assert "### Task" in conn.execute("SELECT sqlcoder.prompt('how many customers?')").fetchone()[0]
        assert conn.execute("SELECT count(*) FROM sqlcoder.execute('SELECT 1')").fetchone()[0] == 1
        conn.execute("CREATE TABLE public.planted_a (id int PRIMARY KEY)")  # event trigger: _note_catalog_change
        conn.execute("CREATE TABLE public.planted_b (a_id int)")
        hint = conn.execute("SELECT sqlcoder.add_join_hint('public.planted_b', 'a_id', 'public.planted_a', 'id')")
        conn.execute("SELECT sqlcoder.remove_join_hint(%s)", (hint.fetchone()[0],))
        example = conn.execute("SELECT sqlcoder.add_example('ids?', 'SELECT id FROM public.planted_a')")
        conn.execute("SELECT sqlcoder.remove_example(%s)", (example.fetchone()[0],))
        conn.execute("DROP TABLE public.planted_a, public.planted_b")  # sql_drop triggers
        assert conn.execute("SELECT count(*) FROM sqlcoder.history WHERE role = current_user").fetchone()[0] >= 1


def test_a_schema_of_that_name_made_beforehand_stops_install_and_update(pg: Cluster, outsider) -> None:
    """A role with CREATE on the database makes schema sqlcoder_internal with an _invoke of its own: CREATE
    EXTENSION and the update from 0.3.0 both stop with 42P06 and a HINT, and nothing of it is used."""
    for how in ("install", "update"):
        db = f"internal_planted_{how}"
        pg.psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        pg.createdb(db)
        try:
            pg.psql("CREATE EXTENSION plpython3u", dbname=db)
            if how == "update":
                pg.psql("CREATE EXTENSION sqlcoder VERSION '0.3.0'", dbname=db)
            pg.psql(f'GRANT CREATE ON DATABASE "{db}" TO "{outsider}"', dbname=db)
            with pg.connect(db, user=outsider) as attacker:
                attacker.execute("CREATE SCHEMA sqlcoder_internal")
                attacker.execute("CREATE FUNCTION sqlcoder_internal._invoke(text, jsonb) RETURNS text "
                                 "LANGUAGE sql AS $$ SELECT 'planted' $$")
            with pg.connect(db) as admin, pytest.raises(psycopg.errors.DuplicateSchema) as err:
                admin.execute("CREATE EXTENSION sqlcoder" if how == "install" else "ALTER EXTENSION sqlcoder UPDATE")
            assert "drop it or rename it" in err.value.diag.message_hint
            version = pg.psql("SELECT coalesce((SELECT extversion FROM pg_extension WHERE extname = 'sqlcoder'), "
                              "'none')", dbname=db).strip()
            assert version == ("none" if how == "install" else "0.3.0")
        finally:
            pg.psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)', check=False)


def test_df_sqlcoder_lists_only_public_documented_functions(pg, new_db) -> None:
    """What \\df sqlcoder.* shows: no internal name, a COMMENT on each, each named in the README or docs/."""
    db = new_db(sample=False)
    with pg.connect(db) as conn:
        rows = conn.execute("SELECT p.proname, obj_description(p.oid, 'pg_proc') FROM pg_proc p "
                            "WHERE p.pronamespace = 'sqlcoder'::regnamespace ORDER BY 1").fetchall()
    docs = (ROOT / "README.md").read_text() + "".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    assert len(rows) >= 20
    assert [name for name, _ in rows if name.startswith("_")] == []
    assert [name for name, comment in rows if not comment or comment.startswith("internal")] == []
    assert [name for name, _ in rows if f"sqlcoder.{name}" not in docs and f"`{name}" not in docs] == []

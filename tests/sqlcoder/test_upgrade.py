"""Upgrades and uninstall: every update path yields what a fresh install of the newest version has.

As pg_stat_statements' oldextversions test and timescale/pgai's upgrade test
do it: install each older version, ALTER EXTENSION ... UPDATE, and compare a
snapshot of the extension's objects (definitions, privileges, comments,
policies, triggers) with a fresh install's.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from helpers.paths import ROOT
from sqlcoder_dev.pgcluster import Cluster

NEWEST = (ROOT / "sqlcoder.control").read_text().split("default_version = '")[1].split("'")[0]
# Every version a shipped script names, as the source or target of an update or as a full install.
VERSIONS = sorted({v for p in (ROOT / "sql").glob("sqlcoder--*.sql.in")
                   for v in p.name.removesuffix(".sql.in").split("--")[1:]} | {NEWEST},
                  key=lambda v: tuple(int(n) for n in v.split(".")))

# The extension's schemas: what callers use, and its internals.
NAMES = "('sqlcoder', 'sqlcoder_internal')"
OIDS = "('sqlcoder'::regnamespace, 'sqlcoder_internal'::regnamespace)"
# One query per kind of object; each returns text rows that must match between installs.
SNAPSHOT_QUERIES = {
    "members": """
        SELECT pg_describe_object(classid, objid, objsubid) FROM pg_depend
        WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
          AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'sqlcoder') ORDER BY 1""",
    "functions": f"""
        SELECT pg_get_functiondef(p.oid) || coalesce(p.proacl::text, '')
               || coalesce(obj_description(p.oid, 'pg_proc'), '')
        FROM pg_proc p WHERE p.pronamespace IN {OIDS} ORDER BY p.oid::regprocedure::text""",
    "columns": f"""
        SELECT c.oid::regclass::text || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
               || ' ' || a.attnotnull
               || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
               || ' ' || a.attidentity::text || a.attgenerated::text
               || ' ' || coalesce(col_description(c.oid, a.attnum), '') || coalesce(a.attacl::text, '')
        FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
        WHERE c.relnamespace IN {OIDS} ORDER BY 1""",
    "relations": f"""
        SELECT c.oid::regclass::text || ' ' || c.relkind::text || ' ' || c.relrowsecurity || ' '
               || c.relforcerowsecurity || ' ' || coalesce(c.relacl::text, '') || ' '
               || coalesce(obj_description(c.oid, 'pg_class'), '')
        FROM pg_class c WHERE c.relnamespace IN {OIDS} ORDER BY 1""",
    "constraints": f"""
        SELECT conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint
        WHERE connamespace IN {OIDS} ORDER BY 1""",
    "indexes": f"""
        SELECT indexdef FROM pg_indexes WHERE schemaname IN {NAMES} ORDER BY 1""",
    "policies": f"""
        SELECT schemaname || '.' || tablename || ' ' || policyname || ' ' || permissive || ' ' || roles::text
               || ' ' || cmd || ' ' || coalesce(qual, '') || ' ' || coalesce(with_check, '')
        FROM pg_policies WHERE schemaname IN {NAMES} ORDER BY 1""",
    "triggers": f"""
        SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        WHERE c.relnamespace IN {OIDS} AND NOT t.tgisinternal ORDER BY 1""",
    "event_triggers": """
        SELECT evtname || ' ' || evtevent || ' ' || evtfoid::regproc || ' ' || evtenabled::text || ' '
               || coalesce(evttags::text, '') FROM pg_event_trigger ORDER BY 1""",
    "types": f"""
        SELECT t.oid::regtype::text || ' ' || t.typtype::text FROM pg_type t
        WHERE t.typnamespace IN {OIDS} AND t.typrelid = 0 AND t.typelem = 0 ORDER BY 1""",
    "schema": f"""
        SELECT nspname || ' ' || coalesce(nspacl::text, '') FROM pg_namespace
        WHERE nspname IN {NAMES} ORDER BY 1""",
    "views": f"""
        SELECT c.oid::regclass::text || ' ' || pg_get_viewdef(c.oid) FROM pg_class c
        WHERE c.relnamespace IN {OIDS} AND c.relkind IN ('v', 'm') ORDER BY 1""",
    "column_order": f"""
        SELECT c.oid::regclass::text || ' ' || string_agg(a.attname, ',' ORDER BY a.attnum) FROM pg_class c
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        WHERE c.relnamespace IN {OIDS} GROUP BY c.oid ORDER BY 1""",
    # (0.1.0 -> 0.2.0 left the dropped config_0_1_0's OID in extconfig; pg_dump skips OIDs of no table)
    "dumped": """
        SELECT t.oid::regclass::text || ' ' || coalesce(t.cond, '') FROM pg_extension e,
               unnest(e.extconfig, e.extcondition) AS t(oid, cond)
        WHERE e.extname = 'sqlcoder' AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.oid) ORDER BY 1""",
    "config": """
        SELECT key || '=' || value || ' ' || description FROM sqlcoder.config ORDER BY key""",
    # what grant_access grants: rows each part adds, in the install script and in the update alike
    "access_list": """
        SELECT kind || ' ' || object || ' ' || privileges FROM sqlcoder_internal._access_list ORDER BY 1""",
}


def snapshot(pg: Cluster, dbname: str) -> dict[str, list[str]]:
    with pg.connect(dbname) as conn:
        return {kind: [r[0] for r in conn.execute(sql).fetchall()] for kind, sql in SNAPSHOT_QUERIES.items()}


@pytest.fixture
def fresh_db(pg: Cluster):
    names: list[str] = []

    def make(name: str) -> str:
        pg.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        pg.createdb(name)
        names.append(name)
        return name

    yield make
    for name in names:
        pg.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_update_paths_are_the_intended_ones(pg: Cluster, fresh_db) -> None:
    db = fresh_db("upgrade_paths")
    pg.psql("CREATE EXTENSION plpython3u", dbname=db)
    rows = pg.psql("SELECT source || '>' || target || '=' || path FROM pg_extension_update_paths('sqlcoder') "
                   "WHERE path IS NOT NULL ORDER BY 1", dbname=db).split()
    # Each older version updates straight along the chain of shipped update scripts, and never downgrades.
    expected = []
    for i, source in enumerate(VERSIONS):
        for target in VERSIONS[i + 1:]:
            expected.append(f"{source}>{target}=" + "--".join(VERSIONS[i:VERSIONS.index(target) + 1]))
    assert rows == sorted(expected)
    assert VERSIONS[-1] == NEWEST


@pytest.mark.parametrize("old", [v for v in VERSIONS if v != NEWEST])
def test_update_equals_fresh_install(pg: Cluster, fresh_db, old: str) -> None:
    fresh = fresh_db("upgrade_fresh")
    pg.psql("CREATE EXTENSION sqlcoder CASCADE", dbname=fresh)
    updated = fresh_db(f"upgrade_from_{old.replace('.', '_')}")
    pg.psql(f"CREATE EXTENSION sqlcoder VERSION '{old}' CASCADE", dbname=updated)
    pg.psql("ALTER EXTENSION sqlcoder UPDATE", dbname=updated)
    assert pg.psql("SELECT extversion FROM pg_extension WHERE extname = 'sqlcoder'", dbname=updated).strip() == NEWEST
    want, got = snapshot(pg, fresh), snapshot(pg, updated)
    for kind in SNAPSHOT_QUERIES:
        assert got[kind] == want[kind], kind


@pytest.mark.parametrize("old", [v for v in VERSIONS if v != NEWEST])
def test_settings_survive_the_update(pg: Cluster, fresh_db, old: str) -> None:
    db = fresh_db("upgrade_settings")
    pg.psql(f"CREATE EXTENSION sqlcoder VERSION '{old}' CASCADE", dbname=db)
    pg.psql("UPDATE sqlcoder.config SET value = '/srv/sqlcoder/model.sock' WHERE key = 'socket_path';"
            "UPDATE sqlcoder.config SET value = '5000' WHERE key = 'model_timeout_ms'", dbname=db)
    pg.psql("ALTER EXTENSION sqlcoder UPDATE", dbname=db)
    rows = pg.psql("SELECT key || '=' || value FROM sqlcoder.config WHERE key IN ('socket_path', 'model_timeout_ms') "
                   "ORDER BY key", dbname=db).split()
    assert rows == ["model_timeout_ms=5000", "socket_path=/srv/sqlcoder/model.sock"]
    # and the functions work after the update (the package version matches the new extension version);
    # a table to show, since a prompt of an empty schema is an error
    pg.psql("CREATE TABLE things (id int)", dbname=db)
    assert "### Task" in pg.psql("SELECT sqlcoder.prompt('how many?')", dbname=db)


def test_drop_extension_leaves_nothing(pg: Cluster, fresh_db) -> None:
    db = fresh_db("uninstall")
    before = _objects(pg, db)
    pg.psql("CREATE EXTENSION sqlcoder CASCADE", dbname=db)
    pg.psql("DROP EXTENSION sqlcoder; DROP EXTENSION plpython3u", dbname=db)
    assert _objects(pg, db) == before


def _objects(pg: Cluster, dbname: str) -> list[str]:
    """Every user-visible object: schemas, relations, functions, types, event triggers, roles' ACL entries."""
    return pg.psql("""
        SELECT 'schema ' || nspname FROM pg_namespace
        UNION ALL SELECT 'rel ' || oid::regclass::text FROM pg_class WHERE relnamespace <> 'pg_catalog'::regnamespace
          AND relnamespace <> 'information_schema'::regnamespace AND relnamespace <> 'pg_toast'::regnamespace
        UNION ALL SELECT 'func ' || oid::regprocedure::text FROM pg_proc
          WHERE pronamespace <> 'pg_catalog'::regnamespace
          AND pronamespace <> 'information_schema'::regnamespace
        UNION ALL SELECT 'type ' || oid::regtype::text FROM pg_type WHERE typnamespace <> 'pg_catalog'::regnamespace
          AND typnamespace <> 'information_schema'::regnamespace AND typnamespace <> 'pg_toast'::regnamespace
        UNION ALL SELECT 'evt ' || evtname FROM pg_event_trigger
        UNION ALL SELECT 'lang ' || lanname FROM pg_language
        UNION ALL SELECT 'ext ' || extname FROM pg_extension
        ORDER BY 1""", dbname=dbname).splitlines()


def test_make_uninstall_removes_every_file(tmp_path: Path) -> None:
    stage = tmp_path / "stage"
    subprocess.run(["make", "-s", "install", f"DESTDIR={stage}"], cwd=ROOT, check=True, capture_output=True)
    installed = [p for p in stage.rglob("*") if p.is_file()]
    assert any(p.name == "sqlcoder.control" for p in installed)
    assert any(p.name == "api.py" for p in installed)
    subprocess.run(["make", "-s", "uninstall", f"DESTDIR={stage}"], cwd=ROOT, check=True, capture_output=True)
    assert [p for p in stage.rglob("*") if p.is_file()] == []


def test_dump_and_restore_keep_settings_hints_instructions_and_history(pg: Cluster, fresh_db, tmp_path: Path) -> None:
    """pg_dump/pg_restore of a database using sqlcoder restores cleanly, with what a DBA and users added."""
    src = fresh_db("dump_source")
    pg.psql("CREATE EXTENSION sqlcoder CASCADE", dbname=src)
    pg.psql("""
        CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (a_id int);
        UPDATE sqlcoder.config SET value = '/srv/sqlcoder.sock' WHERE key = 'socket_path';
        UPDATE sqlcoder.config SET value = '5' WHERE key = 'max_rows';
        SELECT sqlcoder.add_join_hint('b', 'a_id', 'a', 'id');
        SELECT sqlcoder.add_instruction('revenue is price times quantity');
        INSERT INTO sqlcoder.history (role, operation, question, outcome) VALUES ('postgres', 'ask', 'q?', 'ok');
        SELECT sqlcoder.add_example('ids of a with b', 'SELECT a.id FROM a JOIN b ON b.a_id = a.id');
        """, dbname=src)
    dump = tmp_path / "db.dump"
    bindir = pg.bindir
    subprocess.run([str(bindir / "pg_dump"), "-Fc", "-f", str(dump), *_conn_args(pg), src], check=True)
    dst = fresh_db("dump_target")
    result = subprocess.run([str(bindir / "pg_restore"), "--exit-on-error", "-d", dst, *_conn_args(pg), str(dump)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    settings = pg.psql("SELECT key || '=' || value FROM sqlcoder.config WHERE key IN ('socket_path', 'max_rows') "
                       "ORDER BY key", dbname=dst).split()
    assert settings == ["max_rows=5", "socket_path=/srv/sqlcoder.sock"]
    assert pg.psql("SELECT count(*) FROM sqlcoder.join_hints", dbname=dst).strip() == "1"
    instruction = pg.psql("SELECT instruction FROM sqlcoder.instructions", dbname=dst).strip()
    assert instruction == "revenue is price times quantity"
    assert pg.psql("SELECT question FROM sqlcoder.history", dbname=dst).strip() == "q?"
    # golden examples: their tables (regclass) resolve to the restored tables
    assert pg.psql("SELECT tables::text FROM sqlcoder.examples", dbname=dst).strip() == "{a,b}"
    # identity sequences came along: new rows do not collide with restored ones
    pg.psql("SELECT sqlcoder.add_instruction('a second rule'); "
            "INSERT INTO sqlcoder.history (role, operation, question, outcome) VALUES ('postgres', 'ask', 'q2', 'ok'); "
            "SELECT sqlcoder.add_example('all of a', 'SELECT id FROM a')",
            dbname=dst)
    # a setting set back to its default is no longer an override
    pg.psql("UPDATE sqlcoder.config SET value = default_value WHERE key = 'max_rows'", dbname=dst)
    assert pg.psql("SELECT key FROM sqlcoder.config_override", dbname=dst).split() == ["socket_path"]


def _conn_args(pg: Cluster) -> list[str]:
    return ["-h", str(pg.sockdir), "-p", str(pg.port), "-U", "postgres"]


# A released script is what databases in the field were made by: changing it would make an updated
# database differ from the release it claims to be. A new version gets a new update script instead.
RELEASED_SCRIPTS = {
    "sqlcoder--0.1.0.sql.in": "d34f06396133f84609ca71a1cfcc54ef2fd2edcc840b0b710011e70327e6d9cf",
    "sqlcoder--0.1.0--0.2.0.sql.in": "ad56868a4f0b1f8a2880731ecab56f635ba5ee664098e3e6b8aab6ea618691c7",
    "sqlcoder--0.2.0--0.3.0.sql.in": "fda720874f6f31176b7638e1fb12eaff738171c13beb624edda299d08f2c55db",
    "sqlcoder--0.3.0.sql.in": "612d8f70e7bfe0c5b1f0c9b4b2127a6fc9e01f57193c9e4e753e09cd5b16b7b7",
}


@pytest.mark.parametrize("name", sorted(RELEASED_SCRIPTS))
def test_released_scripts_never_change(name: str) -> None:
    import hashlib
    assert hashlib.sha256((ROOT / "sql" / name).read_bytes()).hexdigest() == RELEASED_SCRIPTS[name], (
        f"{name} belongs to a released version; put the change into the newest update script")


def test_roles_granted_before_the_update_may_call_the_new_signatures(pg: Cluster, fresh_db) -> None:
    """ask, prompt, run and run_typed took follow_up in 0.4.0 (new signatures): their grants follow."""
    db = fresh_db("upgrade_grants")
    role = "upgrade_granted_analyst"
    pg.psql(f'DO $$BEGIN CREATE ROLE "{role}" LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END$$')
    try:
        pg.psql("CREATE EXTENSION sqlcoder VERSION '0.3.0' CASCADE", dbname=db)
        pg.psql(f"SELECT sqlcoder.grant_access('{role}')", dbname=db)
        pg.psql("ALTER EXTENSION sqlcoder UPDATE", dbname=db)
        got = pg.psql(f"SELECT has_function_privilege('{role}', f, 'EXECUTE') FROM unnest(ARRAY["
                      "'sqlcoder.ask(text, text, bigint)', 'sqlcoder.prompt(text, text, bigint)', "
                      "'sqlcoder.run(text, text, integer, bigint)', 'sqlcoder.run_typed(text, text, integer, bigint)', "
                      "'sqlcoder_internal._example_permitted(text, name[])']) AS f", dbname=db).split()
        assert got == ["t"] * 5
    finally:
        pg.psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)', check=False)
        pg.psql(f'DROP ROLE IF EXISTS "{role}"', check=False)

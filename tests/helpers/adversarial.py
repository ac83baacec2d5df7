"""What the adversarial tests share besides fixtures (those are in tests/adversarial/conftest.py): the
database and role the stand-in daemon serves, and the invariants checked after every case (nothing
written, no privilege gained, no file created, the session unchanged)."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg

from sqlcoder_dev.pgcluster import Cluster

DB = f"adversarial_{os.getpid()}"
ROLE = f"adv_analyst_{os.getpid()}"
PWNED = Path("/tmp/sqlcoder_pwned")


def fingerprint(pg: Cluster) -> tuple:
    """Everything a hostile statement could change that a caller would notice."""
    with pg.connect(DB) as admin:
        tables = [r[0] for r in admin.execute(
            "SELECT c.oid::regclass::text FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace "
            "AND c.relkind = 'r' ORDER BY 1")]
        contents = [admin.execute(f"SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM {t} t")
                    .fetchone()[0] for t in tables]
        return (tables, contents, admin.execute("""
            SELECT (SELECT string_agg(relname::text || relkind::text, ',' ORDER BY relname) FROM pg_class
                     WHERE relnamespace = 'public'::regnamespace),
                   (SELECT last_value FROM customers_id_seq),
                   (SELECT row(rolsuper, rolcreaterole, rolcreatedb, rolbypassrls)::text FROM pg_roles
                     WHERE rolname = %(role)s),
                   (SELECT count(*) FROM pg_auth_members WHERE member = %(role)s::regrole),
                   (SELECT relacl::text FROM pg_class WHERE oid = 'customers'::regclass),
                   (SELECT count(*) FROM pg_largeobject_metadata)""", {"role": ROLE}).fetchone())


def assert_unharmed(pg: Cluster, conn: psycopg.Connection, baseline: tuple) -> None:
    assert fingerprint(pg) == baseline, "something was written or a privilege changed"
    assert not PWNED.exists(), "a file was written on the server"
    assert conn.execute("SELECT 1").fetchone()[0] == 1
    state = conn.execute("SELECT current_user, session_user, current_setting('transaction_read_only'), "
                         "current_setting('search_path'), "
                         "(SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory'), "
                         "(SELECT count(*) FROM pg_listening_channels()), "
                         "(SELECT count(*) FROM pg_prepared_statements), current_setting('application_name')"
                         ).fetchone()
    assert state == (ROLE, ROLE, "off", '"$user", public', 0, 0, 0, "")
    assert pg.psql("SELECT 1").strip() == "1", "the server and other sessions are alive"


def outcome_of(conn: psycopg.Connection, sql: str, *args: object) -> str | list:
    try:
        return conn.execute(sql, args).fetchall()
    except psycopg.Error as exc:
        assert "Traceback" not in str(exc)
        return exc.sqlstate or "?"

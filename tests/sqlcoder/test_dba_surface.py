"""What a DBA meets: grant_access says what it granted, status_report() starts with a verdict, the
version-mismatch HINT after an update says reconnect."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import psycopg
import pytest

import sqlcoder
from plugins.postgres import SHOP_TEMPLATE
from sqlcoder import api
from sqlcoder_dev.fake_daemon import FakeDaemon, drop_run_database, setup_run_database, socket_dir
from sqlcoder_dev.pgcluster import Cluster

DB = f"dba_{os.getpid()}"
ROLE = f"dba_analyst_{os.getpid()}"
NEWCOMER = f"dba_newcomer_{os.getpid()}"


@pytest.fixture(scope="module")
def shop_daemon(pg: Cluster) -> Iterator[FakeDaemon]:
    with FakeDaemon(socket_dir() / "dba.sock") as daemon:
        setup_run_database(pg, DB, SHOP_TEMPLATE, daemon.path, ROLE)
        pg.psql(f'DO $$BEGIN CREATE ROLE "{NEWCOMER}" LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END$$')
        yield daemon
        drop_run_database(pg, DB, ROLE)
        pg.psql(f'DROP ROLE IF EXISTS "{NEWCOMER}"', check=False)


@pytest.fixture
def admin_conn(pg: Cluster, shop_daemon: FakeDaemon) -> Iterator[psycopg.Connection]:
    with pg.connect(DB) as conn:
        conn.autocommit = True
        yield conn


def test_grant_access_and_revoke_access_say_what_they_did(admin_conn, pg) -> None:
    line = admin_conn.execute("SELECT sqlcoder.grant_access(%s::regrole)", (NEWCOMER,)).fetchone()[0]
    functions = admin_conn.execute(
        "SELECT count(*) FROM sqlcoder_internal._access_list WHERE kind = 'function'").fetchone()[0]
    assert line.startswith(f"granted {NEWCOMER}: USAGE on schemas sqlcoder and sqlcoder_internal, "
                           f"EXECUTE on {functions} functions, ")
    tables = admin_conn.execute("SELECT string_agg(object, ', ' ORDER BY object) FROM sqlcoder_internal._access_list "
                           "WHERE kind = 'table'").fetchone()[0]
    assert line.endswith(f"tables ({tables})") and "sqlcoder.config" in tables and "sqlcoder.history" in tables
    assert "\n" not in line
    with pg.connect(DB, user=NEWCOMER) as conn:
        assert conn.execute("SELECT count(*) FROM sqlcoder.config").fetchone()[0] > 0
    line = admin_conn.execute("SELECT sqlcoder.revoke_access(%s::regrole)", (NEWCOMER,)).fetchone()[0]
    assert line.startswith(f"revoked from {NEWCOMER}: USAGE on schemas sqlcoder and sqlcoder_internal, "
                           f"EXECUTE on {functions} functions")
    with pg.connect(DB, user=NEWCOMER) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT count(*) FROM sqlcoder.config")


def test_status_report_starts_with_one_verdict_row(admin_conn, shop_daemon) -> None:
    rows = admin_conn.execute("SELECT * FROM sqlcoder.status_report()").fetchall()
    assert rows[0] == ("verdict", "OK: the daemon answers, serving fake/sqlcoder")
    assert [k for k, _ in rows].count("verdict") == 1
    assert [k for k, _ in rows[1:]] == sorted(k for k, _ in rows[1:])
    admin_conn.execute("UPDATE sqlcoder.config SET value = '/nonexistent/sqlcoder.sock' WHERE key = 'socket_path'")
    try:
        key, verdict = admin_conn.execute("SELECT * FROM sqlcoder.status_report() LIMIT 1").fetchone()
    finally:
        admin_conn.execute("UPDATE sqlcoder.config SET value = %s WHERE key = 'socket_path'", (str(shop_daemon.path),))
    assert key == "verdict" and verdict.startswith("NOT OK: the sqlcoder daemon is not running")


class _NoServer:
    """entry() checks the version before it touches plpy."""

    class SPIError(Exception):
        pass


def test_a_session_that_loaded_the_old_package_is_told_to_reconnect() -> None:
    newer = ".".join([*sqlcoder.__version__.split(".")[:-1], "99"])
    reply = api.entry(_NoServer(), newer, "status", {})
    assert isinstance(reply, dict) and reply["error"]
    error = json.loads(reply["error"])
    assert error["sqlstate"] == "55000"
    assert f"loaded sqlcoder's Python package {sqlcoder.__version__} before the extension was updated" in \
        error["message"]
    assert error["hint"].startswith(f"Reconnect: a new session loads the {newer} package.")
    older = api.entry(_NoServer(), "0.0.1", "status", {})
    assert isinstance(older, dict) and older["error"]
    assert "ALTER EXTENSION sqlcoder UPDATE" in json.loads(older["error"])["hint"]

"""A search_path that shows the caller no table: an error before the model is called, naming the way out."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest

from plugins.postgres import SHOP_TEMPLATE
from sqlcoder_dev.fake_daemon import FakeDaemon, drop_run_database, setup_run_database, socket_dir
from sqlcoder_dev.pgcluster import Cluster

DB = f"emptypath_{os.getpid()}"
ROLE = f"emptypath_analyst_{os.getpid()}"
SALES = f"sales_{os.getpid()}"
LONELY = f"emptypath_lonely_{os.getpid()}"


@pytest.fixture(scope="module")
def shop_daemon(pg: Cluster) -> Iterator[FakeDaemon]:
    with FakeDaemon(socket_dir() / "emptypath.sock") as daemon:
        setup_run_database(pg, DB, SHOP_TEMPLATE, daemon.path, ROLE)
        pg.psql(f'DO $$BEGIN CREATE ROLE "{LONELY}" LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END$$')
        with pg.connect(DB) as conn:
            # The analyst's tables live in a schema off the default path, and in one with an odd name.
            for schema in (SALES, "Odd Schema"):
                conn.execute(f'CREATE SCHEMA "{schema}"')
                conn.execute(f'CREATE TABLE "{schema}".leads (id int, name text)')
                conn.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{ROLE}"')
                conn.execute(f'GRANT SELECT (name) ON "{schema}".leads TO "{ROLE}"')
            conn.execute('CREATE SCHEMA hidden')
            conn.execute('CREATE TABLE hidden.secrets (x int)')
            conn.execute(f'GRANT USAGE ON SCHEMA hidden TO "{ROLE}"')  # usable, but nothing to read in it
            conn.execute("SELECT sqlcoder.grant_access(%s::regrole)", (LONELY,))
        yield daemon
        drop_run_database(pg, DB, ROLE)
        pg.psql(f'DROP ROLE IF EXISTS "{LONELY}"', check=False)


@pytest.fixture
def analyst_conn(pg: Cluster, shop_daemon: FakeDaemon) -> Iterator[psycopg.Connection]:
    shop_daemon.reply(" SELECT 1;")
    with pg.connect(DB, user=ROLE) as conn:
        conn.autocommit = True
        conn.execute("SET search_path = pg_catalog")  # public, which it reads, is off the path
        yield conn


def generates(shop_daemon: FakeDaemon) -> int:
    return sum(1 for r in shop_daemon.requests if r.get("op") in ("generate", "status", "count_tokens"))


@pytest.mark.parametrize("call", [
    "SELECT sqlcoder.ask('how many leads?')",
    "SELECT sqlcoder.prompt('how many leads?')",
    "SELECT * FROM sqlcoder.run('how many leads?')",
    "SELECT * FROM sqlcoder.run_typed('how many leads?') AS r(n bigint)",
])
def test_nothing_visible_fails_before_the_model_naming_the_schemas_and_the_path(analyst_conn, shop_daemon,
                                                                                call) -> None:
    before = generates(shop_daemon)
    with pytest.raises(psycopg.errors.UndefinedTable) as info:
        analyst_conn.execute(call)
    diag = info.value.diag
    assert "you may read no table or view on your search_path" in diag.message_primary
    assert f'Schemas you may use that are not on it: "Odd Schema", public, {SALES}.' in diag.message_detail
    assert "hidden" not in diag.message_detail  # USAGE, but nothing it may read there
    assert diag.message_hint == f'SET search_path = "Odd Schema", public, {SALES};'
    assert generates(shop_daemon) == before  # not even a status probe


def test_the_hint_keeps_the_path_and_works(analyst_conn, shop_daemon) -> None:
    analyst_conn.execute("SET search_path = hidden")
    with pytest.raises(psycopg.errors.UndefinedTable) as info:
        analyst_conn.execute("SELECT sqlcoder.prompt('how many leads?')")
    hint = info.value.diag.message_hint
    assert hint.startswith("SET search_path = hidden, ")
    analyst_conn.execute(hint)
    assert "CREATE TABLE leads" in analyst_conn.execute("SELECT sqlcoder.prompt('how many leads?')").fetchone()[0]


def test_a_role_that_may_read_nothing_anywhere_is_told_so(pg, shop_daemon) -> None:
    with pg.connect(DB, user=LONELY) as conn, pytest.raises(psycopg.errors.UndefinedTable) as info:
        conn.execute("SELECT sqlcoder.ask('how many leads?')")
    assert "nor in any other schema" in info.value.diag.message_primary
    assert "GRANT" in info.value.diag.message_hint


def test_the_failed_ask_is_in_history(analyst_conn, shop_daemon) -> None:
    with pytest.raises(psycopg.errors.UndefinedTable):
        analyst_conn.execute("SELECT sqlcoder.ask('how many leads in the empty path?')")
    row = analyst_conn.execute("SELECT outcome, error_sqlstate FROM sqlcoder.history "
                          "WHERE question = 'how many leads in the empty path?'").fetchone()
    assert row == ("error", "42P01")
